"""The whole upgrade as one T-SQL script a DBA can review and run in SQL Server Management Studio.

The script does what a real run does, with the same statement builders (the steps', the run
record's, the sequence reservation's; only its WHILE loop is its own): it takes setup-tool's
run lock, installs the bookkeeping tables, records a run, switches the preference on, resumes a
marking an earlier run left unfinished, marks invite appointments in the same keyset batches
(each its own transaction, previous values first, the travel log when Travel is on) and
finishes the run. Its records are the tool's own, so `setup-tool history` and `setup-tool undo`
work afterwards, and a script stopped half-way is resumed by running it again or by
`setup-tool upgrade`.

Safety, read as a DBA would:
- The central database only: before the lock and any write (the bookkeeping DDL included) the
  first batch reads travelcurrent as setup-tool does (setup_tool.detect.database_role) and stops
  on a satellite or travel copy, as setup-tool refuses one (exit 3, setup_tool.steps.gate).
- The lock: the same sp_getapplock as the tool (resource, session owner: setup_tool.locking),
  so the two never work side by side; a tool started meanwhile exits 5 naming the script's run.
- Its run: a script id fixed when the script is written (in the run's tool_version), so its
  batches never take another run's row for theirs, and running the script again resumes its own
  run or refuses (finished already, or setup-tool ran since).
- Stops: Management Studio runs the next batch after an error. Each batch therefore first checks
  that its run is still running, that the lock is still held and that every earlier batch did
  its work; if not, it records the run as failed, releases the lock and turns on SET NOEXEC, so
  nothing after it runs. The last batch turns NOEXEC off again and says whether it finished.

`plpgsql_blocks` writes the same logic as PostgreSQL DO blocks (setup_tool.script_dialects) for
the tests, which run it on a real server.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    and_,
    column,
    exists,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    union_all,
    update,
    values,
)

from setup_tool import __version__
from setup_tool.bookkeeping import (
    BOOKKEEPING_HEAD,
    COMPLETED,
    FAILED,
    RUNNING,
    SCRIPT_RUN_WORD,
    VERSION_TABLE,
    Bookkeeping,
    bookkeeping_sql,
    completed_step_statement,
    dead_runs_statement,
    finish_run_statement,
    script_run_mark,
    start_run_statement,
)
from setup_tool.database import Database
from setup_tool.detect import CENTRAL_SYSTEMLEVEL
from setup_tool.errors import ExitCode
from setup_tool.findings import Findings, UnfinishedMarking
from setup_tool.invites import Selection
from setup_tool.lock_waits import lock_timeout_sql, yield_deadlocks_sql
from setup_tool.locking import LOCK_RESOURCE
from setup_tool.schema import canonical_tables
from setup_tool.script_dialects import (
    BIGINT,
    DATETIME,
    INT,
    TEXT,
    Lines,
    PlPgSql,
    ScriptDialect,
    TSql,
)
from setup_tool.sequence import first_reserved_id_query, reserve_ids_statement, table_number
from setup_tool.steps import PlanContext, StepPlan, UpgradeSettings, preference
from setup_tool.steps import mark_invites as marking
from setup_tool.steps.registry import APPLY_ORDER, step_named
from setup_tool.travel import INSERTED, UPDATED, log_changes_statement
from setup_tool.upgrade import UpgradePlan, applied_outcome

SCRIPT_LOCK_TIMEOUT_MS = 10_000  # how long the script waits for a setup-tool run to finish
PROGRESS_EVERY = 10  # batches between two progress messages
LOWEST_ID = -(2**31)  # below every appointment_id: the first batch's lower bound
SCRIPT_ID_LENGTH = 24  # hex digits: 96 random bits, and the run mark fits tool_version
STEP_KEYS = tuple(step.id for step in APPLY_ORDER)  # the steps whose rows the script changes


def copy_rows(travelcurrent: Table) -> ColumnElement[bool]:
    """A travelcurrent row that says this is not the central database: what makes setup-tool
    refuse it (setup_tool.detect.database_role). Central is current_id 0 and systemlevel 10 (SOD
    database reference, tables/travelcurrent.md); a value left NULL says nothing, so a row of
    NULLs, or no row at all, is not a copy (the tool treats that database as central)."""
    tc = travelcurrent.c
    return or_(
        and_(tc.current_id.is_not(None), tc.current_id != 0),
        and_(tc.systemlevel.is_not(None), tc.systemlevel != CENTRAL_SYSTEMLEVEL),
    )


def new_script_id() -> str:
    return uuid.uuid4().hex[:SCRIPT_ID_LENGTH]


def tsql_script(
    db: Database,
    plan: UpgradePlan,
    settings: UpgradeSettings,
    table_numbers: dict[str, int] | None = None,
    script_id: str | None = None,
) -> str:
    """The T-SQL script for `plan` (made by a dry run, read-only, against the same database).

    `table_numbers` (sequence.TableNumber of appointment and UserPreference, for the travel log)
    are read from the database unless given; `script_id` is new unless given.
    """
    builder = _builder(TSql(), db, plan, settings, table_numbers, script_id)
    parts = [builder.header(db.display_url), builder.tsql_lock()]
    revision = plan.findings.history.revision
    if revision != BOOKKEEPING_HEAD:
        parts += builder.tsql_bookkeeping(bookkeeping_sql(db.schema, "mssql", revision))
    parts += builder.batches()
    parts.append(builder.tsql_last())
    return "\n".join(parts)


def plpgsql_blocks(
    db: Database,
    plan: UpgradePlan,
    settings: UpgradeSettings,
    table_numbers: dict[str, int] | None = None,
    script_id: str | None = None,
) -> list[str]:
    """The script's logic as PostgreSQL DO blocks, one per T-SQL batch after the bookkeeping
    DDL (install that first): run them in order, each outside a transaction block, and stop at
    the first that fails, as SET NOEXEC does in Management Studio."""
    builder = _builder(PlPgSql(), db, plan, settings, table_numbers, script_id)
    return [builder.plpgsql_lock(), *builder.batches(), builder.plpgsql_last()]


def closing_select(
    books: Bookkeeping, plan: UpgradePlan, run_id: ColumnElement[Any] | int
) -> Select[Any]:
    """Per step, the rows the dry run expected and the rows the script's run changed: what the
    script shows at its end, for the DBA to compare with its header."""
    s = books.step
    rid = run_id if isinstance(run_id, ColumnElement) else literal(run_id)
    parts = [select(s.c.step_key, s.c.rows_changed).where(s.c.run_id == rid)]
    unfinished = _resumed(plan)
    if unfinished is not None:  # what this run added to the step it resumed
        parts.append(
            select(s.c.step_key, s.c.rows_changed - unfinished.rows_changed).where(
                s.c.step_row_id == unfinished.step_row_id
            )
        )
    done = union_all(*parts).subquery("done")
    expected = values(
        column("step_order", Integer),
        column("step_key", String),
        column("rows_expected", Integer),
        name="expected",
        literal_binds=True,
    ).data([(i + 1, key, rows) for i, (key, rows) in enumerate(expected_rows(plan).items())])
    changed = func.coalesce(func.sum(done.c.rows_changed), 0).label("rows_changed")
    return (
        select(expected.c.step_key, expected.c.rows_expected, changed)
        .select_from(expected.outerjoin(done, done.c.step_key == expected.c.step_key))
        .group_by(expected.c.step_order, expected.c.step_key, expected.c.rows_expected)
        .order_by(expected.c.step_order)
    )


def expected_rows(plan: UpgradePlan) -> dict[str, int]:
    """The dry run's rows per step the script changes: what its header and closing SELECT say."""
    steps = {step.id: step for step in plan.steps}
    return {
        key: steps[key].rows if steps[key].decision == "change" else 0
        for key in STEP_KEYS
        if key in steps
    }


