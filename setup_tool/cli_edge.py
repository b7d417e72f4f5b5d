"""The commands' edge: errors become one clear paragraph and an exit code; Ctrl-C is
handled so that a run stops between batches, never in the middle of one.

Every way of asking a process to stop means what Ctrl-C means: SIGINT, SIGTERM (kill, a service
manager, a container stopping) and, on Windows, Ctrl-Break (SIGBREAK) and closing the console
window, logging off or shutting down (a console control handler). Only SIGKILL cannot be
answered, and the batches' transactions and the session-owned run lock are made for that.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from setup_tool.console import Console
from setup_tool.console_encoding import encode_any_text
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
        encode_any_text()  # a cp850/cp1252/ASCII console must never end a run
        console = Console()
        raised = True
        try:
            with noting_ctrl_c(ctx):
                code = fn(*args, **kwargs)
            raised = False
        except SetupToolError as error:
            # A clean stop (the operator said no, a resumable interruption) is not an ERROR.
            LOGGER.log(_log_level(error), str(error), extra=FILE_ONLY)
            console.error(str(error))
            code = error.exit_code
        except KeyboardInterrupt:
            LOGGER.warning("interrupted (%s)", ctx.meta.get(CTRL_C_KEY, "Ctrl-C"), extra=FILE_ONLY)
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


def _log_level(error: SetupToolError) -> int:
    import logging

    if error.exit_code == ExitCode.INTERRUPTED:
        return logging.WARNING
    if error.exit_code == ExitCode.CANCELLED:
        return logging.INFO
    return logging.ERROR


LOG_FILE_KEY = "setup_tool.log_file"  # ctx.meta: the log file of this command, once it is open

CTRL_C_KEY = "setup_tool.ctrl_c"  # ctx.meta: how the stop was asked (click turns it into Abort)


def stop_signals() -> list[signal.Signals]:
    """The signals that ask this process to stop, on this platform."""
    found = [signal.SIGINT, signal.SIGTERM]
    if sys.platform == "win32":
        found.append(signal.SIGBREAK)  # Ctrl-Break
    else:
        found.append(signal.SIGHUP)  # the terminal window closed
    return found


def signal_description(signum: int) -> str:
    """How the user asked to stop, in their words."""
    if signum == signal.SIGINT:
        return "Ctrl-C"
    if sys.platform == "win32" and signum == signal.SIGBREAK:
        return "Ctrl-Break or the console closing"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


@contextmanager
def _handling(signals: list[signal.Signals], handler: Callable[[int, Any], None]) -> Iterator[bool]:
    """`handler` for each of `signals` during the block; False (and nothing changed) outside the
    main thread, where Python lets no one install handlers. A signal the process was started
    to ignore (nohup, a background job) stays ignored."""
    previous: dict[signal.Signals, Any] = {}
    try:
        for signum in signals:
            if signal.getsignal(signum) != signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread
        for signum, before in previous.items():
            signal.signal(signum, before)
        yield False
        return
    try:
        yield True
    finally:
        for signum, before in previous.items():
            signal.signal(signum, before)


@contextmanager
def noting_ctrl_c(ctx: click.Context) -> Iterator[None]:
    """Ctrl-C (and every other stop signal) keeps its meaning (KeyboardInterrupt), and is noted:
    at a question click turns it into Abort, just like a closed stdin, and the two deserve
    different answers."""

    def handler(signum: int, _frame: object) -> None:
        ctx.meta[CTRL_C_KEY] = signal_description(signum)
        raise KeyboardInterrupt

    with _handling(stop_signals(), handler) as installed:
        # Windows: closing the console raises Ctrl-Break's signal in the main thread, so it
        # reaches whichever handler is current (stop_after_batch's during the writes).
        uninstall = _handle_console_close() if installed else _nothing
        try:
            yield
        finally:
            uninstall()


def aborted(ctx: click.Context, console: Console) -> ExitCode:
    """A question was not answered: Ctrl-C, or stdin closed. Questions all come before writes."""
    if how := ctx.meta.get(CTRL_C_KEY):
        LOGGER.warning("interrupted (%s) at a question; nothing was changed", how, extra=FILE_ONLY)
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
        console.error(f"Unexpected error: {type(error).__name__}: {error}. {_details(ctx)}")
    return ExitCode.FAILED


def _details(ctx: click.Context) -> str:
    """Where the traceback is: the log file, when this command writes one (a dry run, detect
    and history write none unless asked)."""
    if log_file := ctx.meta.get(LOG_FILE_KEY):
        return f"The log file {log_file} has the details; please report it."
    return (
        "No log file was written: run the same command again with --log-file FILE to record "
        "the details, and please report it."
    )


class CtrlC:
    """Ctrl-C (or SIGTERM, Ctrl-Break, the console closing) during an upgrade. Before the writes
    start (planning, questions): stop at once, nothing was changed. Once writing: the first
    finishes the batch in flight and then stops (resumable: the run is recorded as interrupted
    and the report written); a second stops at once (the open batch is rolled back)."""

    def __init__(self, ctx: click.Context, console: Console) -> None:
        self.ctx = ctx
        self.console = console
        self.writing = False
        self.requested = False

    def __call__(self, signum: int, _frame: object) -> None:
        how = signal_description(signum)
        if self.requested or not self.writing:
            self.ctx.meta[CTRL_C_KEY] = how
            raise KeyboardInterrupt
        self.requested = True
        LOGGER.warning("%s: stopping after the current batch", how, extra=FILE_ONLY)
        again = "Ctrl-C again" if signum == signal.SIGINT else f"{how} again, or Ctrl-C,"
        # The terminal may be gone (SIGHUP): stopping matters, saying so does not.
        with contextlib.suppress(OSError):
            self.console.warn(f"\nStopping after the current batch ({again} to stop at once)...")

    def should_stop(self) -> bool:
        return self.requested


@contextmanager
def stop_after_batch(ctx: click.Context, console: Console) -> Iterator[CtrlC]:
    """CtrlC answers every stop signal (and, on Windows, the console closing: see noting_ctrl_c)
    during the block. Outside the main thread (tests) the signals keep their default meaning."""
    control = CtrlC(ctx, console)
    with _handling(stop_signals(), control):
        yield control


def _nothing() -> None:
    pass


# --- Windows: the console window closing, logoff, shutdown ----------------------------------------

# Console control events that Python turns into no signal (Ctrl-C and Ctrl-Break it does).
CONSOLE_CLOSE_EVENTS = {2: "the console window was closed", 5: "logoff", 6: "shutdown"}
# Windows ends the process about 5 seconds after CTRL_CLOSE_EVENT returns or starts.
CONSOLE_CLOSE_GRACE_SECONDS = 4.5
_EXITING = threading.Event()  # set when the interpreter exits: the report is written by then
atexit.register(_EXITING.set)


def console_close_routine(
    stop: Callable[[], None], exiting: threading.Event, grace_seconds: float
) -> Callable[[int], int]:
    """A HandlerRoutine for SetConsoleCtrlHandler. Windows calls it on a thread of its own and
    ends the process when it returns (or after its grace period): so it asks the main thread to
    stop as Ctrl-C would, then waits for the process to finish the batch and exit."""

    def routine(event: int) -> int:
        if event not in CONSOLE_CLOSE_EVENTS:
            return 0  # not ours: the next handler (Python's, for Ctrl-C and Ctrl-Break) decides
        stop()
        exiting.wait(grace_seconds)
        return 1

    return routine


def _stop_main_thread() -> None:
    # As if Ctrl-Break had been pressed: the SIGBREAK handler (CtrlC) runs in the main thread.
    if sys.platform == "win32":
        _thread.interrupt_main(signal.SIGBREAK)
    else:
        _thread.interrupt_main(signal.SIGINT)


def _handle_console_close() -> Callable[[], None]:
    """Windows: the console closing (logoff, shutdown) stops as Ctrl-C does. Returns the undo."""
    if sys.platform != "win32":
        return _nothing
    import ctypes
    from ctypes import wintypes

    routine = console_close_routine(_stop_main_thread, _EXITING, CONSOLE_CLOSE_GRACE_SECONDS)
    callback = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.DWORD)(routine)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    if not kernel32.SetConsoleCtrlHandler(callback, True):
        return _nothing  # no console (a service): the signals above are all there is

    def uninstall() -> None:
        kernel32.SetConsoleCtrlHandler(callback, False)  # `callback` lives until now

    return uninstall


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
