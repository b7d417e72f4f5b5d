"""Logging: full detail with timestamps to the log file, a readable console, no secrets anywhere."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, quote_plus

from setup_tool.errors import SetupToolError

LOGGER = logging.getLogger("setup_tool")
# Without a handler, logging's "last resort" prints warnings and errors (with tracebacks) on
# stderr: the console already shows every error once, in plain words.
LOGGER.addHandler(logging.NullHandler())

# For messages the console already shows in its own words: logged to the file, not echoed by -v.
FILE_ONLY = {"file_only": True}


def _not_file_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "file_only", False)


# --- secrets ----------------------------------------------------------------------------------

HIDDEN = "***"
# Shorter secrets are hidden only where they stand as the password (a URL's userinfo, PWD=):
# hiding every "0" of the text for a password "0" would wreck the log and point at the secret.
DISTINCTIVE_SECRET_LENGTH = 4

# scheme://user:SECRET@host: everything up to the last "@" of the authority is the password.
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:]*:)[^\s/?#]*(?=@)")
# PWD=SECRET; password={SE;CRET} password='SECRET': ODBC and libpq connection strings, URL queries.
_KEYED_PASSWORD = re.compile(
    r"(?<![\w-])((?:pwd|password)\s*=\s*)(\{(?:[^}]|\}\})*\}?|'(?:[^'\\]|\\.)*'?|[^;&\s]+)",
    re.IGNORECASE,
)


def hide_secrets(text: str, secret: str | None = None) -> str:
    """`text` with every password hidden as a whole: a URL's password and a PWD=/password= value
    always, and `secret` itself (also URL-encoded or ODBC-braced) wherever it stands as a token
    of its own, once it is long enough to be told from ordinary text."""
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + HIDDEN, text)
    text = _KEYED_PASSWORD.sub(lambda m: m.group(1) + HIDDEN, text)
    pattern = _secret_pattern(secret)
    return pattern.sub(HIDDEN, text) if pattern else text


def _secret_pattern(secret: str | None) -> re.Pattern[str] | None:
    if not secret or len(secret) < DISTINCTIVE_SECRET_LENGTH:
        return None
    variants = {secret, secret.replace("}", "}}"), quote_plus(secret), quote(secret, safe="")}
    alternatives = [_as_token(v) for v in sorted(variants, key=len, reverse=True)]
    return re.compile("|".join(alternatives))


def _as_token(variant: str) -> str:
    # Not inside a longer word: "2024" as a password leaves "120245 rows" alone.
    before = r"(?<!\w)" if re.match(r"\w", variant[0]) else ""
    after = r"(?!\w)" if re.match(r"\w", variant[-1]) else ""
    return before + re.escape(variant) + after


class SecretFilter(logging.Filter):
    """Defence in depth: even a message that should never hold the password is scrubbed."""

    def __init__(self, secret: str | None) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the message: keep both, hidden alike
            message = f"{record.msg} {record.args!r}"
        record.msg = hide_secrets(message, self.secret)
        record.args = None
        if record.exc_info and not record.exc_text:  # a traceback quotes values too
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = hide_secrets(record.exc_text, self.secret)
        return True


# --- the log file ---------------------------------------------------------------------------

# Log files whose failure was already reported: one warning per file and run, however many
# records (or handlers: the log is reopened once the password is known) then fail.
_REPORTED_FAILURES: set[str] = set()


class LogFileHandler(logging.FileHandler):
    """The log file, opened only where output_files allows (never through a link, never a
    device or the database). When writing fails (the disk is full, the file system is gone),
    one warning goes to stderr and the log stops there: no traceback, and the run goes on
    with its result unchanged."""

    def __init__(self, path: Path) -> None:
        self.failed = False
        super().__init__(path, mode="a", encoding="utf-8")

    def _open(self) -> Any:
        from setup_tool.output_files import open_for_append

        descriptor = open_for_append(Path(self.baseFilename))
        return open(descriptor, "a", encoding=self.encoding, errors=self.errors)

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as error:
            self._give_up(error)

    def close(self) -> None:
        try:
            super().close()
        except OSError as error:
            self._give_up(error)
            super().close()  # the stream is gone now: what is left cannot fail

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            self._give_up(error)
        else:  # a message that cannot be formatted: say so once, keep the log going
            self._warn(f"a log message could not be written ({type(error).__name__}: {error})")

    def _give_up(self, error: OSError) -> None:
        from setup_tool.output_files import describe_os_error

        self.failed = True
        stream: IO[str] | None = self.stream
        self.stream = None  # type: ignore[assignment]
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.close()
        self._warn(
            f"cannot write the log file {self.baseFilename} ({describe_os_error(error)}); "
            "the log stops here. The run goes on and its result is not affected."
        )

    def _warn(self, text: str) -> None:
        if self.baseFilename in _REPORTED_FAILURES:
            return
        _REPORTED_FAILURES.add(self.baseFilename)
        with contextlib.suppress(OSError, ValueError):  # stderr itself may be gone
            sys.stderr.write(f"Warning: {text}\n")
            sys.stderr.flush()


class _ConsoleFormatter(logging.Formatter):
    """-v on the console: the messages, never a traceback (those stay in the log file)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


# --log-level: how much detail the log file (and -v on the console) carries. debug adds each
# marking batch's range, rows and time; the default is the whole story for a support case.
LOG_LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
DEFAULT_LOG_LEVEL = "debug"


class UtcFormatter(logging.Formatter):
    """Timestamps in UTC that say so (2026-12-02T08:36:05.123+00:00): a log read beside the
    history (UTC) or by support in another time zone cannot be an hour off."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.isoformat(timespec="milliseconds")


def configure_logging(
    log_file: Path | None,
    secret: str | None,
    verbose: bool,
    level: int = LOG_LEVELS[DEFAULT_LOG_LEVEL],
) -> None:
    LOGGER.setLevel(level)
    for handler in list(LOGGER.handlers):
        LOGGER.removeHandler(handler)
        handler.close()
    LOGGER.propagate = False
    LOGGER.addHandler(logging.NullHandler())  # see above: never the last-resort handler
    secret_filter = SecretFilter(secret)
    if log_file is not None:
        try:
            file_handler = LogFileHandler(log_file)
        except OSError as error:
            raise SetupToolError(
                f"Cannot write the log file {log_file}: {error.strerror}.",
                "Choose another place with --log-file.",
            ) from None
        file_handler.setFormatter(UtcFormatter("%(asctime)s %(levelname)-7s %(message)s"))
        file_handler.setLevel(level)
        file_handler.addFilter(secret_filter)
        LOGGER.addHandler(file_handler)
    if verbose:
        console = logging.StreamHandler()
        console.setLevel(level)
        console.setFormatter(_ConsoleFormatter("%(levelname)s %(message)s"))
        console.addFilter(secret_filter)
        console.addFilter(_not_file_only)
        LOGGER.addHandler(console)
