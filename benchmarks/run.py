"""Benchmark setup-tool's marking against one hand-written UPDATE, on SQLite and PostgreSQL.

    /work/venv/bin/python -m benchmarks.run --sizes 1000000,10000000 \\
        --engines sqlite,postgresql --repeat 3,1 --json benchmarks/results/latest.json

For each size it builds the demo with `setup-tool demo` (scenario new-customer: about 4 % of the
rows in invite meetings, those carrying a footprint of SuperOffice's invite system; that build,
at 1,000,000 rows, is the demo timing), adds the SuperOffice index the selection seeks on if the
demo lacks it, loads the same rows and indexes into a throwaway PostgreSQL server, and measures
in the same run, Travel off and on:

- baseline: the job by hand, unbatched, one transaction (`benchmarks/baseline.py`, SPEC step 4
  as plain SQL): one INSERT ... SELECT of previous values (one scan for the footprints, seeks
  for the rest), one UPDATE of the recorded rows, plus the travel-log INSERT ... SELECT;
- tool: `setup-tool upgrade --unattended` in a child process with its default batch size; its
  marking step's own duration (from its JSON report) against the baseline, the whole process's
  wall time, and the child's peak RSS (wait4);
- the dry-run report (`upgrade --dry-run`, whole process) against the bare COUNT of the rows to
  mark, written by hand;
- the tool at batch sizes 500 ... 10,000 (Travel off);
- `setup-tool --help` and `--version` (whole process).

Every measurement starts from a fresh copy of the template (file copy on SQLite, CREATE DATABASE
... TEMPLATE on PostgreSQL). Correctness is checked in the same run: the rows the tool recorded
and marked, the rows at NotInSync afterwards and the travel-log rows equal the baseline's.
Medians of --repeat runs (one number, or one per size: `--repeat 3,1`); the targets of issue 4
are printed with PASS/FAIL. Exit code 1 when a correctness check fails (targets alone do not
change the exit code).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.baseline import Outcome, count_by_hand, mark_by_hand, outcome, read_shape
from benchmarks.measure import (
    ProcessRun,
    Stopwatch,
    median,
    peak,
    run_process,
    setup_tool_command,
)
from benchmarks.targets import evaluate, tables, verdicts_json
from setup_tool.bookkeeping import install_bookkeeping
from setup_tool.clock import utc_now
from setup_tool.steps import UpgradeSettings

if TYPE_CHECKING:
    from benchmarks.databases import BenchEngine, Target

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
TOOL_OK = (0, 4)  # done; done, action required (the demo has overriding preference rows)


def _ints(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def _names(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [part.strip() for part in text.split(",") if part.strip()]
        if bad := [n for n in names if n not in allowed]:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {list(allowed)}")
        return names

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        type=_ints,
        default=[1_000_000, 10_000_000],
        help="appointment rows, comma-separated (default 1000000,10000000)",
    )
    parser.add_argument(
        "--engines",
        type=_names(["sqlite", "postgresql"]),
        default=["sqlite", "postgresql"],
        help="default sqlite,postgresql",
    )
    parser.add_argument(
        "--travel",
        type=_names(["off", "on"]),
        default=["off", "on"],
        help="Travel settings to measure (default off,on)",
    )
    parser.add_argument(
        "--repeat",
        type=_ints,
        default=[3],
        help="runs per figure (median); one number, or one per size (e.g. 3,1 with "
        "--sizes 1000000,10000000)",
    )
    parser.add_argument(
        "--batch-sizes",
        type=_ints,
        default=[500, 1000, 2000, 4000, 10_000],
        help="batch sizes to compare, Travel off ('' for none)",
    )
    parser.add_argument(
        "--demo-appointments",
        type=int,
        default=1_000_000,
        help="size of the timed `setup-tool demo` (0: skip unless a size)",
    )
    parser.add_argument("--cli-repeat", type=int, default=7, help="runs of --help/--version")
    parser.add_argument(
        "--timeout",
        type=float,
        default=900.0,
        help="seconds one `setup-tool upgrade` may take before it is stopped and recorded as "
        "timed out; the engine's other tool runs at that size are then skipped (default 900)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where the figures go")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    if len(args.repeat) == 1:
        args.repeat = args.repeat * len(args.sizes)
    if len(args.repeat) != len(args.sizes) or min(args.repeat, default=1) < 1:
        parser.error("--repeat takes one number, or one per size (at least 1 each)")
    args.repeats = dict(zip(args.sizes, args.repeat, strict=True))
    return args


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- one measurement --------------------------------------------------------------------------


class Bench:
    """The measurements of one run; `workdir` holds demo files, reports and logs."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.log = workdir / "tool-output.log"
        self.default_batch = UpgradeSettings().batch_size
        self.added_indexes: set[str] = set()  # documented indexes the demo did not make
        self.timed_out: set[tuple[str, int]] = set()  # (engine, size) where the tool hung
        self._reports = 0

    # -- building

    def build_demo(self, size: int) -> tuple[Path, float]:
        """The demo file and its build time; the documented indexes it lacks are added after
        the clock (benchmarks.databases.add_documented_indexes)."""
        from benchmarks.databases import add_documented_indexes

        path = self.workdir / f"demo-{size}.db"
        command = setup_tool_command("demo", str(path), "--appointments", str(size), "--overwrite")
        run = run_process(command, self.log)
        if run.exit_code != 0:
            raise RuntimeError(f"setup-tool demo failed ({run.exit_code}); see {self.log}")
        if added := add_documented_indexes(path):
            say(f"[{size:,}] the demo lacks SuperOffice's documented {', '.join(added)}: added")
            self.added_indexes.update(added)
        return path, run.seconds

    # -- the tool

    def tool(
        self, engine: BenchEngine, size: int, travel: bool, batch_size: int | None
    ) -> dict[str, Any]:
        if (engine.name, size) in self.timed_out:
            return _timed_out(None)
        target = engine.fresh_copy(size)
        try:
            if travel:
                target.switch_travel_on()
            report = self._report_path()
            args = [
                "upgrade",
                "--unattended",
                *target.tool_args(),
                "--report",
                str(report),
                "--format",
                "json",
                "--log-file",
                str(self.workdir / "tool.log"),
                "--quiet",
            ]
            if batch_size is not None:
                args += ["--batch-size", str(batch_size)]
            run = run_process(setup_tool_command(*args), self.log, timeout=self.args.timeout)
            if run.timed_out:
                self._hung(engine, size, "upgrade")
                return _timed_out(run)
            if run.exit_code not in TOOL_OK:
                raise RuntimeError(f"setup-tool upgrade exited {run.exit_code}; see {self.log}")
            step = _step(json.loads(report.read_text()), "mark_invites")
            with target.engine() as db, db.connect() as conn:
                result = outcome(conn, target.prefix)
        finally:
            engine.discard(target)
        return {
            "seconds": float(step["duration_seconds"]),
            "wall_seconds": run.seconds,
            "peak_rss_mb": run.peak_rss_mb,
            "rows": int(step["rows"]),
            "outcome": result,
        }

    def dry_run(self, engine: BenchEngine, size: int, target: Target) -> tuple[float, int | None]:
        """Whole-process seconds and the rows it plans to mark (None: it timed out)."""
        if (engine.name, size) in self.timed_out:
            return math.nan, None
        report = self._report_path()
        args = [
            "upgrade",
            "--dry-run",
            *target.tool_args(),
            "--report",
            str(report),
            "--format",
            "json",
            "--quiet",
        ]
        run = run_process(setup_tool_command(*args), self.log, timeout=self.args.timeout)
        if run.timed_out:
            self._hung(engine, size, "upgrade --dry-run")
            return math.nan, None
        if run.exit_code != 0:
            raise RuntimeError(f"setup-tool upgrade --dry-run exited {run.exit_code}")
        return run.seconds, int(_step(json.loads(report.read_text()), "mark_invites")["rows"])

    def _hung(self, engine: BenchEngine, size: int, command: str) -> None:
        self.timed_out.add((engine.name, size))
        say(
            f"[{engine.name} {size:,}] setup-tool {command} did not finish within "
            f"{self.args.timeout:g} s: stopped; its other runs at this size are skipped"
        )

    def _report_path(self) -> Path:
        self._reports += 1
        return self.workdir / f"report-{self._reports}.json"

    # -- by hand

    def baseline(self, engine: BenchEngine, size: int, travel: bool) -> dict[str, Any]:
        target = engine.fresh_copy(size)
        try:
            if travel:
                target.switch_travel_on()
            with target.engine() as db:
                with db.begin() as conn:
                    install_bookkeeping(conn, target.prefix)  # its table for previous values
                now = utc_now()
                with db.connect() as conn:  # the tool's detection reads the same rows first
                    shape = read_shape(conn, target.prefix, now)
                    count_by_hand(conn, shape)
                with Stopwatch() as watch, db.begin() as conn:
                    rows = mark_by_hand(conn, shape, now, travel)
                with db.connect() as conn:
                    result = outcome(conn, target.prefix)
        finally:
            engine.discard(target)
        return {"seconds": watch.seconds, "rows": rows, "outcome": result}

    def count(self, target: Target) -> tuple[float, int]:
        with target.engine() as db, db.connect() as conn:
            # Connected, and invites-since and the window read, before the clock starts.
            shape = read_shape(conn, target.prefix, utc_now())
            with Stopwatch() as watch:
                rows = count_by_hand(conn, shape)
        return watch.seconds, rows


