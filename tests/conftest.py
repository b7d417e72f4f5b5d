"""Shared fixtures: real SQLite files (and, from postgres_fixture, a real PostgreSQL server)."""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from postgres_fixture import *  # noqa: F403

from setup_tool.demo import DemoOptions, build_demo_database

# Every demo in the tests is generated as of this moment, so counts never drift with the clock.
DEMO_NOW = datetime(2026, 11, 1, 12, 0, 0)


def _stop_signals_as_in_a_terminal() -> None:
    """A suite started in the background (`cmd &` without job control ignores SIGINT) or under
    nohup (SIGHUP) would hand those signals down ignored, and the tool rightly keeps a signal it
    was started to ignore (setup_tool.cli_edge): the tests that stop a real process with them
    need the dispositions a terminal gives."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is not None and signal.getsignal(hangup) == signal.SIG_IGN:
        signal.signal(hangup, signal.SIG_DFL)


_stop_signals_as_in_a_terminal()


@pytest.fixture(autouse=True)
def own_state_folder(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Default logs and reports go to the XDG state folder (%ProgramData% on Windows): each
    test gets its own, so no run writes into the home folder of whoever runs the suite. It is
    not inside tmp_path, which tests list to show what a run left there."""
    state = tmp_path_factory.mktemp("xdg-state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    monkeypatch.setenv("ProgramData", str(state))
    return state / "setup-tool"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own_state_folder: Path) -> Path:
    """A working directory of the test's own, with no SETUP_TOOL_* variable from outside. It is
    also the folder default log and report files go to (the test's own state folder), so a test
    finds them beside its other files; test_output_locations shows that this folder is not the
    working directory when the tool runs for real."""
    for name in list(os.environ):
        if name.startswith("SETUP_TOOL_"):
            monkeypatch.delenv(name)
    own_state_folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(own_state_folder)
    return own_state_folder


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small realistic SuperOffice database, built once per session (copy it before writing)."""
    path = tmp_path_factory.mktemp("demo") / "template.db"
    build_demo_database(path, DemoOptions(appointments=3000, now=DEMO_NOW))
    return path


@pytest.fixture
def demo_db(demo_template: Path, tmp_path: Path) -> Path:
    """A private copy of the demo database for one test."""
    path = tmp_path / "crm.db"
    shutil.copyfile(demo_template, path)
    return path


@pytest.fixture
def demo_url(demo_db: Path) -> str:
    return f"sqlite:///{demo_db}"


@pytest.fixture
def make_demo(tmp_path: Path) -> Callable[..., Path]:
    """Build a demo database with other options: make_demo(travel=True, appointments=500)."""
    counter = iter(range(1000))

    def make(**options: Any) -> Path:
        path = tmp_path / f"demo-{next(counter)}.db"
        options.setdefault("appointments", 1000)
        options.setdefault("now", DEMO_NOW)
        build_demo_database(path, DemoOptions(**options))
        return path

    return make


MSSQL_URL = os.environ.get("SETUP_TOOL_TEST_MSSQL_URL")


@pytest.fixture(params=["sqlite", "postgresql", "mssql"])
def make_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """The same SuperOffice demo on SQLite, on a real PostgreSQL server (schema crm7, names
    stored lower-case) and, opt-in, on a live SQL Server: make_target(travel=True).
    One database per test."""
    from superoffice_databases import (
        drop_mssql_schema,
        mssql_target,
        postgresql_target,
        sqlite_target,
    )

    if request.param == "mssql" and not MSSQL_URL:
        pytest.skip("live SQL Server suite: set SETUP_TOOL_TEST_MSSQL_URL to an mssql+pyodbc URL")
    schema = f"st_{uuid.uuid4().hex[:8]}"
    made: list[str] = []

    def make(**options: Any) -> Any:
        demo = DemoOptions(**{"appointments": 2000, "now": DEMO_NOW, **options})
        if request.param == "sqlite":
            return sqlite_target(tmp_path / "crm.db", demo)
        if request.param == "postgresql":
            return postgresql_target(request.getfixturevalue("pg_database"), demo)
        assert MSSQL_URL is not None
        made.append(schema)
        return mssql_target(MSSQL_URL, demo, schema)

    yield make
    for name in made:
        assert MSSQL_URL is not None
        drop_mssql_schema(MSSQL_URL, name)
