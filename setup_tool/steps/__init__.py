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
from setup_tool.lock_waits import DEFAULT_LOCK_WAIT_RETRIES, DEFAULT_LOCK_WAIT_SECONDS
from setup_tool.schema import SuperOfficeTables

Decision = Literal["change", "done", "skip", "blocked"]


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


@dataclass(frozen=True)
class UpgradeSettings:
    acting_associate_id: int = 0
    batch_size: int = 2000
    fix_overrides: bool = False
    # How long one batch waits for a row lock another session holds, and how often a batch that
    # timed out or was chosen as a deadlock victim is tried again (setup_tool.lock_waits).
    lock_wait_seconds: float = DEFAULT_LOCK_WAIT_SECONDS
    lock_wait_retries: int = DEFAULT_LOCK_WAIT_RETRIES


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
