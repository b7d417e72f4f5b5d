"""The upgrade's steps, once, in the order they run: upgrade, the dry run, undo, history and the
T-SQL script all iterate this (as sqlfluff registers its rules in one place)."""

from __future__ import annotations

from setup_tool.steps import Step
from setup_tool.steps.gate import GATE
from setup_tool.steps.mark_invites import MARK_INVITES
from setup_tool.steps.preference import OVERRIDES, PREFERENCE
from setup_tool.steps.synchronizer_check import SYNCHRONIZER_CHECK

STEPS: tuple[Step, ...] = (GATE, PREFERENCE, OVERRIDES, MARK_INVITES, SYNCHRONIZER_CHECK)

# The steps that change rows (and record their previous values), in the order a run applies
# them; undo takes their inverses newest first.
APPLY_ORDER: tuple[Step, ...] = tuple(s for s in STEPS if s.recorded_table is not None)

_BY_ID = {step.id: step for step in STEPS}


def step_named(step_id: str) -> Step | None:
    """The step a step row's step_key names (None: a key this version does not know)."""
    return _BY_ID.get(step_id)