def _timed_out(run: ProcessRun | None) -> dict[str, Any]:
    """A tool run that was stopped at the timeout (run) or skipped after one (None)."""
    return {
        "seconds": math.nan,
        "wall_seconds": run.seconds if run else math.nan,
        "peak_rss_mb": run.peak_rss_mb if run else math.nan,
        "rows": None,
        "outcome": None,
        "timed_out": True,
    }


def _step(report: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(step for step in report["steps"] if step["id"] == step_id)


# --- one engine at one size -------------------------------------------------------------------


def measure(bench: Bench, engine: BenchEngine, size: int) -> dict[str, Any]:
    repeat, label = bench.args.repeats[size], f"[{engine.name} {size:,}]"
    record: dict[str, Any] = {"engine": engine.name, "appointments": size}
    record["dry_run"] = _dry_run(bench, engine, size, label)
    record["marking"] = {}
    default_runs: list[dict[str, Any]] = []
    for travel in bench.args.travel:
        on = travel == "on"
        baselines, tools = [], []
        for i in range(repeat):
            baselines.append(bench.baseline(engine, size, on))
            tools.append(bench.tool(engine, size, on, None))
            tool = tools[-1]
            figures = (
                "timed out"
                if tool.get("timed_out")
                else f"{tool['seconds']:.2f} s (wall {tool['wall_seconds']:.2f} s, "
                f"{tool['peak_rss_mb']:.0f} MB)"
            )
            say(
                f"{label} travel {travel} {i + 1}/{repeat}: baseline "
                f"{baselines[-1]['seconds']:.2f} s, tool {figures}"
            )
        record["marking"][travel] = _marking(baselines, tools)
        if not on:
            default_runs = tools
    record["batch_sizes"] = {}
    for batch_size in bench.args.batch_sizes:
        if batch_size == bench.default_batch and default_runs:
            runs = default_runs
        else:
            runs = [bench.tool(engine, size, False, batch_size) for _ in range(repeat)]
        record["batch_sizes"][str(batch_size)] = {
            "tool_seconds": median([r["seconds"] for r in runs]),
            "runs": [r["seconds"] for r in runs],
            "timed_out": any(r.get("timed_out") for r in runs),
            "correct": "off" not in record["marking"]
            or all(r["outcome"] == Outcome(**record["marking"]["off"]["outcome"]) for r in runs),
        }
        seconds = record["batch_sizes"][str(batch_size)]["tool_seconds"]
        say(f"{label} batch size {batch_size}: {seconds:.2f} s")
    expected = _first_baseline_outcome(record)
    checks = [record["dry_run"], *record["marking"].values(), *record["batch_sizes"].values()]
    record["correct"] = all(check["correct"] for check in checks)
    record["rows_marked"] = expected.marked if expected else None
    record["marked_ids"] = expected.marked_ids if expected else None
    return record


def _dry_run(bench: Bench, engine: BenchEngine, size: int, label: str) -> dict[str, Any]:
    target = engine.fresh_copy(size)
    try:
        counts, dry_runs, agree = [], [], True
        bench.count(target)  # untimed: the first read of a fresh copy is a cold read
        for _ in range(bench.args.repeats[size]):
            seconds, rows = bench.count(target)
            dry_seconds, planned = bench.dry_run(engine, size, target)
            counts.append(seconds)
            dry_runs.append(dry_seconds)
            agree = agree and planned == rows
        timed_out = (engine.name, size) in bench.timed_out
        say(
            f"{label} COUNT {median(counts):.3f} s ({rows:,} rows), "
            f"dry run {'timed out' if timed_out else f'{median(dry_runs):.2f} s'}"
            f"{'' if agree or timed_out else ' - DISAGREES'}"
        )
    finally:
        engine.discard(target)
    return {
        "count_seconds": median(counts),
        "seconds": median(dry_runs),
        "rows": rows,
        "correct": agree,
        "timed_out": timed_out,
        "count_runs": counts,
        "runs": dry_runs,
    }


def _marking(baselines: list[dict[str, Any]], tools: list[dict[str, Any]]) -> dict[str, Any]:
    expected: Outcome = baselines[0]["outcome"]
    outcomes = [r["outcome"] for r in baselines + tools]
    base, tool = median([r["seconds"] for r in baselines]), median([r["seconds"] for r in tools])
    timed_out = any(r.get("timed_out") for r in tools)  # then the tool's medians are NaN
    return {
        "baseline_seconds": base,
        "tool_seconds": tool,
        "ratio": tool / base if base else float("inf"),
        "tool_wall_seconds": median([r["wall_seconds"] for r in tools]),
        "peak_rss_mb": peak([r["peak_rss_mb"] for r in tools]),
        "rows_marked": expected.marked,
        "timed_out": timed_out,
        "correct": all(o == expected for o in outcomes)
        and all(r["rows"] == expected.marked for r in baselines + tools),
        "outcome": expected.as_dict(),
        "baseline_runs": [r["seconds"] for r in baselines],
        "tool_runs": [r["seconds"] for r in tools],
        "tool_wall_runs": [r["wall_seconds"] for r in tools],
        "peak_rss_runs": [r["peak_rss_mb"] for r in tools],
        "mismatches": [o.as_dict() for o in outcomes if o is not None and o != expected],
    }


def _first_baseline_outcome(record: dict[str, Any]) -> Outcome | None:
    for marking in record["marking"].values():
        return Outcome(**marking["outcome"])
    return None


# --- the whole run ----------------------------------------------------------------------------


def measure_cli(repeat: int) -> dict[str, float]:
    figures: dict[str, list[float]] = {"--help": [], "--version": []}
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "cli.log"
        for _ in range(repeat):
            for option, seconds in figures.items():
                run = run_process(setup_tool_command(option), log)
                if run.exit_code != 0:
                    raise RuntimeError(f"setup-tool {option} exited {run.exit_code}")
                seconds.append(run.seconds)
    return {option: median(seconds) for option, seconds in figures.items()}


def open_engines(names: list[str], workdir: Path) -> list[BenchEngine]:
    from benchmarks.databases import PostgresEngine, SqliteEngine

    engines: list[BenchEngine] = []
    try:
        for name in names:
            engines.append(SqliteEngine(workdir) if name == "sqlite" else PostgresEngine())
    except BaseException:
        for engine in engines:
            engine.close()
        raise
    return engines


def machine(engines: list[BenchEngine]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "ram_mb": _ram_mb(),
        "sqlite": sqlite3.sqlite_version,
    }
    info.update((engine.name, engine.version) for engine in engines)
    return info


def _ram_mb() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError, AttributeError):
        return None


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="setup-tool-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, workdir)
    engines = open_engines(args.engines, workdir)
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.run", *args.argv]),
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine(engines),
        "settings": {
            "sizes": args.sizes,
            "engines": args.engines,
            "travel": args.travel,
            "repeat": {str(size): n for size, n in args.repeats.items()},
            "batch_sizes": args.batch_sizes,
            "default_batch_size": bench.default_batch,
        },
        "runs": [],
    }
    if "postgresql" in args.engines:
        from benchmarks.databases import PG_SETTINGS

        results["settings"]["postgresql_server"] = PG_SETTINGS
    try:
        results["cli"] = measure_cli(args.cli_repeat)
        say(
            f"setup-tool --help {results['cli']['--help']:.3f} s, "
            f"--version {results['cli']['--version']:.3f} s"
        )
        for size in args.sizes:
            template, seconds = bench.build_demo(size)
            say(f"[{size:,}] setup-tool demo: {seconds:.1f} s")
            if size == args.demo_appointments:
                results["demo"] = {"appointments": size, "seconds": seconds}
            for engine in engines:
                with Stopwatch() as load:
                    engine.load(template, size)
                record = measure(bench, engine, size)
                record["load_seconds"] = load.seconds
                results["runs"].append(record)
                _save(args.json, results)  # what is measured so far survives a later failure
                engine.drop_template(size)
            template.unlink()
        if "demo" not in results and args.demo_appointments > 0:
            template, seconds = bench.build_demo(args.demo_appointments)
            template.unlink()
            results["demo"] = {"appointments": args.demo_appointments, "seconds": seconds}
    finally:
        for engine in engines:
            engine.close()
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    results["settings"]["indexes_added_to_demo"] = sorted(bench.added_indexes)
    results["same_rows_on_every_engine"] = _engines_agree(results["runs"])
    results["correct"] = (
        all(r["correct"] for r in results["runs"]) and results["same_rows_on_every_engine"]
    )
    return results


def _save(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def _engines_agree(runs: list[dict[str, Any]]) -> bool:
    by_size: dict[int, set[str | None]] = {}
    for record in runs:
        by_size.setdefault(record["appointments"], set()).add(record["marked_ids"])
    return all(len(ids) == 1 for ids in by_size.values())


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    results = run(args)
    verdicts = evaluate(results)
    results["targets"] = verdicts_json(verdicts)
    print(tables(results, verdicts))
    print(
        f"\nCorrect (tool = baseline, dry run = COUNT, same rows on every engine): "
        f"{'yes' if results['correct'] else 'NO'}"
    )
    _save(args.json, results)
    print(f"Figures: {args.json}")
    return 0 if results["correct"] else 1


if __name__ == "__main__":
    sys.exit(main())
