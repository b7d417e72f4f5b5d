"""Nothing the tool writes can harm the database, leak a password, or end a run in tracebacks.

- Reports, answer files, T-SQL scripts and logs go only to new files or existing regular files
  that are not the database or one of its companion files, resolved through symbolic links;
  anything else is exit 2 before the tool connects, in every command and mode (issue 9, item 1).
- --save-answers never saves a password, a password typed into --database-url draws a warning,
  and a short password is hidden where it stands as the password, not wherever its characters
  occur (item 3).
- A log file that can no longer be written gives one warning and the run goes on (item 6).

Real SQLite files (the demo), real symbolic links, hard links, pipes and device nodes, a real
PostgreSQL server where a password must log in, and the real command line (click's CliRunner,
or a process where its limits matter).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import resource
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import invoke, tool

from setup_tool.demo import DemoOptions
from setup_tool.errors import UsageError
from setup_tool.logs import LogFileHandler, configure_logging, hide_secrets
from setup_tool.output_files import OutputFile, check_output_files, database_files
from setup_tool.report import write_text_file

pytestmark = pytest.mark.usefixtures("workdir")

LOCK_SUFFIX = ".setup-tool.lock"


# --- helpers -----------------------------------------------------------------------------------


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def url(db: Path) -> str:
    return f"sqlite:///{db}"


def sqlite_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db)) as con:
        return con.execute(sql).fetchall()


def marked(db: Path) -> int:
    return int(sqlite_rows(db, "SELECT count(*) FROM appointment WHERE cautionWarning = 1")[0][0])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def files_in(folder: Path) -> dict[str, str]:
    """Every entry of `folder`: what it is, and for a regular file its content's digest."""
    seen = {}
    for entry in sorted(folder.iterdir()):
        mode = entry.lstat().st_mode
        if stat.S_ISLNK(mode):
            seen[entry.name] = f"link to {os.readlink(entry)}"
        elif stat.S_ISREG(mode):
            seen[entry.name] = digest(entry)
        else:
            seen[entry.name] = f"mode {stat.S_IFMT(mode):o}"
    return seen


# Every command that writes a file, in each of its modes: (arguments, the output options it has).
COMMANDS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "upgrade --dry-run": (
        ["upgrade", "--dry-run", "--unattended"],
        ("--report", "--log-file", "--save-answers"),
    ),
    "upgrade --dry-run --format sql": (
        ["upgrade", "--dry-run", "--unattended", "--format", "sql"],
        ("--report", "--log-file"),
    ),
    "upgrade": (["upgrade", "--unattended"], ("--report", "--log-file", "--save-answers")),
    "upgrade (wizard)": (["upgrade", "--yes"], ("--report", "--log-file", "--save-answers")),
    "detect": (["detect"], ("--report", "--log-file")),
    "history": (["history"], ("--report", "--log-file")),
    "undo": (["undo", "--unattended"], ("--report", "--log-file")),
}

# What the output is pointed at, made in the database's folder: name -> maker(db) -> path.
TARGETS: dict[str, Callable[[Path], Path]] = {
    "the database": lambda db: db,
    "its -journal": lambda db: db.with_name(db.name + "-journal"),
    "its -wal": lambda db: db.with_name(db.name + "-wal"),
    "its -shm": lambda db: db.with_name(db.name + "-shm"),
    "its run lock file": lambda db: db.with_name(db.name + LOCK_SUFFIX),
    "a symlink to the database": lambda db: _symlink(db.with_name("alias.db"), db.name),
    "a hard link to the database": lambda db: _hard_link(db.with_name("hard.db"), db),
    "the database by a path through a symlinked folder": lambda db: (
        _symlink(db.parent / "via", ".") / db.name
    ),
}


def _symlink(link: Path, to: str) -> Path:
    link.symlink_to(to)
    return link


def _hard_link(link: Path, to: Path) -> Path:
    os.link(to, link)
    return link


def _args(command: str, db: Path, option: str, target: Path) -> list[object]:
    argv, _ = COMMANDS[command]
    return [*argv, "--database-url", url(db), option, target]


def _cases() -> Iterator[Any]:
    for command, (_, options) in COMMANDS.items():
        for option in options:
            for target in TARGETS:
                yield pytest.param(command, option, target, id=f"{command} {option} {target}")


# --- item 1: the database and its companion files are never an output --------------------------


