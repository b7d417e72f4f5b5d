"""Step 2: SuperOffice must be 8.5 R10 or newer before anything is written."""

from __future__ import annotations

from setup_tool.findings import Findings
from setup_tool.steps import StepPlan

STEP_ID = "gate"
TITLE = "SuperOffice is 8.5 R10 or newer"
SUPPLY_VERSION = (
    "Give the version with --superoffice-version (environment SETUP_TOOL_SUPEROFFICE_VERSION, "
    'answer-file key superoffice-version), e.g. --superoffice-version "8.5 R10".'
)


def plan(findings: Findings) -> StepPlan:
    version = findings.superoffice.version
    status = findings.superoffice.status
    if status == "ok" and version is not None:
        return StepPlan(STEP_ID, TITLE, "done", f"SuperOffice {version.label()} supports invites.")
    if status == "too_old" and version is not None:
        return StepPlan(
            STEP_ID,
            TITLE,
            "blocked",
            f"SuperOffice {version.label()} is older than 8.5 R10: upgrade SuperOffice "
            "first. Nothing was changed.",
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
