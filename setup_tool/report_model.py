"""One report model (a plain JSON-able dict) for every format; see docs/report.schema.json."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from setup_tool import __version__
from setup_tool.database import Database
from setup_tool.errors import EXIT_CODE_MEANINGS, ExitCode
from setup_tool.findings import Evidence, Findings
from setup_tool.preferences import PreferenceRow
from setup_tool.steps import BatchFigures, StepPlan
from setup_tool.upgrade import OUTCOME_TEXT, UpgradeResult

if TYPE_CHECKING:
    from setup_tool.run_details import RunDetails

# 2: run and step start/end times and durations, time-zone-aware timestamps, warnings as
# objects with a stable code, what a real run changed (before -> after), resumes, figures.
SCHEMA_VERSION = 2


def utc_iso(value: datetime | None) -> str | None:
    """A timestamp as ISO 8601 with its offset (2026-12-02T08:36:05+00:00). Naive datetimes
    are UTC here: SuperOffice and the tool's records store UTC without a zone."""
    if value is None:
        return None
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.isoformat(timespec="seconds")


def _now() -> str | None:
    return utc_iso(datetime.now(UTC))


# Stable codes for the warnings a report carries: scripts and dashboards key on the code, the
# message is for people and may be reworded. Matched on the wording the producers use.
WARNING_CODES: tuple[tuple[str, str], ...] = (
    ("invites_since_undetermined", "invites-since is undetermined"),
    ("footprints_narrowed", "Only these footprints count"),
    ("superoffice_version_from_operator", "The SuperOffice version was given by the operator"),
    ("duplicate_system_rows", "system-wide rows exist for this preference"),
    ("overrides_left_off", "Left off:"),
    ("other_caution_warnings", "carry another caution warning"),
)


def warning_code(message: str, step_id: str | None = None) -> str:
    """The stable code of a warning; one not listed above is `<step>_warning` (or
    `finding_warning`), still stable for the step that gives it."""
    for code, wording in WARNING_CODES:
        if wording in message:
            return code
    return f"{step_id}_warning" if step_id else "finding_warning"


def warning_model(message: str, step_id: str | None = None) -> dict[str, Any]:
    return {"code": warning_code(message, step_id), "message": message, "step": step_id}


