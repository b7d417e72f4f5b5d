"""The command line: parse options, call the library, turn its errors into exit codes.

Heavy modules (SQLAlchemy, alembic, jinja2) are imported inside the commands so that
`setup-tool --help` and `--version` answer at once.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from setup_tool import __version__
from setup_tool.cli_edge import WritingAfterConfirm, exits, stop_after_batch
from setup_tool.cli_inputs import (
    log_file_path,
    open_database_for,
    operator_answers,
    settings_with_logging,
    start_logging,
    timestamp,
)
from setup_tool.cli_options import (
    ANSWERS,
    ASSOCIATE_ID,
    BATCH_SIZE,
    CONTEXT_SETTINGS,
    LOCK_TIMEOUT,
    RUN,
    RUN_ID,
    Seconds,
    SetupToolGroup,
    answer_options,
    colour_option,
    config_option,
    connection_options,
    option,
    output_options,
    upgrade_output_options,
)
from setup_tool.cli_outputs import (
    check_outputs,
    emit_report,
    emit_script,
    print_summary,
    save_answers,
    store_report,
    warn_password_on_command_line,
)
from setup_tool.cli_values import (
    ConnectionOptions,
    DetectOptions,
    HistoryOptions,
    OutputOptions,
    UndoOptions,
    UpgradeOptions,
    detect_options,
    history_options,
    undo_options,
    upgrade_options,
)
from setup_tool.console import Console
from setup_tool.errors import ExitCode, OperatorCancelled, UsageError
from setup_tool.lock_waits import (
    DEFAULT_LOCK_WAIT_RETRIES,
    DEFAULT_LOCK_WAIT_SECONDS,
    HOLDING_LOCK_WAIT_SECONDS,
    MAX_LOCK_WAIT_SECONDS,
    MAX_PAUSE_BETWEEN_BATCHES_SECONDS,
)
from setup_tool.logs import LOGGER
from setup_tool.output_files import default_output_file

if TYPE_CHECKING:
    from setup_tool.database import Database
    from setup_tool.undo import UndoPlan

T = TypeVar("T")


def with_options(
    build: Callable[[click.Context], T],
) -> Callable[[Callable[[click.Context, T], int]], Callable[..., int]]:
    """The command gets its options as one typed value, built once from click's parameters
    (setup_tool.cli_values), instead of click's untyped keyword arguments."""

    def decorate(command: Callable[[click.Context, T], int]) -> Callable[..., int]:
        @functools.wraps(command)
        def callback(ctx: click.Context, /, **_click_params: object) -> int:
            return command(ctx, build(ctx))

        return callback

    return decorate


@click.group(cls=SetupToolGroup, context_settings=CONTEXT_SETTINGS)
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


