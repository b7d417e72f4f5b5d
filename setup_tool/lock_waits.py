"""Waiting on other sessions' locks, boundedly, without making users wait on the tool.

A user editing an appointment, or any long transaction, holds row locks that a batch needs. A
batch must neither wait behind it forever (SQL Server's default) nor fail the run at the first
deadlock, and while it holds rows of its own it must not wait long either: every user who then
needs one of those rows would queue behind it. So every batch:

- waits at most `seconds` (--lock-wait) for a lock: SQL Server ``SET LOCK_TIMEOUT`` (error 1222
  when it runs out), PostgreSQL ``SET LOCAL lock_timeout`` (SQLSTATE 55P03, lock_not_available),
  SQLite ``PRAGMA busy_timeout`` (SQLITE_BUSY, "database is locked");
- but only while it holds nothing: once it has locked rows of its own it waits at most
  HOLDING_LOCK_WAIT_SECONDS (`holding_lock_wait`), so a user queued behind the batch waits at
  most that plus the batch's own time. When that short wait runs out, the batch is rolled back
  (its locks go with it), finds the rows another session holds and, in its next try, waits the
  full lock wait for those rows alone, holding nothing else (setup_tool.steps.mark_invites);
- yields to users in a deadlock: SQL Server ``SET DEADLOCK_PRIORITY LOW`` makes the batch the
  victim whenever it is in one. PostgreSQL has no such setting. There a session checks for a
  deadlock once it has waited deadlock_timeout (1 s by default; PostgreSQL documentation,
  "Lock Management"), and the check aborts the session that runs it. A batch in a deadlock
  waits while holding, so it gives up after 0.5 s, before its own check; a user in the same
  cycle began waiting on the batch at most 0.5 s plus one statement of the batch earlier, so
  its check, 1 s after that, comes after the batch gave up (inferred from those rules; the
  online benchmark met no user deadlock on the tool);
- when it timed out, or the server chose it as a deadlock victim (SQL Server 1205, PostgreSQL
  40P01), is rolled back and tried again, at most `retries` times, waiting a quarter, a half,
  once, twice... `seconds` in between, so that the other session can finish meanwhile;
- then fails with LockWaitError, which names the wait (exit 1; finished batches are kept, so
  running the same command again resumes).

Every wait given up, deadlock and retry is counted in a LockWaitTally, for the report.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from setup_tool.dialects import dialect_of
from setup_tool.errors import InterruptedRun, SetupToolError

if TYPE_CHECKING:  # SQLAlchemy is imported when it is used: the CLI reads the defaults at once
    from sqlalchemy import Connection
    from sqlalchemy.exc import DBAPIError

DEFAULT_LOCK_WAIT_SECONDS = 10.0
DEFAULT_LOCK_WAIT_RETRIES = 3
MAX_LOCK_WAIT_SECONDS = 86_400.0  # SQL Server's LOCK_TIMEOUT is an int of milliseconds
# The longest a batch waits for a lock while it holds rows of its own. A user queued behind the
# batch waits at most this plus the batch's own time: the online benchmark (benchmarks/online.py)
# measures batches of 1,000 rows at well under 0.5 s, so users never wait a second on the tool.
HOLDING_LOCK_WAIT_SECONDS = 0.5
# --pause-between-batches: at most 10 minutes (longer is a stalled run, not a pace).
MAX_PAUSE_BETWEEN_BATCHES_SECONDS = 600.0
# How often in one batch a short wait while holding may lead straight to a wait for the busy
# rows alone (no pause, no retry used up) before such rounds count as retries too.
MAX_WAITS_ALONE = 10

LOCK_TIMEOUT = "lock timeout"
DEADLOCK = "deadlock"

# PostgreSQL SQLSTATEs (errcodes-appendix): lock_not_available, deadlock_detected.
_PG_STATES = {"55P03": LOCK_TIMEOUT, "40P01": DEADLOCK}
# SQL Server error numbers, as ODBC drivers end their messages: "... (1222) (SQLExecDirectW)".
_MSSQL_ERRORS = [(re.compile(r"\(1222\)"), LOCK_TIMEOUT), (re.compile(r"\(1205\)"), DEADLOCK)]
_MSSQL_DEADLOCK_SQLSTATE = "40001"
_STOP_POLL_SECONDS = 0.1

T = TypeVar("T")

log = logging.getLogger(__name__)


class LockWaitError(SetupToolError):
    """A batch did not get the locks it needs within its waits and retries."""


@dataclass
class LockWaitTally:
    """Lock waits a step met: waits it gave up (timeouts), deadlocks it was the victim of, and
    the tries it made again after them."""

    timeouts: int = 0
    deadlocks: int = 0
    retries: int = 0

    def count(self, kind: str) -> None:
        if kind == DEADLOCK:
            self.deadlocks += 1
        else:
            self.timeouts += 1


def check_lock_wait(seconds: float) -> float:
    """`seconds` if it can bound a lock wait: finite, above 0 and at most a day."""
    if not (math.isfinite(seconds) and 0 < seconds <= MAX_LOCK_WAIT_SECONDS):
        raise ValueError(
            f"a lock wait must be more than 0 and at most {MAX_LOCK_WAIT_SECONDS:g} seconds, "
            f"not {seconds!r}"
        )
    return seconds


def lock_timeout_sql(dialect_name: str, seconds: float) -> str | None:
    """The statement that makes this connection's lock waits give up after `seconds`
    (setup_tool.dialects has each engine's).

    PostgreSQL's is transaction-local (SET LOCAL) and must run inside the batch's transaction;
    the others hold for the connection and are simply set again for every batch. Never 0:
    PostgreSQL reads 0 as "wait forever".
    """
    ms = max(1, math.ceil(check_lock_wait(seconds) * 1000))
    return dialect_of(dialect_name).lock_timeout_sql(ms)


def bound_lock_waits(conn: Connection, seconds: float) -> None:
    """Make the lock waits of `conn`'s current transaction give up after `seconds`."""
    statement = lock_timeout_sql(conn.dialect.name, seconds)
    if statement is not None:
        conn.exec_driver_sql(statement)


def holding_lock_wait(dialect_name: str, seconds: float) -> float:
    """How long a batch that holds rows of its own waits for another lock: the lock wait, at
    most HOLDING_LOCK_WAIT_SECONDS where the engine has row locks (not SQLite)."""
    return dialect_of(dialect_name).holding_lock_wait(seconds, HOLDING_LOCK_WAIT_SECONDS)


def yield_deadlocks_sql(dialect_name: str) -> str | None:
    """The statement that makes this session the victim of any deadlock it is in (SQL Server:
    a session-level setting, set again for every batch); None where the engine has none."""
    return dialect_of(dialect_name).yield_deadlocks_sql


def yield_deadlocks(conn: Connection) -> None:
    statement = yield_deadlocks_sql(conn.dialect.name)
    if statement is not None:
        conn.exec_driver_sql(statement)


def lock_wait_failure(error: BaseException) -> str | None:
    """LOCK_TIMEOUT or DEADLOCK when `error` is the database giving up a lock wait, else None."""
    from sqlalchemy.exc import DBAPIError

    if not isinstance(error, DBAPIError) or error.orig is None:
        return None
    original = error.orig
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if isinstance(state, str) and state in _PG_STATES:
        return _PG_STATES[state]
    sqlite_name = getattr(original, "sqlite_errorname", None)
    if isinstance(sqlite_name, str) and sqlite_name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return LOCK_TIMEOUT
    message = str(original)
    for pattern, kind in _MSSQL_ERRORS:
        if pattern.search(message):
            return kind
    args = original.args
    if args and args[0] == _MSSQL_DEADLOCK_SQLSTATE:  # pyodbc: (sqlstate, message)
        return DEADLOCK
    if "database is locked" in message:  # sqlite3 before sqlite_errorname
        return LOCK_TIMEOUT
    return None


def backoff_seconds(seconds: float, retry: int) -> float:
    """The pause before retry number `retry` (1, 2, ...): a quarter, a half, once... `seconds`."""
    return float(seconds * 2 ** (retry - 1) / 4)


def retrying_lock_waits(
    attempt: Callable[[], T],
    *,
    seconds: float,
    retries: int,
    what: str,
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
    tally: LockWaitTally | None = None,
    waited: Callable[[], float] | None = None,
    wait_alone: Callable[[str], bool] | None = None,
) -> T:
    """`attempt()` (one transaction that bounds its own lock waits, see bound_lock_waits), tried
    again after a lock timeout or as a deadlock victim, at most `retries` times with backoff.

    `waited()` says how long the failed try waited (default `seconds`). `wait_alone(kind)`, after
    a failed try was rolled back, may find the rows another session holds and return True: the
    next try then waits for them alone, so it goes at once and uses up no retry (at most
    MAX_WAITS_ALONE times). Every failure and retry is counted in `tally`.

    Raises LockWaitError when every try failed so, and InterruptedRun when `should_stop` says so
    between tries. Any other error propagates at once.
    """
    from sqlalchemy.exc import DBAPIError

    failures: list[tuple[str, float]] = []
    alone = 0
    while True:
        try:
            return attempt()
        except DBAPIError as error:
            kind = lock_wait_failure(error)
            if kind is None:
                raise
            wait = waited() if waited is not None else seconds
            if tally is not None:
                tally.count(kind)
            detail = _first_line(error)
            if alone < MAX_WAITS_ALONE and wait_alone is not None and wait_alone(kind):
                alone += 1
                pause = 0.0
                log.info(
                    "%s: %s while holding rows of its own (%s); rolled back, now waiting for the "
                    "rows another session holds, alone",
                    what,
                    _describe(kind, wait),
                    detail,
                )
            else:
                failures.append((kind, wait))
                if len(failures) > retries:
                    raise _gave_up(what, seconds, retries, failures, detail) from None
                pause = backoff_seconds(seconds, len(failures))
                log.warning(
                    "%s: %s (%s); rolled back, trying again in %.3g s (retry %d of %d)",
                    what,
                    _describe(kind, wait),
                    detail,
                    pause,
                    len(failures),
                    retries,
                )
            if tally is not None:
                tally.retries += 1
            if not pause_unless_stopped(pause, should_stop, sleep):
                raise InterruptedRun(
                    f"Stopped while {what} waited to be tried again after a {kind}; it was "
                    "rolled back.",
                    "Run the same command again to resume from the checkpoint.",
                ) from None


def pause_unless_stopped(
    seconds: float, should_stop: Callable[[], bool], sleep: Callable[[float], None] = time.sleep
) -> bool:
    """Sleep `seconds`, in short steps so a stop request is heard; False if one came."""
    slept = 0.0
    while not should_stop():
        if slept >= seconds:
            return True
        step = min(_STOP_POLL_SECONDS, seconds - slept)
        sleep(step)
        slept += step
    return False


def _describe(kind: str, seconds: float) -> str:
    if kind == DEADLOCK:
        return "chosen as a deadlock victim"
    return f"waited {seconds:g} s for another session's lock"


def _first_line(error: DBAPIError) -> str:
    text = str(error.orig).strip()
    return text.splitlines()[0] if text else type(error.orig).__name__


def _gave_up(
    what: str, seconds: float, retries: int, failures: list[tuple[str, float]], detail: str
) -> LockWaitError:
    kinds = [kind for kind, _wait in failures]
    timeouts, deadlocks = kinds.count(LOCK_TIMEOUT), kinds.count(DEADLOCK)
    waits = {wait for kind, wait in failures if kind == LOCK_TIMEOUT}
    longest = f"{max(waits):g} s" if len(waits) == 1 else f"up to {max(waits, default=0):g} s"
    parts = []
    if timeouts:
        parts.append(f"waited {longest} for another session's lock {_times(timeouts)}")
    if deadlocks:
        parts.append(f"was chosen as a deadlock victim {_times(deadlocks)}")
    pauses = [f"{backoff_seconds(seconds, n):g} s" for n in range(1, retries + 1)]
    apart = ", ".join(pauses[:-1]) + f" and {pauses[-1]}" if len(pauses) > 1 else "".join(pauses)
    between = f" ({len(failures)} tries, {apart} apart)" if retries else ""
    return LockWaitError(
        f"{what[:1].upper()}{what[1:]} {' and '.join(parts)}{between}, so the run stopped; the "
        f"batch was rolled back and nothing of it was written. Another session holds locks on "
        f"the rows it changes: most likely a user editing those appointments, or a long "
        f"transaction. The database said: {detail}",
        "Every finished batch is kept: run the same command again to resume once that session "
        "has finished, or give --lock-wait more seconds (SETUP_TOOL_LOCK_WAIT, answer-file key "
        "lock-wait). On SQL Server, sp_who2 shows the blocking session; on PostgreSQL, "
        "pg_stat_activity with pg_blocking_pids().",
    )


def _times(count: int) -> str:
    return "once" if count == 1 else "twice" if count == 2 else f"{count} times"
