"""The benchmark script itself (benchmarks/run.py) on tiny sizes: it runs end to end, checks the
tool against the hand-written baseline, and writes the figures and the targets. The performance
targets are not asserted here; they need millions of rows (see benchmarks/PERFORMANCE.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from postgres_fixture import find_bindir
from scenarios import oracle_marks
from sqlalchemy import create_engine

from setup_tool.clock import utc_now
from setup_tool.demo import SCENARIOS, DemoOptions, build_demo_database

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the benchmarks package lives beside the installed one

from benchmarks.baseline import Outcome, count_by_hand, ids_statement, read_shape  # noqa: E402
from benchmarks.databases import add_documented_indexes, sqlite_indexes  # noqa: E402
from benchmarks.measure import run_process  # noqa: E402
from benchmarks.run import _marking  # noqa: E402


def run_benchmark(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Any]:
    figures = tmp_path / "latest.json"
    command = [sys.executable, "-m", "benchmarks.run", "--repeat", "1", "--cli-repeat", "1"]
    command += ["--json", str(figures), "--workdir", str(tmp_path / "work"), *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    return result, json.loads(figures.read_text()) if figures.exists() else None


def test_tiny_run_on_sqlite_checks_the_tool_against_the_baseline(tmp_path: Path) -> None:
    result, figures = run_benchmark(
        tmp_path, "--sizes", "1500,3000", "--engines", "sqlite", "--batch-sizes", "50,2000",
        "--demo-appointments", "1500",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert figures["correct"] is True
    assert [(r["engine"], r["appointments"]) for r in figures["runs"]] == [
        ("sqlite", 1500),
        ("sqlite", 3000),
    ]
    for run in figures["runs"]:
        off, on = run["marking"]["off"], run["marking"]["on"]
        assert off["rows_marked"] == on["rows_marked"] > 0
        assert off["outcome"]["travel_rows"] == 0
        assert on["outcome"]["travel_rows"] == on["rows_marked"]  # one log row per marked row
        assert off["baseline_seconds"] > 0 and off["tool_seconds"] > 0 and off["ratio"] > 0
        assert 10 < off["peak_rss_mb"] < 1000
        assert run["dry_run"]["rows"] == off["rows_marked"] and run["dry_run"]["correct"]
        assert set(run["batch_sizes"]) == {"50", "2000"}
        assert all(b["correct"] for b in run["batch_sizes"].values())
    assert figures["demo"]["appointments"] == 1500
    assert set(figures["cli"]) == {"--help", "--version"}
    judged = {t["target"] for t in figures["targets"]}
    assert {"tool / baseline <= 1.5", "dry run <= 2 x COUNT + 1 s", "peak RSS < 200 MB"} <= judged
    assert "Targets:" in result.stdout and "PASS" in result.stdout


def test_tiny_run_on_postgresql_loads_the_same_rows_as_sqlite(tmp_path: Path) -> None:
    if find_bindir() is None:
        pytest.skip("PostgreSQL binaries not found")
    result, figures = run_benchmark(
        tmp_path, "--sizes", "2000", "--engines", "sqlite,postgresql", "--travel", "on",
        "--batch-sizes", "", "--demo-appointments", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert figures["same_rows_on_every_engine"] is True
    assert [r["engine"] for r in figures["runs"]] == ["sqlite", "postgresql"]
    postgresql = figures["runs"][1]
    assert postgresql["correct"] and postgresql["marking"]["on"]["rows_marked"] > 0
    assert figures["machine"]["postgresql"]


def test_a_tool_outcome_unlike_the_baseline_is_not_correct() -> None:
    same = Outcome(3, "a", 5, "b", 0, "c")
    other = Outcome(2, "x", 4, "b", 0, "c")
    baseline = [{"seconds": 1.0, "rows": 3, "outcome": same}]
    tool = {"seconds": 1.2, "wall_seconds": 2.0, "peak_rss_mb": 60.0, "rows": 3}
    assert _marking(baseline, [{**tool, "outcome": same}])["correct"] is True
    mismatch = _marking(baseline, [{**tool, "outcome": other}])
    assert mismatch["correct"] is False and mismatch["mismatches"]


def test_peak_rss_is_the_child_s_own_not_the_benchmark_s(tmp_path: Path) -> None:
    touch = "x = bytearray({mb} * 2**20); x[::4096] = b'1' * len(x[::4096])"
    ballast: dict[str, Any] = {}  # the benchmark holds a lot of memory; the child must not count it
    exec(touch.format(mb=300), ballast)
    small = run_process([sys.executable, "-c", "pass"], tmp_path / "out.log")
    big = run_process([sys.executable, "-c", touch.format(mb=120)], tmp_path / "out.log")
    assert small.exit_code == big.exit_code == 0
    assert small.peak_rss_mb < 100 < big.peak_rss_mb
    assert len(ballast["x"]) == 300 * 2**20


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_baseline_marks_what_the_spec_oracle_marks(tmp_path: Path, scenario: str) -> None:
    """The hand-written SQL is SPEC step 4 on its own: it agrees with tests/invite_oracle.py,
    not only with the tool, with and without the columns and tables that came after 8.5 R10."""
    path = tmp_path / "demo.db"
    build_demo_database(path, DemoOptions(appointments=4000, scenario=scenario))
    add_documented_indexes(path)
    now = utc_now()
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            shape = read_shape(conn, None, now)
            ids = {row[0] for row in conn.execute(ids_statement(shape), shape.params())}
            assert count_by_hand(conn, shape) == len(ids)
    finally:
        engine.dispose()
    assert ids == oracle_marks(path, now)
    assert bool(ids) == (scenario != "existing-customer")


def test_the_documented_recurrence_index_is_added_once(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    build_demo_database(path, DemoOptions(appointments=200))
    add_documented_indexes(path)
    assert add_documented_indexes(path) == []
    leading = [i.columns[0].lower() for i in sqlite_indexes(path) if i.table == "appointment"]
    assert leading.count("recurrenceruleid") == 1


def test_a_run_longer_than_the_timeout_is_stopped_and_says_so(tmp_path: Path) -> None:
    hung = run_process(
        [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "o.log", timeout=1
    )
    assert hung.timed_out and hung.seconds < 30
    done = run_process([sys.executable, "-c", "pass"], tmp_path / "o.log", timeout=30)
    assert not done.timed_out and done.exit_code == 0
