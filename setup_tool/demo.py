"""The embedded demo database: a SuperOffice-shaped database whose meetings tell the truth.

`setup-tool demo` builds it so that a first run shows something real, and the benchmarks build it
with millions of appointment rows on SQLite and PostgreSQL. Rows are generated and inserted in
chunks, so memory stays flat whatever the size; the same seed and `now` give the same rows.

Meetings follow SuperOffice's own SQL trace of saving one (SDK-Doc `Database/Programming
Examples/Create Invitations.md`): a master row in the organizer's diary, a booking row per
colleague, a row in nobody's diary (associate 0) per external person and a row per meeting room.
Meetings with external participants exist all through the history, some with the `emailId` of an
old e-mailed invitation; the footprints of SuperOffice's invite system (an `invitation` row,
`SendEmail = 1`, `emailId` after the upgrade) appear only on meetings registered after the
database was upgraded to 8.5 R10, 400 days before `now`. Recurring series, rows owned by
Outlook/Google, other caution warnings, `updatedCount` at its cap, id gaps, late participants and
overriding preference rows are all there, as in real databases.

A scenario says what happened around the upgrade:
- new-customer: invites were used with Diary Synchronizer Active off, and the synchronizer was
  installed two days ago -- the upgrade has invite meetings to mark;
- existing-customer: the synchronizer has been in use for years, so SuperOffice's own upgrade
  ("invitation" dictionary step 3) switched the preference on before any invite existed -- the
  upgrade must mark nothing;
- r10-shape: like new-customer, in the shape of a genuine 8.5 R10 database (no `SendEmail`,
  `owned_externally`, `mother_associate_id`, no `invitation` table).
"""

from __future__ import annotations

import heapq
import os
import random
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, DateTime, Index, SmallInteger, Table, create_engine
from sqlalchemy.engine import URL, Dialect

from setup_tool.errors import UsageError
from setup_tool.model_data import (
    INVITATION_STEPS,
    SUPEROFFICE_STEP_45,
    DictionaryStep,
    encode_model_data,
)
from setup_tool.schema import TABLE_SPECS, SuperOfficeTables, canonical_tables
from setup_tool.versions import try_parse_superoffice_version

NEVER = datetime(1900, 1, 1)
"""SuperOffice's "empty" date: the `updated` value of a row nobody has updated yet."""

Progress = Callable[[int, int], None]
"""Called with (appointment rows inserted so far, appointment rows in total)."""

Row = dict[str, object]
_T = TypeVar("_T")

SCENARIOS = {
    "new-customer": "invites used since the 8.5 R10 upgrade with Diary Synchronizer Active off; "
    "the synchronizer was installed two days ago",
    "existing-customer": "the synchronizer has been in use for years; SuperOffice's upgrade to "
    "8.5 R10 switched Diary Synchronizer Active on before any invite existed",
    "r10-shape": "like new-customer, in the shape of a genuine 8.5 R10 database (no SendEmail, "
    "owned_externally, mother_associate_id, no invitation table)",
}
NEW_CUSTOMER, EXISTING_CUSTOMER, R10_SHAPE = SCENARIOS

CHUNK_ROWS = 10_000
FIRST_APPOINTMENT_ID = 1000
HISTORY = timedelta(days=5 * 365)
R10_AGE = timedelta(days=400)  # the upgrade to 8.5 R10: invites possible from then on
NEWER_VERSION_AGE = timedelta(days=40)  # a later upgrade, when the demo claims a newer version
NEW_SYNCHRONIZER_AGE = timedelta(days=2)
OLD_SYNCHRONIZER_AGE = timedelta(days=4 * 365)
STEP_3_LEAD = timedelta(minutes=7)  # "invitation" step 3 ran minutes before the upgrade ended
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
    "invitation": 496,
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
OUTLOOK, GOOGLE = 2, 3  # appointment.owned_externally

DIARY_SYNC = ("Mail", "DiarySynchronizerActive")
ENABLE_TRAVEL = ("Travel", "EnableTravel")
SYNCHRONIZER_LICENCE = "superoffice.exchange-sync"
OLDER_SUPEROFFICE_VERSION = "8.1 R03"
R10_VERSION = "8.5 R10"
EMAIL_ID_BASE = 100_000  # emailId of a person's address: a row id in SuperOffice's email table

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
ROOMS = ("Room Fjord", "Room Nordlys", "Projector 2")  # resource associates: no person
TEMPLATE_LANGUAGES = ("en", "nb", "sv", "da", "nl", "de")


@dataclass(frozen=True)
class DemoOptions:
    """What kind of SuperOffice database to pretend to be, and how big."""

    appointments: int = 20_000
    superoffice_version: str = R10_VERSION
    synchronizer_version: str | None = "3.2.284"  # None: no synchronizer, no licence for it
    travel: bool = False
    # Share of appointment rows in invite meetings (meetings carrying a footprint of the invite
    # system). They are all registered after the 8.5 R10 upgrade -- the last 400 of five years,
    # about 22 % of the rows -- so a larger share stops there. Ordinary meetings come on top.
    invite_share: float = 0.04
    seed: int = 2019
    now: datetime | None = None  # naive UTC; every registered date lies before it
    bool_values: tuple[str, str] = ("1", "0")  # how this database spells Bool preferences
    scenario: str = NEW_CUSTOMER

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
        if self.scenario not in SCENARIOS:
            raise UsageError(
                f"Unknown demo scenario {self.scenario!r}.",
                f"Choose one of: {', '.join(SCENARIOS)}.",
            )
        if self.scenario == EXISTING_CUSTOMER and self.synchronizer_version is None:
            raise UsageError(
                "The existing-customer scenario is about a synchronizer in use for years.",
                "Give it a synchronizer version, or choose the new-customer scenario.",
            )

    @property
    def after_r10(self) -> bool:
        """Whether the database has the columns and tables that came after 8.5 R10."""
        return self.scenario != R10_SHAPE

    def resolved_now(self) -> datetime:
        """`now` as naive UTC whole seconds (the current time unless the options fix it)."""
        now = self.now or datetime.now(UTC)
        if now.tzinfo is not None:
            now = now.astimezone(UTC).replace(tzinfo=None)
        return now.replace(microsecond=0)


