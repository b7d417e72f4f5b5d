"""What detection found, each finding with the evidence that produced it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from setup_tool.preferences import BoolEncoding, OverrideLimit, PreferenceRow
from setup_tool.versions import SuperOfficeVersion, SynchronizerVersion

if TYPE_CHECKING:
    from setup_tool.invites import Selection
    from setup_tool.model_data import ModelDataReading


# How strong a piece of evidence is (issue 16): "documented" (SuperOffice's or InfoBridge's public
# documentation says so), "observed in the field" (seen in customer databases, not published),
# "inferred" (a reasonable guess nothing publishes), or "operator" (the operator's answer).
Strength = Literal["documented", "observed in the field", "inferred", "operator"]
STRENGTHS: tuple[Strength, ...] = ("documented", "observed in the field", "inferred", "operator")


@dataclass(frozen=True)
class Evidence:
    source: str  # a table, "operator", "registry", "service", "folder", "setup_tool_run"...
    detail: str
    strength: Strength | None = None  # said where it decides something (the synchronizer)


@dataclass(frozen=True)
class SuperOfficeFinding:
    version: SuperOfficeVersion | None
    evidence: list[Evidence]

    @property
    def status(self) -> str:
        supported = self.version.supports_invites() if self.version else None
        return {True: "ok", False: "too_old", None: "undetermined"}[supported]


@dataclass(frozen=True)
class SynchronizerFinding:
    in_use: bool | None  # None: licensed, but nothing says it is installed
    version: SynchronizerVersion | None
    licensed: bool
    evidence: list[Evidence]
    decided_by: str = ""  # one sentence: which finding decided in use and version

    @property
    def status(self) -> str:
        from setup_tool.versions import synchronizer_supports_invites

        if self.in_use is None:
            return "licensed_only"
        if not self.in_use:
            return "absent"
        if self.version is None:
            return "unknown_version"
        return "ok" if synchronizer_supports_invites(self.version) else "too_old"


@dataclass(frozen=True)
class PreferenceFinding:
    rows: list[PreferenceRow]
    system: list[PreferenceRow]  # deflevel 2, owner 0
    overrides: list[PreferenceRow]  # levels 3-5 (on or off)
    effective: bool | None  # what a user without override gets; None: no row says
    encoding: BoolEncoding
    evidence: list[Evidence]
    owner_names: dict[int, str] = field(default_factory=dict)  # row id -> the individual's name
    # How far down overrides count (maxlevel of the system-wide row; setup_tool.preferences).
    limit: OverrideLimit = field(default_factory=lambda: OverrideLimit(None, None, "no row"))
    # No system-wide row: the reading this run uses (the sources are in the evidence).
    no_row_reading: str | None = None
    # No row, and the operator says it was on by default since invites arrived: empty window.
    default_on_by_operator: bool = False

    @property
    def honoured(self) -> list[PreferenceRow]:
        """Level 3-5 rows SuperOffice applies (their level within maxlevel)."""
        return [r for r in self.overrides if self.limit.allows(r)]

    @property
    def not_honoured(self) -> list[PreferenceRow]:
        """Level 3-5 rows present, but below the level maxlevel allows: SuperOffice ignores them."""
        return [r for r in self.overrides if not self.limit.allows(r)]

    @property
    def overrides_off(self) -> list[PreferenceRow]:
        """Honoured rows that switch it off for some users."""
        return [r for r in self.honoured if r.on is not True]

    @property
    def effective_label(self) -> str:
        return {True: "on", False: "off", None: "unset"}[self.effective]


# What travelcurrent says this database is (SOD database reference, tables/travelcurrent.md:
# systemlevel "10 = central, 9 = first child, 8 = second-generation child"; current_id
# "Central=0, Departm.=H01000000-H7F000000, Travel=assoc_id").
DatabaseKind = Literal["central", "satellite", "travel", "child", "undetermined"]


@dataclass(frozen=True)
class DatabaseRole:
    kind: DatabaseKind  # child: not central, but satellite or travel copy cannot be told
    detail: str  # what the travelcurrent rows said

    @property
    def refuses(self) -> bool:
        """Only the central database is upgraded; its copies receive the change through Travel."""
        return self.kind in ("satellite", "travel", "child")

    def sentence(self) -> str:
        """One sentence for summaries and the gate."""
        if self.kind == "central":
            return f"This is the central database ({self.detail})."
        if self.kind == "undetermined":
            return (
                f"Whether this is the central database is not recorded ({self.detail}); "
                "treated as central (a satellite or travel copy cannot work without its "
                "travelcurrent row)."
            )
        what = {"satellite": "a satellite", "travel": "a travel (traveller's) copy"}.get(
            self.kind, "a satellite or travel copy, not the central database"
        )
        return f"This database is {what} ({self.detail})."


REFUSAL_HINT = (
    "Run setup-tool on the central database; satellites and travellers receive the change "
    "through Travel."
)


@dataclass(frozen=True)
class TravelFinding:
    enabled: bool
    evidence: list[Evidence]
    role: DatabaseRole = field(
        default_factory=lambda: DatabaseRole("undetermined", "travelcurrent not read")
    )

    @property
    def summary(self) -> str:
        travel = (
            "Travel is on: changes are written to the travel transaction log."
            if self.enabled
            else "Travel is off."
        )
        refused = (
            f" setup-tool upgrade and undo refuse to run here. {REFUSAL_HINT}"
            if self.role.refuses
            else ""
        )
        return f"{self.role.sentence()}{refused} {travel}"


@dataclass(frozen=True)
class MarkingWindow:
    """Appointments registered in [start, until) were registered while the preference was off."""

    start: datetime | None
    until: datetime
    # The DBA script ends the window when the script switches the preference on (a T-SQL
    # variable), not when it was generated.
    until_sql: Any = field(default=None, compare=False)

    def describe(self) -> str:
        start = f"{self.start:%Y-%m-%d %H:%M:%S}" if self.start else "the beginning"
        return f"registered from {start} until {self.until:%Y-%m-%d %H:%M:%S} UTC"


@dataclass(frozen=True)
class InvitesSince:
    """Since when invites are possible in this database (SPEC step 4, "invites-since")."""

    moment: datetime | None
    source: str  # "operator", "ProductVersion", "invitation" or "undetermined"
    evidence: list[Evidence]
    email_id_rows_exist: bool = False  # footprint (c) evidence waits for an invites-since


@dataclass(frozen=True)
class FootprintCount:
    """One footprint of the invite system: which meetings carry it."""

    kind: str  # invitation, send-email, email-id
    label: str
    meetings: int
    rows: int
    counted: bool  # it decides which meetings are invite meetings in this run
    note: str  # why it does not count, or ""


@dataclass(frozen=True)
class InviteCounts:
    """What SPEC step 4 finds: invite meetings by footprint, the rows to mark and those left out."""

    footprints: list[FootprintCount]
    meetings: int  # invite meetings (footprints that count; recurring series whole)
    rows: int  # all rows of those meetings
    selected_meetings: int  # of them, registered inside the window
    to_mark: int  # rows a run marks
    in_sync_range: int  # of to_mark: activeDate 30 days back to 120 days ahead
    already_marked: int  # rows of selected meetings at cautionWarning 1
    left_out: dict[str, int]  # reason -> rows of invite meetings not marked
    selection: Selection | None  # None without a synchronizer
    evidence: list[Evidence]
    nothing_to_mark_because: str | None = None  # one sentence when nothing is marked
    sample_ids: list[int] = field(default_factory=list)  # the first ids to mark, ascending
    # rows to mark per (registration year or None, associate id): the report's figures
    by_year_and_associate: list[tuple[int | None, int, int]] = field(default_factory=list)

    @property
    def window(self) -> MarkingWindow | None:
        return self.selection.window if self.selection is not None else None

    @property
    def other_warnings(self) -> int:
        return self.left_out.get(OTHER_WARNINGS, 0)


# Reasons a row of an invite meeting is not marked (the report lists each with its count).
EXTERNAL_ROWS = "external participants' rows (in nobody's diary)"
EXTERNALLY_OWNED_ROWS = "owned by Outlook/Google (owned_externally 1-3)"
OTHER_WARNINGS = "another caution warning (2-5), kept"
OUTSIDE_WINDOW = "meeting registered outside the window"


@dataclass(frozen=True)
class UnfinishedMarking:
    """A marking step an earlier run started and did not finish (crash, Ctrl-C, lost connection)."""

    step_row_id: int
    run_id: int
    selection: Selection
    checkpoint_key: int | None
    rows_changed: int
    batches_done: int


@dataclass(frozen=True)
class HistoryFinding:
    revision: str | None  # bookkeeping schema revision; None: the tool never ran here
    runs: list[dict[str, Any]]
    last_preference_on_at: datetime | None  # from the newest completed, not undone run
    unfinished: UnfinishedMarking | None
    evidence: list[Evidence]

    @property
    def installed(self) -> bool:
        return self.revision is not None


@dataclass(frozen=True)
class Findings:
    superoffice: SuperOfficeFinding
    synchronizer: SynchronizerFinding
    preference: PreferenceFinding
    travel: TravelFinding
    invites: InviteCounts
    history: HistoryFinding
    invites_since: InvitesSince
    model: ModelDataReading | None = None  # None without a DatabaseModel row
    columns_absent: list[str] = field(default_factory=list)  # optional columns/tables absent
    warnings: list[str] = field(default_factory=list)
