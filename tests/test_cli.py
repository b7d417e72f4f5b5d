"""The command line as administrators and installers meet it: every exit code, the wizard,
unattended runs, answer files and environment variables, passwords, help.

Real SQLite files (the demo), real processes where a process matters (Ctrl-C, stdin left open),
click's CliRunner elsewhere. Every test runs in its own working directory, where the default log
and report files land.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import pytest
from cli_helpers import invoke, tool
from sqlalchemy import create_engine
from superoffice_databases import TargetDatabase, invites_to_mark

from setup_tool import __version__
from setup_tool.cli import cli
from setup_tool.config import PASSWORD_KEY, envvar
from setup_tool.locking import run_lock

SECRET = "S3cret-Pa55"
WIZARD_CONFIRM = "Apply these changes to the database now?"
SYNC_QUESTION = "Is the on-premise synchronizer in use"
VERSION_QUESTION = "Which SuperOffice version is installed"
SINCE_QUESTION = "When was this database upgraded to SuperOffice 8.5 R10"
NO_EMAIL_ID = "invites-since is undetermined, so footprint (c) (emailId) is not used"
EMPTY_DATE = "1900-01-01 00:00:00.000000"  # SuperOffice's "empty" date, as SQLite stores it
R10_DAY = datetime(2025, 9, 27)  # the demos' upgrade to 8.5 R10: 400 days before DEMO_NOW
# What SPEC says the summary and the report advise once the preference changes.
ADVICE = ("next login", "No Login", "application pools")


# --- helpers -----------------------------------------------------------------------------------


# Every test in a working directory of its own, with no SETUP_TOOL_* variable from outside.
pytestmark = pytest.mark.usefixtures("workdir")


def tool_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETUP_TOOL_")}
    return {**env, **extra}


def run_tool(
    *args: object, cwd: Path, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*tool(), *map(str, args)],
        cwd=cwd,
        env=tool_env(**env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def query(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db, timeout=10)) as con:
        return con.execute(sql, params).fetchall()


def execute(db: Path, *statements: str) -> None:
    with closing(sqlite3.connect(db)) as con:
        for statement in statements:
            con.execute(statement)
        con.commit()


def marked(db: Path) -> int:
    return int(query(db, "SELECT count(*) FROM appointment WHERE cautionWarning = 1")[0][0])


def url(db: Path) -> str:
    return f"sqlite:///{db}"


def licensed_only(make_demo: Callable[..., Path], **options: Any) -> Path:
    """Licensed for the synchronizer, but no ProductVersion row says it is installed."""
    db = make_demo(**options)
    execute(db, "DELETE FROM ProductVersion WHERE ownerName = 'InfoBridge'")
    return db


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dry_run_report(db: Path, *args: object) -> dict[str, Any]:
    report = db.with_name(f"{db.stem}-plan-{time.monotonic_ns()}.json")
    result = invoke("upgrade", "--database-url", url(db), "--dry-run", "--report", report, *args)
    assert result.exit_code == 0, result.output
    return dict(json.loads(report.read_text()))


def step_rows(report: dict[str, Any]) -> dict[str, int]:
    return {step["id"]: step["rows"] for step in report["steps"]}


def override_values(db: Path) -> list[str]:
    return [
        row[0]
        for row in query(
            db,
            "SELECT prefvalue FROM UserPreference WHERE prefsection = 'Mail' AND "
            "prefkey = 'DiarySynchronizerActive' AND deflevel IN (3, 4, 5) ORDER BY 1",
        )
    ]


def logs_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("setup-tool-*.log"))


def warnings_by_id(db: Path) -> dict[int, Any]:
    return dict(query(db, "SELECT appointment_id, cautionWarning FROM appointment"))


def newly_marked(before: dict[int, Any], db: Path) -> set[int]:
    after = warnings_by_id(db)
    assert set(after) == set(before)
    return {i for i, warning in after.items() if warning != before[i]}


class FirstRunOracle:
    """What SPEC step 4 says a first run marks, from the independent oracle over the rows as
    they were before it (never from the tool's own dry run: a wrong marking predicate would
    agree with itself). Take it before the run; `check` after it."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.target = TargetDatabase("sqlite", url(db), None, url(db))
        self.rows = self.target.database_rows()
        self.before = warnings_by_id(db)

    def check(self) -> set[int]:
        must = invites_to_mark(self.rows, self.target.first_run_started())
        marked_now = newly_marked(self.before, self.db)
        assert marked_now == must, (
            f"SPEC step 4: extra {sorted(marked_now - must)[:10]}, "
            f"missing {sorted(must - marked_now)[:10]}"
        )
        return marked_now


def since_undetermined(make_demo: Callable[..., Path], scenario: str) -> Path:
    """Nothing in the database says since when invites exist: the SuperOffice ProductVersion
    rows and any invitation rows carry SuperOffice's empty date, while emailId rows exist."""
    db = make_demo(scenario=scenario)
    execute(
        db, f"UPDATE ProductVersion SET registered = '{EMPTY_DATE}' WHERE ownerName = 'SuperOffice'"
    )
    if scenario != "r10-shape":
        execute(db, f"UPDATE invitation SET registered = '{EMPTY_DATE}'")
    assert query(db, "SELECT COUNT(*) FROM appointment WHERE emailId <> 0")[0][0] > 0
    return db


def flat(text: str) -> str:
    """Text with every run of whitespace as one space (reports wrap their lines)."""
    return " ".join(text.split())


# --- exit codes --------------------------------------------------------------------------------


def test_exit_0_when_the_upgrade_is_done_and_a_rerun_finds_nothing_to_do(demo_db: Path) -> None:
    first = invoke("upgrade", "--database-url", url(demo_db), "--unattended", "--fix-overrides")
    assert first.exit_code == 0, first.output
    assert "now safe for SuperOffice invites" in first.stderr
    assert "exit code 0" in first.stderr

    before = digest(demo_db)
    again = invoke("upgrade", "--database-url", url(demo_db), "--unattended", "--fix-overrides")
    assert again.exit_code == 0, again.output
    assert "nothing to change" in again.stderr
    assert digest(demo_db) == before, "a run with nothing to do wrote to the database"
    # each run has its own log and report, even within the same second
    assert len(logs_in(Path.cwd())) == 2
    assert len(list(Path.cwd().glob("setup-tool-*-report.html"))) == 2


