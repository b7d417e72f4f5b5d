#!/usr/bin/env python3
"""Mutation run over setup-tool's core: does a test fail when the code is wrong?

    .venv/bin/pip install -e '.[mutation]'      # cosmic-ray, once
    make mutation          # or: .venv/bin/python scripts/mutation.py [MODULE ...]

It never touches the working tree: the tree (with uncommitted edits) is copied to a temporary
folder and mutated there, one mutant at a time, by cosmic-ray's local (one worker) distributor.

1. Coverage: the core's test files run once in the copy with scripts/mutation_coverage.py, which
   records which test reaches which function of the mutated modules (and how long each took).
   Tests that fail without any mutant are left out of every selection and listed.
2. Mutants: cosmic-ray's operators, narrowed to the ones that model real mistakes (PIT's default
   set: boundary and negated comparisons, + and -, and/or, not, True/False, numbers, loops,
   exception handlers, decorators), never inside type annotations (`from __future__ import
   annotations` leaves them unevaluated: such a mutant is equivalent by construction).
3. Each mutant runs only the tests that reach its function, fastest first, stopping at the first
   failure (`pytest -x`, with pytest-timeout so a mutant that loops ends as killed).
4. Named mutants: the deliberate bugs of issue 17, each a text replacement, must be killed too.

Prints the kill rate per module and every survivor with its diff; docs/TESTING.md explains the
survivors that are equivalent.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# Module under mutation -> the definitions mutated (None: all of it). database.py is mutated
# only where it guards the dry run: its other functions are connection plumbing.
MODULES: dict[str, frozenset[str] | None] = {
    "setup_tool/sequence.py": None,
    "setup_tool/database.py": frozenset(
        {"is_read_statement", "guard_against_writes", "_refuse_writes", "open_database"}
    ),
    "setup_tool/bookkeeping.py": None,
    "setup_tool/locking.py": None,
    "setup_tool/undo.py": None,
    "setup_tool/steps/__init__.py": None,
    "setup_tool/steps/gate.py": None,
    "setup_tool/steps/synchronizer_check.py": None,
    "setup_tool/steps/preference.py": None,
    "setup_tool/steps/mark_invites.py": None,
}

# The tests a mutant may be judged by (those that reach its function are chosen from these).
TEST_FILES = [
    "tests/test_sequence_race.py",
    "tests/test_window_edges.py",
    "tests/test_undo_edges.py",
    "tests/test_steps.py",
    "tests/test_invite_selection.py",
    "tests/test_resume.py",
    "tests/test_undo.py",
    "tests/test_undo_interrupted.py",
    "tests/test_locking.py",
    "tests/test_lock_loss.py",
    "tests/test_lock_waits.py",
    "tests/test_bookkeeping_model.py",
    "tests/test_preconditions.py",
    "tests/test_dry_run.py",
    "tests/test_end_to_end.py",
    "tests/test_mssql.py",
]

# cosmic-ray operators kept (the rest replace one operator by an unrelated one: `+` by `>>`).
KEPT_OPERATORS = {
    *(
        f"core/ReplaceComparisonOperator_{pair}"
        for pair in [
            "Lt_LtE",
            "LtE_Lt",
            "Gt_GtE",
            "GtE_Gt",
            "Eq_NotEq",
            "NotEq_Eq",
            "Lt_GtE",
            "GtE_Lt",
            "Gt_LtE",
            "LtE_Gt",
            "Is_IsNot",
            "IsNot_Is",
        ]
    ),
    *(
        f"core/ReplaceBinaryOperator_{pair}"
        for pair in [
            "Add_Sub",
            "Sub_Add",
            "Mul_Div",
            "Div_Mul",
            "FloorDiv_Mul",
            "Mod_Mul",
            "Pow_Mul",
        ]
    ),
    *(
        f"core/ReplaceUnaryOperator_{pair}"
        for pair in ["USub_UAdd", "Delete_Not", "Delete_USub", "Delete_Invert"]
    ),
    "core/AddNot",
    "core/ReplaceAndWithOr",
    "core/ReplaceOrWithAnd",
    "core/ReplaceTrueWithFalse",
    "core/ReplaceFalseWithTrue",
    "core/NumberReplacer",
    "core/ZeroIterationForLoop",
    "core/ReplaceBreakWithContinue",
    "core/ReplaceContinueWithBreak",
    "core/ExceptionReplacer",
    "core/RemoveDecorator",
}

PER_TEST_TIMEOUT = 120  # seconds; the slowest real test of these files takes about 20
PER_MUTANT_TIMEOUT = 900


@dataclass(frozen=True)
class NamedMutant:
    """A deliberate bug (issue 17): each `old` replaced by its `new` in `path` must fail a test."""

    name: str
    path: str
    changes: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]


NAMED_MUTANTS = [
    NamedMutant(
        "dry run opens the database read-write, write guard off",
        "setup_tool/cli.py",
        (
            (
                "open_database_for(settings, read_only=dry_run)",
                "open_database_for(settings, read_only=False)",
            ),
        ),
        ("tests/test_dry_run.py", "tests/test_end_to_end.py"),
    ),
    NamedMutant(
        "reserve_ids reads next_id before its UPDATE",
        "setup_tool/sequence.py",
        (
            (
                "    result = conn.execute(reserve_ids_statement(tables, table_name, count))\n",
                "    first = conn.execute(select(tables.sequence.c.next_id).where("
                "func.lower(tables.sequence.c.TableName) == table_name.lower())).scalar_one()\n"
                "    result = conn.execute(reserve_ids_statement(tables, table_name, count))\n",
            ),
            ("    return int(next_id) - count", "    return int(first)"),
        ),
        ("tests/test_sequence_race.py",),
    ),
    NamedMutant(
        "the batch guard changed != recorded removed",
        "setup_tool/steps/mark_invites.py",
        (("if changed != recorded:", "if False:"),),
        ("tests/test_steps.py", "tests/test_resume.py"),
    ),
    NamedMutant(
        "the window start >= turned into >",
        "setup_tool/invites.py",
        (("and_(registered >= start, condition)", "and_(registered > start, condition)"),),
        ("tests/test_window_edges.py",),
    ),
    NamedMutant(
        "the window end < turned into <=",
        "setup_tool/invites.py",
        (("condition = registered < until", "condition = registered <= until"),),
        ("tests/test_window_edges.py",),
    ),
    NamedMutant(
        "e-mailed invitations count only after invites-since, not from it",
        "setup_tool/invites.py",
        (
            (
                "a.c.registered >= selection.invites_since",
                "a.c.registered > selection.invites_since",
            ),
        ),
        ("tests/test_window_edges.py",),
    ),
    NamedMutant(
        "undo no longer checks the row still carries the tool's cautionWarning",
        "setup_tool/undo.py",
        (
            (
                "        a.c.cautionWarning == NOT_IN_SYNC,\n"
                "        _same(a.c.updatedCount, pv.c.new_updated_count),\n"
                "        or_(pv.c.new_updated.is_(None), _same(a.c.updated, pv.c.new_updated)),\n"
                "    )\n"
                "    to_restore = 0",
                "        _same(a.c.updatedCount, pv.c.new_updated_count),\n"
                "        or_(pv.c.new_updated.is_(None), _same(a.c.updated, pv.c.new_updated)),\n"
                "    )\n"
                "    to_restore = 0",
            ),
        ),
        ("tests/test_undo_edges.py",),
    ),
    NamedMutant(
        "the next-batch boundary > turned into >= (an endless loop)",
        "setup_tool/steps/mark_invites.py",
        (
            (
                'c.c.appointment_id > (bindparam("lo") if lo is None else lo)',
                'c.c.appointment_id >= (bindparam("lo") if lo is None else lo)',
            ),
        ),
        ("tests/test_steps.py",),
    ),
    NamedMutant(
        "the write guard's write words gutted",
        "setup_tool/database.py",
        (("_WRITE_WORDS = re.compile(", '_WRITE_WORDS = re.compile(r"(?!x)x") or re.compile('),),
        ("tests/test_dry_run.py",),
    ),
    NamedMutant(
        "the busy message never names the lock holder",
        "setup_tool/locking.py",
        (("holder = describe_holder()", "holder = None"),),
        ("tests/test_end_to_end.py",),
    ),
    NamedMutant(
        "the text report loses its Rows line",
        "templates/report.txt.j2",
        (("   Rows: {{ step.rows }}    Sample ids:", "   Sample ids:"),),
        ("tests/test_report.py",),
    ),
    NamedMutant(
        "the SQLite run lock locks nothing",
        "setup_tool/locking.py",
        (("    if _os_lock(fd):\n", "    if True:\n"),),
        ("tests/test_locking.py",),
    ),
    NamedMutant(
        "the marking predicate also marks external participants' rows",
        "setup_tool/invites.py",
        (
            (
                "    return row.c.associate_id != 0\n",
                "    return literal(True)\n",
            ),
        ),
        ("tests/test_cli.py",),
    ),
]


# --- the copy -------------------------------------------------------------------------------------


def copy_tree(target: Path) -> None:
    ignore = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", ".hypothesis", ".mypy_cache", ".ruff_cache", "*.db"
    )
    shutil.copytree(REPO, target, ignore=ignore, dirs_exist_ok=True)
    shutil.copytree(target / "setup_tool", target / ".mutation" / "pristine" / "setup_tool")


def test_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The copy, not the editable install of the working tree, is what the tests import.
    env["PYTHONPATH"] = os.pathsep.join([str(copy), str(copy / "tests"), str(copy / "scripts")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def pytest_command(copy: Path, tests: Iterable[str], *extra: str) -> list[str]:
    return [
        PYTHON,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        f"--timeout={PER_TEST_TIMEOUT}",
        f"--rootdir={copy}",
        *extra,
        *tests,
    ]


# --- 1. which test reaches which function ---------------------------------------------------------


def record_coverage(
    copy: Path, modules: list[str], test_files: list[str]
) -> dict[str, dict[str, object]]:
    output = copy / ".mutation" / "coverage.json"
    env = test_env(copy)
    env["MUTATION_MODULES"] = os.pathsep.join(str(copy / m) for m in modules)
    env["MUTATION_COVERAGE_OUTPUT"] = str(output)
    files = [f for f in test_files if (copy / f).exists()]
    print(f"coverage run: {len(files)} test files", flush=True)
    started = time.monotonic()
    subprocess.run(
        pytest_command(copy, files, "-p", "mutation_coverage"),
        cwd=copy,
        env=env,
        stdout=subprocess.DEVNULL,
        check=False,
    )
    print(f"coverage run took {time.monotonic() - started:.0f} s", flush=True)
    tests: dict[str, dict[str, object]] = json.loads(output.read_text())
    return tests


def function_key(source: str, line: int) -> int | None:
    """co_firstlineno of the innermost function or lambda containing `line` (None: module level)."""
    best: tuple[int, int] | None = None
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            end = node.end_lineno or node.lineno
            if node.lineno <= line <= end:
                decorators = getattr(node, "decorator_list", [])
                first = min([node.lineno, *(d.lineno for d in decorators)])
                span = end - first
                if best is None or span < best[0]:
                    best = (span, first)
    return None if best is None else best[1]


def tests_reaching(copy: Path, module: str, line: int) -> list[str]:
    tests = json.loads((copy / ".mutation" / "coverage.json").read_text())
    path = str(copy / module)
    key = function_key((copy / ".mutation" / "pristine" / module).read_text(), line)
    wanted = f"{path}:{key}" if key is not None else None
    chosen = []
    for nodeid, entry in tests.items():
        if not entry.get("passed", False):
            continue
        calls = entry.get("calls", [])
        reaches = wanted in calls if wanted else any(c.rsplit(":", 1)[0] == path for c in calls)
        if reaches:
            chosen.append((entry.get("seconds", 0.0), nodeid))
    return [nodeid for _, nodeid in sorted(chosen)]


def first_changed_line(pristine: str, mutated: str) -> int:
    matcher = difflib.SequenceMatcher(a=pristine.splitlines(), b=mutated.splitlines())
    for tag, i1, _i2, _j1, _j2 in matcher.get_opcodes():
        if tag != "equal":
            return i1 + 1
    return 0


def select_and_run(copy: Path, module: str) -> int:
    """cosmic-ray's test command: run the tests that reach the mutated function, fastest first."""
    pristine = (copy / ".mutation" / "pristine" / module).read_text()
    line = first_changed_line(pristine, (copy / module).read_text())
    tests = tests_reaching(copy, module, line) if line else []
    if not tests:
        print(f"no test reaches {module}:{line}")
        return 0  # survived: nothing would notice
    command = pytest_command(copy, tests, "-x", "-p", "no:randomly")
    return subprocess.run(command, cwd=copy, env=test_env(copy), check=False).returncode


