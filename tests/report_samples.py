"""Realistic report and history models (schema_version 2) for tests that render or check them."""

from __future__ import annotations

import copy
from typing import Any

_MARK_SQL = """\
UPDATE appointment
SET cautionWarning = 1, updated = :now, updated_associate_id = 0,
    updatedCount = CASE WHEN updatedCount < 65535 THEN updatedCount + 1 ELSE 65535 END
WHERE appointment_id > :last AND appointment_id <= :upto
  AND (cautionWarning = 0 OR cautionWarning IS NULL)
  AND mother_id IN (SELECT mother_id FROM appointment
                    WHERE associate_id = 0 AND invitedPersonId <> 0)"""

_PREFERENCE_SQL = """\
UPDATE UserPreference SET prefvalue = '1', updated = :now, updated_associate_id = 0,
    updatedCount = updatedCount + 1
WHERE userpreference_id = 412"""


def _evidence(source: str, detail: str) -> dict[str, str]:
    return {"source": source, "detail": detail}


def _findings() -> dict[str, Any]:
    return {
        "superoffice": {
            "title": "SuperOffice version",
            "value": "8.5 R10",
            "status": "ok",
            "summary": "SuperOffice 8.5 R10 supports invites.",
            "evidence": [
                _evidence("ProductVersion", "row 12: ownerName='SuperOffice', version='8.5 R10'"),
                _evidence("DatabaseModel", "ModelVersion='8.5.7346.1605'"),
            ],
        },
        "synchronizer": {
            "title": "InfoBridge Synchronizer",
            "in_use": True,
            "version": "3.2.284",
            "status": "ok",
            "summary": "The on-premise synchronizer 3.2.284 is installed and supports invites.",
            "evidence": [
                _evidence("ModuleLicense", "module 'superoffice.exchange-sync' licensed"),
                _evidence("operator", "--synchronizer-version 3.2.284"),
            ],
        },
        "preference": {
            "title": "Diary Synchronizer Active",
            "effective": "off",
            "encoding": "1/0",
            "system_rows": [{"id": 412, "value": "0"}],
            "overrides": [
                {"id": 977, "level": 5, "owner_id": 23, "value": "0", "on": False},
                {"id": 978, "level": 4, "owner_id": 2, "value": "1", "on": True},
            ],
            "after": None,
            "summary": "Mail/DiarySynchronizerActive is off system-wide; 1 user override is off.",
            "evidence": [
                _evidence("UserPreference", "row 412: deflevel=2, owner_id=0, prefvalue='0'"),
                _evidence("UserPreference", "row 977: deflevel=5, owner_id=23, prefvalue='0'"),
            ],
        },
        "travel": {
            "title": "Travel",
            "enabled": True,
            "summary": "Travel is on: changes are also written to traveltransactionlog.",
            "evidence": [_evidence("UserPreference", "row 88: Travel/EnableTravel='1'")],
        },
        "invites": {
            "title": "Invite appointments (SPEC step 4)",
            "meetings": 318,
            "rows": 1284,
            "selected_meetings": 301,
            "to_mark": 1190,
            "in_sync_range": 212,
            "already_marked": 61,
            "other_warnings": 33,
            "footprints": [
                {
                    "kind": "invitation",
                    "label": "(a) an invitation row for the meeting",
                    "meetings": 120,
                    "rows": 480,
                    "counted": True,
                    "note": "",
                },
                {
                    "kind": "send-email",
                    "label": "(b) a row with SendEmail = 1",
                    "meetings": 0,
                    "rows": 0,
                    "counted": False,
                    "note": "this database has no appointment.SendEmail column",
                },
                {
                    "kind": "email-id",
                    "label": "(c) a row with emailId <> 0 registered at or after invites-since",
                    "meetings": 240,
                    "rows": 960,
                    "counted": True,
                    "note": "",
                },
            ],
            "left_out": [
                {"reason": "external participants' rows (in nobody's diary)", "rows": 402},
                {"reason": "owned by Outlook/Google (owned_externally 1-3)", "rows": 17},
                {"reason": "another caution warning (2-5), kept", "rows": 33},
                {"reason": "meeting registered outside the window", "rows": 58},
            ],
            "invites_since": {"at": "2019-11-04T08:12:00+00:00", "source": "ProductVersion"},
            "window": {
                "from": "2019-11-04T08:12:00+00:00",
                "until": "2026-11-25T19:39:58+00:00",
                "from_evidence": "invites-since, from ProductVersion",
                "until_evidence": "this run, which switches Diary Synchronizer Active on",
            },
            "nothing_to_mark_because": None,
            "marked": None,
            "summary": "318 invite meetings (1,284 rows); 1,190 rows to mark, 61 already marked.",
            "evidence": [
                _evidence("appointment", "(a) an invitation row for the meeting: 120 meetings"),
            ],
        },
        "history": {
            "title": "Earlier runs of setup-tool",
            "runs": 0,
            "last_run": None,
            "summary": "setup-tool has not run on this database before.",
            "evidence": [_evidence("setup_tool_run", "table setup_tool_run does not exist yet")],
        },
    }


def _step(step_id: str, title: str, decision: str, reason: str, **extra: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": step_id,
        "title": title,
        "decision": decision,
        "reason": reason,
        "rows": 0,
        "sample_ids": [],
        "sql": [],
        "warnings": [],
        "estimate_seconds": None,
        "started": None,
        "finished": None,
        "duration_seconds": None,
        "changes": [],
    }
    step.update(extra)
    step["warnings"] = [
        w if isinstance(w, dict) else {"code": f"{step_id}_warning", "message": w}
        for w in step["warnings"]
    ]
    return step