def test_exit_1_on_a_database_error_keeps_the_data_and_says_why(demo_db: Path) -> None:
    execute(
        demo_db,
        "CREATE TRIGGER frozen BEFORE UPDATE ON appointment "
        "BEGIN SELECT RAISE(ABORT, 'appointments are frozen by the DBA'); END",
    )
    marked_before = marked(demo_db)

    result = invoke(
        "upgrade",
        "--database-url",
        url(demo_db),
        "--unattended",
        "--fix-overrides",
        "--log-file",
        "run.log",
    )
    assert result.exit_code == 1, result.output
    assert "appointments are frozen by the DBA" in result.stderr
    assert "Log:" in result.stderr and "run.log" in result.stderr
    assert "appointments are frozen by the DBA" in Path("run.log").read_text()
    assert marked(demo_db) == marked_before
    assert query(demo_db, "SELECT status, exit_code FROM setup_tool_run") == [("failed", 1)]

    execute(demo_db, "DROP TRIGGER frozen")
    again = invoke("upgrade", "--database-url", url(demo_db), "--unattended", "--fix-overrides")
    assert again.exit_code == 0, again.output
    assert marked(demo_db) > marked_before


BAD_TOML = 'database-url = "sqlite:///unterminated\n'

USAGE_ERRORS: dict[str, tuple[list[str], str]] = {
    "unknown option": (["upgrade", "--database-url", "{url}", "--frobnicate"], "No such option"),
    "password as an option": (["upgrade", "--password", SECRET], "No such option"),
    "malformed answer file": (["upgrade", "--config", "bad.toml"], "not valid TOML"),
    "missing answer file": (["upgrade", "--config", "nowhere.toml"], "does not exist"),
    "invalid table prefix": (
        ["upgrade", "--database-url", "{url}", "--table-prefix", "crm7;DROP TABLE x", "--dry-run"],
        "Invalid table prefix",
    ),
    "missing database unattended": (["upgrade", "--unattended"], "Missing answer"),
    "detailed exit code without dry run": (
        ["upgrade", "--database-url", "{url}", "--detailed-exitcode", "--unattended"],
        "--detailed-exitcode goes with --dry-run",
    ),
    "no synchronizer and a synchronizer version": (
        [
            "upgrade",
            "--database-url",
            "{url}",
            "--unattended",
            "--no-synchronizer",
            "--synchronizer-version",
            "3.2.284",
        ],
        "contradict",
    ),
    "unparsable synchronizer version": (
        ["upgrade", "--database-url", "{url}", "--unattended", "--synchronizer-version", "three"],
        "Cannot read the InfoBridge Synchronizer version 'three'",
    ),
    "unparsable superoffice version": (
        ["upgrade", "--database-url", "{url}", "--dry-run", "--superoffice-version", "banana"],
        "Cannot read the SuperOffice version 'banana'",
    ),
    "batch size out of range": (
        ["upgrade", "--database-url", "{url}", "--batch-size", "0"],
        "--batch-size",
    ),
    "unknown report format": (
        ["upgrade", "--database-url", "{url}", "--dry-run", "--format", "pdf"],
        "--format",
    ),
    "demo over an existing file": (["demo", "{db}"], "--overwrite"),
}


@pytest.mark.parametrize("case", USAGE_ERRORS, ids=list(USAGE_ERRORS))
def test_exit_2_on_usage_and_configuration_errors(case: str, demo_db: Path) -> None:
    Path("bad.toml").write_text(BAD_TOML)
    args, message = USAGE_ERRORS[case]
    before = digest(demo_db)
    result = invoke(*(a.format(url=url(demo_db), db=demo_db) for a in args))
    assert result.exit_code == 2, result.output
    assert result.output.count(message) == 1, result.output  # said once, plainly
    assert SECRET not in result.output
    assert digest(demo_db) == before


def test_exit_3_when_superoffice_is_older_than_8_5_r10(make_demo: Callable[..., Path]) -> None:
    db = make_demo(superoffice_version="8.1 R03")
    before = digest(db)
    for extra in (["--unattended"], ["--dry-run"], ["--dry-run", "--detailed-exitcode"], []):
        result = invoke(
            "upgrade", "--database-url", url(db), "--fix-overrides", *extra, input="y\n"
        )
        assert result.exit_code == 3, (extra, result.output)
        assert "older than 8.5 R10" in result.output
        assert WIZARD_CONFIRM not in result.output
    assert digest(db) == before


def _empty_file(path: Path) -> None:
    path.write_bytes(b"")


def _unrelated_tables(path: Path) -> None:
    execute(
        path,
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)",
        "INSERT INTO invoices VALUES (1, 9.5)",
    )


@pytest.mark.parametrize("make", [_empty_file, _unrelated_tables], ids=["empty", "unrelated"])
@pytest.mark.parametrize(
    "command", [["upgrade", "--unattended"], ["upgrade", "--dry-run"], ["detect"], ["upgrade"]]
)
def test_exit_3_when_it_is_not_a_superoffice_database(
    make: Callable[[Path], None], command: list[str], workdir: Path
) -> None:
    db = workdir / "other.db"
    make(db)
    before = digest(db)
    result = invoke(*command, "--database-url", url(db))
    assert result.exit_code == 3, result.output
    assert "does not look like a SuperOffice database" in result.stderr
    assert digest(db) == before


def test_exit_4_while_overrides_are_left_off_and_0_once_fixed(demo_db: Path) -> None:
    assert "0" in override_values(demo_db)
    result = invoke("upgrade", "--database-url", url(demo_db), "--unattended", "--report", "r.txt")
    assert result.exit_code == 4, result.output
    assert "action required" in result.stderr
    report = Path("r.txt").read_text()
    assert "--fix-overrides" in report
    assert "0" in override_values(demo_db)

    fixed = invoke("upgrade", "--database-url", url(demo_db), "--unattended", "--fix-overrides")
    assert fixed.exit_code == 0, fixed.output
    assert set(override_values(demo_db)) == {"1"}


def test_exit_4_when_the_synchronizer_is_older_than_3_2_284(make_demo: Callable[..., Path]) -> None:
    db = make_demo(synchronizer_version="3.2.283")
    plan = dry_run_report(db, "--fix-overrides")
    assert plan["findings"]["synchronizer"]["status"] == "too_old"
    oracle = FirstRunOracle(db)

    result = invoke(
        "upgrade",
        "--database-url",
        url(db),
        "--unattended",
        "--fix-overrides",
        "--report",
        "r.json",
    )
    assert result.exit_code == 4, result.output
    report = json.loads(Path("r.json").read_text())
    assert report["outcome"] == "action_required" and report["exit_code"] == 4
    check = {step["id"]: step for step in report["steps"]}["synchronizer_check"]
    assert "older than 3.2.284" in check["reason"]
    assert "older than 3.2.284" in result.stderr  # said plainly, not only in the report
    # the data is still protected, exactly as SPEC step 4 says
    assert len(oracle.check()) == step_rows(plan)["mark_invites"] > 0


