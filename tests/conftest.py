"""Shared fixtures: real SQLite files (and, from postgres_fixture, a real PostgreSQL server)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from postgres_fixture import *  # noqa: F403
from setup_tool.demo import DemoOptions, build_demo_database

# Every demo in the tests is generated as of this moment, so counts never drift with the clock.
DEMO_NOW = datetime(2026, 11, 1, 12, 0, 0)


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


@pytest.fixture(params=["sqlite", "postgresql"])
def make_target(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Any]:
    """The same SuperOffice demo on SQLite, and on a real PostgreSQL server (schema crm7, names
    stored lower-case): make_target(travel=True). One database per test on PostgreSQL."""
    from superoffice_databases import postgresql_target, sqlite_target

    def make(**options: Any) -> Any:
        options = {"appointments": 2000, "now": DEMO_NOW, **options}
        if request.param == "sqlite":
            return sqlite_target(tmp_path / "crm.db", DemoOptions(**options))
        return postgresql_target(request.getfixturevalue("pg_database"), DemoOptions(**options))

    return make