def _steps() -> list[dict[str, Any]]:
    return [
        _step("gate", "SuperOffice version gate", "done", "SuperOffice 8.5 R10 is new enough."),
        _step(
            "preference",
            "Enable Diary Synchronizer Active",
            "change",
            "The synchronizer is in use and the system-wide row 412 says off.",
            rows=1,
            sample_ids=[412],
            sql=[_PREFERENCE_SQL],
            estimate_seconds=0.1,
        ),
        _step(
            "overrides",
            "User overrides of Diary Synchronizer Active",
            "skip",
            "Overrides are reported, not changed, unless --switch-overrides-on is given.",
            rows=1,
            sample_ids=[977],
            warnings=["Row 977 (level 5, associate 23) keeps the preference off for one user."],
        ),
        _step(
            "mark_invites",
            "Mark pre-existing invite appointments",
            "change",
            "1190 rows of 318 meetings were registered while the preference was off.",
            rows=1190,
            sample_ids=[5001, 5002, 5003, 5017, 5018],
            sql=[_MARK_SQL, "INSERT INTO traveltransactionlog (...) VALUES (...)"],
            estimate_seconds=4.2,
        ),
        _step(
            "synchronizer_check",
            "Synchronizer version check",
            "done",
            "Synchronizer 3.2.284 supports invites.",
        ),
    ]


def sample_report(**overrides: Any) -> dict[str, Any]:
    """A dry-run report of a database that needs both steps; keyword arguments replace top keys."""
    report: dict[str, Any] = {
        "schema_version": 2,
        "tool": {"name": "setup-tool", "version": "0.1.0"},
        "generated_at": "2026-11-25T19:40:00+00:00",
        "mode": "dry-run",
        "database": {"url": "sqlite:////tmp/crm.db", "dialect": "sqlite", "table_prefix": None},
        "outcome": "changes_pending",
        "outcome_text": "2 steps will change the database; nothing has been written yet.",
        "exit_code": 10,
        "exit_meaning": "dry run: changes pending",
        "started": None,
        "finished": None,
        "duration_seconds": None,
        "summary": [
            "Diary Synchronizer Active will be switched on (1 row: UserPreference 412).",
            "1190 appointment rows of 318 invite meetings will be marked NotInSync.",
        ],
        "findings": _findings(),
        "steps": _steps(),
        "warnings": [
            {
                "code": "overrides_left_off",
                "message": "1 user override keeps Diary Synchronizer Active off.",
                "step": "overrides",
            }
        ],
        "advice": [
            "Users see Diary Synchronizer Active at their next login: SuperOffice (NetServer) "
            "caches preferences.",
        ],
        "estimate_seconds": 4.3,
        "run_id": None,
        "resumed": None,
        "figures": {
            "of": "to_mark",
            "by_year": [{"year": 2025, "rows": 410}, {"year": 2026, "rows": 780}],
            "by_associate": [
                {"associate_id": 23, "name": "EVA (Eva Berg)", "rows": 640},
                {"associate_id": 5, "name": "OLA (Ola Nordmann)", "rows": 550},
            ],
            "other_associates": None,
            "batches": [],
        },
        "log_file": None,
        "report_file": "/tmp/report.html",
    }
    report.update(copy.deepcopy(overrides))
    return report


def _run_step(
    run_id: int, step_id: str, decision: str, status: str, rows: int, batches: int = 0
) -> dict[str, Any]:
    finished = status == "completed"
    return {
        "id": step_id,
        "run_id": run_id,
        "decision": decision,
        "status": status,
        "rows": rows,
        "batches": batches,
        "started_at": "2026-11-20T08:00:05+00:00",
        "finished_at": "2026-11-20T08:00:40+00:00" if finished else None,
        "duration_seconds": 35.0 if finished else None,
        "finished_by": run_id if finished else None,
    }


def sample_history(**overrides: Any) -> dict[str, Any]:
    """Two past runs: an upgrade, then an undo of it; keyword arguments replace top keys."""
    history: dict[str, Any] = {
        "schema_version": 2,
        "tool": {"name": "setup-tool", "version": "0.1.0"},
        "generated_at": "2026-11-25T19:40:00+00:00",
        "database": {
            "url": "mssql+pyodbc://crm_admin:***@sql01/SuperOffice",
            "dialect": "mssql",
            "table_prefix": "crm7",
        },
        "runs": [
            {
                "id": 1,
                "started_at": "2026-11-20T08:00:03+00:00",
                "finished_at": "2026-11-20T08:00:41+00:00",
                "duration_seconds": 38.0,
                "mode": "upgrade",
                "outcome": "done",
                "exit_code": 0,
                "tool_version": "0.1.0",
                "host": "SQL01",
                "os_user": "CORP\\crm-admin",
                "superoffice_version": "8.5 R10",
                "synchronizer_version": "3.2.284",
                "undone_by": 2,
                "has_report": True,
                "steps": [
                    _run_step(1, "preference", "change", "completed", 1),
                    _run_step(1, "mark_invites", "change", "completed", 1190, batches=1),
                ],
                "finished_steps": [],
            },
            {
                "id": 2,
                "started_at": "2026-11-21T09:12:00+00:00",
                "finished_at": None,
                "duration_seconds": None,
                "mode": "undo",
                "outcome": None,
                "exit_code": None,
                "tool_version": "0.1.0",
                "host": "SQL01",
                "os_user": "CORP\\crm-admin",
                "superoffice_version": None,
                "synchronizer_version": None,
                "undone_by": None,
                "has_report": False,
                "steps": [_run_step(2, "undo", "change", "running", 412)],
                "finished_steps": [],
            },
        ],
    }
    history.update(copy.deepcopy(overrides))
    return history
