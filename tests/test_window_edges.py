"""The ends of the marking window, to the second: SPEC step 4 marks meetings registered "at or
after invites-since and while Diary Synchronizer Active was not on", that is in
[invites-since, the moment it said on). Each boundary is tested on its own (the other footprints
and ends far away), on SQLite and on the real PostgreSQL server, through check_run: dry run, real
run and undo, against the independent oracle and against the rows worked out by hand.

Then `marking_window` itself, for the later runs: where the window of run N+1 starts and ends
given what run N recorded and what the system row says now.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from scenarios import Scenario, Target
from test_invite_selection import (
    DAY,
    SECOND,
    SINCE,
    SYNCHRONIZER_ROW,
    answers,
    check_run,
    diary_rows,
    r10_at,
    sdk_meeting,
    system_row,
)

from setup_tool.findings import Evidence, HistoryFinding, MarkingWindow, PreferenceFinding
from setup_tool.preferences import BoolEncoding, PreferenceRow
from setup_tool.steps.mark_invites import marking_window

OnEngine = Callable[[Scenario], Target]
ON = SINCE + 50 * DAY  # when the system row switched the preference on


@pytest.fixture(params=["sqlite", "postgresql"])
def on_each_engine(request: pytest.FixtureRequest, tmp_path: Path) -> OnEngine:
    """Build a scenario on SQLite, or in a schema of its own on the real PostgreSQL server."""
    counter = itertools.count()
    if request.param == "sqlite":
        return lambda scenario: Target.sqlite(scenario.build(tmp_path / f"crm{next(counter)}.db"))
    database = request.getfixturevalue("pg_database")
    return lambda scenario: scenario.build_postgresql(database.url(), f"crm7_{next(counter)}")


def invite(master: int, registered: datetime, **kw: object) -> list[dict[str, object]]:
    """A meeting whose external participant had "Email invitation" on (footprint (b), which
    holds whenever the meeting was registered): only the window decides."""
    return sdk_meeting(master, registered, external={"send_email": 1}, **kw)


def window_scenario(*appointments: list[dict[str, object]]) -> Scenario:
    return Scenario(
        appointments=[row for meeting in appointments for row in meeting],
        preferences=[system_row(registered=SINCE - 50 * DAY, updated=ON)],
        product_versions=[r10_at(SINCE), SYNCHRONIZER_ROW],
    )


def test_the_window_holds_its_start_and_not_its_end(on_each_engine: OnEngine) -> None:
    scenario = window_scenario(
        invite(100, SINCE),  # exactly at invites-since: in
        invite(200, SINCE - SECOND),  # a second before: out
        invite(300, ON - SECOND),  # a second before it said on: in
        invite(400, ON),  # exactly when it said on: out
    )
    check_run(on_each_engine(scenario), answers(), expected=diary_rows(100) | diary_rows(300))


def test_the_operators_invites_since_is_the_start_to_the_second(on_each_engine: OnEngine) -> None:
    given = SINCE + 10 * DAY
    scenario = window_scenario(
        invite(100, given),  # in
        invite(200, given - SECOND),  # out, although after the 8.5 R10 row
    )
    check_run(on_each_engine(scenario), answers(since=given), expected=diary_rows(100))


def test_an_e_mailed_invitation_counts_from_invites_since_exactly(on_each_engine: OnEngine) -> None:
    """Footprint (c) is a row with emailId registered at or after invites-since; the meetings
    themselves are well inside the window, so only the footprint's own boundary decides."""
    inside = SINCE + DAY

    def e_mailed_at(master: int, e_mailed: datetime) -> list[dict[str, object]]:
        rows = sdk_meeting(master, inside)
        rows[2] = {**rows[2], "emailId": 9900, "registered": e_mailed}  # the external row
        return rows

    scenario = window_scenario(e_mailed_at(100, SINCE), e_mailed_at(200, SINCE - SECOND))
    check_run(on_each_engine(scenario), answers(), expected=diary_rows(100))


def test_a_series_counts_from_its_first_occurrence_at_each_end(on_each_engine: OnEngine) -> None:
    """Masters 100/110 form series 7, first registered exactly at invites-since: all in. Series 8
    starts exactly when it said on, series 9 a second before invites-since: all out, although
    series 9's later occurrence (with the footprint) falls inside the window."""
    scenario = window_scenario(
        sdk_meeting(100, SINCE, recurrence=7),
        invite(110, SINCE + 10 * DAY, recurrence=7),
        sdk_meeting(200, ON, recurrence=8),
        invite(210, ON + DAY, recurrence=8),
        sdk_meeting(300, SINCE - SECOND, recurrence=9),
        invite(310, SINCE + DAY, recurrence=9),
    )
    check_run(on_each_engine(scenario), answers(), expected=diary_rows(100) | diary_rows(110))


# --- marking_window: where a later run's window starts and ends ---------------------------------

NOW = ON + 30 * DAY
LAST_ON = ON + 10 * DAY  # when the last run made sure the preference was on
NEVER = datetime(1900, 1, 1)


def history(last_on: datetime | None) -> HistoryFinding:
    return HistoryFinding("0002", [], last_on, None, [])


def preference(on: bool, *, registered: datetime, updated: datetime = NEVER) -> PreferenceFinding:
    row = PreferenceRow(
        id=2,
        deflevel=2,
        maxlevel=5,
        owner_id=0,
        section="Mail",
        key="DiarySynchronizerActive",
        value="1" if on else "0",
        registered=registered,
        updated=updated,
        updated_count=1,
    )
    return PreferenceFinding(
        rows=[row],
        system=[row],
        overrides=[],
        effective=on,
        encoding=BoolEncoding("1", "0"),
        evidence=[Evidence("UserPreference", "row 2")],
    )


@pytest.mark.parametrize(
    ("last_on", "on", "registered", "updated", "expected"),
    [
        # first run: until the moment the row said on (its update, else its registration)...
        (None, True, SINCE, ON, MarkingWindow(None, ON)),
        (None, True, ON, NEVER, MarkingWindow(None, ON)),
        (None, True, ON, datetime(1753, 1, 1), MarkingWindow(None, ON)),
        # ...but a row stamped in the future, or saying off, ends the window now
        (None, True, SINCE, NOW + SECOND, MarkingWindow(None, NOW)),
        (None, False, SINCE, ON, MarkingWindow(None, NOW)),
        # later runs: on ever since the last run (stamped then or before): nothing new...
        (LAST_ON, True, SINCE, LAST_ON, None),
        (LAST_ON, True, SINCE, LAST_ON - SECOND, None),
        # ...switched off and on again after it: the time in between
        (LAST_ON, True, SINCE, LAST_ON + SECOND, MarkingWindow(LAST_ON, LAST_ON + SECOND)),
        # ...off now: from when it was switched off (if stamped after the last run) until now
        (LAST_ON, False, SINCE, LAST_ON + DAY, MarkingWindow(LAST_ON + DAY, NOW)),
        (LAST_ON, False, SINCE, LAST_ON, MarkingWindow(LAST_ON, NOW)),
        (LAST_ON, False, SINCE, NEVER, MarkingWindow(LAST_ON, NOW)),
    ],
)
def test_the_window_of_each_run(
    last_on: datetime | None,
    on: bool,
    registered: datetime,
    updated: datetime,
    expected: MarkingWindow | None,
) -> None:
    found = marking_window(
        history(last_on), preference(on, registered=registered, updated=updated), NOW
    )
    assert found == expected