def test_exit_5_while_another_run_holds_the_lock(demo_db: Path) -> None:
    before = digest(demo_db)
    with run_lock(create_engine(url(demo_db))):
        unattended = invoke("upgrade", "--database-url", url(demo_db), "--unattended")
        wizard = invoke(
            "upgrade", "--database-url", url(demo_db), "--lock-timeout", "0.3", input="y\n"
        )
        undo = invoke("undo", "--database-url", url(demo_db), "--unattended")
    for result in (unattended, wizard, undo):
        assert result.exit_code == 5, result.output
        assert "holds the lock" in result.stderr
    assert "waited 0.3 s" in wizard.stderr
    assert WIZARD_CONFIRM not in wizard.output
    assert digest(demo_db) == before

    after = invoke("upgrade", "--database-url", url(demo_db), "--unattended", "--fix-overrides")
    assert after.exit_code == 0, after.output


def test_an_unexpected_database_error_never_shows_a_traceback(demo_db: Path) -> None:
    # The database's own error, in one paragraph; the traceback is for the log file only,
    # also with -v
    with sqlite3.connect(demo_db) as db:
        db.execute(
            "CREATE TRIGGER sabotage BEFORE UPDATE ON appointment "
            "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END"
        )
    for command in (["upgrade", "--unattended", "-v"], ["upgrade", "--unattended"]):
        result = invoke(*command, "--database-url", url(demo_db), "--log-file", "run.log")
        assert result.exit_code == 1, result.output
        assert result.stderr.count("disk quota exceeded") == 1, result.stderr
        assert "Traceback" not in result.output
    assert "Traceback" in Path("run.log").read_text()


def test_a_schema_that_is_not_there_is_a_precondition(demo_db: Path) -> None:
    # SQLite has no schema crm7
    prefix = ["--database-url", url(demo_db), "--table-prefix", "crm7"]
    for command in (["detect"], ["detect", "-v"], ["upgrade", "--unattended", "-v"]):
        result = invoke(*command, *prefix)
        assert result.exit_code == 3, result.output
        assert result.stderr.count("schema 'crm7' does not exist") == 1, result.stderr


def test_exit_6_when_the_file_is_not_a_database(workdir: Path) -> None:
    junk = workdir / "junk.db"
    junk.write_bytes(bytes(range(256)) * 40)
    for command in (["upgrade", "--unattended"], ["upgrade", "--dry-run"], ["detect"]):
        result = invoke(*command, "--database-url", url(junk))
        assert result.exit_code == 6, result.output
        assert "is not a SQLite database" in result.stderr


def test_exit_6_when_sql_server_cannot_be_reached() -> None:
    server = f"127.0.0.1,{closed_port()}"
    result = invoke(
        "upgrade",
        "--unattended",
        "--server",
        server,
        "--database",
        "SuperOffice",
        "--user",
        "sa",
        "--odbc-driver",
        "FreeTDS",
        "--login-timeout",
        "2",
        env={"SETUP_TOOL_DB_PASSWORD": SECRET},
    )
    assert result.exit_code == 6, result.output
    assert f"Cannot reach SQL Server '{server}'" in result.stderr
    assert SECRET not in result.output


