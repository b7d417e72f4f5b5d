"""Render the report and history models as text, Markdown, HTML or JSON, and write them safely.

The core builds plain JSON-able dicts (see docs/report.schema.json and docs/history.schema.json);
this module only presents them. Every value may come from the customer database, so each format
neutralises what could harm its reader: control characters on a console, Markdown syntax in a
ticket, markup in a browser.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import textwrap
import unicodedata
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jinja2

from setup_tool.errors import SetupToolError, UsageError
from setup_tool.resources import templates_dir

ReportFormat = Literal["text", "md", "html", "json"]
REPORT_FORMATS: tuple[ReportFormat, ...] = ("text", "md", "html", "json")

_FORMAT_NAMES: dict[str, ReportFormat] = {
    "text": "text",
    "txt": "text",
    "md": "md",
    "markdown": "md",
    "html": "html",
    "htm": "html",
    "json": "json",
}
_SUFFIX_FORMATS: dict[str, ReportFormat] = {
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".json": "json",
}
_TEMPLATE_SUFFIX: dict[ReportFormat, str] = {"text": ".txt.j2", "md": ".md.j2", "html": ".html"}

_OUTCOME_LABELS: dict[str, str] = {
    "changes_pending": "Will change",
    "nothing_to_do": "Nothing to do",
    "done": "Done",
    "action_required": "Done, action required",
    "blocked": "Blocked",
    "failed": "Failed",
    "interrupted": "Interrupted",
}
_PLANNED_DECISIONS = {"change": "will change", "done": "already done", "skip": "skipped"}
_APPLIED_DECISIONS = {"change": "changed", "done": "already done", "skip": "skipped"}
_STATUS_LABELS: dict[str, str] = {
    "ok": "ok",
    "too_old": "too old",
    "undetermined": "undetermined",
    "unknown_version": "version unknown",
    "absent": "not in use",
    "licensed_only": "licensed only",
}


# A report file's extension must say what it holds: --report plan.pdf is refused, not written
# as text. .log and .text are text too; .sql (upgrade --dry-run only) is the T-SQL script.
REPORT_SUFFIXES = (".txt", ".text", ".log", ".md", ".markdown", ".html", ".htm", ".json")
STDOUT = Path("-")  # --report -: the report on standard output


def check_report_suffix(path: Path | None, requested: str | None, sql: bool = False) -> None:
    """Refuse a report file whose extension names no format this command writes, unless
    --format says which format it is."""
    if path is None or path == STDOUT or requested is not None or not path.suffix:
        return
    allowed = REPORT_SUFFIXES + ((".sql",) if sql else ())
    if path.suffix.lower() not in allowed:
        raise UsageError(
            f"--report {path}: setup-tool does not write {path.suffix} files.",
            "Name the report .txt, .md, .html or .json"
            + (" (.sql for the T-SQL script of a dry run)" if sql else "")
            + ", give --format, or use --report - for standard output.",
        )


def infer_format(path: Path | None, requested: str | None) -> ReportFormat:
    """The format asked for wins; otherwise the file suffix decides; otherwise plain text."""
    if requested is not None:
        fmt = _FORMAT_NAMES.get(requested.strip().lower())
        if fmt is None:
            raise UsageError(
                f"Unknown report format '{requested}'.",
                "Use one of: " + ", ".join(REPORT_FORMATS) + " (--format).",
            )
        return fmt
    if path is not None:
        return _SUFFIX_FORMATS.get(path.suffix.lower(), "text")
    return "text"


def render_report(report: Mapping[str, Any], fmt: ReportFormat) -> str:
    """The report in `fmt`; JSON is the model itself, the others come from templates/report.*."""
    return _render("report", report, fmt)


def render_history(history: Mapping[str, Any], fmt: ReportFormat) -> str:
    """Past runs in `fmt`; JSON is the model itself, the others come from templates/history.*."""
    return _render("history", history, fmt)


def _render(name: str, model: Mapping[str, Any], fmt: ReportFormat) -> str:
    if fmt == "json":
        return json.dumps(model, indent=2, sort_keys=False, default=str) + "\n"
    template = _environment().get_template(name + _TEMPLATE_SUFFIX[fmt])
    return template.render(model)


_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows would otherwise turn "\n" into "\r\n"


def write_text_file(path: Path, text: str) -> None:
    """Write `text` (UTF-8) so that `path` holds either its old content or all of the new.

    Only where output_files allows it: never over a symbolic link, a device, a folder or a
    SQLite database (a UsageError). Any OSError becomes a SetupToolError naming the path, so
    the CLI never shows a traceback.
    """
    from setup_tool.output_files import refuse_unsafe_target

    # The temporary file sits next to the target so os.replace stays on one file system.
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        _write_and_sync(temporary, text.encode("utf-8"))
        # os.replace replaces whatever `path` is now: look at it last, just before.
        refuse_unsafe_target(path)
        os.replace(temporary, path)
    except UsageError as error:
        _remove_quietly(temporary)
        raise UsageError(error.message, f"{error.hint} {_NOT_AFFECTED}") from None
    except OSError as error:
        _remove_quietly(temporary)
        raise _write_error(path, error) from error


def _write_and_sync(path: Path, data: bytes) -> None:
    # os.open with 0o666 lets the umask decide the mode, as for any file the user creates.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view) :]
        # A full disk may only show on fsync: better here than as a truncated report later.
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_quietly(path: Path) -> None:
    # It may never have been created, or its folder is gone: then there is nothing to clean up.
    with contextlib.suppress(OSError):
        path.unlink()


_WHY: dict[int, tuple[str, str]] = {
    errno.ENOENT: ("its folder does not exist", "Create the folder or choose another path."),
    errno.ENOTDIR: (
        "a part of its folder path is a file, not a folder",
        "Choose a path inside an existing folder.",
    ),
    errno.EISDIR: ("it is a folder", "Give a file name, not a folder."),
    errno.EACCES: ("permission denied", "Choose a folder you can write to."),
    errno.EPERM: ("permission denied", "Choose a folder you can write to."),
    errno.EROFS: ("the file system is read-only", "Choose a folder on a writable disk."),
    errno.ENOSPC: ("the disk is full", "Free some space or choose another disk."),
    errno.EDQUOT: ("the disk quota is exhausted", "Free some space or choose another disk."),
    errno.EFBIG: ("it would be larger than this system allows", "Choose another disk."),
    errno.ENAMETOOLONG: ("the file name is too long", "Choose a shorter path."),
}


def _write_error(path: Path, error: OSError) -> SetupToolError:
    why, hint = _WHY.get(error.errno or 0, (error.strerror or str(error), "Choose another path."))
    return SetupToolError(
        f"Cannot write the file '{path}': {why}. Nothing was written there.",
        f"{hint} {_NOT_AFFECTED}",
    )


_NOT_AFFECTED = "The database work itself is not affected by this."


# --- templates ------------------------------------------------------------------------------


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        # Only report.html/history.html hold markup; text and Markdown escape their own way.
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_without_control_characters,
    )
    environment.filters.update(
        plain=plain,
        wrap=wrap,
        md=markdown_text,
        md_code=markdown_code,
        fence=markdown_fence,
        seconds=describe_seconds,
        estimate=describe_estimate,
        outcome_label=outcome_label,
        status_label=status_label,
        ids=describe_ids,
        n=thousands,
        at=describe_moment,
        warning_text=warning_text,
        value=describe_value,
        pairs=pairs,
    )
    environment.globals.update(
        decision_label=decision_label,
        column_chart=column_chart,
        bar_chart=bar_chart,
        batch_chart=batch_chart,
    )
    return environment


def _without_control_characters(value: object) -> object:
    # A last guard for every {{ }}: a value no filter cleaned still cannot reach a terminal or
    # page as an escape sequence. Newlines stay (SQL needs them); Markup stays Markup.
    if isinstance(value, str):
        return type(value)(plain(value, keep_newlines=True))
    return value


def outcome_label(outcome: str) -> str:
    return _OUTCOME_LABELS.get(outcome, outcome.replace("_", " ").capitalize())


def decision_label(decision: str, mode: str) -> str:
    """What a step's decision means to a reader: a dry run plans, an upgrade or undo applied."""
    labels = _PLANNED_DECISIONS if mode in ("dry-run", "detect") else _APPLIED_DECISIONS
    return labels.get(decision, decision)


