"""The dry run and the reports: a dry run changes nothing at all, what it predicts is exactly what
a real run then does, and the reports in every format say so (JSON checked against its schema).

What a first run must mark is not taken from the tool's own dry run (a wrong predicate would
then agree with itself) but from the independent oracle (`invite_oracle`) over rows read with
plain SQL before the run.

Real SQLite files made by the demo generator; the CLI through click's CliRunner.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st
from invite_oracle import (
    ALL_FOOTPRINTS,
    DatabaseRows,
    as_datetime,
    marking_until,
    rows_to_mark,
)
from sqlalchemy import text

from setup_tool.cli import cli
from setup_tool.connection import ConnectionSettings
from setup_tool.database import is_read_statement, open_database
from setup_tool.demo import TABLE_NUMBERS
from setup_tool.errors import DryRunWriteAttempt

DOCS = Path(__file__).resolve().parent.parent / "docs"
STEP_IDS = ["gate", "preference", "overrides", "mark_invites", "synchronizer_check"]
KEYS = {
    "appointment": "appointment_id",
    "UserPreference": "userpreference_id",
    "traveltransactionlog": "traveltransactionlog_id",
    "sequence": "id",
}


# --- helpers -----------------------------------------------------------------------------------


# Every test in a working directory of its own, with no SETUP_TOOL_* variable from outside.
pytestmark = pytest.mark.usefixtures("workdir")


def invoke(*args: object) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args], prog_name="setup-tool")
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result


def url(db: Path) -> str:
    return f"sqlite:///{db}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def execute(db: Path, *statements: str) -> None:
    with closing(sqlite3.connect(db)) as con:
        for statement in statements:
            con.execute(statement)
        con.commit()


Row = dict[str, Any]


def rows_of(db: Path, table: str) -> dict[int, Row]:
    """Every row of a table by primary key, as {column (lower case): value}."""
    with closing(sqlite3.connect(db)) as con:
        cursor = con.execute(f'SELECT * FROM "{table}"')
        columns = [d[0].lower() for d in cursor.description]
        found = [dict(zip(columns, row, strict=True)) for row in cursor]
    return {row[KEYS[table].lower()]: row for row in found}


def snapshot(db: Path) -> dict[str, dict[int, Row]]:
    return {table: rows_of(db, table) for table in KEYS}


def changed(before: dict[int, Row], after: dict[int, Row]) -> set[int]:
    assert set(before) <= set(after), "rows were deleted"
    return {key for key, row in after.items() if before.get(key) != row}


def report_of(db: Path, *args: object, expect: int | None = None) -> tuple[int, dict[str, Any]]:
    path = Path(f"report-{len(list(Path.cwd().glob('report-*')))}.json")
    result = invoke("upgrade", "--database-url", url(db), "--report", path, *args)
    if expect is not None:
        assert result.exit_code == expect, result.output
    return result.exit_code, dict(json.loads(path.read_text()))


def steps(report: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(s["id"], s["decision"], s["rows"]) for s in report["steps"]]


def rows(report: dict[str, Any]) -> dict[str, int]:
    return {s["id"]: s["rows"] for s in report["steps"]}


def database_rows(db: Path) -> DatabaseRows:
    """What SPEC step 4 looks at, read with plain SQL (no invitation table in an R10 shape)."""
    with closing(sqlite3.connect(db)) as con:
        con.row_factory = sqlite3.Row
        names = {r[0].lower() for r in con.execute("SELECT name FROM sqlite_master")}

        def every(table: str) -> list[Row]:
            if table.lower() not in names:
                return []
            return [dict(row) for row in con.execute(f'SELECT * FROM "{table}"')]

        return DatabaseRows(
            appointments=every("appointment"),
            invitations=every("invitation"),
            product_versions=every("ProductVersion"),
            preferences=every("UserPreference"),
        )


def last_run_started(db: Path) -> datetime:
    """When the latest run started; now when no run was recorded (nothing was to do)."""
    with closing(sqlite3.connect(db)) as con:
        ran = con.execute("SELECT name FROM sqlite_master WHERE name = 'setup_tool_run'")
        if ran.fetchone() is None:
            return datetime.now(UTC).replace(tzinfo=None)
        (started,) = con.execute("SELECT MAX(started_at) FROM setup_tool_run").fetchone()
    moment = as_datetime(started)
    assert moment is not None
    return moment


Oracle = Callable[[DatabaseRows, datetime], set[int]]


def first_run_oracle(
    since: datetime | None = None, footprints: frozenset[str] = ALL_FOOTPRINTS
) -> Oracle:
    """What a first run started at a given moment must mark (SPEC step 4, invite_oracle)."""

    def expected(database: DatabaseRows, started: datetime) -> set[int]:
        until = marking_until(database.preferences, started)
        return rows_to_mark(database, until=until, operator_since=since, footprints=footprints)

    return expected


def nothing_marked(database: DatabaseRows, started: datetime) -> set[int]:
    return set()


def licensed_only(db: Path) -> Path:
    execute(db, "DELETE FROM ProductVersion WHERE ownerName = 'InfoBridge'")
    return db


def validate(document: dict[str, Any], schema_name: str) -> None:
    schema = json.loads((DOCS / schema_name).read_text())
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


# --- a dry run writes nothing --------------------------------------------------------------------


FORMATS = {
    "text to stdout": [],
    "json to stdout": ["--format", "json"],
    "text file": ["--report", "plan.txt", "--format", "text"],
    "markdown file": ["--report", "plan.md", "--format", "md"],
    "html file": ["--report", "plan.html", "--format", "html"],
    "json file": ["--report", "plan.json", "--format", "json"],
    "format from the extension": ["--report", "plan.htm"],
}


@pytest.mark.parametrize("args", FORMATS.values(), ids=list(FORMATS))
def test_a_dry_run_leaves_the_database_byte_identical(
    args: list[str], demo_template: Path, workdir: Path
) -> None:
    data = workdir / "data"
    data.mkdir()
    db = data / "crm.db"
    shutil.copyfile(demo_template, db)
    before = digest(db)
    result = invoke(
        "upgrade",
        "--database-url",
        url(db),
        "--dry-run",
        "--detailed-exitcode",
        "--unattended",
        *args,
    )
    assert result.exit_code == 10, result.output
    assert digest(db) == before
    assert [p.name for p in data.iterdir()] == ["crm.db"]  # no journal, lock or other file


def test_a_dry_run_after_earlier_runs_and_detect_and_history_leave_it_identical(
    make_demo: Callable[..., Path],
) -> None:
    db = make_demo(travel=True)
    assert invoke("upgrade", "--database-url", url(db), "--unattended").exit_code == 4
    execute(
        db,
        "UPDATE UserPreference SET prefvalue = '0' WHERE deflevel = 2 AND "
        "prefkey = 'DiarySynchronizerActive'",
    )  # an admin switched it off again
    before = digest(db)
    for fmt in ("text", "md", "html", "json"):
        for command in (["upgrade", "--dry-run", "--fix-overrides"], ["detect"], ["history"]):
            result = invoke(*command, "--database-url", url(db), "--format", fmt)
            assert result.exit_code == 0, (command, result.output)
            assert result.stdout.strip()
    assert digest(db) == before


def test_the_write_guard_refuses_a_write_on_a_read_only_database(demo_db: Path) -> None:
    before = digest(demo_db)
    db = open_database(ConnectionSettings(database_url=url(demo_db)), read_only=True)
    try:
        with db.engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM appointment")).scalar_one() > 0
            with pytest.raises(Exception) as caught:
                conn.execute(text("UPDATE appointment SET cautionWarning = 1"))
    finally:
        db.dispose()
    error: BaseException | None = caught.value
    while error is not None and not isinstance(error, DryRunWriteAttempt):
        error = error.__cause__ or getattr(error, "orig", None)
    assert isinstance(error, DryRunWriteAttempt), repr(caught.value)
    assert digest(demo_db) == before


# --- the write guard's rule --------------------------------------------------------------------


READS = [
    "SELECT 1",
    "  select appointment_id from appointment where cautionWarning = 0",
    "\nSELECT count(*) FROM crm7.appointment",
    "WITH m AS (SELECT mother_id FROM appointment) SELECT count(*) FROM m",
    "PRAGMA table_info(appointment)",
    'PRAGMA main.table_info("UserPreference");',
    "PRAGMA foreign_keys",
    "EXPLAIN SELECT 1",
    "SHOW search_path",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT sa_savepoint_1",
    "RELEASE SAVEPOINT sa_savepoint_1",
    "SET NOCOUNT ON",
]
WRITES = [
    "INSERT INTO appointment (appointment_id) VALUES (1)",
    "insert into setup_tool_run select * from x",
    "UPDATE appointment SET cautionWarning = 1",
    "  update UserPreference set prefvalue = '1'",
    "DELETE FROM appointment",
    "CREATE TABLE setup_tool_run (run_id int)",
    "CREATE INDEX i ON appointment (mother_id)",
    "DROP TABLE appointment",
    "ALTER TABLE appointment ADD x int",
    "PRAGMA journal_mode = WAL",
    "PRAGMA user_version=7",
    "pragma main.user_version = 7;",
    "REPLACE INTO sequence VALUES (1)",
    "MERGE INTO appointment USING x ON 1 = 1 WHEN MATCHED THEN DELETE",
    "TRUNCATE TABLE appointment",
    "VACUUM",
    "ATTACH DATABASE 'other.db' AS other",
    "EXEC sp_getapplock @Resource = 'x'",
    "GRANT SELECT ON appointment TO public",
]
WRITE_KEYWORDS = [
    "insert",
    "update",
    "delete",
    "create",
    "drop",
    "alter",
    "replace",
    "merge",
    "truncate",
    "vacuum",
    "attach",
    "detach",
    "exec",
    "execute",
    "grant",
    "reindex",
]


@pytest.mark.parametrize("statement", READS)
def test_the_write_guard_lets_reads_through(statement: str) -> None:
    assert is_read_statement(statement)


@pytest.mark.parametrize("statement", WRITES)
def test_the_write_guard_stops_writes(statement: str) -> None:
    assert not is_read_statement(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "WITH doomed AS (SELECT 1 AS x) DELETE FROM appointment",
        "WITH d AS (SELECT 1 AS x) UPDATE appointment SET cautionWarning = 1",
        "SELECT * INTO appointment_copy FROM appointment",
        "SELECT 1; DELETE FROM appointment",
    ],
)
def test_the_write_guard_stops_writes_disguised_as_reads(statement: str) -> None:
    assert not is_read_statement(statement)


def _cased(word: str, flips: list[bool]) -> str:
    return "".join(
        c.upper() if flip else c for c, flip in zip(word, flips + [False] * len(word), strict=False)
    )


WHITESPACE = st.text(alphabet=" \t\r\n", max_size=4)
IDENTIFIER = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)


# Every word the guard treats as a write, wherever it stands (setup_tool.database).
ALL_WRITE_WORDS = sorted(
    {*WRITE_KEYWORDS, "merge", "into", "revoke", "call", "do", "copy", "upsert"}
)
# Statements that start like a read: the write word after them must still be found.
READ_PREFIXES = ["", "SELECT a FROM t WHERE b = ", "WITH q AS (SELECT 1) ", "EXPLAIN ", "SELECT "]


def has_write_word(code: str) -> bool:
    """Independent of the guard's regex: split into words outside string literals."""
    outside = re.sub(r"'(?:[^']|'')*'", "''", code)
    return any(word.lower() in ALL_WRITE_WORDS for word in re.findall(r"[A-Za-z0-9_]+", outside))


