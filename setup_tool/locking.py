"""One setup-tool run at a time per database, with a lock that a crash can never leave behind.

Every mechanism here is owned by a process or a session, never by a row or a file's existence:
when the process dies or its connection drops, the operating system or the server releases it.

- SQLite: an OS file lock (``flock``; ``msvcrt.locking`` on Windows) on the sidecar file
  ``<database file>.setup-tool.lock``. The database file itself is never opened. The empty
  sidecar stays after a run: deleting it would let a waiter lock a file that no longer has the
  name, next to a newcomer locking its replacement. Its presence means nothing; only the OS
  lock counts.
- PostgreSQL: a session-level advisory lock on a dedicated connection, whose
  ``idle_session_timeout`` is switched off: the server must not end it for sitting idle.
- SQL Server: ``sp_getapplock`` with ``@LockOwner = 'Session'`` on a dedicated connection.

A session can still end under a run (an administrator's kill, a restart, a network cut): the
lock goes with it, and another run could start alongside. So the lock is a handle whose
``check()`` asks, cheaply, whether it is still held (``pg_locks``, ``APPLOCK_MODE``, the lock
file's identity) and raises LockLostError when it is not; the upgrade calls it inside each
batch's transaction, just before the commit, so a run that lost its lock commits nothing more.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import ColumnElement, String, Unicode, case, func, literal, select, text
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from setup_tool.dialects import LOCK_FILE_SUFFIX as LOCK_FILE_SUFFIX  # imported from here too
from setup_tool.dialects import dialect_of, sqlite_path
from setup_tool.dialects import lock_file_path as lock_file_path
from setup_tool.errors import LockBusyError, SetupToolError

LOCK_RESOURCE = "setup-tool"
# How the SQL Server lock is asked for, by the tool and by the T-SQL script alike
# (setup_tool.tsql_script): both must ask for the same lock for one to see the other.
APPLOCK_MODE = "Exclusive"
APPLOCK_OWNER = "Session"
APPLOCK_PRINCIPAL = "public"  # sp_getapplock's default @DbPrincipal
POLL_INTERVAL_SECONDS = 0.2

# pg_try_advisory_lock takes a bigint; derive it from the resource name so that every version of
# the tool, on every machine, asks for the same lock (Python's hash() is salted per process).
POSTGRES_LOCK_KEY = int.from_bytes(
    hashlib.sha256(LOCK_RESOURCE.encode()).digest()[:8], "big", signed=True
)

# sp_getapplock return codes (documented by Microsoft).
_APPLOCK_GRANTED = (0, 1)
_APPLOCK_TIMEOUT = -1
_APPLOCK_FAILURES = {
    -2: "the lock request was cancelled",
    -3: "the lock request was chosen as a deadlock victim",
    -999: "the lock request was invalid (parameter validation or another call error)",
}

HolderDescriber = Callable[[], str | None]
# None while the lock is held; otherwise why it is not.
_Probe = Callable[[], str | None]

log = logging.getLogger(__name__)


class LockLostError(SetupToolError):
    """The run lock is gone (its session ended): the run must not commit anything more."""


@dataclass(frozen=True)
class HeldLock:
    """The run lock while it is held. `check()` raises LockLostError once it is not."""

    where: str
    _probe: _Probe

    def check(self) -> None:
        reason = self._probe()
        if reason is None:
            return
        log.error("run lock on %s lost: %s", self.where, reason)
        raise LockLostError(
            f"The setup-tool run lock on {self.where} was lost ({reason}), so the run stopped "
            "before committing its next batch: without the lock another run could work "
            "alongside it. Nothing of the unfinished batch was written.",
            "Every finished batch is kept: run the same command again to resume. If the "
            "database server ends sessions (an administrator's kill, idle_session_timeout, a "
            "restart), make sure it leaves this one alone for the length of the run.",
        )


def _still_held() -> str | None:
    return None


@contextmanager
def run_lock(
    engine: Engine,
    *,
    timeout_seconds: float = 0.0,
    describe_holder: HolderDescriber | None = None,
) -> Iterator[HeldLock]:
    """Hold the run lock of `engine`'s database for the duration of the block.

    Waits up to `timeout_seconds` for another run to finish, then raises LockBusyError (its
    message includes `describe_holder()`). Any other failure to take the lock raises
    SetupToolError. The lock is released on exit, and by the OS or server if the process dies.
    The block gets a HeldLock: call its check() before each commit that needs the lock.
    """
    if timeout_seconds < 0:
        raise ValueError(f"timeout_seconds must be >= 0, not {timeout_seconds}")
    lock = _lock_for(engine, timeout_seconds, describe_holder or _no_description)
    with lock as held:
        yield held


def applock_sql(timeout_ms: int) -> str:
    """The T-SQL batch that takes the run lock and returns sp_getapplock's return code."""
    if timeout_ms < 0:
        raise ValueError(f"timeout_ms must be >= 0, not {timeout_ms}")
    # NOCOUNT keeps "rows affected" messages from arriving ahead of the SELECT's result set.
    return (
        f"SET NOCOUNT ON;\nDECLARE @r int;\n{get_applock_statement('@r', timeout_ms)}\nSELECT @r;"
    )


