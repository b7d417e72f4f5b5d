"""Options shared by the commands: each has a SETUP_TOOL_<NAME> variable and an answer-file key."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click

from setup_tool.config import ENV_PREFIX, PASSWORD_ENV, AnswerKind, envvar, load_answer_file
from setup_tool.errors import UsageError, one_line

F = TypeVar("F", bound=Callable[..., Any])

CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def option(*decls: str, **attrs: Any) -> Callable[[F], F]:
    """click.option that also reads SETUP_TOOL_<NAME> and shows it (and the default) in --help."""
    long_name = max((d for d in decls if d.startswith("--")), key=len).split("/")[0]
    attrs.setdefault("envvar", envvar(long_name))
    attrs.setdefault("show_envvar", True)
    attrs.setdefault("show_default", True)
    return click.option(*decls, **attrs)


def _load_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    if value is None:
        return None
    try:
        answers = load_answer_file(
            value, answer_file_keys(ctx.command), answer_file_kinds(ctx.command)
        )
    except UsageError as error:
        raise click.BadParameter(str(error)) from None
    ctx.meta["db_password"] = answers.pop("db_password", None)
    ctx.default_map = {**(ctx.default_map or {}), **answers}
    return value


def answer_file_keys(command: click.Command) -> dict[str, str]:
    """Answer-file key -> parameter: the option's long name (format = "json" for --format),
    and also the parameter's own name spelled with dashes (report-format)."""
    keys: dict[str, str] = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name and param.name != "config":
            long = max((o for o in param.opts if o.startswith("--")), key=len, default=None)
            if long:
                keys[long.removeprefix("--")] = param.name
    for name in list(keys.values()):
        keys.setdefault(name.replace("_", "-"), name)
    return keys


def answer_file_kinds(command: click.Command) -> dict[str, AnswerKind]:
    """Parameter name -> the TOML type its answer-file key takes (checked before click sees it,
    so 1.5 never becomes 1 and 12345 never reaches code that expects text)."""
    kinds: dict[str, AnswerKind] = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name and param.name != "config":
            kinds[param.name] = _kind(param)
    return kinds


def _kind(param: click.Option) -> AnswerKind:
    kind: AnswerKind
    if param.is_flag or isinstance(param.type, click.types.BoolParamType):
        kind = "boolean"
    elif isinstance(param.type, click.types.IntParamType):
        kind = "integer"
    elif isinstance(param.type, click.types.FloatParamType):
        kind = "number"
    elif isinstance(param.type, click.DateTime):
        kind = "date"
    else:  # text, a choice or a path
        kind = "text"
    return f"list of {kind}" if param.multiple else kind  # type: ignore[return-value]


# --- values with ranges: what the database columns and the clock can hold ---------------------

INT32_MAX = 2**31 - 1  # Integer columns (associate and run ids) are 32-bit signed everywhere
MAX_BATCH_SIZE = 100_000
MAX_LOCK_TIMEOUT = 86_400.0  # a day: longer is a stuck run, not a wait
MAX_LOGIN_TIMEOUT = 3_600


class WholeNumber(click.IntRange):
    """An integer in a range; a float (1.5 from an answer file) or a boolean is refused, never
    truncated."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, bool | float):
            self.fail(f"{value!r} is not a whole number.", param, ctx)
        return super().convert(value, param, ctx)


class Seconds(click.FloatRange):
    """A finite number of seconds in a range: nan and inf are refused (nan compares false with
    every bound, so a plain range lets it through, and a wait for nan seconds never ends)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, bool):
            self.fail(f"{value!r} is not a number of seconds.", param, ctx)
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number of seconds.", param, ctx)
        return number


ASSOCIATE_ID = WholeNumber(0, INT32_MAX)
RUN_ID = WholeNumber(1, INT32_MAX)
BATCH_SIZE = WholeNumber(1, MAX_BATCH_SIZE)
LOCK_TIMEOUT = Seconds(0, MAX_LOCK_TIMEOUT)
LOGIN_TIMEOUT = WholeNumber(1, MAX_LOGIN_TIMEOUT)


# --- SETUP_TOOL_* variables: a typo must not pass silently -------------------------------------

EARLY_WARNINGS_KEY = "setup_tool.early_warnings"  # ctx.meta: said before the log was open
TEST_ENV_PREFIX = "SETUP_TOOL_TEST_"  # the test suite's own variables (README, Development)


def known_variables(commands: Iterable[click.Command]) -> set[str]:
    known = {PASSWORD_ENV}
    for command in commands:
        for param in command.params:
            if isinstance(param, click.Option) and param.envvar:
                envvars = param.envvar
                known.update([envvars] if isinstance(envvars, str) else envvars)
    return known


def unknown_variable_warnings(
    environ: Iterable[str], commands: Iterable[click.Command]
) -> list[str]:
    """One warning per SETUP_TOOL_* variable no command reads, with the closest known name."""
    known = known_variables(commands)
    warnings = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known or name.startswith(TEST_ENV_PREFIX):
            continue
        # Compared without the common prefix, which would make every name look alike.
        suffixes = {k.removeprefix(ENV_PREFIX): k for k in known}
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), sorted(suffixes), n=1)
        hint = f" Did you mean {suffixes[close[0]]}?" if close else ""
        warnings.append(
            f"The environment variable {one_line(name)} is not one setup-tool reads, so it is "
            f"ignored.{hint}"
        )
    return warnings