@given(
    st.sampled_from(READ_PREFIXES),
    WHITESPACE,
    st.sampled_from(ALL_WRITE_WORDS),
    st.lists(st.booleans(), max_size=10),
    st.text(alphabet=st.characters(blacklist_characters="';"), max_size=60),
)
def test_no_write_keyword_passes_the_guard_in_any_spelling(
    prefix: str, space: str, keyword: str, flips: list[bool], rest: str
) -> None:
    assert not is_read_statement(f"{prefix}{space}{_cased(keyword, flips)} {rest}")


# Words that may also be write words: random identifiers almost never are.
WORDS = st.one_of(IDENTIFIER, st.sampled_from(ALL_WRITE_WORDS), st.integers(0, 99).map(str))


@given(WHITESPACE, WORDS, WORDS, st.lists(st.booleans(), max_size=6))
def test_a_pragma_passes_only_when_it_reads(
    space: str, name: str, value: str, flips: list[bool]
) -> None:
    pragma = f"{space}{_cased('pragma', flips)} "
    assert not is_read_statement(f"{pragma}{name} = {value}")  # setting a value: never
    # A call reads, unless a write word is in it (`pragma do(1)`: refused, to be safe).
    expected = not has_write_word(f"{name} {value}")
    assert is_read_statement(f"{pragma}{name}({value})") is expected


