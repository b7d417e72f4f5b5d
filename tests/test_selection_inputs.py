"""What decides the selection besides the data: the operator's --invites-since and --footprints
(option, environment, answer file), and the bookkeeping revision that keeps them for a resume."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from cli_helpers import invoke
from click.testing import Result
from sqlalchemy import create_engine, inspect

from setup_tool.bookkeeping import BOOKKEEPING_HEAD, alembic_config, bookkeeping_sql
from setup_tool.bookkeeping import install_bookkeeping as install
from setup_tool.invites import ALL_FOOTPRINTS, parse_footprints

pytestmark = pytest.mark.usefixtures("workdir")


# --- --footprints ----------------------------------------------------------------------------


def test_footprints_parse_in_any_case_and_order() -> None:
    assert parse_footprints("Email-Id, invitation") == {"email-id", "invitation"}
    assert parse_footprints("invitation,send-email,email-id") == ALL_FOOTPRINTS


@pytest.mark.parametrize("text", ["", "invite", "invitation,smtp", " , "])
def test_an_unknown_footprint_names_the_valid_ones(text: str) -> None:
    with pytest.raises(ValueError, match="choose from invitation, send-email, email-id"):
        parse_footprints(text)


def test_a_bad_footprints_option_is_exit_2_before_anything_is_read(demo_db: Path) -> None:
    before = demo_db.read_bytes()
    result = invoke(
        "upgrade", "--database-url", f"sqlite:///{demo_db}", "--dry-run", "--footprints", "smtp"
    )
    assert result.exit_code == 2
    assert "Invalid --footprints 'smtp'" in result.output
    assert "SETUP_TOOL_FOOTPRINTS" in result.output
    assert demo_db.read_bytes() == before


def test_a_bad_invites_since_is_exit_2(demo_db: Path) -> None:
    result = invoke(
        "upgrade", "--database-url", f"sqlite:///{demo_db}", "--dry-run", "--invites-since", "soon"
    )
    assert result.exit_code == 2 and "--invites-since" in result.output


def _invites_json(result: Result) -> dict[str, object]:
    import json

    assert result.exit_code == 0, result.output
    findings = json.loads(result.stdout)["findings"]["invites"]
    assert isinstance(findings, dict)
    return findings


def test_the_operator_narrows_footprints_and_the_report_says_so(demo_db: Path) -> None:
    url = f"sqlite:///{demo_db}"
    result = invoke(
        "upgrade",
        "--database-url",
        url,
        "--dry-run",
        "--format",
        "json",
        "--footprints",
        "invitation",
    )
    found = _invites_json(result)
    counted = {fp["kind"]: fp["counted"] for fp in found["footprints"]}  # type: ignore[attr-defined]
    assert counted == {"invitation": True, "send-email": False, "email-id": False}
    notes = {fp["kind"]: fp["note"] for fp in found["footprints"]}  # type: ignore[attr-defined]
    assert notes["send-email"] == "left out by --footprints"
    assert "Only these footprints count (--footprints): invitation" in result.stdout


def test_invites_since_and_footprints_from_environment_and_answer_file(
    demo_db: Path, workdir: Path
) -> None:
    url = f"sqlite:///{demo_db}"
    env = {"SETUP_TOOL_INVITES_SINCE": "2021-03-04", "SETUP_TOOL_FOOTPRINTS": "email-id"}
    found = _invites_json(
        invoke("upgrade", "--database-url", url, "--dry-run", "--format", "json", env=env)
    )
    assert found["invites_since"] == {"at": "2021-03-04T00:00:00+00:00", "source": "operator"}
    answers = workdir / "answers.toml"
    answers.write_text('invites-since = "2022-05-06T07:08:09"\nfootprints = "send-email"\n')
    found = _invites_json(
        invoke(
            "upgrade", "--database-url", url, "--config", answers, "--dry-run", "--format", "json"
        )
    )
    assert found["invites_since"] == {"at": "2022-05-06T07:08:09+00:00", "source": "operator"}
    kinds = [fp["kind"] for fp in found["footprints"] if fp["counted"]]  # type: ignore[attr-defined]
    assert kinds == ["send-email"]


# --- the bookkeeping revision ----------------------------------------------------------------


def test_a_database_at_revision_0001_is_upgraded_in_place_to_the_head(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'books.db'}")
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(None, conn), "0001")
            conn.exec_driver_sql(
                "INSERT INTO setup_tool_step (run_id, step_key, status, rows_planned, "
                "rows_changed, batches_done, started_at) "
                "VALUES (1, 'mark_invites', 'marking', 5, 2, 1, '2026-01-01 00:00:00')"
            )
        with engine.begin() as conn:
            install(conn, None)
        with engine.connect() as conn:
            columns = {c["name"] for c in inspect(conn).get_columns("setup_tool_step")}
    finally:
        engine.dispose()
    assert {"invites_since", "footprints"} <= columns
    with sqlite3.connect(tmp_path / "books.db") as db:  # the older step row is still there
        assert db.execute("SELECT rows_changed, footprints FROM setup_tool_step").fetchall() == [
            (2, None)
        ]
        assert db.execute("SELECT version_num FROM setup_tool_alembic_version").fetchone() == (
            BOOKKEEPING_HEAD,
        )


def test_the_dba_script_upgrades_an_older_bookkeeping_instead_of_recreating_it() -> None:
    upgrade = bookkeeping_sql("crm7", "mssql", since_revision="0001")
    assert "CREATE TABLE crm7.setup_tool_run" not in upgrade
    assert "ALTER TABLE crm7.setup_tool_step ADD invites_since DATETIME" in upgrade
    assert "ALTER TABLE crm7.setup_tool_step ADD footprints VARCHAR(60)" in upgrade
    fresh = bookkeeping_sql("crm7", "mssql")
    assert "CREATE TABLE crm7.setup_tool_run" in fresh and "footprints" in fresh


def test_a_resumed_selection_uses_what_the_step_recorded() -> None:
    """The step row keeps invites-since and the footprints; reading them back gives the same
    selection (see detect._unfinished_marking)."""
    from setup_tool.findings import MarkingWindow
    from setup_tool.invites import Selection

    recorded = ",".join(sorted({"email-id", "invitation"}))
    again = Selection(
        MarkingWindow(None, datetime(2026, 1, 1)),
        datetime(2020, 1, 1),
        frozenset(recorded.split(",")),
    )
    assert again.footprints == {"email-id", "invitation"}
    assert again.start == datetime(2020, 1, 1)
