"""Reports of a real run show what happened, not what was planned: each preference row before
and after, the rows changed, every step's start, end and duration, resumes, and the run's
batches and rows drawn as inline SVG (no script). Stored reports come back with
`history --run N`. Each HTML report is opened in headless Chromium and saved as a screenshot
under test-output/ (README shows one)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from cli_helpers import invoke
from scenarios import upgrade
from test_report import DevTools, _chromium

from setup_tool.bookkeeping import Bookkeeping, record_batch_timing
from setup_tool.report import render_report
from setup_tool.upgrade import InterruptedUpgrade

REPO = Path(__file__).resolve().parents[1]
TEST_OUTPUT = REPO / "test-output"
AWARE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")

pytestmark = pytest.mark.usefixtures("workdir")


def url(db: Path) -> str:
    return f"sqlite:///{db}"


def validate(model: dict[str, Any], name: str) -> None:
    schema = json.loads((REPO / "docs" / name).read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(model)


def real_run(db: Path, *args: str, report: str = "run.json") -> dict[str, Any]:
    result = invoke("upgrade", "--database-url", url(db), "--unattended", "--report", report, *args)
    assert result.exit_code in (0, 4), result.output
    return dict(json.loads(Path(report).read_text())) if report.endswith(".json") else {}


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    with DevTools(_chromium(), tmp_path / "profile") as devtools:
        yield devtools


def _near_now(stamp: str) -> bool:
    moment = datetime.fromisoformat(stamp)
    return abs(datetime.now(UTC) - moment) < timedelta(minutes=5)


# --- the JSON of a real run ---------------------------------------------------------------------


def test_a_real_run_reports_what_happened(demo_db: Path) -> None:
    report = real_run(demo_db, "--fix-overrides", "--batch-size", "20")
    validate(report, "report.schema.json")
    assert report["schema_version"] == 2 and report["mode"] == "upgrade"
    for key in ("generated_at", "started", "finished"):
        assert AWARE.match(report[key]) and _near_now(report[key]), key
    assert report["duration_seconds"] is not None and report["estimate_seconds"] is None
    steps = {step["id"]: step for step in report["steps"]}
    for step_id in ("preference", "overrides", "mark_invites"):
        step = steps[step_id]
        assert step["decision"] == "change", step_id
        assert AWARE.match(step["started"]) and AWARE.match(step["finished"]), step_id
        assert step["started"] <= step["finished"] and step["duration_seconds"] >= 0
    # Before -> after, row by row: the system row was inserted, the override switched on.
    (system,) = steps["preference"]["changes"]
    assert system["inserted"] and system["before"] is None and system["after"] == "1"
    (override,) = steps["overrides"]["changes"]
    assert (override["before"], override["after"], override["inserted"]) == ("0", "1", False)
    findings = report["findings"]
    assert (findings["preference"]["effective"], findings["preference"]["after"]) == ("off", "on")
    marked = steps["mark_invites"]["rows"]
    assert marked > 0 and findings["invites"]["marked"] == marked
    assert findings["history"]["summary"].startswith("Before this run:")
    # The figures are of the rows this run marked.
    figures = report["figures"]
    assert figures["of"] == "marked"
    assert sum(item["rows"] for item in figures["by_year"]) == marked
    others = figures["other_associates"]["rows"] if figures["other_associates"] else 0
    assert sum(item["rows"] for item in figures["by_associate"]) + others == marked
    assert len(figures["by_associate"]) <= 20
    for warning in report["warnings"]:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", warning["code"]) and warning["message"]


def test_a_real_run_records_and_draws_each_batch(demo_db: Path) -> None:
    """Per-batch timings come from the marking's own batch loop (record_batch_timing, in each
    batch's transaction): one row per committed batch, its range, rows and seconds."""
    report = real_run(demo_db, "--batch-size", "20")
    marked = next(s for s in report["steps"] if s["id"] == "mark_invites")["rows"]
    batches = report["figures"]["batches"]
    assert batches, "no batch timings recorded: the marking's batch loop must call them"
    assert sum(b["rows"] for b in batches) == marked
    assert [b["batch_no"] for b in batches] == list(range(1, len(batches) + 1))
    assert all(b["lo"] < b["hi"] and b["seconds"] >= 0 for b in batches)
    html = render_report(report, "html")
    assert html.count('class="column"') >= min(len(batches), 240) + len(
        report["figures"]["by_year"]
    )


