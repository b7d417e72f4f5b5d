"""Undo at its edges: a row someone changed in one column only, without SuperOffice's bookkeeping.

Undo restores a row only while it still holds what the tool wrote: cautionWarning 1 (NotInSync)
with the tool's updatedCount and `updated` stamp. A script or another tool may change a marked
row's warning and nothing else (no updatedCount bump, no new stamp); such a row is not the tool's
any more and must be left exactly as that person left it, listed, and not told to Travel.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from scenarios import by_id, dump, execute, open_db, query, upgrade

from setup_tool.demo import TABLE_NUMBERS
from setup_tool.errors import ExitCode
from setup_tool.undo import UndoResult, undo


def run_undo(path: Path) -> UndoResult:
    db = open_db(path)
    try:
        return undo(db)
    finally:
        db.dispose()


def marked_by_the_tool(path: Path) -> list[int]:
    rows = query(
        path,
        "SELECT record_id FROM setup_tool_previous_value WHERE table_name = 'appointment' "
        "ORDER BY record_id",
    )
    return [r["record_id"] for r in rows]


def travel_log(path: Path) -> list[dict[str, Any]]:
    return dump(path, "traveltransactionlog")


@pytest.mark.parametrize("warning", [0, 2, None], ids=["cleared", "another warning", "NULL"])
def test_a_row_whose_warning_alone_was_changed_is_left_alone(
    make_demo: Callable[..., Path], warning: int | None
) -> None:
    path = make_demo(travel=True)
    before = by_id(dump(path, "appointment"))
    assert upgrade(path, fix_overrides=True).exit_code == ExitCode.DONE
    changed = marked_by_the_tool(path)
    assert len(changed) > 10
    victim = changed[len(changed) // 2]
    value = "NULL" if warning is None else str(warning)
    # The warning only: updated, updated_associate_id and updatedCount still say the tool's.
    execute(
        path, f"UPDATE appointment SET cautionWarning = {value} WHERE appointment_id = {victim}"
    )
    left = by_id(dump(path, "appointment"))[victim]
    logged_before = len(travel_log(path))

    undone = run_undo(path)

    assert undone.exit_code == ExitCode.ACTION_REQUIRED
    assert undone.conflicts == [f"appointment {victim}"]
    switched = query(
        path,
        "SELECT count(*) AS n FROM setup_tool_previous_value "
        "WHERE table_name = 'UserPreference' AND inserted = 0",
    )[0]["n"]
    assert undone.restored == len(changed) - 1 + switched  # every other row, the preferences
    after = by_id(dump(path, "appointment"))
    assert after[victim] == left, "undo overwrote a row someone changed"
    assert {i: r for i, r in after.items() if i != victim} == {
        i: r for i, r in before.items() if i != victim
    }
    # Travel hears of the rows undo restored, and of no other.
    told = [
        r["record_id"]
        for r in travel_log(path)[logged_before:]
        if r["tablenumber"] == TABLE_NUMBERS["appointment"]
    ]
    assert sorted(told) == sorted(set(changed) - {victim})


def test_a_row_whose_stamp_alone_was_changed_is_left_alone(make_demo: Callable[..., Path]) -> None:
    """The other half of "still the tool's": warning and counter as the tool left them, but a
    different `updated` stamp (the counter may sit at its cap, where only the stamp tells)."""
    path = make_demo()
    before = by_id(dump(path, "appointment"))
    upgrade(path, fix_overrides=True)
    victim = marked_by_the_tool(path)[0]
    execute(
        path,
        f"UPDATE appointment SET updated = '2099-01-01 00:00:00' WHERE appointment_id = {victim}",
    )
    left = by_id(dump(path, "appointment"))[victim]

    undone = run_undo(path)

    assert undone.conflicts == [f"appointment {victim}"]
    after = by_id(dump(path, "appointment"))
    assert after[victim] == left
    assert {i: r for i, r in after.items() if i != victim} == {
        i: r for i, r in before.items() if i != victim
    }


def test_a_row_put_back_by_hand_is_no_conflict(make_demo: Callable[..., Path]) -> None:
    """Someone already restored a marked row to exactly its previous values: undo has nothing to
    do for it and nothing to report."""
    path = make_demo()
    before = by_id(dump(path, "appointment"))
    upgrade(path, fix_overrides=True)
    victim = marked_by_the_tool(path)[0]
    was = before[victim]
    execute(
        path,
        "UPDATE appointment SET cautionWarning = {w}, updated = '{u}', updated_associate_id = {a}, "
        "updatedCount = {c} WHERE appointment_id = {i}".format(
            w="NULL" if was["cautionWarning"] is None else was["cautionWarning"],
            u=was["updated"],
            a=was["updated_associate_id"],
            c=was["updatedCount"],
            i=victim,
        ),
    )

    undone = run_undo(path)

    assert undone.exit_code == ExitCode.DONE and undone.conflicts == []
    assert by_id(dump(path, "appointment")) == before