@dataclass(frozen=True)
class DemoSummary:
    """What the demo database holds, described with the footprints of SPEC step 4.

    A meeting is a master row with its participant rows, or a plain appointment (a meeting of one
    row). Counts per footprint are of meetings carrying it on their own rows; a meeting may carry
    several. They describe what was generated, not what the upgrade will mark: that also depends
    on when each meeting was registered, on Diary Synchronizer Active and on the rows' owners and
    warnings.
    """

    scenario: str
    appointments: int
    first_appointment_id: int
    last_appointment_id: int
    meetings: int  # master rows
    meetings_with_external_participants: int
    external_participant_rows: int  # associate_id = 0
    # Meetings with any footprint (also plain appointments from received invitations), every
    # occurrence of a series with a footprint on any occurrence included, and all their rows.
    invite_meetings: int
    invite_rows: int
    invitation_meetings: int  # (a) an invitation row points at the meeting
    send_email_meetings: int  # (b) a row with SendEmail = 1
    email_id_meetings: int  # (c) a row with emailId <> 0 registered from the upgrade on
    old_email_id_meetings: int  # emailId <> 0 before the upgrade: no evidence
    recurring_series: int
    recurring_invite_series: int  # series with a footprint on some occurrence
    series_begun_before_r10: int  # ...of which the first occurrence predates the upgrade
    externally_owned_rows: int  # owned_externally 2 (Outlook) or 3 (Google)
    persons: int
    associates: int  # users and resources
    resources: int  # meeting rooms and equipment: associates without a person
    diary_sync_overrides: int  # Mail/DiarySynchronizerActive rows at levels 3-5
    diary_sync_on_since: datetime | None  # the system-level row's registration, when there is one
    superoffice_version: str
    r10_upgraded_at: datetime | None  # invites possible from then on (None: older than 8.5 R10)
    synchronizer_version: str | None
    synchronizer_installed_at: datetime | None
    absent: tuple[str, ...]  # columns and tables of later versions this database lacks
    travel: bool
    now: datetime
    updated_count_cap: int  # the highest updatedCount written (the column's 16-bit cap)

    def lines(self) -> list[str]:
        """The summary as short sentences for the console."""
        return [
            self._versions_line(),
            f"{self.appointments:,} appointment rows (ids {self.first_appointment_id:,}"
            f"-{self.last_appointment_id:,}), {self.meetings:,} meetings "
            f"({self.meetings_with_external_participants:,} with external participants), "
            f"{self.recurring_series:,} recurring series, {self.persons:,} persons, "
            f"{self.associates:,} associates ({self.resources} resources).",
            f"{self.invite_meetings:,} invite meetings with {self.invite_rows:,} rows "
            f"(footprints: invitation {self.invitation_meetings:,}, SendEmail "
            f"{self.send_email_meetings:,}, emailId {self.email_id_meetings:,}); "
            f"{self.recurring_invite_series:,} recurring series with invites, "
            f"{self.series_begun_before_r10:,} of them begun before the upgrade.",
            f"{self.old_email_id_meetings:,} older meetings have an e-mailed participant "
            f"(emailId) from before invites existed; {self.externally_owned_rows:,} rows are "
            "owned by Outlook/Google.",
            self._preference_line(),
            *([f"Without {', '.join(self.absent)}."] if self.absent else []),
        ]

    def _versions_line(self) -> str:
        upgraded = " (older than 8.5 R10: no invites)"
        if self.r10_upgraded_at is not None:
            upgraded = f" (invites possible since {self.r10_upgraded_at:%Y-%m-%d})"
        sync = "none"
        if self.synchronizer_version is not None and self.synchronizer_installed_at is not None:
            sync = f"{self.synchronizer_version} (since {self.synchronizer_installed_at:%Y-%m-%d})"
        return (
            f"Scenario {self.scenario}: SuperOffice {self.superoffice_version}{upgraded}, "
            f"synchronizer {sync}, Travel {'on' if self.travel else 'off'}."
        )

    def _preference_line(self) -> str:
        if self.diary_sync_on_since is None:
            state = "has no system-level row"
        else:
            state = f"is on since {self.diary_sync_on_since:%Y-%m-%d %H:%M} (system-level row)"
        return f"Diary Synchronizer Active {state} and {self.diary_sync_overrides} overriding rows."


# ---------------------------------------------------------------------------------------------
# The story: when SuperOffice was upgraded, when the synchronizer came, when the preference


@dataclass(frozen=True)
class _Timeline:
    now: datetime
    start: datetime  # the oldest registration
    r10_at: datetime | None  # None: the demo claims a version older than 8.5 R10
    synchronizer_at: datetime | None
    diary_sync_on_at: datetime | None


def _timeline(options: DemoOptions, now: datetime) -> _Timeline:
    r10_at = None if _r10_relation(options.superoffice_version) == "older" else now - R10_AGE
    existing = options.scenario == EXISTING_CUSTOMER
    synchronizer_age = OLD_SYNCHRONIZER_AGE if existing else NEW_SYNCHRONIZER_AGE
    return _Timeline(
        now=now,
        start=now - HISTORY,
        r10_at=r10_at,
        synchronizer_at=now - synchronizer_age if options.synchronizer_version else None,
        # SuperOffice's "invitation" step 3 found the synchronizer and switched the preference on.
        diary_sync_on_at=r10_at - STEP_3_LEAD if existing and r10_at else None,
    )


def _r10_relation(version: str) -> str:
    """How `version` compares with 8.5 R10: older, r10, newer, or unknown (cannot be told)."""
    parsed = try_parse_superoffice_version(version)
    supports = parsed.supports_invites() if parsed is not None else None
    if parsed is None or supports is None:
        return "unknown"
    if not supports:
        return "older"
    return "r10" if (parsed.major, parsed.minor, parsed.release) == (8, 5, 10) else "newer"


# ---------------------------------------------------------------------------------------------
# Schema


def create_demo_schema(
    conn: Connection, schema: str | None = None, *, after_r10: bool = True, indexes: bool = True
) -> SuperOfficeTables:
    """Create the canonical SuperOffice tables (documented names) and SuperOffice's indexes.

    `after_r10=False` leaves out what came after 8.5 R10: the shape of a genuine R10 database.
    `indexes=False` leaves the indexes to `create_demo_indexes`, after the rows are in.
    """
    tables = canonical_tables(schema, after_r10=after_r10)
    tables.appointment.metadata.create_all(conn)
    if indexes:
        create_demo_indexes(conn, tables)
    return tables


def create_demo_indexes(conn: Connection, tables: SuperOfficeTables) -> None:
    """SuperOffice's indexes on the demo tables (built faster once the rows are in)."""
    for index in _demo_indexes(tables):  # one by one: create_all would order them at random
        index.create(conn)


def _demo_indexes(tables: SuperOfficeTables) -> list[Index]:
    appointment, preference = tables.appointment.c, tables.userpreference.c
    lookup = (preference.prefsection, preference.prefkey, preference.deflevel, preference.owner_id)
    indexes = [
        # The index on mother_id is what makes finding a meeting's rows fast in real databases.
        Index("IDXAppointmentMother_id", appointment.mother_id),
        Index("IDXAppointmentAssoc", appointment.associate_id, appointment.activeDate),
        # The occurrences of a recurring series (SOD lists it with mother_id).
        Index(
            "IDXAppointmentRecurrence",
            appointment.recurrenceRuleId,
            appointment.activeDate,
            appointment.mother_id,
        ),
        Index("IDXUserPreference", *lookup),  # not unique: duplicates exist in the wild
    ]
    if tables.productversion is not None:
        version = tables.productversion.c
        unique = (version.ownerName, version.codeName, version.version)
        indexes.append(Index("IDXProductVersion", *unique, unique=True))
    if tables.invitation is not None:
        indexes.append(Index("IDXInvitationAppointment_id", tables.invitation.c.appointment_id))
    return indexes


