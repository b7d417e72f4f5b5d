"""Step 1 of the upgrade: find out, read-only, what this database and this machine are."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, exists, func, select

from setup_tool.bookkeeping import Bookkeeping, installed_revision, runs
from setup_tool.clock import is_real_date
from setup_tool.findings import (
    REFUSAL_HINT,
    DatabaseKind,
    DatabaseRole,
    Evidence,
    Findings,
    HistoryFinding,
    InvitesSince,
    MarkingWindow,
    PreferenceFinding,
    Strength,
    SuperOfficeFinding,
    SynchronizerFinding,
    TravelFinding,
)
from setup_tool.host_probe import HostProbe, HostTrace, trace_strength
from setup_tool.invites import ALL_FOOTPRINTS, EMPTY_DATE_BEFORE, Selection
from setup_tool.model_data import ModelDataReading, read_model_data
from setup_tool.preferences import (
    DIARY_SYNC,
    ENABLE_TRAVEL,
    HARD_DEFAULT_LEVEL,
    OVERRIDE_LEVELS,
    bool_values_in_use,
    detect_encoding,
    effective_system_value,
    individual_names,
    override_limit,
    preference_rows,
    system_rows,
)
from setup_tool.schema import SuperOfficeTables
from setup_tool.steps.mark_invites import count_invites, marking_window, unfinished_marking
from setup_tool.versions import (
    SuperOfficeVersion,
    SynchronizerVersion,
    invites_documented_note,
    load_known_builds,
    newest_superoffice_version,
    parse_superoffice_version,
    parse_synchronizer_version,
    try_parse_superoffice_version,
)

EXCHANGE_SYNC_LICENCE = "superoffice.exchange-sync"
NEBULA_LICENCE = "superoffice.nebula"
# The licence modules that name the InfoBridge synchronizer: what each is, and how strong that is.
SYNCHRONIZER_LICENCES: dict[str, tuple[str, Strength, str]] = {
    EXCHANGE_SYNC_LICENCE: (
        "licensed for the InfoBridge Exchange synchronizer",
        "documented",
        "SUPEROFFICE.md licence modules; SOD admin/license: the 'Exchange Synchronizer' licence "
        "allows the synchronizer",
    ),
    NEBULA_LICENCE: (
        '"InfoBridge SuperOffice Synchronizer", a user licence',
        "observed in the field",
        "seen in customer databases (issue 16); SuperOffice's public docs do not list it",
    ),
}
# ProductVersion: SuperOffice does not publish what its installer or InfoBridge's write there
# (SUPEROFFICE.md, Open points), so a row matched on "InfoBridge ... synchronizer" is inferred.
PRODUCT_VERSION_BASIS = (
    "what is written in ProductVersion is not published; matched on 'InfoBridge' and "
    "'synchroni' in ownerName/codeName"
)
_RANK: dict[Strength, int] = {
    "operator": 0,
    "documented": 1,
    "observed in the field": 2,
    "inferred": 3,
}


@dataclass(frozen=True)
class OperatorAnswers:
    """What the operator said (wizard prompt, option, environment or answer file)."""

    superoffice_version: str | None = None
    synchronizer_version: str | None = None  # "unknown": in use, version not known
    no_synchronizer: bool = False
    known_builds_file: Path | None = None
    invites_since: datetime | None = None  # --invites-since: wins over the database's evidence
    footprints: frozenset[str] = ALL_FOOTPRINTS  # --footprints: which footprints count
    # --preference-on-by-default: with no system-wide row, Diary Synchronizer Active was on by
    # default since invites arrived (SuperOffice's 8.5 R11 release notes), so nothing was made
    # while it was off. Without it, SPEC's reading: no row = not on.
    preference_on_by_default: bool = False


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
    preference = detect_preference(conn, tables, superoffice, answers)
    history = detect_history(conn, books)
    since = detect_invites_since(conn, tables, answers)
    travel = detect_travel(conn, tables)
    window = marking_window(history, preference, now) if synchronizer.in_use else None
    if window is not None and preference.default_on_by_operator:
        window = operator_default_window(since.moment)
    selection = Selection(window, since.moment, answers.footprints) if window else None
    invites = count_invites(conn, tables, selection, since, now)
    if selection is not None and preference.default_on_by_operator and not invites.to_mark:
        invites = dataclasses.replace(invites, nothing_to_mark_because=OPERATOR_DEFAULT_ON)
    return Findings(
        superoffice=superoffice,
        synchronizer=synchronizer,
        preference=preference,
        travel=travel,
        invites=invites,
        history=history,
        invites_since=since,
        model=detect_model(conn, tables),
        columns_absent=tables.absent_columns(),
        warnings=[
            *_warnings(superoffice, answers, since, tables),
            *fidelity_warnings(superoffice, preference, travel, answers),
        ],
    )


OPERATOR_DEFAULT_ON = (
    "The operator says Diary Synchronizer Active was on by default since invites arrived "
    "(--preference-on-by-default) and no UserPreference row says otherwise: no invite "
    "appointment was made while it was off, so nothing is marked."
)


def operator_default_window(invites_since: datetime | None) -> MarkingWindow:
    """The empty window of the operator's reading: on since invites arrived, so nothing was
    registered while it was off. Without an invites-since, it ends before any real date."""
    moment = invites_since or EMPTY_DATE_BEFORE
    return MarkingWindow(moment, moment)


def fidelity_warnings(
    superoffice: SuperOfficeFinding,
    preference: PreferenceFinding,
    travel: TravelFinding,
    answers: OperatorAnswers,
) -> list[str]:
    """What the admin must know about SuperOffice's own documentation of this database."""
    warnings = []
    if travel.role.refuses:
        warnings.append(
            f"{travel.role.sentence()} setup-tool upgrade and undo refuse to run here (exit 3). "
            + REFUSAL_HINT
        )
    elif travel.role.kind == "undetermined":
        warnings.append(travel.role.sentence())
    note = invites_documented_note(superoffice.version)
    if note:
        warnings.append(note)
    if answers.preference_on_by_default and not preference.default_on_by_operator:
        warnings.append(
            "--preference-on-by-default is not used: a UserPreference row says what Diary "
            "Synchronizer Active is (the answer is for a database without any row)."
        )
    off = [r for r in preference.not_honoured if r.on is not True]
    if off:
        listed = "; ".join(
            f"row {r.id} ({r.level_name} level {r.deflevel}) = {r.value!r}: "
            + preference.limit.reading(r)
            for r in off
        )
        warnings.append(
            f"{len(off)} row(s) would switch Diary Synchronizer Active off, but SuperOffice does "
            f"not honour them: {listed}. They are left as they are."
        )
    return warnings


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
    note = invites_documented_note(chosen)
    if note:
        evidence.append(Evidence("release notes", note, "documented"))
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
    """Is the on-premise synchronizer in use, and which version: every finding says how strong
    it is (documented / observed in the field / inferred), and `decided_by` which one decided."""
    found = _SynchronizerEvidence()
    for row_id, owner, code, text in _synchronizer_product_rows(conn, tables):
        detail = f"row {row_id}: ownerName={owner!r}, codeName={code!r}, version={text!r}"
        found.trace(_graded("ProductVersion", detail, "inferred", PRODUCT_VERSION_BASIS), text)
    for trace in probe.synchronizer_traces():
        found.trace(_host_evidence(trace), trace.version)
    if not found.evidence:
        found.evidence.append(Evidence("host", probe.describe() + ": no synchronizer found"))
    licences = _licences(conn, tables, found.evidence)
    version = max(found.versions, key=lambda v: v[0])[0] if found.versions else None
    if answers.no_synchronizer:
        found.evidence.insert(0, Evidence("operator", "--no-synchronizer", "operator"))
        decided = "The operator's --no-synchronizer decided: not in use (the evidence found is "
        decided += "listed for comparison)."
        return SynchronizerFinding(False, None, bool(licences), found.evidence, decided)
    if answers.synchronizer_version:
        text = answers.synchronizer_version
        said = Evidence("operator", f"--synchronizer-version {text!r}", "operator")
        found.evidence.insert(0, said)
        operator_version = None if text.lower() == "unknown" else parse_synchronizer_version(text)
        decided = f"The operator's --synchronizer-version {text!r} decided: in use" + (
            f", version {operator_version.label()}."
            if operator_version
            else f"; {_version_clause(found)}"
        )
        return SynchronizerFinding(
            True, operator_version or version, bool(licences), found.evidence, decided
        )
    in_use: bool | None = bool(found.installed) or (None if licences else False)
    return SynchronizerFinding(
        in_use, version, bool(licences), found.evidence, _decided_by(found, licences)
    )


