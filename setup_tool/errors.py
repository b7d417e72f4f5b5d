"""Everything a user can cause is a SetupToolError; only the CLI edge turns it into an exit code."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Stable exit codes (documented in README; scripts and installers depend on them)."""

    DONE = 0
    FAILED = 1
    USAGE = 2
    BLOCKED = 3
    ACTION_REQUIRED = 4
    BUSY = 5
    CANNOT_CONNECT = 6
    # Not in SPEC's list (which has no code for it): the operator said no at the wizard's
    # confirmation or at undo's question, so nothing was changed. An installer must tell this
    # apart from a failure; 7 is the first code SPEC leaves free.
    CANCELLED = 7
    CHANGES_PENDING = 10  # only with --dry-run --detailed-exitcode
    INTERRUPTED = 130


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.DONE: "done, nothing more to do",
    ExitCode.FAILED: "failed",
    ExitCode.USAGE: "usage or configuration error",
    ExitCode.BLOCKED: "blocked by a precondition",
    ExitCode.ACTION_REQUIRED: "done, action required",
    ExitCode.BUSY: "another run holds the lock",
    ExitCode.CANNOT_CONNECT: "cannot connect or log in",
    ExitCode.CANCELLED: "cancelled by the operator (nothing was changed)",
    ExitCode.CHANGES_PENDING: "dry run: changes pending",
    ExitCode.INTERRUPTED: "interrupted (resumable)",
}


def one_line(text: str) -> str:
    """`text` with control and formatting characters escaped (a line break typed into a path, a
    terminal escape, a right-to-left override): every message stays one paragraph that says
    what was given, and cannot repaint the terminal or disguise itself."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode() for ch in text)


class SetupToolError(Exception):
    """A failure the user can act on. `hint` says what to do next."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, hint: str | None = None) -> None:
        message = one_line(message)
        super().__init__(message)
        self.message = message
        self.hint = one_line(hint) if hint is not None else None

    def __str__(self) -> str:
        return f"{self.message}\n{self.hint}" if self.hint else self.message


class UsageError(SetupToolError):
    exit_code = ExitCode.USAGE


class MissingAnswerError(UsageError):
    """An answer the unattended mode needs was not supplied."""

    def __init__(self, what: str, option: str, envvar: str, config_key: str) -> None:
        super().__init__(
            f"Missing answer: {what}.",
            f"Supply it with {option}, the environment variable {envvar}, "
            f"or the answer-file key '{config_key}'.",
        )
        self.option = option


class BlockedError(SetupToolError):
    exit_code = ExitCode.BLOCKED


class NotSuperOfficeError(BlockedError):
    """The database lacks the tables or columns this tool depends on."""


class LockBusyError(SetupToolError):
    exit_code = ExitCode.BUSY


class ConnectError(SetupToolError):
    exit_code = ExitCode.CANNOT_CONNECT


class OperatorCancelled(SetupToolError):
    """The operator answered no to a confirmation: nothing was changed, nothing failed."""

    exit_code = ExitCode.CANCELLED


class InterruptedRun(SetupToolError):
    exit_code = ExitCode.INTERRUPTED


class DryRunWriteAttempt(SetupToolError):
    """Raised by the dry-run guard if any statement other than a read reaches the database."""
