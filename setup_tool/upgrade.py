"""The upgrade as a whole: detect, decide each step, ask what must be asked, apply, record."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import Connection, update

from setup_tool import run_lifecycle
from setup_tool.bookkeeping import BOOKKEEPING_HEAD, COMPLETED
from setup_tool.clock import utc_now
from setup_tool.database import Database
from setup_tool.detect import OperatorAnswers, detect
from setup_tool.errors import (
    EXIT_CODE_MEANINGS,
    ExitCode,
    InterruptedRun,
    OperatorCancelled,
)
from setup_tool.findings import Findings
from setup_tool.host_probe import HostProbe
from setup_tool.logs import LOGGER
from setup_tool.preconditions import preconditions, with_preconditions
from setup_tool.privileges import Need, require_rights
from setup_tool.steps import (
    ApplyContext,
    PlanContext,
    ProgressCallback,
    StepOutcome,
    StepPlan,
    StepStopped,
    UpgradeSettings,
    preference,
)
from setup_tool.steps.mark_invites import STEP_ID as MARKING_STEP
from setup_tool.steps.registry import STEPS, step_named


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


@dataclass(frozen=True)
class StepTime:
    """When a step ran (UTC, time-zone aware) and for how long (a monotonic clock)."""

    started: datetime
    finished: datetime
    seconds: float


@dataclass(frozen=True)
class ResumedMarking:
    """An earlier run's marking that this run took up and finished."""

    run_id: int
    step_row_id: int
    rows_before: int  # marked by the earlier run(s) before it stopped
    batches_before: int


@dataclass
class UpgradeResult:
    plan: UpgradePlan
    mode: str  # "dry-run" or "upgrade"
    outcome: str
    exit_code: ExitCode
    run_id: int | None = None
    started: datetime | None = None  # UTC, aware: when the writes began (a real run)
    finished: datetime | None = None
    step_times: dict[str, StepTime] = field(default_factory=dict)
    resumed: ResumedMarking | None = None

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
        steps = plan_steps(plan_context(db, findings, settings, now), conn)
        if not any(step.decision == "blocked" for step in steps if _is_gate(step)):
            # What the real run needs, checked alike for the dry run: both block (exit 3).
            planned = UpgradePlan(findings, steps, now, answers)
            steps = with_preconditions(steps, preconditions(conn, db.tables, planned))
    return UpgradePlan(findings, steps, now, answers)


def plan_steps(ctx: PlanContext, conn: Connection) -> list[StepPlan]:
    """Every registered step's plan, in order; once a gate blocks, the rest are not reached."""
    steps: list[StepPlan] = []
    blocked_by: str | None = None
    for step in STEPS:
        if blocked_by is not None:
            steps.append(step.not_reached(ctx.findings, blocked_by))
            continue
        planned = step.plan(ctx, conn)
        steps.append(planned)
        if step.gates and planned.decision == "blocked":
            blocked_by = step.not_reached_reason(ctx.findings)
    return steps


def _is_gate(planned: StepPlan) -> bool:
    step = step_named(planned.id)
    return step is not None and step.gates


def plan_context(
    db: Database, findings: Findings, settings: UpgradeSettings, now: datetime
) -> PlanContext:
    return PlanContext(db.tables, db.books, findings, settings, db.engine.dialect, now)


def plan_with_answers(
    db: Database,
    answers: OperatorAnswers,
    settings: UpgradeSettings,
    probe: HostProbe,
    interaction: Interaction,
) -> UpgradePlan:
    """Plan, asking the operator (or failing unattended) for what detection could not settle."""
    plan = plan_upgrade(db, answers, settings, probe)
    if plan.findings.travel.role.refuses:  # a satellite or travel copy: refused, nothing asked
        return plan
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
        _log_plan(plan)
        outcome, code = dry_run_outcome(plan, detailed_exitcode)
        return UpgradeResult(plan, "dry-run", outcome, code)
    with run_lifecycle.held_lock(db, lock_timeout) as lock:
        plan = plan_with_answers(db, answers, settings, probe, interaction)
        _log_plan(plan)
        if plan.blocked:
            return UpgradeResult(plan, "upgrade", "blocked", ExitCode.BLOCKED)
        if not _needs_a_run(plan):
            outcome, code = applied_outcome(plan, changed=False)
            return UpgradeResult(plan, "upgrade", outcome, code)
        if not interaction.confirm(plan):
            LOGGER.info("decision: the operator declined at the confirmation")
            raise OperatorCancelled("Cancelled at the confirmation: nothing was changed.")
        return apply_plan(db, plan, settings, progress, should_stop, lock.check)


