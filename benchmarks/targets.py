"""The performance targets (issue 4) checked against one run's figures, and the printed tables."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

RATIO_LIMIT = 1.5  # tool / baseline
GROWTH_SLACK = 1.1  # time(10x rows) / time(x rows) <= 1.1 * 10
RSS_GROWTH_LIMIT = 1.2  # peak RSS at the largest size / at the smallest
RSS_LIMIT_MB = 200.0
CLI_LIMIT_SECONDS = 0.25
DEMO_LIMIT_SECONDS = 30.0
DEMO_TARGET_ROWS = 1_000_000


@dataclass(frozen=True)
class Verdict:
    target: str
    subject: str
    value: float
    limit: float
    passed: bool

    def line(self) -> str:
        mark = "PASS" if self.passed else "FAIL"
        figures = f"{self.value:>9.3f}  (limit {self.limit:.3f})"
        return f"{mark}  {self.target:<34} {self.subject:<34} {figures}"


def _check(target: str, subject: str, value: float, limit: float) -> Verdict:
    return Verdict(target, subject, round(value, 3), round(limit, 3), value <= limit)


def evaluate(results: dict[str, Any]) -> list[Verdict]:
    """Every target the run has figures for; sizes not run are simply not judged."""
    verdicts: list[Verdict] = []
    runs: list[dict[str, Any]] = results["runs"]
    for run in runs:
        for travel, marking in run["marking"].items():
            subject = f"{run['engine']} {run['appointments']:,} travel {travel}"
            verdicts.append(
                _check("tool / baseline <= 1.5", subject, marking["ratio"], RATIO_LIMIT)
            )
    for engine in sorted({run["engine"] for run in runs}):
        verdicts += _growth(engine, [run for run in runs if run["engine"] == engine])
    for run in runs:
        subject = f"{run['engine']} {run['appointments']:,}"
        dry = run["dry_run"]
        limit = 2 * dry["count_seconds"] + 1
        verdicts.append(_check("dry run <= 2 x COUNT + 1 s", subject, dry["seconds"], limit))
    for name, seconds in results["cli"].items():
        verdicts.append(_check(f"setup-tool {name} < 0.25 s", "median", seconds, CLI_LIMIT_SECONDS))
    demo = results.get("demo")
    if demo and demo["appointments"] == DEMO_TARGET_ROWS:
        verdicts.append(
            _check(
                "setup-tool demo (1M rows) < 30 s",
                "1,000,000 rows",
                demo["seconds"],
                DEMO_LIMIT_SECONDS,
            )
        )
    return verdicts


def _growth(engine: str, runs: list[dict[str, Any]]) -> list[Verdict]:
    """Linear time and flat memory, smallest size against largest."""
    if len(runs) < 2:
        return []
    small, large = min(runs, key=_size), max(runs, key=_size)
    factor = _size(large) / _size(small)
    subject = f"{engine} {_size(large):,} / {_size(small):,}"
    verdicts = []
    for travel in large["marking"]:
        if travel in small["marking"]:
            growth = (
                large["marking"][travel]["tool_seconds"] / small["marking"][travel]["tool_seconds"]
            )
            verdicts.append(
                _check(
                    f"time grows <= {GROWTH_SLACK:g} x rows",
                    f"{subject} travel {travel}",
                    growth,
                    GROWTH_SLACK * factor,
                )
            )
    rss_small, rss_large = _peak_rss(small), _peak_rss(large)
    verdicts.append(
        _check("peak RSS grows <= 1.2 x", subject, rss_large / rss_small, RSS_GROWTH_LIMIT)
    )
    for run in (small, large):
        verdicts.append(
            _check("peak RSS < 200 MB", f"{engine} {_size(run):,}", _peak_rss(run), RSS_LIMIT_MB)
        )
    return verdicts


def _size(run: dict[str, Any]) -> int:
    return int(run["appointments"])


def _peak_rss(run: dict[str, Any]) -> float:
    values = [float(m["peak_rss_mb"]) for m in run["marking"].values()]
    numbers = [v for v in values if not math.isnan(v)]
    return max(numbers) if numbers else math.nan


def _verdict(check: dict[str, Any]) -> str:
    if check.get("timed_out"):
        return "timed out"
    return "yes" if check["correct"] else "NO"


def verdicts_json(verdicts: Iterable[Verdict]) -> list[dict[str, Any]]:
    return [asdict(v) for v in verdicts]


# --- tables -----------------------------------------------------------------------------------


def _fmt(value: float, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _repeats(repeat: int | dict[str, int]) -> str:
    """`3`, or per size: `3 (1 at 10,000,000)`."""
    if isinstance(repeat, int):
        return str(repeat)
    counts = sorted(repeat.items(), key=lambda item: int(item[0]))
    first = counts[0][1]
    others = [f"{n} at {int(size):,}" for size, n in counts if n != first]
    return f"{first} ({', '.join(others)})" if others else str(first)


def tables(results: dict[str, Any], verdicts: list[Verdict]) -> str:
    lines = [
        f"setup-tool benchmark: medians of {_repeats(results['settings']['repeat'])}, seconds "
        f"(tool = its marking step, batch size {results['settings']['default_batch_size']}; "
        "wall = the whole `setup-tool upgrade` process)",
        "",
        f"{'engine':<11}{'rows':>12} {'travel':<7}{'baseline':>9}{'tool':>8}{'ratio':>7}"
        f"{'wall':>8}{'RSS MB':>8}{'marked':>10}  correct",
    ]
    for run in results["runs"]:
        for travel, m in run["marking"].items():
            lines.append(
                f"{run['engine']:<11}{run['appointments']:>12,} {travel:<7}"
                f"{_fmt(m['baseline_seconds']):>9}{_fmt(m['tool_seconds']):>8}"
                f"{_fmt(m['ratio']):>7}{_fmt(m['tool_wall_seconds']):>8}"
                f"{_fmt(m['peak_rss_mb'], 0):>8}{m['rows_marked']:>10,}  {_verdict(m)}"
            )
    lines += ["", f"{'engine':<11}{'rows':>12}  {'COUNT':>7}{'dry run':>9}{'limit':>8}  correct"]
    for run in results["runs"]:
        dry = run["dry_run"]
        lines.append(
            f"{run['engine']:<11}{run['appointments']:>12,}  {_fmt(dry['count_seconds'], 3):>7}"
            f"{_fmt(dry['seconds']):>9}{_fmt(2 * dry['count_seconds'] + 1):>8}  {_verdict(dry)}"
        )
    sizes = results["settings"]["batch_sizes"]
    if sizes:
        header = "".join(f"{size:>8}" for size in sizes)
        lines += ["", f"batch size (tool s, travel off) {'':<4}{header}"]
        for run in results["runs"]:
            cells = "".join(
                f"{_fmt(run['batch_sizes'].get(str(size), {}).get('tool_seconds', math.nan)):>8}"
                for size in sizes
            )
            lines.append(f"{run['engine']:<11}{run['appointments']:>12,} {'':<12}{cells}")
    cli = results["cli"]
    lines += ["", "  ".join(f"setup-tool {name}: {seconds:.3f} s" for name, seconds in cli.items())]
    if demo := results.get("demo"):
        lines.append(
            f"setup-tool demo --appointments {demo['appointments']:,}: {demo['seconds']:.1f} s"
        )
    lines += ["", "Targets:"] + [v.line() for v in verdicts]
    return "\n".join(lines)
