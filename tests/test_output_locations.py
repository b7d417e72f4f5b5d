"""Installer-friendly outcomes: logs and reports never land in the working directory (an MSI
custom action runs in C:\\Windows\\System32), the Windows account is recorded as DOMAIN\\user,
and the operator declining is its own exit code."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import invoke, tool

from setup_tool.errors import EXIT_CODE_MEANINGS, ExitCode
from setup_tool.os_account import os_account
from setup_tool.output_files import default_output_folder

ROOT = Path(__file__).resolve().parents[1]


# --- where default logs and reports go ----------------------------------------------------------


def test_windows_default_is_programdata() -> None:
    folder = default_output_folder({"ProgramData": r"D:\ProgramData"}, platform="win32")
    assert str(folder).replace("\\", "/") == "D:/ProgramData/setup-tool"
    fallback = default_output_folder({}, platform="win32")
    assert str(fallback).replace("\\", "/") == "C:/ProgramData/setup-tool"


def test_linux_default_is_the_xdg_state_folder() -> None:
    assert default_output_folder({"XDG_STATE_HOME": "/srv/state"}, "linux") == Path(
        "/srv/state/setup-tool"
    )
    # the XDG specification: a relative value is ignored
    assert default_output_folder({"XDG_STATE_HOME": "state", "HOME": "/home/ops"}, "linux") == Path(
        "/home/ops/.local/state/setup-tool"
    )
    assert default_output_folder({"HOME": "/home/ops"}, "linux") == Path(
        "/home/ops/.local/state/setup-tool"
    )


def run_in(cwd: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SETUP_TOOL_")}
    environment["XDG_STATE_HOME"] = str(state)
    return subprocess.run(
        [*tool(), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=180
    )


def test_a_real_run_from_a_system_folder_writes_nothing_there_and_says_where_it_wrote(
    make_demo: Callable[..., Path], tmp_path: Path
) -> None:
    db = make_demo(appointments=500)
    system32 = tmp_path / "System32"  # the working directory an MSI custom action gets
    system32.mkdir()
    state = tmp_path / "state"
    done = run_in(system32, state, "upgrade", "--database-url", f"sqlite:///{db}", "--unattended")
    assert done.returncode == 4, done.stderr
    assert list(system32.iterdir()) == []
    folder = state / "setup-tool"
    (log,) = folder.glob("setup-tool-*.log")
    (report,) = folder.glob("setup-tool-*-report.html")
    assert f"Log:    {log}" in done.stderr  # the full path, where it went
    assert f"Report: {report}" in done.stderr
    assert "outcome action_required" in log.read_text()


def test_a_dry_run_writes_no_file_at_all(make_demo: Callable[..., Path], tmp_path: Path) -> None:
    db = make_demo(appointments=300)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = run_in(
        cwd, tmp_path / "state", "upgrade", "--database-url", f"sqlite:///{db}", "--dry-run"
    )
    assert done.returncode == 0, done.stderr
    assert list(cwd.iterdir()) == [] and not (tmp_path / "state").exists()


def test_a_state_folder_that_cannot_be_made_is_a_usage_error_before_connecting(
    make_demo: Callable[..., Path], tmp_path: Path
) -> None:
    db = make_demo(appointments=300)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the state folder's parent should be")
    done = run_in(
        tmp_path, blocker / "state", "upgrade", "--database-url", f"sqlite:///{db}", "--unattended"
    )
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "Cannot create the folder for setup-tool's logs and reports" in done.stderr
    assert "--log-file" in done.stderr and "--report" in done.stderr
    assert "nothing was changed" in done.stderr
    assert "Traceback" not in done.stderr


# --- who ran it -----------------------------------------------------------------------------------


def test_windows_account_is_domain_backslash_user() -> None:
    assert os_account("win32", {}, windows_api=lambda: "CORP\\jdoe") == "CORP\\jdoe"
    # GetUserNameExW unavailable: the logon session's variables
    environment = {"USERDOMAIN": "CORP", "USERNAME": "jdoe"}
    assert os_account("win32", environment, windows_api=lambda: None) == "CORP\\jdoe"
    service = {"USERDOMAIN": "CORP", "USERNAME": "APP01$"}  # LocalSystem on a domain member
    assert os_account("win32", service, windows_api=lambda: None) == "CORP\\APP01$"
    assert os_account("win32", {"USERNAME": "jdoe"}, windows_api=lambda: None) == "jdoe"
    assert os_account("win32", {}, windows_api=lambda: None) == "unknown"


def test_elsewhere_it_is_the_login_name() -> None:
    assert os_account("linux") == getpass.getuser()


def test_history_records_the_account_that_ran_the_upgrade(demo_db: Path) -> None:
    url = f"sqlite:///{demo_db}"
    assert invoke("upgrade", "--database-url", url, "--unattended").exit_code == 4
    history = invoke("history", "--database-url", url, "--format", "json")
    (run,) = json.loads(history.stdout)["runs"]
    assert run["os_user"] == os_account()


# --- the operator said no -------------------------------------------------------------------------


def test_declining_undo_is_cancelled_by_the_operator_not_a_failure(demo_db: Path) -> None:
    url = f"sqlite:///{demo_db}"
    assert invoke("upgrade", "--database-url", url, "--unattended").exit_code == 4
    declined = invoke("undo", "--database-url", url, input="n\n")
    assert declined.exit_code == ExitCode.CANCELLED == 7, declined.output
    assert "Cancelled: nothing was changed" in declined.stderr


def test_the_cancelled_code_is_documented_and_not_one_of_specs() -> None:
    assert int(ExitCode.CANCELLED) not in (0, 1, 2, 3, 4, 5, 6, 10, 130)
    assert "cancelled by the operator" in EXIT_CODE_MEANINGS[ExitCode.CANCELLED]
    readme = (ROOT / "README.md").read_text()
    assert "| 7 | cancelled by the operator" in readme
    for code in ExitCode:
        assert f"| {int(code)} |" in readme, f"exit code {int(code)} is missing from README"


@pytest.mark.parametrize("code", list(ExitCode))
def test_every_exit_code_has_a_meaning(code: ExitCode) -> None:
    assert EXIT_CODE_MEANINGS[code]
