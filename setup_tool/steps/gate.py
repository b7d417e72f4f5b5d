"""Step 2: only the central database, and SuperOffice 8.5 R10 or newer, before anything is written.

A satellite or travel database is refused in every mode (SPEC's "blocked", exit 3): travelcurrent
says what a database is (SOD database reference, tables/travelcurrent.md: systemlevel 10 =
central, current_id 0 = central), UserPreference rows are "replicated to satellites and traveller
databases" from the central one (SOD tables/userpreference.md, Replication flags), and SuperOffice's
Travel, not a direct SQL write, is what carries a change between them (SUPEROFFICE.md,
traveltransactionlog). A database without a travelcurrent row is treated as central and the
findings say so: a satellite or travel copy cannot work without that row (inferred).
"""

from __future__ import annotations

from sqlalchemy import Connection

from setup_tool.findings import REFUSAL_HINT, Findings
from setup_tool.steps import PlanContext, Step, StepPlan
from setup_tool.versions import invites_documented_note

STEP_ID = "gate"
TITLE = "The central database, at SuperOffice 8.5 R10 or newer"
SUPPLY_VERSION = (
    "Give the version with --superoffice-version (environment SETUP_TOOL_SUPEROFFICE_VERSION, "
    'answer-file key superoffice-version), e.g. --superoffice-version "8.5 R10".'
)
NOTHING_CHANGED = "Nothing was changed."


def plan(findings: Findings) -> StepPlan:
    role = findings.travel.role
    if role.refuses:
        return StepPlan(
            STEP_ID, TITLE, "blocked", f"{role.sentence()} {REFUSAL_HINT} {NOTHING_CHANGED}"
        )
    step = _version_plan(findings)
    if role.kind == "undetermined":
        step.warnings.append(role.sentence())
    return step


def not_reached_reason(findings: Findings) -> str:
    """Why the steps after a blocking gate do nothing."""
    if findings.travel.role.refuses:
        return "Not reached: only the central database is upgraded."
    return "Not reached: the SuperOffice version gate blocks the upgrade."


def _version_plan(findings: Findings) -> StepPlan:
    version = findings.superoffice.version
    status = findings.superoffice.status
    if status == "ok" and version is not None:
        note = invites_documented_note(version)
        reason = f"SuperOffice {version.label()} supports invites."
        return StepPlan(STEP_ID, TITLE, "done", f"{reason} {note}" if note else reason)
    if status == "too_old" and version is not None:
        return StepPlan(
            STEP_ID,
            TITLE,
            "blocked",
            f"SuperOffice {version.label()} is older than 8.5 R10: upgrade SuperOffice "
            f"first. {NOTHING_CHANGED}",
        )
    found = (
        f"{version.label()}: the release cannot be told from the build"
        if version
        else "no version row this tool can read"
    )
    return StepPlan(
        STEP_ID,
        TITLE,
        "blocked",
        f"The SuperOffice version is undetermined ({found}). {SUPPLY_VERSION}",
    )


class Gate(Step):
    """Checks only; a blocking gate leaves every later step not reached."""

    id = STEP_ID
    title = TITLE
    gates = True

    def plan(self, ctx: PlanContext, conn: Connection) -> StepPlan:
        return plan(ctx.findings)

    def not_reached_reason(self, findings: Findings) -> str:
        return not_reached_reason(findings)


GATE = Gate()
