"""The log a support case needs: where it ran, how it was asked to run and where each option
came from, what it found and planned, what the operator decided, each batch (debug), how it
ended; UTC timestamps that carry their offset; a clean stop is not an ERROR; --log-level
chooses the detail."""

from __future__ import annotations

import getpass
import platform
import re
import socket
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_helpers import invoke

from setup_tool import __version__

STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00) (DEBUG|INFO|WARNING|ERROR) ")

pytestmark = pytest.mark.usefixtures("workdir")


def url(db: Path) -> str:
    return f"sqlite:///{db}"


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's clock in a zone far from UTC: a log in local time would show it."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def support_run(db: Path, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    Path("answers.toml").write_text("fix-overrides = true\n", encoding="utf-8")
    result = invoke(
        "upgrade",
        "--database-url",
        url(db),
        "--unattended",
        "--config",
        "answers.toml",
        "--lock-wait",
        "5",
        "--log-file",
        "support.log",
        *extra,
        env={"SETUP_TOOL_BATCH_SIZE": "25", **(env or {})},
    )
    return result.exit_code, Path("support.log").read_text(encoding="utf-8")


def test_the_log_carries_what_a_support_case_needs(demo_db: Path, far_from_utc: None) -> None:
    code, log = support_run(demo_db)
    assert code == 0, log
    for expected in (
        f"setup-tool {__version__} upgrade --unattended",
        f"Python {platform.python_version()}",
        platform.platform(),
        f"host {socket.gethostname()}, user {getpass.getuser()}",
        "dialect sqlite, driver pysqlite",
        f"server version SQLite {sqlite3.sqlite_version}",
        # every option, with where its value came from
        f"option --database-url = {url(demo_db)} (command line)",
        "option --lock-wait = 5.0 (command line)",
        "option --batch-size = 25 (environment)",
        "option --fix-overrides = True (answer file)",
        "option --acting-associate = 0 (default)",
        "option --synchronizer-version = not given (default)",
        # the findings, with evidence, and the plan
        "finding: SuperOffice 8.5 R10 (ok)",
        "finding: synchronizer in use, version 3.2.284 (ok)",
        "finding: Diary Synchronizer Active off system-wide",
        "evidence ProductVersion: row",
        "plan: preference: change, 1 row(s)",
        "plan: mark_invites: change,",
        "plan: marking window registered from",
        "decision: apply (unattended)",
        "outcome done, exit code 0",
    ):
        assert expected in log, expected
    lines = log.splitlines()
    assert all(STAMP.match(line) or line.startswith(" ") for line in lines), lines[:3]
    first = datetime.fromisoformat(STAMP.match(lines[0]).group(1))  # type: ignore[union-attr]
    # UTC, not the machine's New York time: within minutes of the UTC clock.
    assert abs(first - datetime.now(UTC)) < timedelta(minutes=5)
    assert " ERROR " not in log


def test_each_batch_is_in_the_log_at_debug_level(demo_db: Path) -> None:
    code, log = support_run(demo_db)
    assert code == 0, log
    batches = re.findall(
        r"DEBUG +batch (\d+) of step \d+ \(appointment_id (?:up to \d+|\d+\.\.\d+)\): "
        r"([\d,]+) rows in "
        r"\d+\.\d{3} s",
        log,
    )
    assert batches, "no batch lines: the marking's batch loop must record each batch"
    assert [int(n) for n, _ in batches] == list(range(1, len(batches) + 1))


@pytest.mark.parametrize(
    ("level", "kept", "dropped"),
    [("info", ("INFO",), ("DEBUG",)), ("warning", ("WARNING",), ("DEBUG", "INFO"))],
)
def test_log_level_chooses_the_detail(
    level: str, kept: tuple[str, ...], dropped: tuple[str, ...], make_demo: object
) -> None:
    db = make_demo()  # type: ignore[operator]
    code, log = support_run(db, "--log-level", level)
    assert code == 0, log
    shown = {STAMP.match(line).group(2) for line in log.splitlines() if STAMP.match(line)}  # type: ignore[union-attr]
    assert set(kept) <= shown
    assert not shown & set(dropped)


def test_the_full_log_is_the_default(demo_db: Path) -> None:
    code, log = support_run(demo_db)
    assert code == 0 and " DEBUG " in log  # evidence lines at least


def test_a_clean_stop_is_not_an_error(demo_db: Path) -> None:
    result = invoke(
        "upgrade", "--database-url", url(demo_db), "--log-file", "declined.log", input="n\n"
    )
    assert result.exit_code == 7, result.output  # cancelled by the operator
    log = Path("declined.log").read_text(encoding="utf-8")
    assert "decision: do not apply" in log
    assert "Cancelled at the confirmation" in log
    assert " ERROR " not in log