@pytest.mark.parametrize(("command", "option", "target"), list(_cases()))
def test_no_output_ever_lands_on_the_database_or_its_companion_files(
    demo_db: Path, command: str, option: str, target: str
) -> None:
    path = TARGETS[target](demo_db)
    before = files_in(demo_db.parent)

    result = invoke(*_args(command, demo_db, option, path), input="y\n")

    assert result.exit_code == 2, result.output
    assert "Cannot write the file" in result.stderr and option in result.stderr
    assert "stopped before connecting" in result.stderr
    # Byte for byte the same folder: the database, no journal, no lock file, no log, no report.
    assert files_in(demo_db.parent) == before


def test_the_issue_example_a_dry_run_report_over_the_database(demo_db: Path) -> None:
    """setup-tool upgrade --database-url sqlite:///crm.db --dry-run --report crm.db"""
    os.chdir(demo_db.parent)
    before = digest(demo_db)
    result = invoke(
        "upgrade", "--database-url", "sqlite:///crm.db", "--dry-run", "--report", "crm.db"
    )
    assert result.exit_code == 2, result.output
    assert "it is the database itself" in result.stderr
    assert digest(demo_db) == before
    assert sorted(p.name for p in demo_db.parent.iterdir()) == ["crm.db"]


@pytest.mark.parametrize("option", ["--report", "--save-answers", "--log-file"])
@pytest.mark.parametrize("node", ["/dev/null", "a device node of our own", "a named pipe"])
def test_a_device_node_or_pipe_is_never_replaced(
    demo_db: Path, workdir: Path, node: str, option: str
) -> None:
    if node == "/dev/null":
        path = Path("/dev/null")
    elif node == "a named pipe":
        path = workdir / "pipe"
        os.mkfifo(path)
    else:
        path = workdir / "null"
        try:  # the same device as /dev/null (1, 3), in a folder of this test's own
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            pytest.skip("creating a device node needs root (CAP_MKNOD)")
    device = path.lstat()
    before = digest(demo_db)

    if option == "--log-file":  # a process: opening a pipe with no reader would hang in-process
        proc = subprocess.run(
            [*tool(), "upgrade", "--database-url", url(demo_db), "--dry-run", option, path],
            cwd=workdir,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("SETUP_TOOL_")},
        )
        code, stderr = proc.returncode, proc.stderr
    else:
        result = invoke("upgrade", "--database-url", url(demo_db), "--dry-run", option, path)
        code, stderr = result.exit_code, result.stderr

    assert code == 2, stderr
    assert "not a regular file" in stderr and "Traceback" not in stderr
    after = path.lstat()
    assert (after.st_mode, after.st_ino, after.st_rdev) == (
        device.st_mode,
        device.st_ino,
        device.st_rdev,
    )
    assert digest(demo_db) == before


@pytest.mark.parametrize("option", ["--report", "--save-answers", "--log-file"])
@pytest.mark.parametrize("link", ["to another file", "dangling"])
def test_a_symlink_is_never_replaced_nor_written_through(
    demo_db: Path, workdir: Path, option: str, link: str
) -> None:
    pointee = workdir / "notes.txt"
    if link == "to another file":
        pointee.write_text("my notes\n")
    path = _symlink(workdir / "out.json", pointee.name)
    before = files_in(workdir)

    result = invoke("upgrade", "--database-url", url(demo_db), "--dry-run", option, path)

    assert result.exit_code == 2, result.output
    assert "symbolic link" in result.stderr
    assert files_in(workdir) == before


@pytest.mark.parametrize("option", ["--report", "--save-answers", "--log-file"])
def test_another_sqlite_database_is_never_an_output(
    demo_db: Path, workdir: Path, option: str
) -> None:
    """Even one this run does not open (another copy, another customer): it is a database."""
    other = workdir / "other.db"
    shutil.copyfile(demo_db, other)
    before = digest(other)
    result = invoke("upgrade", "--database-url", url(demo_db), "--dry-run", option, other)
    assert result.exit_code == 2, result.output
    assert "it is a SQLite database" in result.stderr
    assert digest(other) == before


def test_the_database_typed_at_the_wizards_prompt_is_protected_too(
    demo_db: Path, workdir: Path
) -> None:
    before = files_in(workdir)
    result = invoke(
        "upgrade", "--dry-run", "--save-answers", demo_db, input=f"{url(demo_db)}\ny\n" * 3
    )
    assert result.exit_code == 2, result.output
    assert files_in(workdir) == before


