"""The online benchmark (benchmarks/online.py, issue 13) on a tiny database, so that it cannot
rot: users work on PostgreSQL while the tool and the hand-written UPDATE mark, every statement is
timed, lock waits are sampled, and nothing may be lost. Its figures are not asserted here (no
timed assertions): they need millions of rows (README, "Users at work during the marking")."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from conftest import DEMO_NOW
from postgres_fixture import PostgresDatabase, find_bindir
from sqlalchemy import create_engine, make_url
from superoffice_databases import postgresql_target

from setup_tool.bookkeeping import install_bookkeeping
from setup_tool.clock import utc_now
from setup_tool.demo import DemoOptions

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the benchmarks package lives beside the installed one

from benchmarks.baseline import ids_statement, read_shape  # noqa: E402
from benchmarks.lock_monitor import Wait  # noqa: E402
from benchmarks.online import (  # noqa: E402
    Before,
    end_dates_of,
    latency,
    mark_under_load,
    nothing_lost,
    overlapping,
    percentile,
    waits_on,
)
from benchmarks.users import Ledger, Statement  # noqa: E402


def test_a_tiny_online_run_measures_every_phase_and_loses_nothing(tmp_path: Path) -> None:
    if find_bindir() is None:
        pytest.skip("PostgreSQL binaries not found")
    figures = tmp_path / "online.json"
    command = [
        sys.executable, "-m", "benchmarks.online", "--sizes", "3000", "--users", "2",
        "--think-ms", "5", "--idle-seconds", "1", "--json", str(figures),
        "--workdir", str(tmp_path / "work"),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(figures.read_text())
    [run] = data["runs"]
    tool, baseline = run["tool"], run["baseline"]
    assert tool["exit_code"] in (0, 4) and tool["rows_marked"] > 0
    assert tool["nothing_lost"]["correct"] and baseline["nothing_lost"]["correct"]
    assert tool["nothing_lost"]["marked_as_oracle"] and tool["nothing_lost"]["edits"] > 0
    assert tool["idle"]["statements"] > 0 and tool["during"]["statements"] > 0
    assert baseline["during"]["statements"] > 0
    assert tool["marking_window_seconds"] > 0 and tool["monitor"]["polls"] > 0
    assert tool["batches"]["done"] >= 1 and "longest_seconds" in tool["batches"]
    assert {"diary", "edit", "insert"} <= set(tool["idle"]["by_kind"])
    judged = {t["target"] for t in data["targets"]}
    assert judged == {
        "users' p99 marking / no marking <= 2",
        "longest lock wait on the tool <= 1 s",
        "marking under load / unloaded baseline <= 2",
    }
    assert "the baseline's UPDATE" in result.stdout and "Targets" in result.stdout


def statement(user: int, started: float, seconds: float, kind: str = "edit") -> Statement:
    return Statement(user, kind, started, seconds)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50 and percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100 and percentile([7.0], 0.99) == 7


def test_statements_during_a_window_are_those_that_overlap_it() -> None:
    inside = statement(0, 5.0, 1.0)
    waiting_into_it = statement(1, 1.0, 3.0)  # started before, still waiting when it began
    before = statement(2, 0.0, 1.0)
    after = statement(3, 11.0, 0.1)
    assert overlapping([inside, waiting_into_it, before, after], 2.0, 10.0) == [
        inside,
        waiting_into_it,
    ]
    figures = latency([inside, waiting_into_it])
    assert figures["statements"] == 2 and figures["max_ms"] == 3000


def test_a_lock_wait_counts_for_the_session_that_held_the_lock() -> None:
    long_wait = statement(0, 1.0, 0.8)
    short_wait = statement(1, 2.0, 0.1)
    untouched = statement(0, 3.0, 5.0)
    waits = [Wait(1.5, 0, "setup-tool-bench"), Wait(2.05, 1, "bench-baseline")]
    on_tool = waits_on([long_wait, short_wait, untouched], waits, "setup-tool-bench")
    assert on_tool == {"statements": 1, "longest_seconds": 0.8}
    on_baseline = waits_on([long_wait, short_wait, untouched], waits, "bench-baseline")
    assert on_baseline == {"statements": 1, "longest_seconds": 0.1}


def test_the_check_finds_a_lost_edit_and_an_overwritten_warning(
    pg_database: PostgresDatabase,
) -> None:
    """The oracle check itself: a database where the users' writes and the marking agree passes;
    one where a user's edit is missing, or the marking overwrote a user's warning, does not."""
    t = postgresql_target(pg_database, DemoOptions(appointments=600, now=DEMO_NOW))
    engine = create_engine(t.admin_url)
    try:
        with engine.connect() as conn:
            shape = read_shape(conn, t.prefix, utc_now())
            to_mark = sorted(int(r[0]) for r in conn.execute(ids_statement(shape), shape.params()))
        assert len(to_mark) > 3
        warned, edited = to_mark[0], to_mark[1]
        url = make_url(t.admin_url)
        conninfo = psycopg.conninfo.make_conninfo(
            host=url.host, port=url.port, user=url.username, password=url.password,
            dbname=url.database,
        )  # fmt: skip
        with psycopg.connect(conninfo, autocommit=True) as user:
            original = end_dates_of(user, t.prefix, [edited])
            already = frozenset(
                int(row[0])
                for row in user.execute(
                    f"SELECT appointment_id FROM {t.prefix}.appointment "
                    "WHERE cautionwarning = 1".encode()
                )
            )
            user.execute(
                f"UPDATE {t.prefix}.appointment SET cautionwarning = 3 "
                f"WHERE appointment_id = {warned}".encode()
            )
            user.execute(
                f"UPDATE {t.prefix}.appointment SET enddate = enddate + interval '1 minute' "
                f"WHERE appointment_id = {edited}".encode()
            )
        with engine.begin() as conn:
            install_bookkeeping(conn, t.prefix)
        with engine.begin() as conn:
            marked, _dropped = mark_under_load(conn, shape, utc_now())
        assert marked == len(to_mark) - 1
        before = Before(frozenset(to_mark), already)
        ledger = Ledger(edits=Counter({edited: 1}), warned={warned: 3})
        with psycopg.connect(conninfo) as conn:
            assert nothing_lost(conn, t.prefix, before, ledger, original)["correct"] is True
            twice = Ledger(edits=Counter({edited: 2}), warned={warned: 3})
            lost = nothing_lost(conn, t.prefix, before, twice, original)
            assert lost["edits_lost"] == 1 and lost["correct"] is False
        with psycopg.connect(conninfo, autocommit=True) as tool:
            tool.execute(
                f"UPDATE {t.prefix}.appointment SET cautionwarning = 1 "
                f"WHERE appointment_id = {warned}".encode()
            )
            overwritten = nothing_lost(tool, t.prefix, before, ledger, original)
        assert overwritten["warnings_overwritten"] == 1
        assert overwritten["not_in_sync_as_oracle"] is False and overwritten["correct"] is False
    finally:
        engine.dispose()
