"""Timing and memory of one measurement: wall clock, and the peak RSS of a child process."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRun:
    """A finished child process: exit code, wall time and its own peak resident set size.

    `timed_out`: it ran longer than the timeout and was stopped (SIGTERM, then SIGKILL)."""

    exit_code: int
    seconds: float
    peak_rss_mb: float
    timed_out: bool = False


# Started by a small interpreter, not by the benchmark itself: Linux charges a child's peak RSS
# with the RSS of the process it was forked from (the exec'd image inherits the old high-water
# mark), so a child of the benchmark, which holds hundreds of MB, would report the benchmark's.
# A timeout (seconds, 0 for none) stops the child: SIGTERM, and SIGKILL 10 seconds later.
_LAUNCHER = """
import json, os, shutil, signal, sys, time
program = shutil.which(sys.argv[3]) or sys.argv[3]
timeout = float(sys.argv[2])
started = time.perf_counter()
pid = os.posix_spawn(program, sys.argv[3:], os.environ)
timed_out = False
def stop(_signum, _frame):
    global timed_out
    os.kill(pid, signal.SIGKILL if timed_out else signal.SIGTERM)
    timed_out = True
    signal.setitimer(signal.ITIMER_REAL, 10)
signal.signal(signal.SIGALRM, stop)
if timeout > 0:
    signal.setitimer(signal.ITIMER_REAL, timeout)
while True:
    try:
        _pid, status, usage = os.wait4(pid, 0)
        break
    except InterruptedError:
        continue
signal.setitimer(signal.ITIMER_REAL, 0)
seconds = time.perf_counter() - started
rss = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
with open(sys.argv[1], "w") as out:
    json.dump([os.waitstatus_to_exitcode(status), seconds, rss, timed_out], out)
"""


def run_process(
    command: Sequence[str],
    log: Path,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> ProcessRun:
    """Run `command`, stdout and stderr into `log`: its exit code, wall time and own peak RSS;
    stopped after `timeout` seconds (then `timed_out` is set)."""
    figures = log.with_name(f"{log.name}.figures.json")
    with log.open("ab") as out:
        launcher = subprocess.run(
            [sys.executable, "-I", "-c", _LAUNCHER, str(figures), str(timeout or 0), *command],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            check=False,
        )
    if launcher.returncode != 0 or not figures.exists():
        raise RuntimeError(f"could not run {command[0]} (see {log})")
    exit_code, seconds, rss_mb, timed_out = json.loads(figures.read_text())
    figures.unlink()
    return ProcessRun(int(exit_code), float(seconds), float(rss_mb), bool(timed_out))


def setup_tool_command(*args: str) -> list[str]:
    """The installed `setup-tool` script beside this interpreter, else `python -m setup_tool`."""
    script = Path(sys.executable).with_name("setup-tool")
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-m", "setup_tool", *args]


def median(values: Sequence[float]) -> float:
    """The median; NaN when there are none or one is NaN (a run that did not finish)."""
    if not values or any(math.isnan(v) for v in values):
        return math.nan
    return statistics.median(values)


def peak(values: Sequence[float]) -> float:
    """The largest of the values that are numbers (NaN: none is)."""
    numbers = [v for v in values if not math.isnan(v)]
    return max(numbers) if numbers else math.nan


class Stopwatch:
    """`with Stopwatch() as watch: ...` then `watch.seconds`."""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds = time.perf_counter() - self._started
