"""The upgrade steps. Each step plans (read-only, the dry run stops there) and then applies."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Engine, SmallInteger, case, literal
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from setup_tool.bookkeeping import Bookkeeping
from setup_tool.findings import Findings
from setup_tool.lock_waits import (
    DEFAULT_LOCK_WAIT_RETRIES,
    DEFAULT_LOCK_WAIT_SECONDS,
    LockWaitTally,
)
from setup_tool.schema import SuperOfficeTables

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


@dataclass
class StepContext:
    """Everything a step needs; `conn` is read-only in planning."""

    tables: SuperOfficeTables
    books: Bookkeeping
    findings: Findings
    settings: UpgradeSettings
    dialect: Dialect
    now: datetime
    run_id: int | None = None
    engine: Engine | None = None
    progress: ProgressCallback | None = None
    should_stop: Callable[[], bool] = lambda: False
    # Raises (setup_tool.locking.LockLostError) once the run lock is no longer held; called in
    # each batch's transaction just before it commits.
    lock_check: Callable[[], None] = lambda: None


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
