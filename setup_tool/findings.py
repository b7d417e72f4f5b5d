"""What detection found, each finding with the evidence that produced it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from setup_tool.preferences import BoolEncoding, PreferenceRow
from setup_tool.versions import SuperOfficeVersion, SynchronizerVersion


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
class InviteCounts:
    meetings: int  # meetings with at least one external participant row
    rows: int  # all rows (master and participants) of those meetings
    already_marked: int  # cautionWarning = 1
    other_warnings: int  # cautionWarning 2..5: kept as they are
    to_mark: int  # 0 or NULL, registered inside the window
    window: MarkingWindow | None
    evidence: list[Evidence]


@dataclass(frozen=True)
class UnfinishedMarking:
    """A marking step an earlier run started and did not finish (crash, Ctrl-C, lost connection)."""

    step_row_id: int
    run_id: int
    window: MarkingWindow
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
    warnings: list[str] = field(default_factory=list)