def get_applock_statement(result_variable: str, timeout_ms: int) -> str:
    """The sp_getapplock call that takes the run lock, its return code into `result_variable`."""
    return (
        f"EXEC {result_variable} = sp_getapplock @Resource = N'{LOCK_RESOURCE}', "
        f"@LockMode = '{APPLOCK_MODE}', @LockOwner = '{APPLOCK_OWNER}', "
        f"@LockTimeout = {int(timeout_ms)};"
    )


def release_applock_sql() -> str:
    """The T-SQL statement that releases the run lock taken by applock_sql()."""
    return f"EXEC sp_releaseapplock @Resource = N'{LOCK_RESOURCE}', @LockOwner = '{APPLOCK_OWNER}';"


def applock_mode() -> ColumnElement[str]:
    """APPLOCK_MODE of the run lock for this session: 'NoLock' unless this session holds it."""
    return func.APPLOCK_MODE(
        literal(APPLOCK_PRINCIPAL, String),
        literal(LOCK_RESOURCE, Unicode),
        literal(APPLOCK_OWNER, String),
    )


def applock_held_sql() -> str:
    """The T-SQL query, compiled for SQL Server, that returns 1 while this session holds the run
    lock taken by applock_sql() (APPLOCK_MODE says 'NoLock' once it does not), else 0."""
    mode = applock_mode()
    query = select(case((mode.op("<>")(literal("NoLock", String)), 1), else_=0).label("held"))
    compiled = query.compile(
        dialect=mssql.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"literal_binds": True},
    )
    return str(compiled)


def advisory_lock_held_sql() -> str:
    """The PostgreSQL query that counts the run lock among this session's granted locks.

    pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits),
    with objsubid 1.
    """
    key = POSTGRES_LOCK_KEY & 0xFFFF_FFFF_FFFF_FFFF
    return (
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND pid = pg_backend_pid()"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        f" AND classid::bigint = {key >> 32} AND objid::bigint = {key & 0xFFFF_FFFF}"
        " AND objsubid = 1"
    )


# Servers before PostgreSQL 14 have no idle_session_timeout (and do not end idle sessions).
POSTGRES_NO_IDLE_TIMEOUT_SQL = (
    "SELECT set_config('idle_session_timeout', '0', false)"
    " WHERE current_setting('server_version_num')::int >= 140000"
)


def sqlite_lock_file(engine: Engine) -> Path | None:
    """The lock file of a SQLite engine's database; None for an in-memory database."""
    database = sqlite_path(engine.url)  # the one place that maps a SQLite URL to its file
    return None if database is None else lock_file_path(database)


# --- dispatch ------------------------------------------------------------------------------------


