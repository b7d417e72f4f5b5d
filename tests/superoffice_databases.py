"""SuperOffice databases on each engine the tests run against, behind one small interface.

PostgreSQL gets its tables the way a DBA script would make them: plain unquoted DDL in a schema
`crm7`, so every name is stored lower-case and the tool must find `cautionWarning` as
`cautionwarning`, with the indexes SuperOffice documents for the tables the rule reads. Raw SQL in
the tests writes names unquoted, which both engines fold alike.

`database_rows` reads what SPEC step 4 looks at with plain SQL, for the independent oracle
(`invite_oracle`): `invites_to_mark` is what a first run must mark, never the tool's own answer.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from invite_oracle import ALL_FOOTPRINTS, DatabaseRows, as_datetime, marking_until, rows_to_mark
from sqlalchemy import Column, Engine, Index, MetaData, Table, create_engine, inspect, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from setup_tool.demo import DemoOptions, build_demo_database, populate_demo
from setup_tool.schema import canonical_metadata, reflect_tables


def dba_metadata(schema: str, *, after_r10: bool = True) -> MetaData:
    """The SuperOffice tables with every name lower-case, as an unquoted DBA script stores them."""
    lower = MetaData()
    for table in canonical_metadata(after_r10=after_r10).tables.values():
        Table(
            table.name.lower(),
            lower,
            *[
                Column(
                    c.name.lower(),
                    c.type,
                    primary_key=c.primary_key,
                    nullable=c.nullable,
                    autoincrement=False,
                )
                for c in table.columns
            ],
            schema=schema,
        )
    return lower


def dba_script(schema: str, *, after_r10: bool = True) -> list[str]:
    """CREATE statements as a DBA writes them: unquoted, so PostgreSQL stores them lower-case.

    `after_r10=False`: the shape of a genuine 8.5 R10 database (no SendEmail, owned_externally,
    mother_associate_id, no invitation table). Indexes as SOD documents them
    (docs/en/database/tables/appointment.md, invitation.md) for the columns the rule reads."""
    lower = dba_metadata(schema, after_r10=after_r10)
    appointment = lower.tables[f"{schema}.appointment"]
    preference = lower.tables[f"{schema}.userpreference"]
    a = appointment.c
    indexes = [
        Index("ix_appointment_mother_id", a.mother_id),
        Index(
            "ix_appointment_recurrence_associate", a.recurrenceruleid, a.activedate, a.associate_id
        ),
        Index("ix_appointment_recurrence_mother", a.recurrenceruleid, a.activedate, a.mother_id),
        Index(
            "ix_userpreference_lookup",
            preference.c.prefsection,
            preference.c.prefkey,
            preference.c.deflevel,
            preference.c.owner_id,
        ),
    ]
    invitation = lower.tables.get(f"{schema}.invitation")
    if invitation is not None:
        indexes.append(Index("ix_invitation_appointment_id", invitation.c.appointment_id))
    dialect = postgresql.dialect()
    ddl = [f"CREATE SCHEMA {schema}"]
    ddl += [str(CreateTable(t).compile(dialect=dialect)) for t in lower.sorted_tables]
    ddl += [str(CreateIndex(i).compile(dialect=dialect)) for i in indexes]
    return ddl


@dataclass
class TargetDatabase:
    """One SuperOffice database under test: where it is and how to look inside independently."""

    kind: str  # "sqlite" or "postgresql"
    url: str  # what the tool is given (--database-url)
    prefix: str | None  # --table-prefix
    admin_url: str  # for the test's own independent queries and sabotage

    def connection_args(self) -> list[str]:
        prefix = ["--table-prefix", self.prefix] if self.prefix else []
        return ["--database-url", self.url, *prefix]

    def table(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def engine(self) -> Engine:
        return create_engine(self.admin_url)

    def query(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        engine = self.engine()
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql), params)]
        finally:
            engine.dispose()

    def execute(self, sql: str, **params: Any) -> None:
        engine = self.engine()
        try:
            with engine.begin() as conn:
                conn.execute(text(sql), params)
        finally:
            engine.dispose()

    def snapshot(self, *tables: str) -> dict[str, list[tuple[Any, ...]]]:
        """Full contents of SuperOffice tables, ordered by primary key (for equality checks)."""
        return {name: self.query(f"SELECT * FROM {self.table(name)} ORDER BY 1") for name in tables}

    def records(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        """Plain SQL, rows as {column name: value} as the driver returns them."""
        engine = self.engine()
        try:
            with engine.connect() as conn:
                return [dict(row._mapping) for row in conn.execute(text(sql), params)]
        finally:
            engine.dispose()

    def has_table(self, name: str) -> bool:
        engine = self.engine()
        try:
            with engine.connect() as conn:
                stored = inspect(conn).get_table_names(schema=self.prefix)
        finally:
            engine.dispose()
        return name.lower() in {n.lower() for n in stored}

    def database_rows(self) -> DatabaseRows:
        """What SPEC step 4 looks at, read with plain SQL (no invitation rows where the table is
        absent, as in an 8.5 R10-shaped database)."""

        def every(name: str) -> list[dict[str, Any]]:
            return self.records(f"SELECT * FROM {self.table(name)} ORDER BY 1")

        return DatabaseRows(
            appointments=every("appointment"),
            invitations=every("invitation") if self.has_table("invitation") else [],
            product_versions=every("productversion"),
            preferences=every("userpreference"),
        )

    def first_run_started(self) -> datetime | None:
        """When the tool's first run started (the end of a first run's window), if it ran."""
        if not self.has_table("setup_tool_run"):
            return None
        rows = self.query(f"SELECT MIN(started_at) FROM {self.table('setup_tool_run')}")
        return as_datetime(rows[0][0])


def invites_to_mark(
    database: DatabaseRows,
    run_started: datetime | None = None,
    *,
    operator_since: datetime | None = None,
    footprints: frozenset[str] = ALL_FOOTPRINTS,
) -> set[int]:
    """The oracle: the rows a first run started at `run_started` (default: now) must mark."""
    started = run_started or datetime.now(UTC).replace(tzinfo=None)
    return rows_to_mark(
        database,
        until=marking_until(database.preferences, started),
        operator_since=operator_since,
        footprints=footprints,
    )


def sqlite_target(path: Path, options: DemoOptions) -> TargetDatabase:
    build_demo_database(path, options)
    url = f"sqlite:///{path}"
    return TargetDatabase("sqlite", url, None, url)


def postgresql_target(database: Any, options: DemoOptions, schema: str = "crm7") -> TargetDatabase:
    """`database` is the pg_database fixture's object; tables owned by the tool's login."""
    url = database.url()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for statement in dba_script(schema, after_r10=options.after_r10):
                conn.execute(text(statement))
            populate_demo(conn, reflect_tables(conn, schema), options)
    finally:
        engine.dispose()
    return TargetDatabase("postgresql", url, schema, url)


def sqlite_bytes(target: TargetDatabase) -> bytes:
    path = target.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:  # make sure nothing is pending in a journal
        db.execute("SELECT 1")
    return Path(path).read_bytes()


def mssql_target(url: str, options: DemoOptions, schema: str) -> TargetDatabase:
    """A live SQL Server (opt-in): canonical tables in a throwaway schema, dropped by the caller."""
    from setup_tool.demo import create_demo_schema

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        with engine.begin() as conn:
            tables = create_demo_schema(conn, schema, after_r10=options.after_r10)
            populate_demo(conn, tables, options)
    finally:
        engine.dispose()
    return TargetDatabase("mssql", url, schema, url)


def drop_mssql_schema(url: str, schema: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            tables = conn.execute(
                text("SELECT name FROM sys.tables WHERE schema_id = SCHEMA_ID(:s)"), {"s": schema}
            )
            for (name,) in list(tables):
                conn.execute(text(f"DROP TABLE {schema}.[{name}]"))
            conn.execute(text(f"DROP SCHEMA {schema}"))
    finally:
        engine.dispose()
