"""Reading SuperOffice UserPreference rows: levels, owners, and Bool values in their wild forms."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, func, null, select

from setup_tool.schema import SuperOfficeTables

SYSTEM_LEVEL = 2  # "system wide" (owner 0): the Global preferences tab
HARD_DEFAULT_LEVEL = 1
OVERRIDE_LEVELS = (3, 4, 5)  # database, group, individual
LEVEL_NAMES = {1: "hard default", 2: "system", 3: "database", 4: "group", 5: "individual"}

DIARY_SYNC = ("Mail", "DiarySynchronizerActive")
ENABLE_TRAVEL = ("Travel", "EnableTravel")

_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def parse_bool(value: str | None) -> bool | None:
    """Bool preferences appear as 1/0, True/False and Yes/No; None if it is not a Bool."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


@dataclass(frozen=True)
class BoolEncoding:
    on: str
    off: str

    @property
    def label(self) -> str:
        return f"{self.on}/{self.off}"


_ENCODINGS = {
    "1": BoolEncoding("1", "0"),
    "0": BoolEncoding("1", "0"),
    "true": BoolEncoding("True", "False"),
    "false": BoolEncoding("True", "False"),
    "yes": BoolEncoding("Yes", "No"),
    "no": BoolEncoding("Yes", "No"),
}
DEFAULT_ENCODING = BoolEncoding("1", "0")


def detect_encoding(values: Iterable[str | None]) -> BoolEncoding:
    """The Bool spelling the database uses most (its exact casing kept); 1/0 when there is none."""
    spellings: Counter[str] = Counter()
    for value in values:
        if value is not None and parse_bool(value) is not None:
            spellings[value.strip()] += 1
    if not spellings:
        return DEFAULT_ENCODING
    family: Counter[str] = Counter()
    for spelling, count in spellings.items():
        family[_ENCODINGS[spelling.lower()].on] += count
    winner = family.most_common(1)[0][0]
    if winner == "1":
        return DEFAULT_ENCODING
    # Keep the database's own casing ("TRUE", "true"...) for the winning family.
    ons = [s for s in spellings if s.lower() == winner.lower()]
    offs = [s for s in spellings if _ENCODINGS[s.lower()].on == winner and parse_bool(s) is False]
    on = max(ons, key=lambda s: spellings[s]) if ons else winner
    off = max(offs, key=lambda s: spellings[s]) if offs else _ENCODINGS[winner.lower()].off
    return BoolEncoding(on, off)


@dataclass(frozen=True)
class PreferenceRow:
    id: int
    deflevel: int
    maxlevel: int
    owner_id: int
    section: str
    key: str
    value: str | None
    registered: datetime | None
    updated: datetime | None
    updated_count: int

    @property
    def on(self) -> bool | None:
        return parse_bool(self.value)

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES.get(self.deflevel, f"level {self.deflevel}")

    def describe(self, owner_name: str | None = None) -> str:
        return (
            f"UserPreference row {self.id}: {self.section}/{self.key} = {self.value!r} "
            f"({self.level_name} level {self.deflevel}, {owner(self, owner_name)})"
        )


def owner(row: PreferenceRow, name: str | None) -> str:
    """'owner 3', or 'owner 3 (Jane Doe)' when the individual's name is known."""
    return f"owner {row.owner_id} ({name})" if name else f"owner {row.owner_id}"


INDIVIDUAL_LEVEL = 5


def individual_names(
    conn: Connection, tables: SuperOfficeTables, rows: list[PreferenceRow]
) -> dict[int, str]:
    """{row id: 'login: First Last'} for individual rows, from associate and person."""
    individual = [r for r in rows if r.deflevel == INDIVIDUAL_LEVEL]
    associate, person = tables.associate, tables.person
    if not individual or associate is None:
        return {}
    if person is None:
        query = select(associate.c.associate_id, associate.c.name, null(), null())
    else:
        query = select(
            associate.c.associate_id, associate.c.name, person.c.firstname, person.c.lastname
        ).outerjoin_from(associate, person, person.c.person_id == associate.c.person_id)
    who = {}
    owners = sorted({r.owner_id for r in individual})
    for associate_id, login, first, last in conn.execute(
        query.where(associate.c.associate_id.in_(owners))
    ):
        full = " ".join(part for part in (first, last) if part)
        who[int(associate_id)] = f"{login}: {full}" if full else str(login)
    return {r.id: who[r.owner_id] for r in individual if r.owner_id in who}


def preference_rows(
    conn: Connection, tables: SuperOfficeTables, section: str, key: str
) -> list[PreferenceRow]:
    """All rows of one preference at every level (names compared case-insensitively)."""
    up = tables.userpreference
    query = (
        select(
            up.c.userpreference_id,
            up.c.deflevel,
            up.c.maxlevel,
            up.c.owner_id,
            up.c.prefsection,
            up.c.prefkey,
            up.c.prefvalue,
            up.c.registered,
            up.c.updated,
            up.c.updatedCount,
        )
        .where(func.lower(up.c.prefsection) == section.lower())
        .where(func.lower(up.c.prefkey) == key.lower())
        .order_by(up.c.deflevel, up.c.owner_id, up.c.userpreference_id)
    )
    return [PreferenceRow(*row) for row in conn.execute(query)]  # type: ignore[call-arg]


