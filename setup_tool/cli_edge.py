"""The commands' edge: errors become one clear paragraph and an exit code; Ctrl-C is
handled so that a run stops between batches, never in the middle of one."""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from setup_tool.console import Console
from setup_tool.errors import ExitCode, SetupToolError
from setup_tool.logs import FILE_ONLY, LOGGER

if TYPE_CHECKING:
    from setup_tool.detect import OperatorAnswers
    from setup_tool.findings import Findings
    from setup_tool.upgrade import Interaction, UpgradePlan

F = TypeVar("F", bound=Callable[..., Any])


def exits(fn: F) -> F:
    """Run a command; its return value, or the error it raised, becomes the exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        ctx = click.get_current_context()
        console = Console()
        raised = True
        try:
            with noting_ctrl_c(ctx):
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
            code = aborted(ctx, console)
        except Exception as error:  # the edge: no traceback reaches a user
            code = unexpected(ctx, console, error)
        if raised and ctx.meta.get(LOG_FILE_KEY):
            click.echo(f"Log:    {ctx.meta[LOG_FILE_KEY]}", err=True)
        ctx.exit(int(code))

    return wrapper  # type: ignore[return-value]


LOG_FILE_KEY = "setup_tool.log_file"  # ctx.meta: the log file of this command, once it is open

CTRL_C_KEY = "setup_tool.ctrl_c"  # ctx.meta: Ctrl-C was pressed (click turns it into Abort)


@contextmanager
def noting_ctrl_c(ctx: click.Context) -> Iterator[None]:
    """Ctrl-C keeps its meaning (KeyboardInterrupt), and is noted: at a question click turns it
    into Abort, just like a closed stdin, and the two deserve different answers."""

    def handler(_signum: int, _frame: object) -> None:
        ctx.meta[CTRL_C_KEY] = True
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


def aborted(ctx: click.Context, console: Console) -> ExitCode:
    """A question was not answered: Ctrl-C, or stdin closed. Questions all come before writes."""
    if ctx.meta.get(CTRL_C_KEY):
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


def unexpected(ctx: click.Context, console: Console, error: Exception) -> ExitCode:
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


class CtrlC:
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
            self.ctx.meta[CTRL_C_KEY] = True
            raise KeyboardInterrupt
        self.requested = True
        self.console.warn("\nStopping after the current batch (Ctrl-C again to stop at once)...")

    def should_stop(self) -> bool:
        return self.requested


@contextmanager
def stop_after_batch(ctx: click.Context, console: Console) -> Iterator[CtrlC]:
    control = CtrlC(ctx, console)
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


class WritingAfterConfirm:
    """The interaction, telling the Ctrl-C handler when the confirmed writes begin."""

    def __init__(self, inner: Interaction, control: CtrlC) -> None:
        self.inner = inner
        self.control = control

    def answer_superoffice_version(self, findings: Findings) -> str | None:
        return self.inner.answer_superoffice_version(findings)

    def answer_synchronizer(self, findings: Findings) -> OperatorAnswers | None:
        return self.inner.answer_synchronizer(findings)

    def answer_invites_since(self, findings: Findings) -> datetime | None:
        return self.inner.answer_invites_since(findings)

    def confirm(self, plan: UpgradePlan) -> bool:
        self.control.writing = self.inner.confirm(plan)
        return self.control.writing