def status_label(status: str) -> str:
    return _STATUS_LABELS.get(status, status.replace("_", " "))


# Bidirectional overrides can make a console or page show text in another order than it is.
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def plain(value: object, keep_newlines: bool = False) -> str:
    """`value` as one printable line (or lines): no escape sequences a terminal would obey."""
    text = "" if value is None else str(value)
    text = text.replace("\r\n", "\n").replace("\t", "    ")
    if not keep_newlines:
        text = text.replace("\n", " ")
    return "".join(_printable(char) for char in text)


def _printable(char: str) -> str:
    if char == "\n":
        return char
    if unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS:
        return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    return char


def wrap(value: object, width: int = 100, indent: str = "", first: str | None = None) -> str:
    """Wrap a one-line value for the console; the first line may carry a label (`first`)."""
    lines = textwrap.wrap(
        plain(value),
        width=width,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
    return "\n".join(lines) if lines else (indent if first is None else first).rstrip()


# CommonMark lets any ASCII punctuation be backslash-escaped; these are the ones that start
# markup inline or in a GFM table cell.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>|&~!])")
# Intraword underscores never make emphasis, so "ProductVersion_id" stays readable unescaped.
_MARKDOWN_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# At the start of a line these open a heading, a list or a rule; "8.5 R10" is not a list item.
_MARKDOWN_LINE_START = re.compile(r"^([#+\-=]|\d{1,9}[.)](?=\s|$))")


def markdown_text(value: object) -> str:
    """`value` as literal Markdown text on one line, safe inside a table cell or a list item."""
    text = plain(value).strip()
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    text = _MARKDOWN_UNDERSCORE.sub(r"\\_", text)
    return _MARKDOWN_LINE_START.sub(_escape_line_start, text)


def _escape_line_start(match: re.Match[str]) -> str:
    marker = match.group(1)
    if marker[0].isdigit():  # "1." would start an ordered list: escape the dot, not the digit
        return marker[:-1] + "\\" + marker[-1]
    return "\\" + marker


def markdown_code(value: object, cell: bool = True) -> str:
    """`value` as an inline code span that no backtick (nor, in a table `cell`, pipe) can end."""
    text = plain(value)
    if cell:  # GFM splits cells before parsing code spans; outside a table "\|" shows as is
        text = text.replace("|", "\\|")
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{padding}{text}{padding}{ticks}"


def markdown_fence(value: object, language: str = "") -> str:
    """A fenced code block longer than any backtick run inside, so the content cannot close it."""
    text = plain(value, keep_newlines=True).rstrip("\n")
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def describe_seconds(seconds: float | None) -> str:
    """A duration a person reads at a glance: "0.4 s", "42 s", "3 min 5 s", "2 h 10 min"."""
    if seconds is None:
        return "unknown"
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    return f"{hours} h {rest // 60} min"


def describe_estimate(seconds: float | None) -> str:
    """An estimate: "about 3 min"; a tiny one says so rather than "about 0.0 s"."""
    if seconds is not None and seconds < 0.05:
        return "under 0.1 s"
    return "about " + describe_seconds(seconds)


def describe_ids(ids: Sequence[object], limit: int = 20) -> str:
    """Sample ids as "1, 2, 3 and 17 more"; an empty list says "none"."""
    values = [str(item) for item in ids]
    if not values:
        return "none"
    shown = ", ".join(values[:limit])
    return f"{shown} and {len(values) - limit} more" if len(values) > limit else shown


def thousands(value: object) -> str:
    """A count with thousands separators (7,078); anything else as it is."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def describe_moment(value: object) -> str:
    """An ISO 8601 timestamp as a person reads it, its zone kept: 2026-12-02 08:36:05 UTC."""
    text = "" if value is None else str(value)
    if text.endswith("+00:00"):
        return text[: -len("+00:00")].replace("T", " ") + " UTC"
    return text.replace("T", " ")


def warning_text(warning: object) -> str:
    """A warning object's message (a plain string from an older report as it is)."""
    if isinstance(warning, Mapping):
        return str(warning.get("message", ""))
    return "" if warning is None else str(warning)


def describe_value(value: object, inserted: bool = False) -> str:
    """A preference value as stored: 'NULL', '(no row)' before an insert, or the text."""
    if inserted:
        return "(no row)"
    return "NULL" if value is None else str(value)


def pairs(items: Sequence[Mapping[str, Any]], label: str, value: str) -> list[tuple[str, float]]:
    """[{year: 2025, rows: 3}] -> [("2025", 3)]: what the charts take."""
    return [(str(item[label]), item[value]) for item in items]


# --- charts: numbers to geometry; report.html draws them as inline SVG, no script ---------------

CHART_WIDTH = 720
MAX_BATCH_COLUMNS = 240  # more batches than this are drawn as buckets (their mean)


def _scale(maximum: float) -> tuple[float, list[float]]:
    """A round top for the axis (1, 2 or 5 times a power of ten) and its four ticks."""
    if maximum <= 0:
        return 1.0, [0.0, 0.25, 0.5, 0.75, 1.0]
    magnitude = 10 ** math.floor(math.log10(maximum))
    top = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= maximum)
    return float(top), [top * i / 4 for i in range(5)]


