"""Detection: every finding and the evidence that produced it, on real SQLite databases (and,
for the invite counts and ModelData, on a real PostgreSQL server)."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from invite_oracle import invites_since as oracle_invites_since
from invite_oracle import marking_until, rows_to_mark
from scenarios import (
    BASE,
    NEVER,
    SUPEROFFICE_8_5_R10,
    SYNCHRONIZER_3_2_284,
    FakeProbe,
    Row,
    Scenario,
    Target,
    appointment,
    database_rows,
    execute,
    findings,
    invitation,
    preference,
    product_version,
    query,
    travel_preference,
)

from setup_tool.detect import OperatorAnswers
from setup_tool.findings import (
    EXTERNAL_ROWS,
    EXTERNALLY_OWNED_ROWS,
    OTHER_WARNINGS,
    OUTSIDE_WINDOW,
    Evidence,
    Findings,
    InviteCounts,
)
from setup_tool.host_probe import (
    INSTALL_FOLDER,
    SERVICES_KEY,
    UNINSTALL_KEYS,
    HostTrace,
    NoHostProbe,
    WindowsHostProbe,
)
from setup_tool.model_data import INVITATION_STEPS, SUPEROFFICE_STEP_45, encode_model_data
from setup_tool.report_model import findings_model


def sources(evidence: list) -> list[str]:  # type: ignore[type-arg]
    return [e.source for e in evidence]


def details(evidence: list) -> str:  # type: ignore[type-arg]
    return "\n".join(e.detail for e in evidence)


# --- SuperOffice version ----------------------------------------------------------------------


def test_superoffice_newest_parseable_product_version_wins(tmp_path: Path) -> None:
    path = Scenario(
        product_versions=[
            product_version(1, "SuperOffice", "CRM", "8.1 R03"),
            product_version(2, "SuperOffice", "CRM", "SuperOffice G8 8.5 R17"),
            product_version(3, "SuperOffice", "CRM", "8.5 R10"),
            product_version(4, "SuperOffice", "CRM", "next week's build"),
        ]
    ).build(tmp_path / "crm.db")

    found = findings(path).superoffice

    assert found.version is not None and found.version.label() == "8.5 R17"
    assert found.status == "ok"
    assert sources(found.evidence) == ["ProductVersion"] * 4
    text = details(found.evidence)
    assert "row 1:" in text and "version='8.1 R03' -> 8.1 R03" in text
    assert "row 2:" in text and "-> 8.5 R17" in text
    unreadable = [e.detail for e in found.evidence if "row 4:" in e.detail]
    assert unreadable == [
        "row 4: ownerName='SuperOffice', codeName='CRM', "
        'version="next week\'s build" -> not a version string this tool can '
        "read"
    ]


def test_superoffice_from_database_model_only(tmp_path: Path) -> None:
    path = Scenario(product_versions=[SYNCHRONIZER_3_2_284], model_versions=["10.2.6.1269"]).build(
        tmp_path / "crm.db"
    )

    found = findings(path).superoffice

    assert found.version is not None and found.version.label() == "10.2.6.1269"
    assert found.status == "ok"
    assert sources(found.evidence) == ["DatabaseModel"]
    assert "ModelVersion='10.2.6.1269'" in found.evidence[0].detail


def test_superoffice_operator_answer_overrides_the_database(tmp_path: Path) -> None:
    path = Scenario(product_versions=[product_version(1, "SuperOffice", "CRM", "8.1 R03")]).build(
        tmp_path / "crm.db"
    )
    assert findings(path).superoffice.status == "too_old"

    found = findings(path, OperatorAnswers(superoffice_version="8.5 R12"))

    assert found.superoffice.version is not None
    assert found.superoffice.version.label() == "8.5 R12"
    assert found.superoffice.status == "ok"
    assert found.superoffice.evidence[0].source == "operator"
    assert "8.5 R12" in found.superoffice.evidence[0].detail
    # The database's own row stays listed, for comparison.
    assert "8.1 R03" in details(found.superoffice.evidence[1:])
    assert any("given by the operator" in w for w in found.warnings)


def test_superoffice_8_5_build_only_is_undetermined_until_a_known_builds_file_says(
    tmp_path: Path,
) -> None:
    path = Scenario(
        product_versions=[product_version(1, "SuperOffice", "CRM", "8.5.7346.1605")]
    ).build(tmp_path / "crm.db")

    found = findings(path).superoffice
    assert found.status == "undetermined"
    assert found.version is not None and found.version.release is None
    assert "release unknown" in found.version.label()

    builds = tmp_path / "builds.toml"
    builds.write_text('[builds]\n"8.5.7346.1605" = "R11"\n', encoding="utf-8")
    resolved = findings(path, OperatorAnswers(known_builds_file=builds)).superoffice
    assert resolved.status == "ok"
    assert resolved.version is not None and resolved.version.release == 11
    assert "-> 8.5 R11" in details(resolved.evidence)

    too_old = tmp_path / "old.toml"
    too_old.write_text('[builds]\n"8.5.7346.1605" = 9\n', encoding="utf-8")
    assert (
        findings(path, OperatorAnswers(known_builds_file=too_old)).superoffice.status == "too_old"
    )


def test_superoffice_without_any_version_row(tmp_path: Path) -> None:
    path = Scenario(product_versions=[]).build(tmp_path / "crm.db")

    found = findings(path).superoffice

    assert found.version is None and found.status == "undetermined"
    assert "no SuperOffice row and no DatabaseModel row" in details(found.evidence)


# --- the synchronizer -------------------------------------------------------------------------


def test_synchronizer_from_product_version(tmp_path: Path) -> None:
    path = Scenario(
        product_versions=[
            SUPEROFFICE_8_5_R10,
            product_version(2, "InfoBridge", "Synchronizer", "3.2.292"),
        ]
    ).build(tmp_path / "crm.db")

    sync = findings(path).synchronizer

    assert sync.in_use is True and sync.status == "ok"
    assert sync.version is not None and sync.version.label() == "3.2.292"
    assert sources(sync.evidence)[0] == "ProductVersion"
    assert "row 2: ownerName='InfoBridge'" in sync.evidence[0].detail
    assert sync.licensed is False


@pytest.mark.parametrize(
    ("owner", "code"), [("InfoBridge", "Mail Archive"), ("Contoso", "Synchronizer")]
)
def test_other_products_are_not_the_infobridge_synchronizer(
    tmp_path: Path, owner: str, code: str
) -> None:
    path = Scenario(
        product_versions=[
            SUPEROFFICE_8_5_R10,
            product_version(2, owner, code, "3.2.292"),
        ]
    ).build(tmp_path / "crm.db")

    assert findings(path).synchronizer.in_use is False


def test_synchronizer_from_host_traces(tmp_path: Path) -> None:
    path = Scenario(product_versions=[SUPEROFFICE_8_5_R10]).build(tmp_path / "crm.db")
    probe = FakeProbe(
        [
            HostTrace(
                "registry", r"HKLM\...\Uninstall\{X}: InfoBridge Synchronizer 3.2.314", "3.2.314"
            ),
            HostTrace("service", "service IBSync runs InfoBridge.Synchronizer.Service.exe"),
        ]
    )

    sync = findings(path, probe=probe).synchronizer

    assert sync.in_use is True and sync.status == "ok"
    assert sync.version is not None and sync.version.label() == "3.2.314"
    assert sources(sync.evidence)[:2] == ["registry", "service"]

    folder_only = FakeProbe([HostTrace("folder", f"install folder {INSTALL_FOLDER} exists")])
    sync = findings(path, probe=folder_only).synchronizer
    assert sync.in_use is True and sync.version is None and sync.status == "unknown_version"


def test_synchronizer_newest_of_database_and_host(tmp_path: Path) -> None:
    path = Scenario().build(tmp_path / "crm.db")  # ProductVersion says 3.2.284
    probe = FakeProbe(
        [
            HostTrace("registry", "InfoBridge Synchronizer 3.2.283", "3.2.283"),
            HostTrace("registry", "InfoBridge Synchronizer 3.2.300", "3.2.300"),
        ]
    )

    sync = findings(path, probe=probe).synchronizer

    assert sync.version is not None and sync.version.label() == "3.2.300"
    assert sources(sync.evidence)[:3] == ["ProductVersion", "registry", "registry"]


def test_licence_only_leaves_the_question_open(tmp_path: Path) -> None:
    path = Scenario(
        product_versions=[SUPEROFFICE_8_5_R10],
        licences=["superoffice.web", "superoffice.exchange-sync"],
    ).build(tmp_path / "crm.db")

    sync = findings(path).synchronizer

    assert sync.in_use is None and sync.status == "licensed_only" and sync.licensed is True
    assert sources(sync.evidence) == ["host", "ModuleLicense"]
    assert "no synchronizer found" in sync.evidence[0].detail
    assert "row 2: licence module superoffice.exchange-sync" in sync.evidence[1].detail
    assert "not proof of use" in sync.evidence[1].detail


def test_licence_named_as_owner_dot_module(tmp_path: Path) -> None:
    # ModuleOwner 'SuperOffice' + ModuleLicense 'exchange-sync' = superoffice.exchange-sync.
    path = Scenario(product_versions=[SUPEROFFICE_8_5_R10], licences=["exchange-sync"]).build(
        tmp_path / "crm.db"
    )

    assert findings(path).synchronizer.status == "licensed_only"


def test_nothing_says_synchronizer(tmp_path: Path) -> None:
    path = Scenario(product_versions=[SUPEROFFICE_8_5_R10], licences=["superoffice.web"]).build(
        tmp_path / "crm.db"
    )

    sync = findings(path, probe=NoHostProbe("switched off")).synchronizer

    assert sync.in_use is False and sync.status == "absent" and sync.licensed is False
    assert "host not inspected (switched off): no synchronizer found" in details(sync.evidence)


def test_operator_no_synchronizer_overrides_the_database(tmp_path: Path) -> None:
    path = Scenario(licences=["superoffice.exchange-sync"]).build(tmp_path / "crm.db")

    sync = findings(path, OperatorAnswers(no_synchronizer=True)).synchronizer

    assert sync.in_use is False and sync.status == "absent" and sync.version is None
    assert sync.evidence[0].source == "operator"
    assert sync.evidence[0].detail == "--no-synchronizer"
    assert "ProductVersion" in sources(sync.evidence)  # what the database said stays listed


def test_operator_synchronizer_version(tmp_path: Path) -> None:
    path = Scenario().build(tmp_path / "crm.db")  # ProductVersion says 3.2.284

    sync = findings(path, OperatorAnswers(synchronizer_version="3.2.283")).synchronizer

    assert sync.in_use is True and sync.status == "too_old"
    assert sync.version is not None and sync.version.label() == "3.2.283"
    assert sync.evidence[0].source == "operator"
    assert "--synchronizer-version '3.2.283'" in sync.evidence[0].detail


def test_operator_synchronizer_unknown(tmp_path: Path) -> None:
    path = Scenario(
        product_versions=[SUPEROFFICE_8_5_R10], licences=["superoffice.exchange-sync"]
    ).build(tmp_path / "crm.db")

    sync = findings(path, OperatorAnswers(synchronizer_version="unknown")).synchronizer

    assert sync.in_use is True and sync.version is None and sync.status == "unknown_version"
    assert sync.evidence[0].source == "operator"


# --- WindowsHostProbe reading a registry ------------------------------------------------------


class DictRegistry:
    """A read-only registry view backed by a dict: {key path: {value name: value}}."""

    def __init__(self, keys: dict[str, dict[str, str]]) -> None:
        self.keys = keys

    def subkeys(self, path: str) -> list[str]:
        prefix = path + "\\"
        return sorted({k[len(prefix) :].split("\\")[0] for k in self.keys if k.startswith(prefix)})

    def values(self, path: str) -> dict[str, str]:
        return dict(self.keys.get(path, {}))


def test_windows_probe_reads_uninstall_entries_services_and_folder() -> None:
    uninstall, wow = UNINSTALL_KEYS
    exe = rf"{INSTALL_FOLDER}\InfoBridge.Synchronizer.Service.exe"
    registry = DictRegistry(
        {
            rf"{uninstall}\{{A1}}": {"DisplayName": "Microsoft Office", "DisplayVersion": "16.0"},
            rf"{uninstall}\{{B2}}": {
                "DisplayName": "InfoBridge Outlook Add-in",
                "DisplayVersion": "9",
            },
            rf"{wow}\{{C3}}": {
                "DisplayName": "InfoBridge Synchronizer",
                "DisplayVersion": "3.2.290",
            },
            rf"{SERVICES_KEY}\IBSync1": {
                "DisplayName": "InfoBridge Synchronizer Service",
                "ImagePath": f'"{exe}" -rank 1',
            },
            rf"{SERVICES_KEY}\IBSync2": {"ImagePath": f'"{exe.upper()}" -rank 2'},
            rf"{SERVICES_KEY}\Spooler": {"ImagePath": r"C:\Windows\System32\spoolsv.exe"},
        }
    )
    probe = WindowsHostProbe(registry, lambda folder: folder == str(INSTALL_FOLDER))

    traces = probe.synchronizer_traces()

    assert [t.kind for t in traces] == ["registry", "service", "service", "folder"]
    assert traces[0].version == "3.2.290"
    assert traces[0].detail == rf"HKLM\{wow}\{{C3}}: InfoBridge Synchronizer 3.2.290"
    assert "IBSync1 (InfoBridge Synchronizer Service)" in traces[1].detail
    assert "IBSync2 (IBSync2)" in traces[2].detail
    assert all(t.version is None for t in traces[1:])


def test_windows_probe_on_a_clean_machine_finds_nothing(tmp_path: Path) -> None:
    probe = WindowsHostProbe(
        DictRegistry(
            {
                rf"{UNINSTALL_KEYS[0]}\{{A1}}": {"DisplayName": "Synchronizer for something else"},
                rf"{SERVICES_KEY}\Spooler": {"ImagePath": r"C:\Windows\System32\spoolsv.exe"},
            }
        ),
        lambda folder: False,
    )
    assert probe.synchronizer_traces() == []

    path = Scenario(product_versions=[SUPEROFFICE_8_5_R10]).build(tmp_path / "crm.db")
    sync = findings(path, probe=probe).synchronizer
    assert sync.in_use is False
    assert (
        "registry, services and install folder of this machine: no synchronizer found"
        in details(sync.evidence)
    )


def test_windows_probe_feeds_detection(tmp_path: Path) -> None:
    registry = DictRegistry(
        {
            rf"{UNINSTALL_KEYS[0]}\IB": {
                "DisplayName": "InfoBridge Exchange Online Synchronizer",
                "DisplayVersion": "3.2.283",
            }
        }
    )
    path = Scenario(product_versions=[SUPEROFFICE_8_5_R10]).build(tmp_path / "crm.db")

    sync = findings(path, probe=WindowsHostProbe(registry, lambda folder: False)).synchronizer

    assert sync.in_use is True and sync.status == "too_old"
    assert sync.evidence[0].source == "registry"


# --- Diary Synchronizer Active ----------------------------------------------------------------


def test_preference_rows_at_every_level(tmp_path: Path) -> None:
    path = Scenario(
        preferences=[
            preference(1, 1, "0"),
            preference(2, 2, "1"),
            preference(3, 3, "0"),
            preference(4, 4, "1", owner=2),
            preference(5, 5, "0", owner=7),
            preference(6, 5, "1", owner=8),
            preference(7, 2, "0", section="Mail", key="SomethingElse"),
        ]
    ).build(tmp_path / "crm.db")

    pref = findings(path).preference

    assert [r.id for r in pref.rows] == [1, 2, 3, 4, 5, 6]
    assert [r.id for r in pref.system] == [2]
    assert [r.id for r in pref.overrides] == [3, 4, 5, 6]
    assert [r.id for r in pref.overrides_off] == [3, 5]
    assert pref.effective is True and pref.effective_label == "on"
    assert pref.rows[4].level_name == "individual" and pref.rows[4].owner_id == 7
    assert (
        "UserPreference row 5: Mail/DiarySynchronizerActive = '0' (individual level 5, "
        "owner 7)" in details(pref.evidence)
    )


def test_preference_effective_value_sources(tmp_path: Path) -> None:
    hard_default = Scenario(preferences=[preference(1, 1, "1"), preference(2, 5, "0", owner=3)])
    pref = findings(hard_default.build(tmp_path / "a.db")).preference
    assert pref.system == [] and pref.effective is True  # the hard default, not the override

    duplicates = Scenario(preferences=[preference(4, 2, "1"), preference(9, 2, "0")])
    pref = findings(duplicates.build(tmp_path / "b.db")).preference
    assert [r.id for r in pref.system] == [4, 9] and pref.effective is False  # newest id wins

    nothing = findings(Scenario().build(tmp_path / "c.db")).preference
    assert nothing.rows == [] and nothing.effective is None and nothing.effective_label == "unset"
    assert "no Mail/DiarySynchronizerActive row at any level" in details(nothing.evidence)


def test_preference_names_are_matched_case_insensitively(tmp_path: Path) -> None:
    path = Scenario(
        preferences=[preference(3, 2, "1", section="MAIL", key="diarysynchronizeractive")]
    ).build(tmp_path / "crm.db")

    assert findings(path).preference.effective is True


@pytest.mark.parametrize(
    ("own", "others", "expected", "source"),
    [
        (["1", "0"], ["True"] * 5, ("1", "0"), "its own rows"),
        (["False"], ["1"] * 5, ("True", "False"), "its own rows"),
        (["No", "Yes", "No"], [], ("Yes", "No"), "its own rows"),
        (["TRUE", "FALSE"], [], ("TRUE", "FALSE"), "its own rows"),
        ([], ["yes", "no", "no", "1"], ("yes", "no"), "the database's Bool preferences"),
        ([], ["True", "False", "60"], ("True", "False"), "the database's Bool preferences"),
        ([], ["60", "abc"], ("1", "0"), "the database's Bool preferences"),
        (["maybe"], ["Yes"], ("Yes", "No"), "the database's Bool preferences"),
    ],
)
def test_bool_encoding(
    tmp_path: Path, own: list[str], others: list[str], expected: tuple[str, str], source: str
) -> None:
    rows = [preference(i + 1, 5, value, owner=i + 1) for i, value in enumerate(own)]
    rows += [
        preference(100 + i, 2, value, section="Diary", key=f"Setting{i}")
        for i, value in enumerate(others)
    ]
    path = Scenario(preferences=rows).build(tmp_path / "crm.db")

    pref = findings(path).preference

    assert (pref.encoding.on, pref.encoding.off) == expected
    assert f"Bool values written as {expected[0]}/{expected[1]} ({source})" in details(
        pref.evidence
    )


# --- Travel -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "enabled"),
    [
        ([travel_preference(1, True)], True),
        ([travel_preference(1, False)], False),
        (
            [
                preference(1, 1, "Yes", section="Travel", key="EnableTravel"),
                preference(2, 2, "No", section="Travel", key="EnableTravel"),
            ],
            False,
        ),
        ([preference(1, 1, "1", section="Travel", key="EnableTravel")], True),
        ([], False),
    ],
)
def test_travel(tmp_path: Path, rows: list[dict], enabled: bool) -> None:  # type: ignore[type-arg]
    path = Scenario(preferences=rows).build(tmp_path / "crm.db")

    travel = findings(path).travel

    assert travel.enabled is enabled
    assert "travelcurrent" in sources(travel.evidence)
    assert "current_id=0, systemlevel=10" in details(travel.evidence)
    if not rows:
        assert "no Travel/EnableTravel row: Travel is off" in details(travel.evidence)


# --- invite counts ----------------------------------------------------------------------------

NOW = BASE + timedelta(days=60)  # when detection runs in these scenarios
SINCE = SUPEROFFICE_8_5_R10["registered"]  # invites-since: BASE - 100 days
DAY = timedelta(days=1)
ALL_KINDS = ["invitation", "send-email", "email-id"]


@pytest.fixture(params=["sqlite", "postgresql"])
def on_each_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Scenario], Target]:
    """Build a scenario on SQLite, or in a schema of its own on the real PostgreSQL server."""
    counter = itertools.count()
    if request.param == "sqlite":
        return lambda scenario: Target.sqlite(scenario.build(tmp_path / f"crm{next(counter)}.db"))
    database = request.getfixturevalue("pg_database")
    return lambda scenario: scenario.build_postgresql(database.url(), f"crm7_{next(counter)}")


def detect_on(target: Target, answers: OperatorAnswers | None = None) -> Findings:
    return target.plan(answers or OperatorAnswers(), now=NOW).findings


def active(row: Row, when: datetime) -> Row:
    return {**row, "activeDate": when}


def counting_scenario() -> Scenario:
    """Invite meetings of every footprint, and what is left out of them, worked out by hand.

    Window: invites-since (SINCE) to NOW. The synchronizer's default sync range is
    [NOW - 30 days, NOW + 120 days) on activeDate (registered + 3 days unless set).
    """
    before_since = SINCE - 10 * DAY
    return Scenario(
        appointments=[
            # 10, by (c) (12 e-mailed): master to mark, 11 already marked, 12 external, 13 warned.
            appointment(10, 10, 1),
            appointment(11, 10, 2, warning=1),
            appointment(12, 10, 0, invited=5, email_id=9005),
            appointment(13, 10, 3, warning=3),
            # 20, by (b): master (NULL warning, activeDate on the range's first day) to mark, 21
            # owned by Outlook, 22 external.
            active(appointment(20, 20, 1, warning=None, send_email=1), NOW - 30 * DAY),
            appointment(21, 20, 2, owned_externally=2),
            appointment(22, 20, 0, invited=6),
            # 30, by (a), registered late enough to be in the sync range: 30 to mark, 31 external.
            appointment(30, 30, 1, registered=BASE + 40 * DAY),
            appointment(31, 30, 0, invited=7, registered=BASE + 40 * DAY),
            # 40, by (a) and (c): master (activeDate just past the range) to mark, 41 external.
            active(appointment(40, 40, 1), NOW + 120 * DAY),
            appointment(41, 40, 0, invited=8, email_id=9008),
            # 50, by (b), registered before invites-since: outside the window (52 external).
            appointment(50, 50, 1, send_email=1, registered=before_since),
            appointment(51, 50, 2, registered=before_since),
            appointment(52, 50, 0, invited=9, registered=before_since),
            # 60, by (a), registered after NOW: outside the window.
            appointment(60, 60, 1, registered=NOW + DAY),
            # Not invite meetings: an external participant without footprint; emailId before
            # invites-since (no evidence); a plain appointment.
            appointment(70, 70, 1),
            appointment(71, 70, 0, invited=10),
            appointment(80, 80, 1, registered=SINCE - 100 * DAY),
            appointment(81, 80, 0, invited=11, email_id=9011, registered=SINCE - 100 * DAY),
            appointment(90, 0, 1),
            # Series 5: (b) on its second occurrence only; the series is registered with its
            # first occurrence (100) and both occurrences are invite meetings.
            appointment(100, 100, 1, recurrence=5, registered=BASE + DAY),
            appointment(101, 100, 0, invited=12, recurrence=5, registered=BASE + DAY),
            appointment(110, 110, 1, recurrence=5, registered=BASE + 35 * DAY),
            appointment(111, 110, 2, send_email=1, recurrence=5, registered=BASE + 35 * DAY),
        ],
        invitations=[
            invitation(1, 30, registered=BASE + 40 * DAY),
            invitation(2, 40),
            invitation(3, 60, registered=NOW + DAY),
        ],
    )


COUNTED_TO_MARK = {10, 20, 30, 40, 100, 110, 111}


def footprint_counts(invites: InviteCounts) -> dict[str, tuple[int, int, bool, str]]:
    return {f.kind: (f.meetings, f.rows, f.counted, f.note) for f in invites.footprints}


def test_invite_counts(on_each_engine: Callable[[Scenario], Target]) -> None:
    target = on_each_engine(counting_scenario())

    found = detect_on(target)

    invites = found.invites
    assert found.invites_since.moment == SINCE
    assert invites.selection is not None and invites.selection.start == SINCE
    assert invites.window is not None and invites.window.start is None
    assert invites.window.until == NOW
    assert footprint_counts(invites) == {
        "invitation": (3, 5, True, ""),  # 30, 40, 60: rows 30, 31, 40, 41, 60
        "send-email": (3, 8, True, ""),  # 20, 50, 110: rows 20-22, 50-52, 110, 111
        "email-id": (2, 6, True, ""),  # 10, 40 (not 80: before invites-since): 10-13, 40, 41
    }
    assert [f.kind for f in invites.footprints] == ALL_KINDS
    assert (invites.meetings, invites.rows) == (8, 19)  # 10-60, 100, 110
    assert invites.selected_meetings == 6  # not 50, 60
    assert invites.to_mark == len(COUNTED_TO_MARK) == 7
    assert invites.in_sync_range == 4  # 20 (first day in), 30, 110, 111; not 40 (first day out)
    assert invites.already_marked == 1  # 11
    assert invites.left_out == {
        EXTERNAL_ROWS: 6,  # 12, 22, 31, 41, 52, 101
        EXTERNALLY_OWNED_ROWS: 1,  # 21
        OTHER_WARNINGS: 1,  # 13
        OUTSIDE_WINDOW: 3,  # 50, 51, 60
    }
    assert invites.other_warnings == 1
    assert invites.to_mark + invites.already_marked + sum(invites.left_out.values()) == 19
    assert invites.nothing_to_mark_because is None
    text = details(invites.evidence)
    assert "(a) an invitation row for the meeting: 3 meetings, 5 rows" in text
    assert "(b) a row with SendEmail = 1: 3 meetings, 8 rows" in text
    assert "8 invite meetings (19 rows), 6 of them" in text
    assert "7 rows to mark (4 inside the synchronizer's default sync range" in text
    assert rows_to_mark(target.database_rows(), until=NOW) == COUNTED_TO_MARK
    plan = target.plan(OperatorAnswers(), now=NOW)
    (mark,) = [s for s in plan.steps if s.id == "mark_invites"]
    assert mark.rows == 7 and mark.sample_ids == sorted(COUNTED_TO_MARK)


def test_narrowed_footprints_are_counted_alone(tmp_path: Path) -> None:
    target = Target.sqlite(counting_scenario().build(tmp_path / "crm.db"))
    answers = OperatorAnswers(footprints=frozenset({"invitation"}))

    found = detect_on(target, answers)

    invites = found.invites
    counts = footprint_counts(invites)
    assert counts["invitation"] == (3, 5, True, "")
    for kind in ("send-email", "email-id"):
        assert counts[kind][2:] == (False, "left out by --footprints")
    assert (invites.meetings, invites.rows, invites.selected_meetings) == (3, 5, 2)
    assert invites.to_mark == 2 and invites.in_sync_range == 1  # 30 and 40; 30 in range
    assert invites.left_out == {
        EXTERNAL_ROWS: 2,  # 31, 41
        EXTERNALLY_OWNED_ROWS: 0,
        OTHER_WARNINGS: 0,
        OUTSIDE_WINDOW: 1,  # 60
    }
    assert "Only these footprints count (--footprints): invitation" in found.warnings
    assert rows_to_mark(target.database_rows(), until=NOW, footprints=answers.footprints) == {
        30,
        40,
    }


def test_an_8_5_r10_database_shows_footprint_c_only(tmp_path: Path) -> None:
    scenario = dataclasses.replace(counting_scenario(), after_r10=False)
    target = Target.sqlite(scenario.build(tmp_path / "crm.db"))

    found = detect_on(target)

    invites = found.invites
    counts = footprint_counts(invites)
    assert counts["invitation"][:3] == (0, 0, False)
    assert "no invitation table" in counts["invitation"][3]
    assert counts["send-email"][:3] == (0, 0, False)
    assert "no appointment.SendEmail column" in counts["send-email"][3]
    assert counts["email-id"] == (2, 6, True, "")  # 10 and 40, as in the full shape
    assert (invites.meetings, invites.rows, invites.selected_meetings) == (2, 6, 2)
    assert invites.to_mark == 2  # 10, 40
    assert invites.left_out[EXTERNAL_ROWS] == 2 and invites.left_out[OTHER_WARNINGS] == 1
    assert invites.already_marked == 1
    assert found.invites_since.moment == SINCE
    assert sources(found.invites_since.evidence) == ["ProductVersion"]  # no invitation table
    assert sorted(found.columns_absent) == sorted(
        [
            "appointment.SendEmail",
            "appointment.owned_externally",
            "appointment.mother_associate_id",
            "invitation table",
        ]
    )
    assert rows_to_mark(target.database_rows(), until=NOW) == {10, 40}


def test_the_full_shape_lacks_nothing(tmp_path: Path) -> None:
    path = counting_scenario().build(tmp_path / "crm.db")

    assert findings(path, now=NOW).columns_absent == []


# --- invites-since ----------------------------------------------------------------------------


def test_invites_since_from_the_first_superoffice_version_with_invites(tmp_path: Path) -> None:
    scenario = Scenario(
        product_versions=[
            product_version(1, "SuperOffice", "CRM", "8.1 R03", registered=BASE - 500 * DAY),
            product_version(2, "SuperOffice", "CRM", "8.5 R09", registered=BASE - 300 * DAY),
            product_version(3, "SuperOffice", "CRM", "8.5 R10", registered=NEVER),
            product_version(4, "SuperOffice", "Web", "8.5 R10", registered=datetime(1753, 1, 1)),
            product_version(5, "Contoso", "Add-on", "9.2", registered=BASE - 400 * DAY),
            product_version(6, "SuperOffice", "CRM", "8.5 R11", registered=BASE - 100 * DAY),
            product_version(7, "SuperOffice", "CRM", "10.2.6.1269", registered=BASE - 50 * DAY),
            product_version(
                8, "InfoBridge", "Synchronizer", "3.2.284", registered=BASE - 600 * DAY
            ),
        ]
    )
    path = scenario.build(tmp_path / "crm.db")

    since = findings(path, now=NOW).invites_since

    assert (since.moment, since.source) == (BASE - 100 * DAY, "ProductVersion")
    assert since.evidence == [
        Evidence(
            "ProductVersion",
            "row 6: 8.5 R11 registered 2023-09-23 09:00:00 UTC "
            "(the first SuperOffice version with invites)",
        ),
        Evidence("invitation", "no invitation row with a real date"),
    ]
    assert oracle_invites_since(database_rows(path)) == since.moment


def invitation_scenario() -> Scenario:
    return Scenario(
        appointments=[appointment(10, 10, 1), appointment(20, 20, 1), appointment(30, 30, 1)],
        invitations=[
            invitation(1, 10, registered=NEVER),  # an empty date: no evidence
            invitation(2, 20, registered=BASE - 150 * DAY),
            invitation(3, 30),
        ],
    )


def test_an_earlier_invitation_wins_over_product_version(
    on_each_engine: Callable[[Scenario], Target],
) -> None:
    target = on_each_engine(invitation_scenario())

    since = detect_on(target).invites_since

    assert (since.moment, since.source) == (BASE - 150 * DAY, "invitation")
    assert sources(since.evidence) == ["ProductVersion", "invitation"]
    assert "row 1: 8.5 R10 registered 2023-09-23 09:00:00 UTC" in since.evidence[0].detail
    assert since.evidence[1].detail == "first invitation row registered 2023-08-04 09:00:00"
    assert oracle_invites_since(target.database_rows()) == since.moment


def test_the_operators_invites_since_wins(tmp_path: Path) -> None:
    path = invitation_scenario().build(tmp_path / "crm.db")
    given = BASE + 5 * DAY

    found = findings(path, OperatorAnswers(invites_since=given), now=NOW)

    since = found.invites_since
    assert (since.moment, since.source) == (given, "operator")
    assert since.evidence[0] == Evidence("operator", "--invites-since 2024-01-06 09:00:00")
    assert sources(since.evidence[1:]) == ["ProductVersion", "invitation"]  # still listed
    assert found.invites.selection is not None
    assert found.invites.selection.invites_since == given


def undetermined_scenario(*, email_id: int) -> Scenario:
    return Scenario(
        appointments=[
            # 10: its only footprint is an e-mailed participant (emailId), if any.
            appointment(10, 10, 1),
            appointment(11, 10, 0, invited=5, email_id=email_id),
            # 20: SendEmail, which needs no invites-since.
            appointment(20, 20, 1, send_email=1),
            appointment(21, 20, 2),
        ],
        product_versions=[
            product_version(1, "SuperOffice", "CRM", "8.5 R10", registered=NEVER),
            product_version(3, "SuperOffice", "CRM", "8.5 R11", registered=datetime(1753, 1, 1)),
            SYNCHRONIZER_3_2_284,
        ],
        invitations=[invitation(1, 30, registered=NEVER)],
    )


def test_undetermined_invites_since_leaves_footprint_c_out_and_says_so(tmp_path: Path) -> None:
    path = undetermined_scenario(email_id=9005).build(tmp_path / "crm.db")

    found = findings(path, now=NOW)

    since = found.invites_since
    assert (since.moment, since.source) == (None, "undetermined")
    assert since.email_id_rows_exist is True
    assert "invites-since is undetermined, so emailId is no evidence" in details(since.evidence)
    meetings, rows, counted, note = footprint_counts(found.invites)["email-id"]
    assert (meetings, rows, counted) == (0, 0, False)
    assert "invites-since is undetermined" in note and "rows with emailId <> 0 exist" in note
    assert [w for w in found.warnings if "invites-since is undetermined" in w]
    assert any("--invites-since DATE" in w for w in found.warnings)
    # SendEmail still counts, and the window starts at the beginning.
    assert found.invites.selection is not None and found.invites.selection.start is None
    assert found.invites.to_mark == 2
    assert rows_to_mark(database_rows(path), until=NOW) == {20, 21}


def test_undetermined_invites_since_without_email_id_rows_is_no_warning(tmp_path: Path) -> None:
    path = undetermined_scenario(email_id=0).build(tmp_path / "crm.db")

    found = findings(path, now=NOW)

    assert found.invites_since.moment is None
    assert found.invites_since.email_id_rows_exist is False
    note = footprint_counts(found.invites)["email-id"][3]
    assert "invites-since is undetermined" in note and "no emailId rows" in note
    assert not [w for w in found.warnings if "invites-since" in w]


# --- why nothing is marked --------------------------------------------------------------------


def test_an_existing_synchronizer_customer_gets_nothing_marked(tmp_path: Path) -> None:
    # SuperOffice's own upgrade switched Diary Synchronizer Active on before invites arrived.
    switched_on = SINCE - 100 * DAY
    scenario = dataclasses.replace(
        counting_scenario(), preferences=[preference(5, 2, "1", registered=switched_on)]
    )
    path = scenario.build(tmp_path / "crm.db")

    invites = findings(path, now=NOW).invites

    assert invites.meetings == 8 and invites.to_mark == 0 and invites.selected_meetings == 0
    assert invites.window is not None and invites.window.until == switched_on
    assert invites.nothing_to_mark_because is not None
    assert (
        "Diary Synchronizer Active has been on since 2023-06-15 09:00 UTC, before invites "
        "arrived (2023-09-23 09:00 UTC)" in invites.nothing_to_mark_because
    )
    database = database_rows(path)
    assert rows_to_mark(database, until=marking_until(database.preferences, NOW)) == set()


def test_no_footprint_means_nothing_to_mark(tmp_path: Path) -> None:
    path = Scenario(
        appointments=[
            appointment(10, 10, 1),
            appointment(11, 10, 2),
            appointment(12, 10, 0, invited=5),  # an external participant is no footprint
        ]
    ).build(tmp_path / "crm.db")

    invites = findings(path, now=NOW).invites

    assert (invites.meetings, invites.to_mark) == (0, 0)
    assert invites.nothing_to_mark_because is not None
    assert invites.nothing_to_mark_because.startswith(
        "No appointment carries a footprint of SuperOffice's invite system"
    )
    assert rows_to_mark(database_rows(path), until=NOW) == set()


# --- DatabaseModel.ModelData ------------------------------------------------------------------


def model_evidence(found: Findings) -> list[dict[str, str]]:
    """The superoffice evidence of the JSON report that comes from ModelData."""
    report = json.loads(json.dumps(findings_model(found), default=str))
    return [
        e for e in report["superoffice"]["evidence"] if e["source"] == "DatabaseModel.ModelData"
    ]


def test_model_data_dictionary_steps_are_inferred_evidence(
    on_each_engine: Callable[[Scenario], Target],
) -> None:
    target = on_each_engine(
        Scenario(
            model_versions=["8.5 R10"],
            model_data=encode_model_data([*INVITATION_STEPS, SUPEROFFICE_STEP_45]),
        )
    )

    found = detect_on(target)

    assert found.model is not None and found.model.decoded is True
    assert found.model.invitation_step_3_ran() is True
    lines = [e["detail"] for e in model_evidence(found)]
    assert lines == found.model.evidence_lines()
    assert lines and all("inferred" in line for line in lines)
    assert any(line.startswith("invitation step 3 (") and "has run" in line for line in lines)
    assert any(
        "SuperOffice step 45 'Adds cautionWarning to appointment' Applied" in line for line in lines
    )


def test_garbage_model_data_is_said_and_detection_goes_on(
    on_each_engine: Callable[[Scenario], Target],
) -> None:
    target = on_each_engine(Scenario(model_versions=["8.5 R10"], model_data=b"\x00 garbage \xff"))

    found = detect_on(target)

    assert found.model is not None and found.model.decoded is False
    assert found.model.invitation_step_3_ran() is None
    (line,) = model_evidence(found)
    assert "could not be decoded" in line["detail"]
    assert found.superoffice.status == "ok"  # the versions are read all the same
    assert found.invites.selection is not None


def test_no_database_model_row(tmp_path: Path) -> None:
    found = findings(Scenario().build(tmp_path / "crm.db"), now=NOW)

    assert found.model is None
    (line,) = model_evidence(found)
    assert line["detail"] == "no DatabaseModel row: no dictionary steps"


# --- NULLs where a real schema allows them ----------------------------------------------------


def allow_nulls(path: Path, table: str) -> None:
    """Recreate `table` with every column nullable, as some real schemas have it."""
    (row,) = query(path, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", [table])
    execute(
        path,
        f'ALTER TABLE "{table}" RENAME TO old_table',
        row["sql"].replace("NOT NULL", ""),
        f'INSERT INTO "{table}" SELECT * FROM old_table',
        "DROP TABLE old_table",
    )


def test_null_version_and_licence_names_are_evidence_not_a_crash(tmp_path: Path) -> None:
    path = Scenario(
        product_versions=[SUPEROFFICE_8_5_R10],
        model_versions=["8.5 R10"],
        licences=["superoffice.web", "superoffice.exchange-sync"],
    ).build(tmp_path / "crm.db")
    for table in ("ProductVersion", "DatabaseModel", "ModuleLicense"):
        allow_nulls(path, table)
    execute(
        path,
        "UPDATE ProductVersion SET version = NULL",
        "UPDATE DatabaseModel SET ModelVersion = NULL",
        "UPDATE ModuleLicense SET moduleName = NULL WHERE ModuleLicense_id = 1",
    )

    found = findings(path)

    assert found.superoffice.version is None and found.superoffice.status == "undetermined"
    assert "version=None -> not a version string this tool can read" in details(
        found.superoffice.evidence
    )
    assert "ModelVersion=None -> not a version string" in details(found.superoffice.evidence)
    assert found.synchronizer.status == "licensed_only"
