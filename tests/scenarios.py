"""Small hand-made SuperOffice databases with exact rows, and plain-SQL views of any database.

Used by test_detect, test_steps, test_undo and test_resume. Everything the tests check about the
database is read here with plain SQL through the standard sqlite3 module, never through the tool's
own query builders, so a wrong statement in the tool cannot also be wrong in its test.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from setup_tool.connection import ConnectionSettings
from setup_tool.database import Database, open_database
from setup_tool.demo import TABLE_NUMBERS, create_demo_schema
from setup_tool.detect import OperatorAnswers
from setup_tool.findings import Findings
from setup_tool.host_probe import HostProbe, HostTrace, NoHostProbe
from setup_tool.interaction import UnattendedInteraction
from setup_tool.steps import UpgradeSettings
from setup_tool.upgrade import UpgradePlan, UpgradeResult, plan_upgrade, run_upgrade

NEVER = datetime(1900, 1, 1)
BASE = datetime(2024, 1, 1, 9, 0, 0)  # registered dates of hand-made rows count from here
Row = dict[str, Any]


# --- building ---------------------------------------------------------------------------------


def ts(value: datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite (and as the tool's rows read back)."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def appointment(
    appointment_id: int,
    mother_id: int = 0,
    associate_id: int = 1,
    invited: int = 0,
    *,
    registered: datetime = BASE,
    warning: int | None = 0,
    updated: datetime = NEVER,
    updated_by: int = 0,
    count: int = 0,
) -> Row:
    """One appointment row; an external participant is associate_id=0 with invited set."""
    return {
        "appointment_id": appointment_id,
        "contact_id": 0,
        "person_id": invited,
        "associate_id": associate_id,
        "registered": registered,
        "registered_associate_id": 1,
        "updated": updated,
        "updated_associate_id": updated_by,
        "updatedCount": count,
        "type": 1 if associate_id else 6,
        "status": 1 if associate_id else 5,
        "mother_id": mother_id,
        "invitedPersonId": invited,
        "emailId": invited and 9000 + invited,
        "activeDate": registered + timedelta(days=3),
        "do_by": registered + timedelta(days=3),
        "endDate": registered + timedelta(days=3, hours=1),
        "cautionWarning": warning,
        "mother_associate_id": 1 if mother_id else 0,
    }


def preference(
    pref_id: int,
    level: int,
    value: str | None,
    owner: int = 0,
    *,
    section: str = "Mail",
    key: str = "DiarySynchronizerActive",
    maxlevel: int = 5,
    registered: datetime = BASE - timedelta(days=400),
    updated: datetime = NEVER,
    count: int = 0,
) -> Row:
    return {
        "userpreference_id": pref_id,
        "deflevel": level,
        "maxlevel": maxlevel,
        "owner_id": owner,
        "prefsection": section,
        "prefkey": key,
        "prefvalue": value,
        "registered": registered,
        "registered_associate_id": 0,
        "updated": updated,
        "updated_associate_id": 0,
        "updatedCount": count,
    }


def travel_preference(pref_id: int, on: bool) -> Row:
    return preference(
        pref_id, 2, "1" if on else "0", section="Travel", key="EnableTravel", maxlevel=2
    )


def product_version(row_id: int, owner: str, code: str, version: str) -> Row:
    return {
        "ProductVersion_id": row_id,
        "ownerName": owner,
        "codeName": code,
        "version": version,
        "comment": None,
        "updatePath": None,
        "registered": BASE - timedelta(days=100),
        "registered_associate_id": 0,
        "updated": NEVER,
        "updated_associate_id": 0,
        "updatedCount": 0,
    }


SUPEROFFICE_8_5_R10 = product_version(1, "SuperOffice", "CRM", "8.5 R10")
SYNCHRONIZER_3_2_284 = product_version(2, "InfoBridge", "Synchronizer", "3.2.284")


@dataclass
class Scenario:
    """The exact rows of a small SuperOffice database."""

    appointments: list[Row] = field(default_factory=list)
    preferences: list[Row] = field(default_factory=list)
    product_versions: list[Row] = field(
        default_factory=lambda: [SUPEROFFICE_8_5_R10, SYNCHRONIZER_3_2_284]
    )
    model_versions: list[str] = field(default_factory=list)
    licences: list[str] = field(default_factory=list)  # ModuleLicense names (owner SuperOffice)
    travel_log: list[Row] = field(default_factory=list)
    next_ids: dict[str, int] = field(default_factory=dict)  # sequence.next_id per TableName

    def build(self, path: Path) -> Path:
        engine = create_engine(f"sqlite:///{path}")
        try:
            with engine.begin() as conn:
                tables = create_demo_schema(conn)
                for table, rows in [
                    (tables.appointment, self.appointments),
                    (tables.userpreference, self.preferences),
                    (tables.productversion, self.product_versions),
                    (
                        tables.databasemodel,
                        [
                            {"DatabaseModel_id": i + 1, "ModelVersion": v, "ModelData": None}
                            for i, v in enumerate(self.model_versions)
                        ],
                    ),
                    (
                        tables.moduleowner,
                        [
                            {
                                "ModuleOwner_id": 1,
                                "ownerName": "SuperOffice",
                                "ownerDescription": None,
                            }
                        ],
                    ),
                    (
                        tables.modulelicense,
                        [
                            {
                                "ModuleLicense_id": i + 1,
                                "ModuleOwner_id": 1,
                                "moduleName": n,
                                "moduleDescription": None,
                            }
                            for i, n in enumerate(self.licences)
                        ],
                    ),
                    (
                        tables.travelcurrent,
                        [{"travelcurrent_id": 1, "current_id": 0, "systemlevel": 10}],
                    ),
                    (tables.traveltransactionlog, self.travel_log),
                ]:
                    assert table is not None
                    if rows:
                        conn.execute(table.insert(), rows)
                conn.execute(tables.sequence.insert(), self._sequence_rows())
        finally:
            engine.dispose()
        return path

    def _sequence_rows(self) -> list[Row]:
        highest = {
            "appointment": max((r["appointment_id"] for r in self.appointments), default=0),
            "UserPreference": max((r["userpreference_id"] for r in self.preferences), default=0),
            "traveltransactionlog": max(
                (r["traveltransactionlog_id"] for r in self.travel_log), default=0
            ),
        }
        names = [
            "appointment",
            "UserPreference",
            "traveltransactionlog",
            "ProductVersion",
            "sequence",
        ]
        return [
            {
                "id": i + 1,
                "TableName": name,
                "TableNumber": TABLE_NUMBERS[name],
                "next_id": self.next_ids.get(name, highest.get(name, 0) + 17),
            }
            for i, name in enumerate(names)
        ]


# --- running the tool -------------------------------------------------------------------------


def open_db(path: Path, *, read_only: bool = False) -> Database:
    return open_database(ConnectionSettings(database_url=f"sqlite:///{path}"), read_only=read_only)


@dataclass
class FakeProbe:
    """A HostProbe that reports the traces it was given (what a Windows machine would show)."""

    traces: list[HostTrace] = field(default_factory=list)

    def synchronizer_traces(self) -> list[HostTrace]:
        return list(self.traces)

    def describe(self) -> str:
        return "fake host"


def plan(
    path: Path,
    answers: OperatorAnswers | None = None,
    settings: UpgradeSettings | None = None,
    probe: HostProbe | None = None,
) -> UpgradePlan:
    db = open_db(path, read_only=True)
    try:
        return plan_upgrade(
            db, answers or OperatorAnswers(), settings or UpgradeSettings(), probe or NoHostProbe()
        )
    finally:
        db.dispose()


def findings(
    path: Path, answers: OperatorAnswers | None = None, probe: HostProbe | None = None
) -> Findings:
    return plan(path, answers, probe=probe).findings


def upgrade(
    path: Path,
    answers: OperatorAnswers | None = None,
    *,
    probe: HostProbe | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_open: Callable[[Database], None] | None = None,
    **settings: Any,
) -> UpgradeResult:
    """A real unattended upgrade run; `settings` are UpgradeSettings fields."""
    db = open_db(path)
    try:
        if on_open is not None:
            on_open(db)
        return run_upgrade(
            db,
            answers or OperatorAnswers(),
            UpgradeSettings(**settings),
            probe or NoHostProbe(),
            UnattendedInteraction(),
            should_stop=should_stop,
        )
    finally:
        db.dispose()


# --- reading with plain SQL -------------------------------------------------------------------


def query(path: Path, sql: str, params: Iterable[Any] = ()) -> list[Row]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in conn.execute(sql, tuple(params))]
    finally:
        conn.close()


def execute(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        with conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        conn.close()


def insert(path: Path, table: str, rows: list[Row]) -> None:
    """Insert rows with plain SQL, datetimes written as SQLAlchemy writes them."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            for row in rows:
                values = [ts(v) if isinstance(v, datetime) else v for v in row.values()]
                columns = ", ".join(f'"{c}"' for c in row)
                marks = ", ".join("?" for _ in row)
                conn.execute(f'INSERT INTO "{table}" ({columns}) VALUES ({marks})', values)
    finally:
        conn.close()


