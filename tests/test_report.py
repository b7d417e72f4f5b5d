"""The report and history in every format, the JSON schemas, and writing the report to disk."""

from __future__ import annotations

import base64
import errno
import html.parser
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, get_args

import jsonschema  # type: ignore[import-untyped]
import pytest
from report_samples import sample_history, sample_report

from setup_tool.errors import SetupToolError, UsageError
from setup_tool.report import (
    REPORT_FORMATS,
    ReportFormat,
    describe_estimate,
    describe_moment,
    describe_seconds,
    infer_format,
    render_history,
    render_report,
    write_text_file,
)

REPO = Path(__file__).resolve().parents[1]
TEST_OUTPUT = REPO / "test-output"
INJECTED = "<script>alert(1)</script> \"quotes\" 'apostrophes'"
OUTCOMES = (
    "changes_pending",
    "nothing_to_do",
    "done",
    "action_required",
    "blocked",
    "failed",
    "interrupted",
)


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((REPO / "docs" / name).read_text(encoding="utf-8"))
    return loaded


def schema_errors(model: dict[str, Any], name: str) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema(name))
    return [error.message for error in validator.iter_errors(model)]


def hostile_report() -> dict[str, Any]:
    """A report whose database values try to break out of every format."""
    report = sample_report(
        database={
            "url": f"sqlite:////tmp/{INJECTED}.db",
            "dialect": "sqlite",
            "table_prefix": None,
        }
    )
    findings = report["findings"]
    findings["superoffice"]["value"] = f"8.5 R10 {INJECTED}"
    findings["superoffice"]["evidence"][0]["detail"] = f"row 12: version='8.5 R10 {INJECTED}'"
    findings["preference"]["system_rows"][0]["value"] = INJECTED
    findings["preference"]["overrides"][0]["value"] = INJECTED
    findings["invites"]["evidence"][0]["detail"] = f"meeting 5001: participant {INJECTED}"
    # A payload that runs without a <script> element, and one that would rename the page.
    findings["travel"]["evidence"][0]["detail"] = (
        "<img src=x onerror=\"window.__pwned=1\"><script>document.title='pwned'</script>"
    )
    report["steps"][3]["warnings"] = [
        {"code": "mark_invites_warning", "message": f"Meeting 5001 organised by {INJECTED}"}
    ]
    return report


class _TextOf(html.parser.HTMLParser):
    """The text a reader sees: entities decoded, tags, comments and <style> dropped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if not self._in_style:
            self.parts.append(data)


def visible_text(output: str, fmt: ReportFormat) -> str:
    """Undo each format's escaping so tests can look for the values as the core wrote them."""
    if fmt == "html":
        parser = _TextOf()
        parser.feed(output)
        return " ".join(" ".join(parser.parts).split())
    if fmt == "md":  # CommonMark backslash escapes of ASCII punctuation
        return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", output)
    if fmt == "json":
        return " | ".join(_leaves(json.loads(output)))
    return output


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield str(value)


# --- JSON and the schemas ------------------------------------------------------------------


def test_json_report_is_the_model_and_validates_against_the_schema() -> None:
    report = sample_report()
    output = render_report(report, "json")

    assert json.loads(output) == report
    assert output.endswith("}\n")
    assert schema_errors(json.loads(output), "report.schema.json") == []


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_schema_accepts_every_outcome_and_mode(outcome: str) -> None:
    for mode in ("dry-run", "upgrade", "detect", "undo"):
        report = sample_report(outcome=outcome, mode=mode, run_id=7, log_file="/var/log/s.log")
        assert schema_errors(report, "report.schema.json") == []


def _without(key: str) -> dict[str, Any]:
    report = sample_report()
    del report[key]
    return report


def _nested(change: str) -> dict[str, Any]:
    report = sample_report()
    if change == "step without rows":
        del report["steps"][1]["rows"]
    elif change == "finding missing":
        del report["findings"]["travel"]
    elif change == "evidence with extra key":
        report["findings"]["superoffice"]["evidence"][0]["row"] = 12
    return report


@pytest.mark.parametrize(
    ("case", "report"),
    [
        ("missing key", _without("steps")),
        ("missing key", _without("exit_meaning")),
        ("extra top-level key", sample_report(unexpected=True)),
        ("older schema version", sample_report(schema_version=1)),
        ("warning without a code", sample_report(warnings=["a bare string"])),
        ("naive timestamp", sample_report(started="2026-11-25 19:40:00")),
        ("unknown outcome", sample_report(outcome="success")),
        ("exit code not an integer", sample_report(exit_code="0")),
        ("nested", _nested("step without rows")),
        ("nested", _nested("finding missing")),
        ("nested", _nested("evidence with extra key")),
    ],
)
def test_schema_rejects_a_changed_shape(case: str, report: dict[str, Any]) -> None:
    assert schema_errors(report, "report.schema.json"), case


