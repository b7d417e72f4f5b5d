"""Step 1 of the upgrade: find out, read-only, what this database and this machine are."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, and_, exists, func, select

from setup_tool.bookkeeping import Bookkeeping, installed_revision, runs
from setup_tool.clock import is_real_date
from setup_tool.findings import (
    Evidence,
    Findings,
    HistoryFinding,
    InvitesSince,
    MarkingWindow,
    PreferenceFinding,
    SuperOfficeFinding,
    SynchronizerFinding,
    TravelFinding,
    UnfinishedMarking,
)
from setup_tool.host_probe import HostProbe
from setup_tool.invites import ALL_FOOTPRINTS, EMPTY_DATE_BEFORE, Selection
from setup_tool.model_data import ModelDataReading, read_model_data
from setup_tool.preferences import (
    DIARY_SYNC,
    ENABLE_TRAVEL,
    OVERRIDE_LEVELS,
    bool_values_in_use,
    detect_encoding,
    effective_system_value,
    individual_names,
    preference_rows,
    system_rows,
)
from setup_tool.schema import SuperOfficeTables
from setup_tool.steps.mark_invites import count_invites, marking_window
from setup_tool.versions import (
    SuperOfficeVersion,
    SynchronizerVersion,
    load_known_builds,
    newest_superoffice_version,
    parse_superoffice_version,
    parse_synchronizer_version,
    try_parse_superoffice_version,
)

EXCHANGE_SYNC_LICENCE = "superoffice.exchange-sync"


@dataclass(frozen=True)
class OperatorAnswers:
    """What the operator said (wizard prompt, option, environment or answer file)."""

    superoffice_version: str | None = None
    synchronizer_version: str | None = None  # "unknown": in use, version not known
    no_synchronizer: bool = False
    known_builds_file: Path | None = None
    invites_since: datetime | None = None  # --invites-since: wins over the database's evidence
    footprints: frozenset[str] = ALL_FOOTPRINTS  # --footprints: which footprints count


def detect(
    conn: Connection,
    tables: SuperOfficeTables,
    books: Bookkeeping,
    answers: OperatorAnswers,
    probe: HostProbe,
    now: datetime,
) -> Findings:
    superoffice = detect_superoffice(conn, tables, answers)
    synchronizer = detect_synchronizer(conn, tables, answers, probe)
    preference = detect_preference(conn, tables)
    history = detect_history(conn, books)
    since = detect_invites_since(conn, tables, answers)
    window = marking_window(history, preference, now) if synchronizer.in_use else None
    selection = Selection(window, since.moment, answers.footprints) if window else None
    return Findings(
        superoffice=superoffice,
        synchronizer=synchronizer,
        preference=preference,
        travel=detect_travel(conn, tables),
        invites=count_invites(conn, tables, selection, since, now),
        history=history,
        invites_since=since,
        model=detect_model(conn, tables),
        columns_absent=tables.absent_columns(),
        warnings=_warnings(superoffice, answers, since, tables),
    )


def detect_superoffice(
    conn: Connection, tables: SuperOfficeTables, answers: OperatorAnswers
) -> SuperOfficeFinding:
    known_builds = load_known_builds(answers.known_builds_file)
    evidence: list[Evidence] = []
    found: list[SuperOfficeVersion] = []
    for source, detail, text in _superoffice_version_strings(conn, tables):
        # A real schema may allow NULL here; a missing version is unreadable, not a crash.
        version = try_parse_superoffice_version(text, known_builds) if text else None
        verdict = version.label() if version else "not a version string this tool can read"
        evidence.append(Evidence(source, f"{detail} -> {verdict}"))
        if version is not None:
            found.append(version)
    chosen = newest_superoffice_version(found)
    if answers.superoffice_version:
        chosen = parse_superoffice_version(answers.superoffice_version, known_builds)
        evidence.insert(0, Evidence("operator", f"--superoffice-version {chosen.text!r}"))
    if not evidence:
        evidence.append(Evidence("ProductVersion", "no SuperOffice row and no DatabaseModel row"))
    return SuperOfficeFinding(chosen, evidence)


def _superoffice_version_strings(
    conn: Connection, tables: SuperOfficeTables
) -> list[tuple[str, str, str | None]]:
    strings: list[tuple[str, str, str | None]] = []
    pv = tables.productversion
    if pv is not None:
        query = (
            select(pv.c.ProductVersion_id, pv.c.ownerName, pv.c.codeName, pv.c.version)
            .where(func.lower(pv.c.ownerName).like("%superoffice%"))
            .order_by(pv.c.ProductVersion_id)
        )
        for row_id, owner, code, version in conn.execute(query):
            detail = f"row {row_id}: ownerName={owner!r}, codeName={code!r}, version={version!r}"
            strings.append(("ProductVersion", detail, version))
    dm = tables.databasemodel
    if dm is not None:
        for row_id, model_version in conn.execute(select(dm.c.DatabaseModel_id, dm.c.ModelVersion)):
            strings.append(
                ("DatabaseModel", f"row {row_id}: ModelVersion={model_version!r}", model_version)
            )
    return strings


def detect_invites_since(
    conn: Connection, tables: SuperOfficeTables, answers: OperatorAnswers
) -> InvitesSince:
    """Since when invites are possible here: the first SuperOffice ProductVersion row at 8.5 R10
    or newer, or the first invitation row, whichever is earlier (SPEC step 4); the operator's
    --invites-since wins. SuperOffice's empty dates (1753, 1900) are no evidence."""
    evidence: list[Evidence] = []
    candidates: list[tuple[datetime, str]] = []
    known_builds = load_known_builds(answers.known_builds_file)
    pv = tables.productversion
    if pv is not None:
        query = (
            select(pv.c.ProductVersion_id, pv.c.version, pv.c.registered)
            .where(func.lower(pv.c.ownerName).like("%superoffice%"))
            .order_by(pv.c.registered)
        )
        for row_id, text, registered in conn.execute(query):
            version = try_parse_superoffice_version(text, known_builds) if text else None
            if version is None or version.supports_invites() is not True:
                continue
            if is_real_date(registered):
                candidates.append((registered, "ProductVersion"))
                evidence.append(
                    Evidence(
                        "ProductVersion",
                        f"row {row_id}: {version.label()} registered {registered:%Y-%m-%d %H:%M:%S}"
                        " UTC (the first SuperOffice version with invites)",
                    )
                )
                break
    if tables.invitation is not None:
        i = tables.invitation
        first = conn.execute(
            select(func.min(i.c.registered)).where(i.c.registered >= EMPTY_DATE_BEFORE)
        ).scalar()
        if first is not None:
            candidates.append((first, "invitation"))
            evidence.append(
                Evidence("invitation", f"first invitation row registered {first:%Y-%m-%d %H:%M:%S}")
            )
        else:
            evidence.append(Evidence("invitation", "no invitation row with a real date"))
    email_rows = _email_id_rows_exist(conn, tables)
    if answers.invites_since is not None:
        evidence.insert(
            0, Evidence("operator", f"--invites-since {answers.invites_since:%Y-%m-%d %H:%M:%S}")
        )
        return InvitesSince(answers.invites_since, "operator", evidence, email_rows)
    if not candidates:
        evidence.append(
            Evidence(
                "ProductVersion",
                "no SuperOffice row at 8.5 R10 or newer with a real registered date, no "
                "invitation row: invites-since is undetermined, so emailId is no evidence",
            )
        )
        return InvitesSince(None, "undetermined", evidence, email_rows)
    moment, source = min(candidates)
    return InvitesSince(moment, source, evidence, email_rows)


