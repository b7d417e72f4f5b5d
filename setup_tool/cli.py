"""The command line: parse options, call the library, turn its errors into exit codes.

Heavy modules (SQLAlchemy, alembic, jinja2) are imported inside the commands so that
`setup-tool --help` and `--version` answer at once.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from setup_tool import __version__
from setup_tool.cli_options import (
    CONTEXT_SETTINGS,
    answer_options,
    config_option,
    connection_options,
    option,
    output_options,
)
from setup_tool.config import PASSWORD_ENV, PASSWORD_KEY
from setup_tool.console import Console
from setup_tool.errors import ExitCode, SetupToolError, UsageError
from setup_tool.logs import FILE_ONLY, LOGGER, configure_logging

if TYPE_CHECKING:
    from setup_tool.connection import ConnectionSettings
    from setup_tool.database import Database
    from setup_tool.detect import OperatorAnswers
    from setup_tool.findings import Findings
    from setup_tool.upgrade import Interaction, UpgradePlan, UpgradeResult

F = TypeVar("F", bound=Callable[..., Any])


def exits(fn: F) -> F:
    """Run a command; its return value, or the error it raised, becomes the exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        ctx = click.get_current_context()
        console = Console()
        raised = True
        try:
            with _noting_ctrl_c(ctx):
                code = fn(*args, **kwargs)
            raised = False
        except SetupToolError as error:
            LOGGER.error(str(error), extra=FILE_ONLY)
            console.error(str(error))
            code = error.exit_code
        except KeyboardInterrupt:
            LOGGER.warning("interrupted (Ctrl-C)", extra=FILE_ONLY)
            console.error(
                "Interrupted. Nothing is half-done: run the same command again to resume."
            )
            code = ExitCode.INTERRUPTED
        except click.Abort:
            code = _aborted(ctx, console)
        except Exception as error:  # the edge: no traceback reaches a user
            code = _unexpected(ctx, console, error)
        if raised and ctx.meta.get(_LOG_FILE):
            click.echo(f"Log:    {ctx.meta[_LOG_FILE]}", err=True)
        ctx.exit(int(code))

    return wrapper  # type: ignore[return-value]


_LOG_FILE = "setup_tool.log_file"  # ctx.meta: the log file of this command, once it is open
_CTRL_C = "setup_tool.ctrl_c"  # ctx.meta: Ctrl-C was pressed (click turns it into Abort)


@contextmanager
def _noting_ctrl_c(ctx: click.Context) -> Iterator[None]:
    """Ctrl-C keeps its meaning (KeyboardInterrupt), and is noted: at a question click turns it
    into Abort, just like a closed stdin, and the two deserve different answers."""

    def handler(_signum: int, _frame: object) -> None:
        ctx.meta[_CTRL_C] = True
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _aborted(ctx: click.Context, console: Console) -> ExitCode:
    """A question was not answered: Ctrl-C, or stdin closed. Questions all come before writes."""
    if ctx.meta.get(_CTRL_C):
        LOGGER.warning("interrupted (Ctrl-C) at a question; nothing was changed", extra=FILE_ONLY)
        console.error("Interrupted at a question: nothing was changed.")
        return ExitCode.INTERRUPTED
    LOGGER.error("no answer to a question (stdin closed); nothing was changed", extra=FILE_ONLY)
    console.error(
        "Cancelled: a question got no answer (standard input is closed), so nothing "
        "was changed.\nTo run without questions, use --unattended and supply every "
        "answer as an option, SETUP_TOOL_* variable or in the --config answer file."
    )
    return ExitCode.FAILED