@cli.command(
    context_settings=CONTEXT_SETTINGS,
    short_help="Make the database safe for SuperOffice invites; see --dry-run.",
)
@config_option
@connection_options
@answer_options
@option(
    "--unattended",
    group=RUN,
    is_flag=True,
    help="Never prompt, never read stdin: every answer from options, SETUP_TOOL_* variables "
    "or --config. Always writes a log file.",
)
@option(
    "--dry-run",
    group=RUN,
    is_flag=True,
    help="Change nothing; report what a real run would do, with row counts and SQL.",
)
@option(
    "-y",
    "--yes",
    group=RUN,
    is_flag=True,
    help="Wizard: answer yes to the confirmation (findings and plan are still shown).",
)
@option(
    "--save-answers",
    group=ANSWERS,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Save this run's answers (connection, versions, choices; never the password) as an "
    "answer file for --config, e.g. for the unattended run on the production server.",
)
@option(
    "--detailed-exitcode",
    group=RUN,
    is_flag=True,
    help="With --dry-run: exit 10 when changes are pending, 0 when there is nothing to do.",
)
@option(
    "--fix-overrides",
    group=ANSWERS,
    is_flag=True,
    help="Also switch on group/individual rows that switch Diary Synchronizer Active off.",
)
@option(
    "--acting-associate",
    group=RUN,
    type=ASSOCIATE_ID,
    default=0,
    help="Associate id written to updated_associate_id (0 = system).",
)
@option(
    "--batch-size",
    group=RUN,
    type=BATCH_SIZE,
    default=1000,  # UpgradeSettings.batch_size: chosen by the online benchmark
    help="Appointments per batch (one transaction each; at most 4,000 on SQL Server, where 5,000 "
    "locks escalate to a table lock).",
)
@option(
    "--lock-timeout",
    group=RUN,
    type=LOCK_TIMEOUT,
    default=None,
    show_default="0 unattended, 30 in the wizard",
    help="Seconds to wait for another run's lock before exiting with code 5.",
)
@option(
    "--lock-wait",
    group=RUN,
    type=Seconds(0, MAX_LOCK_WAIT_SECONDS, min_open=True),
    default=DEFAULT_LOCK_WAIT_SECONDS,
    help="Seconds a batch waits for rows another session (a user) has locked. A batch that "
    f"waited that long, or lost a deadlock, is tried again {DEFAULT_LOCK_WAIT_RETRIES} times "
    "with pauses of 1/4, 1/2 and 1 times this; then the run stops with exit code 1 "
    "(resumable). While a batch holds rows of its own it waits at most "
    f"{HOLDING_LOCK_WAIT_SECONDS:g} s, then lets them go and waits for the busy rows alone, so "
    "users never queue long behind it.",
)
@option(
    "--pause-between-batches",
    group=RUN,
    type=Seconds(0, MAX_PAUSE_BETWEEN_BATCHES_SECONDS),
    default=0.0,
    help="Seconds the marking rests between two batches, holding no lock: for a server that is "
    "busy during office hours. The plan's estimate includes the pauses.",
)
@upgrade_output_options
@click.pass_context
@exits
@with_options(upgrade_options)
def upgrade(ctx: click.Context, o: UpgradeOptions) -> int:
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
    from setup_tool.run_details import gather_run_details
    from setup_tool.steps import UpgradeSettings
    from setup_tool.support_log import log_database, log_environment, log_options
    from setup_tool.upgrade import InterruptedUpgrade, run_upgrade

    output = o.output
    console = Console(quiet=output.quiet, verbose=output.verbose)
    unattended, dry_run = o.unattended, o.dry_run
    if o.detailed_exitcode and not dry_run:
        raise UsageError("--detailed-exitcode goes with --dry-run.")
    script = _wants_script(output)
    if script and not dry_run:
        raise UsageError("--format sql writes the T-SQL script of a dry run; add --dry-run.")
    stamp = timestamp()
    log_file = log_file_path(output, always=unattended or not dry_run, stamp=stamp)
    default_report = (
        None
        if dry_run or output.report
        else default_output_file(f"setup-tool-{stamp}-report.html")  # printed at the end
    )

    def check(database_url: str | None) -> None:
        check_outputs(
            output, log_file, database_url, default_report, dry_run, save_to=o.save_answers
        )

    check(o.connection.database_url)  # before anything is written
    start_logging(ctx, log_file, o.connection.password, output)
    log_environment(
        "upgrade" + (" --dry-run" if dry_run else "") + (" --unattended" if unattended else "")
    )
    log_options(o.sources)
    settings = settings_with_logging(ctx, o.connection, output, unattended, log_file)
    check(settings.database_url)  # again: the wizard may have asked for the database
    warn_password_on_command_line(o.connection)
    db = open_database_for(settings, read_only=dry_run)
    try:
        log_database(db)
        interaction = (
            UnattendedInteraction() if unattended else WizardInteraction(console, assume_yes=o.yes)
        )
        lock_timeout = (
            o.lock_timeout if o.lock_timeout is not None else (0.0 if unattended else 30.0)
        )
        upgrade_settings = UpgradeSettings(
            o.acting_associate,
            o.batch_size,
            o.fix_overrides,
            o.lock_wait,
            pause_between_batches=o.pause_between_batches,
        )
        progress = console.progress("Marking")
        with stop_after_batch(ctx, console) as ctrl_c:
            try:
                result = run_upgrade(
                    db,
                    operator_answers(o.answers),
                    upgrade_settings,
                    default_host_probe(),
                    WritingAfterConfirm(interaction, ctrl_c),
                    dry_run=dry_run,
                    detailed_exitcode=o.detailed_exitcode,
                    lock_timeout=lock_timeout,
                    progress=progress,
                    should_stop=ctrl_c.should_stop,
                )
            except InterruptedUpgrade as stopped:  # recorded as interrupted; report it too
                result = stopped.result
                console.error(stopped.message)
            finally:
                progress.close()
        if o.save_answers:
            save_answers(o.save_answers, settings, result.plan.answers, o)
        if script:
            return emit_script(db, result, upgrade_settings, output.report)
        model = report_model(
            result,
            db,
            log_file=str(log_file) if log_file else None,
            details=gather_run_details(db, result),
        )
        report_path = emit_report(
            console, model, output, render_report, default_report, outcome_stands=not dry_run
        )
        if result.run_id is not None:
            store_report(db, result.run_id, model)
        print_summary(result, report_path, log_file, dry_run, console)
        LOGGER.info("outcome %s, exit code %s", result.outcome, int(result.exit_code))
        return int(result.exit_code)
    finally:
        db.dispose()