PRIMARY_KEYS = {
    "appointment": "appointment_id",
    "UserPreference": "userpreference_id",
    "sequence": "id",
    "traveltransactionlog": "traveltransactionlog_id",
}


def dump(path: Path, table: str) -> list[Row]:
    return query(path, f'SELECT * FROM "{table}" ORDER BY "{PRIMARY_KEYS[table]}"')


def by_id(rows: list[Row], key: str = "appointment_id") -> dict[int, Row]:
    return {row[key]: row for row in rows}


def next_id(path: Path, table_name: str) -> int:
    (row,) = query(path, "SELECT next_id FROM sequence WHERE TableName = ?", [table_name])
    return int(row["next_id"])


def tables_named(path: Path, prefix: str) -> list[str]:
    rows = query(
        path, "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?", [prefix + "%"]
    )
    return sorted(r["name"] for r in rows)


def run_rows(path: Path) -> list[Row]:
    if not tables_named(path, "setup_tool_run"):
        return []
    return query(path, "SELECT * FROM setup_tool_run ORDER BY run_id")


def run_time(path: Path, run_id: int | None) -> str:
    assert run_id is not None, "no run was recorded"
    (row,) = query(path, "SELECT started_at FROM setup_tool_run WHERE run_id = ?", [run_id])
    return str(row["started_at"])


