"""What setup-tool knows about each database engine, in one place.

One small object per SQLAlchemy dialect says which run lock guards a run, how a login's rights
are asked for, how a session bounds its lock waits and yields in a deadlock, whether freshly
staged rows need fresh statistics, how a statement names a variable, and (SQLite) which files
on disk make up the database. The modules that act on these facts (locking, privileges,
lock_waits, connection, database, output_files, the marking step) ask `dialect_of(...)` and
never compare dialect names themselves, so a fact about an engine is written down once.

SQLite's files are here too: how a SQLite URL maps to its file (`sqlite_path`), the journal,
WAL and shared-memory files SQLite keeps beside it, and the run lock's sidecar file. Before they
were gathered, the lock path and the output-safety rule each derived the file on their own, and
one of them got a path with spaces wrong.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qs, urlparse
from urllib.request import url2pathname

if TYPE_CHECKING:  # SQLAlchemy loads when a command connects: --help answers at once
    from sqlalchemy import URL, Connection, Engine

SQLITE, POSTGRESQL, MSSQL = "sqlite", "postgresql", "mssql"

# The run lock's sidecar file, beside a SQLite database file (setup_tool.locking).
LOCK_FILE_SUFFIX = ".setup-tool.lock"
# The files SQLite itself keeps beside a database file, and what to call them in messages.
SQLITE_COMPANION_NAMES: Mapping[str, str] = {
    "-journal": "journal",
    "-wal": "WAL file",
    "-shm": "shared-memory file",
}
# Every file beside a database file that belongs to it, and its name in messages.
SQLITE_FILE_NAMES: Mapping[str, str] = {
    **SQLITE_COMPANION_NAMES,
    LOCK_FILE_SUFFIX: "run lock file",
}

# Which mechanism setup_tool.locking uses for the run lock (its docstring says why each).
RunLockKind = Literal["file lock", "advisory lock", "applock"]


@dataclass(frozen=True)
class DatabaseDialect:
    """The facts setup-tool relies on for one database engine (SQLAlchemy dialect `name`)."""

    name: str
    # The run lock's mechanism; None: the tool cannot lock (and so cannot write to) this engine.
    run_lock: RunLockKind | None = None
    # False where a writer locks the whole database (SQLite), so there are no rows to lock first.
    row_locks: bool = True
    # The schema SuperOffice's tables live in when --table-prefix is not given.
    default_table_prefix: str | None = None
    # Makes lock waits give up after {ms} milliseconds; None where the engine has no such bound.
    lock_timeout_template: str | None = None
    # Makes this session the victim of any deadlock it is in; None where there is no such setting.
    yield_deadlocks_sql: str | None = None
    # 1 when the login holds :right on :table; None: let the engine answer at the first write.
    table_right_sql: str | None = None
    # 1 when the login may create tables (in :schema where the query takes it).
    create_table_sql: str | None = None
    # Refreshes a table's statistics ({table} is quoted already); None: the engine keeps them.
    analyze_template: str | None = None
    # How a statement shown to the operator names a variable (:lo, or T-SQL's @lo).
    variable_prefix: str = ":"
    # The database is a file on this machine (SQLite), not a server.
    is_file: bool = False

    def lock_timeout_sql(self, milliseconds: int) -> str | None:
        """The statement that bounds this connection's lock waits; never 0 (PostgreSQL reads 0
        as "wait forever"), so `milliseconds` must be at least 1."""
        if milliseconds < 1:
            raise ValueError(f"a lock timeout must be at least 1 ms, not {milliseconds}")
        template = self.lock_timeout_template
        return None if template is None else template.format(ms=milliseconds)

    def holding_lock_wait(self, seconds: float, holding_limit: float) -> float:
        """How long a batch that holds rows of its own waits for another lock: `seconds`, at
        most `holding_limit` where there are row locks. SQLite has none: a writer waits for the
        whole database before it holds anything, so it keeps the whole lock wait."""
        return min(seconds, holding_limit) if self.row_locks else seconds

    def create_table_query(self, schema: str | None) -> tuple[str, dict[str, str]] | None:
        """The query (and its parameters) for the right to create tables; None: not asked."""
        if self.create_table_sql is None:
            return None
        params = {"schema": schema or "public"} if ":schema" in self.create_table_sql else {}
        return self.create_table_sql, params

    def analyze_sql(self, quoted_table: str) -> str | None:
        """The statement that refreshes `quoted_table`'s statistics, where they go stale."""
        template = self.analyze_template
        return None if template is None else template.format(table=quoted_table)

    def variable(self, name: str) -> str:
        """`name` as a variable in a statement shown to the operator (:lo; @lo in T-SQL)."""
        return f"{self.variable_prefix}{name}"

    def database_file(self, url: URL) -> Path | None:
        """The file this database is, or None: a server, or SQLite in memory."""
        return sqlite_path(url) if self.is_file else None