def _wants_script(output: OutputOptions) -> bool:
    """--format sql, or a .sql --report without --format: the T-SQL script, not a report."""
    if output.report_format is not None:
        return output.report_format == "sql"
    return output.report is not None and output.report.suffix.lower() == ".sql"


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
@with_options(detect_options)
def detect(ctx: click.Context, o: DetectOptions) -> int:
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

    db = _open_read_only(ctx, o.connection, o.output)
    try:
        answers = operator_answers(o.answers)
        with db.engine.connect() as conn:
            findings = detect_findings(
                conn, db.tables, db.books, answers, default_host_probe(), utc_now()
            )
        emit_report(Console(o.output.quiet), detect_model(findings, db), o.output, render_report)
        return ExitCode.DONE
    finally:
        db.dispose()


@cli.command(
    context_settings=CONTEXT_SETTINGS,
    short_help="List this tool's past runs on the database; changes nothing.",
)
@config_option
@connection_options
@option(
    "--run",
    "run_id",
    group=RUN,
    type=RUN_ID,
    default=None,
    help="Show the report run ID kept when it ran (in --format), instead of the list.",
)
@output_options
@click.pass_context
@exits
@with_options(history_options)
def history(ctx: click.Context, o: HistoryOptions) -> int:
    """List this tool's past runs on the database, newest first; changes nothing.

    \b
    Examples:
      setup-tool history --database-url sqlite:///crm.db --format html --report runs.html
      setup-tool history --database-url sqlite:///crm.db --run 3 --format html --report run3.html
    """
    from setup_tool.bookkeeping import installed_revision, runs
    from setup_tool.report import render_history, render_report
    from setup_tool.report_model import history_model

    db = _open_read_only(ctx, o.connection, o.output)
    console = Console(o.output.quiet)
    try:
        if o.run_id is not None:
            emit_report(console, _stored_report(db, o.run_id), o.output, render_report)
            return ExitCode.DONE
        with db.engine.connect() as conn:
            past = runs(conn, db.books) if installed_revision(conn, db.schema) else []
        emit_report(console, history_model(past, db), o.output, render_history)
        return ExitCode.DONE
    finally:
        db.dispose()


def _open_read_only(
    ctx: click.Context, given: ConnectionOptions, output: OutputOptions
) -> Database:
    """detect and history: check the outputs, start the log (when asked for one), settle the
    connection without questions and open the database read-only."""
    log_file = log_file_path(output, False, timestamp())
    check_outputs(output, log_file, given.database_url)  # before anything is written
    start_logging(ctx, log_file, given.password, output)
    settings = settings_with_logging(ctx, given, output, True, log_file)
    check_outputs(output, log_file, settings.database_url)
    warn_password_on_command_line(given)
    return open_database_for(settings, read_only=True)