SELECT_TOKENS = st.one_of(
    WORDS,
    st.sampled_from([",", "(", ")", "*", "=", "<>", ".", "'it''s'", "'insert into t'", "''"]),
)


@given(WHITESPACE, st.lists(st.booleans(), max_size=6), st.lists(SELECT_TOKENS, max_size=12))
def test_a_select_passes_unless_a_write_word_is_in_it(
    space: str, flips: list[bool], tokens: list[str]
) -> None:
    """`SELECT ... INTO` copies a table and a write word in a column list is refused to be
    safe; the same words inside string literals are data and pass."""
    body = " ".join(tokens)
    assert is_read_statement(f"{space}{_cased('select', flips)} {body}") is not has_write_word(body)


# --- what the dry run predicts is what the real run does ---------------------------------------


def _default(make: Callable[..., Path]) -> Path:
    return make()


VARIANTS: dict[str, tuple[dict[str, Any], list[str], bool]] = {
    # demo options, upgrade options, licensed only
    "defaults": ({}, [], False),
    "travel on, batches of 7": ({"travel": True}, ["--batch-size", "7", "--fix-overrides"], False),
    "synchronizer too old, batches of 3": (
        {"synchronizer_version": "3.2.283"},
        ["--batch-size", "3"],
        False,
    ),
    "no synchronizer": ({"synchronizer_version": None}, ["--fix-overrides"], False),
    "--no-synchronizer": ({}, ["--no-synchronizer"], False),
    "licensed only, version unknown, travel": (
        {"travel": True},
        ["--synchronizer-version", "unknown", "--batch-size", "50"],
        True,
    ),
    "many invites, True/False, travel": (
        {
            "invite_share": 0.3,
            "bool_values": ("True", "False"),
            "travel": True,
            "appointments": 800,
        },
        ["--fix-overrides", "--batch-size", "64"],
        False,
    ),
    "one batch for everything": ({"appointments": 2500}, ["--batch-size", "100000"], False),
}


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_the_dry_run_predicts_exactly_what_the_real_run_does(
    variant: str, make_demo: Callable[..., Path]
) -> None:
    options, args, licensed = VARIANTS[variant]
    db = make_demo(**options)
    if licensed:
        licensed_only(db)
    synchronizer = options.get("synchronizer_version", "") is not None
    marks = synchronizer and "--no-synchronizer" not in args  # else the step is skipped
    plan = _prediction_holds(db, args, first_run_oracle() if marks else nothing_marked)
    assert plan["findings"]["travel"]["enabled"] is bool(options.get("travel"))
    assert (rows(plan)["mark_invites"] > 0) is marks


