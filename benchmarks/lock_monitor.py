"""Who waits on whom, sampled: which user sessions wait for a lock, and whose it is (issue 13).

Every `interval` seconds one query asks PostgreSQL which sessions of the users
(`application_name` bench-user-N) are waiting for a lock (`wait_event_type = 'Lock'`) and which
sessions hold it (`pg_blocking_pids`, the documented way to find the blockers), with the
blockers' `application_name`: the tool's connections are named by its `--database-url`, the
baseline's by its own engine. A user statement seen waiting on a session of the marker waited on
the marker's lock; its whole latency is counted as that wait (an upper bound: the statement's own
work is a few milliseconds).

While the tool runs, the same loop reads the marking step's row in `setup_tool_step`: the moment
it appears (the step opens) and the moment it says completed bound "during the marking"; its
number of batches done is kept.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import psycopg

from benchmarks.users import USER_APP

WAITS_SQL = f"""
SELECT waiting.application_name, holder.application_name
FROM pg_stat_activity AS waiting
CROSS JOIN LATERAL unnest(pg_blocking_pids(waiting.pid)) AS blocker(pid)
JOIN pg_stat_activity AS holder ON holder.pid = blocker.pid
WHERE waiting.wait_event_type = 'Lock' AND waiting.application_name LIKE '{USER_APP}%'
"""


@dataclass(frozen=True)
class Wait:
    """At `at` (time.monotonic), user session `user` was waiting on a lock `holder` held."""

    at: float
    user: int
    holder: str


@dataclass
class StepWindow:
    """When the marking step ran, as seen from outside (time.monotonic; None: not seen)."""

    opened: float | None = None
    completed: float | None = None
    batches: int = 0


@dataclass
class Samples:
    waits: list[Wait] = field(default_factory=list)
    step: StepWindow = field(default_factory=StepWindow)
    polls: int = 0


class LockMonitor:
    """A background session sampling lock waits (and the tool's marking step, `watch_step`)."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        *,
        interval: float = 0.01,
        watch_step: bool = False,
    ) -> None:
        self.conninfo = conninfo
        self.step_table = f"{schema}.setup_tool_step"
        self.interval = interval
        self.watch_step = watch_step
        self.samples = Samples()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lock-monitor", daemon=True)
        self.error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> Samples:
        self._stop.set()
        self._thread.join(timeout=60)
        return self.samples

    def _loop(self) -> None:
        try:
            with psycopg.connect(
                self.conninfo, autocommit=True, application_name="bench-monitor"
            ) as conn:
                while not self._stop.is_set():
                    self._poll(conn)
                    self._stop.wait(self.interval)
        except psycopg.Error as error:  # reported with the figures; the run goes on
            self.error = str(error).splitlines()[0]

    def _poll(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        now = time.monotonic()
        for user_app, holder in conn.execute(WAITS_SQL.encode()):
            user = int(str(user_app).removeprefix(USER_APP))
            self.samples.waits.append(Wait(now, user, str(holder or "")))
        if self.watch_step:
            self._read_step(conn, now)
        self.samples.polls += 1

    def _read_step(self, conn: psycopg.Connection[tuple[object, ...]], now: float) -> None:
        step = self.samples.step
        if step.completed is not None:
            return
        exists = conn.execute(b"SELECT to_regclass(%s)", (self.step_table,)).fetchone()
        if exists is None or exists[0] is None:
            return  # the tool has not installed its tables yet
        row = conn.execute(
            f"SELECT status, batches_done FROM {self.step_table} "
            "WHERE step_key = 'mark_invites' ORDER BY step_row_id DESC LIMIT 1".encode()
        ).fetchone()
        if row is None:
            return
        status, batches = row
        if step.opened is None:
            step.opened = now
        step.batches = int(str(batches or 0))
        if status == "completed":
            step.completed = now
