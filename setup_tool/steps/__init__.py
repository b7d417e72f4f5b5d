"""The upgrade steps. Each step plans (read-only, the dry run stops there), then applies, and
has its inverse for undo: one `Step` each, listed once in setup_tool.steps.registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    SmallInteger,
    and_,
    case,
    literal,
    or_,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import UpdateBase

from setup_tool.bookkeeping import Bookkeeping
from setup_tool.errors import ExitCode, InterruptedRun
from setup_tool.findings import Findings
from setup_tool.lock_waits import (
    DEFAULT_LOCK_WAIT_RETRIES,
    DEFAULT_LOCK_WAIT_SECONDS,
    LockWaitTally,
)
from setup_tool.schema import SuperOfficeTables

if TYPE_CHECKING:
    from setup_tool.privileges import Need

Decision = Literal["change", "done", "skip", "blocked"]


@dataclass
class BatchFigures:
    """A step that works in batches: its pace as planned (rows per batch, the pause between
    batches) and, after a real run, what its batches met (for the report)."""

    size: int
    pause_seconds: float = 0.0
    planned: int = 0  # batches the plan expects
    done: int = 0  # batches this run committed
    longest_seconds: float | None = None  # the longest batch, from its start to its commit
    longest_batch: int | None = None  # its number
    longest_lock_seconds: float | None = None  # the longest a batch took to lock its rows
    lock_waits: LockWaitTally = field(default_factory=LockWaitTally)
    paused_seconds: float = 0.0  # spent in --pause-between-batches

    def record(self, batch_no: int, seconds: float, lock_seconds: float | None) -> None:
        """One committed batch: how long it took, and how long it took to lock its rows."""
        self.done += 1
        if self.longest_seconds is None or seconds > self.longest_seconds:
            self.longest_seconds, self.longest_batch = seconds, batch_no
        if lock_seconds is not None and (
            self.longest_lock_seconds is None or lock_seconds > self.longest_lock_seconds
        ):
            self.longest_lock_seconds = lock_seconds

    def pace_text(self) -> str:
        """The plan: "in about 12 batches of up to 2,000 rows, resting 0.5 s between them"."""
        batches = "batch" if self.planned == 1 else "batches"
        text = f"in about {self.planned:,} {batches} of up to {self.size:,} rows"
        if self.pause_seconds > 0:
            total = self.pause_seconds * max(0, self.planned - 1)
            text += f", resting {self.pause_seconds:g} s between them ({total:,.0f} s in all)"
        return text

    def outcome_text(self) -> str:
        """What the batches met, in one sentence for the report."""
        waits = self.lock_waits
        parts = [f"{self.done:,} batch{'es' if self.done != 1 else ''} of up to {self.size:,} rows"]
        if self.longest_seconds is not None:
            parts.append(
                f"the longest took {self.longest_seconds:.2f} s (batch {self.longest_batch})"
            )
        if self.longest_lock_seconds is not None:
            parts.append(f"locking a batch's rows took at most {self.longest_lock_seconds:.2f} s")
        parts.append(
            f"lock waits given up: {waits.timeouts}, deadlocks: {waits.deadlocks}, "
            f"retries: {waits.retries}"
        )
        if self.pause_seconds > 0:
            parts.append(f"rested {self.paused_seconds:.1f} s between batches")
        return "; ".join(parts) + "."


@dataclass
class StepPlan:
    """What a step will do (dry run) or did (real run). `rows` = rows it changes."""

    id: str
    title: str
    decision: Decision
    reason: str
    rows: int = 0
    sample_ids: list[int] = field(default_factory=list)
    sql: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    estimate_seconds: float | None = None
    duration_seconds: float | None = None
    action_required: bool = False  # the run can finish, but a person must still act
    batches: BatchFigures | None = None  # the marking's pace and, after a run, its batches


@dataclass(frozen=True)
class UpgradeSettings:
    acting_associate_id: int = 0
    # Rows per batch. A user who needs a row of the batch in flight waits until it commits, so
    # shorter batches keep users' waits short; each batch also pays a commit. Measured with users
    # at work (benchmarks/online.py, README "Users at work during the marking"): at 1,000 rows
    # users' p99 stays near its level with no marking, and the marking is no slower than at 2,000.
    batch_size: int = 1000
    fix_overrides: bool = False
    # How long one batch waits for a row lock another session holds, and how often a batch that
    # timed out or was chosen as a deadlock victim is tried again (setup_tool.lock_waits).
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
    lock_wait_retries: int = DEFAULT_LOCK_WAIT_RETRIES
    # Seconds the marking rests between two batches (--pause-between-batches), for a server that
    # is busy during the day: users' statements get the server to themselves meanwhile.
    pause_between_batches: float = 0.0


ProgressCallback = Callable[[int, int], None]  # (rows done, rows total)


@dataclass(frozen=True)
class PlanContext:
    """What planning sees: the findings and the settings, read-only (the dry run stops here).
    The T-SQL script builds its statements from the same context."""

    tables: SuperOfficeTables
    books: Bookkeeping
    findings: Findings
    settings: UpgradeSettings
    dialect: Dialect
    now: datetime


def _no_progress(_done: int, _total: int) -> None:
    return None


def _never() -> bool:
    return False


def _still_held() -> None:
    return None


@dataclass(frozen=True)
class ApplyContext(PlanContext):
    """What applying sees: a started run on a writable engine. Only the run lifecycle
    (setup_tool.run_lifecycle) makes one, once the run's record exists."""

    engine: Engine
    run_id: int
    progress: ProgressCallback = _no_progress
    should_stop: Callable[[], bool] = _never
    # Raises (setup_tool.locking.LockLostError) once the run lock is no longer held; called in
    # each transaction of a step just before it commits.
    lock_check: Callable[[], None] = _still_held
    # Statements that must commit with the preference switch, the moment that ends the marking
    # window (Step.with_preference_switch): built by the lifecycle from the other steps' plans.
    with_preference: tuple[UpdateBase, ...] = ()


