"""A Windows console (cp850, cp1252), output redirected to a file in the ANSI code page, or an
ASCII-only stream: no command and no format may end with UnicodeEncodeError, and a name the code
page lacks ("Łukasz 田中") is still legible, as a \\uXXXX escape.

In-process runs give every command and format the stream encoding through CliRunner's charset
(its stdout is a strict TextIOWrapper, as Python's own is); real processes with PYTHONIOENCODING
repeat the issue's case exactly: a redirected dry run.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from cli_helpers import tool
from click.testing import CliRunner, Result

from setup_tool.cli import cli
from setup_tool.cli_edge import LOG_FILE_KEY, unexpected
from setup_tool.console import Console
from setup_tool.console_encoding import encode_any_text, json_escape

FIRST, LAST = "Łukasz", "田中"
ESCAPED_FIRST = "\\u0141ukasz"
ESCAPED_LAST = "\\u7530\\u4e2d"
ENCODINGS = ["cp850", "cp1252", "ascii"]
FORMATS = ["text", "md", "html", "json"]


def give_the_override_a_non_ascii_name(db: Path) -> None:
    """The person behind the individual row that switches Diary Synchronizer Active off."""
    with sqlite3.connect(db) as connection:
        (owner,) = connection.execute(
            "SELECT owner_id FROM UserPreference WHERE prefkey = 'DiarySynchronizerActive' "
            "AND deflevel = 5"
        ).fetchone()
        (person,) = connection.execute(
            "SELECT person_id FROM associate WHERE associate_id = ?", (owner,)
        ).fetchone()
        connection.execute(
            "UPDATE person SET firstname = ?, lastname = ? WHERE person_id = ?",
            (FIRST, LAST, person),
        )
    connection.close()


@pytest.fixture
def named_demo(make_demo: Callable[..., Path]) -> Path:
    db = make_demo(appointments=600)
    give_the_override_a_non_ascii_name(db)
    return db


def run(encoding: str, *args: object, input: str | None = None) -> Result:
    result = CliRunner(charset=encoding).invoke(
        cli, [str(a) for a in args], input=input, prog_name="setup-tool"
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result


def shown(data: bytes, encoding: str) -> str:
    """What the console shows. An ASCII stream is the one click itself replaces by UTF-8 (it
    takes ASCII for a misconfigured locale), so its bytes may be UTF-8."""
    if encoding == "ascii":
        return data.decode("utf-8")
    return data.decode(encoding)  # strict: every byte is the code page's own


def assert_legible(text: str, reference: str) -> None:
    """Wherever the UTF-8 run named the person, this run names them too: as they are or
    escaped."""
    for name, escaped in ((FIRST, ESCAPED_FIRST), (LAST, ESCAPED_LAST)):
        if name in reference:
            assert name in text or escaped in text, (name, text[:2000])


def assert_no_crash(result: Result) -> None:
    assert "UnicodeEncodeError" not in result.output, result.output
    assert "Unexpected error" not in result.output, result.output
    assert "Traceback" not in result.output


# --- every command and format, in-process ------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "command", [["upgrade", "--dry-run"], ["detect"]], ids=["dry-run", "detect"]
)
def test_reports_on_stdout_in_every_format(
    named_demo: Path, encoding: str, command: list[str]
) -> None:
    url = f"sqlite:///{named_demo}"
    for fmt in FORMATS:
        reference = run("utf-8", *command, "--database-url", url, "--format", fmt)
        result = run(encoding, *command, "--database-url", url, "--format", fmt)
        assert_no_crash(result)
        assert result.exit_code == reference.exit_code == 0, (fmt, result.output)
        text = shown(result.stdout_bytes, encoding)
        assert_legible(text, reference.stdout)
        if fmt == "json":
            json.loads(text)  # still valid JSON
    if command == ["upgrade", "--dry-run"]:  # and the T-SQL script
        result = run(encoding, *command, "--database-url", url, "--format", "sql")
        assert_no_crash(result)
        assert result.exit_code == 0


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_wizard_real_run_unattended_history_and_undo(named_demo: Path, encoding: str) -> None:
    url = f"sqlite:///{named_demo}"
    wizard = run(encoding, "upgrade", "--database-url", url, "--yes")
    assert_no_crash(wizard)
    assert wizard.exit_code == 4, wizard.output  # an override is left off
    # the findings and the plan name them (on stdout or stderr, wherever the wizard shows them)
    console = wizard.stdout_bytes + b"\n" + wizard.stderr_bytes
    assert_legible(shown(console, encoding), FIRST + LAST)

    unattended = run(encoding, "upgrade", "--database-url", url, "--unattended")
    assert_no_crash(unattended)
    assert unattended.exit_code == 4, unattended.output

    # A Windows account with a name the console lacks, as history shows it
    with sqlite3.connect(named_demo) as connection:
        connection.execute("UPDATE setup_tool_run SET os_user = ?", (f"CORP\\{FIRST}",))
    connection.close()
    for fmt in FORMATS:
        history = run(encoding, "history", "--database-url", url, "--format", fmt)
        assert_no_crash(history)
        assert history.exit_code == 0, (fmt, history.output)
        assert_legible(shown(history.stdout_bytes, encoding), FIRST)

    undo = run(encoding, "undo", "--database-url", url, "--unattended")
    assert_no_crash(undo)
    assert undo.exit_code in (0, 4), undo.output


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_demo_with_a_non_ascii_file_name(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / f"{FIRST}-{LAST}.db"
    result = run(encoding, "demo", path, "--appointments", "200")
    assert_no_crash(result)
    assert result.exit_code == 0, result.output
    assert path.exists()
    assert_legible(shown(result.stdout_bytes, encoding), FIRST + LAST)


# --- the case, for real ------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_redirected_dry_run_in_a_windows_code_page(
    named_demo: Path, encoding: str, tmp_path: Path
) -> None:
    import os

    environment = {**os.environ, "PYTHONIOENCODING": encoding}
    done = subprocess.run(
        [*tool(), "upgrade", "--database-url", f"sqlite:///{named_demo}", "--dry-run"],
        capture_output=True,
        env=environment,
        timeout=120,
        check=False,
    )
    stderr = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 0, stderr
    assert "UnicodeEncodeError" not in stderr and "Unexpected error" not in stderr
    text = shown(done.stdout, encoding)
    assert ESCAPED_FIRST in text or FIRST in text
    assert ESCAPED_LAST in text or LAST in text


# --- the pieces -----------------------------------------------------------------------------------


def test_escapes_are_json_escapes_also_beyond_the_basic_plane() -> None:
    assert json_escape("Ł") == "\\u0141"
    assert json_escape("😀") == "\\ud83d\\ude00"
    assert json.loads(f'"{json_escape("😀")}"') == "😀"


def test_a_utf8_stream_is_left_as_it_is_and_a_code_page_stream_escapes(tmp_path: Path) -> None:
    import io

    utf8 = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    cp850 = io.TextIOWrapper(io.BytesIO(), encoding="cp850")
    encode_any_text(utf8, cp850, object())  # an object without reconfigure is skipped
    assert utf8.errors == "strict"
    cp850.write(f"{FIRST} {LAST} Müller\n")
    cp850.flush()
    written = cp850.buffer.getvalue().decode("cp850")  # type: ignore[attr-defined]
    assert written == f"{ESCAPED_FIRST} {ESCAPED_LAST} Müller\n"  # ü is in cp850: kept


def _unexpected_message(log_file: Path | None, capsys: pytest.CaptureFixture[str]) -> str:
    command = click.Command("upgrade", params=[click.Option(["--dry-run"], is_flag=True)])
    with click.Context(command) as ctx:
        ctx.params = {"dry_run": True}
        if log_file is not None:
            ctx.meta[LOG_FILE_KEY] = log_file
        unexpected(ctx, Console(), RuntimeError("boom"))
    return capsys.readouterr().err


def test_an_unexpected_error_points_to_the_log_only_when_there_is_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    without = _unexpected_message(None, capsys)
    assert "The log file" not in without
    assert "No log file was written" in without and "--log-file" in without
    log = tmp_path / "run.log"
    with_log = _unexpected_message(log, capsys)
    assert f"The log file {log} has the details" in with_log


def test_python_itself_would_have_crashed(tmp_path: Path) -> None:
    """The premise: without the escape, a cp1252 stdout raises on this name."""
    done = subprocess.run(
        [sys.executable, "-c", f"print({FIRST!r})"],
        capture_output=True,
        env={"PYTHONIOENCODING": "cp1252", "PATH": ""},
        check=False,
    )
    assert done.returncode != 0 and b"UnicodeEncodeError" in done.stderr