def _log_plan(plan: UpgradePlan) -> None:
    from setup_tool.support_log import log_findings, log_plan

    log_findings(plan.findings)
    log_plan(plan)


def _needs_a_run(plan: UpgradePlan) -> bool:
    """A run is recorded when something changes, or to note since when the preference is on."""
    return plan.changes_pending or preference.needs_first_on_time(plan.findings)


def apply_plan(
    db: Database,
    plan: UpgradePlan,
    settings: UpgradeSettings,
    progress: ProgressCallback | None,
    should_stop: Callable[[], bool],
    lock_check: Callable[[], None] = lambda: None,
) -> UpgradeResult:
    """Apply the plan's steps in registry order, as one recorded run (setup_tool.run_lifecycle).
    The result's plan is the plan as applied: each step's rows, time and batches as they were."""
    now = utc_now()
    findings = _window_until(plan.findings, plan.now, now)
    with db.engine.connect() as conn:
        require_rights(
            db, conn, _rights_needed(db, plan), create_tables=not findings.history.installed
        )
    sync, superoffice = findings.synchronizer.version, findings.superoffice.version
    run = run_lifecycle.start(
        db,
        mode="upgrade",
        started_at=now,
        acting_associate_id=settings.acting_associate_id,
        superoffice_version=superoffice.label() if superoffice else None,
        synchronizer_version=sync.label() if sync else None,
    )
    ctx = _apply_context(db, plan, findings, settings, run.run_id, now, progress, should_stop)
    ctx = dataclasses.replace(ctx, lock_check=lock_check)
    result = UpgradeResult(
        plan, "upgrade", "failed", ExitCode.FAILED, run.run_id, started=_aware(now)
    )
    result.resumed = _resumed(findings)
    outcomes: dict[str, StepOutcome] = {}
    with run_lifecycle.recorded(run):
        try:
            _apply_steps(ctx, plan.steps, result, outcomes)
        except InterruptedRun as stopped:  # between batches: whole batches only
            if isinstance(stopped, StepStopped):
                outcomes[MARKING_STEP] = stopped.outcome
            result.plan = _as_applied(plan, outcomes, result.step_times)
            result.outcome, result.exit_code = "interrupted", ExitCode.INTERRUPTED
            result.finished = datetime.now(UTC)
            raise InterruptedUpgrade(stopped, result) from None
        changed = any(
            planned.decision == "change" and outcomes[planned.id].rows > 0
            for planned in plan.steps
            if planned.id in outcomes
        )
        result.plan = _as_applied(plan, outcomes, result.step_times)
        result.outcome, result.exit_code = applied_outcome(plan, changed)
        result.finished = datetime.now(UTC)
        run.finish(result.outcome, result.exit_code)
    return result


def _apply_context(
    db: Database,
    plan: UpgradePlan,
    findings: Findings,
    settings: UpgradeSettings,
    run_id: int,
    now: datetime,
    progress: ProgressCallback | None,
    should_stop: Callable[[], bool],
) -> ApplyContext:
    """What applying sees; and what the steps open with the preference switch, in its
    transaction (Step.with_preference_switch)."""
    ctx = ApplyContext(
        db.tables,
        db.books,
        findings,
        settings,
        db.engine.dialect,
        now,
        engine=db.engine,
        run_id=run_id,
        should_stop=should_stop,
    )
    if progress is not None:
        ctx = dataclasses.replace(ctx, progress=progress)
    with_switch = [
        statement
        for planned in plan.steps
        if (step := step_named(planned.id)) is not None
        for statement in step.with_preference_switch(ctx, planned, run_id, now)
    ]
    return dataclasses.replace(ctx, with_preference=tuple(with_switch))