def _unexpected(ctx: click.Context, console: Console, error: Exception) -> ExitCode:
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    LOGGER.exception("unexpected error", extra=FILE_ONLY)
    writes = ctx.command.name in ("upgrade", "undo") and not ctx.params.get("dry_run")
    again = (
        "Every finished batch is kept; after fixing the cause, run the same command again "
        "to resume."
        if writes
        else "After fixing the cause, run the same command again."
    )
    if isinstance(error, DBAPIError):
        detail = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
        console.error(f"The database reported an error: {detail}\n{again}")
    elif isinstance(error, SQLAlchemyError):
        console.error(f"Database error: {error}.\n{again}")
    else:
        console.error(
            f"Unexpected error: {type(error).__name__}: {error}. The log file has "
            "the details; please report it."
        )
    return ExitCode.FAILED


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="setup-tool")
def cli() -> None:
    """Make an on-premise SuperOffice database safe for SuperOffice invites when the InfoBridge
    Synchronizer keeps diaries in sync with Outlook or Google.

    \b
    Quick start:
      setup-tool demo crm.db
      setup-tool upgrade --database-url sqlite:///crm.db --dry-run
      setup-tool upgrade --database-url sqlite:///crm.db
    """


# --- shared plumbing --------------------------------------------------------------------------


def _stamp() -> str:
    """The time, for default file names; -2, -3... when a run in the same second took it."""
    base = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        stamp = base if n == 1 else f"{base}-{n}"
        if not any(Path(f"setup-tool-{stamp}{end}").exists() for end in (".log", "-report.html")):
            return stamp
    return base


def _password(ctx: click.Context) -> str | None:
    return os.environ.get(PASSWORD_ENV) or ctx.meta.get("db_password")


def _connection(ctx: click.Context, o: dict[str, Any], unattended: bool) -> ConnectionSettings:
    from setup_tool.connection import ConnectionSettings

    url, server = o["database_url"], o["server"]
    # SETUP_TOOL_DB_PASSWORD / db-password are for server logins; a database file has none
    password = None if url and url.lower().startswith("sqlite") else _password(ctx)
    if not url and not server:
        if unattended:
            raise UsageError(
                "Missing answer: which database to use.",
                "Supply --database-url (SETUP_TOOL_DATABASE_URL, answer-file key database-url) or "
                "--server with --database (SETUP_TOOL_SERVER / server, SETUP_TOOL_DATABASE / "
                "database).",
            )
        url, server, o = _ask_connection(o)
    elif not unattended and _remembered(ctx, "database_url", "server"):
        # The wizard's connection screen, with the answer file's (or environment's) answers
        # as defaults: confirm them or type others.
        url, server, o = _ask_connection(o, default=url or server)
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


def _start_logging(
    ctx: click.Context, log_file: Path | None, secret: str | None, verbose: bool
) -> None:
    """Log from the start (a missing answer is logged too); errors then say where the log is."""
    configure_logging(log_file, secret, verbose)
    if log_file is not None:
        ctx.meta[_LOG_FILE] = log_file


def _settings(
    ctx: click.Context, o: dict[str, Any], unattended: bool, log_file: Path | None
) -> ConnectionSettings:
    settings = _connection(ctx, o, unattended)
    secret = settings.password or _url_password(settings.database_url) or _password(ctx)
    if secret != _password(ctx):  # typed at the prompt, or inside the URL: scrub it too
        _start_logging(ctx, log_file, secret, o["verbose"])
    return settings


def _url_password(database_url: str | None) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(database_url).password if database_url else None
    except Exception:  # an unparsable URL is reported when it is opened
        return None


def _remembered(ctx: click.Context, *names: str) -> bool:
    """Given by the answer file or the environment, not typed on this command line."""
    from click.core import ParameterSource

    sources = [ctx.get_parameter_source(name) for name in names]
    remembered = (ParameterSource.DEFAULT_MAP, ParameterSource.ENVIRONMENT)
    return ParameterSource.COMMANDLINE not in sources and any(s in remembered for s in sources)