def test_history_json_validates_and_rejects_a_changed_shape() -> None:
    history = sample_history()
    assert json.loads(render_history(history, "json")) == history
    assert schema_errors(history, "history.schema.json") == []

    assert schema_errors(sample_history(report_file="h.json"), "history.schema.json") == []
    assert schema_errors(sample_history(extra=1), "history.schema.json")
    broken = sample_history()
    del broken["runs"][0]["host"]
    assert schema_errors(broken, "history.schema.json")


# --- what every format shows ---------------------------------------------------------------


PLANNED = {"change": "will change", "done": "already done", "skip": "skipped", "blocked": "blocked"}


# How each format labels a step's row count.
ROWS_SHOWN = {"text": "Rows: {:,}", "md": "Rows: {:,}", "html": "Rows {:,}", "json": "{}"}


@pytest.mark.parametrize("fmt", REPORT_FORMATS)
def test_every_format_shows_every_step_and_every_evidence(fmt: ReportFormat) -> None:
    report = sample_report()
    report["steps"].append(
        {
            **report["steps"][0],
            "id": "later",
            "title": "A step after a block",
            "decision": "blocked",
        }
    )
    # Row counts no other figure of the report shares (0 and 1 are in every report anyway).
    for index, step in enumerate(report["steps"]):
        step["rows"] = 20_000 + 1_111 * index
    text = visible_text(render_report(report, fmt), fmt)

    for step in report["steps"]:
        assert step["id"] in text
        decision = PLANNED[step["decision"]] if fmt != "json" else step["decision"]
        # The decision is shown with its step, not just somewhere in the report.
        assert re.search(re.escape(step["title"]) + r".{0,40}?" + decision, text, re.I | re.S)
        # ...and so is its row count, labelled as one.
        rows = ROWS_SHOWN[fmt].format(step["rows"])
        assert re.search(re.escape(step["title"]) + r"[\s\S]{0,600}?" + re.escape(rows), text), (
            f"{step['id']}: {rows!r} not shown with the step"
        )
        for sample_id in step["sample_ids"]:
            assert str(sample_id) in text
    for finding in report["findings"].values():
        assert finding["summary"] in text
        for item in finding["evidence"]:
            assert item["source"] in text
            assert item["detail"] in text
    for sentence in report["summary"] + [w["message"] for w in report["warnings"]]:
        assert sentence in text
    assert report["outcome_text"] in text
    assert report["exit_meaning"] in text
    assert report["generated_at"] in text


@pytest.mark.parametrize("fmt", ["text", "md", "html"])
@pytest.mark.parametrize("outcome", OUTCOMES)
def test_every_outcome_has_its_own_wording(fmt: ReportFormat, outcome: str) -> None:
    output = render_report(sample_report(outcome=outcome), fmt)
    banner = {
        "changes_pending": "Will change",
        "nothing_to_do": "Nothing to do",
        "done": "Done",
        "action_required": "Done, action required",
        "blocked": "Blocked",
        "failed": "Failed",
        "interrupted": "Interrupted",
    }[outcome]
    assert banner.lower() in output.lower()
    if fmt == "html":  # each outcome is colour-coded by its own rule in the stylesheet
        assert f'class="banner outcome-{outcome}"' in output
        assert f".outcome-{outcome}" in output.split("</style>")[0]


@pytest.mark.parametrize("fmt", ["text", "md", "html"])
def test_applied_runs_say_what_changed_not_what_will(fmt: ReportFormat) -> None:
    report = sample_report(
        mode="upgrade",
        outcome="done",
        outcome_text="The database is ready for invites.",
        exit_code=0,
        exit_meaning="done, nothing more to do",
        summary=["1190 appointment rows were marked NotInSync."],
    )
    report["steps"][3]["duration_seconds"] = 125.0
    output = visible_text(render_report(report, fmt), fmt)
    assert "will change" not in output.lower()
    assert "changed" in output
    assert "2 min 5 s" in output


# How each format shows a past step's row count on the step's line.
HISTORY_ROWS_SHOWN = {"text": " {} row", "md": "| {} |", "html": " {} row", "json": " {} "}


