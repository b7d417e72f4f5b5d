"""One report model (a plain JSON-able dict) for every format; see docs/report.schema.json."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from setup_tool import __version__
from setup_tool.clock import iso
from setup_tool.database import Database
from setup_tool.errors import EXIT_CODE_MEANINGS, ExitCode
from setup_tool.findings import Evidence, Findings
from setup_tool.preferences import PreferenceRow
from setup_tool.steps import StepPlan
from setup_tool.upgrade import OUTCOME_TEXT, UpgradeResult

SCHEMA_VERSION = 1


def _evidence(items: list[Evidence]) -> list[dict[str, str]]:
    return [{"source": e.source, "detail": e.detail} for e in items]


def findings_model(f: Findings) -> dict[str, Any]:
    so, sync, pref, hist = f.superoffice, f.synchronizer, f.preference, f.history
    last = hist.runs[0] if hist.runs else None
    return {
        "superoffice": {
            "title": "SuperOffice version",
            "value": so.version.label() if so.version else None,
            "status": so.status,
            "summary": _superoffice_summary(f),
            "evidence": _evidence([*so.evidence, *_model_evidence(f)]),
        },
        "synchronizer": {
            "title": "InfoBridge Synchronizer (on-premise)",
            "in_use": sync.in_use,
            "version": sync.version.label() if sync.version else None,
            "status": sync.status,
            "summary": _synchronizer_summary(f),
            "evidence": _evidence(sync.evidence),
        },
        "preference": {
            "title": "Diary Synchronizer Active (Mail/DiarySynchronizerActive)",
            "effective": pref.effective_label,
            "encoding": pref.encoding.label,
            "system_rows": [{"id": r.id, "value": r.value} for r in pref.system],
            "overrides": [_override(r) for r in pref.overrides],
            "summary": f"System-wide it is {pref.effective_label}; {len(pref.overrides_off)} "
            "database/group/individual row(s) switch it off.",
            "evidence": _evidence(pref.evidence),
        },
        "travel": {
            "title": "Travel",
            "enabled": f.travel.enabled,
            "summary": "Travel is on: changes are written to the travel transaction log."
            if f.travel.enabled
            else "Travel is off.",
            "evidence": _evidence(f.travel.evidence),
        },
        "invites": _invites_model(f),
        "history": {
            "title": "Earlier runs of setup-tool",
            "runs": len(hist.runs),
            "last_run": {
                "id": last["run_id"],
                "started_at": iso(last["started_at"]),
                "outcome": last["outcome"] or last["status"],
            }
            if last
            else None,
            "summary": f"{len(hist.runs)} earlier run(s)."
            if hist.runs
            else "setup-tool has not run on this database before.",
            "evidence": _evidence(hist.evidence),
        },
    }


def _model_evidence(f: Findings) -> list[Evidence]:
    if f.model is None:
        return [Evidence("DatabaseModel.ModelData", "no DatabaseModel row: no dictionary steps")]
    return [Evidence("DatabaseModel.ModelData", line) for line in f.model.evidence_lines()]


def _invites_model(f: Findings) -> dict[str, Any]:
    inv, since = f.invites, f.invites_since
    window = inv.window
    start = inv.selection.start if inv.selection else None
    summary = (
        f"{inv.meetings:,} invite meetings ({inv.rows:,} rows); {inv.to_mark:,} rows to mark, "
        f"{inv.already_marked:,} already marked."
    )
    if inv.selection is None:
        summary = "Not counted: no synchronizer in use, so nothing is marked."
    elif inv.nothing_to_mark_because:
        summary = inv.nothing_to_mark_because
    absent = f.columns_absent
    evidence = [
        *since.evidence,
        *inv.evidence,
        Evidence(
            "appointment",
            "not in this database (used when present): " + ", ".join(absent)
            if absent
            else "every column and table the rule can use is present",
        ),
    ]
    return {
        "title": "Invite appointments (SPEC step 4)",
        "meetings": inv.meetings,
        "rows": inv.rows,
        "selected_meetings": inv.selected_meetings,
        "to_mark": inv.to_mark,
        "in_sync_range": inv.in_sync_range,
        "already_marked": inv.already_marked,
        "other_warnings": inv.other_warnings,
        "footprints": [
            {
                "kind": fp.kind,
                "label": fp.label,
                "meetings": fp.meetings,
                "rows": fp.rows,
                "counted": fp.counted,
                "note": fp.note,
            }
            for fp in inv.footprints
        ],
        "left_out": [{"reason": reason, "rows": rows} for reason, rows in inv.left_out.items()],
        "invites_since": {"at": iso(since.moment), "source": since.source},
        "window": {
            "from": iso(start),
            "until": iso(window.until) if window else None,
            "from_evidence": _window_start_evidence(f),
            "until_evidence": _window_end_evidence(f),
        },
        "nothing_to_mark_because": inv.nothing_to_mark_because,
        "summary": summary,
        "evidence": _evidence(evidence),
    }


def _window_start_evidence(f: Findings) -> str:
    selection = f.invites.selection
    if selection is None:
        return "no window: nothing is marked"
    if selection.start is None:
        return "no start: invites-since is undetermined and the tool never ran here"
    if selection.start == selection.invites_since:
        return f"invites-since, from {f.invites_since.source}"
    return "the last run of setup-tool, since when Diary Synchronizer Active was off again"


def _window_end_evidence(f: Findings) -> str:
    selection = f.invites.selection
    if selection is None:
        return "no window: nothing is marked"
    system = max(f.preference.system, key=lambda r: r.id, default=None)
    if f.preference.effective is True and system is not None:
        return f"UserPreference row {system.id} has said on since then (updated, else registered)"
    return "this run, which switches Diary Synchronizer Active on"


def _override(row: PreferenceRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "level": row.deflevel,
        "owner_id": row.owner_id,
        "value": row.value,
        "on": row.on is True,
    }


def _superoffice_summary(f: Findings) -> str:
    version = f.superoffice.version
    return {
        "ok": f"SuperOffice {version.label() if version else ''} supports invites.",
        "too_old": f"SuperOffice {version.label() if version else ''} is older than 8.5 R10.",
        "undetermined": "The SuperOffice version could not be determined.",
    }[f.superoffice.status]


def _synchronizer_summary(f: Findings) -> str:
    sync = f.synchronizer
    version = sync.version.label() if sync.version else "unknown"
    return {
        "ok": f"In use, version {version}.",
        "too_old": f"In use, version {version}: older than 3.2.284.",
        "unknown_version": "In use; its version is unknown.",
        "absent": "Not in use.",
        "licensed_only": "Licensed (superoffice.exchange-sync), but nothing shows it installed.",
    }[sync.status]


def step_model(step: StepPlan) -> dict[str, Any]:
    return {
        "id": step.id,
        "title": step.title,
        "decision": step.decision,
        "reason": step.reason,
        "rows": step.rows,
        "sample_ids": step.sample_ids,
        "sql": step.sql,
        "warnings": step.warnings,
        "estimate_seconds": step.estimate_seconds,
        "duration_seconds": step.duration_seconds,
    }


def _summary_line(step: StepPlan, mode: str) -> str:
    will = "will" if mode == "dry-run" else "did"
    if step.decision == "change":
        verb = "changes" if mode == "dry-run" else "changed"
        return (
            f"{step.title}: {verb} {step.rows} row(s)."
            if mode != "dry-run"
            else f"{step.title}: {will} change {step.rows} row(s)."
        )
    return f"{step.title}: {step.reason}"


# NetServer caches preferences; a change reaches users at their next login (SOD user guide,
# editing preference settings). The "No Login" system event and the cache names are not published
# with keys a tool could write, so the tool advises instead (SUPEROFFICE.md).
AFTER_CHANGE = [
    "Users see Diary Synchronizer Active at their next login: SuperOffice (NetServer) caches "
    "preferences.",
    'Upgrade while SuperOffice\'s "No Login" system event is active (SuperOffice Admin > System '
    "events), and recycle the NetServer and web application pools afterwards so every "
    "server reads the new value.",
    "On its first run the synchronizer marks the Outlook/Google side of these invitations itself.",
]


def after_change_advice(steps: list[StepPlan], mode: str) -> list[str]:
    """What an administrator should do after the preference changes (none when it does not)."""
    changing = any(
        step.id == "preference" and step.decision == "change" and (step.rows or mode == "dry-run")
        for step in steps
    )
    return list(AFTER_CHANGE) if changing else []


def _exit_meaning(result: UpgradeResult) -> str:
    if result.mode == "dry-run" and result.exit_code == ExitCode.DONE:
        return "dry run complete (--detailed-exitcode exits 10 when changes are pending)"
    return EXIT_CODE_MEANINGS[result.exit_code]


def report_model(
    result: UpgradeResult,
    db: Database,
    *,
    log_file: str | None = None,
    report_file: str | None = None,
) -> dict[str, Any]:
    plan = result.plan
    warnings = [*plan.findings.warnings, *(w for s in plan.steps for w in s.warnings)]
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "setup-tool", "version": __version__},
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": result.mode,
        "database": {"url": db.display_url, "dialect": db.dialect_name, "table_prefix": db.schema},
        "outcome": result.outcome,
        "outcome_text": OUTCOME_TEXT[result.outcome],
        "exit_code": int(result.exit_code),
        "exit_meaning": _exit_meaning(result),
        "summary": [_summary_line(step, result.mode) for step in plan.steps],
        "findings": findings_model(plan.findings),
        "steps": [step_model(step) for step in plan.steps],
        "warnings": warnings,
        "advice": after_change_advice(plan.steps, result.mode),
        "estimate_seconds": plan.estimate_seconds,
        "run_id": result.run_id,
        "log_file": log_file,
        "report_file": report_file,
    }


def detect_model(findings: Findings, db: Database) -> dict[str, Any]:
    code = ExitCode.DONE
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "setup-tool", "version": __version__},
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": "detect",
        "database": {"url": db.display_url, "dialect": db.dialect_name, "table_prefix": db.schema},
        "outcome": "nothing_to_do",
        "outcome_text": "Detection only: nothing was planned or changed.",
        "exit_code": int(code),
        "exit_meaning": EXIT_CODE_MEANINGS[code],
        "summary": [f["summary"] for f in findings_model(findings).values()],
        "findings": findings_model(findings),
        "steps": [],
        "warnings": findings.warnings,
        "advice": [],
        "estimate_seconds": None,
        "run_id": None,
        "log_file": None,
        "report_file": None,
    }


def history_model(runs: list[dict[str, Any]], db: Database) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "setup-tool", "version": __version__},
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "database": {"url": db.display_url, "dialect": db.dialect_name, "table_prefix": db.schema},
        "runs": [_run_model(run) for run in runs],
    }


def _run_model(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": run["run_id"],
        "started_at": iso(run["started_at"]),
        "finished_at": iso(run["finished_at"]),
        "mode": run["mode"],
        "outcome": run["outcome"],
        "exit_code": run["exit_code"],
        "tool_version": run["tool_version"],
        "host": run["host"],
        "os_user": run["os_user"],
        "superoffice_version": run["superoffice_version"],
        "synchronizer_version": run["synchronizer_version"],
        "undone_by": run["undone_by_run_id"],
        "steps": [
            {
                "id": s["step_key"],
                "decision": "change" if s["rows_changed"] else "done",
                "status": s["status"],
                "rows": s["rows_changed"],
            }
            for s in run["steps"]
        ],
    }