class _SynchronizerEvidence:
    """The evidence found so far, which of it says "installed", and the versions it gives."""

    def __init__(self) -> None:
        self.evidence: list[Evidence] = []
        self.installed: list[Evidence] = []
        self.versions: list[tuple[SynchronizerVersion, Evidence]] = []

    def trace(self, evidence: Evidence, version_text: str | None) -> None:
        self.evidence.append(evidence)
        self.installed.append(evidence)
        version = _try_sync_version(version_text) if version_text else None
        if version is not None:
            self.versions.append((version, evidence))


def _graded(source: str, detail: str, strength: Strength, basis: str) -> Evidence:
    """Evidence whose text says how strong it is, and why: "... [inferred: why]"."""
    return Evidence(source, f"{detail} [{strength}: {basis}]", strength)


def _host_evidence(trace: HostTrace) -> Evidence:
    strength, basis = trace_strength(trace.kind)
    return _graded(trace.kind, trace.detail, strength, basis)


def _strongest(items: list[Evidence]) -> Evidence:
    return min(items, key=lambda e: _RANK.get(e.strength or "inferred", 3))


def _decided_by(found: _SynchronizerEvidence, licences: list[str]) -> str:
    if found.installed:
        best = _strongest(found.installed)
        weak = " (no stronger evidence exists)" if best.strength == "inferred" else ""
        return (
            f"In use: decided by {best.source} evidence, {best.strength}{weak}; "
            f"{_version_clause(found)}"
        )
    if licences:
        return (
            f"Not decided: only the licence ({', '.join(licences)}) speaks of the synchronizer, "
            "and a licence is not proof of use; the operator says (--synchronizer-version or "
            "--no-synchronizer)."
        )
    return "Not in use: no trace in the database or on this host, and no synchronizer licence."