@pytest.mark.parametrize("fmt", REPORT_FORMATS)
def test_every_format_shows_every_past_run(fmt: ReportFormat) -> None:
    history = sample_history()
    text = visible_text(render_history(history, fmt), fmt)

    for run in history["runs"]:
        assert f"{run['id']}" in text
        assert run["mode"] in text
        # Shown as a person reads it, its zone kept ("2026-11-20 08:00:03 UTC").
        assert (run["started_at"] if fmt == "json" else describe_moment(run["started_at"])) in text
        assert run["os_user"] in text
        for step in run["steps"]:
            assert step["id"] in text
            assert step["status"] in text
            # The count on the step's own line (0 and 1 would be found anywhere).
            rows = step["rows"] if fmt == "json" else f"{step['rows']:,}"
            shown = HISTORY_ROWS_SHOWN[fmt].format(rows)
            assert re.search(re.escape(step["id"]) + r"[^\n]{0,80}?" + re.escape(shown), text), (
                f"{step['id']}: {shown!r}"
            )
    assert history["database"]["url"] in text


@pytest.mark.parametrize(
    ("seconds", "took", "estimate"),
    [
        (None, "unknown", "about unknown"),
        (0.01, "0.0 s", "under 0.1 s"),
        (4.25, "4.2 s", "about 4.2 s"),
        (42.4, "42 s", "about 42 s"),
        (180, "3 min", "about 3 min"),
        (7260, "2 h 1 min", "about 2 h 1 min"),
    ],
)
def test_durations_read_at_a_glance(seconds: float | None, took: str, estimate: str) -> None:
    assert describe_seconds(seconds) == took
    assert describe_estimate(seconds) == estimate


# --- text ----------------------------------------------------------------------------------


def test_text_has_no_control_characters_even_from_database_values() -> None:
    report = hostile_report()
    report["findings"]["preference"]["system_rows"][0]["value"] = "\x1b[2J\x1b[31mred\x07\r\n"
    report["findings"]["superoffice"]["evidence"][1]["detail"] = "version \u202egnp.exe\u202c"
    report["steps"][1]["sql"] = ["UPDATE x\tSET y = 1\r\nWHERE z = '\x1b'"]

    for output in (render_report(report, "text"), render_history(sample_history(), "text")):
        controls = {char for char in output if unicodedata.category(char) == "Cc"} - {"\n"}
        assert controls == set()
        assert "\u202e" not in output
    assert "\\x1b[2J" in render_report(report, "text")  # shown, not obeyed


def test_text_lines_fit_a_console() -> None:
    output = render_report(sample_report(), "text")
    assert max(len(line) for line in output.splitlines()) <= 100
    assert output.endswith("\n")


# --- Markdown ------------------------------------------------------------------------------


def _outside_code(markdown: str) -> str:
    without_fences = re.sub(r"^(`{3,})[^\n]*\n.*?^\1\s*$", "", markdown, flags=re.M | re.S)
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", without_fences)


# A character is escaped by an odd number of backslashes before it; "\\|" is a real pipe.
UNESCAPED = r"(?<!\\)(?:\\\\)*"


def _cells(row: str) -> int:
    return len(re.findall(UNESCAPED + r"\|", row))


def test_markdown_has_no_raw_html() -> None:
    for output in (render_report(hostile_report(), "md"), render_history(sample_history(), "md")):
        prose = _outside_code(output)
        assert re.search(UNESCAPED + r"<[A-Za-z/!?]", prose) is None
        assert re.search(UNESCAPED + r"&[#A-Za-z0-9]+;", prose) is None


def test_markdown_tables_survive_pipes_and_newlines_in_values() -> None:
    report = sample_report()
    report["findings"]["superoffice"]["evidence"][0]["detail"] = "a | b\nc || d\\|"
    report["findings"]["preference"]["overrides"][0]["value"] = "Yes|No\r\n| x"
    report["database"]["url"] = "mssql+pyodbc://u:***@srv/db?x=`a|b`"
    output = render_report(report, "md")

    tables = re.findall(r"(?:^\|.*\|\n)+", output, flags=re.M)
    assert len(tables) >= 8
    for table in tables:
        rows = table.splitlines()
        assert {_cells(row) for row in rows} == {_cells(rows[0])}, table
    assert "a \\| b c \\|\\| d\\\\\\|" in output
    assert "Yes\\|No \\| x" in output


