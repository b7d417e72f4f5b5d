"""Options shared by the commands: each has a SETUP_TOOL_<NAME> variable and an answer-file key."""

from __future__ import annotations

import difflib
import functools
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


# The sections of a command's --help, in this order; an option names its own (`group=`).
CONNECTION, ANSWERS, RUN, OUTPUT = "Connection", "Answer", "Run", "Output"
HELP_GROUPS = (CONNECTION, ANSWERS, RUN, OUTPUT)


class GroupedOption(click.Option):
    """An option that knows which --help section it belongs to."""

    def __init__(self, *args: Any, group: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.group = group


class GroupedCommand(click.Command):
    """--help lists the options in sections (connection, answers, run, output), each option
    with its environment variable and default, instead of one list of 35."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                group = getattr(param, "group", None) or ""
                sections.setdefault(group, []).append(record)
        for group in (*HELP_GROUPS, *sorted(set(sections) - set(HELP_GROUPS))):
            if group in sections:
                # Ungrouped options (-h, and every option of a small command) come last.
                with formatter.section(f"{group} options" if group else "Options"):
                    formatter.write_dl(sections[group])


def option(*decls: str, group: str | None = None, **attrs: Any) -> Callable[[F], F]:
    """click.option that also reads SETUP_TOOL_<NAME> and shows it (and the default) in --help,
    in the --help section `group`."""
    long_name = max((d for d in decls if d.startswith("--")), key=len).split("/")[0]
    attrs.setdefault("envvar", envvar(long_name))
    attrs.setdefault("show_envvar", True)
    attrs.setdefault("show_default", True)
    return click.option(*decls, cls=GroupedOption, group=group, **attrs)


# ctx.meta: the answer file's db-password, put aside by --config (it is no option, so click's
# parameters never hold it); read once, into a Secret, by cli_values.given_password.
PASSWORD_META_KEY = "setup_tool.db_password"


def _load_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    if value is None:
        return None
    try:
        answers = load_answer_file(
            value, answer_file_keys(ctx.command), answer_file_kinds(ctx.command)
        )
    except UsageError as error:
        raise click.BadParameter(str(error)) from None
    ctx.meta[PASSWORD_META_KEY] = answers.pop("db_password", None)
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
    command reads (SETUP_TOOL_DRYRUN=1 would otherwise let a real run go ahead unnoticed).
    Its commands list their options in sections (GroupedCommand)."""

    command_class = GroupedCommand

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        warnings = unknown_variable_warnings(os.environ, self.commands.values())
        for warning in warnings:
            click.echo(f"Warning: {warning}", err=True)
        ctx.meta[EARLY_WARNINGS_KEY] = warnings
        return super().parse_args(ctx, args)


def config_option(f: F) -> F:
    return option(
        "--config",
        group=ANSWERS,
        type=click.Path(dir_okay=False, path_type=Path),
        is_eager=True,
        expose_value=False,
        callback=_load_config,
        help='TOML answer file; keys are option names (e.g. table-prefix = "crm7"), plus '
        "db-password. Command line and environment win over the file.",
    )(f)


def connection_options(f: F) -> F:
    opt = functools.partial(option, group=CONNECTION)
    for decorator in reversed(
        [
            opt(
                "--database-url",
                metavar="URL",
                help="Any SQLAlchemy URL, e.g. sqlite:///crm.db or postgresql+psycopg://u@h/db. "
                "A password in it is never shown.",
            ),
            opt("--server", metavar="HOST[\\INSTANCE][,PORT]", help="SQL Server to connect to."),
            opt("--database", metavar="NAME", help="SQL Server database (e.g. SuperOffice)."),
            opt(
                "--user",
                metavar="LOGIN",
                help="SQL Server login. The password comes from the prompt, "
                "SETUP_TOOL_DB_PASSWORD or the answer-file key db-password, never an option.",
            ),
            opt("--trusted-connection", is_flag=True, help="Windows integrated login."),
            opt(
                "--odbc-driver",
                metavar="NAME",
                help="ODBC driver; default: the newest 'ODBC Driver NN for SQL Server', then "
                "FreeTDS.",
            ),
            opt(
                "--encrypt/--no-encrypt",
                default=None,
                show_default="driver default",
                help="Encrypt the SQL Server connection.",
            ),
            opt(
                "--trust-server-certificate",
                is_flag=True,
                help="Accept the server's certificate without validation.",
            ),
            opt(
                "--table-prefix",
                metavar="SCHEMA",
                show_default="crm7 on SQL Server, none on SQLite",
                help="Schema of the SuperOffice tables.",
            ),
            opt(
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
    opt = functools.partial(option, group=ANSWERS)
    for decorator in reversed(
        [
            opt(
                "--superoffice-version",
                metavar="VERSION",
                help='The installed SuperOffice version (e.g. "8.5 R10") when the database does '
                "not say.",
            ),
            opt(
                "--synchronizer-version",
                metavar="VERSION",
                help="The InfoBridge Synchronizer in use and its version (e.g. 3.2.284), or "
                "'unknown'.",
            ),
            opt("--no-synchronizer", is_flag=True, help="No on-premise synchronizer is in use."),
            opt(
                "--invites-since",
                type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
                show_default="the first 8.5 R10+ ProductVersion row or invitation row",
                help="UTC date (and time) since when SuperOffice invites were possible here: "
                "the day the database was upgraded to 8.5 R10. Meetings registered earlier are "
                "never marked, and e-mailed invitations (emailId) count only after it.",
            ),
            opt(
                "--footprints",
                metavar="LIST",
                default="invitation,send-email,email-id",
                help="Which footprints of the invite system make a meeting an invite meeting: "
                "invitation (an invitation row), send-email (SendEmail = 1), email-id (emailId "
                "after invites-since). Comma-separated.",
            ),
            opt(
                "--preference-on-by-default",
                is_flag=True,
                help="Only when no UserPreference row says what Diary Synchronizer Active is: it "
                "was on by default since invites arrived (SuperOffice's 8.5 R11 release notes), "
                "so nothing was made while it was off and nothing is marked. Without it, no row "
                "means not on.",
            ),
            opt(
                "--known-builds",
                type=click.Path(dir_okay=False, path_type=Path),
                help="TOML table of SuperOffice 8.5 builds and their R releases, added to the "
                "shipped one.",
            ),
        ]
    ):
        f = decorator(f)
    return f


def _remember_colour(ctx: click.Context, _param: click.Parameter, value: bool | None) -> None:
    from setup_tool.console import COLOUR_KEY

    ctx.meta[COLOUR_KEY] = value


def colour_option(f: F) -> F:
    return option(
        "--color/--no-color",
        group=OUTPUT,
        default=None,
        is_eager=True,  # decided before any other option can fail and print an error
        expose_value=False,
        callback=_remember_colour,
        show_default="colour on a terminal, unless NO_COLOR or TERM=dumb; FORCE_COLOR forces it",
        help="Colour the messages on the terminal.",
    )(f)


def _output_options(formats: list[str], format_help: str) -> Callable[[F], F]:
    from setup_tool.logs import DEFAULT_LOG_LEVEL, LOG_LEVELS

    opt = functools.partial(option, group=OUTPUT)

    def decorate(f: F) -> F:
        for decorator in reversed(
            [
                opt(
                    "--report",
                    type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
                    help="Write the report to FILE (.txt, .md, .html or .json; - for standard "
                    "output).",
                ),
                opt(
                    "--format",
                    "report_format",
                    type=click.Choice(formats),
                    show_default="from the report's extension, else text",
                    help=format_help,
                ),
                opt(
                    "--log-file",
                    type=click.Path(dir_okay=False, path_type=Path),
                    # never the working folder: output_files.default_output_folder
                    show_default="setup-tool-<time>.log in %ProgramData%\\setup-tool (Linux: "
                    "~/.local/state/setup-tool), for real runs and unattended",
                    help="Log with UTC timestamps: environment, options and where each came "
                    "from, findings, plan, decision, batches, outcome.",
                ),
                opt(
                    "--log-level",
                    type=click.Choice(list(LOG_LEVELS)),
                    default=DEFAULT_LOG_LEVEL,
                    help="How much the log (and -v) carries: debug adds each batch's range, rows "
                    "and time.",
                ),
                opt("-q", "--quiet", is_flag=True, help="Only errors and the outcome."),
                opt("-v", "--verbose", is_flag=True, help="Log detail on the console too."),
                colour_option,
            ]
        ):
            f = decorator(f)
        return f

    return decorate


REPORT_FORMAT_HELP = "Report format."
output_options = _output_options(["text", "md", "html", "json"], REPORT_FORMAT_HELP)
# Only the upgrade's dry run has a T-SQL script to write.
upgrade_output_options = _output_options(
    ["text", "md", "html", "json", "sql"],
    "Report format. sql (with --dry-run): the whole upgrade as a T-SQL script to review and "
    "run in SQL Server Management Studio.",
)
