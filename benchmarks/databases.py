"""The databases a benchmark runs on, and how each is put back between measurements.

SQLite: the demo file built by `setup-tool demo` is the template; every measurement gets a fresh
copy of the file. PostgreSQL: a throwaway server on loopback (the test suite's `PostgresServer`,
with durable settings), one template database per size loaded from the same SQLite file (COPY,
so both engines hold identical rows), and a fresh `CREATE DATABASE ... TEMPLATE` per measurement.
Tables on PostgreSQL are made the way a DBA script makes them (`tests/superoffice_databases.py`):
unquoted, lower-case, in schema `crm7`.

Indexes: the demo file keeps the indexes `setup-tool demo` made; an index SuperOffice documents
(SOD, `docs/en/database/tables/<table>.md`) that the selection rule seeks on and the demo lacks is
added to the file before anything is measured (`add_documented_indexes`). The PostgreSQL copy
gets the DBA script's indexes plus every other index of the file, so each index the SQLite side
has, the PostgreSQL side has too.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine, create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the suite's PostgreSQL launcher and DBA-style DDL

import postgres_fixture  # noqa: E402
from postgres_fixture import PostgresServer, find_bindir  # noqa: E402
from superoffice_databases import dba_script  # noqa: E402

from setup_tool.schema import canonical_metadata  # noqa: E402

PG_SCHEMA = "crm7"
COPY_ROWS = 50_000

# Indexes SuperOffice documents that SPEC step 4 seeks on: (table, columns). SOD lists two on
# (recurrenceRuleId, activeDate, ...) for the appointment table; this is the one with mother_id.
# The mother_id index (SOD too) is made by the demo and by the DBA script.
DOCUMENTED_INDEXES = {
    "IDXAppointmentRecurrence": ("appointment", ("recurrenceRuleId", "activeDate", "mother_id")),
}


@dataclass(frozen=True)
class SqliteIndex:
    """One index of the SQLite demo file: its name, table, columns and uniqueness."""

    name: str
    table: str
    columns: tuple[str, ...]
    unique: bool

    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.table.lower(), tuple(c.lower() for c in self.columns)


def sqlite_indexes(path: Path) -> list[SqliteIndex]:
    """The indexes made with CREATE INDEX in the file (not the implicit primary-key ones)."""
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        found = []
        tables = source.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        for (table,) in tables:
            for _seq, name, unique, origin, *_ in source.execute(f"PRAGMA index_list('{table}')"):
                if origin != "c":
                    continue
                info = source.execute(f"PRAGMA index_info('{name}')").fetchall()
                columns = tuple(column for _rank, _cid, column in info)
                found.append(SqliteIndex(name, table, columns, bool(unique)))
        return found
    finally:
        source.close()


def add_documented_indexes(path: Path) -> list[str]:
    """Add to the SQLite demo file each index of DOCUMENTED_INDEXES it lacks (an index whose
    leading columns are the same counts); returns the names added."""
    present = {index.key() for index in sqlite_indexes(path)}
    added = []
    target = sqlite3.connect(path)
    try:
        for name, (table, columns) in DOCUMENTED_INDEXES.items():
            have = {c[1].lower() for c in target.execute(f"PRAGMA table_info('{table}')")}
            if not {c.lower() for c in columns} <= have:
                continue  # an older shape without the column: SuperOffice has no index either
            lead = tuple(c.lower() for c in columns[:1])
            if any(t == table.lower() and cols[:1] == lead for t, cols in present):
                continue
            quoted = ", ".join(f'"{c}"' for c in columns)
            target.execute(f'CREATE INDEX "{name}" ON "{table}" ({quoted})')
            added.append(name)
        target.commit()
    finally:
        target.close()
    return added


def _ram_mb() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return 4096


def _shared_buffers() -> str:
    """A quarter of the RAM (the usual advice for a dedicated server), between 128 MB and 8 GB."""
    return f"{max(128, min(8192, _ram_mb() // 4))}MB"


# A server as a customer would run it: durable commits (each batch pays its fsync), memory and
# planner costs tuned for the machine (the usual advice for a dedicated server on SSD:
# effective_cache_size three quarters of the RAM, random_page_cost 1.1). With the default
# random_page_cost of 4 (spinning disks) the planner reads the whole appointment table rather
# than seek a few thousand cached rows on the primary key or the recurrenceRuleId index, for the
# tool and the baseline alike. wal_level=minimal only speeds up loading the templates.
PG_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": _shared_buffers(),
    "effective_cache_size": f"{max(512, _ram_mb() * 3 // 4)}MB",
    "random_page_cost": "1.1",
    "work_mem": "64MB",
    "maintenance_work_mem": "512MB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "wal_level": "minimal",
    "max_wal_senders": "0",
}


@dataclass
class Target:
    """One fresh copy of a template: what the tool is pointed at and how to reach it directly."""

    engine_name: str
    url: str  # SQLAlchemy URL, no password (SQLite file, or PostgreSQL trust on loopback)
    prefix: str | None
    name: str  # file path or database name

    def tool_args(self) -> list[str]:
        args = ["--database-url", self.url]
        return [*args, "--table-prefix", self.prefix] if self.prefix else args

    @contextmanager
    def engine(self) -> Iterator[Engine]:
        engine = create_engine(self.url)
        try:
            yield engine
        finally:
            engine.dispose()

    def switch_travel_on(self) -> None:
        """Travel/EnableTravel on at system level (the demo has the row, saying off)."""
        p = f"{self.prefix}." if self.prefix else ""
        with self.engine() as engine, engine.begin() as conn:
            changed = conn.execute(
                text(
                    f"UPDATE {p}userpreference SET prefvalue = '1' WHERE prefsection = 'Travel' "
                    f"AND prefkey = 'EnableTravel' AND deflevel = 2"
                )
            ).rowcount
        if changed != 1:
            raise RuntimeError(f"expected one system Travel row, found {changed}")


class BenchEngine(Protocol):
    """What the benchmark needs from an engine."""

    name: str

    @property
    def version(self) -> str: ...

    def load(self, sqlite_template: Path, size: int) -> None: ...

    def fresh_copy(self, size: int) -> Target: ...

    def discard(self, target: Target) -> None: ...

    def drop_template(self, size: int) -> None: ...

    def close(self) -> None: ...


class SqliteEngine:
    """Copies of the demo file."""

    name = "sqlite"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.templates: dict[int, Path] = {}

    @property
    def version(self) -> str:
        return sqlite3.sqlite_version

    def load(self, sqlite_template: Path, size: int) -> None:
        self.templates[size] = sqlite_template

    def fresh_copy(self, size: int) -> Target:
        path = self.workdir / "work.db"
        self._remove(path)
        shutil.copyfile(self.templates[size], path)
        _flush(path)
        return Target(self.name, f"sqlite:///{path}", None, str(path))

    def discard(self, target: Target) -> None:
        self._remove(Path(target.name))

    def drop_template(self, size: int) -> None:
        self.templates.pop(size, None)  # the file belongs to the run: it is removed with workdir

    def close(self) -> None:
        pass

    @staticmethod
    def _remove(path: Path) -> None:
        for leftover in path.parent.glob(f"{path.name}*"):  # journals, the tool's lock file
            leftover.unlink()


def _flush(path: Path) -> None:
    """On disk before the clock starts: else the first commit measured pays for the copy."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class _BenchmarkServer(PostgresServer):
    """The suite's server with PG_SETTINGS instead of its throwaway (non-durable) ones."""

    def _launch_and_wait(self) -> bool:
        saved = postgres_fixture._SERVER_SETTINGS
        postgres_fixture._SERVER_SETTINGS = {**saved, **PG_SETTINGS}
        try:
            return super()._launch_and_wait()
        finally:
            postgres_fixture._SERVER_SETTINGS = saved


