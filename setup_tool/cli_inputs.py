"""What a command needs before it starts: the connection (from options, the answer file,
the environment or the wizard's prompts), the operator's answers, the log file."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from setup_tool.cli_edge import LOG_FILE_KEY
from setup_tool.cli_options import EARLY_WARNINGS_KEY
from setup_tool.config import PASSWORD_ENV, PASSWORD_KEY
from setup_tool.errors import UsageError
from setup_tool.logs import DEFAULT_LOG_LEVEL, FILE_ONLY, LOG_LEVELS, LOGGER, configure_logging

if TYPE_CHECKING:
    from setup_tool.connection import ConnectionSettings
    from setup_tool.database import Database


def timestamp() -> str:
    """The time, for default file names; -2, -3... when a run in the same second took it."""
    from setup_tool.output_files import default_output_folder

    base = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = default_output_folder()
    for n in range(1, 1000):
        stamp = base if n == 1 else f"{base}-{n}"
        if not any(
            (folder / f"setup-tool-{stamp}{end}").exists() for end in (".log", "-report.html")
        ):
            return stamp
    return base


def password_given(ctx: click.Context) -> str | None:
    return os.environ.get(PASSWORD_ENV) or ctx.meta.get("db_password")


def connection_settings(
    ctx: click.Context, o: dict[str, Any], unattended: bool
) -> ConnectionSettings:
    from setup_tool.connection import ConnectionSettings

    url, server = o["database_url"], o["server"]
    # SETUP_TOOL_DB_PASSWORD / db-password are for server logins; a database file has none
    password = None if url and url.lower().startswith("sqlite") else password_given(ctx)
    if not url and not server:
        if unattended:
            raise UsageError(
                "Missing answer: which database to use.",
                "Supply --database-url (SETUP_TOOL_DATABASE_URL, answer-file key database-url) or "
                "--server with --database (SETUP_TOOL_SERVER / server, SETUP_TOOL_DATABASE / "
                "database).",
            )
        url, server, o = ask_connection(o)
    elif not unattended and remembered(ctx, "database_url", "server"):
        # The wizard's connection screen, with the answer file's (or environment's) answers
        # as defaults: confirm them or type others.
        url, server, o = ask_connection(o, default=url or server)
    if server and o["user"] and not o["trusted_connection"] and not password:
        if unattended:
            raise UsageError(
                f"Missing answer: the password for SQL Server login {o['user']!r}.",
                f"Supply it with the environment variable {PASSWORD_ENV} or the answer-file key "
                f"'{PASSWORD_KEY}' (it is never an option, so it cannot show in the process list).",
            )
        password = click.prompt(f"Password for {o['user']}", hide_input=True, err=True)
    return ConnectionSettings(
        database_url=url,
        server=server,
        database=o["database"],
        user=o["user"],
        password=password,
        trusted_connection=o["trusted_connection"],
        odbc_driver=o["odbc_driver"],
        encrypt=o["encrypt"],
        trust_server_certificate=o["trust_server_certificate"],
        table_prefix=o["table_prefix"],
        login_timeout=o["login_timeout"],
    )


def start_logging(
    ctx: click.Context, log_file: Path | None, secret: str | None, verbose: bool
) -> None:
    """Log from the start (a missing answer is logged too); errors then say where the log is.
    The detail is the command's --log-level (debug when it has none)."""
    level = LOG_LEVELS[ctx.params.get("log_level") or DEFAULT_LOG_LEVEL]
    configure_logging(log_file, secret, verbose, level)
    if log_file is not None:
        ctx.meta[LOG_FILE_KEY] = log_file
    for warning in ctx.meta.pop(EARLY_WARNINGS_KEY, []):  # shown before the log was open
        LOGGER.warning(warning, extra=FILE_ONLY)


def settings_with_logging(
    ctx: click.Context, o: dict[str, Any], unattended: bool, log_file: Path | None
) -> ConnectionSettings:
    settings = connection_settings(ctx, o, unattended)
    secret = settings.password or url_password(settings.database_url) or password_given(ctx)
    if secret != password_given(ctx):  # typed at the prompt, or inside the URL: scrub it too
        start_logging(ctx, log_file, secret, o["verbose"])
    return settings


def url_password(database_url: str | None) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(database_url).password if database_url else None
    except Exception:  # an unparsable URL is reported when it is opened
        return None


def remembered(ctx: click.Context, *names: str) -> bool:
    """Given by the answer file or the environment, not typed on this command line."""
    from click.core import ParameterSource

    sources = [ctx.get_parameter_source(name) for name in names]
    remembered = (ParameterSource.DEFAULT_MAP, ParameterSource.ENVIRONMENT)
    return ParameterSource.COMMANDLINE not in sources and any(s in remembered for s in sources)


def ask_connection(
    o: dict[str, Any], default: str | None = None
) -> tuple[str | None, str | None, dict[str, Any]]:
    target: str = click.prompt(
        "SQL Server (host\\instance) or a database URL (e.g. sqlite:///crm.db)",
        default=default,
        err=True,
    )
    if "://" in target:
        return target.strip(), None, o
    o = dict(o)
    o["database"] = click.prompt("Database", default=o["database"] or "SuperOffice", err=True)
    login: str = click.prompt(
        "SQL Server login (empty: Windows integrated login)",
        default="" if o["trusted_connection"] else (o["user"] or ""),
        show_default=bool(o["user"]) and not o["trusted_connection"],
        err=True,
    )
    o["user"] = login or None
    o["trusted_connection"] = not login
    return None, target.strip(), o


def operator_answers(o: dict[str, Any]) -> Any:
    from setup_tool.detect import OperatorAnswers

    if o["no_synchronizer"] and o["synchronizer_version"]:
        raise UsageError(
            "--no-synchronizer and --synchronizer-version contradict each other.",
            "Give one of them.",
        )
    from setup_tool.invites import parse_footprints

    try:
        footprints = parse_footprints(o["footprints"])
    except ValueError as error:
        raise UsageError(
            f"Invalid --footprints {o['footprints']!r}: {error}.",
            "For example --footprints invitation,send-email (SETUP_TOOL_FOOTPRINTS, "
            "answer-file key footprints).",
        ) from None
    return OperatorAnswers(
        superoffice_version=o["superoffice_version"],
        synchronizer_version=o["synchronizer_version"],
        no_synchronizer=o["no_synchronizer"],
        known_builds_file=o["known_builds"],
        invites_since=o["invites_since"],
        footprints=footprints,
        preference_on_by_default=o["preference_on_by_default"],
    )


def log_file_path(o: dict[str, Any], always: bool, stamp: str) -> Path | None:
    """--log-file, else (when this command always logs) one in the tool's own folder, never
    the working directory (output_files.default_output_folder)."""
    from setup_tool.output_files import default_output_file

    if o["log_file"]:
        return Path(o["log_file"])
    return default_output_file(f"setup-tool-{stamp}.log") if always else None


def open_database_for(settings: ConnectionSettings, read_only: bool) -> Database:
    from setup_tool.database import open_database

    return open_database(settings, read_only=read_only)


# --- upgrade ----------------------------------------------------------------------------------