# ---------------------------------------------------------------------------------------------
# People


@dataclass(frozen=True)
class _People:
    """Ids of diary owners, meeting rooms and the external persons they invite."""

    associate_ids: range  # users; associate a's own person row is person a
    resource_ids: range  # associates without a person: meeting rooms, equipment
    employee_person_ids: range  # the associates' own person rows (contact 1: our company)
    external_person_ids: range

    def contact_of(self, person_id: int) -> int:
        if person_id in self.employee_person_ids:
            return 1
        return 2 + (person_id - self.external_person_ids.start) // 3

    def person_of(self, associate_id: int) -> int:
        return associate_id - self.associate_ids.start + self.employee_person_ids.start

    @property
    def persons(self) -> int:
        return len(self.employee_person_ids) + len(self.external_person_ids)


def _plan_people(appointments: int) -> _People:
    associates = max(6, min(appointments // 500, 300))
    externals = max(len(TRICKY_NAMES) + 20, min(appointments // 20, 50_000))
    employees = range(1, associates + 1)
    return _People(
        associate_ids=range(1, associates + 1),
        resource_ids=range(associates + 1, associates + 1 + len(ROOMS)),
        employee_person_ids=employees,
        external_person_ids=range(employees.stop, employees.stop + externals),
    )


def _person_names(seed: int, people: _People) -> list[tuple[str, str, int]]:
    """(first, last, days registered before the history) of person 1, 2, ...; the first associate
    and the first external persons carry the tricky names."""
    rng = random.Random(f"{seed}:people")
    employees = len(people.employee_person_ids)
    names: list[tuple[str, str, int]] = []
    for index in range(employees + len(people.external_person_ids)):
        slot = index - employees + 1 if index >= employees else -index  # in TRICKY_NAMES
        first, last = TRICKY_NAMES[slot] if 0 <= slot < len(TRICKY_NAMES) else _random_name(rng)
        names.append((first, last, rng.randrange(1, 2000)))
    return names


def _random_name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def _insert_people(
    conn: Connection,
    tables: SuperOfficeTables,
    people: _People,
    names: Sequence[tuple[str, str, int]],
    now: datetime,
) -> None:
    if tables.person is not None:
        person_rows = (
            {
                "person_id": person_id,
                "contact_id": people.contact_of(person_id),
                "firstname": first,
                "lastname": last,
                **_never_updated(now - HISTORY - timedelta(days=days), by=1),
            }
            for person_id, (first, last, days) in enumerate(names, start=1)
        )
        _insert(conn, tables.person, person_rows)
    if tables.associate is not None:
        users = (
            {"associate_id": a, "name": f"USER{a:03d}", "person_id": people.person_of(a)}
            for a in people.associate_ids
        )
        rooms = (
            {"associate_id": a, "name": name, "person_id": 0}
            for a, name in zip(people.resource_ids, ROOMS, strict=True)
        )
        _insert(conn, tables.associate, [*users, *rooms])


def _email_address(first: str, last: str, person_id: int, contact_id: int) -> str:
    local = ".".join(part for part in (_ascii(first), _ascii(last)) if part)
    return f"{local or f'person{person_id}'}@customer{contact_id}.example.com"


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "", folded.lower())


# ---------------------------------------------------------------------------------------------
# Appointments

MEETING_RATE = 0.05  # share of units that are ordinary meetings
EXTERNAL_MEETING_SHARE = 0.4  # ordinary meetings with external participants
OLD_EMAILED_SHARE = 0.3  # ...of which, before the upgrade, had the invitation e-mailed
SERIES_RATE = 0.002  # share of units that start an ordinary recurring series
INVITE_SERIES_SHARE = 0.08  # share of invite units that start a recurring series
# Series begun shortly before the upgrade, weekly, that get a footprint after it: at most two,
# one per 50 invite rows asked for, so that small demos still have invite meetings to mark.
CROSSING_SERIES, CROSSING_INVITE_ROWS = 2, 50
CROSSING_LEAD = timedelta(days=14)
OWNED_SHARE = {NEW_CUSTOMER: 0.03, EXISTING_CUSTOMER: 0.08, R10_SHAPE: 0.0}

# Meeting kinds: how invitations went out, if at all.
ORDINARY, OLD_EMAILED, RECEIVED, SEND_EMAIL, EMAILED = range(5)
INVITE_KINDS = (RECEIVED, SEND_EMAIL, EMAILED)
# Participant roles (SDK trace).
COLLEAGUE, EXTERNAL, ROOM = range(3)


_START_TIMES = [(hour, minute) for hour in range(8, 17) for minute in (0, 15, 30, 45)]
_ACTIVE_DAYS = [timedelta(days=days) for days in range(-3, 46)]


class _Dice(random.Random):
    """random.Random with `pick` and `between`: choice and randint cost too much per call when
    they run tens of millions of times."""

    def pick(self, choices: Sequence[_T]) -> _T:
        return choices[int(self.random() * len(choices))]

    def between(self, low: int, high: int) -> int:
        return low + int(self.random() * (high - low + 1))


@dataclass(frozen=True)
class _Shape:
    """What the appointment tables can express (a genuine 8.5 R10 database lacks some)."""

    send_email: bool
    owned_externally: bool
    recurrence: bool
    invitation: bool

    @classmethod
    def of(cls, tables: SuperOfficeTables) -> _Shape:
        columns = tables.appointment.c
        return cls(
            send_email="SendEmail" in columns,
            owned_externally="owned_externally" in columns,
            recurrence="recurrenceRuleId" in columns,
            invitation=tables.invitation is not None,
        )


@dataclass
class _Tally:
    """Counted while generating, so the summary needs no second pass over millions of rows."""

    rows: int = 0
    first_id: int = 0
    last_id: int = 0
    meetings: int = 0
    meetings_with_external: int = 0
    external_rows: int = 0
    invite_meetings: int = 0
    invite_rows: int = 0
    invitation_meetings: int = 0
    send_email_meetings: int = 0
    email_id_meetings: int = 0
    old_email_id_meetings: int = 0
    recurring_series: int = 0
    invite_series: int = 0
    series_before_r10: int = 0
    owned_rows: int = 0


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
class _Plan:
    """Who takes part in a meeting (or in every occurrence of a series) and how invitations went."""

    kind: int
    owner: int  # the organizer: the master row is in this diary
    person: int  # the meeting's person: every row of the meeting carries it (SDK trace)
    participants: list[tuple[int, int]]  # (role, associate id or person id)
    flagged: frozenset[int]  # indexes of participants whose invitation is mailed
    send_email: bool  # EMAILED: the flagged rows also have SendEmail = 1
    minutes: int


@dataclass
class _Series:
    """A recurring meeting: every occurrence is its own master and participants."""

    rule: int  # recurrenceRuleId
    plan: _Plan
    first_active: datetime
    interval: timedelta
    occurrences: int
    footprint_from: int  # the first occurrence carrying the plan's footprint
    crossing: bool  # begun before the upgrade: the footprint only on occurrences after it
    made: int = 0
    first_registered: datetime = NEVER
    meetings: int = 0  # occurrences made so far
    rows: int = 0  # ...and their rows
    invite_counted: bool = False
    invitation_made: bool = False

    def last_active(self) -> datetime:
        return self.first_active + self.interval * (self.occurrences - 1)


class _AppointmentGenerator:
    """Yields appointment rows in id order; rows of a meeting may be far apart.

    Invitation rows pile up in `invitations` while rows are generated; the caller inserts and
    clears them chunk by chunk.
    """

    def __init__(
        self,
        options: DemoOptions,
        people: _People,
        names: Sequence[tuple[str, str, int]],
        timeline: _Timeline,
        shape: _Shape,
        updated_count_cap: int,
    ) -> None:
        self.options = options
        self.updated_count_cap = updated_count_cap
        self.people = people
        self.names = names
        self.shape = shape
        self.now = timeline.now
        self.start = timeline.start
        total = options.appointments
        self._seconds_per_row = HISTORY.total_seconds() / max(total, 1)
        self._latest_registered = HISTORY.total_seconds() - 3600  # an hour before now
        self.dice = _Dice(f"{options.seed}:appointments")
        self.ids = _AppointmentIds(self.dice, total)
        self.tally = _Tally(first_id=FIRST_APPOINTMENT_ID if total else 0)
        self.invitations: list[Row] = []
        self._invitation_ids = 0
        self._rule_ids = 0
        self._built = 0  # rows generated, including those waiting in _late
        self._units = 0
        self._late: deque[tuple[int, Row]] = deque()  # participants added to a meeting later
        self._series: list[tuple[float, int, _Series]] = []  # due occurrences by position
        # Invites exist only from the upgrade on: there they come at the rate that makes
        # `invite_share` of all rows by the end (feedback, so it holds for a few hundred rows).
        self.r10_at = timeline.r10_at or datetime.max
        after = (timeline.r10_at - self.start).total_seconds() if timeline.r10_at else 0.0
        self._r10_row = after / self._seconds_per_row
        self._invite_rate = options.invite_share * total / max(total - self._r10_row, 1.0)
        crossing = min(CROSSING_SERIES, int(options.invite_share * total / CROSSING_INVITE_ROWS))
        self._crossing_left = crossing if timeline.r10_at and shape.recurrence else 0
        self._owned_share = OWNED_SHARE[options.scenario] if shape.owned_externally else 0.0
        self._invite_kinds = self._kinds_possible(options, timeline)
        self._outgoing_kinds = tuple(k for k in self._invite_kinds if k != RECEIVED)

    @property
    def invitation_rows(self) -> int:
        """Invitation rows made so far (their ids run from 1)."""
        return self._invitation_ids

    def _kinds_possible(self, options: DemoOptions, timeline: _Timeline) -> tuple[int, ...]:
        if timeline.r10_at is None or options.invite_share == 0:
            return ()
        kinds = [EMAILED] * 4
        if self.shape.send_email:
            kinds += [SEND_EMAIL] * 3
        # With the preference on, SuperOffice makes no appointments from received invitations.
        if self.shape.invitation and options.scenario != EXISTING_CUSTOMER:
            kinds += [RECEIVED] * 3
        return tuple(kinds)

    def rows(self) -> Iterator[Row]:
        total = self.options.appointments
        while self._built < total or self._late:
            if self._late and (self._late[0][0] <= self._units or self._built >= total):
                yield self._emit(self._late.popleft()[1])
                continue
            self._units += 1
            for row in self._next_unit(total - self._built):
                yield self._emit(row)

    def _emit(self, row: Row) -> Row:
        appointment_id = row.get("appointment_id")
        if appointment_id is None:
            appointment_id = row["appointment_id"] = self.ids.take()
        tally = self.tally
        tally.rows += 1
        tally.last_id = cast(int, appointment_id)  # ids ascend: the last is the highest
        if row["owned_externally"]:
            tally.owned_rows += 1
        return row

    def _next_unit(self, remaining: int) -> list[Row]:
        if self._series and self._series[0][0] <= self._built:
            occurrence = self._next_occurrence(remaining)
            if occurrence:
                return occurrence
        registered = self._registered()
        if remaining >= 2:
            meeting = self._meeting_unit(registered, remaining)
            if meeting:
                return meeting
        self._built += 1
        return [self._plain_row(registered)]

    def _meeting_unit(self, registered: datetime, remaining: int) -> list[Row] | None:
        if registered >= self.r10_at:
            if self._invite_kinds and self._behind_on_invites():
                return self._invite_unit(registered, remaining)
        elif self._crossing_due(registered, remaining):
            self._crossing_left -= 1
            kind = self.dice.pick(self._outgoing_kinds)
            return self._start_series(kind, registered, remaining, crossing=True)
        draw = self.dice.random()
        if draw < MEETING_RATE:
            old = registered < self.r10_at and self.dice.random() < OLD_EMAILED_SHARE
            return self._meeting(
                self._plan(OLD_EMAILED if old else ORDINARY, remaining), registered
            )
        if draw < MEETING_RATE + SERIES_RATE and self.shape.recurrence and remaining >= 4:
            return self._start_series(ORDINARY, registered, remaining)
        return None

    def _crossing_due(self, registered: datetime, remaining: int) -> bool:
        """Start a series shortly before the upgrade that will get a footprint after it?"""
        if not (self._crossing_left and self._outgoing_kinds and remaining >= 60):
            return False
        return registered >= self.r10_at - CROSSING_LEAD

    def _behind_on_invites(self) -> bool:
        return self.tally.invite_rows < self._invite_rate * (self._built + 1 - self._r10_row)

    def _invite_unit(self, registered: datetime, remaining: int) -> list[Row]:
        kind = self.dice.pick(self._invite_kinds)
        if self.shape.recurrence and remaining >= 12 and self.dice.random() < INVITE_SERIES_SHARE:
            return self._start_series(kind, registered, remaining)
        if kind == RECEIVED and self.dice.random() < 0.5:
            return self._received_appointment(registered)
        return self._meeting(self._plan(kind, remaining), registered)

    # -- dates -------------------------------------------------------------------------------

    def _registered(self) -> datetime:
        # Registration follows the id order over five years, with a few days of jitter.
        seconds = self._built * self._seconds_per_row + (self.dice.random() * 4 - 2) * 86400
        seconds = min(max(seconds, 0.0), self._latest_registered)
        return self.start + timedelta(seconds=int(seconds))

    def _active_date(self, registered: datetime) -> datetime:
        # Between 3 days before and 45 days after registration, on a quarter hour from 8 to 16.
        draw = self.dice.random
        hour, minute = _START_TIMES[int(draw() * len(_START_TIMES))]
        day = _ACTIVE_DAYS[int(draw() * len(_ACTIVE_DAYS))]
        return registered.replace(hour=hour, minute=minute, second=0) + day

    def _updated(self, row: Row, registered: datetime, by: int) -> None:
        draw = self.dice.random()
        if draw < 0.45:
            row["updated"], row["updated_associate_id"], row["updatedCount"] = NEVER, 0, 0
            return
        count = self.updated_count_cap if draw < 0.455 else 1 + int(self.dice.expovariate(0.4))
        later = self.dice.random() * (self.now - registered).total_seconds()
        row["updated"] = registered + timedelta(seconds=max(1, int(later)))
        row["updated_associate_id"], row["updatedCount"] = by, count

    def _later(self, registered: datetime) -> datetime:
        later = registered + timedelta(hours=self.dice.between(1, 72))
        if registered < self.r10_at:  # a meeting from before the upgrade stays before it
            later = min(later, self.r10_at - timedelta(seconds=1))
        return min(later, self.now - timedelta(seconds=1))

    def _warning(self, in_meeting: bool) -> int | None:
        draw = self.dice.random()
        if draw < 0.04:
            return None  # rows from before the column existed
        if draw < (0.07 if in_meeting else 0.05):
            return NOT_IN_SYNC
        if draw < (0.15 if in_meeting else 0.06):
            return self.dice.pick(OTHER_WARNINGS)
        return 0

    def _owned(self, registered: datetime) -> int:
        """owned_externally of a diary row: some rows since the upgrade came from Outlook/Google."""
        if not self._owned_share or registered < self.r10_at:
            return 0
        if self.dice.random() >= self._owned_share:
            return 0
        return self.dice.pick((OUTLOOK, OUTLOOK, GOOGLE))

    # -- plain appointments --------------------------------------------------------------------

    def _plain_row(self, registered: datetime) -> Row:
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
            "recurrenceRuleId": 0,
            "mother_associate_id": 0,
            "SendEmail": 0,
            "owned_externally": self._owned(registered) if registered >= self.r10_at else 0,
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

    def _received_appointment(self, registered: datetime) -> list[Row]:
        """A received invitation that SuperOffice turned into a tentative appointment."""
        invited = self.dice.pick(self.people.associate_ids)
        organizer = self.dice.pick(self.people.external_person_ids)
        appointment_id = self.ids.take()
        active = self._active_date(registered)
        type_, status = self.dice.pick(
            ((BOOKING_FOR_DIARY, BOOKING), (BOOKING_FOR_DIARY, BOOKING_SEEN),
             (IN_DIARY, NOT_STARTED), (BOOKING_FOR_DIARY, BOOKING_DECLINED))
        )  # fmt: skip
        row: Row = {
            "appointment_id": appointment_id,
            "contact_id": self.people.contact_of(organizer),
            "person_id": organizer,
            "associate_id": invited,
            "registered": registered,
            "registered_associate_id": invited,
            "type": type_,
            "status": status,
            "mother_id": 0,
            "invitedPersonId": 0,
            "emailId": 0,
            "activeDate": active,
            "do_by": active,
            "endDate": active + timedelta(minutes=self.dice.pick((30, 60, 60, 90))),
            "cautionWarning": self._warning(in_meeting=True),
            "recurrenceRuleId": 0,
            "mother_associate_id": 0,
            "SendEmail": 0,
            "owned_externally": self._owned(registered),
        }
        self._updated(row, registered, invited)
        self._invitation(appointment_id, registered, organizer, invited, None)
        self._built += 1
        self._count_footprints(1, invitation=True, send=False, email=False, series=None)
        return [row]

    # -- meetings ------------------------------------------------------------------------------

    def _plan(self, kind: int, remaining: int) -> _Plan:
        dice, users = self.dice, self.people.associate_ids
        owner = dice.pick(users)
        if kind == RECEIVED:  # an external organizer invited our associates
            externals, colleagues = 1, dice.between(0, 2)
        elif kind in (EMAILED, OLD_EMAILED):
            externals, colleagues = dice.between(1, 3), dice.between(0, 2)
        elif kind == SEND_EMAIL:
            externals, colleagues = dice.between(0, 2), dice.between(1, 3)
        elif dice.random() < EXTERNAL_MEETING_SHARE:
            externals, colleagues = dice.between(1, 3), dice.between(0, 3)
        else:
            externals, colleagues = 0, dice.between(1, 4)
        rooms = 1 if dice.random() < 0.25 else 0
        # Near the end the meeting shrinks to fit, keeping at least one person taking part.
        budget = remaining - 1
        externals = min(externals, budget)
        colleagues = min(colleagues, budget - externals)
        rooms = min(rooms, budget - externals - colleagues)
        persons = dice.sample(self.people.external_person_ids, externals)
        others = [a for a in dice.sample(users, colleagues + 1) if a != owner][:colleagues]
        participants = [(EXTERNAL, p) for p in persons] + [(COLLEAGUE, a) for a in others]
        participants += [(ROOM, dice.pick(self.people.resource_ids)) for _ in range(rooms)]
        return _Plan(
            kind=kind,
            owner=owner,
            person=persons[0] if persons else self._maybe_person(),
            participants=participants,
            flagged=self._mailed(kind, participants),
            send_email=kind == EMAILED and self.shape.send_email and dice.random() < 0.5,
            minutes=dice.pick((30, 60, 60, 90, 120)),
        )

    def _mailed(self, kind: int, participants: list[tuple[int, int]]) -> frozenset[int]:
        """Which participants get the invitation by e-mail (never a room)."""
        if kind not in (EMAILED, OLD_EMAILED, SEND_EMAIL):
            return frozenset()
        chance = {EXTERNAL: 0.8, COLLEAGUE: 0.3 if kind != SEND_EMAIL else 0.6, ROOM: 0.0}
        mailed = {
            i for i, (role, _) in enumerate(participants) if self.dice.random() < chance[role]
        }
        return frozenset(mailed or {0})  # participant 0 is a person, never a room

    def _start_series(
        self, kind: int, registered: datetime, remaining: int, crossing: bool = False
    ) -> list[Row]:
        self._rule_ids += 1
        if crossing:  # small: it is on top of the invite meetings to mark
            interval, occurrences = 7, CROSSING_LEAD.days // 7 + self.dice.between(2, 3)
        else:
            interval, occurrences = self.dice.pick((7, 7, 14, 28)), self.dice.between(3, 8)
        some_later = kind in INVITE_KINDS and self.dice.random() < 0.3
        series = _Series(
            rule=self._rule_ids,
            plan=self._plan(kind, min(remaining, 4 if crossing else 6)),
            first_active=self._active_date(registered),
            interval=timedelta(days=interval),
            occurrences=occurrences,
            # A footprint on a later occurrence only: an invitation e-mailed from then on.
            footprint_from=self.dice.between(1, occurrences - 1) if some_later else 0,
            crossing=crossing,
        )
        return self._occurrence(series, registered)

    def _next_occurrence(self, remaining: int) -> list[Row] | None:
        series = heapq.heappop(self._series)[2]
        if 1 + len(series.plan.participants) > remaining:
            return None  # the table is full: the series ends here
        return self._occurrence(series, self._registered())

    def _occurrence(self, series: _Series, registered: datetime) -> list[Row]:
        index = series.made
        series.made += 1
        if index == 0:
            series.first_registered = registered
            self.tally.recurring_series += 1
        if series.plan.kind not in INVITE_KINDS:
            footprint = False
        elif series.crossing:
            footprint = registered >= self.r10_at
        else:
            footprint = index >= series.footprint_from
        active = series.first_active + series.interval * index
        rows = self._meeting(series.plan, registered, active, series, footprint)
        if series.made < series.occurrences:
            due = self._built + series.interval.total_seconds() / self._seconds_per_row
            heapq.heappush(self._series, (due, series.rule, series))
        return rows

    def _meeting(
        self,
        plan: _Plan,
        registered: datetime,
        active: datetime | None = None,
        series: _Series | None = None,
        footprint: bool = True,
    ) -> list[Row]:
        """The rows SuperOffice writes when a meeting is saved (SDK trace), master first."""
        active = active or self._active_date(registered)
        master_id = self.ids.take()
        people = self.people
        base: Row = {
            "contact_id": people.contact_of(plan.person) if plan.person else 0,
            "person_id": plan.person,
            "registered": registered,
            "registered_associate_id": plan.owner,
            "mother_id": master_id,
            "emailId": 0,
            "activeDate": active,
            "do_by": active,
            "endDate": active + timedelta(minutes=plan.minutes),
            "recurrenceRuleId": series.rule if series else 0,
            "mother_associate_id": plan.owner,
            "SendEmail": 0,
            "owned_externally": 0,
        }
        master = base | {
            "appointment_id": master_id,
            "associate_id": plan.owner,
            "invitedPersonId": people.person_of(plan.owner),
            "type": IN_DIARY,
            "status": NOT_STARTED,
        }
        rows = [master]
        for index, (role, who) in enumerate(plan.participants):
            row = dict(base)
            if role == COLLEAGUE:
                type_, status = self._answer()
                row.update(associate_id=who, invitedPersonId=people.person_of(who))
            elif role == EXTERNAL:  # in nobody's diary; "automatically accepted"
                type_, status = IN_DIARY, NOT_STARTED
                row.update(associate_id=0, invitedPersonId=who)
            else:  # a resource: an associate without a person
                type_, status = IN_DIARY, NOT_STARTED
                row.update(associate_id=who, invitedPersonId=0)
            row.update(type=type_, status=status)
            if footprint and index in plan.flagged:
                self._mail_invitation(row, plan, role, who)
            rows.append(row)
        for row in rows:
            row["cautionWarning"] = self._warning(in_meeting=True)
            self._updated(row, registered, plan.owner)
            if self._owned_share and row["associate_id"]:
                row["owned_externally"] = self._owned(registered)
        invitation = footprint and plan.kind == RECEIVED
        if invitation and series is not None:
            invitation = not series.invitation_made  # one iCal UID for the whole series
        if invitation:
            organizer = plan.person
            self._invitation(master_id, registered, organizer, plan.owner, series)
        self._built += len(rows)
        return self._finish_meeting(rows, invitation, series, plan.owner)

    def _answer(self) -> tuple[int, int]:
        """(type, status) of a colleague's row: a booking until the colleague answers it."""
        draw = self.dice.random()
        if draw < 0.45:
            return BOOKING_FOR_DIARY, BOOKING
        if draw < 0.70:
            return IN_DIARY, NOT_STARTED  # accepted
        if draw < 0.80:
            return BOOKING_FOR_DIARY, BOOKING_SEEN
        if draw < 0.87:
            return BOOKING_FOR_DIARY, self.dice.pick((BOOKING_MOVED, BOOKING_MOVED_SEEN))
        if draw < 0.96:
            return BOOKING_FOR_DIARY, BOOKING_DECLINED
        return BOOKING_FOR_DIARY, BOOKING_DELETED

    def _mail_invitation(self, row: Row, plan: _Plan, role: int, who: int) -> None:
        if plan.kind == SEND_EMAIL:  # the switch is on; no address was needed (yet)
            row["SendEmail"] = 1
            return
        person = who if role == EXTERNAL else self.people.person_of(who)
        row["emailId"] = EMAIL_ID_BASE + person  # the address the invitation went to
        if plan.send_email:
            row["SendEmail"] = 1

    def _finish_meeting(
        self, rows: list[Row], invitation: bool, series: _Series | None, owner: int
    ) -> list[Row]:
        """Hold back a participant added later, if any, and count the meeting."""
        late = None
        if len(rows) > 2 and self.dice.random() < 0.1:
            # A participant added days later gets a later id, far from the rest of the meeting.
            late = rows[-1]
            registered = late["registered"]
            assert isinstance(registered, datetime)
            late["registered"] = later = self._later(registered)
            self._updated(late, later, owner)
        tally, r10_at = self.tally, self.r10_at
        externals, send, email, old = 0, False, False, False
        for row in rows:
            if row["associate_id"] == 0:
                externals += 1
            if row["SendEmail"]:
                send = True
            if row["emailId"]:
                registered = row["registered"]
                assert isinstance(registered, datetime)
                if registered >= r10_at:
                    email = True
                else:
                    old = True
        tally.meetings += 1
        tally.external_rows += externals
        tally.meetings_with_external += bool(externals)
        tally.old_email_id_meetings += old
        self._count_footprints(len(rows), invitation, send, email, series)
        if late is not None:
            rows.pop()
            self._late.append((self._units + self.dice.between(1, 40), late))
        return rows

    def _count_footprints(
        self, size: int, invitation: bool, send: bool, email: bool, series: _Series | None
    ) -> None:
        tally = self.tally
        tally.invitation_meetings += invitation
        tally.send_email_meetings += send
        tally.email_id_meetings += email
        footprint = invitation or send or email
        if series is None:
            tally.invite_meetings += footprint
            tally.invite_rows += size if footprint else 0
            return
        # A footprint on any occurrence makes the whole series an invite meeting.
        series.meetings += 1
        series.rows += size
        if series.invite_counted:
            tally.invite_meetings += 1
            tally.invite_rows += size
        elif footprint:
            series.invite_counted = True
            tally.invite_meetings += series.meetings
            tally.invite_rows += series.rows
            tally.invite_series += 1
            tally.series_before_r10 += series.first_registered < self.r10_at

    def _invitation(
        self,
        appointment_id: int,
        registered: datetime,
        organizer: int,
        invited: int,
        series: _Series | None,
    ) -> None:
        """The invitation row of a received iCal invitation that led to this appointment."""
        self._invitation_ids += 1
        first, last, _ = self.names[organizer - 1]
        contact = self.people.contact_of(organizer)
        if series is not None:
            series.invitation_made = True
        self.invitations.append(
            {
                "invitation_id": self._invitation_ids,
                "event_uid": self._event_uid(),
                "event_sequence": self.dice.pick((0, 0, 0, 1, 2)),
                "event_dtstamp": registered - timedelta(minutes=self.dice.between(1, 240)),
                "appointment_id": appointment_id,
                "organizer_email": _email_address(first, last, organizer, contact),
                "organizer_fullname": f"{first} {last}",
                "recurring_start_date": series.first_active if series else NEVER,
                "recurring_end_date": series.last_active() if series else NEVER,
                "template_language": self.dice.pick(TEMPLATE_LANGUAGES),
                **_never_updated(registered, by=invited),
            }
        )

    def _event_uid(self) -> str:
        bits = self.dice.getrandbits
        if self.dice.random() < 0.6:  # Outlook's global object id
            return (
                f"040000008200E00074C5B7101A82E00800000000{bits(64):016X}"
                f"000000000000000010000000{bits(128):032X}"
            )
        return f"{bits(104):026x}@google.com"


# ---------------------------------------------------------------------------------------------
# Inserting


class _DateTexts(dict[object, object]):
    """Dates as SQLAlchemy writes and compares them on SQLite (`YYYY-MM-DD HH:MM:SS.ffffff`),
    each formatted once: the rows of a meeting share theirs, and NEVER is everywhere."""

    def __missing__(self, value: object) -> object:
        text = value.isoformat(" ", "microseconds") if isinstance(value, datetime) else value
        self[value] = text
        return text


class _TableWriter:
    """Inserts chunks of row dicts into one table, with only the columns the table has.

    On SQLite the rows go straight to the driver: SQLAlchemy's per-value date processing would
    cost more than generating them.
    """

    direct = True  # on SQLite, bypass SQLAlchemy (the tests compare both ways)

    def __init__(self, conn: Connection, table: Table) -> None:
        self.conn = conn
        self.table = table
        self._sqlite = self.direct and conn.dialect.name == "sqlite"
        self._prepared = False
        self._extra: tuple[str, ...] = ()
        self._dates: tuple[str, ...] = ()
        self._values: Callable[[Row], Any] = lambda row: ()
        self._sql = ""
        self._texts = _DateTexts()

    def _prepare(self, first: Row) -> None:
        present = [column for column in self.table.columns if column.key in first]
        keys = [column.key for column in present]
        self._extra = tuple(key for key in first if key not in self.table.c)
        self._dates = tuple(c.key for c in present if isinstance(c.type, DateTime))
        self._values = itemgetter(*keys) if len(keys) > 1 else lambda row: (row[keys[0]],)
        preparer = self.conn.dialect.identifier_preparer
        names = ", ".join(preparer.quote(column.name) for column in present)
        marks = ", ".join("?" for _ in present)
        self._sql = f"INSERT INTO {preparer.format_table(self.table)} ({names}) VALUES ({marks})"
        self._prepared = True

    def write(self, rows: list[Row]) -> None:
        if not rows:
            return
        if not self._prepared:
            self._prepare(rows[0])
        if not self._sqlite:
            for row in rows if self._extra else ():
                for key in self._extra:
                    del row[key]
            self.conn.execute(self.table.insert(), rows)
            return
        texts = self._texts
        if len(texts) > 100_000:
            texts.clear()  # flat memory
        for row in rows:
            for key in self._dates:
                row[key] = texts[row[key]]
        self.conn.exec_driver_sql(self._sql, list(map(self._values, rows)))


def _insert(conn: Connection, table: Table, rows: Iterable[Row]) -> None:
    writer = _TableWriter(conn, table)
    for chunk in _chunks(rows, CHUNK_ROWS):
        writer.write(chunk)


def _insert_appointments(
    conn: Connection,
    tables: SuperOfficeTables,
    generator: _AppointmentGenerator,
    progress: Progress | None,
) -> None:
    appointments = _TableWriter(conn, tables.appointment)
    invitations = _TableWriter(conn, tables.invitation) if tables.invitation is not None else None
    total = generator.options.appointments
    done = 0
    for chunk in _chunks(generator.rows(), CHUNK_ROWS):
        appointments.write(chunk)
        if invitations is not None:
            invitations.write(generator.invitations)
        generator.invitations = []
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


# ---------------------------------------------------------------------------------------------
# Preferences, versions, model, licences, travel, sequence


def _preference_rows(options: DemoOptions, people: _People, timeline: _Timeline) -> list[Row]:
    yes, no = options.bool_values
    override_owner = people.associate_ids[min(2, len(people.associate_ids) - 1)]
    group_id = 2
    # (section, key, deflevel, maxlevel, owner, value)
    specs: list[tuple[str, str, int, int, int, str]] = [
        (*DIARY_SYNC, 1, 5, 0, no),  # hard default "off"
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
    registered = timeline.start - timedelta(days=30)
    dated = [(spec, registered + timedelta(days=index)) for index, spec in enumerate(specs)]
    if timeline.diary_sync_on_at is not None:  # "invitation" step 3 switched it on
        dated.append(((*DIARY_SYNC, 2, 5, 0, yes), timeline.diary_sync_on_at))
    return [
        {
            "userpreference_id": index + (1 if index < 4 else 7),  # ids 5-10 were deleted once
            "deflevel": level,
            "maxlevel": maxlevel,
            "owner_id": owner,
            "prefsection": section,
            "prefkey": key,
            "prefvalue": value,
            **_never_updated(when),
        }
        for index, ((section, key, level, maxlevel, owner, value), when) in enumerate(dated)
    ]


def _never_updated(registered: datetime, by: int = 0) -> Row:
    return {
        "registered": registered,
        "registered_associate_id": by,
        "updated": NEVER,
        "updated_associate_id": 0,
        "updatedCount": 0,
    }


def _product_version_rows(options: DemoOptions, timeline: _Timeline) -> list[Row]:
    now, current = timeline.now, options.superoffice_version
    # (ownerName, codeName, version, registered)
    specs: list[tuple[str, str, str, datetime]] = []
    if _is_older(OLDER_SUPEROFFICE_VERSION, current):
        specs.append(("SuperOffice", "CRM", OLDER_SUPEROFFICE_VERSION, now - timedelta(days=1500)))
    relation = _r10_relation(current)
    if timeline.r10_at is not None and relation == "newer":
        specs.append(("SuperOffice", "CRM", R10_VERSION, timeline.r10_at))
    upgraded = timeline.r10_at if relation in ("r10", "unknown") else None
    specs.append(("SuperOffice", "CRM", current, upgraded or now - NEWER_VERSION_AGE))
    if options.synchronizer_version is not None and timeline.synchronizer_at is not None:
        specs.append(
            ("InfoBridge", "Synchronizer", options.synchronizer_version, timeline.synchronizer_at)
        )
    return [
        {
            "ProductVersion_id": index + 1,
            "ownerName": owner,
            "codeName": code,
            "version": version,
            "comment": f"Installed {version}",
            "updatePath": None,
            **_never_updated(registered),
        }
        for index, (owner, code, version, registered) in enumerate(specs)
    ]


def _is_older(version: str, than: str) -> bool:
    """True when `version`'s major.minor is below `than`'s (False when either is unparsable)."""
    numbers = [re.search(r"(\d+)\.(\d+)", v) for v in (version, than)]
    if numbers[0] is None or numbers[1] is None:
        return False
    older, newer = ((int(m.group(1)), int(m.group(2))) for m in numbers if m is not None)
    return older < newer


def _database_model_row(options: DemoOptions, timeline: _Timeline, tables: list[str]) -> Row:
    """ModelData as the Web API serves the model (an inference, see model_data.py)."""
    steps: list[DictionaryStep] = [SUPEROFFICE_STEP_45]
    if timeline.r10_at is not None:
        steps += INVITATION_STEPS if options.after_r10 else INVITATION_STEPS[:3]
    return {
        "DatabaseModel_id": 1,
        "ModelVersion": options.superoffice_version,
        "ModelData": encode_model_data(steps, tables),
    }


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

    Columns are addressed by their documented keys, so tables reflected from any dialect work;
    columns and tables the database lacks (an 8.5 R10 shape) are simply not written.
    """
    now = options.resolved_now()
    timeline = _timeline(options, now)
    people = _plan_people(options.appointments)
    names = _person_names(options.seed, people)
    _insert_people(conn, tables, people, names, now)
    cap = updated_count_cap(conn.dialect, tables.appointment)
    shape = _Shape.of(tables)
    generator = _AppointmentGenerator(options, people, names, timeline, shape, cap)
    _insert_appointments(conn, tables, generator, progress)
    max_ids = {
        "appointment": generator.tally.last_id,
        "person": people.external_person_ids.stop - 1,
        "associate": people.resource_ids.stop - 1,
        "invitation": generator.invitation_rows,
    }
    max_ids |= _insert_settings(conn, tables, options, people, timeline)
    present = {name: max_id for name, max_id in max_ids.items() if _has_table(tables, name)}
    rng = random.Random(f"{options.seed}:sequence")
    _insert(conn, tables.sequence, _sequence_rows(rng, present))
    return _summary(options, people, timeline, generator, tables)


def _insert_settings(
    conn: Connection,
    tables: SuperOfficeTables,
    options: DemoOptions,
    people: _People,
    timeline: _Timeline,
) -> dict[str, int]:
    """Preferences, versions, model, licences and travel rows; returns each table's highest id."""
    preferences = _preference_rows(options, people, timeline)
    owners, licences = _licence_rows(options)
    travel_log = _travel_log_rows(timeline.now, [_int(r["userpreference_id"]) for r in preferences])
    present = [name for name in TABLE_SPECS if _has_table(tables, name)]
    contents: dict[str, tuple[Table | None, list[Row]]] = {
        "UserPreference": (tables.userpreference, preferences),
        "ProductVersion": (tables.productversion, _product_version_rows(options, timeline)),
        "DatabaseModel": (
            tables.databasemodel,
            [_database_model_row(options, timeline, present)],
        ),
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


def _has_table(tables: SuperOfficeTables, name: str) -> bool:
    slot = "userpreference" if name == "UserPreference" else name.lower()
    return getattr(tables, slot) is not None


def _summary(
    options: DemoOptions,
    people: _People,
    timeline: _Timeline,
    generator: _AppointmentGenerator,
    tables: SuperOfficeTables,
) -> DemoSummary:
    tally = generator.tally
    return DemoSummary(
        scenario=options.scenario,
        appointments=tally.rows,
        first_appointment_id=tally.first_id,
        last_appointment_id=tally.last_id,
        meetings=tally.meetings,
        meetings_with_external_participants=tally.meetings_with_external,
        external_participant_rows=tally.external_rows,
        invite_meetings=tally.invite_meetings,
        invite_rows=tally.invite_rows,
        invitation_meetings=tally.invitation_meetings,
        send_email_meetings=tally.send_email_meetings,
        email_id_meetings=tally.email_id_meetings,
        old_email_id_meetings=tally.old_email_id_meetings,
        recurring_series=tally.recurring_series,
        recurring_invite_series=tally.invite_series,
        series_begun_before_r10=tally.series_before_r10,
        externally_owned_rows=tally.owned_rows,
        persons=people.persons,
        associates=len(people.associate_ids) + len(people.resource_ids),
        resources=len(people.resource_ids),
        diary_sync_overrides=2,  # the group row and the individual row of _preference_rows
        diary_sync_on_since=timeline.diary_sync_on_at,
        superoffice_version=options.superoffice_version,
        r10_upgraded_at=timeline.r10_at,
        synchronizer_version=options.synchronizer_version,
        synchronizer_installed_at=timeline.synchronizer_at,
        absent=tuple(tables.absent_columns()),
        travel=options.travel,
        now=timeline.now,
        updated_count_cap=generator.updated_count_cap,
    )


def build_demo_database(
    path: Path,
    options: DemoOptions,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> DemoSummary:
    """Build the demo as an SQLite file at `path`; an existing file stays untouched on failure.

    The scenario decides the shape: r10-shape builds the tables of a genuine 8.5 R10 database.
    """
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
            tables = create_demo_schema(conn, after_r10=options.after_r10, indexes=False)
            summary = populate_demo(conn, tables, options, progress)
            create_demo_indexes(conn, tables)
            conn.commit()
            conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
            conn.exec_driver_sql("PRAGMA synchronous=FULL")
            conn.commit()
    finally:
        engine.dispose()  # Windows cannot rename a file that is still open
    return summary


# ---------------------------------------------------------------------------------------------
# Helpers


def _chunks(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value