def test_record_batch_timing_keeps_a_row_per_batch(demo_db: Path) -> None:
    from sqlalchemy import create_engine, select

    from setup_tool.bookkeeping import batch_timings, install_bookkeeping

    engine = create_engine(url(demo_db))
    books = Bookkeeping.for_schema(None)
    with engine.begin() as conn:
        install_bookkeeping(conn, None)
        record_batch_timing(conn, books, 7, 3, 1, 1000, 3000, 1_987, 0.0842)
        record_batch_timing(conn, books, 7, 3, 2, 3000, 5000, 2_000, 0.091)
    with engine.begin() as conn:
        try:
            record_batch_timing(conn, books, 7, 3, 3, 5000, 7000, 5, 0.01)
            raise RuntimeError("the batch failed: rolled back")
        except RuntimeError:
            conn.rollback()
    with engine.connect() as conn:
        rows = batch_timings(conn, books, 7)
        assert conn.execute(select(books.batch.c.run_id).distinct()).scalars().all() == [7]
    engine.dispose()
    assert [(r["batch_no"], r["lo"], r["hi"], r["rows_changed"]) for r in rows] == [
        (1, 1000, 3000, 1_987),
        (2, 3000, 5000, 2_000),
    ]
    assert rows[0]["seconds"] == pytest.approx(0.0842)


def test_a_dry_run_draws_the_rows_it_would_mark(demo_db: Path) -> None:
    result = invoke("upgrade", "--database-url", url(demo_db), "--dry-run", "--report", "plan.json")
    assert result.exit_code == 0, result.output
    plan = json.loads(Path("plan.json").read_text())
    validate(plan, "report.schema.json")
    to_mark = plan["findings"]["invites"]["to_mark"]
    figures = plan["figures"]
    assert figures["of"] == "to_mark" and figures["batches"] == []
    assert sum(item["rows"] for item in figures["by_year"]) == to_mark
    assert plan["started"] is None and plan["estimate_seconds"] is not None
    assert all(step["changes"] == [] for step in plan["steps"])


def test_a_resumed_run_says_what_it_finished(demo_db: Path) -> None:
    with pytest.raises(InterruptedUpgrade) as stopped:
        upgrade(demo_db, batch_size=10, should_stop=lambda: True)
    first = stopped.value.result
    assert first.run_id is not None
    before = next(s for s in first.plan.steps if s.id == "mark_invites").rows

    report = real_run(demo_db, "--batch-size", "10")
    assert report["resumed"] == {
        "run_id": first.run_id,
        "step_row_id": report["resumed"]["step_row_id"],
        "rows_before": before,
        "batches_before": 1,
    }
    text = invoke("upgrade", "--database-url", url(demo_db), "--dry-run").stdout
    assert "Resumes" not in text  # nothing left to resume

    history = invoke("history", "--database-url", url(demo_db), "--format", "json")
    model = json.loads(history.stdout)
    validate(model, "history.schema.json")
    runs = {run["id"]: run for run in model["runs"]}
    second = report["run_id"]
    (finished,) = runs[second]["finished_steps"]
    assert (finished["id"], finished["run_id"], finished["finished_by"]) == (
        "mark_invites",
        first.run_id,
        second,
    )
    listed = invoke("history", "--database-url", url(demo_db)).stdout
    assert f"finished run {first.run_id}'s mark_invites" in listed


# --- history --run N ---------------------------------------------------------------------------


def test_a_stored_report_is_shown_again(demo_db: Path) -> None:
    report = real_run(demo_db, "--fix-overrides")
    run_id = report["run_id"]
    for fmt in ("html", "md", "text", "json"):
        again = invoke("history", "--database-url", url(demo_db), "--run", run_id, "--format", fmt)
        assert again.exit_code == 0, again.output
        assert "What changed" in again.stdout or fmt == "json"
    stored = json.loads(
        invoke(
            "history", "--database-url", url(demo_db), "--run", run_id, "--format", "json"
        ).stdout
    )
    assert stored["run_id"] == run_id and stored["steps"] == report["steps"]
    missing = invoke("history", "--database-url", url(demo_db), "--run", 999)
    assert missing.exit_code == 2 and "Run 999 kept no report" in missing.stderr