@cli.command(
    context_settings=CONTEXT_SETTINGS, short_help="Put back exactly what setup-tool changed."
)
@config_option
@connection_options
@option(
    "--run",
    "run_ids",
    group=RUN,
    type=RUN_ID,
    multiple=True,
    help="Undo only this run (repeatable); default: every run not yet undone.",
)
@option(
    "--unattended",
    group=RUN,
    is_flag=True,
    help="Do not ask for confirmation; never read stdin.",
)
@option(
    "--dry-run",
    group=RUN,
    is_flag=True,
    help="Change nothing; show exactly what undo would put back (counts and sample ids).",
)
@option(
    "--acting-associate",
    group=RUN,
    type=ASSOCIATE_ID,
    default=0,
    help="Associate id written to the travel log (0 = system).",
)
@option(
    "--lock-timeout",
    group=RUN,
    type=LOCK_TIMEOUT,
    default=0.0,
    help="Seconds to wait for another run's lock.",
)
@output_options
@click.pass_context
@exits
@with_options(undo_options)
def undo(ctx: click.Context, o: UndoOptions) -> int:
    """Put back exactly what setup-tool changed (rows changed since by others are left alone).

    \b
    Example:
      setup-tool undo --database-url sqlite:///crm.db --run 3
    """
    from setup_tool.preconditions import require_undo_preconditions
    from setup_tool.report import infer_format
    from setup_tool.support_log import log_database, log_environment, log_options
    from setup_tool.undo import plan_undo
    from setup_tool.undo import undo as undo_changes

    output = o.output
    console = Console(quiet=output.quiet, verbose=output.verbose)
    dry_run = o.dry_run
    if dry_run and infer_format(output.report, output.report_format) not in ("text", "json"):
        raise UsageError(
            "undo --dry-run writes its plan as text or JSON.",
            "Use --format text or --format json (or a .txt or .json --report).",
        )
    stamp = timestamp()
    log_file = log_file_path(output, not dry_run, stamp)
    check_outputs(output, log_file, o.connection.database_url)  # before anything is written
    start_logging(ctx, log_file, o.connection.password, output)
    log_environment("undo" + (" --dry-run" if dry_run else ""))
    log_options(o.sources)
    settings = settings_with_logging(ctx, o.connection, output, o.unattended or dry_run, log_file)
    check_outputs(output, log_file, settings.database_url)
    warn_password_on_command_line(o.connection)
    run_ids = list(o.run_ids) or None
    db = open_database_for(settings, read_only=dry_run)
    try:
        log_database(db)
        # Rights, records this version knows, the travel log: before asking, before writing.
        if not dry_run:
            require_undo_preconditions(db, run_ids)
        plan = plan_undo(db, run_ids)
        for line in plan.lines():
            LOGGER.info("undo plan: %s", line)
        if dry_run:
            _emit_undo_plan(output, plan)
            return ExitCode.DONE
        if not o.unattended:
            # What it will put back, on the terminal with the question.
            console.tell()
            for line in plan.lines():
                console.tell(line)
            if not click.confirm(
                f"Undo setup-tool's changes {_which_runs(o.run_ids)} in {db.display_url}?",
                default=False,
                err=True,
            ):
                LOGGER.info("decision: the operator declined to undo")
                raise OperatorCancelled("Cancelled: nothing was changed.")
            LOGGER.info("decision: undo")
        progress = console.progress("Restoring")
        try:
            result = undo_changes(
                db,
                run_ids=run_ids,
                acting_associate_id=o.acting_associate,
                lock_timeout=o.lock_timeout,
                progress=progress,
            )
        finally:
            progress.close()
        if not result.undone_runs:
            console.say("setup-tool has no changes to undo in this database.")
        else:
            console.say(
                f"Undid run(s) {', '.join(map(str, result.undone_runs))}: "
                f"{result.restored:,} row(s) restored, {result.removed:,} removed."
            )
        for conflict in result.conflicts[:20]:
            console.warn(f"Left as it is (changed by someone else since): {conflict}")
        if len(result.conflicts) > 20:
            console.warn(f"... and {len(result.conflicts) - 20:,} more (see the log).")
        LOGGER.info("undo: %s", result)
        LOGGER.info("outcome exit code %s", int(result.exit_code))
        click.echo(f"Log: {log_file}", err=True)
        return int(result.exit_code)
    finally:
        db.dispose()