def invite_rows_to_mark(appointments: list[Row], until: str, start: str | None = None) -> set[int]:
    """What the spec says must be marked, worked out in Python from a plain dump.

    Rows of a meeting (mother_id <> 0) with at least one external participant row
    (associate_id = 0, invitedPersonId <> 0), registered in [start, until), warning 0 or NULL.
    """
    invite_meetings = {
        r["mother_id"]
        for r in appointments
        if r["mother_id"] != 0 and r["associate_id"] == 0 and r["invitedPersonId"] != 0
    }
    return {
        r["appointment_id"]
        for r in appointments
        if r["mother_id"] in invite_meetings
        and r["cautionWarning"] in (0, None)
        and r["registered"] < until
        and (start is None or r["registered"] >= start)
    }


def normalised(rows: list[Row], run_times: Iterable[str]) -> list[Row]:
    """Rows with the tool's run times replaced by a placeholder, to compare runs made at
    different seconds."""
    times = set(run_times)
    return [
        {
            k: ("<run time>" if k in ("updated", "registered", "ttime") and v in times else v)
            for k, v in row.items()
        }
        for row in rows
    ]


def all_run_times(path: Path) -> list[str]:
    return [str(r["started_at"]) for r in run_rows(path)]


def final_state(path: Path) -> dict[str, Any]:
    times = all_run_times(path)
    pv = query(
        path,
        "SELECT table_name, record_id, inserted, caution_warning, prefvalue, "
        "updated, updated_associate_id, updated_count, new_updated_count "
        "FROM setup_tool_previous_value ORDER BY table_name, record_id",
    )
    return {
        "appointment": normalised(dump(path, "appointment"), times),
        "UserPreference": normalised(dump(path, "UserPreference"), times),
        "sequence": dump(path, "sequence"),
        "traveltransactionlog": normalised(
            [
                {k: v for k, v in r.items() if k != "traveltransactionlog_id"}
                for r in dump(path, "traveltransactionlog")
            ],
            times,
        ),
        "previous_value": pv,
    }


def whole_database(path: Path) -> dict[str, list[Row]]:
    return {
        t: dump(path, t)
        for t in ("appointment", "UserPreference", "sequence", "traveltransactionlog")
    }


def backdate_run(path: Path, run_id: int, to: datetime) -> None:
    """Make a finished run look as if it happened at `to` (its records and the preference row
    it inserted), so a test can play what happened between two runs days apart."""
    when = run_time(path, run_id)
    execute(
        path,
        f"UPDATE setup_tool_run SET started_at = '{ts(to)}', finished_at = '{ts(to)}', "
        f"preference_on_at = '{ts(to)}' WHERE run_id = {run_id}",
        f"UPDATE setup_tool_step SET started_at = '{ts(to)}', finished_at = '{ts(to)}', "
        f"window_until = '{ts(to)}' WHERE run_id = {run_id} AND window_until = '{when}'",
        f"UPDATE UserPreference SET registered = '{ts(to)}' WHERE registered = '{when}'",
    )


def invite_meeting(master_id: int, registered: datetime, person: int, **kw: Any) -> list[Row]:
    return [
        appointment(master_id, master_id, 1, registered=registered, **kw),
        appointment(master_id + 1, master_id, 2, registered=registered),
        appointment(master_id + 2, master_id, 0, invited=person, registered=registered),
    ]