def test_a_report_stored_by_an_older_version_is_shown_too(demo_db: Path) -> None:
    """Schema 1 reports (warnings as strings, no times) still render."""
    from sqlalchemy import create_engine, update

    report = real_run(demo_db)
    old = dict(report, schema_version=1, warnings=["an old warning"])
    for key in ("started", "finished", "duration_seconds", "resumed", "figures"):
        old.pop(key)
    old["steps"] = [
        {k: v for k, v in step.items() if k not in ("started", "finished", "changes")}
        | {"warnings": [w["message"] for w in step["warnings"]]}
        for step in report["steps"]
    ]
    books = Bookkeeping.for_schema(None)
    engine = create_engine(url(demo_db))
    with engine.begin() as conn:
        conn.execute(
            update(books.run)
            .where(books.run.c.run_id == report["run_id"])
            .values(report_json=json.dumps(old))
        )
    engine.dispose()
    shown = invoke(
        "history", "--database-url", url(demo_db), "--run", report["run_id"], "--format", "html"
    )
    assert shown.exit_code == 0, shown.output
    assert "an old warning" in shown.stdout


# --- every report in a real browser ------------------------------------------------------------

_CHARTS = """JSON.stringify({
  scripts: document.scripts.length,
  charts: [...document.querySelectorAll("svg.chart")].map((svg) => ({
    css: svg.getAttribute("class"),
    shown: svg.checkVisibility() && svg.getBoundingClientRect().height > 20,
    marks: svg.querySelectorAll("rect").length,
  })),
  changes: !!document.getElementById("changes"),
  text: document.body.innerText,
})"""


def _open(browser: DevTools, page: Path, screenshot: str) -> dict[str, Any]:
    browser.events.clear()  # the previous page's load event must not count for this one
    browser.open(page.as_uri())
    state: dict[str, Any] = json.loads(browser.evaluate(_CHARTS))
    (TEST_OUTPUT / screenshot).write_bytes(browser.screenshot())
    assert browser.errors() == []
    assert state["scripts"] == 0
    return state


def test_every_report_in_a_real_browser(browser: DevTools, demo_db: Path) -> None:
    TEST_OUTPUT.mkdir(exist_ok=True)
    plan_page, run_page = TEST_OUTPUT / "report-dry-run.html", TEST_OUTPUT / "report-run.html"
    history_page, stored_page = TEST_OUTPUT / "history.html", TEST_OUTPUT / "report-stored.html"
    for page in (plan_page, run_page, history_page, stored_page):
        page.unlink(missing_ok=True)
    detect_page = TEST_OUTPUT / "report-detect.html"
    detect_page.unlink(missing_ok=True)
    found = invoke("detect", "--database-url", url(demo_db), "--report", detect_page)
    assert found.exit_code == 0, found.output
    dry = invoke("upgrade", "--database-url", url(demo_db), "--dry-run", "--report", plan_page)
    assert dry.exit_code == 0, dry.output
    report = real_run(demo_db, "--fix-overrides", "--batch-size", "10", report=str(run_page))
    del report
    history = invoke(
        "history", "--database-url", url(demo_db), "--format", "html", "--report", history_page
    )
    assert history.exit_code == 0, history.output
    stored = invoke("history", "--database-url", url(demo_db), "--run", 1, "--report", stored_page)
    assert stored.exit_code == 0, stored.output

    detected = _open(browser, detect_page, "report-detect.png")
    assert "Findings" in detected["text"] and not detected["charts"]
    plan = _open(browser, plan_page, "report-dry-run.png")
    assert {c["css"] for c in plan["charts"]} == {"chart years", "chart associates"}
    assert all(c["shown"] and c["marks"] > 0 for c in plan["charts"])
    assert not plan["changes"] and "estimated time" in plan["text"].lower()

    run = _open(browser, run_page, "report-run.png")
    assert run["changes"] and "What changed" in run["text"]
    assert re.search(r"off\s*→\s*on", run["text"]), "the preference, before and after"
    assert "estimated time" not in run["text"].lower()
    assert "Before the run" in run["text"]
    shown = {c["css"]: c for c in run["charts"]}
    assert shown["chart years"]["shown"] and shown["chart associates"]["shown"]

    history_state = _open(browser, history_page, "history.png")
    assert "run 1" in history_state["text"].lower()
    stored_state = _open(browser, stored_page, "report-stored.png")
    assert stored_state["changes"]
