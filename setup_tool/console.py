"""What a person sees: plain lines on stdout; progress and prompts on stderr; colour where wanted.

Colour follows the conventions a consultant's terminal already set: `--color/--no-color` wins;
otherwise NO_COLOR (no-color.org: any non-empty value) turns it off, FORCE_COLOR (any non-empty
value) turns it on, TERM=dumb turns it off, and else a terminal gets colour and a file does not.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import click

from setup_tool.logs import FILE_ONLY, LOGGER

# ctx.meta key: the --color/--no-color choice of this command (None: decide from the environment).
COLOUR_KEY = "setup_tool.color"


def colour_choice() -> bool | None:
    """--color / --no-color of the running command, if it was given."""
    ctx = click.get_current_context(silent=True)
    while ctx is not None:
        if COLOUR_KEY in ctx.meta:
            choice: bool | None = ctx.meta[COLOUR_KEY]
            return choice
        ctx = ctx.parent
    return None


def wants_colour(stream: TextIO, choice: bool | None = None, environ: Any = None) -> bool:
    """Whether to colour what goes to `stream` (see the module's docstring for the order)."""
    env = os.environ if environ is None else environ
    choice = colour_choice() if choice is None else choice
    if choice is not None:
        return choice
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    if env.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def format_clock(seconds: float) -> str:
    """A duration as h:mm:ss (2:05:09), what a progress line and a log show."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


@dataclass
class Console:
    quiet: bool = False
    verbose: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)

    def say(self, text: str = "") -> None:
        if not self.quiet:
            click.echo(text, file=self.out)

    def tell(self, text: str = "") -> None:
        """For the person at the terminal (the wizard's screens, what a question refers to):
        on stderr, beside the prompts, even when stdout is redirected to a file."""
        click.echo(text, file=self.err, color=self.colour)

    def warn(self, text: str) -> None:
        LOGGER.warning(text, extra=FILE_ONLY)
        click.secho(text, file=self.err, fg="yellow", color=self.colour)

    def error(self, text: str) -> None:
        click.secho(f"Error: {text}", file=self.err, fg="red", color=self.colour)

    @property
    def colour(self) -> bool:
        return wants_colour(self.err)

    def style(self, text: str, **styles: Any) -> str:
        """`text` with ANSI styles when stderr gets colour, plain otherwise."""
        return click.style(text, **styles) if self.colour else text

    def progress(self, label: str, unit: str = "rows") -> Progress:
        return Progress(self, label, unit)


class Progress:
    """A live bar on a terminal (click's progress bar: bar and percent) with rows, rate, elapsed
    time and ETA as h:mm:ss; a line every few seconds in the log. The clock starts at the first
    report, which the caller sends when the long step starts (0 done), so neither detection nor
    a question the person took time to answer counts."""

    LOG_EVERY_SECONDS = 5.0

    def __init__(self, console: Console, label: str, unit: str = "rows") -> None:
        self.console = console
        self.label = label
        self.unit = unit
        self.started: float | None = None
        self.logged = 0.0
        self.done = 0
        self.total = 0
        self.live = console.err.isatty() and not console.quiet
        self._bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        self.done, self.total = done, total
        if self.live and total > 0:
            self._draw(done, total)
        elapsed = now - self.started
        if (done and elapsed - self.logged >= self.LOG_EVERY_SECONDS) or (done and done >= total):
            self.logged = elapsed
            LOGGER.info("%s: %s", self.label, self.describe(elapsed))

    def describe(self, elapsed: float | None = None) -> str:
        """'2,000/7,078 rows, 1,234 rows/s, 0:00:01 elapsed, ETA 0:00:04'."""
        if elapsed is None:
            elapsed = time.monotonic() - self.started if self.started is not None else 0.0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate and self.total > self.done else 0.0
        return (
            f"{self.done:,}/{self.total:,} {self.unit}, {rate:,.0f} {self.unit}/s, "
            f"{format_clock(elapsed)} elapsed, ETA {format_clock(eta)}"
        )

    def _draw(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = click.progressbar(
                length=total,
                label=self.label,
                file=self.console.err,
                color=self.console.colour,
                show_eta=False,  # ours: measured from the start of the step, as h:mm:ss
                show_percent=True,
                show_pos=False,  # ours: with thousands separators
                item_show_func=lambda _item: self.describe(),
                bar_template="%(label)s [%(bar)s] %(info)s",
                width=0,  # as wide as the terminal leaves room for
            )
            self._bar.__enter__()
        self._bar.length = total
        self._bar.update(max(0, done - self._bar.pos))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
