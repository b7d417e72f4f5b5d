"""The embedded demo database: a SuperOffice-shaped database with meetings, invites and overrides.

`setup-tool demo` builds it so that a first run shows something real, and the benchmarks build it
with millions of appointment rows on SQLite and PostgreSQL. Rows are generated and inserted in
chunks, so memory stays flat whatever the size; the same seed and `now` give the same rows.

Everything the upgrade must cope with is in it: meetings with and without external participants,
rows already carrying another caution warning or NULL, `updatedCount` at its 16-bit cap, id gaps
and meetings whose rows are far apart, overriding preference rows at group and individual level,
and `sequence` rows whose `next_id` is ahead of the data (as in real databases).
"""

from __future__ import annotations

import os
import random
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Index, SmallInteger, Table, create_engine
from sqlalchemy.engine import URL, Dialect

from setup_tool.errors import UsageError
from setup_tool.schema import SuperOfficeTables, canonical_tables

NEVER = datetime(1900, 1, 1)
"""SuperOffice's "empty" date: the `updated` value of a row nobody has updated yet."""

Progress = Callable[[int, int], None]
"""Called with (appointment rows inserted so far, appointment rows in total)."""

Row = dict[str, object]
_T = TypeVar("_T")

CHUNK_ROWS = 10_000
FIRST_APPOINTMENT_ID = 1000
HISTORY = timedelta(days=5 * 365)
UPDATED_COUNT_CAP = 65535  # updatedCount is a 16-bit unsigned counter in SuperOffice
SIGNED_SMALLINT_MAX = 32767  # ...but a SMALLINT column on a server engine stops here

# SuperOffice's table numbers (database reference); only their distinctness matters to the tool.
TABLE_NUMBERS = {
    "sequence": 0,
    "associate": 2,
    "person": 6,
    "appointment": 9,
    "traveltransactionlog": 29,
    "travelcurrent": 32,
    "UserPreference": 56,
    "ModuleOwner": 212,
    "ModuleLicense": 237,
    "ProductVersion": 240,
    "DatabaseModel": 456,
}

# appointment.type / appointment.status / appointment.cautionWarning values (SUPEROFFICE.md).
IN_DIARY, IN_CHECKLIST, NOTE, DOCUMENT, SAVED_REPORT, BOOKING_FOR_DIARY = 1, 2, 3, 4, 5, 6
MERGE_DRAFT, MERGE_FINAL = 8, 9
NOT_STARTED, STARTED, COMPLETED = 1, 2, 3
BOOKING, BOOKING_MOVED, BOOKING_SEEN, BOOKING_MOVED_SEEN = 5, 6, 7, 8
BOOKING_DECLINED, BOOKING_DELETED = 9, 10
ASSIGNMENT_STATUSES = (11, 12, 13)
NOT_IN_SYNC = 1
OTHER_WARNINGS = (2, 3, 4, 5)

DIARY_SYNC = ("Mail", "DiarySynchronizerActive")
ENABLE_TRAVEL = ("Travel", "EnableTravel")
SYNCHRONIZER_LICENCE = "superoffice.exchange-sync"
OLDER_SUPEROFFICE_VERSION = "8.1 R03"

FIRST_NAMES = (
    "Anna", "Lars", "Ingrid", "Per", "Kari", "Jonas", "Maria", "Erik", "Sofia", "Henrik",
    "Emma", "Ole", "Nora", "Mats", "Julia", "Anders", "Eva", "Jan", "Sara", "Thomas",
)  # fmt: skip
LAST_NAMES = (
    "Hansen", "Johansen", "Olsen", "Larsen", "Andersson", "Nilsson", "de Vries", "Jensen",
    "Pedersen", "Berg", "Haugen", "Lund", "Dahl", "Svensson", "Bakker", "Smith", "Müller",
)  # fmt: skip
# Names that break naive quoting, encodings and sorting; they come first so every demo has them.
TRICKY_NAMES = (
    ("Søren", "Ødegård"),
    ("Siobhán", "O'Sullivan"),
    ("Zoë", "d'Arcy-Åberg"),
    ("José", "Núñez"),
    ("Łukasz", "Wąsowski"),
    ("Björk", "Guðmundsdóttir"),
    ('Dwayne "The Rock"', "Johnson; DROP TABLE person"),
    ("太郎", "田中"),
)


