"""The TOML answer file (--config): keys are the option names, validated with a suggestion."""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal

from setup_tool.errors import UsageError

# The TOML type an answer-file key takes; "list of ..." for an option that may be repeated.
AnswerKind = Literal[
    "text",
    "integer",
    "number",
    "boolean",
    "date",
    "list of text",
    "list of integer",
    "list of number",
    "list of boolean",
    "list of date",
]

ENV_PREFIX = "SETUP_TOOL_"
PASSWORD_KEY = "db-password"
PASSWORD_ENV = "SETUP_TOOL_DB_PASSWORD"


def envvar(option: str) -> str:
    """--table-prefix -> SETUP_TOOL_TABLE_PREFIX."""
    return ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()


def load_answer_file(
    path: Path,
    allowed: Mapping[str, str] | Iterable[str],
    kinds: Mapping[str, AnswerKind] | None = None,
) -> dict[str, Any]:
    """Read an answer file; returns {parameter_name: value} for click's default_map.

    `allowed` maps each answer-file key (the option's long name, e.g. "format" for --format) to
    its click parameter name ("report_format"); plain parameter names are their own keys.
    Sections are allowed for readability ([connection], [answers]...) and flattened. Unknown keys
    are errors with the nearest valid name suggested, so a typo never silently drops an answer;
    so is a key given twice, so two sections never disagree unnoticed. Every value must be of
    the TOML type `kinds` gives for its parameter (db-password: text), or it is an error naming
    the key and the type: 12345 is not a password, and 1.5 is not a batch size.
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
        kind = (kinds or {}).get(keys[option], "text" if option == PASSWORD_KEY else None)
        answers[keys[option]] = value if kind is None else checked_answer(path, option, value, kind)
    return answers


_KIND_NAMES: dict[str, tuple[str, str]] = {
    # kind: (what it must be, an example of how to write it)
    "text": ("a string in quotes", '"crm7"'),
    "integer": ("a whole number", "2000"),
    "number": ("a finite number", "30"),
    "boolean": ("true or false", "true"),
    "date": ("a date, or a date and time, in UTC", "2025-09-27"),
}


_IS_KIND: dict[str, Callable[[Any], bool]] = {
    "text": lambda v: isinstance(v, str) and "\x00" not in v,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
    "boolean": lambda v: isinstance(v, bool),
}


def checked_answer(path: Path, key: str, value: Any, kind: AnswerKind) -> Any:
    """`value` as click should receive it when it is of the TOML type `kind`; a UsageError naming
    the key, the expected type and an example otherwise."""
    if kind.startswith("list of "):
        item_kind: AnswerKind = kind.removeprefix("list of ")  # type: ignore[assignment]
        items = value if isinstance(value, list) else [value]
        return [_checked(path, key, item, item_kind, repeatable=True) for item in items]
    return _checked(path, key, value, kind)


def _checked(path: Path, key: str, value: Any, kind: AnswerKind, repeatable: bool = False) -> Any:
    accepted: Any = None
    if kind == "date":
        accepted = _as_utc_datetime(value)
    elif _IS_KIND[kind](value):
        accepted = value
    if accepted is not None:
        return accepted
    must, example = _KIND_NAMES[kind]
    example = '"your password"' if key == PASSWORD_KEY else example
    several = f" (or a list of them: {key} = [{example}])" if repeatable else ""
    raise UsageError(
        f"The answer file {path} gives '{key}' as {_describe(value, key == PASSWORD_KEY)}; it "
        f"must be {must}{several}.",
        f"For example: {key} = {example}",
    )


def _as_utc_datetime(value: Any) -> datetime | str | None:
    """A TOML date or date-time (naive, or converted to UTC), or a string for click to parse."""
    if isinstance(value, str):
        return value if "\x00" not in value else None
    if isinstance(value, datetime):
        return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    if isinstance(value, date):
        return datetime.combine(value, time())
    return None


def _describe(value: Any, secret: bool = False) -> str:
    """The TOML type of `value`, with the value itself unless it is text or a secret."""
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
        datetime: "a date and time",
        date: "a date",
        time: "a time of day",
    }.get(type(value), type(value).__name__)
    if isinstance(value, str):
        if "\x00" in value:
            return "a string with a NUL character"
        return "a string"  # may be a password: never echoed
    if secret or isinstance(value, list | dict):
        return kind
    shown = repr(value).lower() if isinstance(value, bool) else repr(value)
    return f"{kind} ({shown[:40]})"


def _flatten(data: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from value.items()
        else:
            yield key, value


def answer_file_text(
    answers: Mapping[str, str | int | float | bool | None], notes: Iterable[str] = ()
) -> str:
    """TOML for --config: one `option-name = value` line per answer given (never a password),
    after the `notes` as comments."""
    lines = [
        "# setup-tool answers, saved by the wizard: use with --config for unattended runs.",
        f"# The password is never saved: give it as {PASSWORD_ENV} or as {PASSWORD_KEY}.",
        *(f"# {note}" for note in notes),
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