def _ask_connection(
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


def _answers(o: dict[str, Any]) -> Any:
    from setup_tool.detect import OperatorAnswers

    if o["no_synchronizer"] and o["synchronizer_version"]:
        raise UsageError(
            "--no-synchronizer and --synchronizer-version contradict each other.",
            "Give one of them.",
        )
    return OperatorAnswers(
        superoffice_version=o["superoffice_version"],
        synchronizer_version=o["synchronizer_version"],
        no_synchronizer=o["no_synchronizer"],
        known_builds_file=o["known_builds"],
    )


def _log_file(o: dict[str, Any], always: bool, stamp: str) -> Path | None:
    if o["log_file"]:
        return Path(o["log_file"])
    return Path(f"setup-tool-{stamp}.log") if always else None


def _emit(
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


class _CtrlC:
    """Ctrl-C during an upgrade. Before the writes start (planning, questions): stop at once,
    nothing was changed. Once writing: the first finishes the batch in flight and then stops
    (resumable); a second stops at once (the open batch is rolled back)."""

    def __init__(self, ctx: click.Context, console: Console) -> None:
        self.ctx = ctx
        self.console = console
        self.writing = False
        self.requested = False

    def __call__(self, _signum: int, _frame: object) -> None:
        if self.requested or not self.writing:
            self.ctx.meta[_CTRL_C] = True
            raise KeyboardInterrupt
        self.requested = True
        self.console.warn("\nStopping after the current batch (Ctrl-C again to stop at once)...")

    def should_stop(self) -> bool:
        return self.requested


@contextmanager
def _stop_after_batch(ctx: click.Context, console: Console) -> Iterator[_CtrlC]:
    control = _CtrlC(ctx, console)
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, control)
    except ValueError:  # not the main thread (tests): Ctrl-C keeps its default meaning
        previous = None
    try:
        yield control
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


class _WritingAfterConfirm:
    """The interaction, telling the Ctrl-C handler when the confirmed writes begin."""

    def __init__(self, inner: Interaction, control: _CtrlC) -> None:
        self.inner = inner
        self.control = control

    def answer_superoffice_version(self, findings: Findings) -> str | None:
        return self.inner.answer_superoffice_version(findings)

    def answer_synchronizer(self, findings: Findings) -> OperatorAnswers | None:
        return self.inner.answer_synchronizer(findings)

    def show_findings(self, findings: Findings) -> None:
        self.inner.show_findings(findings)

    def confirm(self, plan: UpgradePlan) -> bool:
        self.control.writing = self.inner.confirm(plan)
        return self.control.writing


def _open(settings: ConnectionSettings, read_only: bool) -> Database:
    from setup_tool.database import open_database

    return open_database(settings, read_only=read_only)


# --- upgrade ----------------------------------------------------------------------------------


@cli.command(
    context_settings=CONTEXT_SETTINGS,
    short_help="Make the database safe for SuperOffice invites; see --dry-run.",
)
@config_option
@connection_options
@answer_options
@option(
    "--unattended",
    is_flag=True,
    help="Never prompt, never read stdin: every answer from options, SETUP_TOOL_* variables "
    "or --config. Always writes a log file.",
)
@option(
    "--dry-run",
    is_flag=True,
    help="Change nothing; report what a real run would do, with row counts and SQL.",
)
@option(
    "-y",
    "--yes",
    is_flag=True,
    help="Wizard: answer yes to the confirmation (findings and plan are still shown).",
)
@option(
    "--save-answers",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save this run's answers (connection, versions, choices; never the password) as an "
    "answer file for --config, e.g. for the unattended run on the production server.",
)
@option(
    "--detailed-exitcode",
    is_flag=True,
    help="With --dry-run: exit 10 when changes are pending, 0 when there is nothing to do.",
)
@option(
    "--fix-overrides",
    is_flag=True,
    help="Also switch on group/individual rows that switch Diary Synchronizer Active off.",
)
@option(
    "--acting-associate",
    type=click.IntRange(min=0),
    default=0,
    help="Associate id written to updated_associate_id (0 = system).",
)
@option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=2000,
    help="Appointments per batch (one transaction each).",
)
@option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=None,
    show_default="0 unattended, 30 in the wizard",
    help="Seconds to wait for another run's lock before exiting with code 5.",
)
@output_options
@click.pass_context
@exits
def upgrade(ctx: click.Context, /, **o: Any) -> int:
    """Upgrade the database for SuperOffice invites (the wizard; see --unattended, --dry-run).

    \b
    Examples:
      setup-tool upgrade --database-url sqlite:///crm.db
      setup-tool upgrade --server sql01 --database SuperOffice --trusted-connection --dry-run \\
          --report plan.html
      SETUP_TOOL_DB_PASSWORD=... setup-tool upgrade --unattended --config answers.toml
    """
    from setup_tool.host_probe import default_host_probe
    from setup_tool.interaction import UnattendedInteraction, WizardInteraction
    from setup_tool.report import render_report
    from setup_tool.report_model import report_model
    from setup_tool.steps import UpgradeSettings
    from setup_tool.upgrade import UpgradeResult, dry_run_outcome, run_upgrade

    console = Console(quiet=o["quiet"], verbose=o["verbose"])
    unattended, dry_run = o["unattended"], o["dry_run"]
    if o["detailed_exitcode"] and not dry_run:
        raise UsageError("--detailed-exitcode goes with --dry-run.")
    script = o["report_format"] == "sql" or (
        o["report_format"] is None
        and o["report"] is not None
        and o["report"].suffix.lower() == ".sql"
    )
    if script and not dry_run:
        raise UsageError("--format sql writes the T-SQL script of a dry run; add --dry-run.")
    stamp = _stamp()
    log_file = _log_file(o, always=unattended or not dry_run, stamp=stamp)
    _start_logging(ctx, log_file, _password(ctx), o["verbose"])
    LOGGER.info(
        "setup-tool %s upgrade%s%s",
        __version__,
        " --dry-run" if dry_run else "",
        " --unattended" if unattended else "",
    )
    settings = _settings(ctx, o, unattended, log_file)
    db = _open(settings, read_only=dry_run)
    try:
        LOGGER.info("database %s (%s, table prefix %s)", db.display_url, db.dialect_name, db.schema)

        def describe(plan: Any) -> str:
            outcome, code = dry_run_outcome(plan, False)
            model = report_model(UpgradeResult(plan, "dry-run", outcome, code), db)
            for step in model["steps"]:
                step["sql"] = []  # the console shows the plan; the SQL is in the report
            return render_report(model, "text")

        interaction = (
            UnattendedInteraction()
            if unattended
            else WizardInteraction(console, describe, assume_yes=o["yes"])
        )
        lock_timeout = (
            o["lock_timeout"] if o["lock_timeout"] is not None else (0.0 if unattended else 30.0)
        )
        upgrade_settings = UpgradeSettings(
            o["acting_associate"], o["batch_size"], o["fix_overrides"]
        )
        progress = console.progress("Marking invite appointments")
        with _stop_after_batch(ctx, console) as ctrl_c:
            try:
                result = run_upgrade(
                    db,
                    _answers(o),
                    upgrade_settings,
                    default_host_probe(),
                    _WritingAfterConfirm(interaction, ctrl_c),
                    dry_run=dry_run,
                    detailed_exitcode=o["detailed_exitcode"],
                    lock_timeout=lock_timeout,
                    progress=progress,
                    should_stop=ctrl_c.should_stop,
                )
            finally:
                progress.close()
        if o["save_answers"]:
            _save_answers(o["save_answers"], settings, result.plan.answers, o)
        if script:
            return _emit_script(db, result, upgrade_settings, o["report"])
        model = report_model(result, db, log_file=str(log_file) if log_file else None)
        default_report = None if dry_run else Path(f"setup-tool-{stamp}-report.html")
        report_path = _emit(console, model, o, render_report, default_report)
        if result.run_id is not None:
            _store_report(db, result.run_id, model)
        _summary(result, report_path, log_file, dry_run)
        LOGGER.info("outcome %s, exit code %s", result.outcome, int(result.exit_code))
        return int(result.exit_code)
    finally:
        db.dispose()


