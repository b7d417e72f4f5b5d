"""Detection: every finding and the evidence that produced it, on real SQLite databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from scenarios import (
    SUPEROFFICE_8_5_R10,
    SYNCHRONIZER_3_2_284,
    FakeProbe,
    Scenario,
    appointment,
    execute,
    findings,
    preference,
    product_version,
    query,
    travel_preference,
)

from setup_tool.detect import OperatorAnswers
from setup_tool.host_probe import (
    INSTALL_FOLDER,
    SERVICES_KEY,
    UNINSTALL_KEYS,
    HostTrace,
    NoHostProbe,
    WindowsHostProbe,
)


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


def test_invite_counts(tmp_path: Path) -> None:
    path = Scenario(
        appointments=[
            appointment(10, 10, 1),
            appointment(11, 10, 0, invited=5, warning=1),  # invite meeting
            appointment(12, 10, 2, warning=3),
            appointment(20, 20, 1, warning=None),
            appointment(21, 20, 0, invited=6),  # invite meeting
            appointment(30, 30, 1),
            appointment(31, 30, 2),  # internal only
            appointment(40, 0, 0, invited=7),  # plain
        ]
    ).build(tmp_path / "crm.db")

    invites = findings(path).invites

    assert (invites.meetings, invites.rows) == (2, 5)
    assert (invites.already_marked, invites.other_warnings, invites.to_mark) == (1, 1, 3)
    assert invites.window is not None and invites.window.start is None
    assert "2 meetings with an external participant" in details(invites.evidence)


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
