"""What the log tells a support case: where the tool ran, how it was asked to run, what it found,
what it planned, what the operator decided and how it ended.

The log file is the one record that travels with a support case, so each run writes, in order:
the tool, Python, OS, host and user; the database's dialect, driver and server version; every
option with where its value came from (command line, environment, answer file, default, prompt);
the findings with their evidence; the plan; the decision; each marking batch (debug level, from
setup_tool.bookkeeping.record_batch_timing) and the outcome. Passwords never reach it: the log's
SecretFilter (setup_tool.logs) scrubs every line, and option values known to be secret are not
written at all.
"""

from __future__ import annotations

import getpass
import platform
import socket
import sqlite3
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

from setup_tool import __version__
from setup_tool.dialects import dialect_of
from setup_tool.logs import LOGGER

if TYPE_CHECKING:
    from setup_tool.cli_values import OptionSource
    from setup_tool.database import Database
    from setup_tool.findings import Findings
    from setup_tool.upgrade import UpgradePlan

# Never written, whatever their source: they can hold a password.
_SECRET_OPTIONS = frozenset({"db_password"})


def log_environment(command: str) -> None:
    """Who and where: the first lines of every command's log."""
    LOGGER.info("setup-tool %s %s", __version__, command)
    LOGGER.info(
        "Python %s (%s) on %s", platform.python_version(), sys.executable, platform.platform()
    )
    LOGGER.info("host %s, user %s", socket.gethostname(), _os_user())


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some service accounts and containers
        return "unknown"


def log_options(sources: Iterable[OptionSource]) -> None:
    """Every option with its value and where the value came from (cli_values.option_sources)."""
    for given in sources:
        if given.name not in _SECRET_OPTIONS:
            LOGGER.info("option %s = %s (%s)", given.option, _shown(given.value), given.where)


def _shown(value: object) -> str:
    if isinstance(value, tuple | list):
        return "[" + ", ".join(map(str, value)) + "]"
    return "not given" if value is None else str(value)


def log_database(db: Database) -> None:
    """Dialect, Python driver, ODBC driver and server version of the connected database."""
    dialect = db.engine.dialect
    odbc = next((v for k, v in db.url.query.items() if k.lower() == "driver"), None)
    LOGGER.info(
        "database %s: dialect %s, driver %s%s, server version %s, table prefix %s",
        db.display_url,
        dialect.name,
        dialect.driver,
        f" (ODBC driver {odbc})" if odbc else "",
        server_version(db),
        db.schema or "none",
    )


def server_version(db: Database) -> str:
    if dialect_of(db.engine).is_file:  # SQLite runs in this process: its library's version
        return f"SQLite {sqlite3.sqlite_version}"
    info = db.engine.dialect.server_version_info
    return ".".join(str(part) for part in info) if info else "unknown"


def log_findings(findings: Findings) -> None:
    """What detection found (info), each finding's evidence (debug)."""
    so, sync, pref = findings.superoffice, findings.synchronizer, findings.preference
    invites, history = findings.invites, findings.history
    LOGGER.info(
        "finding: SuperOffice %s (%s)", so.version.label() if so.version else "unknown", so.status
    )
    LOGGER.info(
        "finding: synchronizer %s, version %s (%s)",
        {True: "in use", False: "not in use", None: "licensed only"}[sync.in_use],
        sync.version.label() if sync.version else "unknown",
        sync.status,
    )
    LOGGER.info(
        "finding: Diary Synchronizer Active %s system-wide; %d overriding row(s) off",
        pref.effective_label,
        len(pref.overrides_off),
    )
    LOGGER.info("finding: Travel %s", "on" if findings.travel.enabled else "off")
    LOGGER.info(
        "finding: %s invite meetings (%s rows), %s rows to mark, %s already marked",
        f"{invites.meetings:,}",
        f"{invites.rows:,}",
        f"{invites.to_mark:,}",
        f"{invites.already_marked:,}",
    )
    LOGGER.info("finding: %d earlier run(s) of setup-tool", len(history.runs))
    for group in (so, sync, pref, findings.travel, invites, history, findings.invites_since):
        for evidence in group.evidence:
            LOGGER.debug("evidence %s: %s", evidence.source, evidence.detail)
    for warning in findings.warnings:
        LOGGER.warning("%s", warning)


def log_plan(plan: UpgradePlan) -> None:
    """Each step's decision, rows and reason, and the estimate."""
    for step in plan.steps:
        LOGGER.info(
            "plan: %s: %s, %s row(s): %s", step.id, step.decision, f"{step.rows:,}", step.reason
        )
        for warning in step.warnings:
            LOGGER.warning("%s: %s", step.title, warning)
    window = plan.findings.invites.window
    if window is not None:
        LOGGER.info("plan: marking window %s", window.describe())
    LOGGER.info("plan: estimated %.1f s", plan.estimate_seconds)