def _save_answers(
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
            "fix-overrides": o["fix_overrides"],
            "acting-associate": o["acting_associate"] or None,
            "batch-size": o["batch_size"],
        }
    )
    write_text_file(path, text)
    click.echo(
        f"Answers saved to {path} (use: setup-tool upgrade --unattended --config {path})", err=True
    )


def _emit_script(db: Database, result: UpgradeResult, settings: Any, path: Path | None) -> int:
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


def _store_report(db: Database, run_id: int, model: dict[str, Any]) -> None:
    from sqlalchemy import update

    run = db.books.run
    with db.engine.begin() as conn:
        conn.execute(
            update(run)
            .where(run.c.run_id == run_id)
            .values(report_json=json.dumps(model, default=str))
        )


def _summary(
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
    if report:
        click.echo(f"Report: {report}", err=True)
    if log_file:
        click.echo(f"Log:    {log_file}", err=True)


# --- detect, history, undo --------------------------------------------------------------------


@cli.command(
    context_settings=CONTEXT_SETTINGS,
    short_help="Show what the tool finds, with evidence; changes nothing.",
)
@config_option
@connection_options
@answer_options
@output_options
@click.pass_context
@exits
def detect(ctx: click.Context, /, **o: Any) -> int:
    """Show what the tool finds, with the evidence for each finding; changes nothing.

    \b
    Example:
      setup-tool detect --database-url sqlite:///crm.db --format md
    """
    from setup_tool.clock import utc_now
    from setup_tool.detect import detect as detect_findings
    from setup_tool.host_probe import default_host_probe
    from setup_tool.report import render_report
    from setup_tool.report_model import detect_model

    log_file = _log_file(o, False, _stamp())
    _start_logging(ctx, log_file, _password(ctx), o["verbose"])
    settings = _settings(ctx, o, True, log_file)
    db = _open(settings, read_only=True)
    try:
        with db.engine.connect() as conn:
            findings = detect_findings(
                conn, db.tables, db.books, _answers(o), default_host_probe(), utc_now()
            )
        _emit(Console(o["quiet"]), detect_model(findings, db), o, render_report)
        return ExitCode.DONE
    finally:
        db.dispose()


@cli.command(
    context_settings=CONTEXT_SETTINGS,
    short_help="List this tool's past runs on the database; changes nothing.",
)
@config_option
@connection_options
@output_options
@click.pass_context
@exits
def history(ctx: click.Context, /, **o: Any) -> int:
    """List this tool's past runs on the database, newest first; changes nothing.

    \b
    Example:
      setup-tool history --database-url sqlite:///crm.db --format html --report runs.html
    """
    from setup_tool.bookkeeping import installed_revision, runs
    from setup_tool.report import render_history
    from setup_tool.report_model import history_model

    log_file = _log_file(o, False, _stamp())
    _start_logging(ctx, log_file, _password(ctx), o["verbose"])
    settings = _settings(ctx, o, True, log_file)
    db = _open(settings, read_only=True)
    try:
        with db.engine.connect() as conn:
            past = runs(conn, db.books) if installed_revision(conn, db.schema) else []
        _emit(Console(o["quiet"]), history_model(past, db), o, render_history)
        return ExitCode.DONE
    finally:
        db.dispose()


@cli.command(
    context_settings=CONTEXT_SETTINGS, short_help="Put back exactly what setup-tool changed."
)
@config_option
@connection_options
@option(
    "--run",
    "run_ids",
    type=int,
    multiple=True,
    help="Undo only this run (repeatable); default: every run not yet undone.",
)
@option("--unattended", is_flag=True, help="Do not ask for confirmation; never read stdin.")
@option(
    "--acting-associate",
    type=click.IntRange(min=0),
    default=0,
    help="Associate id written to the travel log (0 = system).",
)
@option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Seconds to wait for another run's lock.",
)
@output_options
@click.pass_context
@exits
def undo(ctx: click.Context, /, **o: Any) -> int:
    """Put back exactly what setup-tool changed (rows changed since by others are left alone).

    \b
    Example:
      setup-tool undo --database-url sqlite:///crm.db --run 3
    """
    from setup_tool.undo import undo as undo_changes

    console = Console(quiet=o["quiet"], verbose=o["verbose"])
    stamp = _stamp()
    log_file = _log_file(o, True, stamp)
    _start_logging(ctx, log_file, _password(ctx), o["verbose"])
    LOGGER.info("setup-tool %s undo", __version__)
    settings = _settings(ctx, o, o["unattended"], log_file)
    db = _open(settings, read_only=False)
    try:
        if not o["unattended"] and not click.confirm(
            f"Undo setup-tool's changes {_which_runs(o['run_ids'])} in {db.display_url}?",
            default=False,
            err=True,
        ):
            raise SetupToolError("Cancelled: nothing was changed.")
        progress = console.progress("Restoring appointments")
        try:
            result = undo_changes(
                db,
                run_ids=list(o["run_ids"]) or None,
                acting_associate_id=o["acting_associate"],
                lock_timeout=o["lock_timeout"],
                progress=progress,
            )
        finally:
            progress.close()
        if not result.undone_runs:
            console.say("setup-tool has no changes to undo in this database.")
        else:
            console.say(
                f"Undid run(s) {', '.join(map(str, result.undone_runs))}: "
                f"{result.restored} row(s) restored, {result.removed} removed."
            )
        for conflict in result.conflicts[:20]:
            console.warn(f"Left as it is (changed by someone else since): {conflict}")
        if len(result.conflicts) > 20:
            console.warn(f"... and {len(result.conflicts) - 20} more (see the log).")
        LOGGER.info("undo: %s", result)
        click.echo(f"Log: {log_file}", err=True)
        return int(result.exit_code)
    finally:
        db.dispose()


