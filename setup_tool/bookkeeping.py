"""The tool's own records in the customer database: runs, steps, checkpoints, previous values.

The tables live beside the SuperOffice tables (same schema) under a `setup_tool_` prefix and are
created and evolved by the alembic migrations in `migrations/`.
"""

from __future__ import annotations

import functools
import io
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Float,
    Index,
    Insert,
    Integer,
    MetaData,
    Select,
    SmallInteger,
    String,
    Table,
    UnicodeText,
    Update,
    inspect,
    select,
    update,
)

from setup_tool import __version__
from setup_tool.errors import ExitCode
from setup_tool.logs import LOGGER
from setup_tool.resources import migrations_dir

VERSION_TABLE = "setup_tool_alembic_version"
TOOL_VERSION_LENGTH = 40  # setup_tool_run.tool_version
SCRIPT_RUN_WORD = "script"  # in tool_version: the run of a T-SQL script (setup_tool.tsql_script)
BOOKKEEPING_HEAD = "0003"  # the newest migration in migrations/versions


def _tables(metadata: MetaData, schema: str | None) -> None:
    Table(
        "setup_tool_run",
        metadata,
        Column("run_id", Integer, primary_key=True, autoincrement=True),
        Column("mode", String(20), nullable=False),
        Column("status", String(20), nullable=False),
        Column("started_at", DateTime, nullable=False),
        Column("finished_at", DateTime),
        Column("outcome", String(30)),
        Column("exit_code", Integer),
        Column("tool_version", String(TOOL_VERSION_LENGTH), nullable=False),
        Column("host", String(255), nullable=False),
        Column("os_user", String(255), nullable=False),
        Column("acting_associate_id", Integer, nullable=False),
        Column("superoffice_version", String(255)),
        Column("synchronizer_version", String(255)),
        # When this run made sure Diary Synchronizer Active is on: the end of the marking window.
        Column("preference_on_at", DateTime),
        Column("undone_by_run_id", Integer),
        Column("report_json", UnicodeText),
        schema=schema,
    )
    Table(
        "setup_tool_step",
        metadata,
        Column("step_row_id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", Integer, nullable=False),
        Column("step_key", String(40), nullable=False),
        Column("status", String(20), nullable=False),
        Column("rows_planned", Integer, nullable=False, default=0),
        Column("rows_changed", Integer, nullable=False, default=0),
        Column("window_from", DateTime),
        Column("window_until", DateTime),
        # What else decided the selection (revision 0002): a resumed step selects the same rows.
        Column("invites_since", DateTime),
        Column("footprints", String(60)),
        Column("checkpoint_key", BigInteger),
        Column("batches_done", Integer, nullable=False, default=0),
        Column("started_at", DateTime, nullable=False),
        Column("finished_at", DateTime),
        # The run that completed the step (revision 0003): a later run when it resumed it.
        Column("finished_by_run_id", Integer),
        # Named as revision 0001 names it: `index=True` would put the schema in the name.
        Index("ix_setup_tool_step_run_id", "run_id"),
        schema=schema,
    )
    Table(
        "setup_tool_previous_value",
        metadata,
        Column(
            "previous_value_id",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("step_row_id", Integer, nullable=False),
        Column("batch_no", Integer, nullable=False),
        Column("table_name", String(64), nullable=False),
        Column("record_id", Integer, nullable=False),
        # 1 when the tool inserted the row: undo deletes it instead of restoring values.
        Column("inserted", SmallInteger, nullable=False),
        Column("caution_warning", SmallInteger),
        Column("prefvalue", String(2000)),
        Column("updated", DateTime),
        Column("updated_associate_id", Integer),
        Column("updated_count", Integer),
        # What the tool wrote, so undo can tell a row someone changed afterwards.
        Column("new_updated_count", Integer),
        # ...and the `updated` stamp it wrote: at the counter's cap only the stamp tells.
        Column("new_updated", DateTime),
        # Undo and the T-SQL script read a step's previous values batch by batch (revision 0001).
        Index("ix_setup_tool_previous_value_step_batch", "step_row_id", "batch_no"),
        schema=schema,
    )
    Table(
        # One row per committed marking batch (revision 0003): what the report draws and a
        # support case reads. `run_id` is the run that ran the batch, which for a resumed step
        # is not the run that opened it.
        "setup_tool_batch",
        metadata,
        Column(
            "batch_id",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        Column("run_id", Integer, nullable=False),
        Column("step_row_id", Integer, nullable=False),
        Column("batch_no", Integer, nullable=False),
        Column("lo", BigInteger, nullable=False),
        Column("hi", BigInteger, nullable=False),
        Column("rows_changed", Integer, nullable=False),
        Column("seconds", Float, nullable=False),
        Column("finished_at", DateTime, nullable=False),
        Index("ix_setup_tool_batch_step_batch", "step_row_id", "batch_no"),
        schema=schema,
    )
    Table(
        "setup_tool_candidate",
        metadata,
        Column("step_row_id", Integer, primary_key=True, autoincrement=False),
        Column("appointment_id", Integer, primary_key=True, autoincrement=False),
        schema=schema,
    )


@dataclass(frozen=True)
class Bookkeeping:
    """The tool's tables for one schema (the same schema as the SuperOffice tables)."""

    schema: str | None
    run: Table
    step: Table
    previous_value: Table
    candidate: Table
    batch: Table

    @classmethod
    def for_schema(cls, schema: str | None) -> Bookkeeping:
        metadata = MetaData()
        _tables(metadata, schema)
        prefix = f"{schema}." if schema else ""
        return cls(
            schema=schema,
            run=metadata.tables[prefix + "setup_tool_run"],
            step=metadata.tables[prefix + "setup_tool_step"],
            previous_value=metadata.tables[prefix + "setup_tool_previous_value"],
            candidate=metadata.tables[prefix + "setup_tool_candidate"],
            batch=metadata.tables[prefix + "setup_tool_batch"],
        )

    @property
    def metadata(self) -> MetaData:
        metadata = self.run.metadata
        assert metadata is not None
        return metadata


def record_previous_values(books: Bookkeeping, rows: Select[Any], value_column: str) -> Insert:
    """INSERT ... SELECT of previous values; the rowcount is kept, as callers check it.

    `rows` selects, in this order: step_row_id, batch_no, table_name, record_id, inserted, the old
    value (`value_column`: caution_warning or prefvalue), updated, updated_associate_id,
    updated_count, and what the tool writes: new_updated_count, new_updated.
    """
    columns = [
        "step_row_id",
        "batch_no",
        "table_name",
        "record_id",
        "inserted",
        value_column,
        "updated",
        "updated_associate_id",
        "updated_count",
        "new_updated_count",
        "new_updated",
    ]
    pv = books.previous_value
    insert = pv.insert().from_select([pv.c[name] for name in columns], rows)
    recorded: Insert = insert.execution_options(preserve_rowcount=True)
    return recorded


def bookkeeping_metadata(schema: str | None) -> MetaData:
    """Used by the migrations: one definition of the tables for both code and DDL."""
    return Bookkeeping.for_schema(schema).metadata


def is_bookkeeping_name(
    schema: str | None, name: str | None, type_: str, _parents: Mapping[str, str | None]
) -> bool:
    """For alembic's autogenerate (`include_name`): the tool's own tables in its schema, never
    SuperOffice's tables beside them nor alembic's version table."""
    if type_ == "schema":
        return name == schema
    if type_ == "table":
        return name is not None and name.startswith("setup_tool_") and name != VERSION_TABLE
    return True


def model_differences(conn: Connection, schema: str | None) -> list[Any]:
    """What `alembic check` reports for the tool's tables: how the database, as the migrations
    left it, differs from the model above (tables, columns, types, nullability, indexes).
    Empty when they agree; otherwise the next autogenerated revision would "fix" the difference.
    """
    context = MigrationContext.configure(
        conn,
        opts={
            "version_table": VERSION_TABLE,
            "version_table_schema": schema,
            "include_schemas": schema is not None,
            "include_name": functools.partial(is_bookkeeping_name, schema),
            "compare_type": True,
            "compare_server_default": True,
        },
    )
    return list(compare_metadata(context, bookkeeping_metadata(schema)))


def alembic_config(schema: str | None, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["schema"] = schema
    config.attributes["connection"] = connection
    return config


def installed_revision(conn: Connection, schema: str | None) -> str | None:
    """The bookkeeping revision present in the database (read-only; None when never installed)."""
    if not inspect(conn).has_table(VERSION_TABLE, schema=schema):
        return None
    context = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "version_table_schema": schema}
    )
    return context.get_current_revision()


def install_bookkeeping(conn: Connection, schema: str | None) -> None:
    """Create or upgrade the tool's tables (alembic `upgrade head`) in the caller's transaction."""
    command.upgrade(alembic_config(schema, conn), "head")


def bookkeeping_sql(
    schema: str | None, dialect_name: str, since_revision: str | None = None
) -> str:
    """The DDL `install_bookkeeping` would run on a database at `since_revision` (None: never
    installed), as a script for the given dialect (offline mode)."""
    buffer = io.StringIO()
    config = alembic_config(schema)
    config.attributes["dialect_name"] = dialect_name
    # A connected run on SQL Server 2012 or newer creates NVARCHAR(max), never the deprecated
    # NTEXT: the offline script must create the same types (migrations/env.py passes this on).
    if dialect_name == "mssql":
        config.attributes["dialect_opts"] = {"deprecate_large_types": True}
    config.attributes["output_buffer"] = buffer
    span = f"{since_revision}:head" if since_revision else "head"
    command.upgrade(config, span, sql=True)
    return buffer.getvalue()


# --- the statements a run's records are written with -------------------------------------------
#
# Built once, run by setup-tool and written into the DBA's T-SQL script (setup_tool.tsql_script)
# alike: a value is a Python value, or SQL such as a script variable.

RUNNING, COMPLETED, INTERRUPTED, FAILED = "running", "completed", "interrupted", "failed"


def start_run_statement(
    books: Bookkeeping,
    *,
    mode: str,
    started_at: Any,
    acting_associate_id: int,
    superoffice_version: str | None,
    synchronizer_version: str | None,
    tool_version: Any = __version__,
    host: Any = None,
    os_user: Any = None,
) -> Insert:
    return books.run.insert().values(
        mode=mode,
        status=RUNNING,
        started_at=started_at,
        tool_version=tool_version,
        host=socket.gethostname() if host is None else host,
        os_user=_os_user() if os_user is None else os_user,
        acting_associate_id=acting_associate_id,
        superoffice_version=superoffice_version,
        synchronizer_version=synchronizer_version,
    )


def start_run(
    conn: Connection,
    books: Bookkeeping,
    *,
    mode: str,
    started_at: datetime,
    acting_associate_id: int,
    superoffice_version: str | None,
    synchronizer_version: str | None,
) -> int:
    result = conn.execute(
        start_run_statement(
            books,
            mode=mode,
            started_at=started_at,
            acting_associate_id=acting_associate_id,
            superoffice_version=superoffice_version,
            synchronizer_version=synchronizer_version,
        )
    )
    run_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
    assert run_id is not None
    return int(run_id)


def run_status(outcome: str, exit_code: int) -> str:
    """The status a finished run records: completed when it did its work (exit 0, or exit 4: done,
    with a person still to act), else its outcome (interrupted, failed)."""
    return COMPLETED if exit_code in (ExitCode.DONE, ExitCode.ACTION_REQUIRED) else outcome


def finish_run_statement(
    books: Bookkeeping, run_id: Any, *, outcome: str, exit_code: int, finished_at: Any
) -> Update:
    run = books.run
    return (
        update(run)
        .where(run.c.run_id == run_id)
        .values(
            status=run_status(outcome, exit_code),
            outcome=outcome,
            exit_code=exit_code,
            finished_at=finished_at,
        )
    )


def completed_step_statement(
    books: Bookkeeping,
    run_id: Any,
    step_key: str,
    rows: int,
    now: Any,
    finished_by_run_id: Any = None,
) -> Insert:
    """The row of a step done in one transaction (the preference, the overrides)."""
    return books.step.insert().values(
        run_id=run_id,
        step_key=step_key,
        status=COMPLETED,
        rows_planned=rows,
        rows_changed=rows,
        batches_done=1,
        started_at=now,
        finished_at=now,
        finished_by_run_id=finished_by_run_id,
    )


def close_dead_runs(conn: Connection, books: Bookkeeping) -> None:
    """Runs still marked running while we hold the lock died (killed, crashed, lost connection)."""
    conn.execute(dead_runs_statement(books))


def dead_runs_statement(books: Bookkeeping) -> Update:
    """Records runs still marked running as interrupted: only for a caller holding the lock."""
    return (
        update(books.run)
        .where(books.run.c.status == RUNNING)
        .values(status=INTERRUPTED, outcome=INTERRUPTED)
    )


def script_run_mark(script_id: str) -> str:
    """The tool_version of a run the T-SQL script records: the version and the script's own id,
    which its later batches (and a re-run of the same script) find the run by."""
    mark = f"{__version__} {SCRIPT_RUN_WORD} {script_id}"
    if len(mark) > TOOL_VERSION_LENGTH:
        raise ValueError(f"script run mark {mark!r} is longer than {TOOL_VERSION_LENGTH}")
    return mark


def is_script_run(tool_version: str | None) -> bool:
    return f" {SCRIPT_RUN_WORD} " in (tool_version or "")


def _os_user() -> str:
    # DOMAIN\user on Windows: the account integrated login presents (setup_tool.os_account).
    from setup_tool.os_account import os_account

    return os_account()


def runs(conn: Connection, books: Bookkeeping) -> list[dict[str, Any]]:
    """Every recorded run with its steps, newest first."""
    run_rows = conn.execute(select(books.run).order_by(books.run.c.run_id.desc())).mappings()
    result = [dict(row) for row in run_rows]
    steps = conn.execute(select(books.step).order_by(books.step.c.step_row_id)).mappings()
    by_run: dict[int, list[dict[str, Any]]] = {}
    for step in steps:
        by_run.setdefault(step["run_id"], []).append(dict(step))
    for run in result:
        run["steps"] = by_run.get(run["run_id"], [])
    return result


FIRST_KEY = -(2**31)  # where a marking's keyset starts (setup_tool.steps.mark_invites)


def record_batch_timing(
    conn: Connection,
    books: Bookkeeping,
    run_id: int,
    step_row_id: int,
    batch_no: int,
    lo: int,
    hi: int,
    rows: int,
    seconds: float,
) -> None:
    """Keep one marking batch's range (lo, hi], rows and duration, in the batch's own
    transaction: it commits with the batch or not at all, so the timings never claim a batch
    that was rolled back. Logged at debug level for the support log."""
    conn.execute(
        books.batch.insert().values(
            run_id=run_id,
            step_row_id=step_row_id,
            batch_no=batch_no,
            lo=lo,
            hi=hi,
            rows_changed=rows,
            seconds=round(float(seconds), 6),
            finished_at=datetime.now(UTC).replace(tzinfo=None),
        )
    )
    # The first batch starts below every id (the keyset's sentinel): say "up to" instead.
    span = f"{lo + 1}..{hi}" if lo > FIRST_KEY else f"up to {hi}"
    LOGGER.debug(
        "batch %d of step %d (appointment_id %s): %s rows in %.3f s",
        batch_no,
        step_row_id,
        span,
        f"{rows:,}",
        seconds,
    )


def batch_timings(conn: Connection, books: Bookkeeping, run_id: int) -> list[dict[str, Any]]:
    """The batches `run_id` committed, in the order it ran them."""
    b = books.batch
    rows = conn.execute(
        select(b).where(b.c.run_id == run_id).order_by(b.c.finished_at, b.c.batch_id)
    ).mappings()
    return [dict(row) for row in rows]


def steps_of_run(conn: Connection, books: Bookkeeping, run_id: int) -> list[dict[str, Any]]:
    """The step rows a run opened, and those of earlier runs it resumed and finished."""
    s = books.step
    rows = conn.execute(
        select(s)
        .where((s.c.run_id == run_id) | (s.c.finished_by_run_id == run_id))
        .order_by(s.c.step_row_id)
    ).mappings()
    return [dict(row) for row in rows]


def stored_report(conn: Connection, books: Bookkeeping, run_id: int) -> str | None:
    """The JSON report a run kept (None: no such run, or it kept none)."""
    return conn.execute(
        select(books.run.c.report_json).where(books.run.c.run_id == run_id)
    ).scalar_one_or_none()


def describe_lock_holder(conn: Connection, books: Bookkeeping) -> str | None:
    """Who is (or was last) running: the newest run still marked running."""
    run = books.run
    row = conn.execute(
        select(run.c.run_id, run.c.host, run.c.os_user, run.c.started_at, run.c.tool_version)
        .where(run.c.status == "running")
        .order_by(run.c.run_id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    started = f"{row.started_at:%Y-%m-%d %H:%M:%S}"
    # A DBA's T-SQL script holds the same lock as a run of the tool (setup_tool.tsql_script).
    what = (
        f"the T-SQL script's run {row.run_id} ({row.tool_version})"
        if is_script_run(row.tool_version)
        else f"run {row.run_id}"
    )
    return f"{what} started {started} UTC by {row.os_user} on {row.host}"


def lock_holder(engine: Engine, books: Bookkeeping) -> str:
    """For the 'another run holds the lock' message: who, from the run table where it can."""
    try:
        with engine.connect() as conn:
            holder = describe_lock_holder(conn, books)
    except Exception:  # the tables may not exist yet
        holder = None
    # Before its first write a run has no row yet: most likely a wizard at its confirmation.
    return holder or "a run that has not started writing yet (a wizard at its confirmation?)"