SQLITE_DIALECT = DatabaseDialect(
    SQLITE,
    run_lock="file lock",
    row_locks=False,
    lock_timeout_template="PRAGMA busy_timeout = {ms}",
    is_file=True,
)
POSTGRESQL_DIALECT = DatabaseDialect(
    POSTGRESQL,
    run_lock="advisory lock",
    default_table_prefix="crm7",  # as on SQL Server: SUPEROFFICE.md, Physical conventions
    # Transaction-local: it must run inside the batch's transaction (setup_tool.lock_waits).
    lock_timeout_template="SET LOCAL lock_timeout = {ms}",
    table_right_sql="SELECT has_table_privilege(:table, :right)",
    create_table_sql="SELECT has_schema_privilege(:schema, 'CREATE')",
    # Without statistics on the freshly staged candidates the planner takes the table for a few
    # rows and sorts every remaining candidate for each batch boundary (steps.mark_invites).
    analyze_template="ANALYZE {table}",
)
MSSQL_DIALECT = DatabaseDialect(
    MSSQL,
    run_lock="applock",
    # The table prefix is almost always crm7 (SUPEROFFICE.md, Physical conventions).
    default_table_prefix="crm7",
    lock_timeout_template="SET LOCK_TIMEOUT {ms}",
    yield_deadlocks_sql="SET DEADLOCK_PRIORITY LOW",
    table_right_sql="SELECT HAS_PERMS_BY_NAME(:table, 'OBJECT', :right)",
    create_table_sql="SELECT HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'CREATE TABLE')",
    variable_prefix="@",
)
_KNOWN = {d.name: d for d in (SQLITE_DIALECT, POSTGRESQL_DIALECT, MSSQL_DIALECT)}


def dialect_of(database: str | URL | Engine | Connection) -> DatabaseDialect:
    """The facts for a dialect name, or for the dialect of a URL, engine or connection. An
    engine the tool does not know gets no lock, no rights check and no lock-wait bound."""
    if isinstance(database, str):
        name = database
    elif hasattr(database, "get_backend_name"):  # a URL
        name = database.get_backend_name()
    else:
        name = database.dialect.name
    return _KNOWN.get(name) or DatabaseDialect(name)


# --- SQLite's files ---------------------------------------------------------------------------


def sqlite_path(url: URL) -> Path | None:
    """The file a SQLite URL opens, or None for an in-memory database.

    The one place that knows how a SQLite URL maps to a file: the engine, the run lock, the
    rights check, the output-safety rule and the messages all ask it. `url.database` is already
    percent-decoded by make_url (sqlite:///x%20y/crm%20db.db is the file "x y/crm db.db"); a
    `file:` URI, as the engines of connection.create_engine_for() hold, is decoded once more, as
    SQLite itself decodes it (file:///srv/x%20y/crm%20db.db is "/srv/x y/crm db.db"). A relative
    path stays relative: it is taken from the working directory, as SQLite takes it.
    """
    database = url.database or ""
    if database in ("", ":memory:") or _is_memory_mode(url.query.get("mode")):
        return None
    if not database.startswith("file:"):
        return Path(database)
    parsed = urlparse(database)  # file:name, file:/abs, file:///abs, file://host/share/...
    if _is_memory_mode(parse_qs(parsed.query).get("mode")):
        return None
    path = parsed.path
    if parsed.netloc and parsed.netloc.lower() != "localhost":
        path = f"//{parsed.netloc}{path}"  # a UNC path: \\server\share\...
    name = url2pathname(path) if path else ""
    return None if name in ("", ":memory:") else Path(name)


def _is_memory_mode(mode: str | Sequence[str] | None) -> bool:
    values = [mode] if isinstance(mode, str) else list(mode or [])
    return "memory" in values


def lock_file_path(database: str | os.PathLike[str]) -> Path:
    """The sidecar file whose OS lock guards a SQLite database file.

    Next to the file itself, through symbolic links: two names of one database share one lock.
    """
    return Path(os.path.realpath(database) + LOCK_FILE_SUFFIX)


def sqlite_files(database: Path) -> tuple[Path, ...]:
    """The database file, its journal, WAL and shared-memory files and the run lock file, both
    as given and resolved: SQLite names its companions after the resolved file, and protecting
    both names costs nothing."""
    bases = dict.fromkeys([os.path.abspath(database), os.path.realpath(database)])
    suffixes = ("", *SQLITE_FILE_NAMES)
    return tuple(Path(base + suffix) for base in bases for suffix in suffixes)