class PostgresEngine:
    """A server of its own; template databases per size, cloned per measurement."""

    name = "postgresql"

    def __init__(self) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL binaries not found (set SETUP_TOOL_TEST_PG_BINDIR)")
        # Not under the benchmark's workdir: the postgres OS user must be able to enter it.
        base_dir = Path(tempfile.mkdtemp(prefix="setup-tool-bench-pg-"))
        self.server = _BenchmarkServer(bindir, base_dir, as_os_user=_is_root())
        self.server.start()
        self._clones = 0

    @property
    def version(self) -> str:
        with self._admin() as engine, engine.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())

    def load(self, sqlite_template: Path, size: int) -> None:
        name = _template_name(size)
        self.server.drop_database(name)
        self._admin_sql(f"CREATE DATABASE {name}")
        statements = dba_script(PG_SCHEMA)
        tables = [s for s in statements if not s.startswith("CREATE INDEX")]
        indexes = [s for s in statements if s.startswith("CREATE INDEX")]
        indexes += _template_indexes(sqlite_template, indexes)
        import psycopg

        conninfo = _conninfo(self.server, name)
        with psycopg.connect(conninfo) as conn:
            for statement in tables:
                conn.execute(statement)
            _copy_tables(sqlite_template, conn)
            for statement in indexes:
                conn.execute(statement)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("VACUUM (FREEZE, ANALYZE)")  # a live database has statistics

    def fresh_copy(self, size: int) -> Target:
        self._clones += 1
        name = f"bench_work_{self._clones}"
        self._admin_sql(
            f"CREATE DATABASE {name} TEMPLATE {_template_name(size)} STRATEGY FILE_COPY"
        )
        return Target(self.name, self.server.admin_url(name), PG_SCHEMA, name)

    def discard(self, target: Target) -> None:
        self.server.drop_database(target.name)

    def drop_template(self, size: int) -> None:
        self.server.drop_database(_template_name(size))

    def close(self) -> None:
        self.server.stop()

    @contextmanager
    def _admin(self) -> Iterator[Engine]:
        engine = create_engine(self.server.admin_url(), isolation_level="AUTOCOMMIT")
        try:
            yield engine
        finally:
            engine.dispose()

    def _admin_sql(self, statement: str) -> None:
        with self._admin() as engine, engine.connect() as conn:
            conn.execute(text(statement))