def _evidence(items: list[Evidence]) -> list[dict[str, str]]:
    # "strength" where the evidence says how strong it is (documented, observed, inferred...).
    return [
        {"source": e.source, "detail": e.detail, **({"strength": e.strength} if e.strength else {})}
        for e in items
    ]


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
            "decided_by": sync.decided_by,
            "evidence": _evidence(sync.evidence),
        },
        "preference": {
            "title": "Diary Synchronizer Active (Mail/DiarySynchronizerActive)",
            "effective": pref.effective_label,
            "encoding": pref.encoding.label,
            "system_rows": [{"id": r.id, "value": r.value} for r in pref.system],
            "overrides": [_override(r) for r in pref.overrides],
            "after": None,  # filled in after a real run
            "summary": f"System-wide it is {pref.effective_label}; {len(pref.overrides_off)} "
            "database/group/individual row(s) switch it off.",
            "evidence": _evidence(pref.evidence),
        },
        "travel": {
            "title": "Travel",
            "enabled": f.travel.enabled,
            "summary": f.travel.summary,
            "evidence": _evidence(f.travel.evidence),
        },
        "invites": _invites_model(f),
        "history": {
            "title": "Earlier runs of setup-tool",
            "runs": len(hist.runs),
            "last_run": {
                "id": last["run_id"],
                "started_at": utc_iso(last["started_at"]),
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
        "invites_since": {"at": utc_iso(since.moment), "source": since.source},
        "window": {
            "from": utc_iso(start),
            "until": utc_iso(window.until) if window else None,
            "from_evidence": _window_start_evidence(f),
            "until_evidence": _window_end_evidence(f),
        },
        "nothing_to_mark_because": inv.nothing_to_mark_because,
        "marked": None,  # filled in after a real run
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
    if f.preference.default_on_by_operator:
        return "no window: the operator says it was on by default since invites arrived"
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
    summary = {
        "ok": f"In use, version {version}.",
        "too_old": f"In use, version {version}: older than 3.2.284.",
        "unknown_version": "In use; its version is unknown.",
        "absent": "Not in use.",
        "licensed_only": "Licensed, but nothing shows it installed.",
    }[sync.status]
    return f"{summary} {sync.decided_by}" if sync.decided_by else summary


def step_model(step: StepPlan, result: UpgradeResult | None = None) -> dict[str, Any]:
    times = result.step_times.get(step.id) if result is not None else None
    return {
        "id": step.id,
        "title": step.title,
        "decision": step.decision,
        "reason": step.reason,
        "rows": step.rows,
        "sample_ids": step.sample_ids,
        "sql": step.sql,
        "warnings": [{"code": warning_code(w, step.id), "message": w} for w in step.warnings],
        "estimate_seconds": step.estimate_seconds,
        "started": utc_iso(times.started) if times else None,
        "finished": utc_iso(times.finished) if times else None,
        "duration_seconds": times.seconds if times else step.duration_seconds,
        "batches": batches_model(step.batches, ran=step.duration_seconds is not None),
        "changes": [],
    }


def batches_model(figures: BatchFigures | None, ran: bool) -> dict[str, Any] | None:
    """A step's batches: its pace in a plan; after a run, also the longest batch, the lock waits
    it gave up, the deadlocks it lost and the retries they cost (issue 13)."""
    if figures is None:
        return None
    waits = figures.lock_waits
    pace = figures.pace_text()
    return {
        "size": figures.size,
        "pause_seconds": figures.pause_seconds,
        "planned": figures.planned,
        "done": figures.done if ran else None,
        "longest_seconds": figures.longest_seconds,
        "longest_batch": figures.longest_batch,
        "longest_lock_seconds": figures.longest_lock_seconds,
        "lock_timeouts": waits.timeouts,
        "deadlocks": waits.deadlocks,
        "retries": waits.retries,
        "paused_seconds": round(figures.paused_seconds, 3),
        "summary": figures.outcome_text() if ran else pace[:1].upper() + pace[1:] + ".",
    }


def _summary_line(step: StepPlan, mode: str) -> str:
    if step.decision == "change":
        verb = "will change" if mode == "dry-run" else "changed"
        return f"{step.title}: {verb} {step.rows:,} row(s)."
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
    details: RunDetails | None = None,
) -> dict[str, Any]:
    """The report of a dry run or a real run. With `details` (setup_tool.run_details) it also
    shows what a real run changed, its batches and the figures."""
    plan = result.plan
    warnings = [
        *(warning_model(w) for w in plan.findings.warnings),
        *(warning_model(w, s.id) for s in plan.steps for w in s.warnings),
    ]
    steps = [step_model(step, result) for step in plan.steps]
    findings = findings_model(plan.findings)
    applied = result.mode == "upgrade" and result.run_id is not None
    if details is not None:
        for step in steps:
            step["changes"] = details.changes.get(step["id"], [])
        if applied:
            findings["preference"]["after"] = details.preference_after
    if applied:
        marked = [s for s in plan.steps if s.id == "mark_invites" and s.decision == "change"]
        findings["invites"]["marked"] = marked[0].rows if marked else 0
        _as_before_the_run(findings)
    duration = (
        round((result.finished - result.started).total_seconds(), 3)
        if result.started and result.finished
        else None
    )
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "setup-tool", "version": __version__},
        "generated_at": _now(),
        "mode": result.mode,
        "database": _database(db),
        "outcome": result.outcome,
        "outcome_text": OUTCOME_TEXT[result.outcome],
        "exit_code": int(result.exit_code),
        "exit_meaning": _exit_meaning(result),
        "started": utc_iso(result.started),
        "finished": utc_iso(result.finished),
        "duration_seconds": duration,
        "summary": [_summary_line(step, result.mode) for step in plan.steps],
        "findings": findings,
        "steps": steps,
        "warnings": warnings,
        "advice": after_change_advice(plan.steps, result.mode),
        # A plan's estimate; a real run reports what it took instead.
        "estimate_seconds": None if applied else plan.estimate_seconds,
        "run_id": result.run_id,
        "resumed": _resumed(result),
        "figures": figures_model(details),
        "log_file": log_file,
        "report_file": report_file,
    }


def _as_before_the_run(findings: dict[str, Any]) -> None:
    """After a real run the findings describe the database before it: their summaries say so,
    and the invites and preference summaries end with what the run did."""
    invites, pref = findings["invites"], findings["preference"]
    for finding in findings.values():
        finding["summary"] = f"Before this run: {finding['summary']}"
    invites["summary"] += f" This run marked {invites['marked']:,} rows."
    if pref.get("after") is not None:
        pref["summary"] += f" After this run it is {pref['after']}."


def _database(db: Database) -> dict[str, Any]:
    return {"url": db.display_url, "dialect": db.dialect_name, "table_prefix": db.schema}


def _resumed(result: UpgradeResult) -> dict[str, Any] | None:
    resumed = result.resumed
    if resumed is None:
        return None
    return {
        "run_id": resumed.run_id,
        "step_row_id": resumed.step_row_id,
        "rows_before": resumed.rows_before,
        "batches_before": resumed.batches_before,
    }