def test_the_prediction_holds_when_a_later_run_converges_again(
    make_demo: Callable[..., Path],
) -> None:
    db = make_demo(travel=True)
    _prediction_holds(db, ["--fix-overrides"])
    execute(
        db,
        # an admin switches it off for everyone and for one user...
        "UPDATE UserPreference SET prefvalue = '0' WHERE prefkey = 'DiarySynchronizerActive' "
        "AND deflevel IN (2, 5)",
        # ...and someone clears the warning on some marked rows
        "UPDATE appointment SET cautionWarning = 0 WHERE appointment_id IN "
        "(SELECT appointment_id FROM appointment WHERE cautionWarning = 1 LIMIT 5)",
    )
    second = _prediction_holds(db, ["--fix-overrides", "--batch-size", "2"])
    assert rows(second)["preference"] == 1 and rows(second)["overrides"] == 1


SCENARIO_VARIANTS: dict[str, tuple[dict[str, Any], list[str], Oracle]] = {
    # demo options, upgrade options, what SPEC step 4 says a first run marks
    "new-customer": ({"scenario": "new-customer"}, [], first_run_oracle()),
    "existing-customer": ({"scenario": "existing-customer"}, [], first_run_oracle()),
    "r10-shape": ({"scenario": "r10-shape"}, [], first_run_oracle()),
    "new-customer, travel, batches of 5": (
        {"scenario": "new-customer", "travel": True},
        ["--batch-size", "5"],
        first_run_oracle(),
    ),
    "new-customer, --footprints send-email": (
        {"scenario": "new-customer"},
        ["--footprints", "send-email"],
        first_run_oracle(footprints=frozenset({"send-email"})),
    ),
    "new-customer, --invites-since before the upgrade": (
        {"scenario": "new-customer", "appointments": 2000},
        ["--invites-since", "2025-03-01"],
        first_run_oracle(since=datetime(2025, 3, 1)),
    ),
    "r10-shape, --invites-since after the upgrade": (
        {"scenario": "r10-shape", "appointments": 2000},
        ["--invites-since", "2026-03-01 08:00:00"],
        first_run_oracle(since=datetime(2026, 3, 1, 8)),
    ),
}