# --- 2. and 3. cosmic-ray, one module at a time ---------------------------------------------------


def annotation_lines(source: str) -> set[tuple[int, int]]:
    """(line, column) of every position inside a type annotation."""
    spans: list[ast.AST] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.arg) and node.annotation is not None:
            spans.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns:
            spans.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            spans.append(node.annotation)
    inside = set()
    for span in spans:
        for line in range(span.lineno, (span.end_lineno or span.lineno) + 1):
            first = span.col_offset if line == span.lineno else 0
            last = span.end_col_offset if line == span.end_lineno else 10_000
            inside.update((line, col) for col in range(first, (last or 0) + 1))
    return inside


def write_config(copy: Path, module: str) -> Path:
    name = module.replace("/", "_").removesuffix(".py")
    config = copy / ".mutation" / f"{name}.toml"
    command = f"{shlex.quote(PYTHON)} {shlex.quote(str(copy / 'scripts' / 'mutation.py'))} "
    command += f"select-tests --copy {shlex.quote(str(copy))} --module {module}"
    config.write_text(
        "[cosmic-ray]\n"
        f'module-path = "{module}"\n'
        f"timeout = {PER_MUTANT_TIMEOUT}.0\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(command)}\n"
        "[cosmic-ray.distributor]\n"
        'name = "local"\n'
    )
    return config