def column_chart(
    items: Sequence[tuple[str, float]], height: int = 180, unit: str = "rows", labels: int = 24
) -> dict[str, Any]:
    """Vertical columns, one per item, labelled under the axis (years, batches)."""
    left, bottom, top_pad = 56, 28, 12
    plot_w, plot_h = CHART_WIDTH - left - 8, height - bottom - top_pad
    top, ticks = _scale(max((v for _, v in items), default=0))
    step = plot_w / max(len(items), 1)
    columns = []
    width = min(max(step * 0.8, 0.6), 56.0)  # a few years must not become slabs
    for index, (label, value) in enumerate(items):
        h = plot_h * value / top
        columns.append(
            {
                "x": round(left + index * step + (step - width) / 2, 2),
                "y": round(top_pad + plot_h - h, 2),
                "w": round(width, 2),
                "h": round(h, 2),
                "label": label,
                "title": label,
                "value": value,
                "show_label": len(items) <= labels or index % math.ceil(len(items) / labels) == 0,
                "label_x": round(left + index * step + step / 2, 2),
            }
        )
    return {
        "width": CHART_WIDTH,
        "height": height,
        "left": left,
        "plot_bottom": top_pad + plot_h,
        "ticks": [
            {"y": round(top_pad + plot_h - plot_h * t / top, 2), "label": _tick(t, unit)}
            for t in ticks
        ],
        "columns": columns,
        "unit": unit,
    }


