"""SPEC step 4 in a few lines of plain Python: which appointment rows the upgrade must mark.

The tests' oracle, written from the SPEC and nothing else: it never imports the tool, and it works
on plain rows as any SQL client reads them (column names in any case, datetimes as datetime or as
the text SQLite stores). Each function is one sentence of the SPEC:

- a meeting M is its row `appointment_id = M` plus every row `mother_id = M` (a plain appointment,
  `mother_id = 0`, is the meeting of its own id);
- M is an invite meeting when it carries a footprint that counts: (a) an `invitation` row with
  `appointment_id = M`, (b) a row of M with `SendEmail = 1`, (c) a row of M with `emailId <> 0`
  registered at or after invites-since (only when invites-since is known);
- a meeting whose master row has `recurrenceRuleId = R <> 0` belongs to series R: a footprint on
  any occurrence makes the whole series an invite series, registered when its earliest master row
  was; a series is marked whole or not at all;
- an invite meeting or series is selected when it was registered in [invites-since, until);
- the rows marked are the selected meetings' rows in an associate's diary (`associate_id <> 0`),
  not owned by Outlook/Google (`owned_externally` 0 or NULL, where the column exists), with
  `cautionWarning` 0 or NULL.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Row = dict[str, Any]

INVITATION = "invitation"  # footprint (a)
SEND_EMAIL = "send-email"  # footprint (b)
EMAIL_ID = "email-id"  # footprint (c)
ALL_FOOTPRINTS = frozenset({INVITATION, SEND_EMAIL, EMAIL_ID})

_ON = {"1", "true", "yes"}
_VERSION = re.compile(r"^\s*(\d+)\.(\d+)(?:\s*R(\d+)|(?:\.\d+)*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class DatabaseRows:
    """The rows the rule looks at, read with plain SQL before the run."""

    appointments: list[Row]
    invitations: list[Row] = field(default_factory=list)  # empty where the table does not exist
    product_versions: list[Row] = field(default_factory=list)
    preferences: list[Row] = field(default_factory=list)


# --- plain values -----------------------------------------------------------------------------


def lower_keys(row: Row) -> Row:
    return {key.lower(): value for key, value in row.items()}


def as_datetime(value: datetime | str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def registered(row: Row) -> datetime:
    moment = as_datetime(row["registered"])
    assert moment is not None, "registered is NOT NULL"
    return moment


def is_real_date(value: datetime | str | None) -> bool:
    """SuperOffice's "empty" dates (1753-01-01, 1900-01-01) are no evidence of anything."""
    moment = as_datetime(value)
    return moment is not None and moment.year > 1900


def is_8_5_r10_or_newer(version: str | None) -> bool:
    """'8.5 R10', '8.5 R12', '9.2', '10.2.6' yes; '8.1 R03', '8.5 R09', a bare '8.5' no."""
    match = _VERSION.match(version or "")
    if match is None:
        return False
    major, minor = int(match.group(1)), int(match.group(2))
    if (major, minor) != (8, 5):
        return (major, minor) > (8, 5)
    return match.group(3) is not None and int(match.group(3)) >= 10


# --- the two ends of the window ---------------------------------------------------------------


def invites_since(rows: DatabaseRows, operator: datetime | None = None) -> datetime | None:
    """The operator's value; else the earliest real `registered` of a SuperOffice ProductVersion
    row of 8.5 R10 or newer or of an invitation row; None when nothing says."""
    if operator is not None:
        return operator
    moments = [
        as_datetime(pv["registered"])
        for pv in map(lower_keys, rows.product_versions)
        if "superoffice" in (pv["ownername"] or "").lower()
        and is_8_5_r10_or_newer(pv["version"])
        and is_real_date(pv["registered"])
    ]
    moments += [
        as_datetime(invitation["registered"])
        for invitation in map(lower_keys, rows.invitations)
        if is_real_date(invitation["registered"])
    ]
    return min((m for m in moments if m is not None), default=None)


def diary_sync_on_since(preferences: Iterable[Row]) -> datetime | None:
    """When the system-level Mail/DiarySynchronizerActive row says on: since its `updated` date
    if that is real, else since its `registered` date. None when no such row says on."""
    system = [
        p
        for p in map(lower_keys, preferences)
        if p["prefsection"] == "Mail"
        and p["prefkey"] == "DiarySynchronizerActive"
        and p["deflevel"] == 2
        and p["owner_id"] == 0
    ]
    assert len(system) <= 1, "the oracle knows no rule for duplicate system rows"
    if not system or (system[0]["prefvalue"] or "").strip().lower() not in _ON:
        return None
    row = system[0]
    return as_datetime(row["updated"] if is_real_date(row["updated"]) else row["registered"])


def marking_until(preferences: Iterable[Row], run_started: datetime) -> datetime:
    """First run: the window ends when the system row said on, else when the run started."""
    on_since = diary_sync_on_since(preferences)
    return on_since if on_since is not None else run_started


# --- meetings, footprints, series -------------------------------------------------------------


def meeting_of(row: Row) -> int:
    return int(row["mother_id"] or row["appointment_id"])


def has_footprint(
    meeting: int,
    rows: list[Row],
    invited: set[int],
    since: datetime | None,
    footprints: frozenset[str],
) -> bool:
    by_invitation = INVITATION in footprints and meeting in invited
    by_send_email = SEND_EMAIL in footprints and any(r.get("sendemail") == 1 for r in rows)
    by_email_id = (
        EMAIL_ID in footprints
        and since is not None
        and any(r["emailid"] not in (0, None) and registered(r) >= since for r in rows)
    )
    return by_invitation or by_send_email or by_email_id


def is_markable(row: Row) -> bool:
    return (
        row["associate_id"] != 0
        and row.get("owned_externally", 0) in (0, None)
        and row["cautionwarning"] in (0, None)
    )


def rows_to_mark(
    database: DatabaseRows,
    *,
    until: datetime,
    operator_since: datetime | None = None,
    footprints: frozenset[str] = ALL_FOOTPRINTS,
) -> set[int]:
    """The appointment_ids a first run must set to cautionWarning = 1."""
    since = invites_since(database, operator_since)
    rows = [lower_keys(r) for r in database.appointments]
    by_id = {r["appointment_id"]: r for r in rows}
    meetings: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        meetings[meeting_of(row)].append(row)
    invited = {lower_keys(i)["appointment_id"] for i in database.invitations}

    # A unit is what is marked whole or not at all: a series, or a meeting on its own.
    units: dict[tuple[str, int], list[int]] = defaultdict(list)
    for meeting in meetings:
        master = by_id.get(meeting)
        assert master is not None, f"meeting {meeting} has no master row"
        series = master.get("recurrenceruleid") or 0
        units[("series", series) if series else ("meeting", meeting)].append(meeting)

    selected: set[int] = set()
    for members in units.values():
        if not any(has_footprint(m, meetings[m], invited, since, footprints) for m in members):
            continue
        registered_at = min(registered(by_id[m]) for m in members)
        if (since is not None and registered_at < since) or registered_at >= until:
            continue
        selected |= {r["appointment_id"] for m in members for r in meetings[m] if is_markable(r)}
    return selected