def _email_id_rows_exist(conn: Connection, tables: SuperOfficeTables) -> bool:
    a = tables.appointment
    return bool(conn.execute(select(exists().where(a.c.emailId != 0))).scalar())


def detect_model(conn: Connection, tables: SuperOfficeTables) -> ModelDataReading | None:
    """The applied dictionary steps, where DatabaseModel.ModelData decodes (an inference)."""
    dm = tables.databasemodel
    if dm is None:
        return None
    row = conn.execute(
        select(dm.c.ModelData).order_by(dm.c.DatabaseModel_id.desc()).limit(1)
    ).first()
    return read_model_data(row[0]) if row is not None else None


def detect_synchronizer(
    conn: Connection, tables: SuperOfficeTables, answers: OperatorAnswers, probe: HostProbe
) -> SynchronizerFinding:
    evidence: list[Evidence] = []
    versions: list[SynchronizerVersion] = []
    installed = False
    for row_id, owner, code, text in _synchronizer_product_rows(conn, tables):
        installed = True
        version = _try_sync_version(text)
        evidence.append(
            Evidence(
                "ProductVersion",
                f"row {row_id}: ownerName={owner!r}, codeName={code!r}, version={text!r}",
            )
        )
        versions += [version] if version else []
    for trace in probe.synchronizer_traces():
        installed = True
        evidence.append(Evidence(trace.kind, trace.detail))
        version = _try_sync_version(trace.version) if trace.version else None
        versions += [version] if version else []
    if not evidence:
        evidence.append(Evidence("host", probe.describe() + ": no synchronizer found"))
    licensed = _licensed(conn, tables, evidence)
    version = max(versions) if versions else None
    in_use: bool | None = installed or (None if licensed else False)
    if answers.no_synchronizer:
        evidence.insert(0, Evidence("operator", "--no-synchronizer"))
        return SynchronizerFinding(False, None, licensed, evidence)
    if answers.synchronizer_version:
        text = answers.synchronizer_version
        evidence.insert(0, Evidence("operator", f"--synchronizer-version {text!r}"))
        operator_version = None if text.lower() == "unknown" else parse_synchronizer_version(text)
        return SynchronizerFinding(True, operator_version or version, licensed, evidence)
    return SynchronizerFinding(in_use, version, licensed, evidence)


