"""The wizard's screens, read top to bottom: what was found (with its evidence), then the plan,
one line per step, right above the one question that applies it.

Everything here is text for a terminal (stderr, beside the prompts): lines wrapped to the
terminal's width, database values made printable, colour only through the given `style`.
The dry-run report is for files and reviews; the wizard never shows it.
"""

from __future__ import annotations

import os
import shutil
import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from setup_tool.report import describe_estimate, plain
from setup_tool.steps import StepPlan

if TYPE_CHECKING:
    from setup_tool.findings import Evidence, Findings
    from setup_tool.upgrade import UpgradePlan

Style = Callable[..., str]
MAX_WIDTH = 100


def _no_style(text: str, **_styles: Any) -> str:
    return text


NO_WRAP = 10_000  # not a terminal (a file, a pipe, a CI log): whole lines read and grep better


def terminal_width(stream: TextIO | None = None) -> int:
    """The width of the terminal the wizard talks to (stderr's), at most MAX_WIDTH; NO_WRAP
    when `stream` is not a terminal."""
    if stream is not None and not _isatty(stream):
        return NO_WRAP
    try:  # the terminal stderr is on: stdout may be a file
        columns = os.get_terminal_size(stream.fileno()).columns if stream else 0
    except (AttributeError, OSError, ValueError):
        columns = 0
    columns = columns or shutil.get_terminal_size((80, 24)).columns
    return max(40, min(MAX_WIDTH, columns))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def wrap_for_terminal(text: str, width: int, first: str = "", rest: str | None = None) -> list[str]:
    """`text` made printable and wrapped; `first` starts the first line, the rest are indented
    as far (or by `rest`)."""
    return _wrap(text, width, first, rest)


def _wrap(text: str, width: int, first: str = "", rest: str | None = None) -> list[str]:
    rest = " " * len(first) if rest is None else rest
    return textwrap.wrap(
        plain(text),
        width=width,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=True,
        break_on_hyphens=False,
    ) or [first.rstrip()]


def resumed_notice(findings: Findings, width: int, style: Style = _no_style) -> list[str]:
    """First thing on screen when an earlier run's marking is unfinished."""
    unfinished = findings.history.unfinished
    if unfinished is None:
        return []
    text = (
        f"Resuming: run {unfinished.run_id} stopped while marking, after "
        f"{unfinished.rows_changed:,} rows in {unfinished.batches_done:,} batch(es). This run "
        "finishes that marking first, from where it stopped, with the same selection."
    )
    return [style(line, fg="cyan", bold=True) for line in _wrap(text, width)] + [""]


def findings_screen(findings: Findings, width: int, style: Style = _no_style) -> list[str]:
    """What detection found, each finding with its evidence."""
    from setup_tool.report_model import findings_model

    model = findings_model(findings)
    lines = [style("What setup-tool found (nothing has been changed)", bold=True), ""]
    for finding in model.values():
        lines += _wrap(f"{finding['title']}: {finding['summary']}", width, "", "  ")
        lines += _evidence_lines(finding["evidence"], width)
    if findings.warnings:
        lines += ["", style("Warnings", bold=True)]
        for warning in findings.warnings:
            lines += [style(line, fg="yellow") for line in _wrap(warning, width, "  ! ")]
    return lines


def _evidence_lines(evidence: list[dict[str, str]], width: int) -> list[str]:
    lines = []
    for item in evidence:
        lines += _wrap(f"{item['source']}: {item['detail']}", width, "    - ", "      ")
    return lines


def evidence_lines(evidence: list[Evidence], width: int) -> list[str]:
    return _evidence_lines([{"source": e.source, "detail": e.detail} for e in evidence], width)


_DECISION_STYLE: dict[str, dict[str, Any]] = {
    "change": {"fg": "yellow", "bold": True},
    "done": {"fg": "green"},
    "skip": {"dim": True},
    "blocked": {"fg": "red", "bold": True},
}


def step_summary(step: StepPlan) -> str:
    """What a step will do, in a few words with counts."""
    if step.decision == "change":
        shown = ", ".join(map(str, step.sample_ids[:3]))
        ids = f" (id{'s' if len(step.sample_ids) > 1 else ''} {shown}" if step.sample_ids else ""
        more = ", ..." if len(step.sample_ids) > 3 else ""
        return f"will change {step.rows:,} row(s){ids}{more}{')' if ids else ''}"
    if step.decision == "done":
        return f"already done: {_first_sentence(step.reason)}"
    if step.decision == "blocked":
        return f"blocked: {step.reason}"
    if step.action_required:
        return f"left as it is: {step.reason}"
    return f"skipped: {step.reason}"


def _first_sentence(text: str) -> str:
    """Enough of a reason for one line of the plan (the report has the rest)."""
    head, dot, _rest = text.partition(". ")
    return head + "." if dot else text


def plan_screen(plan: UpgradePlan, width: int, style: Style = _no_style) -> list[str]:
    """One line per step with its counts, the marking window and the estimate: what the
    question below applies."""
    lines = [style("The plan", bold=True)]
    for number, step in enumerate(plan.steps, 1):
        wrapped = _wrap(f"{step.title}: {step_summary(step)}", width, f"  {number}. ", "       ")
        lines += [style(wrapped[0], **_DECISION_STYLE.get(step.decision, {})), *wrapped[1:]]
        if step.id == "mark_invites" and step.decision == "change":
            lines += _wrap(_window_text(plan), width, "       ")
    lines += _wrap(f"Estimated time: {describe_estimate(plan.estimate_seconds)}", width, "  ")
    return [*lines, ""]


def _window_text(plan: UpgradePlan) -> str:
    invites = plan.findings.invites
    parts = []
    if invites.selection is not None and invites.to_mark:
        parts.append(
            f"{invites.to_mark:,} rows of {invites.selected_meetings:,} invite meetings "
            f"{invites.selection.describe()}"
        )
    unfinished = plan.findings.history.unfinished
    if unfinished is not None:
        parts.append(f"first the rest of run {unfinished.run_id}'s marking")
    pace = next((s.batches for s in plan.steps if s.batches is not None), None)
    if pace is not None and pace.planned:
        parts.append(pace.pace_text())  # batch size and --pause-between-batches
    return "; ".join(parts) or "the rest of an earlier marking"


def outcome_lines(result: Any, width: int, style: Style = _no_style) -> list[str]:
    """After a real run: per step what it did and how long it took."""
    lines = []
    for step in result.plan.steps:
        if step.decision != "change" and step.duration_seconds is None:
            continue
        took = f" in {step.duration_seconds:.1f} s" if step.duration_seconds is not None else ""
        did = f"changed {step.rows:,} row(s){took}" if step.decision == "change" else "checked"
        lines += _wrap(f"{step.title}: {did}", width, "  - ")
    if result.resumed is not None:
        lines += _wrap(
            f"Finished the marking run {result.resumed.run_id} had begun "
            f"({result.resumed.rows_before:,} rows marked before it stopped).",
            width,
            "  - ",
        )
    return lines
