"""undo --dry-run: exactly what undo would put back (counts and sample ids, as the upgrade's dry
run), changing nothing; and undo's question shows the same before it is asked."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from cli_helpers import invoke

pytestmark = pytest.mark.usefixtures("workdir")
UNDO_QUESTION = "Undo setup-tool's changes"


def url(db: Path) -> str:
    return f"sqlite:///{db}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def upgraded(db: Path) -> dict[str, object]:
    result = invoke(
        "upgrade",
        "--database-url",
        url(db),
        "--unattended",
        "--fix-overrides",
        "--report",
        "r.json",
    )
    assert result.exit_code == 0, result.output
    return dict(json.loads(Path("r.json").read_text()))


def changed_by_someone(db: Path, appointment_id: int) -> None:
    with closing(sqlite3.connect(db)) as con:
        con.execute(
            "UPDATE appointment SET updatedCount = updatedCount + 1 WHERE appointment_id = ?",
            (appointment_id,),
        )
        con.commit()


def test_undo_dry_run_predicts_exactly_what_undo_does(demo_db: Path) -> None:
    report = upgraded(demo_db)
    steps = {s["id"]: s for s in report["steps"]}
    marked = steps["mark_invites"]["rows"]
    someone = steps["mark_invites"]["sample_ids"][0]
    changed_by_someone(demo_db, someone)
    before = digest(demo_db)

    planned = invoke("undo", "--database-url", url(demo_db), "--dry-run", "--format", "json")
    assert planned.exit_code == 0, planned.output
    assert digest(demo_db) == before  # changed nothing
    plan = json.loads(planned.stdout)
    (run,) = plan["runs"]
    assert run["run_id"] == report["run_id"]
    assert run["appointments"] == marked - 1 and run["conflicts"] == 1
    assert run["conflict_ids"] == [someone]
    assert someone not in run["sample_ids"] and len(run["sample_ids"]) == min(10, marked - 1)
    prefs = {p["id"]: p for p in run["preferences"]}
    inserted = steps["preference"]["sample_ids"][0]
    assert prefs[inserted] == {
        "id": inserted,
        "now": "1",
        "back_to": None,
        "remove": True,
        "conflict": False,
    }
    (override,) = [p for p in prefs.values() if not p["remove"]]
    assert (override["now"], override["back_to"]) == ("1", "0")

    text = invoke("undo", "--database-url", url(demo_db), "--dry-run")
    assert f"{marked - 1:,} appointment row(s) get their previous" in text.stdout
    assert f"UserPreference {override['id']}: '1' -> '0'" in text.stdout
    assert f"UserPreference {inserted} = '1': removed" in text.stdout

    done = invoke("undo", "--database-url", url(demo_db), "--unattended")
    assert done.exit_code == 4, done.output  # one row is left as someone changed it
    # the appointments and the override row come back; the inserted row goes
    restored = run["appointments"] + sum(not p["remove"] for p in run["preferences"])
    assert f"{restored:,} row(s) restored, 1 removed" in " ".join(done.stdout.split())


def test_undos_question_shows_what_it_will_put_back(demo_db: Path) -> None:
    upgraded(demo_db)
    before = digest(demo_db)
    result = invoke("undo", "--database-url", url(demo_db), input="n\n")
    assert result.exit_code == 7, result.output  # cancelled by the operator
    shown = result.stderr[: result.stderr.index(UNDO_QUESTION)]
    assert "appointment row(s) get their previous cautionWarning" in shown
    assert "UserPreference" in shown and "removed (setup-tool inserted it)" in shown
    assert digest(demo_db) == before


def test_undo_dry_run_with_nothing_to_undo(demo_db: Path) -> None:
    result = invoke("undo", "--database-url", url(demo_db), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "setup-tool has no changes to undo in this database." in result.stdout


def test_undo_dry_run_writes_text_or_json_only(demo_db: Path) -> None:
    result = invoke("undo", "--database-url", url(demo_db), "--dry-run", "--format", "html")
    assert result.exit_code == 2 and "text or JSON" in result.stderr
