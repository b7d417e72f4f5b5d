"""What a command needs before it starts: the connection (from options, the answer file,
the environment or the wizard's prompts), the operator's answers, the log file."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from setup_tool.cli_edge import LOG_FILE_KEY
from setup_tool.cli_options import EARLY_WARNINGS_KEY
from setup_tool.cli_values import AnswerOptions, ConnectionOptions, OutputOptions, Secret
from setup_tool.config import PASSWORD_ENV, PASSWORD_KEY
from setup_tool.errors import UsageError
from setup_tool.logs import DEFAULT_LOG_LEVEL, FILE_ONLY, LOG_LEVELS, LOGGER, configure_logging

if TYPE_CHECKING:
    from setup_tool.connection import ConnectionSettings
    from setup_tool.database import Database
    from setup_tool.detect import OperatorAnswers


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


def connection_settings(given: ConnectionOptions, unattended: bool) -> ConnectionSettings:
    """The connection to open: the options, else (in the wizard) the operator's answers."""
    from setup_tool.connection import ConnectionSettings

    url = given.database_url
    # SETUP_TOOL_DB_PASSWORD / db-password are for server logins; a database file has none
    password = None if url and url.lower().startswith("sqlite") else given.password
    if not url and not given.server:
        if unattended:
            raise UsageError(
                "Missing answer: which database to use.",
                "Supply --database-url (SETUP_TOOL_DATABASE_URL, answer-file key database-url) or "
                "--server with --database (SETUP_TOOL_SERVER / server, SETUP_TOOL_DATABASE / "
                "database).",
            )
        given = ask_connection(given)
    elif not unattended and given.target_remembered:
        # The wizard's connection screen, with the answer file's (or environment's) answers
        # as defaults: confirm them or type others.
        given = ask_connection(given, default=url or given.server)
    if given.server and given.user and not given.trusted_connection and not password:
        if unattended:
            raise UsageError(
                f"Missing answer: the password for SQL Server login {given.user!r}.",
                f"Supply it with the environment variable {PASSWORD_ENV} or the answer-file key "
                f"'{PASSWORD_KEY}' (it is never an option, so it cannot show in the process list).",
            )
        typed: str = click.prompt(f"Password for {given.user}", hide_input=True, err=True)
        password = Secret(typed)
    return ConnectionSettings(
        database_url=given.database_url,
        server=given.server,
        database=given.database,
        user=given.user,
        password=password.reveal() if password else None,
        trusted_connection=given.trusted_connection,
        odbc_driver=given.odbc_driver,
        encrypt=given.encrypt,
        trust_server_certificate=given.trust_server_certificate,
        table_prefix=given.table_prefix,
        login_timeout=given.login_timeout,
    )


def start_logging(
    ctx: click.Context, log_file: Path | None, secret: Secret | None, output: OutputOptions
) -> None:
    """Log from the start (a missing answer is logged too); errors then say where the log is.
    The detail is the command's --log-level (debug when it has none)."""
    level = LOG_LEVELS[output.log_level or DEFAULT_LOG_LEVEL]
    configure_logging(log_file, secret.reveal() if secret else None, output.verbose, level)
    if log_file is not None:
        ctx.meta[LOG_FILE_KEY] = log_file
    for warning in ctx.meta.pop(EARLY_WARNINGS_KEY, []):  # shown before the log was open
        LOGGER.warning(warning, extra=FILE_ONLY)


def settings_with_logging(
    ctx: click.Context,
    given: ConnectionOptions,
    output: OutputOptions,
    unattended: bool,
    log_file: Path | None,
) -> ConnectionSettings:
    settings = connection_settings(given, unattended)
    typed = settings.password or url_password(settings.database_url)
    secret = Secret(typed) if typed else given.password
    if secret != given.password:  # typed at the prompt, or inside the URL: scrub it too
        start_logging(ctx, log_file, secret, output)
    return settings


def url_password(database_url: str | None) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(database_url).password if database_url else None
    except Exception:  # an unparsable URL is reported when it is opened
        return None


def ask_connection(given: ConnectionOptions, default: str | None = None) -> ConnectionOptions:
    """The wizard's connection questions: a database URL, or SQL Server, database and login."""
    target: str = click.prompt(
        "SQL Server (host\\instance) or a database URL (e.g. sqlite:///crm.db)",
        default=default,
        err=True,
    )
    if "://" in target:
        return replace(given, database_url=target.strip(), server=None)
    database: str = click.prompt("Database", default=given.database or "SuperOffice", err=True)
    login: str = click.prompt(
        "SQL Server login (empty: Windows integrated login)",
        default="" if given.trusted_connection else (given.user or ""),
        show_default=bool(given.user) and not given.trusted_connection,
        err=True,
    )
    return replace(
        given,
        database_url=None,
        server=target.strip(),
        database=database,
        user=login or None,
        trusted_connection=not login,
    )


def operator_answers(answers: AnswerOptions) -> OperatorAnswers:
    from setup_tool.detect import OperatorAnswers

    if answers.no_synchronizer and answers.synchronizer_version:
        raise UsageError(
            "--no-synchronizer and --synchronizer-version contradict each other.",
            "Give one of them.",
        )
    from setup_tool.invites import parse_footprints

    try:
        footprints = parse_footprints(answers.footprints)
    except ValueError as error:
        raise UsageError(
            f"Invalid --footprints {answers.footprints!r}: {error}.",
            "For example --footprints invitation,send-email (SETUP_TOOL_FOOTPRINTS, "
            "answer-file key footprints).",
        ) from None
    return OperatorAnswers(
        superoffice_version=answers.superoffice_version,
        synchronizer_version=answers.synchronizer_version,
        no_synchronizer=answers.no_synchronizer,
        known_builds_file=answers.known_builds,
        invites_since=answers.invites_since,
        footprints=footprints,
        preference_on_by_default=answers.preference_on_by_default,
    )


def log_file_path(output: OutputOptions, always: bool, stamp: str) -> Path | None:
    """--log-file, else (when this command always logs) one in the tool's own folder, never
    the working directory (output_files.default_output_folder)."""
    from setup_tool.output_files import default_output_file

    if output.log_file:
        return output.log_file
    return default_output_file(f"setup-tool-{stamp}.log") if always else None


def open_database_for(settings: ConnectionSettings, read_only: bool) -> Database:
    from setup_tool.database import open_database

    return open_database(settings, read_only=read_only)