@dataclass(frozen=True)
class DemoOptions:
    """What kind of SuperOffice database to pretend to be, and how big."""

    appointments: int = 20_000
    superoffice_version: str = "8.5 R10"
    synchronizer_version: str | None = "3.2.284"  # None: no synchronizer, no licence for it
    travel: bool = False
    invite_share: float = 0.04  # share of appointment rows in meetings with an external participant
    seed: int = 2019
    now: datetime | None = None  # naive UTC; every registered date lies before it
    bool_values: tuple[str, str] = ("1", "0")  # how this database spells Bool preferences

    def __post_init__(self) -> None:
        if not 0 <= self.appointments <= 100_000_000:
            raise UsageError(
                f"Cannot build a demo with {self.appointments} appointments.",
                "Choose between 0 and 100,000,000 appointment rows.",
            )
        if not 0.0 <= self.invite_share <= 1.0:
            raise UsageError(
                f"The invite share {self.invite_share} is not a fraction.",
                "Choose a share between 0 and 1, e.g. 0.04 for 4 % of the appointment rows.",
            )
        if not self.superoffice_version.strip() or self.synchronizer_version == "":
            raise UsageError("A demo version string is empty.", "Give a version like 8.5 R10.")
        if len(set(self.bool_values)) != 2 or not all(self.bool_values):
            raise UsageError(f"Invalid Bool spelling {self.bool_values!r}.", "Use e.g. ('1', '0').")

    def resolved_now(self) -> datetime:
        """`now` as naive UTC whole seconds (the current time unless the options fix it)."""
        now = self.now or datetime.now(UTC)
        if now.tzinfo is not None:
            now = now.astimezone(UTC).replace(tzinfo=None)
        return now.replace(microsecond=0)


@dataclass(frozen=True)
class DemoSummary:
    """What the demo database holds, in the terms of the upgrade."""

    appointments: int
    meetings: int  # master rows
    invite_meetings: int  # meetings with at least one external participant
    invite_rows: int  # all rows (master and participants) of invite meetings
    external_participant_rows: int
    invite_rows_to_mark: int  # invite rows with cautionWarning 0 or NULL: what a first run marks
    invite_rows_already_marked: int  # invite rows already at cautionWarning 1 (NotInSync)
    other_warning_rows: int  # invite rows with another warning (2-5), which the upgrade keeps
    first_appointment_id: int
    last_appointment_id: int
    persons: int
    associates: int
    diary_sync_overrides: int  # Mail/DiarySynchronizerActive rows at levels 3-5
    superoffice_version: str
    synchronizer_version: str | None
    travel: bool
    now: datetime
    updated_count_cap: int  # the highest updatedCount written (the column's 16-bit cap)

    def lines(self) -> list[str]:
        """The summary as short sentences for the console."""
        sync = self.synchronizer_version or "none"
        return [
            f"SuperOffice {self.superoffice_version}, synchronizer {sync}, "
            f"Travel {'on' if self.travel else 'off'}.",
            f"{self.appointments:,} appointment rows (ids {self.first_appointment_id:,}"
            f"-{self.last_appointment_id:,}), {self.meetings:,} meetings, "
            f"{self.persons:,} persons, {self.associates:,} associates.",
            f"{self.invite_meetings:,} invite meetings with {self.invite_rows:,} rows "
            f"({self.external_participant_rows:,} external participant rows): "
            f"{self.invite_rows_to_mark:,} to mark, {self.invite_rows_already_marked:,} "
            f"already marked, {self.other_warning_rows:,} with another warning (kept).",
            f"Diary Synchronizer Active has no system-level row and "
            f"{self.diary_sync_overrides} overriding rows.",
        ]


# ---------------------------------------------------------------------------------------------
# Schema


def create_demo_schema(conn: Connection, schema: str | None = None) -> SuperOfficeTables:
    """Create the canonical SuperOffice tables (documented names) and SuperOffice's indexes."""
    tables = canonical_tables(schema)
    tables.appointment.metadata.create_all(conn)
    for index in _demo_indexes(tables):  # one by one: create_all would order them at random
        index.create(conn)
    return tables


def _demo_indexes(tables: SuperOfficeTables) -> list[Index]:
    appointment, preference = tables.appointment.c, tables.userpreference.c
    lookup = (preference.prefsection, preference.prefkey, preference.deflevel, preference.owner_id)
    indexes = [
        # The index on mother_id is what makes finding a meeting's rows fast in real databases.
        Index("IDXAppointmentMother_id", appointment.mother_id),
        Index("IDXAppointmentAssoc", appointment.associate_id, appointment.activeDate),
        Index("IDXUserPreference", *lookup),  # not unique: duplicates exist in the wild
    ]
    if tables.productversion is not None:
        version = tables.productversion.c
        unique = (version.ownerName, version.codeName, version.version)
        indexes.append(Index("IDXProductVersion", *unique, unique=True))
    return indexes


