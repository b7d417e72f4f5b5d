"""Each command's options as typed values, built once from click's parameters at the edge.

Below the command line nothing reads click's dict of parameters: the commands and their helpers
take these frozen dataclasses, so mypy checks every use of an option. Each carries where its
values came from (command line, environment, answer file, default), which the support log
reports, and the password only as a Secret, which no repr, str or log line shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import click
from click.core import ParameterSource

from setup_tool.cli_options import PASSWORD_META_KEY
from setup_tool.config import PASSWORD_ENV

# How the support log names where a value came from (click's ParameterSource).
SOURCE_NAMES = {
    ParameterSource.COMMANDLINE: "command line",
    ParameterSource.ENVIRONMENT: "environment",
    ParameterSource.DEFAULT_MAP: "answer file",
    ParameterSource.DEFAULT: "default",
    ParameterSource.PROMPT: "prompt",
}
# Sources that mean "remembered" (an answer file or the environment), not typed this time.
_REMEMBERED = frozenset({ParameterSource.DEFAULT_MAP, ParameterSource.ENVIRONMENT})


@dataclass(frozen=True)
class Secret:
    """A password. Its repr and str never show it (Secret()); `reveal()` is the one way in."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return repr(self)


@dataclass(frozen=True)
class OptionSource:
    """One option as the support log reports it: its long name, value and where it came from."""

    name: str  # the click parameter (batch_size)
    option: str  # the long option (--batch-size)
    value: object
    where: str


@dataclass(frozen=True)
class ConnectionOptions:
    """Which database, and how to log in (--database-url, or --server and its companions)."""

    database_url: str | None
    server: str | None
    database: str | None
    user: str | None
    trusted_connection: bool
    odbc_driver: str | None
    encrypt: bool | None
    trust_server_certificate: bool
    table_prefix: str | None
    login_timeout: int
    # SETUP_TOOL_DB_PASSWORD or the answer file's db-password: never an option.
    password: Secret | None = field(default=None, repr=False)
    # The database came from the answer file or the environment, not this command line: the
    # wizard shows it as the default of its connection question.
    target_remembered: bool = False
    # --database-url was typed on the command line, where the process list shows it.
    url_on_command_line: bool = False


@dataclass(frozen=True)
class AnswerOptions:
    """The operator's answers to what the database may not say."""

    superoffice_version: str | None
    synchronizer_version: str | None
    no_synchronizer: bool
    invites_since: datetime | None
    footprints: str
    preference_on_by_default: bool
    known_builds: Path | None


@dataclass(frozen=True)
class OutputOptions:
    """Where the report and the log go, and how much the console says."""

    report: Path | None
    report_format: str | None
    log_file: Path | None
    log_level: str
    quiet: bool
    verbose: bool


@dataclass(frozen=True)
class UpgradeOptions:
    connection: ConnectionOptions
    answers: AnswerOptions
    output: OutputOptions
    sources: tuple[OptionSource, ...]
    unattended: bool
    dry_run: bool
    yes: bool
    save_answers: Path | None
    detailed_exitcode: bool
    fix_overrides: bool
    acting_associate: int
    batch_size: int
    lock_timeout: float | None  # None: 0 unattended, 30 in the wizard
    lock_wait: float
    pause_between_batches: float


@dataclass(frozen=True)
class DetectOptions:
    connection: ConnectionOptions
    answers: AnswerOptions
    output: OutputOptions
    sources: tuple[OptionSource, ...]


@dataclass(frozen=True)
class HistoryOptions:
    connection: ConnectionOptions
    output: OutputOptions
    sources: tuple[OptionSource, ...]
    run_id: int | None


@dataclass(frozen=True)
class UndoOptions:
    connection: ConnectionOptions
    output: OutputOptions
    sources: tuple[OptionSource, ...]
    run_ids: tuple[int, ...]
    unattended: bool
    dry_run: bool
    acting_associate: int
    lock_timeout: float


# --- built from click's parameters ------------------------------------------------------------


class _Params:
    """click's converted parameters, read with the type each option's click type gives; a value
    of another type is a bug in the option's declaration, not the user's input."""

    def __init__(self, ctx: click.Context) -> None:
        self.ctx = ctx
        self.values = ctx.params

    def _get(self, name: str, kinds: type | tuple[type, ...]) -> object:
        value = self.values.get(name)
        if value is not None and not isinstance(value, kinds):
            raise TypeError(f"option {name} is {type(value).__name__}, not {kinds}")
        return value

    def text(self, name: str) -> str | None:
        value = self._get(name, str)
        return value if isinstance(value, str) else None

    def flag(self, name: str) -> bool:
        return self.maybe_flag(name) is True

    def maybe_flag(self, name: str) -> bool | None:
        value = self._get(name, bool)
        return value if isinstance(value, bool) else None

    def integer(self, name: str) -> int:
        value = self.maybe_integer(name)
        if value is None:
            raise TypeError(f"option {name} has no value")
        return value

    def maybe_integer(self, name: str) -> int | None:
        value = self._get(name, int)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def number(self, name: str) -> float:
        value = self.maybe_number(name)
        if value is None:
            raise TypeError(f"option {name} has no value")
        return value

    def maybe_number(self, name: str) -> float | None:
        value = self._get(name, (int, float))
        return float(value) if isinstance(value, int | float) else None

    def path(self, name: str) -> Path | None:
        value = self._get(name, (str, Path))
        return Path(value) if isinstance(value, str | Path) else None

    def moment(self, name: str) -> datetime | None:
        value = self._get(name, datetime)
        return value if isinstance(value, datetime) else None

    def integers(self, name: str) -> tuple[int, ...]:
        value = self._get(name, tuple)
        items = value if isinstance(value, tuple) else ()
        if not all(isinstance(item, int) for item in items):
            raise TypeError(f"option {name} holds a value that is not a whole number")
        return tuple(int(item) for item in items)

    def source(self, name: str) -> ParameterSource | None:
        return self.ctx.get_parameter_source(name)