def _which_runs(run_ids: tuple[int, ...]) -> str:
    return f"of run(s) {', '.join(map(str, run_ids))}" if run_ids else "of every run"


# --- demo -------------------------------------------------------------------------------------


@cli.command(
    context_settings=CONTEXT_SETTINGS,
    short_help="Build a SuperOffice-shaped SQLite demo database to try the tool on.",
)
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@option(
    "--appointments",
    type=click.IntRange(0, 100_000_000),
    default=20_000,
    help="How many appointment rows to generate.",
)
@option(
    "--superoffice-version",
    "demo_superoffice_version",
    default="8.5 R10",
    envvar="SETUP_TOOL_DEMO_SUPEROFFICE_VERSION",
    help="SuperOffice version it claims to be.",
)
@option(
    "--synchronizer-version",
    "demo_synchronizer_version",
    default="3.2.284",
    envvar="SETUP_TOOL_DEMO_SYNCHRONIZER_VERSION",
    help="InfoBridge Synchronizer version it records.",
)
@option(
    "--no-synchronizer",
    "demo_no_synchronizer",
    is_flag=True,
    envvar="SETUP_TOOL_DEMO_NO_SYNCHRONIZER",
    help="A database without a synchronizer.",
)
@option("--travel/--no-travel", default=False, help="Travel/EnableTravel on or off.")
@option("--seed", type=int, default=2019, help="Random seed (same seed, same database).")
@option("--overwrite", is_flag=True, help="Replace an existing file.")
@exits
def demo(path: Path, **o: Any) -> int:
    """Build an embedded SuperOffice-shaped demo database (SQLite) to try the tool on.

    \b
    Example:
      setup-tool demo crm.db --appointments 100000 --travel
    """
    from setup_tool.demo import DemoOptions, build_demo_database

    console = Console()
    options = DemoOptions(
        appointments=o["appointments"],
        superoffice_version=o["demo_superoffice_version"],
        synchronizer_version=None if o["demo_no_synchronizer"] else o["demo_synchronizer_version"],
        travel=o["travel"],
        seed=o["seed"],
    )
    progress = console.progress("Generating appointments")
    try:
        summary = build_demo_database(path, options, overwrite=o["overwrite"], progress=progress)
    finally:
        progress.close()
    console.say(f"Demo database written to {path}:")
    console.say(
        f"  {summary.appointments:,} appointments, {summary.meetings:,} meetings, "
        f"{summary.invite_meetings:,} with external participants "
        f"({summary.invite_rows:,} rows, {summary.invite_rows_to_mark:,} to mark)"
    )
    console.say(f"Next: setup-tool upgrade --database-url sqlite:///{path}")
    return ExitCode.DONE


def main() -> None:
    cli(prog_name="setup-tool")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())  # type: ignore[func-returns-value]
