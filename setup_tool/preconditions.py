"""What a real run needs before its first write, checked alike by the dry run and the real run.

A dry run must never promise what the real run cannot do: every condition a real run depends on
(beyond the login's rights, which a dry run with a read-only login cannot have) is checked here,
read-only, from the plan, and a missing one blocks both with the same words (exit 3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, select

from setup_tool import __version__
from setup_tool.bookkeeping import Bookkeeping, installed_revision
from setup_tool.errors import BlockedError
from setup_tool.resources import migrations_dir
from setup_tool.schema import SuperOfficeTables
from setup_tool.sequence import sequence_problem, sequence_rows
from setup_tool.steps import StepPlan
from setup_tool.steps.registry import step_named

if TYPE_CHECKING:
    from setup_tool.database import Database
    from setup_tool.findings import HistoryFinding
    from setup_tool.upgrade import UpgradePlan

STEP_ID = "preconditions"
TITLE = "What a real run needs is in place"
TRAVEL_LOG = "traveltransactionlog"
NOTHING_CHANGED = "Nothing was changed."

_REVISION_LINE = re.compile(r"""^revision\s*(?::\s*\w+\s*)?=\s*["']([^"']+)["']""", re.MULTILINE)


@dataclass(frozen=True)
class Problem:
    """One missing precondition: what is missing, and what to do about it."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what} {self.fix}"


# --- the tool's own records --------------------------------------------------------------------


@cache
def known_revisions() -> frozenset[str]:
    """Every bookkeeping revision this setup-tool's migrations know (not only the newest)."""
    folder = migrations_dir() / "versions"
    found: set[str] = set()
    for script in folder.glob("*.py"):
        found.update(_REVISION_LINE.findall(script.read_text(encoding="utf-8")))
    return frozenset(found)


def revision_problem(revision: str | None, runs: list[dict[str, Any]]) -> Problem | None:
    """A revision this version does not know was written by a newer setup-tool: its records
    mean what that version says, so this one must neither read them as its own nor migrate them."""
    if revision is None or revision in known_revisions():
        return None
    newest = runs[0] if runs else None
    by = (
        f"setup-tool {newest['tool_version']} (run {newest['run_id']}, the newest recorded)"
        if newest is not None and newest.get("tool_version")
        else "a setup-tool version newer than this one"
    )
    return Problem(
        f"This database's setup-tool records are at bookkeeping revision {revision!r}, which "
        f"setup-tool {__version__} does not know: {by} upgraded this database.",
        "Use that version of setup-tool (or a newer one) on this database.",
    )


def history_problems(history: HistoryFinding) -> list[Problem]:
    problem = revision_problem(history.revision, history.runs)
    return [problem] if problem else []


# --- SuperOffice's tables that the writes need ---------------------------------------------------


def travel_problems(
    conn: Connection, tables: SuperOfficeTables, logged_tables: list[str]
) -> list[Problem]:
    """With Travel on, each change is logged in traveltransactionlog: the table itself, ids for
    its rows and the table number of every table whose rows change must be there."""
    if not logged_tables:
        return []
    if tables.traveltransactionlog is None:
        return [
            Problem(
                f"Travel is on, but the database has no {TRAVEL_LOG} table, so the changes "
                "cannot be recorded for Travel (and for the satellites and synchronizers that "
                "read its log).",
                "Check --table-prefix, or switch Travel off in SuperOffice if it is not used.",
            )
        ]
    needs = [(TRAVEL_LOG, "travel log rows cannot get ids SuperOffice will respect")]
    needs += [
        (name, f"travel log rows cannot name the table {name} by its number")
        for name in logged_tables
    ]
    return _sequence_problems(conn, tables, needs)


def _sequence_problems(
    conn: Connection, tables: SuperOfficeTables, needs: list[tuple[str, str]]
) -> list[Problem]:
    from setup_tool.sequence import REPAIR_HINT

    problems = []
    seen: set[str] = set()
    for table_name, purpose in needs:
        if table_name.lower() in seen:
            continue
        seen.add(table_name.lower())
        rows = sequence_rows(conn, tables, table_name)
        if rows != 1:
            problems.append(Problem(sequence_problem(table_name, rows, purpose), REPAIR_HINT))
    return problems


# --- the upgrade -------------------------------------------------------------------------------


def preconditions(conn: Connection, tables: SuperOfficeTables, plan: UpgradePlan) -> list[Problem]:
    """What the real run of `plan` needs and this database lacks (read-only; empty: all there)."""
    problems = history_problems(plan.findings.history)
    logged: list[str] = []  # the tables whose changes the travel log records
    if plan.findings.travel.enabled:
        for planned in plan.steps:
            step = step_named(planned.id)
            table = step.recorded_table if step is not None else None
            if planned.decision == "change" and table is not None and table not in logged:
                logged.append(table)
    problems += travel_problems(conn, tables, logged)
    return problems


