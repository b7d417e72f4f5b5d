"""What a person sees: plain lines on stdout; progress and prompts on stderr; colour on a tty."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import click

from setup_tool.logs import FILE_ONLY, LOGGER


def _wants_colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


@dataclass
class Console:
    quiet: bool = False
    verbose: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def say(self, text: str = "") -> None:
        if not self.quiet:
            click.echo(text, file=self.out)

    def warn(self, text: str) -> None:
        LOGGER.warning(text, extra=FILE_ONLY)
        click.secho(text, file=self.err, fg="yellow", color=_wants_colour(self.err))

    def error(self, text: str) -> None:
        click.secho(f"Error: {text}", file=self.err, fg="red", color=_wants_colour(self.err))

    def progress(self, label: str) -> Progress:
        return Progress(self, label)


class Progress:
    """Rows, rate and ETA: a live bar on a terminal, a line every few seconds in the log."""

    LOG_EVERY_SECONDS = 5.0

    def __init__(self, console: Console, label: str) -> None:
        self.console = console
        self.label = label
        self.started = time.monotonic()
        self.logged = 0.0
        self.live = console.err.isatty() and not console.quiet

    def __call__(self, done: int, total: int) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        eta = (total - done) / rate if rate and total > done else 0.0
        line = f"{self.label}: {done:,}/{total:,} rows, {rate:,.0f} rows/s, ETA {eta:,.0f} s"
        if self.live:
            click.echo(f"\r{line}   ", file=self.console.err, nl=False)
        if elapsed - self.logged >= self.LOG_EVERY_SECONDS or done >= total:
            self.logged = elapsed
            LOGGER.info(line)

    def close(self) -> None:
        if self.live:
            click.echo("", file=self.console.err)