@pytest.mark.parametrize("command", ["upgrade --dry-run", "detect", "history", "undo"])
def test_refused_before_connecting_even_to_a_server(command: str, workdir: Path) -> None:
    """A server that does not answer would be exit 6: the refusal comes first."""
    argv, _ = COMMANDS[command]
    server = f"postgresql+psycopg://crm@127.0.0.1:{closed_port()}/crm"
    _symlink(workdir / "report.html", "elsewhere.html")
    result = invoke(*argv, "--database-url", server, "--report", "report.html")
    assert result.exit_code == 2, result.output
    assert not (workdir / "elsewhere.html").exists()


@pytest.mark.parametrize("option", ["--report", "--log-file", "--save-answers"])
def test_a_real_run_checks_its_outputs_can_be_written_before_the_first_change(
    demo_db: Path, workdir: Path, option: str
) -> None:
    before = files_in(demo_db.parent)
    result = invoke(
        "upgrade", "--database-url", url(demo_db), "--unattended", option, "no/such/folder/x.txt"
    )
    assert result.exit_code == 2, result.output
    assert "its folder does not exist" in result.stderr
    assert files_in(demo_db.parent) == before  # not upgraded, then exit 1: not touched at all


def test_a_real_run_checks_the_default_report_can_be_written(
    demo_db: Path, workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default report lands in the tool's own folder (output_files.default_output_folder);
    here a file stands where that folder would be, so the run must not start rather than
    upgrade and then fail on the report."""
    blocker = tmp_path / "state"
    blocker.write_text("a file, not a folder")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    before = files_in(workdir)
    result = invoke(
        "upgrade", "--database-url", url(demo_db), "--unattended", "--log-file", workdir / "run.log"
    )
    assert result.exit_code == 2, result.output
    assert "Cannot create the folder for setup-tool's logs and reports" in result.stderr
    assert "--report" in result.stderr
    assert files_in(workdir) == before


def test_two_outputs_on_one_file_are_refused(demo_db: Path, workdir: Path) -> None:
    before = digest(demo_db)
    result = invoke(
        "upgrade", "--database-url", url(demo_db), "--dry-run", "--report", "out.txt",
        "--save-answers", "./out.txt",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "name the same file" in result.stderr
    assert not (workdir / "out.txt").exists()
    assert digest(demo_db) == before


def test_a_report_that_fails_after_a_real_run_keeps_the_runs_outcome(
    demo_db: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder is checked before the first change; if it vanishes during the run, the run's
    result and exit code stand, with a warning (the report is still stored with the run)."""
    import setup_tool.upgrade

    folder = workdir / "reports"
    folder.mkdir()
    real_run = setup_tool.upgrade.run_upgrade

    def run_then_lose_the_folder(*args: Any, **kwargs: Any) -> Any:
        result = real_run(*args, **kwargs)
        folder.rmdir()
        return result

    monkeypatch.setattr(setup_tool.upgrade, "run_upgrade", run_then_lose_the_folder)
    result = invoke(
        "upgrade", "--database-url", url(demo_db), "--unattended", "--report", folder / "r.json"
    )
    assert result.exit_code in (0, 4), result.output
    assert "Cannot write the file" in result.stderr and "not affected" in result.stderr
    assert marked(demo_db) > 0
    (stored,) = sqlite_rows(demo_db, "SELECT report_json FROM setup_tool_run")
    assert json.loads(stored[0])["report_file"] is None


def test_ordinary_outputs_still_work(demo_db: Path, workdir: Path) -> None:
    (workdir / "old-report.md").write_text("old\n")
    (workdir / "old.log").write_text("earlier run\n")
    result = invoke(
        "upgrade", "--database-url", url(demo_db), "--dry-run", "--report", "old-report.md",
        "--log-file", "old.log", "--save-answers", "answers.toml",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (workdir / "old-report.md").read_text() != "old\n"
    assert (workdir / "old.log").read_text().startswith("earlier run\n")
    assert "database-url" in (workdir / "answers.toml").read_text()
    assert list(workdir.glob(".*.tmp")) == []  # the writability probes leave nothing behind


# --- item 1: the rule itself, for every writer ------------------------------------------------


def test_database_files_are_the_database_and_its_companions(demo_db: Path) -> None:
    names = {p.name for p in database_files(url(demo_db))}
    assert names == {"crm.db", "crm.db-journal", "crm.db-wal", "crm.db-shm", "crm.db" + LOCK_SUFFIX}
    assert database_files("postgresql+psycopg://u@h/db") == ()
    assert database_files("sqlite://") == ()
    assert database_files(None) == ()


def test_write_text_file_never_replaces_a_link_or_a_device(workdir: Path) -> None:
    (workdir / "kept.txt").write_text("kept\n")
    link = _symlink(workdir / "report.txt", "kept.txt")
    with pytest.raises(UsageError) as raised:
        write_text_file(link, "report")
    assert "symbolic link" in raised.value.message
    assert link.is_symlink() and (workdir / "kept.txt").read_text() == "kept\n"
    assert list(workdir.glob(".*.tmp")) == []

    device = Path("/dev/null")
    rdev = device.stat().st_rdev
    with pytest.raises(UsageError):
        write_text_file(device, "report")
    assert stat.S_ISCHR(device.stat().st_mode) and device.stat().st_rdev == rdev


def test_the_log_handler_never_opens_a_link_or_a_database(demo_db: Path, workdir: Path) -> None:
    before = digest(demo_db)
    for path in (_symlink(workdir / "run.log", "crm.db"), demo_db):
        with pytest.raises(UsageError):
            configure_logging(path, None, False)
    assert digest(demo_db) == before
    configure_logging(None, None, False)


def test_check_output_files_accepts_new_and_regular_files(workdir: Path) -> None:
    (workdir / "old.txt").write_text("x")
    check_output_files(
        [
            OutputFile(workdir / "new.html", "--report"),
            OutputFile(workdir / "old.txt", "--log-file", appends=True),
            None,
        ],
        None,
    )
    assert sorted(p.name for p in workdir.iterdir()) == ["old.txt"]


# --- item 3: passwords ---------------------------------------------------------------------------


def test_save_answers_never_saves_the_password_in_the_url(pg_database: Any, workdir: Path) -> None:
    from postgres_fixture import CRM_USER_PASSWORD
    from superoffice_databases import postgresql_target

    target = postgresql_target(pg_database, DemoOptions(appointments=300))
    assert CRM_USER_PASSWORD in target.url
    result = invoke(
        "upgrade", *target.connection_args(), "--dry-run", "--save-answers", "a.toml",
        "--log-file", "run.log",
    )  # fmt: skip
    assert result.exit_code == 0, result.output

    answers = (workdir / "a.toml").read_text()
    assert "saved without the password" in answers
    for text in (answers, result.output, (workdir / "run.log").read_text()):
        assert CRM_USER_PASSWORD not in text
    assert "warning" in result.stderr.lower() and "SETUP_TOOL_DB_PASSWORD" in result.stderr

    # The saved file is the unattended run, with the password from the environment.
    again = invoke(
        "upgrade", "--config", "a.toml", "--unattended", "--dry-run",
        env={"SETUP_TOOL_DB_PASSWORD": CRM_USER_PASSWORD},
    )  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "process list" not in again.stderr  # no password on this command line


def test_a_password_in_the_url_on_the_command_line_draws_a_warning(workdir: Path) -> None:
    server = f"postgresql+psycopg://u:S3cr3t%21pw@127.0.0.1:{closed_port()}/db"
    result = invoke("detect", "--database-url", server, "--log-file", "run.log")
    assert result.exit_code == 6, result.output
    assert "process list" in result.stderr and "SETUP_TOOL_DB_PASSWORD" in result.stderr
    for secret in ("S3cr3t%21pw", "S3cr3t!pw"):
        assert secret not in result.output
        assert secret not in (workdir / "run.log").read_text()

    # The same URL from the environment is not in the process list: no warning.
    quiet = invoke("detect", "--log-file", "run2.log", env={"SETUP_TOOL_DATABASE_URL": server})
    assert quiet.exit_code == 6, quiet.output
    assert "process list" not in quiet.stderr


def test_a_short_password_does_not_hide_every_digit_in_the_log(
    demo_db: Path, workdir: Path
) -> None:
    """SETUP_TOOL_DB_PASSWORD=0: the log keeps its zeros (version, counts, exit code)."""
    result = invoke(
        "upgrade", "--database-url", url(demo_db), "--dry-run", "--log-file", "run.log",
        env={"SETUP_TOOL_DB_PASSWORD": "0"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    log = (workdir / "run.log").read_text()
    assert "***" not in log
    assert "exit code 0" in log


@pytest.mark.parametrize(
    ("text", "secret", "expected"),
    [
        # A short secret: hidden where it stands as the password, nowhere else.
        ("setup-tool 0.1.0: 100 rows, exit code 0", "0", "setup-tool 0.1.0: 100 rows, exit code 0"),
        ("postgresql://u:0@h:5432/db", "0", "postgresql://u:***@h:5432/db"),
        ("DRIVER={x};UID=sa;PWD=0;", "0", "DRIVER={x};UID=sa;PWD=***;"),
        ("host=h password='0 1' user=u", "0 1", "host=h password=*** user=u"),
        ("PWD={a}}b;c};UID=sa", "a}b;c", "PWD=***;UID=sa"),
        # A distinctive secret: hidden as a token, also URL-encoded.
        ("login sa/hunter2 failed", "hunter2", "login sa/*** failed"),
        ("u:S3cr3t%21pw@h and S3cr3t!pw", "S3cr3t!pw", "u:***@h and ***"),
        ("2024 rows of 120245, pw 2024.", "2024", "*** rows of 120245, pw ***."),
        # Never hidden: what only looks like a password.
        ("sqlite:///crm.db http://h:80/x", None, "sqlite:///crm.db http://h:80/x"),
        ("password authentication failed", None, "password authentication failed"),
    ],
)
def test_hide_secrets(text: str, secret: str | None, expected: str) -> None:
    assert hide_secrets(text, secret) == expected


# --- item 6: a log file that fails mid-run -----------------------------------------------------


class _FullDisk(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def _file_handler(workdir: Path, stream: Any) -> LogFileHandler:
    handler = LogFileHandler(workdir / "run.log")
    handler.setFormatter(logging.Formatter("%(message)s"))
    opened = handler.setStream(stream)  # the real file, opened; the failing stream instead
    assert opened is not None
    opened.close()
    return handler


@pytest.mark.parametrize("stream", ["raises ENOSPC", "/dev/full"])
def test_a_failing_log_file_warns_once_and_never_prints_a_traceback(
    workdir: Path, capsys: pytest.CaptureFixture[str], stream: str
) -> None:
    full = _FullDisk() if stream == "raises ENOSPC" else open("/dev/full", "w")  # noqa: SIM115
    handler = _file_handler(workdir, full)
    logger = logging.getLogger(f"test_output_safety.{stream}")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for n in range(5):
            logger.warning("record %d", n)
    finally:
        logger.removeHandler(handler)
        handler.close()

    err = capsys.readouterr().err
    assert err.count("Warning: cannot write the log file") == 1, err
    assert "the disk is full" in err
    assert "Logging error" not in err and "Traceback" not in err


def test_a_log_file_that_fills_up_mid_run_leaves_the_result_unchanged(
    demo_db: Path, workdir: Path
) -> None:
    """A real failure: past a file size limit every write of the log fails (EFBIG), as on a full
    disk. A dry run (the database is only read) with its report on stdout, so only the log
    grows."""
    argv = [
        *tool(), "upgrade", "--database-url", url(demo_db), "--dry-run", "--unattended",
        "--detailed-exitcode", "--format", "json", "--log-file", "run.log",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETUP_TOOL_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"

    def run(limit: int | None) -> subprocess.CompletedProcess[str]:
        def limited() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        return subprocess.run(
            argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True,
            text=True, timeout=120, preexec_fn=limited,
        )  # fmt: skip

    unlimited = run(None)
    full_log = (workdir / "run.log").read_text()
    (workdir / "run.log").unlink()
    limit = len(full_log.encode()) // 3
    limited = run(limit)

    assert unlimited.returncode == 10, unlimited.stderr
    assert limited.returncode == unlimited.returncode, limited.stderr
    for proc in (unlimited, limited):
        assert '"outcome": "changes_pending"' in proc.stdout
    assert limited.stderr.count("Warning: cannot write the log file") == 1, limited.stderr
    assert "larger than this system allows" in limited.stderr
    assert "Logging error" not in limited.stderr and "Traceback" not in limited.stderr
    log = (workdir / "run.log").read_text()
    assert "upgrade --dry-run --unattended" in log.splitlines()[0]
    assert len(log.encode()) <= limit
