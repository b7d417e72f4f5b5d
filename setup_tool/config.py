"""The TOML answer file (--config): keys are the option names, validated with a suggestion."""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from setup_tool.errors import UsageError

ENV_PREFIX = "SETUP_TOOL_"
PASSWORD_KEY = "db-password"
PASSWORD_ENV = "SETUP_TOOL_DB_PASSWORD"


def envvar(option: str) -> str:
    """--table-prefix -> SETUP_TOOL_TABLE_PREFIX."""
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


def load_answer_file(path: Path, allowed: Iterable[str]) -> dict[str, Any]:
    """Read an answer file; returns {parameter_name: value} for click's default_map.

    Sections are allowed for readability ([connection], [answers]...) and flattened. Unknown keys
    are errors with the nearest valid name suggested, so a typo never silently drops an answer.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"The answer file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"The answer file {path} cannot be read: {error}.") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"The answer file {path} is not valid TOML: {error}.",
                         "Each answer is a line like: table-prefix = \"crm7\"") from None
    names = {name.replace("_", "-") for name in allowed} | {PASSWORD_KEY}
    answers: dict[str, Any] = {}
    for key, value in _flatten(data):
        option = key.replace("_", "-").lower()
        if option not in names:
            close = difflib.get_close_matches(option, sorted(names), n=1)
            hint = f"Did you mean '{close[0]}'?" if close else \
                f"Valid keys: {', '.join(sorted(names))}."
            raise UsageError(f"Unknown key '{key}' in the answer file {path}.", hint)
        answers[option.replace("-", "_")] = value
    return answers


def _flatten(data: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from value.items()
        else:
            yield key, value