@pytest.mark.parametrize("variant", SCENARIO_VARIANTS, ids=list(SCENARIO_VARIANTS))
def test_the_dry_run_predicts_what_spec_step_4_marks_on_every_demo_scenario(
    variant: str, make_demo: Callable[..., Path]
) -> None:
    options, args, oracle = SCENARIO_VARIANTS[variant]
    db = make_demo(**options)
    plan = _prediction_holds(db, ["--fix-overrides", *args], oracle)  # byte-identical, oracle
    predicted = rows(plan)["mark_invites"]
    assert plan["findings"]["invites"]["to_mark"] == predicted
    if options["scenario"] == "existing-customer":
        assert predicted == 0 and plan["findings"]["invites"]["nothing_to_mark_because"]
    else:
        assert predicted > 0
    for name in (f"{db.name}-journal", f"{db.name}-wal", f"{db.name}-shm"):
        assert not db.with_name(name).exists()


def _prediction_holds(db: Path, args: list[str], oracle: Oracle | None = None) -> dict[str, Any]:
    """Dry run, then the real run: the same steps and counts, and (with `oracle`, for a first run)
    exactly the rows SPEC step 4 says, whatever the tool predicted."""
    before, before_digest, database = snapshot(db), digest(db), database_rows(db)
    _, plan = report_of(db, "--dry-run", "--unattended", *args, expect=0)
    assert digest(db) == before_digest
    assert plan["mode"] == "dry-run" and plan["run_id"] is None

    code, done = report_of(db, "--unattended", *args)
    assert code == done["exit_code"] and code in (0, 4), done["outcome"]
    assert done["mode"] == "upgrade"
    assert steps(done) == steps(plan)
    for predicted, actual in zip(plan["steps"], done["steps"], strict=True):
        assert actual["sample_ids"] == predicted["sample_ids"], actual["id"]

    after = snapshot(db)
    expected = rows(plan)
    marked = changed(before["appointment"], after["appointment"])
    assert len(marked) == expected["mark_invites"]
    if oracle is not None:
        must = oracle(database, last_run_started(db))
        assert marked == must, (
            f"SPEC step 4: extra {sorted(marked - must)[:10]}, missing {sorted(must - marked)[:10]}"
        )
    assert set(rows(plan)) == set(STEP_IDS)
    mark_step = next(s for s in plan["steps"] if s["id"] == "mark_invites")
    assert set(mark_step["sample_ids"]) <= marked
    for key in marked:
        assert after["appointment"][key] != before["appointment"][key]
    preferences = changed(before["UserPreference"], after["UserPreference"])
    assert len(preferences) == expected["preference"] + expected["overrides"]

    # with Travel on, one travel log row per changed row, naming it; otherwise none
    new_log = [
        after["traveltransactionlog"][k]
        for k in set(after["traveltransactionlog"]) - set(before["traveltransactionlog"])
    ]
    logged: dict[int, list[int]] = {}
    for entry in new_log:
        logged.setdefault(entry["tablenumber"], []).append(entry["record_id"])
    if plan["findings"]["travel"]["enabled"]:
        assert sorted(logged.pop(TABLE_NUMBERS["appointment"], [])) == sorted(marked)
        assert sorted(logged.pop(TABLE_NUMBERS["UserPreference"], [])) == sorted(preferences)
    assert logged == {}
    # and the sequence moved on for every id the tool took
    if new_log:
        assert after["sequence"] != before["sequence"]

    # and a dry run now predicts nothing more to do
    code, again = report_of(db, "--dry-run", "--detailed-exitcode", "--unattended", *args)
    assert code == 0 and again["outcome"] in ("nothing_to_do", "action_required"), again["outcome"]
    assert all(s["rows"] == 0 for s in again["steps"])
    return plan