def _resumed(plan: UpgradePlan) -> UnfinishedMarking | None:
    steps = {step.id: step for step in plan.steps}
    step = steps.get(marking.STEP_ID)
    if step is None or step.decision != "change":
        return None
    return plan.findings.history.unfinished


def _builder(
    p: ScriptDialect,
    db: Database,
    plan: UpgradePlan,
    settings: UpgradeSettings,
    table_numbers: dict[str, int] | None,
    script_id: str | None,
) -> _Script:
    if table_numbers is None:
        with db.engine.connect() as conn:
            table_numbers = {
                name: table_number(conn, db.tables, name)
                for name in (marking.TABLE_NAME, preference.TABLE_NAME)
            }
    findings = _window_ends_at_the_switch(plan, p)
    ctx = PlanContext(db.tables, db.books, findings, settings, p.dialect, plan.now)
    return _Script(p, ctx, db.books, table_numbers, plan, script_id or new_script_id())


def _window_ends_at_the_switch(plan: UpgradePlan, p: ScriptDialect) -> Findings:
    """The new marking's window ends at @until when it ended at the dry run's "now": when the
    script switches the preference on, as a real run's ends when it starts. A window that ended
    earlier (the preference came on by itself) keeps its end."""
    findings, selection = plan.findings, plan.findings.invites.selection
    if selection is None:
        return findings
    window = selection.window
    if window.until != plan.now or window.until_sql is not None:
        return findings
    window = dataclasses.replace(window, until_sql=p.var("until"))
    invites = dataclasses.replace(
        findings.invites, selection=dataclasses.replace(selection, window=window)
    )
    return dataclasses.replace(findings, invites=invites)


