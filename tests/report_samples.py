"""Realistic report and history models (schema_version 1) for tests that render or check them."""

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
            "invites_since": {"at": "2019-11-04 08:12:00", "source": "ProductVersion"},
            "window": {
                "from": "2019-11-04 08:12:00",
                "until": "2026-11-25 19:39:58",
                "from_evidence": "invites-since, from ProductVersion",
                "until_evidence": "this run, which switches Diary Synchronizer Active on",
            },
            "nothing_to_mark_because": None,
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
        "duration_seconds": None,
    }
    step.update(extra)
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
        "schema_version": 1,
        "tool": {"name": "setup-tool", "version": "0.1.0"},
        "generated_at": "2026-11-25T19:40:00Z",
        "mode": "dry-run",
        "database": {"url": "sqlite:////tmp/crm.db", "dialect": "sqlite", "table_prefix": None},
        "outcome": "changes_pending",
        "outcome_text": "2 steps will change the database; nothing has been written yet.",
        "exit_code": 10,
        "exit_meaning": "dry run: changes pending",
        "summary": [
            "Diary Synchronizer Active will be switched on (1 row: UserPreference 412).",
            "1190 appointment rows of 318 invite meetings will be marked NotInSync.",
        ],
        "findings": _findings(),
        "steps": _steps(),
        "warnings": ["1 user override keeps Diary Synchronizer Active off."],
        "advice": [
            "Users see Diary Synchronizer Active at their next login: SuperOffice (NetServer) "
            "caches preferences.",
        ],
        "estimate_seconds": 4.3,
        "run_id": None,
        "log_file": None,
        "report_file": "/tmp/report.html",
    }
    report.update(copy.deepcopy(overrides))
    return report


def sample_history(**overrides: Any) -> dict[str, Any]:
    """Two past runs: an upgrade, then an undo of it; keyword arguments replace top keys."""
    history: dict[str, Any] = {
        "schema_version": 1,
        "tool": {"name": "setup-tool", "version": "0.1.0"},
        "generated_at": "2026-11-25T19:40:00Z",
        "database": {
            "url": "mssql+pyodbc://crm_admin:***@sql01/SuperOffice",
            "dialect": "mssql",
            "table_prefix": "crm7",
        },
        "runs": [
            {
                "id": 1,
                "started_at": "2026-11-20 08:00:03",
                "finished_at": "2026-11-20 08:00:41",
                "mode": "upgrade",
                "outcome": "done",
                "exit_code": 0,
                "tool_version": "0.1.0",
                "host": "SQL01",
                "os_user": "CORP\\crm-admin",
                "superoffice_version": "8.5 R10",
                "synchronizer_version": "3.2.284",
                "undone_by": 2,
                "steps": [
                    {"id": "gate", "decision": "done", "status": "finished", "rows": 0},
                    {"id": "preference", "decision": "change", "status": "finished", "rows": 1},
                    {
                        "id": "mark_invites",
                        "decision": "change",
                        "status": "finished",
                        "rows": 1190,
                    },
                ],
            },
            {
                "id": 2,
                "started_at": "2026-11-21 09:12:00",
                "finished_at": None,
                "mode": "undo",
                "outcome": None,
                "exit_code": None,
                "tool_version": "0.1.0",
                "host": "SQL01",
                "os_user": "CORP\\crm-admin",
                "superoffice_version": None,
                "synchronizer_version": None,
                "undone_by": None,
                "steps": [{"id": "undo", "decision": "change", "status": "running", "rows": 412}],
            },
        ],
    }
    history.update(copy.deepcopy(overrides))
    return history