def _lock_for(
    engine: Engine, timeout_seconds: float, describe_holder: HolderDescriber
) -> AbstractContextManager[HeldLock]:
    dialect = dialect_of(engine)
    if dialect.run_lock == "file lock":
        path = sqlite_lock_file(engine)
        if path is None:  # an in-memory database lives and dies with this process
            return _nothing_to_lock()
        return _sqlite_lock(path, timeout_seconds, describe_holder)
    if dialect.run_lock == "advisory lock":
        return _postgres_lock(engine, timeout_seconds, describe_holder)
    if dialect.run_lock == "applock":
        return _mssql_lock(engine, timeout_seconds, describe_holder)
    raise SetupToolError(
        f"setup-tool cannot take its run lock on a '{dialect.name}' database.",
        "Supported databases are SQL Server, PostgreSQL and SQLite.",
    )


@contextmanager
def _nothing_to_lock() -> Iterator[HeldLock]:
    yield HeldLock("an in-memory database", _still_held)


# --- shared messages -----------------------------------------------------------------------------


def _no_description() -> str | None:
    return None


def _busy_error(
    where: str, timeout_seconds: float, describe_holder: HolderDescriber
) -> LockBusyError:
    try:
        holder = describe_holder()
    except Exception:  # the busy lock is the news; a failed lookup must not replace it
        log.debug("describe_holder failed", exc_info=True)
        holder = None
    waited = f" (waited {timeout_seconds:g} s)" if timeout_seconds > 0 else ""
    who = f"It is held by {holder}." if holder else "The holder could not be identified."
    return LockBusyError(
        f"Another setup-tool run holds the lock on this database ({where}){waited}. {who}",
        "Wait for that run to finish and start again (or pass a longer lock timeout), or check "
        "that process: the lock is released as soon as it ends, even if it crashed.",
    )


def _server_target(engine: Engine) -> str:
    """Which database, for messages: never the URL itself, whose query may carry a password."""
    url = engine.url
    port = f":{url.port}" if url.port else ""
    return f"database '{url.database or '(default)'}' on {url.host or '(default host)'}{port}"


def _first_line(exc: BaseException) -> str:
    reason = getattr(exc, "orig", None) or exc
    detail = str(reason).strip()
    return detail.splitlines()[0] if detail else type(reason).__name__


def _lock_failed(where: str, exc: BaseException) -> SetupToolError:
    return SetupToolError(
        f"Could not take the setup-tool run lock on {where}: {_first_line(exc)}",
        "Check that the database is reachable and that this login may connect to it.",
    )


def _deadline(timeout_seconds: float) -> float:
    return time.monotonic() + timeout_seconds


def _wait_or_give_up(deadline: float) -> bool:
    """Sleep one poll interval; False once the deadline has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    time.sleep(min(POLL_INTERVAL_SECONDS, remaining))
    return True


# --- SQLite: OS file lock on a sidecar file ------------------------------------------------------


@contextmanager
def _sqlite_lock(
    path: Path, timeout_seconds: float, describe_holder: HolderDescriber
) -> Iterator[HeldLock]:
    deadline = _deadline(timeout_seconds)
    while (fd := _try_lock_file(path)) is None:
        if not _wait_or_give_up(deadline):
            raise _busy_error(str(path), timeout_seconds, describe_holder)
    try:
        yield HeldLock(str(path), lambda: _lock_file_replaced(fd, path))
    finally:
        os.close(fd)  # closing the descriptor releases the OS lock


def _lock_file_replaced(fd: int, path: Path) -> str | None:
    """Our descriptor keeps its lock while the process lives; but if the lock file was deleted
    or replaced, a newcomer locks another file under the same name and runs alongside."""
    try:
        ours, named = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return "the lock file was deleted or replaced while the run held it"
    except OSError as exc:
        return f"the lock file cannot be checked: {exc.strerror or exc}"
    if (ours.st_dev, ours.st_ino) != (named.st_dev, named.st_ino):
        return "the lock file was deleted or replaced while the run held it"
    return None


def _try_lock_file(path: Path) -> int | None:
    """An open descriptor holding the lock on `path`, or None if another one holds it."""
    try:
        # Read-only is enough to lock, and works for every user who can read a file left by
        # another user's run.
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    except OSError as exc:
        raise _lock_failed(str(path), exc) from exc
    if _os_lock(fd):
        return fd
    os.close(fd)
    return None


if sys.platform == "win32":
    import msvcrt

    def _os_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _os_lock(fd: int) -> bool:
        # flock, not lockf: flock locks belong to the open file, so they also exclude a second
        # run_lock in this same process, and they vanish when the process dies.
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


# --- server databases: a dedicated session -------------------------------------------------------


@contextmanager
def _dedicated_session(engine: Engine) -> Iterator[Connection]:
    """A connection of its own, in autocommit, that is closed (never pooled) afterwards.

    Autocommit keeps the session from sitting "idle in transaction" for the whole run;
    invalidating it on exit guarantees a session-level lock can never ride back into the pool.
    """
    where = _server_target(engine)
    try:
        conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    except SQLAlchemyError as exc:
        raise _lock_failed(where, exc) from exc
    try:
        yield conn
    finally:
        conn.invalidate()
        conn.close()


def _release_quietly(conn: Connection, statement: str) -> None:
    # If the session already died, the server released the lock with it: nothing to report.
    try:
        conn.exec_driver_sql(statement)
    except SQLAlchemyError:
        log.warning("Could not release the run lock explicitly; its session has ended anyway.")


def _held_on(conn: Connection, query: str) -> str | None:
    """None while `query` on the lock's own session says the lock is held, else why not."""
    try:
        held = conn.exec_driver_sql(query).scalar()
    except SQLAlchemyError as exc:
        return f"its database session has ended: {_first_line(exc)}"
    return None if held else "the database no longer lists it for this run's session"