def figures_model(details: RunDetails | None) -> dict[str, Any]:
    """The numbers behind the report's charts (the HTML draws them, the others list them)."""
    from setup_tool.run_details import TOP_ASSOCIATES

    if details is None:
        return {
            "of": "to_mark",
            "by_year": [],
            "by_associate": [],
            "other_associates": None,
            "batches": [],
        }
    top = details.by_associate[:TOP_ASSOCIATES]
    rest = details.by_associate[TOP_ASSOCIATES:]
    return {
        "of": details.figures_of,
        "by_year": [{"year": year, "rows": rows} for year, rows in details.by_year],
        "by_associate": [
            {"associate_id": associate_id, "name": name, "rows": rows}
            for associate_id, name, rows in top
        ],
        "other_associates": {"associates": len(rest), "rows": sum(r[2] for r in rest)}
        if rest
        else None,
        "batches": [
            {
                "step_row_id": b["step_row_id"],
                "batch_no": b["batch_no"],
                "lo": b["lo"],
                "hi": b["hi"],
                "rows": b["rows_changed"],
                "seconds": b["seconds"],
                "finished": utc_iso(b["finished_at"]),
            }
            for b in details.batches
        ],
    }


def detect_model(findings: Findings, db: Database) -> dict[str, Any]:
    code = ExitCode.DONE
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "setup-tool", "version": __version__},
        "generated_at": _now(),
        "mode": "detect",
        "database": _database(db),
        "outcome": "nothing_to_do",
        "outcome_text": "Detection only: nothing was planned or changed.",
        "exit_code": int(code),
        "exit_meaning": EXIT_CODE_MEANINGS[code],
        "started": None,
        "finished": None,
        "duration_seconds": None,
        "summary": [f["summary"] for f in findings_model(findings).values()],
        "findings": findings_model(findings),
        "steps": [],
        "warnings": [warning_model(w) for w in findings.warnings],
        "advice": [],
        "estimate_seconds": None,
        "run_id": None,
        "resumed": None,
        "figures": figures_model(None),
        "log_file": None,
        "report_file": None,
    }


def history_model(runs: list[dict[str, Any]], db: Database) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "setup-tool", "version": __version__},
        "generated_at": _now(),
        "database": _database(db),
        "runs": [_run_model(run, runs) for run in runs],
    }


def _run_model(run: dict[str, Any], every_run: list[dict[str, Any]]) -> dict[str, Any]:
    started, finished = run["started_at"], run["finished_at"]
    return {
        "id": run["run_id"],
        "started_at": utc_iso(started),
        "finished_at": utc_iso(finished),
        "duration_seconds": (finished - started).total_seconds()
        if started is not None and finished is not None
        else None,
        "mode": run["mode"],
        "outcome": run["outcome"],
        "exit_code": run["exit_code"],
        "tool_version": run["tool_version"],
        "host": run["host"],
        "os_user": run["os_user"],
        "superoffice_version": run["superoffice_version"],
        "synchronizer_version": run["synchronizer_version"],
        "undone_by": run["undone_by_run_id"],
        "has_report": bool(run.get("report_json")),
        "steps": [_step_row_model(s, run["run_id"]) for s in run["steps"]],
        # Steps of earlier runs that this run resumed and completed.
        "finished_steps": [
            _step_row_model(s, run["run_id"])
            for other in every_run
            if other["run_id"] != run["run_id"]
            for s in other["steps"]
            if s.get("finished_by_run_id") == run["run_id"]
        ],
    }


def _step_row_model(s: dict[str, Any], run_id: int) -> dict[str, Any]:
    started, finished = s["started_at"], s["finished_at"]
    return {
        "id": s["step_key"],
        "run_id": s["run_id"],
        "decision": "change" if s["rows_changed"] else "done",
        "status": s["status"],
        "rows": s["rows_changed"],
        "batches": s["batches_done"],
        "started_at": utc_iso(started),
        "finished_at": utc_iso(finished),
        "duration_seconds": (finished - started).total_seconds()
        if started is not None and finished is not None
        else None,
        "finished_by": s.get("finished_by_run_id"),
    }


def normalised_stored_report(model: dict[str, Any]) -> dict[str, Any]:
    """A report a run stored, in the shape the templates read: one from an older version of
    the tool (schema 1) gets the keys schema 2 added, empty."""
    if model.get("schema_version", 1) >= SCHEMA_VERSION:
        return model
    upgraded = dict(model)
    for key in ("started", "finished", "duration_seconds", "resumed"):
        upgraded.setdefault(key, None)
    upgraded.setdefault("figures", figures_model(None))
    upgraded["warnings"] = [
        w if isinstance(w, dict) else warning_model(str(w)) for w in model.get("warnings", [])
    ]
    steps = []
    for step in model.get("steps", []):
        step = dict(step)
        step["warnings"] = [
            w if isinstance(w, dict) else {"code": warning_code(str(w), step["id"]), "message": w}
            for w in step.get("warnings", [])
        ]
        for key in ("started", "finished"):
            step.setdefault(key, None)
        step.setdefault("changes", [])
        steps.append(step)
    upgraded["steps"] = steps
    findings = {key: dict(value) for key, value in model.get("findings", {}).items()}
    if "preference" in findings:
        findings["preference"].setdefault("after", None)
    if "invites" in findings:
        findings["invites"].setdefault("marked", None)
    upgraded["findings"] = findings
    upgraded["schema_version"] = SCHEMA_VERSION
    return upgraded