def test_markdown_sql_is_fenced_and_cannot_close_its_fence() -> None:
    report = sample_report()
    report["steps"][1]["sql"] = ["SELECT '```' AS fence -- ````"]
    output = render_report(report, "md")
    assert "`````sql\nSELECT '```' AS fence -- ````\n`````" in output
    assert "```sql\nUPDATE appointment" in output


# --- HTML ----------------------------------------------------------------------------------


def test_html_escapes_every_database_value() -> None:
    output = render_report(hostile_report(), "html")
    lowered = output.lower()

    assert "<script" not in lowered
    assert "<img" not in lowered
    assert "alert(1)</script>" not in lowered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in output
    assert "&#34;quotes&#34;" in output
    assert "&#39;apostrophes&#39;" in output
    # Each injected place shows the value as text (six places carry INJECTED verbatim).
    assert visible_text(output, "html").count(INJECTED) >= 6


def test_html_is_one_self_contained_file() -> None:
    output = render_report(sample_report(), "html")
    lowered = output.lower()
    for reference in ("<link", "<script", "<img", "@import", "url(", "src=", "http://", "https://"):
        assert reference not in lowered, reference
    assert "@media print" in output
    assert lowered.count("<details") == sum(1 for s in sample_report()["steps"] if s["sql"])