def bool_values_in_use(conn: Connection, tables: SuperOfficeTables) -> list[str | None]:
    """Every distinct Bool-looking preference value with its frequency expanded (for encoding)."""
    up = tables.userpreference
    candidates = sorted(_TRUE | _FALSE)
    query = (
        select(up.c.prefvalue, func.count())
        .where(func.lower(func.trim(up.c.prefvalue)).in_(candidates))
        .group_by(up.c.prefvalue)
    )
    values: list[str | None] = []
    for value, count in conn.execute(query):
        values.extend([value] * int(count))
    return values


def system_rows(rows: Iterable[PreferenceRow]) -> list[PreferenceRow]:
    return [r for r in rows if r.deflevel == SYSTEM_LEVEL and r.owner_id == 0]


# --- which overrides SuperOffice honours (maxlevel) ----------------------------------------------
#
# Documented: UserPreference.maxlevel is the "Highest override level allowed" (SOD database
# reference, tables/userpreference.md); "maxLevel defines the maximum level at which a preference
# should be shown in the GUI" (SOD admin/user-preferences/index.md, whose sample overrides a system
# row of maxlevel 3 with a level-3 row); Diary Synchronizer Active is on the Global preferences
# tab, where "preferences that can only be set on a global (system) level" are (SOD user guide,
# levels-for-preference-settings.md; SUPEROFFICE.md).
# Inferred (NetServer's resolution is not published): a level 3-5 row counts only when its level
# is at most the maxlevel of the system-wide row it overrides (the newest system row, as for the
# effective value, else the newest hard default) and at most its own maxlevel. A maxlevel outside
# the documented levels (PreferenceLevel 1-6; 0 is "Undefined") states no limit.

GLOBAL_MAXLEVEL = SYSTEM_LEVEL  # a Global preference: set at the system level only
_LEVELS = range(1, 7)  # PreferenceLevel HardDefault (1) ... PC (6)


@dataclass(frozen=True)
class OverrideLimit:
    """How far down overrides of the preference count, and which row says so."""

    maxlevel: int | None  # None: no system-wide row states a limit
    row_id: int | None  # the system-wide row; None: none, or the row a run inserts
    source: str  # "row 7 (system level 2)", "the system row this run inserts", ...

    def allows(self, row: PreferenceRow) -> bool:
        within_limit = self.maxlevel is None or row.deflevel <= self.maxlevel
        return within_limit and not (row.maxlevel in _LEVELS and row.deflevel > row.maxlevel)

    def reading(self, row: PreferenceRow) -> str:
        """Why `row` counts or not, for its evidence line."""
        if row.maxlevel in _LEVELS and row.deflevel > row.maxlevel:
            return (
                f"present but not honoured (its own maxlevel {row.maxlevel} is below its "
                f"level {row.deflevel})"
            )
        if self.maxlevel is None:
            return "counted as an override (no system-wide row states a maxlevel)"
        if row.deflevel <= self.maxlevel:
            return f"honoured (maxlevel {self.maxlevel} of {self.source})"
        return f"present but not honoured (maxlevel {self.maxlevel} of {self.source})"


def override_limit(rows: list[PreferenceRow]) -> OverrideLimit:
    """The limit the system-wide row sets (the newest system row, else the newest hard default)."""
    governing = max(system_rows(rows), key=lambda r: r.id, default=None)
    if governing is None:
        defaults = [r for r in rows if r.deflevel == HARD_DEFAULT_LEVEL and r.owner_id == 0]
        governing = max(defaults, key=lambda r: r.id, default=None)
    if governing is None or governing.maxlevel not in _LEVELS:
        return OverrideLimit(None, None, "no system-wide row")
    source = f"row {governing.id} ({governing.level_name} level {governing.deflevel})"
    return OverrideLimit(governing.maxlevel, governing.id, source)


def inserted_maxlevel(rows: list[PreferenceRow]) -> int:
    """maxlevel for a system row the tool inserts: the limit the hard default sets today, so that
    the run changes the value and never which overrides SuperOffice honours (that is the admin's
    choice, or --fix-overrides'); without one, Diary Synchronizer Active is a Global preference,
    so the system level only (GLOBAL_MAXLEVEL)."""
    limit = override_limit(rows)
    return limit.maxlevel if limit.maxlevel is not None else GLOBAL_MAXLEVEL


def effective_system_value(rows: list[PreferenceRow]) -> bool | None:
    """What users without an override get: the system row, else the hard default; None if unset.

    Duplicate system rows exist in the wild (the index is not unique); the newest id wins, as the
    row SuperOffice itself would most recently have written.
    """
    system = system_rows(rows)
    if system:
        return max(system, key=lambda r: r.id).on
    defaults = [r for r in rows if r.deflevel == HARD_DEFAULT_LEVEL]
    if defaults:
        return max(defaults, key=lambda r: r.id).on
    return None