@dataclass(frozen=True)
class StepOutcome:
    """What applying a step did: the rows it changed and, for a step that works in batches,
    what its batches met. The report shows these, beside the plan."""

    rows: int
    batches: BatchFigures | None = None


class StepStopped(InterruptedRun):
    """A step stopped between two of its transactions when asked to (Ctrl-C, SIGTERM): what it
    did until then travels with it, for the report."""

    def __init__(self, stopped: InterruptedRun, outcome: StepOutcome) -> None:
        super().__init__(stopped.message, stopped.hint)
        self.outcome = outcome


class Step:
    """One upgrade step, declared once (as sqlfluff declares a rule): its id and title, the
    rights it needs, its plan, its change, and the inverse undo applies. The registry
    (setup_tool.steps.registry) lists the steps in the order upgrade, the dry run, undo,
    history and the T-SQL script (setup_tool.tsql_script) take them."""

    id: ClassVar[str]
    title: ClassVar[str]
    # The SuperOffice table whose rows the step changes, records in setup_tool_previous_value
    # (its table_name) and logs for Travel; None for a step that only checks.
    recorded_table: ClassVar[str | None] = None
    # A gate: once it blocks, the steps after it are not reached (`not_reached`).
    gates: ClassVar[bool] = False

    def plan(self, ctx: PlanContext, conn: Connection) -> StepPlan:
        raise NotImplementedError

    def not_reached_reason(self, findings: Findings) -> str:
        """Why the steps after this gate do nothing, once it blocks."""
        return f"Not reached: '{self.title}' blocks the upgrade."

    def not_reached(self, findings: Findings, reason: str) -> StepPlan:
        """Its plan when the gate blocks the upgrade: by default, skipped for `reason`."""
        return StepPlan(self.id, self.title, "skip", reason)

    def rights(self, tables: SuperOfficeTables, findings: Findings) -> list[Need]:
        """The rights on SuperOffice's tables a run needs when this step changes rows."""
        return []

    def applies(self, planned: StepPlan, findings: Findings) -> bool:
        """Whether a real run applies it: by default when it changes rows."""
        return planned.decision == "change"

    def with_preference_switch(
        self, ctx: PlanContext, planned: StepPlan, run_id: SqlValue, now: SqlValue
    ) -> list[UpdateBase]:
        """Statements (bookkeeping) that must commit in the transaction that switches the
        preference on, for the run `run_id` started at `now` (values, or the T-SQL script's
        variables)."""
        return []

    def apply(self, ctx: ApplyContext, planned: StepPlan) -> StepOutcome:
        return StepOutcome(planned.rows)

    def undo(self, job: UndoJob, step_row_id: int) -> None:
        """Put back what the step changed in one of its step rows (see setup_tool.undo)."""
        return None


