"""SuperOffice fidelity (issue 16): the central database only, synchronizer evidence that says how
strong it is, preference overrides as maxlevel allows them, what a missing system row means, and
the 8.5 R10 / R11 note.

Real SQLite files built from exact rows (scenarios), the command line in-process (CliRunner) for
every mode, and the JSON report checked against docs/report.schema.json.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from cli_helpers import invoke
from scenarios import (
    BASE,
    SATELLITE,
    SUPEROFFICE_8_5_R10,
    SYNCHRONIZER_3_2_284,
    TRAVELLER,
    FakeProbe,
    Row,
    Scenario,
    dump,
    execute,
    findings,
    invite_meeting,
    plan,
    preference,
    product_version,
    query,
    tables_named,
    upgrade,
)

from setup_tool.detect import OperatorAnswers, database_role
from setup_tool.errors import ExitCode
from setup_tool.host_probe import INSTALL_FOLDER, HostTrace
from setup_tool.preferences import GLOBAL_MAXLEVEL, PreferenceRow, override_limit
from setup_tool.report_model import findings_model
from setup_tool.versions import invites_documented_note, parse_superoffice_version

REPO = Path(__file__).resolve().parents[1]
SINCE = SUPEROFFICE_8_5_R10["registered"]  # invites-since of every scenario: BASE - 100 days

pytestmark = pytest.mark.usefixtures("workdir")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def schema_errors(report: dict[str, Any]) -> list[str]:
    schema = json.loads((REPO / "docs" / "report.schema.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    return [error.message for error in validator.iter_errors(report)]


def with_work(**changes: Any) -> Scenario:
    """A database with everything an upgrade would change: an invite meeting registered after
    invites-since (footprint (c)), no system row, an individual row that switches it off."""
    scenario = Scenario(
        appointments=invite_meeting(100, BASE, person=7),
        preferences=[preference(1, 5, "0", owner=2)],
    )
    return dataclasses.replace(scenario, **changes)


def pref_rows(path: Path) -> list[Row]:
    return query(
        path,
        "SELECT userpreference_id, deflevel, maxlevel, prefvalue FROM UserPreference "
        "WHERE prefkey = 'DiarySynchronizerActive' ORDER BY userpreference_id",
    )


# --- 1. the central database only --------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "kind"),
    [
        ([(0, 10)], "central"),
        ([(None, 10)], "central"),
        ([(0, None)], "central"),
        ([(0x01000000, 9)], "satellite"),
        ([(0x7F000000, 9)], "satellite"),
        ([(0x01000002, 8)], "satellite"),
        ([(3, 9)], "travel"),
        ([(0x7F000001, 9)], "travel"),  # above the department range: an associate id
        ([(0, 9)], "child"),  # a child database whose current_id does not say which kind
        ([(0x01000002, 10)], "satellite"),  # contradictory: not central is believed
        ([(5, 10)], "travel"),
        ([(0, 10), (3, 9)], "travel"),  # one row saying "copy" outweighs a central one
        ([], "undetermined"),
        ([(None, None)], "undetermined"),
    ],
)
def test_travelcurrent_says_what_the_database_is(
    rows: list[tuple[int | None, int | None]], kind: str
) -> None:
    role = database_role(rows)

    assert role.kind == kind
    assert role.refuses is (kind in ("satellite", "travel", "child"))


@pytest.mark.parametrize(
    ("row", "word"), [(SATELLITE, "a satellite"), (TRAVELLER, "a travel (traveller's) copy")]
)
def test_detection_reports_a_satellite_or_travel_copy_and_refuses_nothing(
    tmp_path: Path, row: Row, word: str
) -> None:
    path = with_work(travel_current=[row]).build(tmp_path / "crm.db")
    before = digest(path)

    found = findings(path)

    assert found.travel.role.kind == ("satellite" if row is SATELLITE else "travel")
    detail = f"travelcurrent current_id={row['current_id']}, systemlevel={row['systemlevel']}"
    assert detail in [e.detail for e in found.travel.evidence]
    assert f"This database is {word}" in found.travel.summary
    assert "Run setup-tool on the central database" in found.travel.summary
    assert any("refuse to run here (exit 3)" in w for w in found.warnings)
    # `detect` reports and exits 0: a read-only look is what an admin needs to find the central.
    report = tmp_path / "detect.json"
    result = invoke("detect", "--database-url", url(path), "--report", report, "--format", "json")
    assert result.exit_code == 0, result.output
    model = json.loads(report.read_text())
    assert word in model["findings"]["travel"]["summary"]
    assert any(detail == e["detail"] for e in model["findings"]["travel"]["evidence"])
    assert schema_errors(model) == []
    assert digest(path) == before


REFUSED = "Run setup-tool on the central database; satellites and travellers receive the change"


@pytest.mark.parametrize("row", [SATELLITE, TRAVELLER], ids=["satellite", "traveller"])
@pytest.mark.parametrize(
    "mode",
    [
        ["--unattended"],
        ["--unattended", "--fix-overrides", "--superoffice-version", "8.5 R12"],
        ["--dry-run"],
        ["--dry-run", "--detailed-exitcode"],
        [],  # the wizard: asks nothing, confirms nothing
        ["--yes"],
    ],
    ids=["unattended", "unattended-answers", "dry-run", "detailed-exitcode", "wizard", "yes"],
)
def test_every_upgrade_mode_refuses_a_copy_before_any_write(
    tmp_path: Path, row: Row, mode: list[str]
) -> None:
    path = with_work(travel_current=[row]).build(tmp_path / "crm.db")
    before = digest(path)
    report = tmp_path / "report.json"

    result = invoke(
        "upgrade", "--database-url", url(path), *mode, "--report", report, input="y\ny\n"
    )

    assert result.exit_code == 3, result.output
    assert "Apply these changes" not in result.output
    assert REFUSED in result.output or REFUSED in report.read_text()
    model = json.loads(report.read_text())
    assert model["outcome"] == "blocked" and model["exit_code"] == 3
    gate = model["steps"][0]
    assert gate["id"] == "gate" and gate["decision"] == "blocked"
    assert REFUSED in gate["reason"] and f"current_id={row['current_id']}" in gate["reason"]
    assert all(s["decision"] != "change" for s in model["steps"])
    assert any(e["source"] == "travelcurrent" for e in model["findings"]["travel"]["evidence"])
    assert schema_errors(model) == []
    assert digest(path) == before
    assert tables_named(path, "setup_tool") == []


def test_a_copy_is_refused_before_the_version_question(tmp_path: Path) -> None:
    """An undetermined version on a satellite: refused (exit 3) without asking for the version,
    unattended and in the wizard alike."""
    path = with_work(
        travel_current=[SATELLITE],
        product_versions=[product_version(1, "SuperOffice", "CRM", "8.5.7346.1605")],
    ).build(tmp_path / "crm.db")
    before = digest(path)

    unattended = invoke("upgrade", "--database-url", url(path), "--unattended")
    wizard = invoke("upgrade", "--database-url", url(path), input="8.5 R10\ny\n")

    for result in (unattended, wizard):
        assert result.exit_code == 3, result.output
        assert "Which SuperOffice version" not in result.output
        assert "--superoffice-version" not in result.output
    assert digest(path) == before


def test_the_api_refuses_a_copy_and_the_script_is_not_written(tmp_path: Path) -> None:
    path = with_work(travel_current=[TRAVELLER]).build(tmp_path / "crm.db")
    before = digest(path)

    result = upgrade(path, fix_overrides=True)
    planned = plan(path)
    script = tmp_path / "upgrade.sql"
    sql = invoke("upgrade", "--database-url", url(path), "--dry-run", "--report", script)

    assert result.exit_code == ExitCode.BLOCKED and result.run_id is None
    assert planned.blocked and planned.steps[0].decision == "blocked"
    assert [s.reason for s in planned.steps[1:4]] == [
        "Not reached: only the central database is upgraded."
    ] * 3
    assert sql.exit_code == 3 and not script.exists()
    assert digest(path) == before


@pytest.mark.parametrize("row", [SATELLITE, TRAVELLER], ids=["satellite", "traveller"])
@pytest.mark.parametrize("mode", [["--unattended"], []], ids=["unattended", "asking"])
def test_undo_refuses_a_copy_before_any_write(tmp_path: Path, row: Row, mode: list[str]) -> None:
    """A database that was upgraded as the central one, then found to be a copy (restored from
    a satellite, say): undo writes nothing and says why."""
    path = with_work().build(tmp_path / "crm.db")
    assert upgrade(path, fix_overrides=True).exit_code == ExitCode.DONE
    execute(
        path,
        f"UPDATE travelcurrent SET current_id = {row['current_id']}, "
        f"systemlevel = {row['systemlevel']}",
    )
    before = digest(path)

    result = invoke("undo", "--database-url", url(path), *mode, input="y\n")

    assert result.exit_code == 3, result.output
    assert REFUSED in result.output
    assert f"current_id={row['current_id']}" in result.output
    assert "Undo setup-tool's changes" not in result.output  # refused before the question
    assert digest(path) == before


def test_no_travelcurrent_row_is_said_and_treated_as_central(tmp_path: Path) -> None:
    """Said, not silently assumed; a warning, not a refusal: a satellite or travel copy cannot
    work without the row that tells its place in the hierarchy (inferred), so a database without
    one is no copy Travel serves. (Rows with both values NULL: test_travelcurrent_says_...)"""
    path = with_work(travel_current=[]).build(tmp_path / "crm.db")

    found = findings(path)
    result = upgrade(path, fix_overrides=True)

    assert found.travel.role.kind == "undetermined"
    said = [w for w in found.warnings if "not recorded" in w]
    assert said and "treated as central" in said[0]
    assert result.exit_code == ExitCode.DONE
    assert any("not recorded" in w for w in result.plan.steps[0].warnings)  # in the report
    assert dump(path, "appointment")[0]["cautionWarning"] == 1  # the run went ahead


def test_the_central_database_upgrades_as_before(tmp_path: Path) -> None:
    path = with_work().build(tmp_path / "crm.db")

    found = findings(path)

    assert found.travel.role.kind == "central"
    assert found.travel.summary.startswith("This is the central database")
    assert upgrade(path, fix_overrides=True).exit_code == ExitCode.DONE


# --- 2. synchronizer evidence and its strength -------------------------------------------------


def only(evidence: list[Any], source: str) -> Any:
    matching = [e for e in evidence if e.source == source]
    assert len(matching) == 1, evidence
    return matching[0]


def test_a_product_version_row_is_inferred_evidence(tmp_path: Path) -> None:
    path = Scenario(product_versions=[SUPEROFFICE_8_5_R10, SYNCHRONIZER_3_2_284]).build(
        tmp_path / "crm.db"
    )

    sync = findings(path).synchronizer

    row = only(sync.evidence, "ProductVersion")
    assert row.strength == "inferred"
    assert "[inferred: what is written in ProductVersion is not published" in row.detail
    assert sync.decided_by == (
        "In use: decided by ProductVersion evidence, inferred (no stronger evidence exists); "
        "version 3.2.284 from ProductVersion evidence, inferred."
    )


def test_host_traces_carry_their_strength_and_the_strongest_decides(tmp_path: Path) -> None:
    path = Scenario(product_versions=[SUPEROFFICE_8_5_R10]).build(tmp_path / "crm.db")
    probe = FakeProbe(
        [
            HostTrace("registry", r"HKLM\...\Uninstall\{X}: InfoBridge Synchronizer", "3.2.300"),
            HostTrace("service", "service IBSync runs InfoBridge.Synchronizer.Service.exe"),
            HostTrace("folder", f"install folder {INSTALL_FOLDER} exists"),
        ]
    )

    sync = findings(path, probe=probe).synchronizer

    assert [(e.source, e.strength) for e in sync.evidence[:3]] == [
        ("registry", "inferred"),
        ("service", "documented"),
        ("folder", "documented"),
    ]
    assert "[inferred: the uninstall entry's DisplayName/DisplayVersion are not published" in (
        sync.evidence[0].detail
    )
    assert "[documented: InfoBridge.Synchronizer.Service.exe" in sync.evidence[1].detail
    assert sync.decided_by == (
        "In use: decided by service evidence, documented; "
        "version 3.2.300 from registry evidence, inferred."
    )


@pytest.mark.parametrize(
    ("licences", "strength", "what"),
    [
        (["superoffice.exchange-sync"], "documented", "Exchange synchronizer"),
        (["superoffice.nebula"], "observed in the field", "InfoBridge SuperOffice Synchronizer"),
        (["nebula"], "observed in the field", "user licence"),  # owner SuperOffice + module
    ],
)
def test_each_synchronizer_licence_is_read_with_its_strength(
    tmp_path: Path, licences: list[str], strength: str, what: str
) -> None:
    path = Scenario(
        product_versions=[SUPEROFFICE_8_5_R10], licences=["superoffice.web", *licences]
    ).build(tmp_path / "crm.db")

    sync = findings(path).synchronizer

    licence = only(sync.evidence, "ModuleLicense")
    assert sync.licensed is True and sync.in_use is None and sync.status == "licensed_only"
    assert licence.strength == strength and what in licence.detail
    assert f"[{strength}:" in licence.detail and "not proof of use" in licence.detail
    assert sync.decided_by.startswith("Not decided: only the licence (superoffice.")
    # Unattended, a licence alone is a question nobody answers: exit 2 naming the options.
    result = invoke("upgrade", "--database-url", url(path), "--unattended")
    assert result.exit_code == 2, result.output
    assert "--no-synchronizer" in result.output


def test_both_licences_are_two_pieces_of_evidence(tmp_path: Path) -> None:
    path = Scenario(
        product_versions=[SUPEROFFICE_8_5_R10],
        licences=["superoffice.nebula", "superoffice.exchange-sync"],
    ).build(tmp_path / "crm.db")

    sync = findings(path).synchronizer

    strengths = [e.strength for e in sync.evidence if e.source == "ModuleLicense"]
    assert strengths == ["observed in the field", "documented"]
    assert "superoffice.nebula, superoffice.exchange-sync" in sync.decided_by


def test_the_operator_decides_and_says_so(tmp_path: Path) -> None:
    path = Scenario(licences=["superoffice.nebula"]).build(tmp_path / "crm.db")

    told = findings(path, OperatorAnswers(synchronizer_version="3.2.292")).synchronizer
    unknown = findings(path, OperatorAnswers(synchronizer_version="unknown")).synchronizer
    absent = findings(path, OperatorAnswers(no_synchronizer=True)).synchronizer

    assert told.evidence[0].strength == "operator"
    assert (
        told.decided_by == "The operator's --synchronizer-version '3.2.292' decided: in use, "
        "version 3.2.292."
    )
    assert unknown.decided_by.startswith("The operator's --synchronizer-version 'unknown' decided")
    assert "version 3.2.284 from ProductVersion evidence, inferred" in unknown.decided_by
    assert absent.decided_by.startswith("The operator's --no-synchronizer decided: not in use")


def test_nothing_found_says_why_not(tmp_path: Path) -> None:
    path = Scenario(product_versions=[SUPEROFFICE_8_5_R10]).build(tmp_path / "crm.db")

    sync = findings(path).synchronizer

    assert sync.in_use is False
    assert sync.decided_by.startswith("Not in use: no trace in the database or on this host")


@pytest.mark.parametrize("fmt", ["json", "text", "md", "html"])
def test_the_report_shows_strength_and_which_finding_decided(tmp_path: Path, fmt: str) -> None:
    path = Scenario(licences=["superoffice.nebula"]).build(tmp_path / "crm.db")
    report = tmp_path / f"report.{fmt}"

    result = invoke(
        "upgrade", "--database-url", url(path), "--dry-run", "--report", report, "--format", fmt
    )

    assert result.exit_code == 0, result.output
    text = report.read_text()
    decided = "decided by ProductVersion evidence, inferred"
    if fmt == "json":
        model = json.loads(text)
        sync = model["findings"]["synchronizer"]
        assert decided in sync["decided_by"] and decided in sync["summary"]
        assert [e.get("strength") for e in sync["evidence"]] == [
            "inferred",
            "observed in the field",
        ]
        assert schema_errors(model) == []
    else:
        flat = " ".join(text.split())  # the text report wraps lines
        assert decided in flat
        assert "[observed in the field:" in flat and "[inferred:" in flat


# --- 3. overrides as maxlevel allows them ------------------------------------------------------


def row(level: int, maxlevel: int, row_id: int = 9, owner: int = 0) -> PreferenceRow:
    return PreferenceRow(
        row_id, level, maxlevel, owner, "Mail", "DiarySynchronizerActive", "0", None, None, 0
    )


@pytest.mark.parametrize("system_maxlevel", [0, 1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("level", [3, 4, 5])
def test_maxlevel_readings_at_every_level(system_maxlevel: int, level: int) -> None:
    system = row(2, system_maxlevel, row_id=1)
    override = row(level, 5, owner=7)

    limit = override_limit([system, override])

    # 0 is PreferenceLevel "Undefined": it states no limit.
    honoured = system_maxlevel == 0 or level <= system_maxlevel
    assert limit.allows(override) is honoured
    reading = limit.reading(override)
    if system_maxlevel == 0:
        assert reading == "counted as an override (no system-wide row states a maxlevel)"
    elif honoured:
        assert reading == f"honoured (maxlevel {system_maxlevel} of row 1 (system level 2))"
    else:
        assert reading == (
            f"present but not honoured (maxlevel {system_maxlevel} of row 1 (system level 2))"
        )


def test_the_newest_system_row_then_the_hard_default_sets_the_limit() -> None:
    override = row(5, 5)
    assert override_limit([row(1, 5, 1), row(2, 2, 3), row(2, 5, 2), override]).maxlevel == 2
    assert override_limit([row(1, 4, 1), override]).maxlevel == 4
    assert override_limit([override]).maxlevel is None
    # A row below its own maxlevel is not honoured either, whatever the system row allows.
    assert not override_limit([row(2, 5, 1)]).allows(row(5, 3))
    assert "its own maxlevel 3 is below its level 5" in override_limit([]).reading(row(5, 3))


def test_rows_superoffice_does_not_honour_are_reported_not_exit_4(tmp_path: Path) -> None:
    path = with_work(
        preferences=[
            preference(1, 2, "1", maxlevel=2),  # on, overrides not allowed below the system
            preference(2, 5, "0", owner=2),  # off, but level 5 > maxlevel 2
            preference(3, 4, "No", owner=3),
        ]
    ).build(tmp_path / "crm.db")

    found = findings(path)
    fixed = upgrade(path, fix_overrides=True)

    assert [r.id for r in found.preference.not_honoured] == [3, 2]  # group, then individual
    assert found.preference.overrides_off == []
    assert "present but not honoured (maxlevel 2 of row 1 (system level 2))" in (
        "\n".join(e.detail for e in found.preference.evidence)
    )
    assert any("SuperOffice does not honour them" in w for w in found.warnings)
    overrides = next(s for s in fixed.plan.steps if s.id == "overrides")
    assert overrides.decision == "done" and not overrides.action_required
    assert overrides.reason.startswith("No row SuperOffice honours switches it off: 2 row(s)")
    assert overrides.warnings[0].startswith("Present but not honoured, left as they are: row 3")
    assert "row 2 (individual, owner 2) = '0'" in overrides.warnings[0]
    assert fixed.exit_code == ExitCode.DONE  # not 4: nothing SuperOffice applies is off
    assert [r["prefvalue"] for r in pref_rows(path)] == ["1", "0", "No"]  # left as they are


def test_honoured_rows_still_need_action(tmp_path: Path) -> None:
    path = with_work(
        preferences=[preference(1, 2, "1", maxlevel=5), preference(2, 5, "0", owner=2)]
    ).build(tmp_path / "crm.db")

    left = upgrade(path)

    assert left.exit_code == ExitCode.ACTION_REQUIRED
    assert upgrade(path, fix_overrides=True).exit_code == ExitCode.DONE
    assert [r["prefvalue"] for r in pref_rows(path)] == ["1", "1"]


@pytest.mark.parametrize(
    ("rows", "expected", "exit_code"),
    [
        # No row at all: a Global preference, set at the system level only.
        ([], GLOBAL_MAXLEVEL, ExitCode.DONE),
        # The hard default's limit, so the run changes which overrides count in no way.
        (
            [preference(1, 1, "0", maxlevel=5), preference(2, 5, "0", owner=2)],
            5,
            ExitCode.ACTION_REQUIRED,
        ),
        ([preference(1, 1, "0", maxlevel=3), preference(2, 5, "0", owner=2)], 3, ExitCode.DONE),
        # Only an individual row with maxlevel 5: not copied; once the row is in, SuperOffice
        # no longer honours the individual row, and the plan says so instead of exit 4.
        ([preference(2, 5, "0", owner=2, maxlevel=5)], GLOBAL_MAXLEVEL, ExitCode.DONE),
    ],
    ids=["nothing", "hard-default-5", "hard-default-3", "individual-only"],
)
def test_an_inserted_system_row_takes_maxlevel_from_the_reading(
    tmp_path: Path, rows: list[Row], expected: int, exit_code: ExitCode
) -> None:
    path = with_work(preferences=rows).build(tmp_path / "crm.db")

    dry = plan(path)
    result = upgrade(path)

    insert = next(s for s in dry.steps if s.id == "preference")
    assert f"with maxlevel {expected} (" in insert.reason
    inserted = [r for r in pref_rows(path) if r["deflevel"] == 2]
    assert [r["maxlevel"] for r in inserted] == [expected]
    assert result.exit_code == exit_code
    overrides = next(s for s in dry.steps if s.id == "overrides")
    if rows and exit_code == ExitCode.DONE:  # the row is there, SuperOffice no longer honours it
        assert "present but not honoured once this run is done" in overrides.reason
        assert [r["prefvalue"] for r in pref_rows(path) if r["deflevel"] == 5] == ["0"]


# --- 4. a missing system row -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "applies"),
    [
        ("8.5 R10", "this database is 8.5 R10, the release before the one that note describes"),
        ("8.5 R11", "this database is 8.5 R11, a version that note covers"),
        ("10.2.6.1269", "this database is 10.2.6.1269, a version that note covers"),
        ("8.5.7346.1605", "this database's version is undetermined"),
        ("8.1 R03", "this database is 8.1 R03, older than both"),
    ],
)
def test_no_row_defaults_per_version(tmp_path: Path, version: str, applies: str) -> None:
    path = with_work(
        preferences=[],
        product_versions=[
            product_version(1, "SuperOffice", "CRM", version),
            SYNCHRONIZER_3_2_284,
        ],
    ).build(tmp_path / "crm.db")

    pref = findings(path).preference
    text = "\n".join(e.detail for e in pref.evidence)

    assert "SuperOffice's 8.5 R11 release notes say Diary Synchronizer Active is on by default" in (
        text
    )
    assert applies in text
    assert "InfoBridge tells new synchronizer customers to switch Diary Synchronizer Active on" in (
        text
    )
    assert [e.strength for e in pref.evidence if e.source in ("release notes", "InfoBridge")] == [
        "documented",
        "documented",
    ]
    assert pref.no_row_reading is not None
    assert pref.no_row_reading.startswith("Reading used: SPEC's: no row means not on")
    assert not pref.default_on_by_operator


def test_a_hard_default_row_is_a_row(tmp_path: Path) -> None:
    path = with_work(preferences=[preference(1, 1, "0")]).build(tmp_path / "crm.db")

    pref = findings(path, OperatorAnswers(preference_on_by_default=True)).preference

    assert pref.no_row_reading is None and not pref.default_on_by_operator


def test_spec_reading_marks_until_this_run(tmp_path: Path) -> None:
    path = with_work(preferences=[]).build(tmp_path / "crm.db")

    result = upgrade(path)

    assert result.exit_code == ExitCode.DONE
    assert [r["appointment_id"] for r in dump(path, "appointment") if r["cautionWarning"] == 1] == [
        100,
        101,
    ]


def test_the_operator_reading_empties_the_window(tmp_path: Path) -> None:
    path = with_work(preferences=[]).build(tmp_path / "crm.db")
    answers = OperatorAnswers(preference_on_by_default=True)

    found = findings(path, answers)
    result = upgrade(path, answers)

    assert found.preference.default_on_by_operator
    assert found.preference.no_row_reading is not None
    assert "the operator's (--preference-on-by-default)" in found.preference.no_row_reading
    assert found.invites.to_mark == 0 and found.invites.meetings == 1
    assert found.invites.nothing_to_mark_because is not None
    assert "--preference-on-by-default" in found.invites.nothing_to_mark_because
    window = found.invites.window
    assert window is not None and window.start == window.until == SINCE
    model = findings_model(found)
    assert "operator" in model["invites"]["window"]["until_evidence"]
    assert result.exit_code == ExitCode.DONE
    assert all(r["cautionWarning"] == 0 for r in dump(path, "appointment"))  # nothing marked
    assert [r["prefvalue"] for r in pref_rows(path)] == ["1"]  # and the row says on now


def test_the_operator_reading_without_invites_since_is_still_empty(tmp_path: Path) -> None:
    path = with_work(
        preferences=[],
        product_versions=[
            product_version(
                1, "SuperOffice", "CRM", "11.1.447", registered=BASE.replace(year=1900)
            ),
            SYNCHRONIZER_3_2_284,
        ],
        appointments=[*invite_meeting(100, BASE, person=7, send_email=1)],
    ).build(tmp_path / "crm.db")

    found = findings(path, OperatorAnswers(preference_on_by_default=True))

    assert found.invites_since.moment is None
    assert found.invites.meetings == 1 and found.invites.to_mark == 0


def test_the_operator_reading_is_not_used_where_a_row_exists(tmp_path: Path) -> None:
    path = with_work(preferences=[preference(1, 2, "0")]).build(tmp_path / "crm.db")

    found = findings(path, OperatorAnswers(preference_on_by_default=True))

    assert not found.preference.default_on_by_operator
    assert any("--preference-on-by-default is not used" in w for w in found.warnings)
    assert found.invites.to_mark == 2


def test_the_option_reaches_detection_from_the_command_line(tmp_path: Path) -> None:
    path = with_work(preferences=[]).build(tmp_path / "crm.db")
    report = tmp_path / "detect.json"
    answers = tmp_path / "answers.toml"
    answers.write_text("preference-on-by-default = true\n", encoding="utf-8")

    by_option = invoke(
        "detect",
        "--database-url",
        url(path),
        "--preference-on-by-default",
        "--report",
        report,
        "--format",
        "json",
    )
    model = json.loads(report.read_text())
    by_file = invoke(
        "upgrade",
        "--database-url",
        url(path),
        "--config",
        answers,
        "--dry-run",
        "--report",
        report,
        "--format",
        "json",
    )

    assert by_option.exit_code == 0, by_option.output
    assert model["findings"]["invites"]["to_mark"] == 0
    assert any(
        "--preference-on-by-default" in e["detail"]
        for e in model["findings"]["preference"]["evidence"]
    )
    assert by_file.exit_code == 0, by_file.output
    assert json.loads(report.read_text())["findings"]["invites"]["to_mark"] == 0


# --- 5. the 8.5 R10 note -----------------------------------------------------------------------


def test_the_r10_note_in_the_findings_and_the_gate(tmp_path: Path) -> None:
    path = with_work().build(tmp_path / "crm.db")

    dry = plan(path)

    note = invites_documented_note(parse_superoffice_version("8.5 R10"))
    assert note is not None and "8.5 R11" in note and "SOD release-notes/8.5/index.md" in note
    assert note in dry.findings.warnings
    assert note in [e.detail for e in dry.findings.superoffice.evidence]
    assert note in dry.steps[0].reason and dry.steps[0].decision == "done"


@pytest.mark.parametrize("version", ["8.5 R11", "8.5 R17", "9.2.7935.930", "8.5 R09"])
def test_no_r10_note_for_other_versions(tmp_path: Path, version: str) -> None:
    path = with_work(
        product_versions=[product_version(1, "SuperOffice", "CRM", version), SYNCHRONIZER_3_2_284]
    ).build(tmp_path / "crm.db")

    found = findings(path)

    assert not any("8.5 R11 (SOD release-notes" in w for w in found.warnings)
    assert all(
        e.source != "release notes" or "No system-wide row" in e.detail
        for e in found.superoffice.evidence
    )


def test_the_r10_note_reaches_the_report(tmp_path: Path) -> None:
    path = with_work().build(tmp_path / "crm.db")
    report = tmp_path / "plan.json"

    result = invoke("upgrade", "--database-url", url(path), "--dry-run", "--report", report)

    assert result.exit_code == 0, result.output
    model = json.loads(report.read_text())
    assert any(
        "SuperOffice's release notes put incoming and outgoing invitations in 8.5 R11" in str(w)
        for w in model["warnings"]
    )
    assert schema_errors(model) == []
    # The meetings are still marked: the gate stays at R10 (the mission).
    assert model["findings"]["invites"]["to_mark"] == 2
