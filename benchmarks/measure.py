"""Timing and memory of one measurement: wall clock, and the peak RSS of a child process."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessRun:
    """A finished child process: exit code, wall time and its own peak resident set size."""

    exit_code: int
    seconds: float
    peak_rss_mb: float


def run_process(command: Sequence[str], log: Path, env: dict[str, str] | None = None) -> ProcessRun:
    """Run `command` with stdout and stderr into `log`; wait4 gives the child's own max RSS."""
    with log.open("ab") as out:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command), stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
        )
        _pid, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen.wait
    kilobytes = usage.ru_maxrss if sys.platform != "darwin" else usage.ru_maxrss / 1024
    return ProcessRun(process.returncode, seconds, kilobytes / 1024)


def setup_tool_command(*args: str) -> list[str]:
    """The installed `setup-tool` script beside this interpreter, else `python -m setup_tool`."""
    script = Path(sys.executable).with_name("setup-tool")
    if script.is_file():
        return [str(script), *args]
    return [sys.executable, "-m", "setup_tool", *args]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Stopwatch:
    """`with Stopwatch() as watch: ...` then `watch.seconds`."""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.seconds = time.perf_counter() - self._started