def _associate_table(tables: SuperOfficeTables) -> Table | None:
    # SuperOfficeTables has no slot for associate; it shares the appointment table's metadata.
    for table in tables.appointment.metadata.tables.values():
        if table.name.lower() == "associate" and table.schema == tables.appointment.schema:
            return table
    return None


# ---------------------------------------------------------------------------------------------
# People


@dataclass(frozen=True)
class _People:
    """Ids of diary owners and of the external persons they invite."""

    associate_ids: range
    employee_person_ids: range  # the associates' own person rows (contact 1: our company)
    external_person_ids: range

    def contact_of(self, person_id: int) -> int:
        if person_id in self.employee_person_ids:
            return 1
        return 2 + (person_id - self.external_person_ids.start) // 3


def _plan_people(appointments: int) -> _People:
    associates = max(6, min(appointments // 500, 300))
    externals = max(len(TRICKY_NAMES) + 20, min(appointments // 20, 50_000))
    employees = range(1, associates + 1)
    return _People(
        associate_ids=range(1, associates + 1),
        employee_person_ids=employees,
        external_person_ids=range(employees.stop, employees.stop + externals),
    )


def _person_names(rng: random.Random, people: _People) -> Iterator[tuple[int, str, str]]:
    # The first associate and the first external persons carry the tricky names.
    for index, person_id in enumerate(people.employee_person_ids):
        first, last = TRICKY_NAMES[0] if index == 0 else _random_name(rng)
        yield person_id, first, last
    for index, person_id in enumerate(people.external_person_ids):
        tricky = index + 1 < len(TRICKY_NAMES)
        first, last = TRICKY_NAMES[index + 1] if tricky else _random_name(rng)
        yield person_id, first, last


def _random_name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def _insert_people(
    conn: Connection, tables: SuperOfficeTables, people: _People, seed: int, now: datetime
) -> None:
    rng = random.Random(f"{seed}:people")
    associate = _associate_table(tables)
    person_rows = (
        _person_row(rng, people, person_id, first, last, now)
        for person_id, first, last in _person_names(rng, people)
    )
    if tables.person is not None:
        _insert(conn, tables.person, person_rows)
    if associate is not None:
        logins = (
            {"associate_id": a, "name": f"USER{a:03d}", "person_id": p}
            for a, p in zip(people.associate_ids, people.employee_person_ids, strict=True)
        )
        _insert(conn, associate, logins)


def _person_row(
    rng: random.Random, people: _People, person_id: int, first: str, last: str, now: datetime
) -> Row:
    registered = now - HISTORY - timedelta(days=rng.randrange(1, 2000))
    return {
        "person_id": person_id,
        "contact_id": people.contact_of(person_id),
        "firstname": first,
        "lastname": last,
        "registered": registered,
        "registered_associate_id": 1,
        "updated": NEVER,
        "updated_associate_id": 0,
        "updatedCount": 0,
    }


# ---------------------------------------------------------------------------------------------
# Appointments


class _Dice(random.Random):
    """random.Random with `pick` and `between`: choice and randint cost too much per call when
    they run tens of millions of times."""

    def pick(self, choices: Sequence[_T]) -> _T:
        return choices[int(self.random() * len(choices))]

    def between(self, low: int, high: int) -> int:
        return low + int(self.random() * (high - low + 1))


@dataclass
class _Tally:
    """Counted while generating, so the summary needs no second pass over millions of rows."""

    rows: int = 0
    meetings: int = 0
    invite_meetings: int = 0
    invite_rows: int = 0
    external_rows: int = 0
    invite_to_mark: int = 0
    invite_marked: int = 0
    invite_other_warning: int = 0
    first_id: int = 0
    last_id: int = 0

    def count_invite_row(self, warning: int | None) -> None:
        self.invite_rows += 1
        if warning in (None, 0):
            self.invite_to_mark += 1
        elif warning == NOT_IN_SYNC:
            self.invite_marked += 1
        else:
            self.invite_other_warning += 1


class _AppointmentIds:
    """Ascending ids with the gaps deleted rows and purges leave behind."""

    def __init__(self, dice: _Dice, total: int) -> None:
        self._dice = dice
        self._next = FIRST_APPOINTMENT_ID
        self._taken = 0
        self._purge_at = total // 2  # one wide empty key range mid-table, as after a purge

    def take(self) -> int:
        taken = self._next
        self._taken += 1
        self._next += 1
        if self._dice.random() < 0.003:
            self._next += self._dice.between(1, 300)
        if self._taken == self._purge_at:
            self._next += 50_000
        return taken


@dataclass
class _Meeting:
    """A meeting being generated: its master row and who takes part."""

    master: Row
    owner: int
    internal: list[int]
    external: list[int]

    @property
    def invite(self) -> bool:
        return bool(self.external)


class _AppointmentGenerator:
    """Yields appointment rows in id order; rows of a meeting may be far apart."""

    def __init__(
        self, options: DemoOptions, people: _People, now: datetime, updated_count_cap: int
    ) -> None:
        self.options = options
        self.updated_count_cap = updated_count_cap
        self.people = people
        self.now = now
        self.start = now - HISTORY
        self._seconds_per_row = HISTORY.total_seconds() / max(options.appointments, 1)
        self._latest_registered = HISTORY.total_seconds() - 3600  # an hour before now
        self.dice = _Dice(f"{options.seed}:appointments")
        self.ids = _AppointmentIds(self.dice, options.appointments)
        self.tally = _Tally()
        self._built = 0  # rows generated, including those waiting in _late
        self._units = 0
        self._late: deque[tuple[int, Row]] = deque()  # participants added to a meeting later

    def rows(self) -> Iterator[Row]:
        total = self.options.appointments
        while self._built < total or self._late:
            if self._late and (self._late[0][0] <= self._units or self._built >= total):
                yield self._emit(self._late.popleft()[1])
                continue
            self._units += 1
            yield from (self._emit(row) for row in self._next_unit(total - self._built))

    def _emit(self, row: Row) -> Row:
        if "appointment_id" not in row:
            row["appointment_id"] = self.ids.take()
        appointment_id = row["appointment_id"]
        assert isinstance(appointment_id, int)
        self.tally.rows += 1
        self.tally.first_id = self.tally.first_id or appointment_id
        self.tally.last_id = appointment_id
        return row

    def _next_unit(self, remaining: int) -> list[Row]:
        share = self.options.invite_share
        # Feedback instead of dice: the invite share is right even for a few hundred rows.
        if remaining >= 2 and self.tally.invite_rows < share * (self._built + 1):
            return self._meeting_rows(remaining, invite=True)
        if remaining >= 2 and self.dice.random() < 0.05:
            return self._meeting_rows(remaining, invite=False)
        self._built += 1
        return [self._plain_row()]

    # -- dates -------------------------------------------------------------------------------

    def _registered(self) -> datetime:
        # Registration follows the id order over five years, with a few days of jitter.
        seconds = self._built * self._seconds_per_row + (self.dice.random() * 4 - 2) * 86400
        seconds = min(max(seconds, 0.0), self._latest_registered)
        return self.start + timedelta(seconds=int(seconds))

    def _active_date(self, registered: datetime) -> datetime:
        day = registered + timedelta(days=self.dice.between(-3, 45))
        minute = self.dice.pick((0, 15, 30, 45))
        return day.replace(hour=self.dice.between(8, 16), minute=minute, second=0)

    def _updated(self, row: Row, registered: datetime, by: int) -> None:
        draw = self.dice.random()
        if draw < 0.45:
            row.update(updated=NEVER, updated_associate_id=0, updatedCount=0)
            return
        count = self.updated_count_cap if draw < 0.455 else 1 + int(self.dice.expovariate(0.4))
        later = self.dice.random() * (self.now - registered).total_seconds()
        updated = registered + timedelta(seconds=max(1, int(later)))
        row.update(updated=updated, updated_associate_id=by, updatedCount=count)

    def _warning(self, in_meeting: bool) -> int | None:
        draw = self.dice.random()
        if draw < 0.04:
            return None  # rows from before the column existed
        if draw < (0.07 if in_meeting else 0.05):
            return NOT_IN_SYNC
        if draw < (0.15 if in_meeting else 0.06):
            return self.dice.pick(OTHER_WARNINGS)
        return 0

    # -- plain appointments --------------------------------------------------------------------

    def _plain_row(self) -> Row:
        registered = self._registered()
        active = self._active_date(registered)
        owner = self.dice.pick(self.people.associate_ids)
        type_, status, minutes = self._plain_kind(active)
        person = self._maybe_person()
        row: Row = {
            "contact_id": self.people.contact_of(person) if person else 0,
            "person_id": person,
            "associate_id": owner,
            "registered": registered,
            "registered_associate_id": owner,
            "type": type_,
            "status": status,
            "mother_id": 0,
            "invitedPersonId": 0,
            "emailId": 0,
            "activeDate": active,
            "do_by": active + timedelta(days=self.dice.between(1, 14)) if type_ == 2 else active,
            "endDate": active + timedelta(minutes=minutes),
            "cautionWarning": self._warning(in_meeting=False),
            "mother_associate_id": 0,
        }
        self._updated(row, registered, owner)
        return row

    def _plain_kind(self, active: datetime) -> tuple[int, int, int]:
        """(type, status, duration in minutes) of a plain appointment."""
        draw = self.dice.random()
        done = COMPLETED if active < self.now and self.dice.random() < 0.85 else NOT_STARTED
        if draw < 0.50:
            return IN_DIARY, done, self.dice.pick((30, 60, 60, 90, 120))
        if draw < 0.70:
            return IN_CHECKLIST, self.dice.pick((done, done, STARTED)), 0
        if draw < 0.78:
            return NOTE, COMPLETED, 0
        if draw < 0.93:
            return DOCUMENT, self.dice.pick((COMPLETED, COMPLETED, NOT_STARTED)), 0
        if draw < 0.97:
            kind = self.dice.pick((IN_DIARY, IN_CHECKLIST))
            return kind, self.dice.pick(ASSIGNMENT_STATUSES), 60  # assigned to someone else
        return self.dice.pick((SAVED_REPORT, MERGE_DRAFT, MERGE_FINAL)), COMPLETED, 0

    def _maybe_person(self) -> int:
        if self.dice.random() < 0.3:
            return 0
        return self.dice.pick(self.people.external_person_ids)

    # -- meetings ------------------------------------------------------------------------------

    def _meeting_rows(self, remaining: int, invite: bool) -> list[Row]:
        meeting = self._plan_meeting(remaining, invite)
        rows = [meeting.master]
        rows += [self._internal_row(meeting, associate) for associate in meeting.internal]
        rows += [self._external_row(meeting, person) for person in meeting.external]
        self._count_meeting(meeting, rows)
        self._built += len(rows)
        if len(rows) > 2 and self.dice.random() < 0.1:
            # A participant added days later gets a later id, far from the rest of the meeting.
            late = rows.pop()
            late["registered"] = registered = self._later(late)
            self._updated(late, registered, meeting.owner)
            self._late.append((self._units + self.dice.between(1, 40), late))
        return rows

    def _plan_meeting(self, remaining: int, invite: bool) -> _Meeting:
        associates = self.people.associate_ids
        owner = self.dice.pick(associates)
        internal_count = self.dice.between(0, 3) if invite else self.dice.between(1, 5)
        external_count = self.dice.between(1, 3) if invite else 0
        # Near the end the meeting shrinks to fit, keeping at least one participant.
        internal_count = min(internal_count, remaining - 1 - external_count)
        external_count = min(external_count, remaining - 1)
        internal_count = max(internal_count, 0)
        colleagues = self.dice.sample(associates, internal_count + 1)
        internal = [a for a in colleagues if a != owner][:internal_count]
        external = self.dice.sample(self.people.external_person_ids, external_count)
        master = self._master_row(owner, external[0] if external else 0)
        return _Meeting(master=master, owner=owner, internal=internal, external=external)

    def _master_row(self, owner: int, person: int) -> Row:
        registered = self._registered()
        active = self._active_date(registered)
        master_id = self.ids.take()
        row: Row = {
            "appointment_id": master_id,
            "contact_id": self.people.contact_of(person) if person else 0,
            "person_id": person,
            "associate_id": owner,
            "registered": registered,
            "registered_associate_id": owner,
            "type": IN_DIARY,
            "status": COMPLETED if active < self.now else NOT_STARTED,
            "mother_id": master_id,
            "invitedPersonId": 0,
            "emailId": 0,
            "activeDate": active,
            "do_by": active,
            "endDate": active + timedelta(minutes=self.dice.pick((30, 60, 60, 90, 120))),
            "cautionWarning": self._warning(in_meeting=True),
            "mother_associate_id": owner,
        }
        self._updated(row, registered, owner)
        return row

    def _participant_row(self, meeting: _Meeting, status: int, type_: int) -> Row:
        row = dict(meeting.master)
        del row["appointment_id"]  # given when the row is emitted
        row.update(status=status, type=type_, cautionWarning=self._warning(in_meeting=True))
        registered = row["registered"]
        assert isinstance(registered, datetime)
        self._updated(row, registered, meeting.owner)
        return row

    def _internal_row(self, meeting: _Meeting, associate: int) -> Row:
        draw = self.dice.random()
        if draw < 0.6:
            status, type_ = meeting.master["status"], IN_DIARY  # accepted
        elif draw < 0.85:
            status = self.dice.pick((BOOKING, BOOKING_MOVED, BOOKING_SEEN, BOOKING_MOVED_SEEN))
            type_ = BOOKING_FOR_DIARY
        else:
            status = BOOKING_DECLINED if draw < 0.95 else BOOKING_DELETED
            type_ = BOOKING_FOR_DIARY
        assert isinstance(status, int)
        row = self._participant_row(meeting, status, type_)
        row["associate_id"] = associate
        return row

    def _external_row(self, meeting: _Meeting, person: int) -> Row:
        status = self.dice.pick(
            (BOOKING, BOOKING, BOOKING_SEEN, BOOKING_MOVED, BOOKING_DECLINED, BOOKING_DELETED)
        )
        row = self._participant_row(meeting, status, BOOKING_FOR_DIARY)
        row.update(
            associate_id=0,
            person_id=person,
            contact_id=self.people.contact_of(person),
            invitedPersonId=person,
            emailId=100_000 + person,  # the e-mail address the invitation went to
        )
        return row

    def _later(self, row: Row) -> datetime:
        registered = row["registered"]
        assert isinstance(registered, datetime)
        later = registered + timedelta(hours=self.dice.between(1, 72))
        return min(later, self.now - timedelta(seconds=1))

    def _count_meeting(self, meeting: _Meeting, rows: list[Row]) -> None:
        self.tally.meetings += 1
        if not meeting.invite:
            return
        self.tally.invite_meetings += 1
        self.tally.external_rows += len(meeting.external)
        for row in rows:
            warning = row["cautionWarning"]
            assert warning is None or isinstance(warning, int)
            self.tally.count_invite_row(warning)


def _insert_appointments(
    conn: Connection,
    tables: SuperOfficeTables,
    generator: _AppointmentGenerator,
    progress: Progress | None,
) -> None:
    table = tables.appointment
    extra = _optional_appointment_values(table)
    total = generator.options.appointments
    done = 0
    for chunk in _chunks(generator.rows(), CHUNK_ROWS):
        if extra:
            for row in chunk:
                row.update(extra)
        conn.execute(table.insert(), chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)


def updated_count_cap(dialect: Dialect, table: Table) -> int:
    """The highest updatedCount `table` can hold: SuperOffice's 65535, unless the column is a
    signed SMALLINT on a server engine (PostgreSQL, SQL Server), where 65535 is out of range."""
    column_type = table.c.updatedCount.type
    if dialect.name != "sqlite" and isinstance(column_type, SmallInteger):
        return SIGNED_SMALLINT_MAX
    return UPDATED_COUNT_CAP


def _optional_appointment_values(table: Table) -> Row:
    # Newer versions' columns, when the given table has them (a DBA script may make them NOT NULL).
    defaults = {"SendEmail": 0, "owned_externally": 0}
    return {key: value for key, value in defaults.items() if key in table.c}


# ---------------------------------------------------------------------------------------------
# Preferences, versions, licences, travel, sequence


def _preference_rows(options: DemoOptions, people: _People, now: datetime) -> list[Row]:
    yes, no = options.bool_values
    override_owner = people.associate_ids[min(2, len(people.associate_ids) - 1)]
    group_id = 2
    # (section, key, deflevel, maxlevel, owner, value)
    specs: list[tuple[str, str, int, int, int, str]] = [
        (*DIARY_SYNC, 1, 5, 0, no),  # hard default only: the upgrade must add the level-2 row
        (*ENABLE_TRAVEL, 1, 2, 0, no),
        ("Diary", "ShowWeekNumbers", 1, 5, 0, no),
        ("Mail", "UseHtmlEditor", 1, 5, 0, yes),
        (*ENABLE_TRAVEL, 2, 2, 0, yes if options.travel else no),
        ("Diary", "ShowWeekNumbers", 2, 5, 0, yes),
        ("Mail", "UseHtmlEditor", 2, 5, 0, yes),
        ("Functions", "DuplicateCheckOnCreate", 2, 5, 0, no),
        ("Diary", "ShowPrivateAppointments", 2, 5, 0, no),
        ("Diary", "DefaultDuration", 2, 5, 0, "60"),
        ("Diary", "ShowWeekNumbers", 3, 5, 0, no),
        (*DIARY_SYNC, 4, 5, group_id, yes),
        (*DIARY_SYNC, 5, 5, override_owner, no),
        ("Diary", "ShowWeekNumbers", 5, 5, override_owner, yes),
    ]
    registered = now - HISTORY - timedelta(days=30)
    return [
        {
            "userpreference_id": index + (1 if index < 4 else 7),  # ids 5-10 were deleted once
            "deflevel": level,
            "maxlevel": maxlevel,
            "owner_id": owner,
            "prefsection": section,
            "prefkey": key,
            "prefvalue": value,
            **_never_updated(registered + timedelta(days=index)),
        }
        for index, (section, key, level, maxlevel, owner, value) in enumerate(specs)
    ]


def _never_updated(registered: datetime, by: int = 0) -> Row:
    return {
        "registered": registered,
        "registered_associate_id": by,
        "updated": NEVER,
        "updated_associate_id": 0,
        "updatedCount": 0,
    }


def _product_version_rows(options: DemoOptions, now: datetime) -> list[Row]:
    # (ownerName, codeName, version, days before now)
    specs: list[tuple[str, str, str, int]] = []
    if _is_older(OLDER_SUPEROFFICE_VERSION, options.superoffice_version):
        specs.append(("SuperOffice", "CRM", OLDER_SUPEROFFICE_VERSION, 1500))
    specs.append(("SuperOffice", "CRM", options.superoffice_version, 40))
    if options.synchronizer_version is not None:
        specs.append(("InfoBridge", "Synchronizer", options.synchronizer_version, 20))
    return [
        {
            "ProductVersion_id": index + 1,
            "ownerName": owner,
            "codeName": code,
            "version": version,
            "comment": f"Installed {version}",
            "updatePath": None,
            **_never_updated(now - timedelta(days=days)),
        }
        for index, (owner, code, version, days) in enumerate(specs)
    ]


def _is_older(version: str, than: str) -> bool:
    """True when `version`'s major.minor is below `than`'s (False when either is unparsable)."""
    numbers = [re.search(r"(\d+)\.(\d+)", v) for v in (version, than)]
    if numbers[0] is None or numbers[1] is None:
        return False
    older, newer = ((int(m.group(1)), int(m.group(2))) for m in numbers if m is not None)
    return older < newer


def _licence_rows(options: DemoOptions) -> tuple[list[Row], list[Row]]:
    owners: list[Row] = [
        {"ModuleOwner_id": 1, "ownerName": "SuperOffice", "ownerDescription": None}
    ]
    names = ["superoffice.web", "superoffice.marketing"]
    if options.synchronizer_version is not None:
        names.append(SYNCHRONIZER_LICENCE)
    licences: list[Row] = [
        {
            "ModuleLicense_id": index + 1,
            "ModuleOwner_id": 1,
            "moduleName": name,
            "moduleDescription": None,
        }
        for index, name in enumerate(names)
    ]
    return owners, licences


def _travel_log_rows(now: datetime, preference_ids: list[int]) -> list[Row]:
    # Travel was switched on long ago: a handful of old entries about preference rows.
    return [
        {
            "traveltransactionlog_id": index + 1,
            "ttime": now - HISTORY + timedelta(days=index),
            "prev_record_id": 0,
            "type": 4608,  # update
            "associate_id": 1,
            "tablenumber": TABLE_NUMBERS["UserPreference"],
            "record_id": record_id,
            "flags": 0,
            "application_id": 0,
        }
        for index, record_id in enumerate(preference_ids[:5])
    ]


def _sequence_rows(rng: random.Random, max_ids: dict[str, int]) -> list[Row]:
    """One row per table; next_id runs ahead of the data, never exactly max(id) + 1."""
    names = [*max_ids, "sequence"]
    max_ids = {**max_ids, "sequence": len(names)}
    return [
        {
            "id": index + 1,
            "next_id": max_ids[name] + 1 + rng.randint(1, 100),
            "TableName": name,
            "TableNumber": TABLE_NUMBERS[name],
        }
        for index, name in enumerate(names)
    ]


# ---------------------------------------------------------------------------------------------
# Populate and build


def populate_demo(
    conn: Connection,
    tables: SuperOfficeTables,
    options: DemoOptions,
    progress: Progress | None = None,
) -> DemoSummary:
    """Fill empty SuperOffice tables with demo data inside the caller's transaction.

    Columns are addressed by their documented keys, so tables reflected from any dialect work.
    """
    now = options.resolved_now()
    people = _plan_people(options.appointments)
    _insert_people(conn, tables, people, options.seed, now)
    cap = updated_count_cap(conn.dialect, tables.appointment)
    generator = _AppointmentGenerator(options, people, now, cap)
    _insert_appointments(conn, tables, generator, progress)
    max_ids = {
        "appointment": generator.tally.last_id,
        "person": people.external_person_ids.stop - 1,
        "associate": people.associate_ids.stop - 1,
    }
    max_ids |= _insert_settings(conn, tables, options, people, now)
    present = {name: max_id for name, max_id in max_ids.items() if _has_table(tables, name)}
    rng = random.Random(f"{options.seed}:sequence")
    _insert(conn, tables.sequence, _sequence_rows(rng, present))
    return _summary(options, people, generator, now)


def _insert_settings(
    conn: Connection,
    tables: SuperOfficeTables,
    options: DemoOptions,
    people: _People,
    now: datetime,
) -> dict[str, int]:
    """Preferences, versions, licences and travel rows; returns each table's highest id."""
    preferences = _preference_rows(options, people, now)
    owners, licences = _licence_rows(options)
    travel_log = _travel_log_rows(now, [_int(r["userpreference_id"]) for r in preferences])
    contents: dict[str, tuple[Table | None, list[Row]]] = {
        "UserPreference": (tables.userpreference, preferences),
        "ProductVersion": (tables.productversion, _product_version_rows(options, now)),
        "DatabaseModel": (tables.databasemodel, [_database_model_row(options)]),
        "ModuleOwner": (tables.moduleowner, owners),
        "ModuleLicense": (tables.modulelicense, licences),
        "travelcurrent": (tables.travelcurrent, [_TRAVEL_CURRENT]),
        "traveltransactionlog": (tables.traveltransactionlog, travel_log if options.travel else []),
    }
    max_ids: dict[str, int] = {}
    for name, (table, rows) in contents.items():
        if table is not None:
            _insert(conn, table, rows)
            key = next(iter(table.primary_key.columns)).key
            max_ids[name] = max((_int(row[key]) for row in rows), default=0)
    return max_ids


_TRAVEL_CURRENT: Row = {"travelcurrent_id": 1, "current_id": 0, "systemlevel": 10}  # central


def _database_model_row(options: DemoOptions) -> Row:
    # ModelData's format is not published; the tool never reads it.
    return {"DatabaseModel_id": 1, "ModelVersion": options.superoffice_version, "ModelData": None}


def _has_table(tables: SuperOfficeTables, name: str) -> bool:
    if name == "associate":
        return _associate_table(tables) is not None
    slot = "userpreference" if name == "UserPreference" else name.lower()
    return getattr(tables, slot) is not None


def _summary(
    options: DemoOptions, people: _People, generator: _AppointmentGenerator, now: datetime
) -> DemoSummary:
    tally = generator.tally
    return DemoSummary(
        appointments=tally.rows,
        meetings=tally.meetings,
        invite_meetings=tally.invite_meetings,
        invite_rows=tally.invite_rows,
        external_participant_rows=tally.external_rows,
        invite_rows_to_mark=tally.invite_to_mark,
        invite_rows_already_marked=tally.invite_marked,
        other_warning_rows=tally.invite_other_warning,
        first_appointment_id=tally.first_id,
        last_appointment_id=tally.last_id,
        persons=len(people.employee_person_ids) + len(people.external_person_ids),
        associates=len(people.associate_ids),
        diary_sync_overrides=2,  # the group row and the individual row of _preference_rows
        superoffice_version=options.superoffice_version,
        synchronizer_version=options.synchronizer_version,
        travel=options.travel,
        now=now,
        updated_count_cap=generator.updated_count_cap,
    )


def build_demo_database(
    path: Path,
    options: DemoOptions,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> DemoSummary:
    """Build the demo as an SQLite file at `path`; an existing file stays untouched on failure."""
    _check_target(path, overwrite)
    building = path.with_name(f".{path.name}.building")
    building.unlink(missing_ok=True)
    try:
        summary = _build_sqlite(building, options, progress)
        os.replace(building, path)
    finally:
        building.unlink(missing_ok=True)
    return summary


def _check_target(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise UsageError(f"{path} is a directory.", "Give the demo database a file name.")
    if path.exists() and not overwrite:
        raise UsageError(
            f"{path} already exists; the demo does not replace a file unless asked to.",
            "Choose another file name, or pass --overwrite to replace it.",
        )
    if not path.parent.is_dir():
        raise UsageError(f"The folder {path.parent} does not exist.", "Create it first.")


def _build_sqlite(path: Path, options: DemoOptions, progress: Progress | None) -> DemoSummary:
    engine = create_engine(URL.create("sqlite", database=str(path)))
    try:
        with engine.connect() as conn:
            # A half-built file is thrown away anyway, so the journal is pure cost here.
            conn.exec_driver_sql("PRAGMA journal_mode=OFF")
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
            tables = create_demo_schema(conn)
            summary = populate_demo(conn, tables, options, progress)
            conn.commit()
            conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
            conn.exec_driver_sql("PRAGMA synchronous=FULL")
            conn.commit()
    finally:
        engine.dispose()  # Windows cannot rename a file that is still open
    return summary


# ---------------------------------------------------------------------------------------------
# Helpers


def _insert(conn: Connection, table: Table, rows: Iterable[Row]) -> None:
    for chunk in _chunks(rows, CHUNK_ROWS):
        conn.execute(table.insert(), chunk)


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value
