"""Options shared by the commands: each has a SETUP_TOOL_<NAME> variable and an answer-file key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from setup_tool.config import envvar, load_answer_file
from setup_tool.errors import UsageError

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
        answers = load_answer_file(value, answer_file_keys(ctx.command))
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
                type=click.IntRange(min=1),
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