# --- reports -------------------------------------------------------------------------------------


def sniff(content: str) -> str:
    stripped = content.lstrip()
    if stripped.startswith("{"):
        json.loads(content)
        return "json"
    if stripped.lower().startswith("<!doctype html") or stripped.lower().startswith("<html"):
        return "html"
    if stripped.startswith("# "):
        return "md"
    assert stripped.startswith("setup-tool "), stripped[:80]
    return "text"


REPORT_FORMATS = {
    "plan.txt": ([], "text"),
    "plan.md": ([], "md"),
    "plan.html": ([], "html"),
    "plan.htm": ([], "html"),
    "plan.json": ([], "json"),
    "plan": ([], "text"),  # no extension: text (an unknown one is refused: test_help.py)
    "plan.out": (["--format", "md"], "md"),
    "plan.txt ": (["--format", "json"], "json"),
    "plan.json ": (["--format", "html"], "html"),
}


@pytest.mark.parametrize("command", ["dry-run", "upgrade", "detect"])
@pytest.mark.parametrize("name", REPORT_FORMATS, ids=list(REPORT_FORMATS))
def test_reports_in_every_format_chosen_or_from_the_extension(
    name: str, command: str, demo_db: Path
) -> None:
    args, expected = REPORT_FORMATS[name]
    name = name.strip()
    argv = {
        "dry-run": ["upgrade", "--dry-run"],
        "upgrade": ["upgrade", "--unattended"],
        "detect": ["detect"],
    }[command]
    result = invoke(*argv, "--database-url", url(demo_db), "--report", name, *args)
    assert result.exit_code in (0, 4), result.output
    content = Path(name).read_text()
    assert sniff(content) == expected
    assert "Mail/DiarySynchronizerActive" in content
    if command == "upgrade":
        assert f"Report: {name}" in result.stderr


def test_report_text_says_what_each_step_will_do_with_counts_and_sql(demo_db: Path) -> None:
    _, plan = report_of(demo_db, "--dry-run")
    result = invoke("upgrade", "--database-url", url(demo_db), "--dry-run", "--format", "md")
    markdown = result.stdout
    assert f"{rows(plan)['mark_invites']}" in markdown
    assert "UPDATE appointment" in markdown
    html = invoke("upgrade", "--database-url", url(demo_db), "--dry-run", "--format", "html")
    assert "UPDATE appointment" in html.stdout
    assert re.search(r"will change", html.stdout, re.I)