@dataclasses.dataclass
class _Script:
    p: ScriptDialect
    ctx: PlanContext
    books: Bookkeeping
    table_numbers: dict[str, int]
    plan: UpgradePlan
    script_id: str

    @property
    def mark(self) -> str:
        return script_run_mark(self.script_id)

    def _steps(self) -> dict[str, StepPlan]:
        return {step.id: step for step in self.plan.steps}

    def _table(self, table: Any) -> str:
        return str(self.p.dialect.identifier_preparer.format_table(table))

    def _batch(self, comment: str, declares: dict[str, str], body: Lines) -> str:
        p = self.p
        names = {"run_id": INT, "now": DATETIME, **declares}
        return p.batch(
            [f"-- {part}" for line in comment.splitlines() for part in _wrap(line)],
            [p.declare(name, type_) for name, type_ in names.items()],
            body,
        )

    # --- the header --------------------------------------------------------------------------

    def header(self, database: str) -> str:
        steps = self._steps()
        schema = self.books.schema or "(none)"
        lines = [
            f"setup-tool {__version__}: the upgrade as one T-SQL script for SQL Server "
            "Management Studio.",
            f"Database: {database} (table prefix {schema}).",
            *_wrap(
                f"Written {self.plan.now:%Y-%m-%d %H:%M:%S} UTC from a dry run. Script id "
                f"{self.script_id}: its run in setup_tool_run has the tool_version "
                f"'{self.mark}'."
            ),
            "",
            "What the dry run found:",
            *(f"  {line}" for line in self._findings_lines()),
            "",
            *_wrap(
                "Expected rows per step, the dry run's counts (a meeting registered after the "
                "dry run and before the script switches the preference on is marked too):"
            ),
            f"  {'step':<16}{'decision':<10}{'rows':>10}",
            *(
                f"  {key:<16}{steps[key].decision:<10}{rows:>10}"
                for key, rows in expected_rows(self.plan).items()
            ),
            "The SELECT at the end lists the same steps with the rows this script changed.",
            "",
            *_wrap(
                "Central database only: its first batch reads travelcurrent as setup-tool does "
                "and, on a satellite or travel database, stops before it writes anything "
                "(satellites and travellers receive the change through Travel)."
            ),
            *_wrap(
                f"How it runs: it takes setup-tool's lock (sp_getapplock '{LOCK_RESOURCE}', "
                f"session owner, waiting at most {SCRIPT_LOCK_TIMEOUT_MS // 1000} s), so "
                "setup-tool and this script never work at the same time: a setup-tool started "
                "meanwhile exits 5 and names this script's run. Each GO ends a batch. Each "
                f"batch of {self.ctx.settings.batch_size} appointment candidates is one "
                "transaction; the Messages tab shows progress every "
                f"{PROGRESS_EVERY} batches."
            ),
            *_wrap(
                "On an error the script records its run as failed, releases the lock and runs "
                "nothing more (SET NOEXEC ON, which its last batch turns off again). Run it "
                "again to resume where it stopped: it refuses once it has finished, or once "
                "setup-tool ran after it. `setup-tool upgrade` resumes it too, and "
                "`setup-tool undo` puts back what it changed. If you cancel it, close this "
                "query window (or run its last batch) so that the lock is released."
            ),
        ]
        return "\n".join(f"-- {line}".rstrip() for line in lines) + "\n"

    def _findings_lines(self) -> Lines:
        f, steps = self.plan.findings, self._steps()
        so = f.superoffice.version.label() if f.superoffice.version else "undetermined"
        sync = f.synchronizer
        sync_text = (
            f"in use, version {sync.version.label() if sync.version else 'unknown'}"
            if sync.in_use
            else "not in use"
            if sync.in_use is False
            else "undetermined"
        )
        effective = {True: "on", False: "off", None: "not set"}[f.preference.effective]
        lines = [
            f"SuperOffice {so}; InfoBridge Synchronizer {sync_text}.",
            f"Diary Synchronizer Active: {effective} for users without an override; "
            f"Travel: {'on' if f.travel.enabled else 'off'}.",
        ]
        for key in STEP_KEYS:
            step = steps.get(key)
            if step is not None:
                lines.append(f"{step.title}: {step.decision}. {step.reason}")
        invites = f.invites
        if invites.selection is not None:
            since = f.invites_since.moment
            lines.append(
                "invites-since: "
                + (f"{since:%Y-%m-%d %H:%M:%S} UTC ({f.invites_since.source})" if since else "-")
            )
            for fp in invites.footprints:
                counted = "" if fp.counted else f" (not counted: {fp.note})"
                lines.append(f"{fp.label}: {fp.meetings} meetings, {fp.rows} rows{counted}")
            left = ", ".join(f"{reason}: {rows}" for reason, rows in invites.left_out.items())
            lines.append(f"Rows to mark: {invites.to_mark}; left out: {left}.")
        return [part for line in lines for part in _wrap(line)]

    # --- T-SQL only: the lock, the bookkeeping DDL, the last batch ---------------------------

    def _holder_lookup(self) -> Lines:
        """Who holds the lock, for the message: the session (where the login may see it) and
        the run setup-tool recorded."""
        run = self._table(self.books.run)
        return [
            "SET @holder = N'another session';",
            "IF HAS_PERMS_BY_NAME(NULL, NULL, N'VIEW SERVER STATE') = 1",
            "    SELECT TOP 1 @holder = CONCAT(N'session ', l.request_session_id, N' (login ', "
            "s.login_name, N' on ', s.host_name, N', ', s.program_name, N')')",
            "    FROM sys.dm_tran_locks AS l",
            "    JOIN sys.dm_exec_sessions AS s ON s.session_id = l.request_session_id",
            "    WHERE l.resource_type = N'APPLICATION'",
            "        AND l.resource_database_id = DB_ID()",
            "        AND l.request_status = N'GRANT'",
            f"        AND CHARINDEX(N'[{LOCK_RESOURCE}]', l.resource_description) > 0;",
            # Worded as setup-tool names a holder (bookkeeping.describe_lock_holder).
            f"IF OBJECT_ID(N'{run}', N'U') IS NOT NULL",
            "    SELECT TOP 1 @holder = CONCAT(@holder, N', ',",
            f"            CASE WHEN tool_version LIKE N'% {SCRIPT_RUN_WORD} %'",
            "                THEN CONCAT(N'the T-SQL script''s run ', run_id, N' (', tool_version, "
            "N')')",
            "                ELSE CONCAT(N'run ', run_id) END,",
            "            N' started ', CONVERT(NVARCHAR(19), started_at, 120), N' UTC by ', "
            "os_user, N' on ', host)",
            f"    FROM {run}",
            "    WHERE status = 'running'",
            "    ORDER BY run_id DESC;",
        ]

    def tsql_lock(self) -> str:
        p, tables = self.p, self.ctx.tables
        appointment, sequence = self._table(tables.appointment), self._table(tables.sequence)
        body = [
            "SET NOCOUNT ON;",
            "SET XACT_ABORT ON;  -- an error rolls back the open transaction and ends the batch",
            "SET DATEFORMAT ymd;  -- the dates below are 'yyyy-mm-dd hh:mm:ss' whatever the "
            "login's language",
            p.assign("database", p.database_sql),
            *p.if_(
                f"OBJECT_ID(N'{appointment}', N'U') IS NULL OR OBJECT_ID(N'{sequence}', N'U') "
                "IS NULL",
                p.stop(
                    f"Database %s has no {appointment} or {sequence} table: this script was "
                    "written for another database. Switch to the SuperOffice database it names "
                    "in its header and run it again. Nothing was changed.",
                    "database",
                ),
            ),
            *self._central_only(),
            *p.take_lock(SCRIPT_LOCK_TIMEOUT_MS, self._holder_lookup()),
            p.notice(f"setup-tool script {self.script_id}: holds setup-tool's lock."),
        ]
        return p.batch(
            [
                "-- The session's settings, the central database only, and setup-tool's run "
                "lock, held until the last batch."
            ],
            [
                p.declare("lock", INT),
                p.declare("holder", TEXT),
                *self._central_declares(),
            ],
            body,
        )

    # --- both dialects' first batch: the central database only -------------------------------

    def _travelcurrent(self) -> Table:
        """travelcurrent as the dry run found it, else where SuperOffice keeps it: the script
        may run on another database than the one the dry run read."""
        tables = self.ctx.tables
        table = tables.travelcurrent
        if table is None:
            table = canonical_tables(tables.schema).travelcurrent
        assert table is not None
        return table

    def _central_declares(self) -> Lines:
        p = self.p
        return [
            p.declare("database", TEXT),
            p.declare("current_id", INT),
            p.declare("systemlevel", INT),
        ]

    def _is_copy(self) -> Lines:
        """Set @copy to 1 when travelcurrent says this is a satellite or travel copy, else 0."""
        p, tc = self.p, self._travelcurrent()
        return [
            p.assign("copy", "0"),
            *p.if_(
                p.table_exists(self._table(tc)),
                p.if_(exists().where(copy_rows(tc)), [p.assign("copy", "1")]),
            ),
        ]

    def _central_only(self) -> Lines:
        """Stop before the lock and any write unless this is the central database: setup-tool
        refuses a satellite or travel copy (exit 3), which receives the change through Travel
        (setup_tool.steps.gate). No travelcurrent table or row: central, as for setup-tool.
        The caller sets @database first."""
        p, tc = self.p, self._travelcurrent()
        row = select(tc.c.current_id).where(copy_rows(tc)).order_by(tc.c.travelcurrent_id)
        refuse = [
            *p.assign_query("current_id", row.limit(1)),
            *p.assign_query("systemlevel", row.with_only_columns(tc.c.systemlevel).limit(1)),
            *p.stop(
                "Database %s is not the central database: travelcurrent says current_id=%d, "
                f"systemlevel=%d (the central one has 0 and {CENTRAL_SYSTEMLEVEL}). Run this "
                "script on the central database; satellites and travellers receive the change "
                "through Travel. Nothing was changed.",
                "database",
                "current_id",
                "systemlevel",
            ),
        ]
        return p.if_(p.table_exists(self._table(tc)), p.if_(exists().where(copy_rows(tc)), refuse))

    def tsql_bookkeeping(self, ddl: str) -> list[str]:
        """alembic's DDL for the tool's tables, skipped when a stopped run of this script (or
        setup-tool) installed them already, and checked afterwards."""
        p = self.p
        version = self._table_name(VERSION_TABLE)
        installed = f"EXISTS (SELECT 1 FROM {version} WHERE version_num = '{BOOKKEEPING_HEAD}')"
        skip = p.batch(
            ["-- setup-tool's own tables (alembic), unless they are installed already."],
            [],
            [
                *self._lock_guard(),
                *p.if_(
                    f"OBJECT_ID(N'{version}', N'U') IS NOT NULL",
                    p.if_(
                        installed,
                        [
                            p.notice("setup-tool's tables are installed already."),
                            "SET NOEXEC ON;  -- skip the DDL batches, up to SET NOEXEC OFF",
                        ],
                    ),
                ),
            ],
        )
        after = p.batch(
            ["-- The DDL is done (or was skipped): run again, unless the script had stopped."],
            [],
            [
                "SET NOEXEC OFF;",
                # Every stop releases the lock, so without it the script stopped above.
                *p.if_(f"NOT ({p.lock_is_held()})", ["SET NOEXEC ON;"]),
            ],
        )
        check = p.batch(
            ["-- setup-tool's tables are at the revision this script writes."],
            [],
            [
                *self._lock_guard(),
                *p.if_(
                    f"OBJECT_ID(N'{version}', N'U') IS NULL OR NOT {installed}",
                    p.stop(
                        "setup-tool's tables in this database are not at revision "
                        f"{BOOKKEEPING_HEAD} after the DDL above (see its error): nothing else "
                        "was changed. Write a new script with setup-tool upgrade --dry-run "
                        "--format sql."
                    ),
                ),
            ],
        )
        return [skip, ddl, after, check]

    def _table_name(self, name: str) -> str:
        prefix = self.books.schema
        quoted = self.p.dialect.identifier_preparer.quote
        return f"{quoted(prefix)}.{quoted(name)}" if prefix else quoted(name)

    def _lock_guard(self) -> Lines:
        p = self.p
        return p.if_(
            f"NOT ({p.lock_is_held()})",
            p.stop(
                f"setup-tool script {self.script_id} does not hold setup-tool's lock (an "
                "earlier batch failed, or the session lost it): nothing more runs."
            ),
        )

    def tsql_last(self) -> str:
        p, run = self.p, self.books.run
        done = select(func.count()).where(
            run.c.tool_version == self.mark, run.c.status == COMPLETED
        )
        body = [
            "SET NOEXEC OFF;  -- runs even after a stop, so that this window is usable again",
            *p.release_lock(),
            "SET @finished = 0;",
            *p.if_(
                f"OBJECT_ID(N'{self._table(run)}', N'U') IS NOT NULL",
                p.assign_query("finished", done),
            ),
            *self._is_copy(),
            *p.if_(
                "@finished = 0 AND @copy = 1",
                [
                    "RAISERROR(N'setup-tool script "
                    f"{self.script_id} did not finish: it changed nothing, because this is not "
                    "the central database (see the first error above). Run it on the central "
                    "database; satellites and travellers receive the change through Travel.', "
                    "16, 1);"
                ],
            ),
            *p.if_(
                "@finished = 0 AND @copy = 0",
                [
                    "RAISERROR(N'setup-tool script "
                    f"{self.script_id} did not finish: see the first error above. Run the "
                    "script again to resume, or run setup-tool upgrade.', 16, 1);"
                ],
            ),
            *p.if_("@finished > 0", [p.notice(f"setup-tool script {self.script_id} finished.")]),
        ]
        return p.batch(
            ["-- Always: release the lock and say whether the script finished."],
            [p.declare("finished", INT), p.declare("copy", INT)],
            body,
        )

    # --- PL/pgSQL only: the lock and its release --------------------------------------------

    def plpgsql_lock(self) -> str:
        p, run = self.p, self.books.run
        holder = select(func.concat("run ", run.c.run_id, " (", run.c.tool_version, ")")).where(
            run.c.status == RUNNING
        )
        newest = holder.order_by(run.c.run_id.desc()).limit(1)
        lookup = [
            p.assign("holder", "'another session'"),
            *p.if_(exists(holder), p.assign_query("holder", newest)),
        ]
        body = [
            p.assign("database", p.database_sql),
            *self._central_only(),
            *p.take_lock(0, lookup),
        ]
        return p.batch(
            ["-- The central database only, and setup-tool's run lock."],
            [p.declare("holder", TEXT), *self._central_declares()],
            body,
        )

    def plpgsql_last(self) -> str:
        p = self.p
        return p.batch(["-- Release the lock."], [], p.release_lock())

    # --- the batches both dialects share ------------------------------------------------------

    def batches(self) -> list[str]:
        steps, findings = self._steps(), self.plan.findings
        done: list[tuple[ColumnElement[bool], str]] = []
        parts = [self.start_run()]
        if preference.records_on_time(findings) and steps[preference.STEP_ID].decision != "skip":
            parts.append(self.preference(steps[preference.STEP_ID], done))
            done.append((self._preference_done(), "the preference batch did not finish"))
        if steps[preference.OVERRIDES_ID].decision == "change":
            parts.append(self.overrides(steps[preference.OVERRIDES_ID], done))
            done.append((self._step_done(preference.OVERRIDES_ID), "the overrides batch failed"))
        unfinished = _resumed(self.plan)
        if unfinished is not None:
            parts.append(self.resume(unfinished, done))
            done.append((self._resumed_done(unfinished), "the resumed marking did not finish"))
        if self._marking_selection() is not None:
            parts.append(self.mark_invites(done))
            done.append((self._step_done(marking.STEP_ID), "the marking did not finish"))
        parts.append(self.finish_run(done))
        return parts

    def _var(self, name: str) -> ColumnElement[Any]:
        return self.p.var(name)

    def _failed(self) -> Lines:
        """Record the script's run as failed (in a stop, after the rollback)."""
        run = self.books.run
        failed = finish_run_statement(
            self.books,
            self._var("run_id"),
            outcome=FAILED,
            exit_code=int(ExitCode.FAILED),
            finished_at=literal_column(self.p.now_sql),
        )
        return self.p.sql(failed.where(run.c.status == RUNNING))

    def _stop(self, message: str, *names: str) -> Lines:
        return self.p.stop(message, *names, cleanup=self._failed())

    def _guard(self, done: list[tuple[ColumnElement[bool], str]]) -> Lines:
        """The start of every batch after the first: its run is running, the lock is held and
        every earlier batch did its work; else stop."""
        p, run = self.p, self.books.run
        ours = select(run.c.run_id).where(run.c.tool_version == self.mark, run.c.status == RUNNING)
        lines = [p.assign("now", p.now_sql), *p.assign_query("run_id", ours)]
        lines += p.if_(
            f"{p.ref('run_id')} IS NULL",
            p.stop(
                f"setup-tool script {self.script_id}: its run is not running (an earlier batch "
                "stopped or failed: see the first error above). Nothing more runs."
            ),
        )
        lines += p.if_(
            f"NOT ({p.lock_is_held()})",
            self._stop(
                f"setup-tool script {self.script_id} no longer holds setup-tool's lock (its "
                "session lost it): nothing more runs. Run the script again to resume."
            ),
        )
        for condition, what in done:
            lines += p.if_(
                not_(condition),
                self._stop(
                    f"setup-tool script {self.script_id}: {what} (see the first error above), "
                    "so nothing more runs. Run the script again to resume."
                ),
            )
        return lines

    def _preference_done(self) -> ColumnElement[bool]:
        run = self.books.run
        return exists().where(
            run.c.run_id == self._var("run_id"), run.c.preference_on_at.is_not(None)
        )

    def _step_done(self, key: str) -> ColumnElement[bool]:
        s = self.books.step
        return exists().where(
            s.c.run_id == self._var("run_id"), s.c.step_key == key, s.c.status == COMPLETED
        )

    def _resumed_done(self, unfinished: UnfinishedMarking) -> ColumnElement[bool]:
        s = self.books.step
        return exists().where(s.c.step_row_id == unfinished.step_row_id, s.c.status == COMPLETED)

    # --- the run ----------------------------------------------------------------------------

    def start_run(self) -> str:
        """Start the script's run, or resume it when this script ran before and stopped; refuse
        when it finished, or when setup-tool ran after it."""
        p, f, run = self.p, self.plan.findings, self.books.run
        rid, sid = p.ref("run_id"), self.script_id
        mine = select(func.max(run.c.run_id)).where(run.c.tool_version == self.mark)
        newer = select(func.max(run.c.run_id)).where(run.c.run_id > self._var("run_id"))
        insert = start_run_statement(
            self.books,
            mode="upgrade",
            started_at=self._var("now"),
            acting_associate_id=self.ctx.settings.acting_associate_id,
            superoffice_version=f.superoffice.version.label() if f.superoffice.version else None,
            synchronizer_version=f.synchronizer.version.label() if f.synchronizer.version else None,
            tool_version=self.mark,
            host=literal_column(p.host_sql),
            os_user=literal_column(p.user_sql),
        )
        again = (
            update(run)
            .where(run.c.run_id == self._var("run_id"))
            .values(status=RUNNING, outcome=None, exit_code=None, finished_at=None)
        )
        completed = exists().where(run.c.run_id == self._var("run_id"), run.c.status == COMPLETED)
        others = dead_runs_statement(self.books).where(run.c.tool_version != self.mark)
        body = [
            *self._lock_guard(),
            p.assign("now", p.now_sql),
            *p.assign_query("run_id", mine),
            *p.if_(
                completed,
                p.stop(
                    f"setup-tool script {sid} ran to its end already (run %d): it does not run "
                    "twice. For another upgrade write a new script: setup-tool upgrade "
                    "--dry-run --format sql.",
                    "run_id",
                ),
            ),
            *p.assign_query("newer", newer),
            *p.if_(
                f"{p.ref('newer')} IS NOT NULL",
                p.stop(
                    f"setup-tool script {sid} stopped as run %d, and setup-tool ran after it "
                    "(run %d): this script is out of date and changes nothing. Run "
                    "setup-tool upgrade to finish the work, or write a new script.",
                    "run_id",
                    "newer",
                ),
            ),
            "-- A run still marked running while we hold the lock died (killed, crashed).",
            *p.sql(others),
            *p.if_(
                f"{rid} IS NOT NULL",
                [
                    *p.sql(again),
                    p.notice(f"setup-tool script {sid}: resumes its run %d.", "run_id"),
                ],
            ),
            *p.if_(
                f"{rid} IS NULL",
                [
                    *p.insert_returning(insert, run.c.run_id, "run_id"),
                    p.notice(f"setup-tool script {sid}: started run %d.", "run_id"),
                ],
            ),
        ]
        return self._batch(
            "The run record (setup-tool history lists it), or this script's own run again.",
            {"newer": INT},
            body,
        )

    def finish_run(self, done: list[tuple[ColumnElement[bool], str]]) -> str:
        p = self.p
        outcome, code = applied_outcome(self.plan, changed=self.plan.changes_pending)
        finish = finish_run_statement(
            self.books,
            self._var("run_id"),
            outcome=outcome,
            exit_code=int(code),
            finished_at=self._var("now"),
        )
        body = [
            *self._guard(done),
            *p.sql(finish),
            p.notice(
                f"setup-tool script {self.script_id}: run %d completed ({outcome}).", "run_id"
            ),
        ]
        if isinstance(p, TSql):  # a result set for the DBA (a DO block has nowhere to show it)
            body += [
                "-- Rows changed per step, beside the dry run's counts in the header:",
                *p.sql(closing_select(self.books, self.plan, self._var("run_id"))),
            ]
        return self._batch("Done: record the outcome, and show what was done.", {}, body)

    # --- step 3: the preference and its overrides -------------------------------------------

    def preference(self, step: StepPlan, done: list[tuple[ColumnElement[bool], str]]) -> str:
        p = self.p
        lines = [
            *self._guard(done),
            *p.if_(
                self._preference_done(),
                [p.notice("Diary Synchronizer Active: done already by this run."), p.leave()],
            ),
            *p.begin(),
        ]
        if step.decision == "change":
            lines += self._step_row(preference.STEP_ID, step.rows)
            lines += (
                self._insert_preference()
                if not self.ctx.findings.preference.system
                else self._switch_on(step.sample_ids)
            )
        lines += p.sql(
            preference.on_time_statement(self.books, self._var("run_id"), self._var("now"))
        )
        # What opens with the change that ends the marking's window (the marking's step row), as
        # in a real run (Step.with_preference_switch): a stop between the two batches leaves an
        # unfinished marking that a re-run or setup-tool resumes, never a preference switched on
        # with its invites left unmarked.
        with_switch = [
            statement
            for planned in self.plan.steps
            if (other := step_named(planned.id)) is not None
            for statement in other.with_preference_switch(
                self.ctx, planned, self._var("run_id"), self._var("now")
            )
        ]
        if with_switch:
            lines.append(p.assign("until", p.ref("now")))
            lines += [line for statement in with_switch for line in p.sql(statement)]
        lines += [*p.commit(), p.notice(f"{step.title}: done.")]
        declares = {**self._step_declares(), "until": DATETIME}
        return self._batch(f"{step.title}: {step.reason}", declares, lines)

    def overrides(self, step: StepPlan, done: list[tuple[ColumnElement[bool], str]]) -> str:
        p = self.p
        lines = [
            *self._guard(done),
            *p.if_(
                self._step_done(preference.OVERRIDES_ID),
                [p.notice(f"{step.title}: done already by this run."), p.leave()],
            ),
            *p.begin(),
            *self._step_row(preference.OVERRIDES_ID, step.rows),
            *self._switch_on(step.sample_ids),
            *p.commit(),
            p.notice(f"{step.title}: %d rows switched on.", "rows"),
        ]
        return self._batch(f"{step.title}: {step.reason}", self._step_declares(), lines)

    def _step_declares(self) -> dict[str, str]:
        return {"step": INT, "first": INT, "rows": INT, "seq_rows": INT, "pref_id": INT}

    def _step_row(self, key: str, rows: int) -> Lines:
        run_id, now = self._var("run_id"), self._var("now")
        insert = completed_step_statement(self.books, run_id, key, rows, now, run_id)
        return self.p.insert_returning(insert, self.books.step.c.step_row_id, "step")

    def _reserve(self, table_name: str, count: str, into: str) -> Lines:
        """Ids from SuperOffice's sequence table: UPDATE first, then read, in the caller's
        transaction (SUPEROFFICE.md, physical conventions: never the reverse)."""
        p, tables = self.p, self.ctx.tables
        first = first_reserved_id_query(tables, table_name, self._var(count))
        return [
            *p.sql(reserve_ids_statement(self.ctx.tables, table_name, self._var(count))),
            p.rowcount_into("seq_rows"),
            *p.if_(
                f"{p.ref('seq_rows')} <> 1",
                self._stop(
                    f"SuperOffice's sequence table has %d rows for {table_name} instead of "
                    "one: ask SuperOffice support to repair it. The open transaction was rolled "
                    "back.",
                    "seq_rows",
                ),
            ),
            *p.assign_query(into, first),
        ]

    def _travel(self, table: str, ids: Any, count: str, kind: int) -> Lines:
        """One traveltransactionlog row per changed record, as SuperOffice's own layers write."""
        if not self.ctx.findings.travel.enabled:
            return []
        p = self.p
        log = log_changes_statement(
            self.ctx.tables,
            ids,
            first_id=self._var("first"),
            kind=kind,
            table_no=self.table_numbers[table],
            associate_id=self.ctx.settings.acting_associate_id,
            now=self._var("now"),
        )
        return [
            "-- Tell Travel: one traveltransactionlog row per changed record.",
            *self._reserve("traveltransactionlog", count, "first"),
            *p.sql(log),
            p.rowcount_into("seq_rows"),
            *p.if_(
                f"{p.ref('seq_rows')} <> {p.ref(count)}",
                self._stop(
                    "Wrote %d travel log rows for %d changed rows: rolled back.",
                    "seq_rows",
                    count,
                ),
            ),
        ]

    def _insert_preference(self) -> Lines:
        p, up = self.p, self.ctx.tables.userpreference
        record = preference.inserted_record_statement(
            self.books, self._var("step"), self._var("pref_id")
        )
        ids = select(up.c.userpreference_id).where(up.c.userpreference_id == self._var("pref_id"))
        return [
            p.assign("rows", "1"),
            *self._reserve(preference.TABLE_NAME, "rows", "pref_id"),
            *p.sql(preference.insert_statement(self.ctx, self._var("pref_id"), self._var("now"))),
            *p.sql(record),
            *self._travel(preference.TABLE_NAME, ids, "rows", INSERTED),
        ]

    def _switch_on(self, ids: list[int]) -> Lines:
        p, up = self.p, self.ctx.tables.userpreference
        changed = select(up.c.userpreference_id).where(up.c.userpreference_id.in_(ids))
        return [
            *p.sql(
                preference.record_statement(
                    self.books, self.ctx.tables, self._var("step"), ids, self._var("now")
                )
            ),
            *p.sql(preference.switch_on_statement(self.ctx, ids, self._var("now"))),
            p.rowcount_into("rows"),
            *p.if_(
                f"{p.ref('rows')} <> {len(ids)}",
                self._stop(
                    f"Expected to switch on {len(ids)} preference rows, found %d: someone "
                    "changed them meanwhile. Rolled back; run the script again.",
                    "rows",
                ),
            ),
            *self._travel(preference.TABLE_NAME, changed, "rows", UPDATED),
        ]

    # --- step 4: marking --------------------------------------------------------------------

    def _mark_declares(self) -> dict[str, str]:
        return {
            "until": DATETIME,
            "step": INT,
            "lo": INT,
            "hi": INT,
            "batch": INT,
            "locked": INT,
            "recorded": INT,
            "changed": INT,
            "first": INT,
            "seq_rows": INT,
            "done": INT,
            "planned": INT,
            "seconds": INT,
            "started": DATETIME,
            "checkpoint": BIGINT,
        }

    def resume(
        self, unfinished: UnfinishedMarking, done: list[tuple[ColumnElement[bool], str]]
    ) -> str:
        """Finish the marking an earlier run left, from its checkpoint, with its own selection."""
        p = self.p
        body = [
            *self._guard(done),
            p.assign("step", str(unfinished.step_row_id)),
            *p.if_(
                self._resumed_done(unfinished),
                [p.notice("The unfinished marking is finished already."), p.leave()],
            ),
            *self._continue_marking(unfinished.selection),
        ]
        return self._batch(
            f"Finish the marking run {unfinished.run_id} left (step {unfinished.step_row_id}, "
            f"{unfinished.rows_changed} rows marked before), from its checkpoint.",
            self._mark_declares(),
            body,
        )

    def _marking_selection(self) -> Selection | None:
        """The new marking's selection, when this script marks (its window ends at @until:
        `_window_ends_at_the_switch`)."""
        selection = self.ctx.findings.invites.selection
        if self._steps()[marking.STEP_ID].decision != "change" or selection is None:
            return None
        return selection

    def _open_marking_step(self, selection: Selection) -> Lines:
        s = self.books.step
        open_step = marking.open_step_statement(
            self.books, self._var("run_id"), selection, self._var("now")
        )
        return self.p.insert_returning(open_step, s.c.step_row_id, "step")

    def mark_invites(self, done: list[tuple[ColumnElement[bool], str]]) -> str:
        p, s, run = self.p, self.books.step, self.books.run
        selection = self._marking_selection()
        assert selection is not None
        ours = select(func.max(s.c.step_row_id)).where(
            s.c.run_id == self._var("run_id"), s.c.step_key == marking.STEP_ID
        )
        body = [
            *self._guard(done),
            *p.assign_query(
                "until", select(run.c.preference_on_at).where(run.c.run_id == self._var("run_id"))
            ),
            *p.assign_query("step", ours),
            *p.if_(
                self._step_done(marking.STEP_ID),
                [p.notice("Marking: done already by this run."), p.leave()],
            ),
            *p.if_(f"{p.ref('step')} IS NULL", self._open_marking_step(selection)),
            *self._continue_marking(selection),
        ]
        return self._batch(
            f"{marking.TITLE}: {self.ctx.settings.batch_size} candidates per batch, one "
            "transaction each.",
            self._mark_declares(),
            body,
        )

    def _continue_marking(self, selection: Selection) -> Lines:
        """Stage the candidates unless they are, then the keyset loop from the step's
        checkpoint, then complete the step: what mark_invites._resume_or_run does."""
        p, s = self.p, self.books.step
        step = self._var("step")
        stage = [
            *p.begin(),
            *p.sql(
                marking.stage_candidates_statement(self.ctx.tables, self.books, step, selection)
            ),
            *p.sql(marking.staged_statement(self.books, step)),
            *p.commit(),
        ]
        state = select(s.c.checkpoint_key).where(s.c.step_row_id == step)
        staging = exists().where(s.c.step_row_id == step, s.c.status == "staging")
        now: ColumnElement[Any] = literal_column(p.now_sql)
        complete = [
            *p.begin(),
            *p.sql(marking.complete_statement(self.books, step, now, self._var("run_id"))),
            *p.sql(marking.clear_candidates_statement(self.books, step)),
            *p.commit(),
        ]
        return [
            *p.if_(staging, stage),
            *p.assign_query("checkpoint", state),
            p.assign("lo", f"coalesce({p.ref('checkpoint')}, {LOWEST_ID})"),
            *p.assign_query("batch", state.with_only_columns(s.c.batches_done)),
            *p.assign_query("done", state.with_only_columns(s.c.rows_changed)),
            *p.assign_query("planned", state.with_only_columns(s.c.rows_planned)),
            p.assign("started", p.now_sql),
            p.notice("Marking: %d candidates, %d rows marked before.", "planned", "done"),
            *self._keyset_loop(),
            *complete,
            p.assign("seconds", p.seconds_since("started")),
            p.notice(
                "Marking: done, %d rows marked in %d batches (%d s).", "done", "batch", "seconds"
            ),
        ]

    def _keyset_loop(self) -> Lines:
        """Batches of at most batch_size staged ids, each the range (lo, hi]; each batch one
        transaction: previous values, the change, the travel log, the checkpoint."""
        p, tables, books = self.p, self.ctx.tables, self.books
        settings = self.ctx.settings
        step, lo, hi, batch = (self._var(n) for n in ("step", "lo", "hi", "batch"))
        size = marking.batch_size(p.dialect.name, settings.batch_size)
        boundary = marking.next_boundary_statement(books, step, size, lo)
        checkpoint = marking.checkpoint_statement(books, step, hi, self._var("changed"))
        record = marking.record_batch_statement(
            tables, books, step, lo, hi, batch, self._var("now")
        )
        mark = marking.mark_batch_statement(
            tables, books, step, lo, hi, batch, settings.acting_associate_id, self._var("now")
        )
        changed_ids = marking.recorded_ids(books, step, batch)
        body = [
            p.assign("now", p.now_sql),
            *p.assign_query("hi", boundary),
            p.exit_when(f"{p.ref('hi')} IS NULL"),
            p.assign("batch", f"{p.ref('batch')} + 1"),
            *self._batch_lock_settings(),
            *p.begin(),
            *self._lock_batch_rows(),
            *p.sql(record),
            p.rowcount_into("recorded"),
            *p.sql(mark),
            p.rowcount_into("changed"),
            *p.if_(
                f"{p.ref('changed')} <> {p.ref('recorded')}",
                self._stop(
                    "Batch %d changed %d rows but recorded %d: another session changed them "
                    "meanwhile. The batch was rolled back; run the script again to resume.",
                    "batch",
                    "changed",
                    "recorded",
                ),
            ),
            *self._travel(marking.TABLE_NAME, changed_ids, "changed", UPDATED),
            *p.sql(checkpoint),
            *p.commit(),
            *self._pause_between_batches(),
            p.assign("lo", p.ref("hi")),
            p.assign("done", f"{p.ref('done')} + {p.ref('changed')}"),
            *p.if_(
                f"{p.ref('batch')} % {PROGRESS_EVERY} = 0",
                [
                    p.assign("seconds", p.seconds_since("started")),
                    p.notice(
                        "Marking: batch %d, %d of %d rows marked, %d s.",
                        "batch",
                        "done",
                        "planned",
                        "seconds",
                    ),
                ],
            ),
        ]
        return p.loop(body)

    def _batch_lock_settings(self) -> Lines:
        """Each batch waits at most --lock-wait for a row a user holds (an error then stops the
        script, resumably), and on SQL Server is the victim of any deadlock it is in, as a real
        run's batches (setup_tool.lock_waits). PostgreSQL's SET LOCAL holds for one transaction,
        so it comes after the batch's transaction began."""
        dialect = self.p.dialect.name
        seconds = self.ctx.settings.lock_wait_seconds
        statements = [yield_deadlocks_sql(dialect), lock_timeout_sql(dialect, seconds)]
        return [f"{statement};" for statement in statements if statement]

    def _lock_batch_rows(self) -> Lines:
        """The batch's rows locked first, as a real run's batch locks them
        (mark_invites.lock_batch_statement), counted into a variable: no result set."""
        p = self.p
        step, lo, hi = (self._var(n) for n in ("step", "lo", "hi"))
        lock = marking.lock_batch_statement(self.ctx.tables, self.books, step, lo, hi)
        if p.dialect.name == "mssql":  # T-SQL allows no ORDER BY in a subquery; hints stay
            return p.assign_query("locked", lock.with_only_columns(func.count()).order_by(None))
        return p.assign_query("locked", select(func.count()).select_from(lock.subquery("rows")))

    def _pause_between_batches(self) -> Lines:
        """--pause-between-batches: the script rests as a real run does, holding no lock."""
        seconds = self.ctx.settings.pause_between_batches
        if seconds <= 0:
            return []
        if self.p.dialect.name == "mssql":
            whole, ms = divmod(round(seconds * 1000), 1000)
            hours, rest = divmod(whole, 3600)
            return [f"WAITFOR DELAY '{hours:02d}:{rest // 60:02d}:{rest % 60:02d}.{ms:03d}';"]
        return [f"PERFORM pg_sleep({seconds:g});"]


def _wrap(line: str, width: int = 96) -> Lines:
    """A long header line as several, the later ones indented."""
    words, lines, current = line.split(), [], ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = "  " + word
        else:
            current = f"{current} {word}" if current else word
    return [*lines, current] if current else lines