def _chromium() -> str:
    found = os.environ.get("SETUP_TOOL_TEST_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    if found is None:
        message = (
            "Chromium is not installed (Debian: apt-get install chromium), so the HTML report "
            "was not checked in a real browser."
        )
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return found


class DevTools:
    """Just enough of the Chrome DevTools protocol, over --remote-debugging-pipe (stdlib only).

    Chromium reads commands on fd 3 and writes replies and events on fd 4, each message JSON
    ending in a NUL byte. One page, one session; events are kept for the test to inspect.
    """

    FLAGS = (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--remote-debugging-pipe",
    )

    def __init__(self, executable: str, profile: Path) -> None:
        commands_in, self._commands = os.pipe()
        self._replies, replies_out = os.pipe()
        self._process = subprocess.Popen(
            [executable, *self.FLAGS, f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=_as_fds_3_and_4(commands_in, replies_out),
            close_fds=False,  # fds 3 and 4 must survive; Python's own fds are not inheritable
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(commands_in)
        os.close(replies_out)
        self._buffer = b""
        self._next_id = 0
        self._session: str | None = None
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> DevTools:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.call("Browser.close", browser=True)
            self._process.wait(timeout=10)
        except (OSError, TimeoutError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait()
        finally:
            os.close(self._commands)
            os.close(self._replies)

    def call(self, method: str, params: dict[str, Any] | None = None, browser: bool = False) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session and not browser:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 20
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._keep(reply)

    def _keep(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event.get("method") == "Page.javascriptDialogOpening":
            # An alert() blocks the page until answered: answer it, errors() reports it.
            self.call("Page.handleJavaScriptDialog", {"accept": True})

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select(
                [self._replies], [], [], max(0.0, deadline - time.monotonic())
            )
            chunk = os.read(self._replies, 1 << 16) if ready else b""
            if not chunk:
                raise TimeoutError("Chromium stopped answering (or exited)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def open(self, url: str, width: int = 1280) -> None:
        """Attach to the blank page, turn on the event domains, load `url` and wait for it."""
        pages = [t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page"]
        attached = self.call(
            "Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True}
        )
        self._session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        )
        self.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + 20
        while not any(event.get("method") == "Page.loadEventFired" for event in self.events):
            self._keep(self._receive(deadline))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(result["exceptionDetails"])
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions, CSP violations and dialogs seen so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(json.dumps(params["args"]))
            elif method in ("Runtime.exceptionThrown", "Page.javascriptDialogOpening"):
                found.append(f"{method}: {json.dumps(params)[:300]}")
        return found

    def screenshot(self) -> bytes:
        """The whole page, not just the viewport."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.call(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        return base64.b64decode(shot["data"])


def _as_fds_3_and_4(commands_in: int, replies_out: int) -> Callable[[], None]:
    def move() -> None:  # runs in the child, between fork and exec
        # Copy both first: either end may itself be fd 3 or 4, and dup2 would overwrite it.
        commands, replies = os.dup(commands_in), os.dup(replies_out)
        os.dup2(commands, 3)
        os.dup2(replies, 4)

    return move


_PAGE_STATE = """JSON.stringify((() => {
  const shown = (el) => !!el && el.checkVisibility() && el.getBoundingClientRect().height > 0;
  const banner = document.getElementById("outcome");
  return {
    title: document.title,
    pwned: window.__pwned === 1,
    scripts: document.scripts.length,
    banner: {shown: shown(banner), text: banner ? banner.innerText : "",
             top: banner ? banner.getBoundingClientRect().top : -1,
             colour: banner ? getComputedStyle(banner).borderLeftColor : ""},
    steps: [...document.querySelectorAll("article.step")].map((el) => ({
      id: el.id, decision: el.dataset.decision, shown: shown(el), text: el.innerText})),
    sql: [...document.querySelectorAll("details.sql pre")].map(shown),
  };
})())"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    with DevTools(_chromium(), tmp_path / "profile") as devtools:
        yield devtools


def test_html_report_in_a_real_browser(browser: DevTools) -> None:
    report = hostile_report()
    TEST_OUTPUT.mkdir(exist_ok=True)
    page = TEST_OUTPUT / "report.html"
    write_text_file(page, render_report(report, "html"))

    browser.open(page.as_uri())
    state = json.loads(browser.evaluate(_PAGE_STATE))
    browser.call("Emulation.setEmulatedMedia", {"media": "print"})
    printed = json.loads(browser.evaluate(_PAGE_STATE))
    browser.call("Emulation.setEmulatedMedia", {"media": "screen"})
    (TEST_OUTPUT / "report.png").write_bytes(browser.screenshot())

    assert state["pwned"] is False  # the onerror payload did not run
    assert "pwned" not in state["title"]  # nor the <script> one
    assert state["scripts"] == 0
    assert browser.errors() == []  # no console error, CSP violation, exception or alert()
    assert state["banner"]["shown"]
    assert 0 <= state["banner"]["top"] < 50  # the first thing on the page
    assert state["banner"]["text"].startswith("SETUP-TOOL")
    assert "Will change" in state["banner"]["text"]
    assert state["banner"]["colour"] == "rgb(29, 95, 166)"  # the blue of "will change"
    assert [step["id"] for step in state["steps"]] == [f"step-{s['id']}" for s in report["steps"]]
    for step, shown in zip(report["steps"], state["steps"], strict=True):
        assert shown["shown"], step["id"]
        assert shown["decision"] == step["decision"]
        assert step["title"] in shown["text"]
    assert state["sql"] and not any(state["sql"])  # collapsed on screen...
    assert all(printed["sql"])  # ...and printed expanded


def test_history_html_in_a_real_browser(browser: DevTools) -> None:
    history = sample_history()
    history["runs"][0]["os_user"] = INJECTED
    TEST_OUTPUT.mkdir(exist_ok=True)
    page = TEST_OUTPUT / "history.html"
    write_text_file(page, render_history(history, "html"))

    browser.open(page.as_uri())
    rows = browser.evaluate(
        "[...document.querySelectorAll('tr.run')].filter((r) => r.checkVisibility()).length"
    )
    (TEST_OUTPUT / "history.png").write_bytes(browser.screenshot())

    assert browser.errors() == []
    assert rows == len(history["runs"])
    assert browser.evaluate("document.scripts.length") == 0


# --- choosing the format -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "requested", "expected"),
    [
        (None, None, "text"),
        (Path("report.txt"), None, "text"),
        (Path("report.md"), None, "md"),
        (Path("REPORT.HTML"), None, "html"),
        (Path("report.htm"), None, "html"),
        (Path("out/report.json"), None, "json"),
        (Path("report.log"), None, "text"),
        (Path("report"), None, "text"),
        (Path("report.html"), "json", "json"),
        (None, "md", "md"),
        (None, "HTML", "html"),
        (None, "markdown", "md"),
    ],
)
def test_infer_format(path: Path | None, requested: str | None, expected: str) -> None:
    assert infer_format(path, requested) == expected


def test_infer_format_rejects_an_unknown_format() -> None:
    with pytest.raises(UsageError) as raised:
        infer_format(Path("report.html"), "pdf")
    assert "pdf" in str(raised.value)
    assert "text, md, html, json" in str(raised.value)


def test_report_format_literal_matches_the_formats() -> None:
    assert set(get_args(ReportFormat)) == set(REPORT_FORMATS)


# --- writing the file ----------------------------------------------------------------------


def test_write_text_file_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "report.md"
    target.write_text("old report\n", encoding="utf-8")

    with target.open(encoding="utf-8") as reader_of_the_old_file:
        write_text_file(target, "new report ✓\n")
        # Replaced, not rewritten in place: a reader of the old file still sees it whole.
        assert reader_of_the_old_file.read() == "old report\n"
    assert target.read_bytes() == "new report ✓\n".encode()
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_write_text_file_gives_a_new_file_the_usual_permissions(tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    old_mask = os.umask(0o022)
    try:
        write_text_file(target, "x")
    finally:
        os.umask(old_mask)
    assert target.stat().st_mode & 0o777 == 0o644


def test_write_text_file_keeps_the_old_file_when_a_write_fails(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old", encoding="utf-8")
    # A real failing write(): the file size limit makes it fail with EFBIG part way through.
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, old_limit[1]))
    try:
        with pytest.raises(SetupToolError) as raised:
            write_text_file(target, "x" * 100_000)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)

    assert str(target) in raised.value.message
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def _unwritable(tmp_path: Path, case: str) -> Path:
    if case == "missing folder":
        return tmp_path / "no such folder" / "report.html"
    if case == "a file where a folder should be":
        (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
        return tmp_path / "notes.txt" / "report.html"
    if case == "a folder where the file should be":
        (tmp_path / "report.html").mkdir()
        return tmp_path / "report.html"
    # /sys refuses new files even to root, where a chmod'ed folder would not.
    return Path("/sys/setup-tool-report.html")


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing folder", "its folder does not exist"),
        ("a file where a folder should be", "is a file, not a folder"),
        ("a folder where the file should be", "it is a folder"),
        ("read-only folder", "permission denied"),
    ],
)
def test_write_text_file_explains_what_went_wrong(tmp_path: Path, case: str, reason: str) -> None:
    path = _unwritable(tmp_path, case)
    if case == "read-only folder" and not Path("/sys").is_dir():
        pytest.skip("no /sys on this system")

    with pytest.raises(SetupToolError) as raised:
        write_text_file(path, "report")

    error = raised.value
    assert f"'{path}'" in error.message
    assert reason in error.message
    assert error.hint
    assert "Traceback" not in str(error)
    assert list(tmp_path.glob(".*.tmp")) == []


def test_a_full_disk_is_named_as_such() -> None:
    from setup_tool.report import _write_error  # ENOSPC cannot be provoked portably

    error = _write_error(Path("/reports/r.html"), OSError(errno.ENOSPC, "No space left"))
    assert error.message == (
        "Cannot write the file '/reports/r.html': the disk is full. Nothing was written there."
    )


def test_hostile_values_from_the_database_never_run_in_the_browser(
    browser: DevTools, demo_db: Path
) -> None:
    """Through the whole tool: values a user could type into SuperOffice reach the HTML report
    escaped — a preference value, a ProductVersion string and a person's name."""
    import sqlite3

    from click.testing import CliRunner

    from setup_tool.cli import cli

    payload = (
        "<script>window.__pwned=1;document.title='pwned'</script>\"'<img src=x onerror=alert(1)>"
    )
    with sqlite3.connect(demo_db) as db:
        row_id, owner = db.execute(
            "SELECT userpreference_id, owner_id FROM UserPreference WHERE deflevel = 5 "
            "AND prefkey = 'DiarySynchronizerActive'"
        ).fetchone()
        db.execute(
            "UPDATE UserPreference SET prefvalue = ? WHERE userpreference_id = ?", (payload, row_id)
        )
        db.execute(
            "UPDATE ProductVersion SET comment = ?, version = ? WHERE ownerName = "
            "'SuperOffice' AND version = '8.1 R03'",
            (payload, payload),
        )
        db.execute(
            "UPDATE person SET firstname = ? WHERE person_id = (SELECT person_id FROM "
            "associate WHERE associate_id = ?)",
            (payload, owner),
        )
    TEST_OUTPUT.mkdir(exist_ok=True)
    page = TEST_OUTPUT / "report-from-database.html"
    result = CliRunner().invoke(
        cli,
        ["upgrade", "--dry-run", "--database-url", f"sqlite:///{demo_db}", "--report", str(page)],
    )
    assert result.exit_code == 0, result.output
    assert page.read_text().count("&lt;script&gt;window.__pwned") >= 3  # all three, as text

    browser.open(page.as_uri())
    state = json.loads(browser.evaluate(_PAGE_STATE))
    (TEST_OUTPUT / "report-from-database.png").write_bytes(browser.screenshot())
    assert state["pwned"] is False and state["title"] != "pwned"
    assert state["scripts"] == 0
    assert browser.errors() == []
    assert browser.evaluate("document.body.innerText.split('window.__pwned=1').length - 1") >= 3