def test_a_report_that_cannot_be_written_is_a_clear_error(demo_db: Path) -> None:
    before = digest(demo_db)
    result = invoke(
        "upgrade",
        "--database-url",
        url(demo_db),
        "--dry-run",
        "--report",
        "no/such/folder/plan.json",
    )
    assert result.exit_code != 0
    assert "Cannot write the file" in result.stderr and "no/such/folder/plan.json" in result.stderr
    assert digest(demo_db) == before


def _check_report(report: dict[str, Any], code: int) -> None:
    validate(report, "report.schema.json")
    assert report["schema_version"] == 2
    assert report["exit_code"] == code
    findings = report["findings"]
    for name in ("superoffice", "synchronizer", "preference", "travel", "invites", "history"):
        assert findings[name]["evidence"], name
        for evidence in findings[name]["evidence"]:
            assert evidence["source"] and evidence["detail"]


def test_the_json_report_of_a_dry_run_and_of_the_real_run(demo_db: Path) -> None:
    code, plan = report_of(demo_db, "--dry-run", "--detailed-exitcode")
    assert code == 10
    _check_report(plan, 10)
    assert plan["outcome"] == "changes_pending"
    overrides = plan["findings"]["preference"]["overrides"]
    assert overrides and any(not o["on"] for o in overrides)
    assert all(3 <= o["level"] <= 5 for o in overrides)
    assert [s["id"] for s in plan["steps"]] == STEP_IDS
    for step in plan["steps"]:
        assert step["title"] and isinstance(step["sql"], list)
        assert isinstance(step["warnings"], list) and isinstance(step["rows"], int)
    by_id = {s["id"]: s for s in plan["steps"]}
    assert by_id["mark_invites"]["decision"] == "change" and by_id["mark_invites"]["rows"] > 0
    assert by_id["mark_invites"]["sample_ids"]
    assert any(sql.startswith("UPDATE appointment") for sql in by_id["mark_invites"]["sql"])
    assert by_id["preference"]["sql"] and by_id["overrides"]["warnings"]

    code, done = report_of(demo_db, "--unattended")
    assert code == 4
    _check_report(done, 4)
    assert done["outcome"] == "action_required" and done["run_id"] == 1
    assert done["log_file"] and Path(done["log_file"]).exists()

    code, again = report_of(demo_db, "--unattended", "--fix-overrides")
    _check_report(again, 0)
    assert again["outcome"] == "done" and again["findings"]["history"]["runs"] == 1

    code, nothing = report_of(demo_db, "--unattended", "--fix-overrides")
    _check_report(nothing, 0)
    assert nothing["outcome"] == "nothing_to_do" and nothing["run_id"] is None


def test_the_json_report_when_blocked_and_in_other_shapes(make_demo: Callable[..., Path]) -> None:
    code, blocked = report_of(make_demo(superoffice_version="8.1 R03"), "--unattended")
    assert code == 3
    _check_report(blocked, 3)
    assert blocked["outcome"] == "blocked"
    assert blocked["findings"]["superoffice"]["status"] == "too_old"

    code, travel = report_of(
        licensed_only(make_demo(travel=True)), "--dry-run", "--synchronizer-version", "unknown"
    )
    _check_report(travel, 0)
    assert travel["findings"]["travel"]["enabled"] is True
    assert travel["findings"]["synchronizer"]["status"] == "unknown_version"
    assert any(e["source"] == "operator" for e in travel["findings"]["synchronizer"]["evidence"])

    result = invoke("detect", "--database-url", url(make_demo()), "--format", "json")
    assert result.exit_code == 0
    detected = json.loads(result.stdout)
    _check_report(detected, 0)
    assert detected["mode"] == "detect" and detected["steps"] == []


def test_the_json_history_matches_its_schema(demo_db: Path) -> None:
    assert invoke("upgrade", "--database-url", url(demo_db), "--unattended").exit_code == 4
    assert invoke("undo", "--database-url", url(demo_db), "--unattended").exit_code == 0
    result = invoke("history", "--database-url", url(demo_db), "--format", "json")
    assert result.exit_code == 0
    history = json.loads(result.stdout)
    validate(history, "history.schema.json")
    assert len(history["runs"]) == 2
