"""The TOML answer file (--config): keys are the option names, validated with a suggestion."""

from __future__ import annotations

import difflib
import json
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from setup_tool.errors import UsageError

ENV_PREFIX = "SETUP_TOOL_"
PASSWORD_KEY = "db-password"
PASSWORD_ENV = "SETUP_TOOL_DB_PASSWORD"


def envvar(option: str) -> str:
    """--table-prefix -> SETUP_TOOL_TABLE_PREFIX."""
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


def load_answer_file(path: Path, allowed: Mapping[str, str] | Iterable[str]) -> dict[str, Any]:
    """Read an answer file; returns {parameter_name: value} for click's default_map.

    `allowed` maps each answer-file key (the option's long name, e.g. "format" for --format) to
    its click parameter name ("report_format"); plain parameter names are their own keys.
    Sections are allowed for readability ([connection], [answers]...) and flattened. Unknown keys
    are errors with the nearest valid name suggested, so a typo never silently drops an answer;
    so is a key given twice, so two sections never disagree unnoticed.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"The answer file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"The answer file {path} cannot be read: {error}.") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(
            f"The answer file {path} is not valid TOML: {error}.",
            'Each answer is a line like: table-prefix = "crm7"',
        ) from None
    keys = (
        dict(allowed)
        if isinstance(allowed, Mapping)
        else {name.replace("_", "-"): name for name in allowed}
    )
    keys[PASSWORD_KEY] = PASSWORD_KEY.replace("-", "_")
    answers: dict[str, Any] = {}
    for key, value in _flatten(data):
        option = key.replace("_", "-").lower()
        if option not in keys:
            close = difflib.get_close_matches(option, sorted(keys), n=1)
            hint = (
                f"Did you mean '{close[0]}'?"
                if close
                else f"Valid keys: {', '.join(sorted(keys))}."
            )
            raise UsageError(f"Unknown key '{key}' in the answer file {path}.", hint)
        if keys[option] in answers:
            raise UsageError(f"The answer file {path} gives '{option}' twice.", "Keep one of them.")
        answers[keys[option]] = value
    return answers


def _flatten(data: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from value.items()
        else:
            yield key, value


def answer_file_text(answers: dict[str, str | int | bool | None]) -> str:
    """TOML for --config: one `option-name = value` line per answer given (never a password)."""
    lines = [
        "# setup-tool answers, saved by the wizard: use with --config for unattended runs.",
        f"# The password is never saved: give it as {PASSWORD_ENV} or as {PASSWORD_KEY}.",
    ]
    for key, value in answers.items():
        if value is None:
            continue
        # JSON string escapes are valid TOML basic-string escapes.
        rendered = (
            json.dumps(value, ensure_ascii=False)
            if isinstance(value, str)
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
        lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"