def _try_sync_version(text: str | None) -> SynchronizerVersion | None:
    from setup_tool.versions import VersionParseError

    try:
        return parse_synchronizer_version(text or "")
    except VersionParseError:
        return None


def _synchronizer_product_rows(
    conn: Connection, tables: SuperOfficeTables
) -> list[tuple[int, str, str, str]]:
    pv = tables.productversion
    if pv is None:
        return []
    # Both words, like the host probe: another InfoBridge product is no synchronizer, and a
    # row for some other vendor's synchronizer is not InfoBridge's.
    names = func.lower(func.coalesce(pv.c.ownerName, "") + " " + func.coalesce(pv.c.codeName, ""))
    query = (
        select(pv.c.ProductVersion_id, pv.c.ownerName, pv.c.codeName, pv.c.version)
        .where(names.like("%infobridge%"), names.like("%synchroni%"))
        .order_by(pv.c.ProductVersion_id)
    )
    return [tuple(row) for row in conn.execute(query)]  # type: ignore[misc]


def _licensed(conn: Connection, tables: SuperOfficeTables, evidence: list[Evidence]) -> bool:
    licence, owner = tables.modulelicense, tables.moduleowner
    if licence is None:
        evidence.append(
            Evidence(
                "ModuleLicense",
                "no ModuleLicense table of the documented shape: licence not checked",
            )
        )
        return False
    owners = {}
    if owner is not None:
        owners = dict(conn.execute(select(owner.c.ModuleOwner_id, owner.c.ownerName)).all())
    rows = conn.execute(
        select(licence.c.ModuleLicense_id, licence.c.moduleName, licence.c.ModuleOwner_id)
    )
    for licence_id, name, owner_id in rows:
        # The module is named either in full or as <owner>.<module>.
        name = name or ""  # NULL where a real schema allows it
        full = f"{owners.get(owner_id) or ''}.{name}".lower()
        if name.lower() == EXCHANGE_SYNC_LICENCE or full == EXCHANGE_SYNC_LICENCE:
            evidence.append(
                Evidence(
                    "ModuleLicense",
                    f"row {licence_id}: licence module {EXCHANGE_SYNC_LICENCE} "
                    "(licensed for the InfoBridge Exchange synchronizer; "
                    "licensed is not proof of use)",
                )
            )
            return True
    return False


def detect_preference(conn: Connection, tables: SuperOfficeTables) -> PreferenceFinding:
    rows = preference_rows(conn, tables, *DIARY_SYNC)
    own_bools = [r.value for r in rows if r.on is not None]
    encoding = detect_encoding(own_bools or bool_values_in_use(conn, tables))
    names = individual_names(conn, tables, rows)
    evidence = [Evidence("UserPreference", row.describe(names.get(row.id))) for row in rows]
    if not rows:
        evidence.append(
            Evidence("UserPreference", "no Mail/DiarySynchronizerActive row at any level")
        )
    source = "its own rows" if own_bools else "the database's Bool preferences"
    evidence.append(
        Evidence("UserPreference", f"Bool values written as {encoding.label} ({source})")
    )
    return PreferenceFinding(
        rows=rows,
        system=system_rows(rows),
        overrides=[r for r in rows if r.deflevel in OVERRIDE_LEVELS],
        effective=effective_system_value(rows),
        encoding=encoding,
        evidence=evidence,
        owner_names=names,
    )