@dataclass
class UndoResult:
    undone_runs: list[int] = field(default_factory=list)
    restored: int = 0
    removed: int = 0
    conflicts: list[str] = field(default_factory=list)
    undo_run_id: int | None = None
    # Runs an earlier undo had started and not finished (interrupted, killed, failed): resumed.
    resumed_runs: list[int] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.ACTION_REQUIRED if self.conflicts else ExitCode.DONE


@dataclass
class UndoJob:
    """What a step's inverse sees: the undo run (started: its id is not optional), where it
    reports, and how it is stopped."""

    engine: Engine
    tables: SuperOfficeTables
    books: Bookkeeping
    travel: bool
    acting_associate_id: int
    undo_run_id: int
    result: UndoResult
    progress: Callable[[int, int], None] | None
    should_stop: Callable[[], bool]
    batch_size: int
    # Called inside each transaction just before it commits: raises once the run lock is lost.
    check_lock: Callable[[], None]
    batches: int = 0

    def stop_if_asked(self) -> None:
        """Between batches (each one transaction): stop when asked, resumably."""
        if self.should_stop():
            raise InterruptedRun(
                f"Undo stopped after batch {self.batches}; {self.result.restored:,} rows "
                "restored so far.",
                "Run the same command again to finish the undo. Until then the runs it started "
                "on no longer protect anything: the next upgrade marks again what came back.",
            )


def same(a: ColumnElement[Any], b: ColumnElement[Any]) -> ColumnElement[bool]:
    """a IS NOT DISTINCT FROM b, written so every engine understands it and it is never NULL
    (so its negation is safe too): equal values, or both NULL."""
    return or_(
        and_(a.is_not(None), b.is_not(None), a == b),
        and_(a.is_(None), b.is_(None)),
    )


def holds(current: Any, expected: dict[str, Any]) -> bool:
    """A row read back holds these values (None equals None, as in SQL's IS NOT DISTINCT)."""
    return current is not None and all(
        getattr(current, name) == value for name, value in expected.items()
    )


# A value in a statement: a Python value (bound when run), or SQL such as a T-SQL variable in the
# DBA script (setup_tool.tsql_script).
SqlValue = int | datetime | ColumnElement[Any]


def sql_value(value: SqlValue) -> ColumnElement[Any]:
    return value if isinstance(value, ColumnElement) else literal(value)


MAX_UPDATED_COUNT = 65535  # updatedCount is a 16-bit unsigned counter


SIGNED_SMALLINT_MAX = 32767


def next_updated_count(count: ColumnElement[int]) -> ColumnElement[int]:
    """updatedCount + 1, capped where SuperOffice caps it (lower where a DBA made it SMALLINT)."""
    cap = SIGNED_SMALLINT_MAX if isinstance(count.type, SmallInteger) else MAX_UPDATED_COUNT
    return case((count >= cap, cap), else_=count + 1)


def render_sql(statement: ClauseElement, dialect: Dialect) -> str:
    """A statement as the target database receives it, values inlined for a human to read."""
    compiled = statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    return str(compiled).strip()
