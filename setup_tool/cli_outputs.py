"""What a command leaves behind: the report (or the T-SQL script), the saved answers, the
summary on stderr, and the report kept with the run in the database; and, before it connects,
whether each of those files may be written (output_files has the rule)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from setup_tool.cli_values import ConnectionOptions, OutputOptions, UpgradeOptions
from setup_tool.console import Console
from setup_tool.errors import ExitCode, SetupToolError

if TYPE_CHECKING:
    from setup_tool.connection import ConnectionSettings
    from setup_tool.database import Database
    from setup_tool.detect import OperatorAnswers
    from setup_tool.steps import UpgradeSettings
    from setup_tool.upgrade import UpgradeResult

# Query keys that hold a password when someone writes it into the URL (ODBC, libpq).
_PASSWORD_QUERY_KEYS = frozenset({"pwd", "password", "odbc_connect"})


def check_outputs(
    output: OutputOptions,
    log_file: Path | None,
    database_url: str | None,
    default_report: Path | None = None,
    sql_allowed: bool = False,
    save_to: Path | None = None,
) -> None:
    """Refuse (exit 2) a report, answer file, script or log that could overwrite the database
    at `database_url` (or any device, link or database) or that cannot be written. Called before
    logging starts, with the database the options name, and again once the connection is settled
    (the wizard may have asked for it), always before connecting."""
    from setup_tool.output_files import OutputFile, check_output_files
    from setup_tool.report import STDOUT, check_report_suffix

    report = output.report
    if report == STDOUT:  # --report -: standard output, no file to check
        report = None
    check_output_files(
        [
            OutputFile(report, "--report") if report else None,
            OutputFile(default_report, "the report") if default_report and not report else None,
            OutputFile(save_to, "--save-answers") if save_to else None,
            OutputFile(log_file, "--log-file" if output.log_file else "the log", appends=True)
            if log_file
            else None,
        ],
        database_url,
    )
    # After the safety rule (which names the database when a report would overwrite it):
    # a file whose extension names no format is refused, not written as text.
    check_report_suffix(output.report, output.report_format, sql=sql_allowed)


def warn_password_on_command_line(given: ConnectionOptions) -> None:
    """A password typed into --database-url is visible to everyone in the process list."""
    if not given.url_on_command_line:
        return
    if url_without_password(given.database_url)[1]:
        Console().warn(
            "Warning: the password in --database-url can be read by other users of this "
            "machine in the process list. Leave it out of the URL and give it as "
            "SETUP_TOOL_DB_PASSWORD (or db-password in the --config answer file) instead."
        )


def url_without_password(database_url: str | None) -> tuple[str | None, bool]:
    """The URL with its password (and password-like query values) removed, and whether there was
    one. An unparsable URL is None: it cannot be shown safely."""
    if not database_url:
        return database_url, False
    from sqlalchemy.engine import make_url

    try:
        url = make_url(database_url)
    except Exception:
        return None, True
    secret_keys = [key for key in url.query if key.lower() in _PASSWORD_QUERY_KEYS]
    if url.password is None and not secret_keys:
        return database_url, False
    # URL.set() ignores None; the URL is a named tuple, and _replace is its public way.
    url = url._replace(password=None).difference_update_query(secret_keys)
    return url.render_as_string(hide_password=False), True


def emit_report(
    console: Console,
    model: dict[str, Any],
    output: OutputOptions,
    render: Callable[..., str],
    default_path: Path | None = None,
    outcome_stands: bool = False,
) -> Path | None:
    """Write the report where asked (or to default_path); otherwise print it on stdout.

    With `outcome_stands` (a real run has done its work) a report that cannot be written after
    all is a warning, not a failure: the run's result and exit code are what they are.
    """
    from setup_tool.report import STDOUT, infer_format, write_text_file

    path = output.report or default_path
    if path == STDOUT:  # --report -
        path = None
    fmt = infer_format(path, output.report_format)
    if path is None:
        click.echo(render(model, fmt), nl=False)
        return None
    model["report_file"] = str(path)
    try:
        write_text_file(path, render(model, fmt))
    except SetupToolError as error:
        if not outcome_stands:
            raise
        model["report_file"] = None
        console.warn(f"Warning: {error.message} The run's result below is not affected by this.")
        return None
    return path


def save_answers(
    path: Path, settings: ConnectionSettings, answers: OperatorAnswers, options: UpgradeOptions
) -> None:
    from setup_tool.config import PASSWORD_ENV, PASSWORD_KEY, answer_file_text
    from setup_tool.report import write_text_file

    database_url, had_password = url_without_password(settings.database_url)
    notes = (
        [
            "database-url is saved without the password it held: give it as "
            f"{PASSWORD_ENV} or {PASSWORD_KEY}."
            if database_url
            else "database-url held a password and could not be saved without it: "
            "add it here, without the password."
        ]
        if had_password
        else []
    )
    text = answer_file_text(
        {
            "database-url": database_url,
            "server": settings.server,
            "database": settings.database,
            "user": settings.user,
            "trusted-connection": settings.trusted_connection,
            "odbc-driver": settings.odbc_driver,
            "encrypt": settings.encrypt,
            "trust-server-certificate": settings.trust_server_certificate,
            "table-prefix": settings.table_prefix,
            "superoffice-version": answers.superoffice_version,
            "synchronizer-version": answers.synchronizer_version,
            "no-synchronizer": answers.no_synchronizer,
            "invites-since": f"{answers.invites_since:%Y-%m-%d %H:%M:%S}"
            if answers.invites_since
            else None,
            "footprints": ",".join(sorted(answers.footprints)),
            "preference-on-by-default": answers.preference_on_by_default or None,
            "fix-overrides": options.fix_overrides,
            "acting-associate": options.acting_associate or None,
            "batch-size": options.batch_size,
            "pause-between-batches": options.pause_between_batches or None,
        },
        notes,
    )
    write_text_file(path, text)
    click.echo(
        f"Answers saved to {path} (use: setup-tool upgrade --unattended --config {path})", err=True
    )


def emit_script(
    db: Database, result: UpgradeResult, settings: UpgradeSettings, path: Path | None
) -> int:
    from setup_tool.report import write_text_file
    from setup_tool.tsql_script import tsql_script

    if result.plan.blocked:  # nothing to script: say why, as the report would
        click.echo(f"{result.outcome_text} No script was written.", err=True)
        return int(result.exit_code)
    text = tsql_script(db, result.plan, settings)
    if path is None:
        click.echo(text, nl=False)
    else:
        write_text_file(path, text)
        click.echo(f"T-SQL script: {path}", err=True)
    return int(result.exit_code)


def store_report(db: Database, run_id: int, model: dict[str, Any]) -> None:
    from sqlalchemy import update

    run = db.books.run
    with db.engine.begin() as conn:
        conn.execute(
            update(run)
            .where(run.c.run_id == run_id)
            .values(report_json=json.dumps(model, default=str))
        )


def print_summary(
    result: UpgradeResult,
    report: Path | None,
    log_file: Path | None,
    dry_run: bool,
    console: Console | None = None,
) -> None:
    """The outcome on stderr, what each step did and how long it took; when blocked or a
    person must act, why (the report has more)."""
    from setup_tool.errors import EXIT_CODE_MEANINGS
    from setup_tool.wizard_screens import outcome_lines, terminal_width, wrap_for_terminal

    if dry_run and report is None:
        return  # the report itself went to stdout
    console = console or Console()
    code = result.exit_code
    colour = {ExitCode.DONE: "green", ExitCode.ACTION_REQUIRED: "yellow"}.get(code, "red")
    width = terminal_width(console.err)  # a file keeps whole lines
    outcome = f"{result.outcome_text} (exit code {int(code)}: {EXIT_CODE_MEANINGS[code]})"
    for line in wrap_for_terminal(outcome, width):
        click.echo(console.style(line, fg=colour, bold=True), err=True, color=console.colour)

    def say(first: str, text: str) -> None:
        lines = wrap_for_terminal(text, width, first)
        for line in lines:
            click.echo(line, err=True)

    if not dry_run:
        for line in outcome_lines(result, width):
            click.echo(line, err=True)
    for step in result.plan.steps:  # the log has these from the plan already
        if step.decision == "blocked" or step.action_required:
            say("  - ", f"{step.title}: {step.reason}")
    for warning in result.plan.findings.warnings:  # e.g. footprint (c) not used: say it here too
        say("  ! ", warning)
    why_nothing = result.plan.findings.invites.nothing_to_mark_because
    if why_nothing and not dry_run:
        say("  - ", why_nothing)
    from setup_tool.report_model import after_change_advice

    for line in after_change_advice(result.plan.steps, result.mode):
        say("  * ", line)
    if report:
        click.echo(f"Report: {report}", err=True)
    if log_file:
        click.echo(f"Log:    {log_file}", err=True)