def detect_travel(conn: Connection, tables: SuperOfficeTables) -> TravelFinding:
    rows = preference_rows(conn, tables, *ENABLE_TRAVEL)
    evidence = [Evidence("UserPreference", row.describe()) for row in rows]
    enabled = effective_system_value(rows) is True
    if not rows:
        evidence.append(Evidence("UserPreference", "no Travel/EnableTravel row: Travel is off"))
    tc = tables.travelcurrent
    if tc is not None:
        for current_id, level in conn.execute(select(tc.c.current_id, tc.c.systemlevel)):
            evidence.append(
                Evidence("travelcurrent", f"current_id={current_id}, systemlevel={level}")
            )
    return TravelFinding(enabled, evidence)


def detect_history(conn: Connection, books: Bookkeeping) -> HistoryFinding:
    revision = installed_revision(conn, books.schema)
    if revision is None:
        return HistoryFinding(
            None, [], None, None, [Evidence("setup_tool_run", "no earlier run of setup-tool")]
        )
    past = runs(conn, books)
    # A run an undo claimed protects nothing, even while that undo is unfinished (setup_tool.undo).
    active = [r for r in past if r["mode"] == "upgrade" and r["undone_by_run_id"] is None]
    on_times = [r["preference_on_at"] for r in active if r["preference_on_at"] is not None]
    evidence = [
        Evidence("setup_tool_run", f"{len(past)} earlier run(s), bookkeeping revision {revision}")
    ]
    status = {r["run_id"]: r["status"] for r in past}
    for r in past:
        undoer = r["undone_by_run_id"]
        if r["mode"] == "upgrade" and undoer is not None and status.get(undoer) != "completed":
            evidence.append(
                Evidence(
                    "setup_tool_run",
                    f"run {r['run_id']} is half undone (undo run {undoer} {status.get(undoer)}): "
                    "it protects nothing any more, so what came back is marked again; "
                    "'setup-tool undo' finishes the undo",
                )
            )
    unfinished = _unfinished_marking(conn, books, active)
    if unfinished:
        evidence.append(
            Evidence(
                "setup_tool_step",
                f"marking step of run {unfinished.run_id} "
                f"stopped after {unfinished.rows_changed} rows: it will resume",
            )
        )
    return HistoryFinding(revision, past, max(on_times, default=None), unfinished, evidence)


def _unfinished_marking(
    conn: Connection, books: Bookkeeping, active_runs: list[dict[str, object]]
) -> UnfinishedMarking | None:
    active_ids = [r["run_id"] for r in active_runs]
    step = books.step
    row = (
        conn.execute(
            select(step)
            .where(
                and_(
                    step.c.step_key == "mark_invites",
                    step.c.status != "completed",
                    step.c.run_id.in_(active_ids),
                    step.c.window_until.is_not(None),
                )
            )
            .order_by(step.c.step_row_id.desc())
            .limit(1)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return UnfinishedMarking(
        step_row_id=row["step_row_id"],
        run_id=row["run_id"],
        selection=Selection(
            MarkingWindow(row["window_from"], row["window_until"]),
            row["invites_since"],
            frozenset((row["footprints"] or ",".join(ALL_FOOTPRINTS)).split(",")),
        ),
        checkpoint_key=row["checkpoint_key"],
        rows_changed=row["rows_changed"],
        batches_done=row["batches_done"],
    )


def _warnings(
    superoffice: SuperOfficeFinding,
    answers: OperatorAnswers,
    since: InvitesSince,
    tables: SuperOfficeTables,
) -> list[str]:
    warnings = []
    if since.moment is None and since.email_id_rows_exist and "email-id" in answers.footprints:
        warnings.append(
            "invites-since is undetermined, so footprint (c) (emailId) is not used: meetings "
            "whose only footprint is an e-mailed invitation are not marked. Give "
            "--invites-since DATE (the day this database was upgraded to 8.5 R10) to use it."
        )
    if answers.footprints != ALL_FOOTPRINTS:
        warnings.append(
            "Only these footprints count (--footprints): " + ", ".join(sorted(answers.footprints))
        )
    if answers.superoffice_version and len(superoffice.evidence) > 1:
        warnings.append(
            "The SuperOffice version was given by the operator; the database's own "
            "version rows are listed as evidence for comparison."
        )
    return warnings
