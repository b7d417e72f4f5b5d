"""Running the command line in tests: in-process with click's CliRunner, or as a real process."""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner, Result

from setup_tool.cli import cli


def invoke(*args: object, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """The CLI in-process; never a traceback, never an exception other than the exit."""
    result = CliRunner().invoke(
        cli, [str(a) for a in args], input=input, env=env, prog_name="setup-tool"
    )
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result


def tool() -> list[str]:
    """The installed `setup-tool` script beside this Python, else `python -m setup_tool`."""
    script = Path(sys.executable).with_name("setup-tool")
    return [str(script)] if script.exists() else [sys.executable, "-m", "setup_tool"]
