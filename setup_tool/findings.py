"""What detection found, each finding with the evidence that produced it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from setup_tool.preferences import BoolEncoding, PreferenceRow
from setup_tool.versions import SuperOfficeVersion, SynchronizerVersion

if TYPE_CHECKING:
    from setup_tool.invites import Selection
    from setup_tool.model_data import ModelDataReading


@dataclass(frozen=True)
class Evidence:
    source: str  # a table, "operator", "registry", "service", "folder", "setup_tool_run"...
    detail: str


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

    @property
    def overrides_off(self) -> list[PreferenceRow]:
        return [r for r in self.overrides if r.on is not True]

    @property
    def effective_label(self) -> str:
        return {True: "on", False: "off", None: "unset"}[self.effective]


@dataclass(frozen=True)
class TravelFinding:
    enabled: bool
    evidence: list[Evidence]


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
