"""Step 5: invites need InfoBridge Synchronizer 3.2.284 or newer; say so plainly when it is not."""

from __future__ import annotations

from sqlalchemy import Connection

from setup_tool.findings import Findings
from setup_tool.steps import PlanContext, Step, StepPlan
from setup_tool.versions import MINIMUM_SYNCHRONIZER

STEP_ID = "synchronizer_check"
TITLE = "InfoBridge Synchronizer is 3.2.284 or newer"


def plan(findings: Findings) -> StepPlan:
    sync = findings.synchronizer
    minimum = MINIMUM_SYNCHRONIZER.label()
    if sync.in_use is not True:
        return StepPlan(STEP_ID, TITLE, "skip", "No synchronizer in use.")
    if sync.version is None:
        return StepPlan(
            STEP_ID,
            TITLE,
            "blocked",
            f"The synchronizer's version is unknown. The data is protected, but users "
            f"must not send SuperOffice invites until the synchronizer is confirmed to "
            f"be {minimum} or newer.",
            action_required=True,
        )
    if sync.status == "too_old":
        return StepPlan(
            STEP_ID,
            TITLE,
            "blocked",
            f"Synchronizer {sync.version.label()} is older than {minimum}. The data is "
            f"protected, but install synchronizer {minimum} or newer before users send "
            "SuperOffice invites.",
            action_required=True,
        )
    return StepPlan(
        STEP_ID, TITLE, "done", f"Synchronizer {sync.version.label()} handles SuperOffice invites."
    )


class SynchronizerCheck(Step):
    """Checks only, and says its word even when the gate blocks: the synchronizer's version
    matters whatever else stops the run."""

    id = STEP_ID
    title = TITLE

    def plan(self, ctx: PlanContext, conn: Connection) -> StepPlan:
        return plan(ctx.findings)

    def not_reached(self, findings: Findings, reason: str) -> StepPlan:
        return plan(findings)


SYNCHRONIZER_CHECK = SynchronizerCheck()
