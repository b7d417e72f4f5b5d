"""The wizard as a consultant sits in front of it: a real 80x24 terminal (a pseudo-terminal read
through a VT100 emulator), stdout redirected to a file, colour by the terminal's conventions,
questions that ask again after a typo, and a progress bar measured from the start of marking.

Each screen a test looks at is also saved as a text capture under test-output/ (README shows one).
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import invoke, tool
from scenarios import upgrade
from terminal import Terminal

from setup_tool.console import Console, Progress, format_clock, wants_colour
from setup_tool.upgrade import InterruptedUpgrade

REPO = Path(__file__).resolve().parents[1]
TEST_OUTPUT = REPO / "test-output"
CONFIRM = "Apply these changes to the database now? [y/N]:"
VERSION_QUESTION = "Which SuperOffice version is installed"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

pytestmark = pytest.mark.usefixtures("workdir")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETUP_TOOL_")}
    for name in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES"):
        env.pop(name, None)
    return {**env, **extra}


def url(db: Path) -> str:
    return f"sqlite:///{db}"


# --- a real terminal ---------------------------------------------------------------------------


def test_in_80x24_the_plan_is_right_above_the_question_and_stdout_can_be_a_file(
    demo_db: Path, workdir: Path
) -> None:
    """With `> run.txt` the screen still shows what the question refers to: the plan, one line
    per step with counts, the marking window and the estimate, with no dry-run wording."""
    with (
        (workdir / "run.txt").open("wb") as redirected,
        Terminal(
            [*tool(), "upgrade", "--database-url", url(demo_db), "--log-file", "run.log"],
            cwd=workdir,
            env=clean_env(),
            stdout=redirected,
        ) as term,
    ):
        term.wait_for(CONFIRM)
        term.save(TEST_OUTPUT / "wizard-confirmation-80x24.txt")
        screen = term.lines()
        text = term.text()

        question = next(i for i, line in enumerate(screen) if CONFIRM in line)
        above = "\n".join(screen[:question])
        plan = above[above.rindex("The plan") :]
        for number, step in (
            (2, "Switch on Diary Synchronizer Active: will change 1 row(s)"),
            (4, "Mark pre-existing invite appointments: will change"),
        ):
            assert re.search(rf"^  {number}\. {re.escape(step)}", plan, re.M), plan
        assert re.search(r"invite meetings registered from \d{4}-\d\d-\d\d", " ".join(plan.split()))
        assert "Estimated time:" in plan
        for dry_run_wording in ("dry-run report", "dry run", "Exit code", "detailed-exitcode"):
            assert dry_run_wording not in text
        # Above the plan, the findings with their evidence, read top to bottom.
        assert "What setup-tool found" in term.transcript.decode()
        assert "ProductVersion" in term.transcript.decode()

        term.type("y\r")
        code = term.wait_exit()
        term.save(TEST_OUTPUT / "wizard-after-80x24.txt")
        after = term.text()
    assert code == 4, after  # the override row is left off: done, action required
    assert (workdir / "run.txt").read_bytes() == b""  # nothing the person needed went there
    assert re.search(
        r"Marking \[#+\] 100%  [\d,]+/[\d,]+ rows, [\d,]+ rows/s, 0:00:0\d elapsed", after
    )
    assert "Mark pre-existing invite appointments: changed" in " ".join(after.split())
    assert "Report:" in after and "Log:" in after


def test_the_findings_come_before_the_plan_on_a_wide_terminal(demo_db: Path, workdir: Path) -> None:
    with Terminal(
        [*tool(), "upgrade", "--database-url", url(demo_db), "--log-file", "run.log"],
        cwd=workdir,
        env=clean_env(),
        columns=120,
        lines=60,
    ) as term:
        term.wait_for(CONFIRM)
        transcript = ANSI.sub("", term.transcript.decode())
        term.type("n\r")
        assert term.wait_exit() == 7  # cancelled by the operator
    found, plan = transcript.index("What setup-tool found"), transcript.index("The plan")
    assert found < plan < transcript.index(CONFIRM)
    # No line is wider than the terminal said it is (100 columns at most, the wizard's limit).
    assert max(len(line) for line in transcript.splitlines()) <= 100


def test_a_resumed_run_says_so_first(demo_db: Path, workdir: Path) -> None:
    with pytest.raises(InterruptedUpgrade) as stopped:
        upgrade(demo_db, batch_size=25, should_stop=lambda: True)
    first_run = stopped.value.result.run_id
    result = invoke("upgrade", "--database-url", url(demo_db), input="n\n")
    screen = result.stderr
    (TEST_OUTPUT / "wizard-resumed.txt").write_text(screen, encoding="utf-8")
    assert screen.lstrip().startswith(f"Resuming: run {first_run} stopped while marking")
    assert screen.index("Resuming") < screen.index("What setup-tool found")
    assert f"first the rest of run {first_run}'s marking" in screen


# --- questions ----------------------------------------------------------------------------------


def test_a_typo_at_the_superoffice_version_prompt_asks_again(
    make_demo: Callable[..., Path],
) -> None:
    db = make_demo(superoffice_version="8.5.7346.1605")  # a build: the release is undetermined
    result = invoke(
        "upgrade",
        "--database-url",
        url(db),
        "--fix-overrides",
        input="8.5 R99\neight\n8.5 R10\ny\n",
    )
    assert result.exit_code == 0, result.output
    assert result.output.count(VERSION_QUESTION) == 3
    assert "Cannot read the SuperOffice version '8.5 R99'" in result.stderr
    assert "Cannot read the SuperOffice version 'eight'" in result.stderr


@pytest.mark.parametrize("version", ["3.2.x", "3.2.284-beta", "3.2.284+build7"])
def test_a_synchronizer_version_with_a_wildcard_or_suffix_is_an_error(
    version: str, demo_db: Path
) -> None:
    result = invoke(
        "upgrade", "--database-url", url(demo_db), "--dry-run", "--synchronizer-version", version
    )
    assert result.exit_code == 2, result.output
    assert f"Cannot read the InfoBridge Synchronizer version '{version}'" in result.stderr


# --- colour -------------------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("environ", "choice", "tty", "expected"),
    [
        ({}, None, True, True),
        ({}, None, False, False),
        ({"NO_COLOR": "1"}, None, True, False),
        ({"NO_COLOR": ""}, None, True, True),  # only a non-empty NO_COLOR counts (no-color.org)
        ({"TERM": "dumb"}, None, True, False),
        ({"FORCE_COLOR": "1"}, None, False, True),
        ({"FORCE_COLOR": ""}, None, False, False),
        ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, None, True, False),
        ({"FORCE_COLOR": "1", "TERM": "dumb"}, None, False, True),
        ({"NO_COLOR": "1"}, True, False, True),  # --color wins
        ({"FORCE_COLOR": "1"}, False, True, False),  # --no-color wins
    ],
)
def test_colour_follows_the_terminal_conventions(
    environ: dict[str, str], choice: bool | None, tty: bool, expected: bool
) -> None:
    stream = _Tty() if tty else io.StringIO()
    assert wants_colour(stream, choice, environ) is expected


@pytest.mark.parametrize(
    ("flag", "environ", "coloured"),
    [
        ("--color", {"NO_COLOR": "1"}, True),
        ("--no-color", {"FORCE_COLOR": "1"}, False),
        (None, {"FORCE_COLOR": "1"}, True),
        (None, {}, False),  # CliRunner's stderr is not a terminal
    ],
)
def test_the_color_flag_and_environment_reach_the_messages(
    flag: str | None, environ: dict[str, str], coloured: bool, demo_db: Path
) -> None:
    args = ["upgrade", "--database-url", url(demo_db), "--yes", "--log-file", "run.log"]
    result = invoke(*args, *([flag] if flag else []), env=environ)
    assert result.exit_code == 4, result.output
    assert bool(ANSI.search(result.stderr)) is coloured


# --- progress -----------------------------------------------------------------------------------


def test_progress_is_measured_from_the_start_of_marking(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    err = _Tty()
    progress = Progress(Console(err=err), "Marking")
    clock[0] += 300  # detection and the question: not part of the marking
    progress(0, 7078)  # the marking starts
    clock[0] += 2
    progress(2000, 7078)
    assert progress.describe() == "2,000/7,078 rows, 1,000 rows/s, 0:00:02 elapsed, ETA 0:00:05"
    clock[0] += 5
    progress(7078, 7078)
    progress.close()
    drawn = err.getvalue()
    assert "  28%  2,000/7,078 rows" in drawn and " 100%  7,078/7,078 rows" in drawn
    assert "0:00:07 elapsed, ETA 0:00:00" in drawn


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0:00:00"), (59.6, "0:01:00"), (3725, "1:02:05"), (90061, "25:01:01")],
)
def test_durations_on_the_progress_line_are_h_mm_ss(seconds: float, shown: str) -> None:
    assert format_clock(seconds) == shown


def test_numbers_have_thousands_separators_in_the_wizard(make_demo: Callable[..., Path]) -> None:
    db = make_demo(appointments=20_000, invite_share=0.2)
    result = invoke("upgrade", "--database-url", url(db), "--fix-overrides", "--yes")
    assert result.exit_code == 0, result.output
    changed = re.search(
        r"Mark pre-existing invite appointments: changed ([\d,]+) row", result.stderr
    )
    assert changed and "," in changed.group(1), result.stderr
    assert not re.search(r"\b\d{4,} row", result.stderr), result.stderr