@contextmanager
def _postgres_lock(
    engine: Engine, timeout_seconds: float, describe_holder: HolderDescriber
) -> Iterator[HeldLock]:
    where = _server_target(engine)
    with _dedicated_session(engine) as conn:
        _keep_alive_while_idle(conn, where)
        deadline = _deadline(timeout_seconds)
        while not _try_advisory_lock(conn, where):
            if not _wait_or_give_up(deadline):
                raise _busy_error(where, timeout_seconds, describe_holder)
        held_sql = advisory_lock_held_sql()
        try:
            yield HeldLock(where, lambda: _held_on(conn, held_sql))
        finally:
            _release_quietly(conn, f"SELECT pg_advisory_unlock({POSTGRES_LOCK_KEY})")


def _keep_alive_while_idle(conn: Connection, where: str) -> None:
    """The lock's session sits idle for the whole run: the server must not end it for that."""
    try:
        conn.exec_driver_sql(POSTGRES_NO_IDLE_TIMEOUT_SQL)
    except SQLAlchemyError as exc:
        raise _lock_failed(where, exc) from exc


def _try_advisory_lock(conn: Connection, where: str) -> bool:
    try:
        statement = text("SELECT pg_try_advisory_lock(:key)")
        return bool(conn.execute(statement, {"key": POSTGRES_LOCK_KEY}).scalar_one())
    except SQLAlchemyError as exc:
        raise _lock_failed(where, exc) from exc


@contextmanager
def _mssql_lock(
    engine: Engine, timeout_seconds: float, describe_holder: HolderDescriber
) -> Iterator[HeldLock]:
    where = _server_target(engine)
    with _dedicated_session(engine) as conn:
        # sp_getapplock waits server-side, so there is nothing to poll.
        try:
            code = conn.exec_driver_sql(applock_sql(round(timeout_seconds * 1000))).scalar()
        except SQLAlchemyError as exc:
            raise _lock_failed(where, exc) from exc
        if not applock_acquired(code):
            raise _busy_error(where, timeout_seconds, describe_holder)
        held_sql = applock_held_sql()
        try:
            yield HeldLock(where, lambda: _held_on(conn, held_sql))
        finally:
            _release_quietly(conn, release_applock_sql())


def applock_acquired(code: object) -> bool:
    """Interpret sp_getapplock's return code: True if granted, False if it timed out (busy).

    Raises SetupToolError for every other outcome.
    """
    if code in _APPLOCK_GRANTED:
        return True
    if code == _APPLOCK_TIMEOUT:
        return False
    reason = _APPLOCK_FAILURES.get(code if isinstance(code, int) else 0, f"it returned {code!r}")
    raise SetupToolError(
        f"SQL Server refused the setup-tool run lock: {reason}.",
        "Try again; if it keeps failing, check the login's rights on the database.",
    )
