"""pytest plugin for scripts/mutation.py: which test calls which function of the mutated modules.

Loaded with `-p mutation_coverage` in the mutation run's copy of the tree. For every test it
records the code objects (file, first line) of the modules named in $MUTATION_MODULES that ran
during the test's setup, call and teardown, and how long the test took. scripts/mutation.py then
runs, for each mutant, only the tests that reach the mutated function, fastest first: the same
idea as mutmut's per-function test selection, without which a mutant would cost a whole run of
its test files. Profiling only sees this process; code that runs only in a subprocess of a test
is not attributed to it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

_MODULES = os.environ.get("MUTATION_MODULES", "").split(os.pathsep)
_TARGETS = {str(Path(p).resolve()) for p in _MODULES if p}
_OUTPUT = os.environ.get("MUTATION_COVERAGE_OUTPUT", "")

_current: set[tuple[str, int]] = set()
_tests: dict[str, dict[str, Any]] = {}


def _profile(frame: FrameType, event: str, _arg: object) -> None:
    if event == "call":
        code = frame.f_code
        if code.co_filename in _TARGETS:
            _current.add((code.co_filename, code.co_firstlineno))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: object) -> Iterator[None]:
    _current.clear()
    started = time.perf_counter()
    sys.setprofile(_profile)
    threading.setprofile(_profile)
    try:
        yield
    finally:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]
        entry = _tests.setdefault(item.nodeid, {"passed": True})
        entry["seconds"] = round(time.perf_counter() - started, 3)
        entry["calls"] = sorted(f"{name}:{line}" for name, line in _current)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _tests.setdefault(report.nodeid, {})["passed"] = False


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _OUTPUT:
        Path(_OUTPUT).write_text(json.dumps(_tests, indent=1))