def option_sources(ctx: click.Context) -> tuple[OptionSource, ...]:
    """Every parameter of the command with its value and where it came from, in help order."""
    found = []
    for param in ctx.command.params:
        name = param.name
        if not name or not param.expose_value:
            continue
        source = ctx.get_parameter_source(name)
        where = SOURCE_NAMES.get(source, source.name.lower()) if source else "default"
        long = max((o for o in param.opts if o.startswith("--")), key=len, default=name)
        found.append(OptionSource(name, long, ctx.params.get(name), where))
    return tuple(found)


def given_password(ctx: click.Context) -> Secret | None:
    """SETUP_TOOL_DB_PASSWORD, else the answer file's db-password (put aside by --config)."""
    value = os.environ.get(PASSWORD_ENV) or ctx.meta.get(PASSWORD_META_KEY)
    return Secret(value) if isinstance(value, str) and value else None


def connection_options(ctx: click.Context) -> ConnectionOptions:
    p = _Params(ctx)
    sources = [p.source("database_url"), p.source("server")]
    return ConnectionOptions(
        database_url=p.text("database_url"),
        server=p.text("server"),
        database=p.text("database"),
        user=p.text("user"),
        trusted_connection=p.flag("trusted_connection"),
        odbc_driver=p.text("odbc_driver"),
        encrypt=p.maybe_flag("encrypt"),
        trust_server_certificate=p.flag("trust_server_certificate"),
        table_prefix=p.text("table_prefix"),
        login_timeout=p.integer("login_timeout"),
        password=given_password(ctx),
        target_remembered=ParameterSource.COMMANDLINE not in sources
        and any(s in _REMEMBERED for s in sources),
        url_on_command_line=sources[0] is ParameterSource.COMMANDLINE,
    )


def answer_options(ctx: click.Context) -> AnswerOptions:
    p = _Params(ctx)
    return AnswerOptions(
        superoffice_version=p.text("superoffice_version"),
        synchronizer_version=p.text("synchronizer_version"),
        no_synchronizer=p.flag("no_synchronizer"),
        invites_since=p.moment("invites_since"),
        footprints=p.text("footprints") or "",
        preference_on_by_default=p.flag("preference_on_by_default"),
        known_builds=p.path("known_builds"),
    )


def output_options(ctx: click.Context) -> OutputOptions:
    p = _Params(ctx)
    return OutputOptions(
        report=p.path("report"),
        report_format=p.text("report_format"),
        log_file=p.path("log_file"),
        log_level=p.text("log_level") or "",
        quiet=p.flag("quiet"),
        verbose=p.flag("verbose"),
    )


def upgrade_options(ctx: click.Context) -> UpgradeOptions:
    p = _Params(ctx)
    return UpgradeOptions(
        connection=connection_options(ctx),
        answers=answer_options(ctx),
        output=output_options(ctx),
        sources=option_sources(ctx),
        unattended=p.flag("unattended"),
        dry_run=p.flag("dry_run"),
        yes=p.flag("yes"),
        save_answers=p.path("save_answers"),
        detailed_exitcode=p.flag("detailed_exitcode"),
        fix_overrides=p.flag("fix_overrides"),
        acting_associate=p.integer("acting_associate"),
        batch_size=p.integer("batch_size"),
        lock_timeout=p.maybe_number("lock_timeout"),
        lock_wait=p.number("lock_wait"),
        pause_between_batches=p.number("pause_between_batches"),
    )


def detect_options(ctx: click.Context) -> DetectOptions:
    return DetectOptions(
        connection=connection_options(ctx),
        answers=answer_options(ctx),
        output=output_options(ctx),
        sources=option_sources(ctx),
    )


def history_options(ctx: click.Context) -> HistoryOptions:
    return HistoryOptions(
        connection=connection_options(ctx),
        output=output_options(ctx),
        sources=option_sources(ctx),
        run_id=_Params(ctx).maybe_integer("run_id"),
    )


def undo_options(ctx: click.Context) -> UndoOptions:
    p = _Params(ctx)
    return UndoOptions(
        connection=connection_options(ctx),
        output=output_options(ctx),
        sources=option_sources(ctx),
        run_ids=p.integers("run_ids"),
        unattended=p.flag("unattended"),
        dry_run=p.flag("dry_run"),
        acting_associate=p.integer("acting_associate"),
        lock_timeout=p.number("lock_timeout"),
    )