def _tick(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3g} s"
    return f"{value:,.0f}" if value >= 1 or value == 0 else f"{value:.2g}"


def bar_chart(items: Sequence[tuple[str, float]], unit: str = "rows") -> dict[str, Any]:
    """Horizontal bars, one row per item with its label on the left (associates)."""
    row_h, label_w = 22, 260
    plot_w = CHART_WIDTH - label_w - 70
    top, _ticks = _scale(max((v for _, v in items), default=0))
    bars = [
        {
            "y": index * row_h,
            "w": round(max(plot_w * value / top, 1.0), 2),
            "label": label,
            "value": value,
            "text_y": index * row_h + 15,
        }
        for index, (label, value) in enumerate(items)
    ]
    return {
        "width": CHART_WIDTH,
        "height": max(len(items), 1) * row_h + 4,
        "label_w": label_w,
        "bars": bars,
        "unit": unit,
    }


def batch_chart(batches: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Each batch's duration in the order the run committed them; a long run's batches are
    grouped into at most MAX_BATCH_COLUMNS columns showing their mean."""
    size = max(1, math.ceil(len(batches) / MAX_BATCH_COLUMNS))
    items, titles = [], []
    for start in range(0, len(batches), size):
        group = batches[start : start + size]
        mean = sum(float(b["seconds"]) for b in group) / len(group)
        items.append((str(start + 1), mean))  # the axis names the first batch of a column
        titles.append(
            f"batch {start + 1}" if size == 1 else f"batches {start + 1}-{start + len(group)}"
        )
    chart = column_chart(items, unit="s", labels=10)
    for column, title in zip(chart["columns"], titles, strict=True):
        column["title"] = title
    chart["per_column"] = size
    return chart
