"""Logging: full detail with timestamps to the log file, a readable console, no secrets anywhere."""

from __future__ import annotations

import logging
from pathlib import Path

from setup_tool.errors import SetupToolError

LOGGER = logging.getLogger("setup_tool")
# Without a handler, logging's "last resort" prints warnings and errors (with tracebacks) on
# stderr: the console already shows every error once, in plain words.
LOGGER.addHandler(logging.NullHandler())

# For messages the console already shows in its own words: logged to the file, not echoed by -v.
FILE_ONLY = {"file_only": True}


def _not_file_only(record: logging.LogRecord) -> bool:
    return not getattr(record, "file_only", False)


class SecretFilter(logging.Filter):
    """Defence in depth: even a message that should never hold the password is scrubbed."""

    def __init__(self, secret: str | None) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secret:
            from setup_tool.connection import scrub_secret  # lazily: keeps --help fast

            record.msg = scrub_secret(record.getMessage(), self.secret)
            record.args = None
            if record.exc_info and not record.exc_text:  # a traceback quotes values too
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = scrub_secret(record.exc_text, self.secret)
        return True


class _ConsoleFormatter(logging.Formatter):
    """-v on the console: the messages, never a traceback (those stay in the log file)."""

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def configure_logging(log_file: Path | None, secret: str | None, verbose: bool) -> None:
    LOGGER.setLevel(logging.DEBUG)
    for handler in list(LOGGER.handlers):
        LOGGER.removeHandler(handler)
        handler.close()
    LOGGER.propagate = False
    LOGGER.addHandler(logging.NullHandler())  # see above: never the last-resort handler
    secret_filter = SecretFilter(secret)
    if log_file is not None:
        try:
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as error:
            raise SetupToolError(
                f"Cannot write the log file {log_file}: {error.strerror}.",
                "Choose another place with --log-file.",
            ) from None
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
        file_handler.setLevel(logging.DEBUG)
        file_handler.addFilter(secret_filter)
        LOGGER.addHandler(file_handler)
    if verbose:
        console = logging.StreamHandler()
        console.setLevel(logging.DEBUG)
        console.setFormatter(_ConsoleFormatter("%(levelname)s %(message)s"))
        console.addFilter(secret_filter)
        console.addFilter(_not_file_only)
        LOGGER.addHandler(console)