def skip_unwanted(session: Path, copy: Path, module: str) -> None:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import WorkerOutcome, WorkResult

    annotations = annotation_lines((copy / module).read_text())
    definitions = MODULES[module]
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            mutation = item.mutations[0]
            why = None
            if mutation.operator_name not in KEPT_OPERATORS:
                why = "operator not in the kept set"
            elif (mutation.start_pos[0], mutation.start_pos[1]) in annotations:
                why = "inside a type annotation (never evaluated)"
            elif definitions is not None and mutation.definition_name not in definitions:
                why = "outside the guarded definitions"
            if why:
                db.set_result(
                    item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED, output=why)
                )


@dataclass
class ModuleResult:
    module: str
    killed: int
    survivors: list[str]
    seconds: float

    @property
    def rate(self) -> float:
        total = self.killed + len(self.survivors)
        return 100.0 * self.killed / total if total else 100.0


def mutate_module(copy: Path, module: str) -> ModuleResult:
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome

    config = write_config(copy, module)
    session = config.with_suffix(".sqlite")
    cosmic_ray = [PYTHON, "-m", "cosmic_ray.cli"]
    started = time.monotonic()
    subprocess.run([*cosmic_ray, "init", str(config), str(session)], cwd=copy, check=True)
    skip_unwanted(session, copy, module)
    subprocess.run(
        [*cosmic_ray, "exec", str(config), str(session)],
        cwd=copy,
        env=test_env(copy),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    killed, survivors = 0, []
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item, result in db.completed_work_items:
            if result.worker_outcome == WorkerOutcome.SKIPPED:
                continue
            if result.test_outcome == TestOutcome.SURVIVED:
                m = item.mutations[0]
                line = f"{module}:{m.start_pos[0]} {m.operator_name.removeprefix('core/')}"
                survivors.append(f"{line} in {m.definition_name or '(module)'}\n{result.diff}")
            else:
                killed += 1
    return ModuleResult(module, killed, survivors, time.monotonic() - started)


# --- 4. the named mutants -------------------------------------------------------------------------


def run_named(copy: Path, mutant: NamedMutant) -> bool:
    """True when a test fails with the mutant in place (killed)."""
    path = copy / mutant.path
    original = mutated = path.read_text()
    for old, new in mutant.changes:
        if mutated.count(old) != 1:
            print(f"  cannot apply named mutant {mutant.name!r}: the code changed", flush=True)
            return False
        mutated = mutated.replace(old, new)
    path.write_text(mutated)
    try:
        tests = [t for t in mutant.tests if (copy / t).exists()]
        command = pytest_command(copy, tests, "-x")
        completed = subprocess.run(
            command, cwd=copy, env=test_env(copy), check=False, stdout=subprocess.DEVNULL
        )
        return completed.returncode != 0
    finally:
        path.write_text(original)


# --- the command line -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["select-tests"]:  # cosmic-ray's test command, inside the copy
        select = argparse.ArgumentParser(prog="mutation.py select-tests")
        select.add_argument("--copy", type=Path, required=True)
        select.add_argument("--module", required=True)
        selected = select.parse_args(argv[1:])
        return select_and_run(selected.copy, selected.module)
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="modules to mutate (default: all the core)")
    parser.add_argument("--workdir", type=Path, help="where to copy the tree (default: a temp dir)")
    parser.add_argument("--named-only", action="store_true", help="only the named mutants")
    parser.add_argument("--no-named", action="store_true", help="skip the named mutants")
    parser.add_argument("--output", type=Path, help="also write the results here (text)")
    parser.add_argument(
        "--tests", nargs="+", default=TEST_FILES, help="test files to choose from (default: core's)"
    )
    return run_all(parser.parse_args(argv))