class SetupToolGroup(click.Group):
    """The top-level command: before anything else, warn about SETUP_TOOL_* variables that no
    command reads (SETUP_TOOL_DRYRUN=1 would otherwise let a real run go ahead unnoticed)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        warnings = unknown_variable_warnings(os.environ, self.commands.values())
        for warning in warnings:
            click.echo(f"Warning: {warning}", err=True)
        ctx.meta[EARLY_WARNINGS_KEY] = warnings
        return super().parse_args(ctx, args)


def config_option(f: F) -> F:
    return option(
        "--config",
        type=click.Path(dir_okay=False, path_type=Path),
        is_eager=True,
        expose_value=False,
        callback=_load_config,
        help='TOML answer file; keys are option names (e.g. table-prefix = "crm7"), plus '
        "db-password. Command line and environment win over the file.",
    )(f)


def connection_options(f: F) -> F:
    for decorator in reversed(
        [
            option(
                "--database-url",
                metavar="URL",
                help="Any SQLAlchemy URL, e.g. sqlite:///crm.db or postgresql+psycopg://u@h/db. "
                "A password in it is never shown.",
            ),
            option("--server", metavar="HOST[\\INSTANCE][,PORT]", help="SQL Server to connect to."),
            option("--database", metavar="NAME", help="SQL Server database (e.g. SuperOffice)."),
            option(
                "--user",
                metavar="LOGIN",
                help="SQL Server login. The password comes from the prompt, "
                "SETUP_TOOL_DB_PASSWORD or the answer-file key db-password, never an option.",
            ),
            option("--trusted-connection", is_flag=True, help="Windows integrated login."),
            option(
                "--odbc-driver",
                metavar="NAME",
                help="ODBC driver; default: the newest 'ODBC Driver NN for SQL Server', then "
                "FreeTDS.",
            ),
            option(
                "--encrypt/--no-encrypt",
                default=None,
                show_default="driver default",
                help="Encrypt the SQL Server connection.",
            ),
            option(
                "--trust-server-certificate",
                is_flag=True,
                help="Accept the server's certificate without validation.",
            ),
            option(
                "--table-prefix",
                metavar="SCHEMA",
                show_default="crm7 on SQL Server, none on SQLite",
                help="Schema of the SuperOffice tables.",
            ),
            option(
                "--login-timeout",
                type=LOGIN_TIMEOUT,
                default=15,
                help="Seconds to wait for the database to answer a login.",
            ),
        ]
    ):
        f = decorator(f)
    return f


def answer_options(f: F) -> F:
    for decorator in reversed(
        [
            option(
                "--superoffice-version",
                metavar="VERSION",
                help='The installed SuperOffice version (e.g. "8.5 R10") when the database does '
                "not say.",
            ),
            option(
                "--synchronizer-version",
                metavar="VERSION",
                help="The InfoBridge Synchronizer in use and its version (e.g. 3.2.284), or "
                "'unknown'.",
            ),
            option("--no-synchronizer", is_flag=True, help="No on-premise synchronizer is in use."),
            option(
                "--invites-since",
                type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
                show_default="the first 8.5 R10+ ProductVersion row or invitation row",
                help="UTC date (and time) since when SuperOffice invites were possible here: "
                "the day the database was upgraded to 8.5 R10. Meetings registered earlier are "
                "never marked, and e-mailed invitations (emailId) count only after it.",
            ),
            option(
                "--footprints",
                metavar="LIST",
                default="invitation,send-email,email-id",
                help="Which footprints of the invite system make a meeting an invite meeting: "
                "invitation (an invitation row), send-email (SendEmail = 1), email-id (emailId "
                "after invites-since). Comma-separated.",
            ),
            option(
                "--known-builds",
                type=click.Path(dir_okay=False, path_type=Path),
                help="TOML table of SuperOffice 8.5 builds and their R releases, added to the "
                "shipped one.",
            ),
        ]
    ):
        f = decorator(f)
    return f


def output_options(f: F) -> F:
    for decorator in reversed(
        [
            option(
                "--report",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Write the report to FILE.",
            ),
            option(
                "--format",
                "report_format",
                type=click.Choice(["text", "md", "html", "json", "sql"]),
                show_default="from the report's extension, else text",
                help="Report format. sql (upgrade --dry-run only): the whole upgrade as a T-SQL "
                "script to review and run in SQL Server Management Studio.",
            ),
            option(
                "--log-file",
                type=click.Path(dir_okay=False, path_type=Path),
                show_default="setup-tool-<time>.log for real runs and unattended",
                help="Full debug log with timestamps.",
            ),
            option("-q", "--quiet", is_flag=True, help="Only errors and the outcome."),
            option("-v", "--verbose", is_flag=True, help="Log detail on the console too."),
        ]
    ):
        f = decorator(f)
    return f