def _start_marking(db: Path, workdir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *tool(),
            "upgrade",
            "--database-url",
            url(db),
            "--unattended",
            "--batch-size",
            "1",
            "--fix-overrides",
            "--log-file",
            "interrupted.log",
            *args,
        ],
        cwd=workdir,
        env=tool_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_batches(db: Path, proc: subprocess.Popen[str], batches: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = query(
                db,
                "SELECT count(*) FROM setup_tool_previous_value WHERE table_name = 'appointment'",
            )[0][0]
        except sqlite3.OperationalError:  # not created yet, or a batch holds the write lock
            done = 0
        if done >= batches:
            return
        time.sleep(0.02)
    pytest.fail(f"the upgrade did not get to {batches} batches: {proc.poll()}")


def test_exit_130_on_ctrl_c_finishes_the_batch_and_a_rerun_resumes(
    make_demo: Callable[..., Path], workdir: Path
) -> None:
    db = make_demo(appointments=12000)
    to_mark = step_rows(dry_run_report(db, "--fix-overrides"))["mark_invites"]
    before = marked(db)
    assert to_mark > 200

    proc = _start_marking(db, workdir)
    _wait_for_batches(db, proc, 5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in out + err
    assert proc.returncode == 130, err
    assert "Stopping after the current batch" in err
    assert "run the same command again to resume" in err.lower()
    assert "interrupted.log" in err

    # whole batches only: every row marked so far has its previous value recorded, and the rest
    # is still to do
    recorded = query(
        db, "SELECT count(*) FROM setup_tool_previous_value WHERE table_name = 'appointment'"
    )[0][0]
    assert 5 <= recorded < to_mark
    assert marked(db) - before == recorded
    assert query(db, "SELECT status, exit_code FROM setup_tool_run") == [("interrupted", 130)]

    resumed = invoke("upgrade", "--database-url", url(db), "--unattended", "--fix-overrides")
    assert resumed.exit_code == 0, resumed.output
    assert marked(db) - before == to_mark
    again = invoke("upgrade", "--database-url", url(db), "--dry-run", "--detailed-exitcode")
    assert again.exit_code == 0, again.output


def _read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float = 60) -> str:
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        assert time.monotonic() < deadline, seen.decode()
        ready, _, _ = select.select([proc.stderr], [], [], 0.1)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, f"stderr closed before {marker!r}: {seen.decode()}"
            seen += chunk
    return seen.decode()


@pytest.mark.parametrize(
    ("command", "question"),
    [("upgrade", WIZARD_CONFIRM), ("undo", "Undo setup-tool's changes")],
)
def test_ctrl_c_at_the_confirmation_stops_at_once_and_changes_nothing(
    command: str, question: str, demo_db: Path, workdir: Path
) -> None:
    before = digest(demo_db)
    with open(workdir / "stdout.txt", "wb") as stdout:
        proc = subprocess.Popen(
            [*tool(), command, "--database-url", url(demo_db)],
            cwd=workdir,
            env=tool_env(),
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=subprocess.PIPE,
        )
        try:
            _read_until(proc, question)
            # the prompt is written just before the read starts: a signal in between is only
            # handled when the read returns (Python's signal race), so let the read begin
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        finally:
            proc.kill()
            assert proc.stdin is not None and proc.stderr is not None
            proc.stdin.close()
            err = proc.stderr.read().decode()
            proc.stderr.close()
    assert "Traceback" not in err
    assert proc.returncode == 130, err
    assert "Interrupted at a question: nothing was changed" in err
    assert "Stopping after the current batch" not in err
    assert digest(demo_db) == before


def test_an_unanswered_question_cancels_cleanly(demo_db: Path) -> None:
    before = digest(demo_db)
    for command in (["upgrade"], ["undo"]):
        result = invoke(*command, "--database-url", url(demo_db), input="")
        assert result.exit_code == 1, result.output
        assert "nothing was changed" in result.stderr
        assert "--unattended" in result.stderr
    assert digest(demo_db) == before


def test_dry_run_detailed_exitcode_is_10_while_changes_are_pending_then_0(demo_db: Path) -> None:
    args = ["upgrade", "--database-url", url(demo_db), "--dry-run"]
    assert invoke(*args).exit_code == 0
    pending = invoke(*args, "--detailed-exitcode")
    assert pending.exit_code == 10, pending.output

    done = invoke("upgrade", "--database-url", url(demo_db), "--unattended", "--fix-overrides")
    assert done.exit_code == 0, done.output

    after = invoke(*args, "--detailed-exitcode", "--format", "json")
    assert after.exit_code == 0, after.output
    assert json.loads(after.stdout)["outcome"] == "nothing_to_do"


# --- the wizard --------------------------------------------------------------------------------


def test_wizard_asks_for_the_connection_shows_the_plan_and_declining_changes_nothing(
    demo_db: Path,
) -> None:
    rows = step_rows(dry_run_report(demo_db))
    before = digest(demo_db)

    result = invoke("upgrade", input=f"{url(demo_db)}\nn\n")
    assert result.exit_code == 7, result.output  # cancelled by the operator, not a failure
    assert "SQL Server (host\\instance) or a database URL" in result.stderr
    # the findings with their evidence, and the plan with row counts, before the one question,
    # on the terminal (stderr) with the question: stdout may be redirected to a file
    assert "What setup-tool found" in result.stderr and "ProductVersion" in result.stderr
    assert (
        f"Mark pre-existing invite appointments: will change {rows['mark_invites']:,} row(s)"
        in result.stderr
    )
    assert "Switch on Diary Synchronizer Active: will change 1 row(s)" in result.stderr
    assert result.stdout == ""
    assert result.output.count(WIZARD_CONFIRM) == 1
    assert "Cancelled at the confirmation: nothing was changed" in result.stderr
    assert digest(demo_db) == before


def test_wizard_asks_for_sql_server_login_and_a_hidden_password() -> None:
    server = f"127.0.0.1,{closed_port()}"
    result = invoke(
        "upgrade",
        "--odbc-driver",
        "FreeTDS",
        "--login-timeout",
        "2",
        input=f"{server}\nSuperOffice\nsa\n{SECRET}\n",
    )
    assert "Database [SuperOffice]" in result.stderr
    assert "SQL Server login" in result.stderr
    assert "Password for sa" in result.stderr
    assert result.exit_code == 6, result.output
    assert SECRET not in result.output
    for log in logs_in(Path.cwd()):
        assert SECRET not in log.read_text()


def test_wizard_applies_after_one_confirmation_and_says_where_report_and_log_are(
    demo_db: Path, workdir: Path
) -> None:
    rows = step_rows(dry_run_report(demo_db))
    oracle = FirstRunOracle(demo_db)
    result = invoke("upgrade", "--database-url", url(demo_db), input="y\n")
    assert result.exit_code == 4, result.output  # the override row is still off
    assert result.output.count(WIZARD_CONFIRM) == 1
    assert len(oracle.check()) == rows["mark_invites"] > 0
    report = re.search(r"Report: (\S+)", result.stderr)
    log = re.search(r"Log: +(\S+)", result.stderr)
    assert report and log, result.stderr
    assert (workdir / report.group(1)).read_text().lstrip().lower().startswith("<!doctype html")
    assert "outcome action_required, exit code 4" in (workdir / log.group(1)).read_text()


def test_wizard_overrides_left_off_exit_4_and_fixed_with_fix_overrides(demo_db: Path) -> None:
    left = invoke("upgrade", "--database-url", url(demo_db), input="y\n")
    assert left.exit_code == 4, left.output
    assert "0" in override_values(demo_db)
    fixed = invoke("upgrade", "--database-url", url(demo_db), "--fix-overrides", input="y\n")
    assert fixed.exit_code == 0, fixed.output
    assert "changed 1 row(s)" in fixed.stderr
    assert set(override_values(demo_db)) == {"1"}


def test_wizard_with_the_synchronizer_present_asks_nothing_about_it(demo_db: Path) -> None:
    result = invoke("upgrade", "--database-url", url(demo_db), "--fix-overrides", input="y\n")
    assert result.exit_code == 0, result.output
    assert SYNC_QUESTION not in result.output
    assert VERSION_QUESTION not in result.output


@pytest.mark.parametrize("how", ["--no-synchronizer", "demo without synchronizer"])
def test_wizard_without_a_synchronizer_marks_nothing(
    how: str, make_demo: Callable[..., Path]
) -> None:
    if how == "--no-synchronizer":
        db, args = make_demo(), ["--no-synchronizer"]
    else:
        db, args = make_demo(synchronizer_version=None), []
    before = digest(db)
    result = invoke("upgrade", "--database-url", url(db), *args, input="y\ny\n")
    assert result.exit_code == 0, result.output
    assert SYNC_QUESTION not in result.output
    assert "nothing to change" in result.stderr
    assert digest(db) == before
    plan = dry_run_report(db, *args)
    assert plan["findings"]["synchronizer"]["in_use"] is False
    assert {s["id"]: s["decision"] for s in plan["steps"]}["mark_invites"] == "skip"


def test_wizard_licensed_only_asks_whether_it_is_in_use_yes(
    make_demo: Callable[..., Path],
) -> None:
    db = licensed_only(make_demo)
    rows = step_rows(dry_run_report(db, "--synchronizer-version", "3.2.284"))
    oracle = FirstRunOracle(db)
    # an unreadable version is asked again
    result = invoke(
        "upgrade", "--database-url", url(db), "--fix-overrides", input="y\nthree\n3.2.284\ny\n"
    )
    assert result.exit_code == 0, result.output
    assert result.output.count(SYNC_QUESTION) == 1
    assert "Cannot read the InfoBridge Synchronizer version 'three'" in result.stderr
    assert result.output.count("Its version") == 2
    assert "superoffice.exchange-sync" in result.stderr  # the evidence is shown with the question
    assert len(oracle.check()) == rows["mark_invites"] > 0


def test_wizard_licensed_only_asks_whether_it_is_in_use_no(
    make_demo: Callable[..., Path],
) -> None:
    db = licensed_only(make_demo)
    before = digest(db)
    result = invoke("upgrade", "--database-url", url(db), "--fix-overrides", input="n\ny\n")
    assert result.exit_code == 0, result.output
    assert result.output.count(SYNC_QUESTION) == 1
    assert WIZARD_CONFIRM not in result.output
    assert digest(db) == before


def test_wizard_asks_for_an_undetermined_superoffice_version(
    make_demo: Callable[..., Path],
) -> None:
    db = make_demo(superoffice_version="8.5.7346.1605")
    before, marked_before = digest(db), marked(db)
    stopped = invoke("upgrade", "--database-url", url(db), input="\n")
    assert stopped.exit_code == 3, stopped.output
    assert "8.5.7346.1605" in stopped.stderr  # the evidence is shown with the question
    assert digest(db) == before

    rows = step_rows(dry_run_report(db, "--superoffice-version", "8.5 R10"))
    oracle = FirstRunOracle(db)
    result = invoke("upgrade", "--database-url", url(db), "--fix-overrides", input="8.5 R10\ny\n")
    assert result.exit_code == 0, result.output
    assert result.output.count(VERSION_QUESTION) == 1
    assert "SuperOffice 8.5 R10 supports invites" in result.stderr
    assert len(oracle.check()) == rows["mark_invites"] > 0
    assert marked(db) > marked_before


@pytest.mark.parametrize("scenario", ["r10-shape", "new-customer"])
@pytest.mark.parametrize("answer", ["2025-09-27", ""], ids=["a date", "left empty"])
def test_wizard_asks_since_when_invites_exist_when_nothing_in_the_database_says(
    answer: str, scenario: str, make_demo: Callable[..., Path]
) -> None:
    db = since_undetermined(make_demo, scenario)
    target = TargetDatabase("sqlite", url(db), None, url(db))
    rows, before = target.database_rows(), warnings_by_id(db)
    plan = dry_run_report(db, "--unattended")
    assert plan["findings"]["invites"]["invites_since"]["source"] == "undetermined"

    result = invoke(
        "upgrade",
        "--database-url",
        url(db),
        "--fix-overrides",
        "--report",
        "run.json",
        input=f"{answer}\ny\n",
    )
    assert result.exit_code == 0, result.output
    assert result.output.count(SINCE_QUESTION) == 1
    assert result.output.count(WIZARD_CONFIRM) == 1
    assert "no SuperOffice row at 8.5 R10 or newer with a real registered date" in result.stderr
    started = target.first_run_started()
    with_date = invites_to_mark(rows, started, operator_since=R10_DAY)
    without = invites_to_mark(rows, started)
    assert with_date > without  # a date lets footprint (c) count: more invite rows
    assert newly_marked(before, db) == (with_date if answer else without)
    report = json.loads(Path("run.json").read_text())
    invites = report["findings"]["invites"]
    counted = {fp["kind"]: fp["counted"] for fp in invites["footprints"]}
    assert counted["email-id"] is bool(answer)
    assert invites["invites_since"]["source"] == ("operator" if answer else "undetermined")
    assert (NO_EMAIL_ID in flat(result.stderr)) is not bool(answer)  # the plan's warnings


def test_yes_applies_without_the_question_but_still_shows_the_plan(demo_db: Path) -> None:
    oracle = FirstRunOracle(demo_db)
    result = invoke("upgrade", "--database-url", url(demo_db), "--yes", "--fix-overrides")
    assert result.exit_code == 0, result.output
    assert oracle.check()  # applied: the rows SPEC step 4 names are marked
    assert set(override_values(demo_db)) == {"1"}
    assert WIZARD_CONFIRM not in result.output
    assert "will change" in result.stderr


# --- unattended --------------------------------------------------------------------------------


def test_unattended_ignores_stdin_and_names_the_missing_synchronizer_answer(
    make_demo: Callable[..., Path], workdir: Path
) -> None:
    db = licensed_only(make_demo)
    before = digest(db)
    result = invoke(
        "upgrade",
        "--database-url",
        url(db),
        "--unattended",
        "--fix-overrides",
        input="y\n3.2.284\ny\n",
    )
    assert result.exit_code == 2, result.output
    for name in (
        "--synchronizer-version",
        "--no-synchronizer",
        "SETUP_TOOL_SYNCHRONIZER_VERSION",
        "'synchronizer-version / no-synchronizer'",
    ):
        assert name in result.stderr
    assert SYNC_QUESTION not in result.output
    assert digest(db) == before
    (log,) = logs_in(workdir)
    assert "Missing answer" in log.read_text()


def test_unattended_names_the_missing_database_answer(workdir: Path) -> None:
    result = invoke("upgrade", "--unattended", input="sqlite:///crm.db\n")
    assert result.exit_code == 2, result.output
    for name in ("--database-url", "SETUP_TOOL_DATABASE_URL", "answer-file key database-url"):
        assert name in result.stderr
    assert "SQL Server (host" not in result.output
    (log,) = logs_in(workdir)
    assert "Missing answer: which database" in log.read_text()


def test_unattended_names_the_missing_password_answer() -> None:
    result = invoke(
        "upgrade",
        "--unattended",
        "--server",
        "sql01",
        "--database",
        "SuperOffice",
        "--user",
        "sa",
        input=f"{SECRET}\n",
    )
    assert result.exit_code == 2, result.output
    assert "SETUP_TOOL_DB_PASSWORD" in result.stderr and f"'{PASSWORD_KEY}'" in result.stderr
    assert "Password for" not in result.output


def test_unattended_blocks_on_an_undetermined_superoffice_version_and_says_how_to_answer(
    make_demo: Callable[..., Path],
) -> None:
    db = make_demo(superoffice_version="8.5.7346.1605")
    result = invoke("upgrade", "--database-url", url(db), "--unattended", input="8.5 R10\n")
    assert result.exit_code == 3, result.output
    for name in ("--superoffice-version", "SETUP_TOOL_SUPEROFFICE_VERSION", "superoffice-version"):
        assert name in result.stderr
    answered = invoke(
        "upgrade",
        "--database-url",
        url(db),
        "--unattended",
        "--fix-overrides",
        env={"SETUP_TOOL_SUPEROFFICE_VERSION": "8.5 R10"},
    )
    assert answered.exit_code == 0, answered.output


def test_unattended_never_asks_since_when_and_goes_on_without_email_id(
    make_demo: Callable[..., Path], workdir: Path
) -> None:
    db = since_undetermined(make_demo, "new-customer")
    target = TargetDatabase("sqlite", url(db), None, url(db))
    rows, before = target.database_rows(), warnings_by_id(db)
    result = invoke(
        "upgrade",
        "--database-url",
        url(db),
        "--unattended",
        "--fix-overrides",
        "--report",
        "run.json",
        "--log-file",
        "run.log",
        input="2025-09-27\n",
    )
    assert result.exit_code == 0, result.output
    assert SINCE_QUESTION not in result.output
    expected = invites_to_mark(rows, target.first_run_started())  # without footprint (c)
    assert newly_marked(before, db) == expected
    assert expected < invites_to_mark(rows, target.first_run_started(), operator_since=R10_DAY)
    report = json.loads((workdir / "run.json").read_text())
    assert any(NO_EMAIL_ID in warning["message"] for warning in report["warnings"])
    invites = report["findings"]["invites"]
    assert invites["invites_since"] == {"at": None, "source": "undetermined"}
    assert {fp["kind"]: fp["counted"] for fp in invites["footprints"]}["email-id"] is False


def test_unattended_prints_and_logs_that_it_goes_on_without_email_id(
    make_demo: Callable[..., Path], workdir: Path
) -> None:
    db = since_undetermined(make_demo, "r10-shape")
    result = invoke(
        "upgrade",
        "--database-url",
        url(db),
        "--unattended",
        "--fix-overrides",
        "--log-file",
        "run.log",
    )
    assert result.exit_code == 0, result.output
    assert NO_EMAIL_ID in flat(result.stderr)
    assert NO_EMAIL_ID in flat((workdir / "run.log").read_text())
    # Nothing else marks an r10-shape meeting: the summary says why, and what would change it.
    assert "cannot count while invites-since is undetermined" in flat(result.stderr)
    assert "give --invites-since DATE" in flat(result.stderr)


def _wait_without_input(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run with stdin a pipe that stays open and silent: a read would wait for ever."""
    with open(cwd / "out.txt", "w") as out, open(cwd / "err.txt", "w") as err:
        proc = subprocess.Popen(
            [*tool(), *args],
            cwd=cwd,
            env=tool_env(),
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=err,
            text=True,
        )
        try:
            code = proc.wait(timeout=60)
        finally:
            proc.kill()
            assert proc.stdin is not None
            proc.stdin.close()
    text = (cwd / "out.txt").read_text() + (cwd / "err.txt").read_text()
    assert "Traceback" not in text
    return code, text


def test_unattended_never_waits_for_stdin(make_demo: Callable[..., Path], workdir: Path) -> None:
    db = make_demo()
    code, text = _wait_without_input(
        ["upgrade", "--database-url", url(db), "--unattended", "--fix-overrides"], workdir
    )
    assert code == 0, text
    code, text = _wait_without_input(
        ["upgrade", "--database-url", url(licensed_only(make_demo)), "--unattended"], workdir
    )
    assert code == 2, text
    code, text = _wait_without_input(["undo", "--database-url", url(db), "--unattended"], workdir)
    assert code == 0, text
    assert "Undid run(s) 1" in text
    undetermined = since_undetermined(make_demo, "r10-shape")
    code, text = _wait_without_input(
        ["upgrade", "--database-url", url(undetermined), "--unattended", "--fix-overrides"], workdir
    )
    assert code == 0, text
    assert SINCE_QUESTION not in text


def test_unattended_always_writes_a_log_file(demo_db: Path, workdir: Path) -> None:
    dry = invoke("upgrade", "--database-url", url(demo_db), "--unattended", "--dry-run")
    assert dry.exit_code == 0, dry.output
    (log,) = logs_in(workdir)
    assert re.fullmatch(r"setup-tool-\d{8}-\d{6}\.log", log.name)
    assert "upgrade --dry-run --unattended" in log.read_text()
    log.unlink()

    chosen = workdir / "logs" / "upgrade.log"
    chosen.parent.mkdir()
    real = invoke("upgrade", "--database-url", url(demo_db), "--unattended", "--log-file", chosen)
    assert real.exit_code == 4, real.output
    assert logs_in(workdir) == []
    text = chosen.read_text()
    # UTC timestamps that say so (tests/test_log_content.py has the rest of the log's content)
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00 INFO", text, re.M)
    assert "outcome action_required, exit code 4" in text


# --- after the change ----------------------------------------------------------------------------


def test_the_summary_and_the_dry_run_report_say_what_to_do_after_the_change(
    make_demo: Callable[..., Path], workdir: Path
) -> None:
    db = make_demo()
    detailed = invoke(
        "upgrade", "--database-url", url(db), "--dry-run", "--unattended", "--detailed-exitcode"
    )
    assert detailed.exit_code == 10, detailed.output
    plan = dry_run_report(db, "--unattended")
    assert len(plan["advice"]) >= 2
    for phrase in ADVICE:
        assert any(phrase in line for line in plan["advice"]), phrase
    for fmt in ("text", "md", "html"):
        report = invoke("upgrade", "--database-url", url(db), "--dry-run", "--format", fmt)
        assert report.exit_code == 0, report.output
        assert "After the change" in report.stdout, fmt
        for phrase in ADVICE:
            assert phrase in flat(report.stdout), (fmt, phrase)

    done = invoke("upgrade", "--database-url", url(db), "--unattended", "--fix-overrides")
    assert done.exit_code == 0, done.output
    for line in plan["advice"]:
        assert f"  * {line}" in done.stderr
    for phrase in ADVICE:
        assert phrase in flat(done.stderr), phrase

    again = invoke("upgrade", "--database-url", url(db), "--unattended", "--fix-overrides")
    assert again.exit_code == 0, again.output
    assert not any(phrase in again.stderr for phrase in ADVICE)  # the preference did not change
    assert dry_run_report(db, "--unattended")["advice"] == []


def test_no_advice_when_the_preference_was_on_already(make_demo: Callable[..., Path]) -> None:
    db = make_demo(scenario="existing-customer")
    assert dry_run_report(db, "--unattended")["advice"] == []
    done = invoke("upgrade", "--database-url", url(db), "--unattended", "--fix-overrides")
    assert done.exit_code == 0, done.output
    assert not any(phrase in done.stderr for phrase in ADVICE)
    assert "before invites arrived" in done.stderr  # why nothing was marked


def test_the_wizard_summary_says_what_to_do_after_the_change(demo_db: Path) -> None:
    result = invoke("upgrade", "--database-url", url(demo_db), "--fix-overrides", input="y\n")
    assert result.exit_code == 0, result.output
    summary = flat(result.stderr.split(WIZARD_CONFIRM, 1)[1])
    for phrase in ADVICE:
        assert phrase in summary, phrase


def test_options_from_environment_variables(demo_db: Path) -> None:
    oracle = FirstRunOracle(demo_db)
    result = invoke(
        "upgrade",
        env={
            "SETUP_TOOL_DATABASE_URL": url(demo_db),
            "SETUP_TOOL_UNATTENDED": "1",
            "SETUP_TOOL_FIX_OVERRIDES": "true",
            "SETUP_TOOL_BATCH_SIZE": "7",
            "SETUP_TOOL_REPORT": "env-report.json",
        },
    )
    assert result.exit_code == 0, result.output
    report = json.loads(Path("env-report.json").read_text())
    assert report["outcome"] == "done"
    assert len(oracle.check()) == step_rows(report)["mark_invites"] > 0


def test_options_from_an_answer_file_with_sections(demo_db: Path) -> None:
    Path("answers.toml").write_text(
        "# answers for the packaging script\n"
        "[connection]\n"
        f"database-url = '{url(demo_db)}'\n"
        "[answers]\n"
        "unattended = true\n"
        "fix_overrides = true\n"
        "batch-size = 50\n"
        "[output]\n"
        "report = 'file-report.json'\n"
    )
    result = invoke("upgrade", "--config", "answers.toml")
    assert result.exit_code == 0, result.output
    assert json.loads(Path("file-report.json").read_text())["outcome"] == "done"
    via_env = invoke("upgrade", env={"SETUP_TOOL_CONFIG": "answers.toml"})
    assert via_env.exit_code == 0, via_env.output
    assert "nothing to change" in via_env.stderr


def test_command_line_beats_environment_beats_answer_file(demo_db: Path, workdir: Path) -> None:
    Path("answers.toml").write_text(
        f"database-url = '{url(demo_db)}'\nlog-file = 'from-file.log'\nunattended = true\n"
        "dry-run = true\nformat = 'md'\n"
    )
    base = ["upgrade", "--config", "answers.toml"]
    env = {"SETUP_TOOL_LOG_FILE": "from-env.log", "SETUP_TOOL_FORMAT": "json"}

    only_file = invoke(*base)
    assert only_file.exit_code == 0 and only_file.stdout.startswith("#")
    file_and_env = invoke(*base, env=env)
    assert file_and_env.exit_code == 0 and json.loads(file_and_env.stdout)["mode"] == "dry-run"
    everything = invoke(*base, "--log-file", "from-cli.log", "--format", "text", env=env)
    assert everything.exit_code == 0 and everything.stdout.startswith("setup-tool dry-run report")
    assert sorted(p.name for p in workdir.glob("from-*.log")) == [
        "from-cli.log",
        "from-env.log",
        "from-file.log",
    ]
    for name in ("from-cli.log", "from-env.log", "from-file.log"):
        assert (workdir / name).read_text().count("upgrade --dry-run --unattended") == 1


def test_a_typo_in_the_answer_file_is_an_error_with_a_suggestion(demo_db: Path) -> None:
    Path("typo.toml").write_text(f"database-url = '{url(demo_db)}'\nfix-overides = true\n")
    result = invoke("upgrade", "--config", "typo.toml", "--unattended")
    assert result.exit_code == 2, result.output
    assert "Unknown key 'fix-overides'" in result.output
    assert "Did you mean 'fix-overrides'?" in result.output

    Path("nonsense.toml").write_text("flavour = 'blue'\n")
    nonsense = invoke("detect", "--config", "nonsense.toml")
    assert nonsense.exit_code == 2
    assert "Valid keys:" in nonsense.output and "database-url" in nonsense.output


def test_answer_file_value_of_the_wrong_type_is_a_usage_error(demo_db: Path) -> None:
    Path("answers.toml").write_text(f"database-url = '{url(demo_db)}'\nbatch-size = 'many'\n")
    result = invoke("upgrade", "--config", "answers.toml", "--unattended", "--dry-run")
    assert result.exit_code == 2, result.output
    assert "batch-size" in result.output


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and p.name != "help"]


@pytest.mark.parametrize("name", ["upgrade", "detect", "history", "undo"])
def test_every_option_has_an_environment_variable_and_an_answer_file_key(
    name: str, demo_db: Path
) -> None:
    command = cli.commands[name]  # type: ignore[attr-defined]
    keys = []
    for opt in _options(command):
        long = max((o for o in opt.opts if o.startswith("--")), key=len)
        assert opt.envvar == envvar(long), long
        if long != "--config":
            keys.append(long.removeprefix("--"))
    # every option's long name is a valid key: the answer file gets past the key check (and then
    # fails on a value, before anything runs)
    Path("all.toml").write_text("".join(f"{key} = 'x'\n" for key in [*keys, PASSWORD_KEY]))
    result = invoke(name, "--config", "all.toml")
    assert result.exit_code == 2, result.output
    assert "Unknown key" not in result.output
    assert "Invalid value for '--" in result.output


def test_an_answer_file_key_given_twice_is_an_error(demo_db: Path) -> None:
    Path("twice.toml").write_text(
        f"[a]\ndatabase-url = '{url(demo_db)}'\n[b]\ndatabase_url = 'sqlite:///other.db'\n"
    )
    result = invoke("detect", "--config", "twice.toml")
    assert result.exit_code == 2, result.output
    assert "gives 'database-url' twice" in result.output


# --- passwords ---------------------------------------------------------------------------------


def _sql_server(port: int) -> list[str]:
    return [
        "--server",
        f"127.0.0.1,{port}",
        "--database",
        "SuperOffice",
        "--user",
        "sa",
        "--odbc-driver",
        "FreeTDS",
        "--login-timeout",
        "2",
    ]


PASSWORD_CASES: dict[str, tuple[list[str], dict[str, str], str | None]] = {
    # (arguments, environment, answer file text)
    "detect, password from the environment": (
        ["detect", "{sql}"],
        {"SETUP_TOOL_DB_PASSWORD": SECRET},
        None,
    ),
    "upgrade unattended, environment": (
        ["upgrade", "--unattended", "{sql}"],
        {"SETUP_TOOL_DB_PASSWORD": SECRET},
        None,
    ),
    "dry run, environment": (
        ["upgrade", "--dry-run", "{sql}"],
        {"SETUP_TOOL_DB_PASSWORD": SECRET},
        None,
    ),
    "upgrade unattended, answer file": (
        ["upgrade", "--unattended", "--config", "a.toml", "{sql}"],
        {},
        f"db-password = '{SECRET}'\n",
    ),
    "history, answer file": (
        ["history", "--config", "a.toml", "{sql}"],
        {},
        f"[connection]\ndb-password = '{SECRET}'\n",
    ),
    "postgresql URL with the password": (
        [
            "upgrade",
            "--unattended",
            "--database-url",
            f"postgresql+psycopg://crm:{SECRET}@127.0.0.1:{{port}}/crm",
        ],
        {},
        None,
    ),
    "postgresql URL, password from the environment": (
        ["detect", "--database-url", "postgresql+psycopg://crm@127.0.0.1:{port}/crm"],
        {"SETUP_TOOL_DB_PASSWORD": SECRET},
        None,
    ),
}


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
@pytest.mark.parametrize("case", PASSWORD_CASES, ids=list(PASSWORD_CASES))
def test_the_password_never_appears_when_the_connection_fails(
    case: str, verbose: bool, workdir: Path
) -> None:
    args, env, answers = PASSWORD_CASES[case]
    if answers is not None:
        Path("a.toml").write_text(answers)
    port = closed_port()
    argv: list[str] = []
    for arg in args:
        argv += _sql_server(port) if arg == "{sql}" else [arg.replace("{port}", str(port))]
    argv += ["--log-file", "run.log", "--report", "report.json"] + (["-v"] if verbose else [])
    result = invoke(*argv, env=env)
    assert result.exit_code == 6, result.output
    assert "Cannot reach" in result.stderr
    assert SECRET not in result.output
    assert SECRET not in Path("run.log").read_text()
    assert "Cannot reach" in Path("run.log").read_text()
    for path in workdir.iterdir():
        if path.is_file() and path.name != "a.toml":
            assert SECRET not in path.read_text(errors="replace"), path


def test_the_password_never_appears_in_a_successful_run(demo_db: Path, workdir: Path) -> None:
    env = {"SETUP_TOOL_DB_PASSWORD": SECRET}
    for fmt in ("json", "html"):
        result = invoke(
            "upgrade",
            "--database-url",
            url(demo_db),
            "--unattended",
            "-v",
            "--fix-overrides",
            "--report",
            f"report.{fmt}",
            env=env,
        )
        assert result.exit_code == 0, result.output
        assert SECRET not in result.output
    proc = run_tool(
        "history", "--database-url", url(demo_db), "--format", "json", cwd=workdir, **env
    )
    assert proc.returncode == 0 and SECRET not in proc.stdout + proc.stderr
    assert SECRET.encode() not in demo_db.read_bytes()
    for path in workdir.iterdir():
        if path.is_file() and path.suffix in (".json", ".html", ".log"):
            assert SECRET not in path.read_text(), path


# --- help --------------------------------------------------------------------------------------


COMMANDS = ["upgrade", "detect", "history", "undo", "demo"]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_a_summary_an_example_and_env_vars(name: str) -> None:
    result = invoke(name, "--help")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Usage: setup-tool {name} [OPTIONS]")
    assert lines[1] == "" and lines[2].strip(), result.stdout  # what it does, first
    assert re.search(r"^\s+Examples?:\n\s+(\S+=\S+ )?setup-tool " + name, result.stdout, re.M)
    for opt in _options(cli.commands[name]):  # type: ignore[attr-defined]
        assert f"env var: {opt.envvar}" in " ".join(result.stdout.split()), opt.name
    short = invoke(name, "-h")
    assert short.stdout == result.stdout


def test_top_level_help_and_version(workdir: Path) -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for name in COMMANDS:  # a one-line summary each, not cut off
        summary = re.search(rf"^  {name} +(\S.*)\n(?!   )", result.stdout, re.M)
        assert summary, (name, result.stdout)
        assert not summary.group(1).endswith("..."), summary.group(1)
    assert "setup-tool upgrade --database-url sqlite:///crm.db --dry-run" in result.stdout

    version = run_tool("--version", cwd=workdir)
    assert version.returncode == 0
    assert version.stdout.strip() == f"setup-tool, version {__version__}"


def test_the_wizard_offers_the_answer_files_connection_as_its_default(demo_db: Path) -> None:
    answers = Path("answers.toml")
    answers.write_text(f'database-url = "{url(demo_db)}"\n')
    before = demo_db.read_bytes()
    result = invoke("upgrade", "--config", answers, input="\nn\n")  # accept it, then decline
    assert f"[{url(demo_db)}]" in result.stderr  # the connection screen shows the remembered one
    assert "Apply these changes" in result.stderr
    assert result.exit_code == 7 and demo_db.read_bytes() == before  # cancelled by the operator


def test_answers_saved_by_the_wizard_drive_the_unattended_run(
    make_demo: Callable[..., Path],
) -> None:
    rehearsal, production = make_demo(), make_demo()
    env = {"SETUP_TOOL_DB_PASSWORD": "S3cret-Pa55"}
    wizard = invoke(
        "upgrade",
        "--fix-overrides",
        "--save-answers",
        "answers.toml",
        input=f"{url(rehearsal)}\ny\n",
        env=env,
    )
    assert wizard.exit_code == 0, wizard.output
    saved = Path("answers.toml").read_text()
    assert "fix-overrides = true" in saved and "S3cret" not in saved
    # the same answers, another database: only the connection changes
    Path("answers.toml").write_text(saved.replace(str(rehearsal), str(production)))
    unattended = invoke("upgrade", "--unattended", "--config", "answers.toml", env=env)
    assert unattended.exit_code == 0, unattended.output
    assert marked(production) == marked(rehearsal) > 0
