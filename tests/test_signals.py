"""Every way of asking setup-tool to stop means what Ctrl-C means (issue #9, item 5).

SIGTERM (kill, a service manager, a container stopping), SIGHUP (the terminal closed) and, on
Windows, Ctrl-Break and the console window closing: the batch in flight is finished, the run is
recorded as interrupted, the report is written, the exit code is 130, and the next run resumes.
A second signal stops at once (the open batch is rolled back). Before the first write (a question)
it stops at once and nothing was changed. Real processes, real signals.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from cli_helpers import tool
from test_cli import (
    WIZARD_CONFIRM,
    _read_until,
    digest,
    dry_run_report,
    marked,
    query,
    step_rows,
    tool_env,
    url,
)

from setup_tool.cli_edge import (
    CONSOLE_CLOSE_EVENTS,
    console_close_routine,
    signal_description,
    stop_signals,
)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals, sent with os.kill")

STOPS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]
REPORT_SCHEMA = json.loads(
    (Path(__file__).parents[1] / "docs" / "report.schema.json").read_text(encoding="utf-8")
)


@pytest.fixture
def big_demo(make_demo: Callable[..., Path]) -> Path:
    return make_demo(appointments=12000)  # a few hundred rows to mark: batches of one row


def start_marking(
    db: Path, workdir: Path, *, preexec_fn: Callable[[], None] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *tool(),
            "upgrade",
            "--database-url",
            url(db),
            "--unattended",
            "--batch-size",
            "1",
            # Batches of one row take a few ms: on a loaded machine the whole marking could end
            # before the signal lands. The rest keeps the marking long enough to be stopped.
            "--pause-between-batches",
            "0.01",
            "--fix-overrides",
            "--log-file",
            "stopped.log",
            "--report",
            "stopped.json",
        ],
        cwd=workdir,
        env=tool_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=preexec_fn,
    )


def _default(signum: signal.Signals) -> None:
    signal.signal(signum, signal.SIG_DFL)


def recorded(db: Path) -> int:
    try:
        rows = query(
            db, "SELECT count(*) FROM setup_tool_previous_value WHERE table_name = 'appointment'"
        )
    except sqlite3.OperationalError:  # not created yet, or a batch holds the write lock
        return 0
    return int(rows[0][0])


def wait_for_batches(db: Path, proc: subprocess.Popen[str], batches: int) -> None:
    deadline = time.monotonic() + 60
    while recorded(db) < batches:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the upgrade never reached its batches"
        time.sleep(0.02)


def runs(db: Path) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(db, timeout=10)) as con:
        return con.execute("SELECT status, outcome, exit_code FROM setup_tool_run").fetchall()


@pytest.mark.parametrize("stop", STOPS, ids=lambda s: s.name)
def test_a_stop_signal_finishes_the_batch_records_reports_exits_130_and_resumes(
    stop: signal.Signals, big_demo: Path, workdir: Path
) -> None:
    db = big_demo
    to_mark = step_rows(dry_run_report(db, "--fix-overrides"))["mark_invites"]
    before = marked(db)
    assert to_mark > 200

    # As from a terminal: a runner started under nohup hands its children SIGHUP ignored, and the
    # tool rightly keeps a signal it was started to ignore (cli_edge._handling).
    proc = start_marking(db, workdir, preexec_fn=lambda: _default(stop))
    wait_for_batches(db, proc, 5)
    os.kill(proc.pid, stop)
    out, err = proc.communicate(timeout=60)

    assert "Traceback" not in out + err
    assert proc.returncode == 130, err
    assert "Stopping after the current batch" in err
    assert "run the same command again to resume" in err.lower()
    # whole batches only: every marked row has its previous value, the rest is still to do
    done = recorded(db)
    assert 5 <= done < to_mark
    assert marked(db) - before == done
    assert runs(db) == [("interrupted", "interrupted", 130)]
    # the report was written, and says what happened
    report = json.loads((workdir / "stopped.json").read_text())
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(report)
    assert (report["outcome"], report["exit_code"]) == ("interrupted", 130)
    assert step_rows(report)["mark_invites"] == done
    assert "Report:" in err and "stopped.log" in err
    stored = query(db, "SELECT report_json FROM setup_tool_run")[0][0]
    assert json.loads(stored)["outcome"] == "interrupted"

    resumed = subprocess.run(
        [*tool(), "upgrade", "--database-url", url(db), "--unattended", "--fix-overrides"],
        cwd=workdir,
        env=tool_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert marked(db) - before == to_mark


def test_a_second_sigterm_stops_at_once_and_the_run_is_still_recorded(
    big_demo: Path, workdir: Path
) -> None:
    db = big_demo
    before = marked(db)
    proc = start_marking(db, workdir)
    wait_for_batches(db, proc, 5)
    os.kill(proc.pid, signal.SIGTERM)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in out + err
    assert proc.returncode == 130, err
    assert runs(db) == [("interrupted", "interrupted", 130)]
    assert marked(db) - before == recorded(db)  # the open batch was rolled back, not half-done


def test_sighup_is_left_alone_under_nohup(make_demo: Callable[..., Path], workdir: Path) -> None:
    """Started to ignore SIGHUP (nohup): a closed terminal must not stop it."""
    db = make_demo(appointments=3000)
    proc = start_marking(
        db, workdir, preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)
    )
    wait_for_batches(db, proc, 5)
    os.kill(proc.pid, signal.SIGHUP)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert runs(db) == [("completed", "done", 0)]


@pytest.mark.parametrize(
    ("command", "question"),
    [("upgrade", WIZARD_CONFIRM), ("undo", "Undo setup-tool's changes")],
)
def test_sigterm_at_the_confirmation_stops_at_once_and_changes_nothing(
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
            time.sleep(0.5)  # let the read begin (see test_cli's Ctrl-C twin)
            proc.send_signal(signal.SIGTERM)
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
    assert digest(demo_db) == before
    log = next(workdir.glob("setup-tool-*.log")).read_text()
    assert "SIGTERM" in log


# --- the pieces, on every platform ----------------------------------------------------------------


def test_the_stop_signals_of_this_platform() -> None:
    assert signal.SIGINT in stop_signals() and signal.SIGTERM in stop_signals()
    assert (signal.SIGHUP in stop_signals()) == (os.name == "posix")
    assert signal_description(signal.SIGINT) == "Ctrl-C"
    assert signal_description(signal.SIGTERM) == "SIGTERM"


def test_the_console_close_routine_stops_then_waits_for_the_exit() -> None:
    """Windows calls it on a thread of its own and ends the process when it returns: it asks the
    main thread to stop as Ctrl-C would, then holds on until the process exits (or the grace
    period ends)."""
    stops: list[str] = []
    exiting = threading.Event()
    routine = console_close_routine(lambda: stops.append("stop"), exiting, grace_seconds=30)
    assert routine(0) == 0 and routine(1) == 0  # Ctrl-C, Ctrl-Break: Python's own signals
    assert stops == []

    answers: list[int] = []
    waiter = threading.Thread(target=lambda: answers.append(routine(2)))  # CTRL_CLOSE_EVENT
    waiter.start()
    time.sleep(0.2)
    assert stops == ["stop"] and answers == []  # still holding the process open
    exiting.set()
    waiter.join(timeout=5)
    assert answers == [1]
    assert set(CONSOLE_CLOSE_EVENTS) == {2, 5, 6}  # close, logoff, shutdown


def test_the_console_close_routine_gives_up_after_its_grace_period() -> None:
    routine = console_close_routine(lambda: None, threading.Event(), grace_seconds=0.1)
    started = time.monotonic()
    assert routine(6) == 1  # CTRL_SHUTDOWN_EVENT
    assert time.monotonic() - started < 5


class FakeKernel32:
    def __init__(self, answer: int = 1) -> None:
        self.answer = answer
        self.calls: list[tuple[Any, bool]] = []

    def SetConsoleCtrlHandler(self, routine: Any, add: bool) -> int:
        self.calls.append((routine, add))
        return self.answer


@pytest.mark.parametrize("registered", [1, 0])
def test_the_console_close_handler_is_registered_and_removed_on_windows(
    monkeypatch: pytest.MonkeyPatch, registered: int
) -> None:
    """The Windows path, with the Win32 call stood in for: SetConsoleCtrlHandler(routine, TRUE)
    while the command runs, FALSE afterwards; nothing to undo when there is no console."""
    import ctypes

    from setup_tool import cli_edge

    kernel32 = FakeKernel32(answer=registered)
    monkeypatch.setattr(cli_edge.sys, "platform", "win32")
    monkeypatch.setattr(ctypes, "WINFUNCTYPE", lambda *_types: lambda f: f, raising=False)
    monkeypatch.setattr(ctypes, "WinDLL", lambda *_a, **_k: kernel32, raising=False)

    uninstall = cli_edge._handle_console_close()
    [(routine, added)] = kernel32.calls
    assert added is True and routine(0) == 0  # Ctrl-C is not its business
    uninstall()
    assert kernel32.calls[1:] == ([(routine, False)] if registered else [])
