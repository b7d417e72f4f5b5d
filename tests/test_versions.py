"""SuperOffice and synchronizer version parsing, ordering, the invite gates and known builds."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from setup_tool.errors import ExitCode, UsageError
from setup_tool.versions import (
    LAST_RELEASE,
    MINIMUM_SYNCHRONIZER,
    SuperOfficeVersion,
    SynchronizerVersion,
    VersionParseError,
    load_known_builds,
    newest_superoffice_version,
    parse_superoffice_version,
    parse_synchronizer_version,
    synchronizer_supports_invites,
    try_parse_superoffice_version,
)

Components = tuple[int, int, int | None, tuple[int, ...] | None]
ReleaseCase = tuple[str, tuple[int, int, int]]  # rendered text, (major, minor, release)
BuildCase = tuple[str, tuple[int, ...]]  # rendered text, (major, minor, *build)


def components(version: SuperOfficeVersion) -> Components:
    return (version.major, version.minor, version.release, version.build)


# --- accepted SuperOffice forms ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8.5 R10", (8, 5, 10, None)),
        ("8.5R10", (8, 5, 10, None)),
        ("8.5 r10", (8, 5, 10, None)),
        ("8.5 R01", (8, 5, 1, None)),
        ("SuperOffice G8 8.5 R17", (8, 5, 17, None)),
        ("SuperOffice CRM 8.5 R10", (8, 5, 10, None)),
        ("8.1 R03", (8, 1, 3, None)),
        ("8.5.7346.1605", (8, 5, None, (7346, 1605))),
        ("8.5.7362.1015", (8, 5, None, (7362, 1015))),
        ("9.2.7935.930", (9, 2, None, (7935, 930))),
        ("10.2.6.1269", (10, 2, None, (6, 1269))),
        ("10.3.5", (10, 3, None, (5,))),
        ("11.1.447", (11, 1, None, (447,))),
        ("12.2.2072", (12, 2, None, (2072,))),
        ("10.3", (10, 3, None, None)),
        ("  superoffice   g8  8.5   R17  ", (8, 5, 17, None)),
        ("SUPEROFFICE CRM 8.5 r09", (8, 5, 9, None)),
        ("G8 8.5 R12", (8, 5, 12, None)),
        ("CRM 11.1.447", (11, 1, None, (447,))),
        ("SuperOffice G8 CRM 8.5 R11", (8, 5, 11, None)),
        ("8.5\u00a0R10", (8, 5, 10, None)),  # a non-breaking space pasted from a document
        ("\t8.5 R10\n", (8, 5, 10, None)),
    ],
)
def test_accepted_superoffice_forms(text: str, expected: Components) -> None:
    version = parse_superoffice_version(text)
    assert components(version) == expected
    assert version.text == text


def test_product_generation_is_not_the_version() -> None:
    version = parse_superoffice_version("SuperOffice G8 8.5 R17")
    assert (version.major, version.minor, version.release) == (8, 5, 17)


# --- rejected SuperOffice strings ----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "abc",
        "8",
        "R10",
        "8.5 R",
        "8.5 R1O",
        "8.5.R10",  # packaging.version would silently read this as 8.5.post10
        "8.5 R00",
        "8.5 R100",
        "8.5 R18",  # 8.5 shipped as R01...R17
        "8.5 R99",
        "SuperOffice G8 8.5 R20",
        "8.5.1.2.3",
        "8.5.7346.1605.1.2",
        "1.2.3.4.5.6.7.8.9",
        "8..5",
        "8.5.",
        ".8.5",
        "8.5 R10 SP1",
        "8.5 R10 8.5 R11",
        "8.5 R10x",
        "Version 8.5 R10",
        "SuperOffice",
        "SuperOffice G8",
        "G8",
        "G8 8",
        "SuperOffice8.5 R10",
        "Microsoft SQL Server 15.0.2000",
        "\u0668.\u0665 R10",  # Arabic-Indic digits
        "1234.5",
    ],
)
def test_rejected_superoffice_strings(text: str) -> None:
    with pytest.raises(VersionParseError):
        parse_superoffice_version(text)
    assert try_parse_superoffice_version(text) is None


def test_parse_error_quotes_the_string_and_shows_accepted_forms() -> None:
    with pytest.raises(VersionParseError) as caught:
        parse_superoffice_version("8.5 R1O")
    error = caught.value
    assert isinstance(error, UsageError)
    assert error.exit_code == ExitCode.USAGE
    assert "'8.5 R1O'" in error.message
    assert error.hint is not None
    assert "8.5 R10" in error.hint and "8.5.7346.1605" in error.hint


@pytest.mark.parametrize("text", ["8.5 R18", "8.5 R99", "SuperOffice CRM 8.5 r42"])
def test_a_release_8_5_never_had_is_refused_with_the_range_and_the_other_routes(text: str) -> None:
    with pytest.raises(VersionParseError) as caught:
        parse_superoffice_version(text)
    error = caught.value
    assert error.exit_code == ExitCode.USAGE
    assert "SuperOffice 8.5 shipped as releases R01 to R17" in error.message
    assert repr(text) in error.message
    assert error.hint is not None and "--known-builds" in error.hint
    # the last release still is one, and versions whose releases are not listed keep theirs
    assert parse_superoffice_version("8.5 R17").release == 17
    assert parse_superoffice_version("8.1 R40").release == 40


def test_a_build_listed_with_a_release_8_5_never_had_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[builds]\n"8.5.7346.1605" = "R18"\n"8.0.1.1" = 30\n')
    with pytest.raises(UsageError, match="R01 to R17, not R18"):
        load_known_builds(path)
    path.write_text('[builds]\n"8.5.7346.1605" = "R17"\n"8.0.1.1" = 30\n')
    assert load_known_builds(path) == {"8.5.7346.1605": 17, "8.0.1.1": 30}


def test_parse_error_cuts_a_long_paste() -> None:
    with pytest.raises(VersionParseError) as caught:
        parse_superoffice_version("x" * 5000)
    assert len(caught.value.message) < 200
    assert "..." in caught.value.message


def test_try_parse_returns_the_version_when_readable() -> None:
    version = try_parse_superoffice_version("8.5 R10")
    assert version is not None and components(version) == (8, 5, 10, None)


# --- labels and the invite gate ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("8.5 R10", "8.5 R10"),
        ("8.5r1", "8.5 R01"),
        ("SuperOffice G8 8.5 R17", "8.5 R17"),
        ("10.2.6.1269", "10.2.6.1269"),
        ("11.1.447", "11.1.447"),
        ("10.3", "10.3"),
        ("8.5.7346.1605", "8.5 build 7346.1605 (release unknown)"),
        ("8.5", "8.5 (release unknown)"),
        ("8.1.6000.1", "8.1.6000.1"),
    ],
)
def test_label(text: str, label: str) -> None:
    assert parse_superoffice_version(text).label() == label


@pytest.mark.parametrize(
    ("text", "supported"),
    [
        ("8.5 R10", True),
        ("8.5 R17", True),
        ("8.5 R09", False),
        ("8.5 R01", False),
        ("8.1 R03", False),
        ("8.1 R17", False),
        ("7.5.1234.1", False),
        ("8.4", False),
        ("9.0", True),
        ("9.2.7935.930", True),
        ("10.2.6.1269", True),
        ("12.2.2072", True),
        ("8.5.7346.1605", None),
        ("8.5", None),
    ],
)
def test_supports_invites(text: str, supported: bool | None) -> None:
    assert parse_superoffice_version(text).supports_invites() is supported


# --- ordering -----------------------------------------------------------------------------------


def test_newest_orders_by_version_then_release_then_build() -> None:
    texts = ["8.5 R10", "10.2.6.1269", "8.5 R17", "10.3", "9.2.7935.930", "10.2.6.1300"]
    versions = [parse_superoffice_version(text) for text in texts]
    newest = newest_superoffice_version(versions)
    assert newest is not None and newest.text == "10.3"
    newest_85 = newest_superoffice_version(versions[:1] + versions[2:3])
    assert newest_85 is not None and newest_85.text == "8.5 R17"
    newest_10_2 = newest_superoffice_version([versions[1], versions[5]])
    assert newest_10_2 is not None and newest_10_2.text == "10.2.6.1300"


@pytest.mark.parametrize("release_text", ["8.5 R01", "8.5 R10", "8.5 R17"])
def test_newest_prefers_a_known_release_over_an_unknown_build(release_text: str) -> None:
    versions = [parse_superoffice_version("8.5.9999.9999"), parse_superoffice_version(release_text)]
    for ordering in (versions, versions[::-1]):
        newest = newest_superoffice_version(ordering)
        assert newest is not None and newest.text == release_text


def test_newest_of_nothing_is_none() -> None:
    assert newest_superoffice_version([]) is None


def test_newest_keeps_the_first_of_equals() -> None:
    first, second = parse_superoffice_version("8.5 R10"), parse_superoffice_version("8.5r10")
    assert newest_superoffice_version([first, second]) is first
    assert newest_superoffice_version([second, first]) is second


# --- known builds --------------------------------------------------------------------------------


def write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "known_builds.toml"
    path.write_text(content, encoding="utf-8")
    return path


def test_shipped_table_invents_no_builds() -> None:
    assert load_known_builds() == {}


def test_user_table_decides_the_release_of_a_build(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '# verified from our installation media\n[builds]\n"8.5.7346.1605" = 10\n'
        '"8.5.7362.1015" = "R11"\n"8.5.7000.1" = "r09"\n',
    )
    builds = load_known_builds(path)
    assert builds == {"8.5.7346.1605": 10, "8.5.7362.1015": 11, "8.5.7000.1": 9}
    known = parse_superoffice_version("8.5.7346.1605", builds)
    assert components(known) == (8, 5, 10, (7346, 1605))
    assert known.supports_invites() is True
    assert known.label() == "8.5 R10 (build 7346.1605)"
    assert parse_superoffice_version("8.5.7000.1", builds).supports_invites() is False
    unknown = parse_superoffice_version("8.5.7346.1606", builds)
    assert unknown.release is None and unknown.supports_invites() is None


def test_user_table_keys_are_canonical(tmp_path: Path) -> None:
    builds = load_known_builds(write(tmp_path, '[builds]\n"8.5.07346.1605" = 12\n'))
    assert builds == {"8.5.7346.1605": 12}
    assert parse_superoffice_version("SuperOffice 8.5.7346.01605", builds).release == 12


def test_an_empty_user_file_adds_nothing(tmp_path: Path) -> None:
    assert load_known_builds(write(tmp_path, "")) == {}


def test_known_builds_do_not_override_a_stated_release(tmp_path: Path) -> None:
    builds = load_known_builds(write(tmp_path, '[builds]\n"8.5.7346.1605" = 10\n'))
    assert parse_superoffice_version("8.5 R09", builds).release == 9


@pytest.mark.parametrize(
    ("content", "expected_in_message"),
    [
        ('[builds]\n"8.5.7346.1605" = \n', "not valid TOML"),
        ('[builds]\n"8.5.7346.1605" = 10\n"8.5.7346.1605" = 11\n', "line 3"),
        ("[builds]\n8.5.7346.1605 = 10\n", "quote it"),
        ('[builds]\n"abc" = 10\n', "'abc'"),
        ('[builds]\n"10.2.6.1269" = 10\n', "8.x build"),
        ('[builds]\n"8.5" = 10\n', "8.x build"),
        ('[builds]\n"8.5.7346.1605" = true\n', "True"),
        ('[builds]\n"8.5.7346.1605" = 0\n', "not 0"),
        ('[builds]\n"8.5.7346.1605" = 100\n', "not 100"),
        ('[builds]\n"8.5.7346.1605" = 99\n', "8.5 shipped as releases R01 to R17, not R99"),
        ('[builds]\n"8.5.7346.1605" = "R18"\n', "not R18"),
        ('[builds]\n"8.5.7346.1605" = "R1O"\n', "'R1O'"),
        ('[builds]\n"8.5.7346.1605" = 10.5\n', "10.5"),
        ('[builds]\n"8.5.7346.1605" = [10]\n', "[10]"),
        ('"8.5.7346.1605" = 10\n', "unexpected top-level key"),
        ("builds = 3\n", "must be a table"),
    ],
)
def test_malformed_user_file_names_the_file_and_the_problem(
    tmp_path: Path, content: str, expected_in_message: str
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(UsageError) as caught:
        load_known_builds(path)
    assert str(path) in caught.value.message
    assert expected_in_message in caught.value.message
    assert caught.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ('# comment\n[builds]\n"8.5.1.1" = 10\n"8.5.7346.1605" = 0\n', 4),
        ("# comment\n\n[builds]\n8.5.7346.1605 = 10\n", 4),
        ("[builds]\n\n'8.5.1.1' = 'R17'\n  \"abc\" = 3\n", 4),
        ("[builds]\n\n'8.5.1.1' = 'R17'\n'8.5.1.2' = 'R18'\n", 4),
        ('[builds]\n"8.5.1.1" = 10\n[other]\n', 3),
        ('[builds]\n"8.5.1.1" = 10\n"8.5.1.1" = 10\n', 3),
    ],
)
def test_malformed_user_file_points_at_the_line(tmp_path: Path, content: str, line: int) -> None:
    with pytest.raises(UsageError) as caught:
        load_known_builds(write(tmp_path, content))
    assert f"line {line}" in caught.value.message


def test_missing_user_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(UsageError) as caught:
        load_known_builds(missing)
    assert str(missing) in caught.value.message and "does not exist" in caught.value.message


def test_unreadable_user_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        load_known_builds(tmp_path)  # a folder, not a file
    assert str(tmp_path) in caught.value.message


# --- the synchronizer -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("3.2.284", (3, 2, 284)),
        ("3.2.292", (3, 2, 292)),
        ("3.2.314", (3, 2, 314)),
        ("v3.2.314", (3, 2, 314)),
        ("V3.2.314", (3, 2, 314)),
        ("InfoBridge Synchronizer 3.2.314", (3, 2, 314)),
        ("InfoBridge Synchronizer v3.2.314 (x64)", (3, 2, 314)),
        ("Synchronizer version 3.2.284.0.", (3, 2, 284, 0)),
        ("  3.10.0  ", (3, 10, 0)),
    ],
)
def test_accepted_synchronizer_forms(text: str, parts: tuple[int, ...]) -> None:
    version = parse_synchronizer_version(text)
    assert version.parts == parts and version.text == text


@pytest.mark.parametrize(
    "text",
    ["", "abc", "3", "v", "3.2.284.1.2", "x3.2.284", "3.2.284b", "3.2.284 or 3.2.292", "3..2"],
)
def test_rejected_synchronizer_strings(text: str) -> None:
    with pytest.raises(VersionParseError) as caught:
        parse_synchronizer_version(text)
    assert "Synchronizer" in caught.value.message
    assert caught.value.hint is not None and "3.2.284" in caught.value.hint


@pytest.mark.parametrize(
    ("text", "supported"),
    [
        ("3.2.283", False),
        ("3.1.999", False),
        ("2.9.400", False),
        ("3.2.284", True),
        ("3.2.292", True),
        ("3.2.314", True),
        ("3.10.0", True),
        ("4.0", True),
    ],
)
def test_synchronizer_threshold(text: str, supported: bool) -> None:
    assert synchronizer_supports_invites(parse_synchronizer_version(text)) is supported


def test_minimum_synchronizer_is_3_2_284() -> None:
    assert MINIMUM_SYNCHRONIZER.parts == (3, 2, 284)
    assert MINIMUM_SYNCHRONIZER.label() == "3.2.284"


def test_synchronizer_equality_ignores_the_text() -> None:
    assert parse_synchronizer_version("v3.2.314") == parse_synchronizer_version("3.2.314")


# --- properties ----------------------------------------------------------------------------------

majors = st.integers(min_value=0, max_value=999)
minors = st.integers(min_value=0, max_value=999)
releases = st.integers(min_value=1, max_value=99)
builds = st.lists(st.integers(min_value=0, max_value=999_999_999), min_size=1, max_size=2).map(
    tuple
)
products = st.sampled_from(
    [
        "",
        "SuperOffice ",
        "SuperOffice G8 ",
        "SuperOffice CRM ",
        "G8 ",
        "CRM ",
        "superoffice g7 crm ",
    ]
)
padding = st.sampled_from(["", " ", "  ", "\t"])


@st.composite
def release_versions(draw: st.DrawFn) -> ReleaseCase:
    major, minor, release = draw(majors), draw(minors), draw(releases)
    if (major, minor) in LAST_RELEASE:  # 8.5 shipped as R01...R17 only
        release = min(release, LAST_RELEASE[(major, minor)])
    number = draw(st.sampled_from([f"{release}", f"{release:02d}"]))
    letter = draw(st.sampled_from(["R", "r"]))
    text = f"{draw(padding)}{draw(products)}{major}.{minor}{draw(padding)}{letter}{number}"
    return text + draw(padding), (major, minor, release)


@st.composite
def build_versions(draw: st.DrawFn) -> BuildCase:
    major, minor, build = draw(majors), draw(minors), draw(builds)
    dotted = ".".join(str(part) for part in (major, minor, *build))
    return f"{draw(padding)}{draw(products)}{dotted}{draw(padding)}", (major, minor, *build)


def expected_support(major: int, minor: int, release: int | None) -> bool | None:
    if (major, minor) != (8, 5):
        return (major, minor) > (8, 5)
    return None if release is None else release >= 10


def sign(number: int) -> int:
    return (number > 0) - (number < 0)


def compare(left: object, right: object) -> int:
    return sign((left > right) - (left < right))  # type: ignore[operator]


@given(release_versions())
def test_release_versions_parse_back(case: ReleaseCase) -> None:
    text, (major, minor, release) = case
    assert components(parse_superoffice_version(text)) == (major, minor, release, None)


@given(build_versions())
def test_build_versions_parse_back(case: BuildCase) -> None:
    text, (major, minor, *build) = case
    assert components(parse_superoffice_version(text)) == (major, minor, None, tuple(build))


@given(release_versions(), release_versions())
def test_release_ordering_matches_components(left: ReleaseCase, right: ReleaseCase) -> None:
    left_key = parse_superoffice_version(left[0]).sort_key()
    right_key = parse_superoffice_version(right[0]).sort_key()
    assert compare(left_key, right_key) == compare(left[1], right[1])


@given(build_versions(), build_versions())
def test_build_ordering_matches_components(left: BuildCase, right: BuildCase) -> None:
    left_key = parse_superoffice_version(left[0]).sort_key()
    right_key = parse_superoffice_version(right[0]).sort_key()
    assert compare(left_key, right_key) == compare(left[1], right[1])


@given(st.lists(release_versions(), min_size=1, max_size=8))
def test_newest_is_the_largest_component_tuple(cases: list[ReleaseCase]) -> None:
    newest = newest_superoffice_version(parse_superoffice_version(text) for text, _ in cases)
    assert newest is not None
    assert (newest.major, newest.minor, newest.release) == max(parts for _, parts in cases)


@given(release_versions())
def test_supports_invites_rule_for_releases(case: ReleaseCase) -> None:
    text, (major, minor, release) = case
    supported = parse_superoffice_version(text).supports_invites()
    assert supported is expected_support(major, minor, release)


@given(build_versions(), releases, st.booleans())
def test_supports_invites_rule_for_builds(case: BuildCase, release: int, listed: bool) -> None:
    text, (major, minor, *build) = case
    key = ".".join(str(part) for part in (major, minor, *build))
    known = {key: release} if listed else {}
    version = parse_superoffice_version(text, known)
    assert version.release == (release if listed else None)
    assert version.supports_invites() is expected_support(major, minor, version.release)


synchronizer_parts = st.tuples(*[st.integers(min_value=0, max_value=99_999)] * 3)


synchronizer_prefixes = st.sampled_from(["", "v", "InfoBridge Synchronizer "])


@given(synchronizer_parts, synchronizer_parts, synchronizer_prefixes)
def test_synchronizer_ordering_is_numeric(
    left: tuple[int, int, int], right: tuple[int, int, int], prefix: str
) -> None:
    left_version = parse_synchronizer_version(prefix + ".".join(map(str, left)))
    right_version = parse_synchronizer_version(".".join(map(str, right)))
    assert left_version.parts == left
    assert compare(left_version, right_version) == compare(left, right)
    assert synchronizer_supports_invites(left_version) is (left >= (3, 2, 284))


def test_synchronizer_version_type_is_ordered() -> None:
    versions = sorted(SynchronizerVersion(parts, "") for parts in [(3, 10, 0), (3, 9, 9), (3, 2)])
    assert [version.parts for version in versions] == [(3, 2), (3, 9, 9), (3, 10, 0)]


# --- SuperOffice's release notes and the R10 gate (issue 16) ---------------------------------


@pytest.mark.parametrize(
    ("text", "noted"),
    [
        ("8.5 R10", True),
        ("SuperOffice G8 8.5 R10", True),
        ("8.5 R09", False),
        ("8.5 R11", False),
        ("8.5.7346.1605", False),  # release unknown: the gate asks first
        ("10.2.6.1269", False),
    ],
)
def test_only_8_5_r10_gets_the_release_notes_note(text: str, noted: bool) -> None:
    from setup_tool.versions import invites_documented_note

    note = invites_documented_note(parse_superoffice_version(text))

    assert (note is not None) is noted
    if note:
        assert "8.5 R11" in note and "SOD release-notes/8.5/index.md" in note