def _as_applied(
    plan: UpgradePlan, outcomes: dict[str, StepOutcome], times: dict[str, StepTime]
) -> UpgradePlan:
    """The plan with what each applied step did (rows, batches) and how long it took."""
    steps = []
    for planned in plan.steps:
        outcome, took = outcomes.get(planned.id), times.get(planned.id)
        if outcome is not None:
            planned = dataclasses.replace(
                planned, rows=outcome.rows, batches=outcome.batches or planned.batches
            )
        if took is not None:
            planned = dataclasses.replace(planned, duration_seconds=took.seconds)
        steps.append(planned)
    return dataclasses.replace(plan, steps=steps)


def _aware(moment: datetime) -> datetime:
    """A naive UTC datetime (as SuperOffice and the bookkeeping store them), made aware."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _resumed(findings: Findings) -> ResumedMarking | None:
    unfinished = findings.history.unfinished
    if unfinished is None:
        return None
    return ResumedMarking(
        unfinished.run_id,
        unfinished.step_row_id,
        unfinished.rows_changed,
        unfinished.batches_done,
    )


class InterruptedUpgrade(InterruptedRun):
    """An upgrade that stopped between batches when asked to (Ctrl-C, SIGTERM): the run is
    recorded as interrupted, and `result` tells what it did, so that the report is written."""

    def __init__(self, stopped: InterruptedRun, result: UpgradeResult) -> None:
        super().__init__(stopped.message, stopped.hint)
        self.result = result


def _rights_needed(db: Database, plan: UpgradePlan) -> list[Need]:
    """The rights the changing steps declare, then those on the tool's own tables."""
    tables, books = db.tables, db.books
    needs: list[Need] = []
    for planned in plan.steps:
        step = step_named(planned.id)
        if step is None or planned.decision != "change":
            continue
        needs += [n for n in step.rights(tables, plan.findings) if n not in needs]
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
        if plan.findings.history.revision == BOOKKEEPING_HEAD:  # else this run creates it
            needs.append((books.batch, "INSERT"))
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


def _apply_steps(
    ctx: ApplyContext,
    steps: list[StepPlan],
    result: UpgradeResult,
    outcomes: dict[str, StepOutcome],
) -> None:
    """Each registered step the plan applies, in order; `outcomes` fills in as they finish."""
    for planned in steps:
        step = step_named(planned.id)
        if step is None or not step.applies(planned, ctx.findings):
            continue
        with _timed(ctx, planned.id, result):
            outcomes[planned.id] = step.apply(ctx, planned)


@contextmanager
def _timed(ctx: ApplyContext, step_id: str, result: UpgradeResult) -> Iterator[None]:
    """Time one step; once it completed, its bookkeeping rows say when it really ran (the steps
    stamp them with the run's start) and a resumed step names this run as the one that
    finished it. An interrupted step keeps its times in the result, for the report."""
    started, clock = datetime.now(UTC), time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - clock
        result.step_times[step_id] = StepTime(started, datetime.now(UTC), round(seconds, 3))
    _record_step_times(ctx, step_id, result)


def _record_step_times(ctx: ApplyContext, step_id: str, result: UpgradeResult) -> None:
    times = result.step_times[step_id]
    s = ctx.books.step
    naive = {
        "started_at": times.started.replace(tzinfo=None, microsecond=0),
        "finished_at": times.finished.replace(tzinfo=None, microsecond=0),
    }
    with ctx.engine.begin() as conn:
        conn.execute(
            update(s)
            .where(s.c.run_id == ctx.run_id, s.c.step_key == step_id, s.c.status == COMPLETED)
            .values(finished_by_run_id=ctx.run_id, **naive)
        )
        if step_id == MARKING_STEP and result.resumed is not None:
            conn.execute(
                update(s)
                .where(s.c.step_row_id == result.resumed.step_row_id, s.c.status == COMPLETED)
                .values(finished_by_run_id=ctx.run_id, finished_at=naive["finished_at"])
            )
