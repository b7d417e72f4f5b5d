"""What a report shows beyond the plan: after a real run, what happened (each preference row
before and after, the batches and their timings); for any run, the rows it marks (or marked)
by registration year and by the associate whose diary shows the yellow warning.

Read-only: a dry run's guard lets every statement here through. Reads after a real run come
from the tool's own records (previous values, batch timings), so they show what this run did,
not what someone changed since.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, extract, func, null, select

from setup_tool.bookkeeping import batch_timings, installed_revision, steps_of_run

if TYPE_CHECKING:
    from setup_tool.database import Database
    from setup_tool.upgrade import UpgradeResult

TOP_ASSOCIATES = 20
PREFERENCE_STEPS = ("preference", "overrides")
MARKING_STEP = "mark_invites"


@dataclass
class RunDetails:
    """What the report model needs from the database besides the plan."""

    # step id -> [{table, id, level, owner_id, before, after, inserted}]
    changes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    batches: list[dict[str, Any]] = field(default_factory=list)
    figures_of: str = "to_mark"  # "to_mark" (a plan) or "marked" (a real run)
    by_year: list[tuple[int, int]] = field(default_factory=list)  # (year, rows)
    by_associate: list[tuple[int, str, int]] = field(default_factory=list)  # (id, name, rows)
    preference_after: str | None = None  # the effective system-wide value after a real run


def gather_run_details(db: Database, result: UpgradeResult) -> RunDetails:
    """Read, for `result`, what the report shows besides the plan."""
    with db.engine.connect() as conn:
        if result.run_id is not None and installed_revision(conn, db.schema):
            return _after_a_run(db, conn, result.run_id)
        return _before_a_run(db, conn, result)


def _before_a_run(db: Database, conn: Connection, result: UpgradeResult) -> RunDetails:
    # Counted by the invite survey in the same pass as the plan's figures (no second read).
    details = RunDetails(figures_of="to_mark")
    _tally(db, conn, details, result.plan.findings.invites.by_year_and_associate)
    return details


def _after_a_run(db: Database, conn: Connection, run_id: int) -> RunDetails:
    details = RunDetails(figures_of="marked")
    steps = steps_of_run(conn, db.books, run_id)
    for step in steps:
        if step["step_key"] in PREFERENCE_STEPS and step["run_id"] == run_id:
            details.changes[step["step_key"]] = _preference_changes(db, conn, step["step_row_id"])
    details.batches = batch_timings(conn, db.books, run_id)
    marking = [s["step_row_id"] for s in steps if s["step_key"] == MARKING_STEP]
    if marking:
        pv, a = db.books.previous_value, db.tables.appointment
        marked = (
            select(a)
            .join(pv, pv.c.record_id == a.c.appointment_id)
            .where(pv.c.step_row_id.in_(marking), pv.c.table_name == "appointment")
            .subquery()
        )
        _figures(db, conn, details, marked)
    details.preference_after = _effective_after(db, conn)
    return details


def _preference_changes(db: Database, conn: Connection, step_row_id: int) -> list[dict[str, Any]]:
    pv, up = db.books.previous_value, db.tables.userpreference
    rows = conn.execute(
        select(
            pv.c.record_id,
            pv.c.inserted,
            pv.c.prefvalue,
            up.c.prefvalue.label("now"),
            up.c.deflevel,
            up.c.owner_id,
        )
        .select_from(pv.outerjoin(up, up.c.userpreference_id == pv.c.record_id))
        .where(pv.c.step_row_id == step_row_id, pv.c.table_name == "UserPreference")
        .order_by(pv.c.record_id)
    )
    return [
        {
            "table": "UserPreference",
            "id": int(row.record_id),
            "level": row.deflevel,
            "owner_id": row.owner_id,
            "before": None if row.inserted else row.prefvalue,
            "after": row.now,
            "inserted": bool(row.inserted),
        }
        for row in rows
    ]


def _effective_after(db: Database, conn: Connection) -> str:
    from setup_tool.detect import detect_preference

    return detect_preference(conn, db.tables).effective_label


def _figures(db: Database, conn: Connection, details: RunDetails, rows: Any) -> None:
    """One grouped read: rows per (registration year, associate); both figures come from it."""
    year = extract("year", rows.c.registered)
    grouped = conn.execute(
        select(year.label("year"), rows.c.associate_id, func.count().label("n")).group_by(
            year, rows.c.associate_id
        )
    ).all()
    _tally(db, conn, details, [(row.year, row.associate_id, row.n) for row in grouped])


def _tally(
    db: Database, conn: Connection, details: RunDetails, grouped: list[tuple[Any, Any, Any]]
) -> None:
    """(year, associate id, rows) groups -> rows by year and by associate, names added."""
    by_year: Counter[int] = Counter()
    by_associate: Counter[int] = Counter()
    for year, associate_id, n in grouped:
        if year is not None:
            by_year[int(year)] += int(n)
        by_associate[int(associate_id or 0)] += int(n)
    details.by_year = sorted(by_year.items())
    names = _associate_names(db, conn, list(by_associate))
    details.by_associate = [
        (associate_id, names.get(associate_id, f"associate {associate_id}"), n)
        for associate_id, n in sorted(by_associate.items(), key=lambda item: (-item[1], item[0]))
    ]


def _associate_names(db: Database, conn: Connection, ids: list[int]) -> dict[int, str]:
    """{associate id: 'LOGIN (First Last)'} where the associate and person tables say."""
    associate, person = db.tables.associate, db.tables.person
    if associate is None or not ids:
        return {}
    if person is None:
        query = select(associate.c.associate_id, associate.c.name, null(), null())
    else:
        query = select(
            associate.c.associate_id, associate.c.name, person.c.firstname, person.c.lastname
        ).outerjoin_from(associate, person, and_(person.c.person_id == associate.c.person_id))
    names = {}
    for chunk in range(0, len(ids), 1000):  # SQL Server takes at most 2,100 parameters
        for associate_id, login, first, last in conn.execute(
            query.where(associate.c.associate_id.in_(ids[chunk : chunk + 1000]))
        ):
            full = " ".join(part for part in (first, last) if part)
            names[int(associate_id)] = f"{login} ({full})" if full else str(login)
    return names