def _version_clause(found: _SynchronizerEvidence) -> str:
    if not found.versions:
        return "no evidence gives its version."
    version, source = max(found.versions, key=lambda v: v[0])
    return f"version {version.label()} from {source.source} evidence, {source.strength}."


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


def _licences(conn: Connection, tables: SuperOfficeTables, evidence: list[Evidence]) -> list[str]:
    """The synchronizer licence modules present (SYNCHRONIZER_LICENCES), each one evidence."""
    licence, owner = tables.modulelicense, tables.moduleowner
    if licence is None:
        evidence.append(
            Evidence(
                "ModuleLicense",
                "no ModuleLicense table of the documented shape: licence not checked",
            )
        )
        return []
    owners = {}
    if owner is not None:
        owners = dict(conn.execute(select(owner.c.ModuleOwner_id, owner.c.ownerName)).all())
    rows = conn.execute(
        select(licence.c.ModuleLicense_id, licence.c.moduleName, licence.c.ModuleOwner_id).order_by(
            licence.c.ModuleLicense_id
        )
    )
    found: list[str] = []
    for licence_id, name, owner_id in rows:
        known = _licence_module(name or "", owners.get(owner_id))  # NULL where a schema allows
        if known is None or known in found:
            continue
        found.append(known)
        what, strength, basis = SYNCHRONIZER_LICENCES[known]
        detail = f"row {licence_id}: licence module {known} ({what}; licensed is not proof of use)"
        evidence.append(_graded("ModuleLicense", detail, strength, basis))
    return found


def _licence_module(name: str, owner_name: str | None) -> str | None:
    """The synchronizer licence a row names, in full or as <owner>.<module>; None for others."""
    for candidate in (name.lower(), f"{owner_name or ''}.{name}".lower()):
        if candidate in SYNCHRONIZER_LICENCES:
            return candidate
    return None


def detect_preference(
    conn: Connection,
    tables: SuperOfficeTables,
    superoffice: SuperOfficeFinding | None = None,
    answers: OperatorAnswers | None = None,
) -> PreferenceFinding:
    rows = preference_rows(conn, tables, *DIARY_SYNC)
    own_bools = [r.value for r in rows if r.on is not None]
    encoding = detect_encoding(own_bools or bool_values_in_use(conn, tables))
    names = individual_names(conn, tables, rows)
    limit = override_limit(rows)
    evidence = [
        Evidence(
            "UserPreference",
            row.describe(names.get(row.id))
            + (f": {limit.reading(row)}" if row.deflevel in OVERRIDE_LEVELS else ""),
        )
        for row in rows
    ]
    if not rows:
        evidence.append(
            Evidence("UserPreference", "no Mail/DiarySynchronizerActive row at any level")
        )
    source = "its own rows" if own_bools else "the database's Bool preferences"
    evidence.append(
        Evidence("UserPreference", f"Bool values written as {encoding.label} ({source})")
    )
    no_row = not system_rows(rows) and not any(r.deflevel == HARD_DEFAULT_LEVEL for r in rows)
    default_on = no_row and answers is not None and answers.preference_on_by_default
    reading = None
    if no_row:
        version = superoffice.version if superoffice is not None else None
        sources = no_row_sources(version)
        evidence += sources
        reading = no_row_reading(default_on)
        evidence.append(Evidence("operator" if default_on else "UserPreference", reading))
    return PreferenceFinding(
        rows=rows,
        system=system_rows(rows),
        overrides=[r for r in rows if r.deflevel in OVERRIDE_LEVELS],
        effective=effective_system_value(rows),
        encoding=encoding,
        evidence=evidence,
        owner_names=names,
        limit=limit,
        no_row_reading=reading,
        default_on_by_operator=default_on,
    )


