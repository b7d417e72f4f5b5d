"""The installed wheel, not the source tree, must carry its migrations and templates."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (built,) = out.glob("setup_tool-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def migration_files() -> list[str]:
    """Every migration of the source tree, as the wheel must carry it."""
    return sorted(
        f"setup_tool/migrations/versions/{path.name}"
        for path in (ROOT / "migrations" / "versions").glob("*.py")
    )


def test_wheel_lists_migrations_templates_and_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert len(migration_files()) >= 2
    for expected in (
        *migration_files(),
        "setup_tool/migrations/env.py",
        "setup_tool/migrations/script.py.mako",
        "setup_tool/migrations/versions/0001_bookkeeping.py",
        "setup_tool/templates/report.html",
        "setup_tool/templates/report.md.j2",
        "setup_tool/templates/report.txt.j2",
        "setup_tool/data/known_builds.toml",
    ):
        assert expected in names, f"{expected} missing from {wheel.name}"


def _run(installed: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The wheel's copy first on the path; run from a folder with no source tree in sight.
    env = {**os.environ, "PYTHONPATH": str(installed)}
    return subprocess.run(
        [sys.executable, "-m", "setup_tool", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_installed_wheel_upgrades_a_demo_database(installed: Path, tmp_path: Path) -> None:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import setup_tool.resources as r; print(r.__file__); "
            "print(r.migrations_dir()); print(r.templates_dir())",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
        check=True,
    )
    module, migrations, templates = probe.stdout.split()
    for path in (module, migrations, templates):
        assert path.startswith(str(installed)), f"{path} is not from the installed wheel"
    head = _migrations_head(Path(migrations))

    assert _run(installed, tmp_path, "demo", "crm.db", "--appointments", "400").returncode == 0
    result = _run(
        installed,
        tmp_path,
        "upgrade",
        "--database-url",
        "sqlite:///crm.db",
        "--unattended",
        "--fix-overrides",
        "--report",
        "report.html",
    )
    assert result.returncode == 0, result.stderr
    assert "<html" in (tmp_path / "report.html").read_text(encoding="utf-8").lower()
    with sqlite3.connect(tmp_path / "crm.db") as db:
        (revision,) = db.execute("SELECT version_num FROM setup_tool_alembic_version").fetchone()
    assert revision == head  # every migration the wheel carries was applied


def _migrations_head(folder: Path) -> str:
    """The newest revision of the installed wheel's migrations: the one nothing revises."""
    pattern = re.compile(r"^(down_revision|revision)\s*=\s*['\"]?([\w]+)['\"]?", re.MULTILINE)
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (folder / "versions").glob("*.py"):
        found = dict(pattern.findall(path.read_text()))
        revisions.add(found["revision"])
        if found.get("down_revision", "None") != "None":
            revised.add(found["down_revision"])
    (head,) = revisions - revised
    return head