def run_all(args: argparse.Namespace) -> int:
    modules = args.modules or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        print(f"not a module under mutation: {', '.join(unknown)}", file=sys.stderr)
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="setup-tool-mutation-"))
    copy_tree(workdir)
    print(f"mutating a copy of the tree in {workdir}", flush=True)
    lines: list[str] = []
    if not args.named_only:
        tests = record_coverage(workdir, modules, args.tests)
        failing = sorted(n for n, e in tests.items() if not e.get("passed", False))
        if failing:
            lines.append(f"failing without any mutant (left out): {', '.join(failing)}")
        results = []
        for module in modules:
            result = mutate_module(workdir, module)
            results.append(result)
            print(
                f"{module}: {result.rate:.1f} % killed ({result.killed} killed, "
                f"{len(result.survivors)} survived, {result.seconds:.0f} s)",
                flush=True,
            )
        lines.append("module                                   killed  survived  rate")
        for r in results:
            lines.append(f"{r.module:<40} {r.killed:6} {len(r.survivors):9}  {r.rate:5.1f} %")
        killed = sum(r.killed for r in results)
        total = killed + sum(len(r.survivors) for r in results)
        lines.append(f"{'all':<40} {killed:6} {total - killed:9}  {100 * killed / total:5.1f} %")
        for r in results:
            lines.extend(f"SURVIVED {s}" for s in r.survivors)
    if not args.no_named:
        for mutant in NAMED_MUTANTS:
            killed = run_named(workdir, mutant)
            lines.append(f"named mutant {'killed' if killed else 'SURVIVED'}: {mutant.name}")
            print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