# No system-wide row: two public sources disagree on what that means.
RELEASE_NOTE_DEFAULT = (
    "SuperOffice's 8.5 R11 release notes say Diary Synchronizer Active is on by default "
    "('Yes') (SOD release-notes/8.5/admin/8.5-R11-update.md)"
)
INFOBRIDGE_SWITCH_ON = (
    "InfoBridge tells new synchronizer customers to switch Diary Synchronizer Active on "
    "themselves, and warns when it is No (InfoBridge KB, 'SuperOffice Invites introduction')"
)


def no_row_sources(version: SuperOfficeVersion | None) -> list[Evidence]:
    """What the sources say when no row exists, and which of them speaks of this version."""
    if version is None or version.supports_invites() is None:
        applies = "this database's version is undetermined, so whether that note covers it is open"
    elif not version.supports_invites():
        applies = f"this database is {version.label()}, older than both"
    elif (version.major, version.minor) == (8, 5) and version.release == 10:
        applies = "this database is 8.5 R10, the release before the one that note describes"
    else:
        applies = f"this database is {version.label()}, a version that note covers"
    return [
        Evidence(
            "release notes", f"No system-wide row: {RELEASE_NOTE_DEFAULT}; {applies}.", "documented"
        ),
        Evidence("InfoBridge", f"No system-wide row: {INFOBRIDGE_SWITCH_ON}.", "documented"),
    ]


def no_row_reading(default_on: bool) -> str:
    if default_on:
        return (
            "Reading used: the operator's (--preference-on-by-default): Diary Synchronizer "
            "Active was on by default since invites arrived, so nothing was made while it was "
            "off and the marking window is empty."
        )
    return (
        "Reading used: SPEC's: no row means not on, so the marking window runs until this run "
        "switches it on. If it was on by default since invites arrived, say so with "
        "--preference-on-by-default."
    )


def detect_travel(conn: Connection, tables: SuperOfficeTables) -> TravelFinding:
    rows = preference_rows(conn, tables, *ENABLE_TRAVEL)
    evidence = [Evidence("UserPreference", row.describe()) for row in rows]
    enabled = effective_system_value(rows) is True
    if not rows:
        evidence.append(Evidence("UserPreference", "no Travel/EnableTravel row: Travel is off"))
    role = read_database_role(conn, tables)
    evidence.append(Evidence("travelcurrent", role.detail))
    return TravelFinding(enabled, evidence, role)


# travelcurrent (SOD database reference, tables/travelcurrent.md): systemlevel "10 = central,
# 9 = first child, 8 = second-generation child"; current_id "Central=0,
# Departm.=H01000000-H7F000000, Travel=assoc_id".
CENTRAL_SYSTEMLEVEL = 10
SATELLITE_IDS = range(0x01000000, 0x7F000000 + 1)


def read_database_role(conn: Connection, tables: SuperOfficeTables) -> DatabaseRole:
    """What travelcurrent says this database is; `undetermined` when nothing says it."""
    tc = tables.travelcurrent
    if tc is None:
        return DatabaseRole("undetermined", "no travelcurrent table")
    rows = [tuple(row) for row in conn.execute(select(tc.c.current_id, tc.c.systemlevel))]
    return database_role(rows)  # type: ignore[arg-type]


def database_role(rows: list[tuple[int | None, int | None]]) -> DatabaseRole:
    """Central only when every row that says anything says central (systemlevel 10, current_id
    0); a row saying otherwise, even beside a central one, makes it a copy: refusing a central
    database wrongly costs a question, writing to a copy does not come back."""
    if not rows:
        return DatabaseRole("undetermined", "no travelcurrent row")
    detail = "; ".join(
        f"travelcurrent current_id={cid}, systemlevel={level}" for cid, level in rows
    )
    kinds = [_row_kind(cid, level) for cid, level in rows]
    copies = [k for k in kinds if k not in ("central", "undetermined")]
    if copies:
        return DatabaseRole(copies[0], detail)
    if "central" in kinds:
        return DatabaseRole("central", detail)
    return DatabaseRole("undetermined", detail + " (neither value set)")


def _row_kind(current_id: int | None, systemlevel: int | None) -> DatabaseKind:
    if current_id is None and systemlevel is None:
        return "undetermined"
    if current_id in (0, None) and systemlevel in (CENTRAL_SYSTEMLEVEL, None):
        return "central"
    if current_id in SATELLITE_IDS:
        return "satellite"
    if current_id not in (0, None):
        return "travel"
    return "child"  # a child database whose current_id does not say which kind


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
    unfinished = unfinished_marking(conn, books)
    if unfinished:
        evidence.append(
            Evidence(
                "setup_tool_step",
                f"marking step of run {unfinished.run_id} "
                f"stopped after {unfinished.rows_changed} rows: it will resume",
            )
        )
    return HistoryFinding(revision, past, max(on_times, default=None), unfinished, evidence)


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