def blocked_step(problems: list[Problem]) -> StepPlan:
    """The plan's step that says what is missing; a plan with it is blocked (exit 3)."""
    return StepPlan(
        STEP_ID,
        TITLE,
        "blocked",
        " ".join(str(p) for p in problems) + f" {NOTHING_CHANGED}",
    )


def not_reached(step: StepPlan) -> StepPlan:
    """A step that would change rows, once a precondition blocks the run: it promises nothing."""
    if step.decision != "change":
        return step
    would = f" (it would change {step.rows:,} row(s))" if step.rows else ""
    return StepPlan(
        step.id,
        step.title,
        "skip",
        f"Not reached: a precondition of the real run is missing{would}; see '{TITLE}'.",
        warnings=step.warnings,
    )


def with_preconditions(plan_steps: list[StepPlan], problems: list[Problem]) -> list[StepPlan]:
    """The steps of a plan, blocked by `problems` when there are any (after the version gate)."""
    if not problems:
        return plan_steps
    return [plan_steps[0], blocked_step(problems), *(not_reached(s) for s in plan_steps[1:])]


# --- undo --------------------------------------------------------------------------------------


def database_role_problems(conn: Connection, tables: SuperOfficeTables) -> list[Problem]:
    """A satellite or travel copy is never written to (setup_tool.steps.gate): only the central
    database is upgraded or undone; the copies receive the change through Travel."""
    from setup_tool.detect import read_database_role
    from setup_tool.findings import REFUSAL_HINT

    role = read_database_role(conn, tables)
    return [Problem(role.sentence(), REFUSAL_HINT)] if role.refuses else []


def undo_problems(db: Database, conn: Connection, run_ids: list[int] | None) -> list[Problem]:
    """What an undo needs before its first write: the central database, records this version
    knows, and (when there is something to undo) the rights to write and, with Travel on, what
    the travel log needs."""
    from setup_tool.bookkeeping import runs
    from setup_tool.detect import detect_travel
    from setup_tool.privileges import missing_rights

    role = database_role_problems(conn, db.tables)
    if role:
        return role
    revision = installed_revision(conn, db.schema)
    if revision is None:
        return []
    problem = revision_problem(revision, _newest_run(conn, db.books))
    if problem is not None:
        return [problem]
    past = [r for r in runs(conn, db.books) if r["mode"] == "upgrade"]
    targets = [
        r
        for r in past
        if r["undone_by_run_id"] is None and (run_ids is None or r["run_id"] in run_ids)
    ]
    if not targets:
        return []  # nothing to undo (or a run id undo itself explains)
    travel = detect_travel(conn, db.tables).enabled
    tables, books = db.tables, db.books
    needs = [
        (tables.appointment, "UPDATE"),
        (tables.userpreference, "UPDATE"),
        (tables.userpreference, "DELETE"),
        (books.run, "INSERT"),
        (books.run, "UPDATE"),
        (books.candidate, "DELETE"),
    ]
    if travel and tables.traveltransactionlog is not None:
        needs += [(tables.traveltransactionlog, "INSERT"), (tables.sequence, "UPDATE")]
    problems = []
    lacking = missing_rights(db, conn, needs, create_tables=False)
    if lacking:
        problems.append(
            Problem(
                f"The login cannot undo setup-tool's changes; it lacks: {'; '.join(lacking)}.",
                "Run undo as a login with these rights (e.g. the SuperOffice database owner), "
                "or ask the DBA to grant them.",
            )
        )
    if travel:
        problems += travel_problems(conn, tables, _changed_tables(conn, books, targets))
    return problems


def _changed_tables(
    conn: Connection, books: Bookkeeping, target_runs: list[dict[str, Any]]
) -> list[str]:
    """The tables whose rows undoing `target_runs` changes back (each one logged for Travel)."""
    pv, step = books.previous_value, books.step
    run_ids = [r["run_id"] for r in target_runs]
    names = conn.execute(
        select(pv.c.table_name)
        .distinct()
        .select_from(pv.join(step, pv.c.step_row_id == step.c.step_row_id))
        .where(step.c.run_id.in_(run_ids))
    ).scalars()
    return sorted(str(name) for name in names)


def _newest_run(conn: Connection, books: Bookkeeping) -> list[dict[str, Any]]:
    """The newest run's number and tool version, read with columns every revision has."""
    run = books.run
    try:
        row = conn.execute(
            select(run.c.run_id, run.c.tool_version).order_by(run.c.run_id.desc()).limit(1)
        ).first()
    except Exception:  # a newer layout this version cannot read: the revision says enough
        return []
    return [dict(row._mapping)] if row is not None else []


def require_undo_preconditions(db: Database, run_ids: list[int] | None) -> None:
    with db.engine.connect() as conn:
        problems = undo_problems(db, conn, run_ids)
    if problems:
        raise BlockedError(
            " ".join(p.what for p in problems) + f" {NOTHING_CHANGED}",
            " ".join(p.fix for p in problems),
        )
