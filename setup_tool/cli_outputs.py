"""What a command leaves behind: the report (or the T-SQL script), the saved answers, the
summary on stderr, and the report kept with the run in the database."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from setup_tool.console import Console
from setup_tool.logs import LOGGER

if TYPE_CHECKING:
    from setup_tool.connection import ConnectionSettings
    from setup_tool.database import Database
    from setup_tool.detect import OperatorAnswers
    from setup_tool.upgrade import UpgradeResult


def emit_report(
    console: Console,
    model: dict[str, Any],
    o: dict[str, Any],
    render: Callable[..., str],
    default_path: Path | None = None,
) -> Path | None:
    """Write the report where asked (or to default_path); otherwise print it on stdout."""
    from setup_tool.report import infer_format, write_text_file

    path = o["report"] or default_path
    fmt = infer_format(path, o["report_format"])
    if path is None:
        click.echo(render(model, fmt), nl=False)
        return None
    model["report_file"] = str(path)
    write_text_file(path, render(model, fmt))
    return path


def save_answers(
    path: Path, settings: ConnectionSettings, answers: OperatorAnswers, o: dict[str, Any]
) -> None:
    from setup_tool.config import answer_file_text
    from setup_tool.report import write_text_file

    text = answer_file_text(
        {
            "database-url": settings.database_url,
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
            "fix-overrides": o["fix_overrides"],
            "acting-associate": o["acting_associate"] or None,
            "batch-size": o["batch_size"],
        }
    )
    write_text_file(path, text)
    click.echo(
        f"Answers saved to {path} (use: setup-tool upgrade --unattended --config {path})", err=True
    )


def emit_script(db: Database, result: UpgradeResult, settings: Any, path: Path | None) -> int:
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
    result: UpgradeResult, report: Path | None, log_file: Path | None, dry_run: bool
) -> None:
    """The outcome on stderr; when blocked or a person must act, why (the report has more)."""
    from setup_tool.errors import EXIT_CODE_MEANINGS

    if dry_run and report is None:
        return  # the report itself went to stdout
    code = result.exit_code
    click.echo(
        f"{result.outcome_text} (exit code {int(code)}: {EXIT_CODE_MEANINGS[code]})", err=True
    )
    for step in result.plan.steps:
        if step.decision == "blocked" or step.action_required:
            click.echo(f"  - {step.title}: {step.reason}", err=True)
            LOGGER.warning("%s: %s", step.title, step.reason)
    why_nothing = result.plan.findings.invites.nothing_to_mark_because
    if why_nothing and not dry_run:
        click.echo(f"  - {why_nothing}", err=True)
    from setup_tool.report_model import after_change_advice

    for line in after_change_advice(result.plan.steps, result.mode):
        click.echo(f"  * {line}", err=True)
    if report:
        click.echo(f"Report: {report}", err=True)
    if log_file:
        click.echo(f"Log:    {log_file}", err=True)


# --- detect, history, undo --------------------------------------------------------------------