def _template_indexes(sqlite_template: Path, dba_indexes: list[str]) -> list[str]:
    """CREATE INDEX statements for the file's indexes the DBA script does not make already,
    unquoted and lower-case like the script's."""
    made = {_columns_of(statement) for statement in dba_indexes}
    statements = []
    for index in sqlite_indexes(sqlite_template):
        table, columns = index.key()
        if (table, columns) in made:
            continue
        unique = "UNIQUE " if index.unique else ""
        statements.append(
            f"CREATE {unique}INDEX {index.name.lower()} "
            f"ON {PG_SCHEMA}.{table} ({', '.join(columns)})"
        )
    return statements


def _columns_of(create_index: str) -> tuple[str, tuple[str, ...]]:
    """(table, columns) of `CREATE INDEX name ON schema.table (a, b)`, lower-case."""
    target, _, columns = create_index.partition(" ON ")[2].partition("(")
    table = target.strip().rsplit(".", 1)[-1]
    names = tuple(c.strip().strip('"').lower() for c in columns.rstrip(") \n").split(","))
    return table.lower(), names


def _template_name(size: int) -> str:
    return f"bench_template_{size}"


def _conninfo(server: PostgresServer, dbname: str) -> str:
    host, user = postgres_fixture.HOST, postgres_fixture.ADMIN_USER
    return f"host={host} port={server.port} user={user} dbname={dbname}"


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _copy_tables(sqlite_path: Path, conn: object) -> None:
    """Every SuperOffice table of the SQLite demo into the PostgreSQL schema, with COPY."""
    source = sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True)
    try:
        for table in canonical_metadata().tables.values():
            columns = [column.name for column in table.columns]
            quoted = ", ".join(f'"{c}"' for c in columns)
            rows = source.execute(f'SELECT {quoted} FROM "{table.name}"')
            target = f"{PG_SCHEMA}.{table.name.lower()} ({', '.join(c.lower() for c in columns)})"
            with conn.cursor() as cursor, cursor.copy(f"COPY {target} FROM STDIN") as copy:  # type: ignore[attr-defined]
                while chunk := rows.fetchmany(COPY_ROWS):
                    for row in chunk:
                        copy.write_row(row)
    finally:
        source.close()
