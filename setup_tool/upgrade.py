"""The upgrade as a whole: detect, decide each step, ask what must be asked, apply, record."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from setup_tool.bookkeeping import (
    close_dead_runs,
    finish_run,
    install_bookkeeping,
    lock_holder,
    start_run,
)
from setup_tool.clock import utc_now
from setup_tool.database import Database
from setup_tool.detect import OperatorAnswers, detect
from setup_tool.errors import EXIT_CODE_MEANINGS, ExitCode, InterruptedRun, SetupToolError
from setup_tool.findings import Findings
from setup_tool.host_probe import HostProbe
from setup_tool.locking import run_lock
from setup_tool.preconditions import preconditions, with_preconditions
from setup_tool.privileges import Need, require_rights
from setup_tool.steps import (
    ProgressCallback,
    StepContext,
    StepPlan,
    UpgradeSettings,
    gate,
    mark_invites,
    preference,
    synchronizer_check,
)


class Interaction(Protocol):
    """How the upgrade gets answers and confirmation: the wizard asks, unattended never does."""

    def answer_superoffice_version(self, findings: Findings) -> str | None: ...

    def answer_synchronizer(self, findings: Findings) -> OperatorAnswers | None: ...

    def answer_invites_since(self, findings: Findings) -> datetime | None: ...

    def confirm(self, plan: UpgradePlan) -> bool: ...


@dataclass
class UpgradePlan:
    findings: Findings
    steps: list[StepPlan]
    now: datetime
    answers: OperatorAnswers

    @property
    def changes_pending(self) -> bool:
        return any(step.decision == "change" for step in self.steps)

    @property
    def blocked(self) -> bool:
        return any(s.decision == "blocked" and not s.action_required for s in self.steps)

    @property
    def estimate_seconds(self) -> float:
        return round(sum(s.estimate_seconds or 0 for s in self.steps), 1)


@dataclass
class UpgradeResult:
    plan: UpgradePlan
    mode: str  # "dry-run" or "upgrade"
    outcome: str
    exit_code: ExitCode
    run_id: int | None = None

    @property
    def outcome_text(self) -> str:
        return OUTCOME_TEXT[self.outcome]


OUTCOME_TEXT = {
    "changes_pending": "A real run will make the changes listed below.",
    "nothing_to_do": "The database is already safe for SuperOffice invites; nothing to change.",
    "done": "The database is now safe for SuperOffice invites.",
    "action_required": "The data is protected, but a person must still act (see warnings).",
    "blocked": "Blocked by a precondition: nothing was changed.",
    "failed": "The upgrade failed; see the error.",
    "interrupted": "Interrupted; run the same command again to resume.",
}


# --- planning (read-only) ---------------------------------------------------------------------


def plan_upgrade(
    db: Database,
    answers: OperatorAnswers,
    settings: UpgradeSettings,
    probe: HostProbe,
    now: datetime | None = None,
) -> UpgradePlan:
    now = now or utc_now()
    with db.engine.connect() as conn:
        findings = detect(conn, db.tables, db.books, answers, probe, now)
        ctx = _context(db, findings, settings, now)
        steps = [gate.plan(findings)]
        if steps[0].decision == "blocked":
            steps += _not_reached(findings)
        else:
            steps += [
                preference.plan(ctx, conn),
                preference.plan_overrides(ctx),
                mark_invites.plan(ctx, conn),
                synchronizer_check.plan(findings),
            ]
            # What the real run needs, checked alike for the dry run: both block (exit 3).
            planned = UpgradePlan(findings, steps, now, answers)
            steps = with_preconditions(steps, preconditions(conn, db.tables, planned))
    return UpgradePlan(findings, steps, now, answers)


def _not_reached(findings: Findings) -> list[StepPlan]:
    reason = "Not reached: the SuperOffice version gate blocks the upgrade."
    return [
        StepPlan(preference.STEP_ID, preference.TITLE, "skip", reason),
        StepPlan(preference.OVERRIDES_ID, preference.OVERRIDES_TITLE, "skip", reason),
        StepPlan(mark_invites.STEP_ID, mark_invites.TITLE, "skip", reason),
        synchronizer_check.plan(findings),
    ]


def _context(
    db: Database, findings: Findings, settings: UpgradeSettings, now: datetime
) -> StepContext:
    return StepContext(
        db.tables, db.books, findings, settings, db.engine.dialect, now, engine=db.engine
    )


def plan_with_answers(
    db: Database,
    answers: OperatorAnswers,
    settings: UpgradeSettings,
    probe: HostProbe,
    interaction: Interaction,
) -> UpgradePlan:
    """Plan, asking the operator (or failing unattended) for what detection could not settle."""
    plan = plan_upgrade(db, answers, settings, probe)
    if plan.findings.superoffice.status == "undetermined":
        version = interaction.answer_superoffice_version(plan.findings)
        if version:
            answers = dataclasses.replace(answers, superoffice_version=version)
            plan = plan_upgrade(db, answers, settings, probe)
    if plan.findings.synchronizer.in_use is None and not plan.blocked:
        answered = interaction.answer_synchronizer(plan.findings)
        if answered is not None:
            answers = dataclasses.replace(
                answers,
                synchronizer_version=answered.synchronizer_version,
                no_synchronizer=answered.no_synchronizer,
            )
            plan = plan_upgrade(db, answers, settings, probe)
    if _ask_invites_since(plan):
        since = interaction.answer_invites_since(plan.findings)
        if since is not None:
            answers = dataclasses.replace(answers, invites_since=since)
            plan = plan_upgrade(db, answers, settings, probe)
    return plan


def _ask_invites_since(plan: UpgradePlan) -> bool:
    """Footprint (c) waits for invites-since: ask when emailId rows exist and nothing says."""
    f = plan.findings
    return (
        not plan.blocked
        and f.synchronizer.in_use is True
        and f.invites_since.moment is None
        and f.invites_since.email_id_rows_exist
        and "email-id" in plan.answers.footprints
    )


# --- outcomes ---------------------------------------------------------------------------------


def dry_run_outcome(plan: UpgradePlan, detailed_exitcode: bool) -> tuple[str, ExitCode]:
    if plan.blocked:
        return "blocked", ExitCode.BLOCKED
    if plan.changes_pending:
        return "changes_pending", ExitCode.CHANGES_PENDING if detailed_exitcode else ExitCode.DONE
    if any(step.action_required for step in plan.steps):
        return "action_required", ExitCode.DONE
    return "nothing_to_do", ExitCode.DONE


def applied_outcome(plan: UpgradePlan, changed: bool) -> tuple[str, ExitCode]:
    if plan.blocked:
        return "blocked", ExitCode.BLOCKED
    if any(step.action_required for step in plan.steps):
        return "action_required", ExitCode.ACTION_REQUIRED
    return ("done" if changed else "nothing_to_do"), ExitCode.DONE


def exit_meaning(code: ExitCode) -> str:
    return EXIT_CODE_MEANINGS[code]


# --- the whole run ----------------------------------------------------------------------------


def run_upgrade(
    db: Database,
    answers: OperatorAnswers,
    settings: UpgradeSettings,
    probe: HostProbe,
    interaction: Interaction,
    *,
    dry_run: bool = False,
    detailed_exitcode: bool = False,
    lock_timeout: float = 0.0,
    progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> UpgradeResult:
    if dry_run:
        plan = plan_with_answers(db, answers, settings, probe, interaction)
        outcome, code = dry_run_outcome(plan, detailed_exitcode)
        return UpgradeResult(plan, "dry-run", outcome, code)
    with run_lock(
        db.engine,
        timeout_seconds=lock_timeout,
        describe_holder=lambda: lock_holder(db.engine, db.books),
    ) as lock:
        plan = plan_with_answers(db, answers, settings, probe, interaction)
        if plan.blocked:
            return UpgradeResult(plan, "upgrade", "blocked", ExitCode.BLOCKED)
        if not _needs_a_run(plan):
            outcome, code = applied_outcome(plan, changed=False)
            return UpgradeResult(plan, "upgrade", outcome, code)
        if not interaction.confirm(plan):
            raise SetupToolError("Cancelled at the confirmation: nothing was changed.")
        return apply_plan(db, plan, settings, progress, should_stop, lock.check)


def _needs_a_run(plan: UpgradePlan) -> bool:
    """A run is recorded when something changes, or to note since when the preference is on."""
    first_time_on = (
        plan.findings.synchronizer.in_use is True
        and plan.findings.history.last_preference_on_at is None
    )
    return plan.changes_pending or first_time_on


def apply_plan(
    db: Database,
    plan: UpgradePlan,
    settings: UpgradeSettings,
    progress: ProgressCallback | None,
    should_stop: Callable[[], bool],
    lock_check: Callable[[], None] = lambda: None,
) -> UpgradeResult:
    now = utc_now()
    findings = _window_until(plan.findings, plan.now, now)
    with db.engine.connect() as conn:
        require_rights(
            db, conn, _rights_needed(db, plan), create_tables=not findings.history.installed
        )
    with db.engine.begin() as conn:
        install_bookkeeping(conn, db.schema)
        close_dead_runs(conn, db.books)
        sync = findings.synchronizer.version
        run_id = start_run(
            conn,
            db.books,
            mode="upgrade",
            started_at=now,
            acting_associate_id=settings.acting_associate_id,
            superoffice_version=findings.superoffice.version.label()
            if findings.superoffice.version
            else None,
            synchronizer_version=sync.label() if sync else None,
        )
    ctx = _context(db, findings, settings, now)
    rows_seen = _RowsSeen(progress)
    ctx.run_id, ctx.progress, ctx.should_stop = run_id, rows_seen, should_stop
    ctx.lock_check = lock_check
    result = UpgradeResult(plan, "upgrade", "failed", ExitCode.FAILED, run_id)
    try:
        changed = _apply_steps(ctx, plan.steps)
    except InterruptedRun as stopped:  # between batches: whole batches only
        _finish(db, run_id, "interrupted", ExitCode.INTERRUPTED)
        result.outcome, result.exit_code = "interrupted", ExitCode.INTERRUPTED
        for step in plan.steps:
            if step.id == mark_invites.STEP_ID and step.decision == "change":
                step.rows = rows_seen.done
        raise InterruptedUpgrade(stopped, result) from None
    except KeyboardInterrupt:
        _finish(db, run_id, "interrupted", ExitCode.INTERRUPTED)
        raise
    except BaseException:
        _finish(db, run_id, "failed", ExitCode.FAILED)
        raise
    result.outcome, result.exit_code = applied_outcome(plan, changed)
    _finish(db, run_id, result.outcome, result.exit_code)
    return result


class InterruptedUpgrade(InterruptedRun):
    """An upgrade that stopped between batches when asked to (Ctrl-C, SIGTERM): the run is
    recorded as interrupted, and `result` tells what it did, so that the report is written."""

    def __init__(self, stopped: InterruptedRun, result: UpgradeResult) -> None:
        super().__init__(stopped.message, stopped.hint)
        self.result = result


class _RowsSeen:
    """The progress callback, remembering how many rows are marked so far."""

    def __init__(self, progress: ProgressCallback | None) -> None:
        self.progress = progress
        self.done = 0

    def __call__(self, done: int, total: int) -> None:
        self.done = done
        if self.progress is not None:
            self.progress(done, total)


def _rights_needed(db: Database, plan: UpgradePlan) -> list[Need]:
    tables, books = db.tables, db.books
    changing = {step.id for step in plan.steps if step.decision == "change"}
    needs: list[Need] = []
    if changing & {preference.STEP_ID, preference.OVERRIDES_ID}:
        needs += [
            (tables.userpreference, "UPDATE"),
            (tables.userpreference, "INSERT"),
            (tables.sequence, "UPDATE"),
        ]
    if mark_invites.STEP_ID in changing:
        needs.append((tables.appointment, "UPDATE"))
    if changing and plan.findings.travel.enabled and tables.traveltransactionlog is not None:
        needs += [(tables.traveltransactionlog, "INSERT"), (tables.sequence, "UPDATE")]
    if plan.findings.history.installed:
        needs += [
            (books.run, "INSERT"),
            (books.run, "UPDATE"),
            (books.step, "INSERT"),
            (books.step, "UPDATE"),
            (books.previous_value, "INSERT"),
            (books.candidate, "INSERT"),
            (books.candidate, "DELETE"),
        ]
    return needs


def _window_until(findings: Findings, planned_now: datetime, now: datetime) -> Findings:
    # A window that ended "now" at planning ends at the real start: the wizard may have waited.
    selection = findings.invites.selection
    if selection is None or selection.window.until != planned_now:
        return findings
    window = dataclasses.replace(selection.window, until=now)
    invites = dataclasses.replace(
        findings.invites, selection=dataclasses.replace(selection, window=window)
    )
    return dataclasses.replace(findings, invites=invites)


def _apply_steps(ctx: StepContext, steps: list[StepPlan]) -> bool:
    changed = False
    for step in steps:
        if step.id in (preference.STEP_ID, preference.OVERRIDES_ID):
            if step.decision == "change" or (
                step.id == preference.STEP_ID and ctx.findings.synchronizer.in_use
            ):
                preference.apply(ctx, step)
        elif step.id == mark_invites.STEP_ID and step.decision == "change":
            mark_invites.apply(ctx, step)
        changed = changed or (step.decision == "change" and step.rows > 0)
    return changed


def _finish(db: Database, run_id: int, outcome: str, code: ExitCode) -> None:
    # A fresh transaction: the failed one is gone, the record of what happened must not be.
    try:
        with db.engine.begin() as conn:
            finish_run(
                conn,
                db.books,
                run_id,
                status="completed"
                if code in (ExitCode.DONE, ExitCode.ACTION_REQUIRED)
                else outcome,
                outcome=outcome,
                exit_code=int(code),
                finished_at=utc_now(),
            )
    except Exception:  # the connection may be what failed; the original error matters more
        pass
