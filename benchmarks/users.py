"""SuperOffice users working on the same PostgreSQL database while the marking runs (issue 13).

Each user is a session of its own (`application_name` bench-user-N, so the lock monitor can tell
who waits on whom) in autocommit: every statement is one short transaction, as NetServer's saves
are. A user picks, one after another with a short random pause ("think time"):

- **diary**: reads one associate's week (the `(associate_id, activeDate)` index SuperOffice has);
- **edit**: changes one appointment (`endDate` one minute later, `updated*` maintained as
  SuperOffice does): a row being marked (any row of the set the marking changes: the batch in
  flight gets its share, as it would from users who know nothing of the tool), a row of the same
  meetings (the meeting's own row, participants, external rows), or any row;
- **meeting**: saves a whole meeting: its own row and every participant row in one statement,
  locking them in primary-key order first (as the tool's batches do: two sessions that lock in
  one order cannot deadlock, so a deadlock here would be the tool's);
- **warning**: sets another caution warning (2-5) on a row being marked, only where it has none
  (as a user would on an appointment without a warning): the tool must then leave it alone;
- **insert**: a new appointment, its id taken from SuperOffice's `sequence` row (two statements).

Every statement's latency (its wait, as the user feels it) is recorded, and a ledger of what
each user committed, so the run can prove afterwards that nothing was lost.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

Conn = psycopg.Connection[tuple[Any, ...]]

WEIGHTS = {"diary": 35, "edit": 30, "meeting": 10, "warning": 10, "insert": 15}
# Where an edit goes: a row being marked, a row of the same meetings, any row.
EDIT_TARGETS = {"marking": 40, "meeting_row": 30, "any": 30}
OTHER_WARNINGS = (2, 3, 4, 5)  # cautionWarning values other than NotInSync (SUPEROFFICE.md)
UPDATED_COUNT_CAP = 65535
USER_APP = "bench-user-"


@dataclass(frozen=True)
class Statement:
    """One statement a user ran: when it started (time.monotonic), how long it took."""

    user: int
    kind: str
    started: float
    seconds: float
    error: str | None = None

    @property
    def ended(self) -> float:
        return self.started + self.seconds


@dataclass
class Targets:
    """The rows users reach for, read from the database before they start."""

    to_mark: list[int]  # sorted: the rows the marking will change
    meeting_of: dict[int, int]  # to-mark row -> its meeting id
    meeting_rows: list[int]  # every row of a sample of those meetings
    any_rows: list[int]  # a random sample of the whole table
    associates: list[int]
    first_day: datetime
    last_day: datetime
    columns: list[str]  # appointment's columns (lower case): what an insert must fill


@dataclass
class Ledger:
    """What one user committed: every committed change is listed here, nothing else."""

    edits: Counter[int] = field(default_factory=Counter)  # row -> minutes endDate moved
    warned: dict[int, int] = field(default_factory=dict)  # row -> the warning it now carries
    inserted: list[int] = field(default_factory=list)
    statements: list[Statement] = field(default_factory=list)

    def merge(self, other: Ledger) -> None:
        self.edits.update(other.edits)
        self.warned.update(other.warned)
        self.inserted += other.inserted
        self.statements += other.statements


class Users:
    """`count` user sessions on the database of `conninfo`, started and stopped together."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        targets: Targets,
        *,
        count: int,
        think_seconds: float,
        seed: int = 13,
    ) -> None:
        self.conninfo = conninfo
        self.schema = schema
        self.targets = targets
        self.count = count
        self.think_seconds = think_seconds
        self.seed = seed
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ledgers: list[Ledger] = []
        self.failures: list[str] = []  # a session that could not run at all

    def start(self) -> None:
        ready = threading.Barrier(self.count + 1)
        for number in range(self.count):
            ledger = Ledger()
            self._ledgers.append(ledger)
            thread = threading.Thread(
                target=self._session,
                args=(number, ledger, ready),
                name=f"{USER_APP}{number}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
        ready.wait(timeout=60)  # every session connected before anything is timed

    def stop(self) -> Ledger:
        """Stop every session after its statement in flight; what they did, together."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
        total = Ledger()
        for ledger in self._ledgers:
            total.merge(ledger)
        total.statements.sort(key=lambda s: s.started)
        return total

    def _session(self, number: int, ledger: Ledger, ready: threading.Barrier) -> None:
        rng = random.Random(self.seed * 1000 + number)
        try:
            conn = psycopg.connect(
                self.conninfo, autocommit=True, application_name=f"{USER_APP}{number}"
            )
        except psycopg.Error as error:
            self.failures.append(f"user {number}: {error}")
            ready.wait(timeout=60)
            return
        work = _Work(conn, self.schema, self.targets, number, ledger, rng)
        operations: dict[str, Callable[[], None]] = {
            "diary": work.diary,
            "edit": lambda: work.edit(self._edit_target(rng)),
            "meeting": lambda: work.meeting(self._being_marked(rng)),
            "warning": lambda: work.warning(self._being_marked(rng)),
            "insert": work.insert,
        }
        kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
        try:
            ready.wait(timeout=60)
            while not self._stop.is_set():
                operations[rng.choices(kinds, weights)[0]]()
                self._stop.wait(rng.expovariate(1 / self.think_seconds))
        finally:
            conn.close()

    def _being_marked(self, rng: random.Random) -> int:
        return rng.choice(self.targets.to_mark)

    def _edit_target(self, rng: random.Random) -> int:
        where = rng.choices(list(EDIT_TARGETS), list(EDIT_TARGETS.values()))[0]
        if where == "marking":
            return self._being_marked(rng)
        if where == "meeting_row":
            return rng.choice(self.targets.meeting_rows)
        return rng.choice(self.targets.any_rows)


class _Work:
    """One user's statements, each timed and, when it committed something, in the ledger."""

    def __init__(
        self,
        conn: Conn,
        schema: str,
        targets: Targets,
        number: int,
        ledger: Ledger,
        rng: random.Random,
    ) -> None:
        self.conn = conn
        self.t = f"{schema}.appointment"
        self.sequence = f"{schema}.sequence"
        self.targets = targets
        self.number = number
        self.associate = targets.associates[number % len(targets.associates)]
        self.ledger = ledger
        self.rng = rng

    def _run(self, kind: str, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        started = time.monotonic()
        error = None
        rows: list[tuple[Any, ...]] = []
        try:
            cursor = self.conn.execute(sql.encode(), params)
            if cursor.description is not None:
                rows = cursor.fetchall()
        except psycopg.Error as failure:
            error = f"{type(failure).__name__}: {str(failure).splitlines()[0]}"
        seconds = time.monotonic() - started
        self.ledger.statements.append(Statement(self.number, kind, started, seconds, error))
        return rows

    def _now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None, microsecond=0)  # stored as naive UTC

    def _saved(self) -> str:
        """The SET part SuperOffice writes on every save: who, when, how often."""
        return (
            "updated = %s, updated_associate_id = %s, "
            f"updatedcount = CASE WHEN updatedcount >= {UPDATED_COUNT_CAP} "
            f"THEN {UPDATED_COUNT_CAP} ELSE updatedcount + 1 END"
        )

    def diary(self) -> None:
        t = self.targets
        span = max(1, (t.last_day - t.first_day).days - 7)
        monday = t.first_day + timedelta(days=self.rng.randrange(span))
        self._run(
            "diary",
            f"SELECT appointment_id, activedate, enddate, cautionwarning, mother_id FROM {self.t} "
            "WHERE associate_id = %s AND activedate >= %s AND activedate < %s "
            "ORDER BY activedate",
            (self.rng.choice(t.associates), monday, monday + timedelta(days=7)),
        )

    def edit(self, row: int) -> None:
        changed = self._run(
            "edit",
            f"UPDATE {self.t} SET enddate = enddate + interval '1 minute', {self._saved()} "
            "WHERE appointment_id = %s RETURNING appointment_id",
            (self._now(), self.associate, row),
        )
        self.ledger.edits.update(int(r[0]) for r in changed)

    def meeting(self, row: int) -> None:
        meeting = self.targets.meeting_of.get(row, row)
        changed = self._run(
            "meeting",
            f"UPDATE {self.t} SET enddate = enddate + interval '1 minute', {self._saved()} "
            f"WHERE appointment_id IN (SELECT appointment_id FROM {self.t} "
            "WHERE appointment_id = %s OR mother_id = %s "
            "ORDER BY appointment_id FOR UPDATE) RETURNING appointment_id",
            (self._now(), self.associate, meeting, meeting),
        )
        self.ledger.edits.update(int(r[0]) for r in changed)

    def warning(self, row: int) -> None:
        value = self.rng.choice(OTHER_WARNINGS)
        changed = self._run(
            "warning",
            f"UPDATE {self.t} SET cautionwarning = %s, {self._saved()} "
            "WHERE appointment_id = %s AND (cautionwarning = 0 OR cautionwarning IS NULL) "
            "RETURNING appointment_id",
            (value, self._now(), self.associate, row),
        )
        for (changed_id,) in changed:
            self.ledger.warned[int(changed_id)] = value

    def insert(self) -> None:
        taken = self._run(
            "sequence",
            f"UPDATE {self.sequence} SET next_id = next_id + 1 "
            "WHERE lower(tablename) = 'appointment' RETURNING next_id - 1",
            (),
        )
        if not taken:
            return
        new_id = int(taken[0][0])
        values = self._new_row(new_id)
        names = ", ".join(values)
        marks = ", ".join(["%s"] * len(values))
        inserted = self._run(
            "insert",
            f"INSERT INTO {self.t} ({names}) VALUES ({marks}) RETURNING appointment_id",
            list(values.values()),
        )
        if inserted:
            self.ledger.inserted.append(new_id)

    def _new_row(self, new_id: int) -> dict[str, object]:
        """A plain appointment in this user's diary: no footprint of the invite system."""
        now = self._now()
        start = now + timedelta(days=self.rng.randrange(1, 60), hours=self.rng.randrange(8, 17))
        wanted: dict[str, object] = {
            "appointment_id": new_id,
            "contact_id": 0,
            "person_id": 0,
            "associate_id": self.associate,
            "registered": now,
            "registered_associate_id": self.associate,
            "updated": now,
            "updated_associate_id": 0,
            "updatedcount": 0,
            "type": 1,
            "status": 1,
            "mother_id": 0,
            "invitedpersonid": 0,
            "emailid": 0,
            "activedate": start,
            "do_by": start,
            "enddate": start + timedelta(hours=1),
            "cautionwarning": 0,
            "recurrenceruleid": 0,
            "mother_associate_id": 0,
            "sendemail": 0,
            "owned_externally": 0,
        }
        return {name: value for name, value in wanted.items() if name in self.targets.columns}


def select_column(conn: Conn, sql: str, params: Sequence[object] = ()) -> list[Any]:
    """The first column of every row `sql` returns."""
    return [row[0] for row in conn.execute(sql.encode(), params)]


def read_targets(
    conn: Conn, schema: str, to_mark: list[int], seed: int = 13, sample: int = 20_000
) -> Targets:
    """What the users reach for: the rows to mark and their meetings, a sample of all rows, the
    associates and the span of their diaries."""
    rng = random.Random(seed)
    t = f"{schema}.appointment"
    meeting_of = {
        int(row_id): int(mother) if mother else int(row_id)  # mother_id 0: its own meeting
        for row_id, mother in conn.execute(
            f"SELECT appointment_id, mother_id FROM {t} WHERE appointment_id = ANY(%s)".encode(),
            (to_mark,),
        )
    }
    meetings = sorted(set(meeting_of.values()))
    chosen = rng.sample(meetings, min(len(meetings), 5_000))
    meeting_rows = select_column(
        conn,
        f"SELECT appointment_id FROM {t} WHERE mother_id = ANY(%s) OR appointment_id = ANY(%s)",
        (chosen, chosen),
    )
    [(low, high)] = conn.execute(
        f"SELECT min(appointment_id), max(appointment_id) FROM {t}".encode()
    )
    probes = [rng.randint(int(low), int(high)) for _ in range(sample)]
    any_rows = select_column(
        conn, f"SELECT appointment_id FROM {t} WHERE appointment_id = ANY(%s)", (probes,)
    )
    associates = select_column(
        conn, f"SELECT DISTINCT associate_id FROM {t} WHERE associate_id <> 0 LIMIT 500"
    )
    [(first, last)] = conn.execute(f"SELECT min(activedate), max(activedate) FROM {t}".encode())
    columns = select_column(
        conn,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'appointment'",
        (schema,),
    )
    return Targets(
        to_mark=sorted(to_mark),
        meeting_of=meeting_of,
        meeting_rows=[int(r) for r in meeting_rows] or [int(r) for r in any_rows],
        any_rows=[int(r) for r in any_rows],
        associates=[int(a) for a in associates],
        first_day=first,
        last_day=last,
        columns=[str(c) for c in columns],
    )