def _emit_undo_plan(output: OutputOptions, plan: UndoPlan) -> None:
    """undo --dry-run: the plan on stdout, or in --report, as text or JSON."""
    import json

    from setup_tool.report import STDOUT, infer_format, write_text_file

    fmt = infer_format(output.report, output.report_format)
    text = (
        json.dumps(plan.model(), indent=2) + "\n"
        if fmt == "json"
        else "\n".join(["setup-tool undo --dry-run: nothing was changed", *plan.lines()]) + "\n"
    )
    if output.report is None or output.report == STDOUT:
        click.echo(text, nl=False)
    else:
        write_text_file(output.report, text)
        click.echo(f"Report: {output.report}", err=True)


def _stored_report(db: Database, run_id: int) -> dict[str, Any]:
    """The report a run kept in the database, in the shape today's templates read."""
    import json

    from setup_tool.bookkeeping import installed_revision, stored_report
    from setup_tool.report_model import normalised_stored_report

    with db.engine.connect() as conn:
        text = (
            stored_report(conn, db.books, run_id) if installed_revision(conn, db.schema) else None
        )
    if not text:
        raise UsageError(
            f"Run {run_id} kept no report in this database (no such run, or it stopped "
            "before it could write one).",
            "See 'setup-tool history' for the runs and which of them kept a report.",
        )
    model: dict[str, Any] = normalised_stored_report(json.loads(text))
    return model


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
@option(
    "--scenario",
    "demo_scenario",
    type=click.Choice(["new-customer", "existing-customer", "r10-shape"]),
    default="new-customer",
    envvar="SETUP_TOOL_DEMO_SCENARIO",
    help="What happened around the upgrade to 8.5 R10, 400 days ago. new-customer: users "
    "have sent and received SuperOffice invites since then with Diary Synchronizer Active off, "
    "and the synchronizer was installed two days ago, so the upgrade has invite appointments "
    "to mark. existing-customer: the synchronizer has been in use for years, so SuperOffice's "
    "own upgrade switched Diary Synchronizer Active on before any invite existed, and the "
    "upgrade marks nothing. r10-shape: like new-customer, but with the tables of a genuine "
    "8.5 R10 database (no SendEmail, owned_externally or mother_associate_id column, no "
    "invitation table).",
)
@option("--travel/--no-travel", default=False, help="Travel/EnableTravel on or off.")
@option("--seed", type=int, default=2019, help="Random seed (same seed, same database).")
@option("--overwrite", is_flag=True, help="Replace an existing file.")
@colour_option
@exits
def demo(
    path: Path,
    *,
    appointments: int,
    demo_superoffice_version: str,
    demo_synchronizer_version: str,
    demo_no_synchronizer: bool,
    demo_scenario: str,
    travel: bool,
    seed: int,
    overwrite: bool,
) -> int:
    """Build an embedded SuperOffice-shaped demo database (SQLite) to try the tool on.

    \b
    Examples:
      setup-tool demo crm.db --appointments 100000 --travel
      setup-tool demo crm.db --scenario existing-customer
    """
    from setup_tool.demo import DemoOptions, build_demo_database

    console = Console()
    options = DemoOptions(
        appointments=appointments,
        superoffice_version=demo_superoffice_version,
        synchronizer_version=None if demo_no_synchronizer else demo_synchronizer_version,
        travel=travel,
        seed=seed,
        scenario=demo_scenario,
    )
    progress = console.progress("Generating appointments")
    try:
        summary = build_demo_database(path, options, overwrite=overwrite, progress=progress)
    except OSError as error:  # a name the file system refuses (too long, not allowed there)
        raise UsageError(
            f"Cannot create the demo database {path}: {error.strerror or error}.",
            "Choose another file name, in a folder you may write.",
        ) from None
    finally:
        progress.close()
    console.say(f"Demo database written to {path}:")
    for line in summary.lines():
        console.say(f"  {line}")
    console.say(f"Next: setup-tool upgrade --database-url sqlite:///{path}")
    return ExitCode.DONE


def main() -> None:
    cli(prog_name="setup-tool")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())  # type: ignore[func-returns-value]
