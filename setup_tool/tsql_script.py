"""The whole upgrade as one T-SQL script a DBA can review and run in SQL Server Management Studio.

The script does what a real run does, statement for statement: it installs the bookkeeping tables,
records a run, switches the preference on, marks invite appointments in the same keyset batches
(each its own transaction, previous values first), writes the travel log when Travel is on, and
finishes the run. Its records are the tool's own, so `setup-tool history` and `setup-tool undo`
work afterwards, and a script stopped half-way is resumed by `setup-tool upgrade`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sqlalchemy import ColumnElement, func, literal_column, select, update
from sqlalchemy.dialects import mssql
from sqlalchemy.sql import ClauseElement

from setup_tool import __version__
from setup_tool.bookkeeping import BOOKKEEPING_HEAD, Bookkeeping, bookkeeping_sql
from setup_tool.database import Database
from setup_tool.invites import Selection
from setup_tool.sequence import table_number
from setup_tool.steps import StepContext, StepPlan, UpgradeSettings, preference
from setup_tool.steps import mark_invites as marking
from setup_tool.travel import INSERTED, UPDATED, log_changes_statement
from setup_tool.upgrade import UpgradePlan

DIALECT = mssql.dialect()  # type: ignore[no-untyped-call]
RUN_MARK = f"{__version__} (T-SQL script)"  # how the script's batches find their run row


def var(name: str) -> ColumnElement[Any]:
    return literal_column(f"@{name}")


def sql(statement: ClauseElement) -> str:
    rendered = statement.compile(dialect=DIALECT, compile_kwargs={"literal_binds": True})
    return str(rendered).strip() + ";"


def _go(*parts: str) -> str:
    return "\n".join(parts) + "\nGO\n"


def tsql_script(
    db: Database,
    plan: UpgradePlan,
    settings: UpgradeSettings,
    table_numbers: dict[str, int] | None = None,
) -> str:
    """The script for `plan` (made by a dry run, read-only, against the same database).

    `table_numbers` (sequence.TableNumber of appointment and UserPreference, for the travel log)
    are read from the database unless given.
    """
    if table_numbers is None:
        with db.engine.connect() as conn:
            table_numbers = {
                name: table_number(conn, db.tables, name)
                for name in ("appointment", preference.TABLE_NAME)
            }
    ctx = StepContext(db.tables, db.books, plan.findings, settings, DIALECT, plan.now)
    script = Script(ctx, db.books, table_numbers)
    parts = [script.header(db.display_url), _go("SET XACT_ABORT ON;")]
    revision = plan.findings.history.revision
    if revision != BOOKKEEPING_HEAD:
        parts.append(bookkeeping_sql(db.schema, "mssql", since_revision=revision))
    parts.append(script.start_run())
    steps = {step.id: step for step in plan.steps}
    parts.append(script.preference(steps[preference.STEP_ID]))
    if steps[preference.OVERRIDES_ID].decision == "change":
        parts.append(script.overrides(steps[preference.OVERRIDES_ID]))
    selection = plan.findings.invites.selection
    if steps[marking.STEP_ID].decision == "change" and selection:
        parts.append(script.mark(selection))
    parts.append(script.finish_run(plan))
    return "\n".join(parts)


@dataclasses.dataclass
class Script:
    ctx: StepContext
    books: Bookkeeping
    table_numbers: dict[str, int]

    def header(self, database: str) -> str:
        return "\n".join(
            [
                f"-- setup-tool {__version__}: the upgrade as a T-SQL script (SQL Server).",
                f"-- Database: {database}",
                f"-- Generated: {self.ctx.now:%Y-%m-%d %H:%M:%S} UTC. Review it, then run it in "
                "SQL Server Management Studio;",
                "-- each GO ends a batch. Every appointment batch is its own transaction; if the "
                "script stops,",
                "-- run `setup-tool upgrade` to resume from the last committed batch. Undo with "
                "`setup-tool undo`.",
                "",
            ]
        )

    def _declare_run(self) -> list[str]:
        run = self.books.run
        find = select(func.max(run.c.run_id)).where(
            run.c.status == "running", run.c.tool_version == RUN_MARK
        )
        return [
            "DECLARE @run_id INT;",
            f"SET @run_id = ({sql(find)[:-1]});",
            "DECLARE @now DATETIME;",
            "SET @now = GETUTCDATE();",
        ]

    def start_run(self) -> str:
        f = self.ctx.findings
        insert = self.books.run.insert().values(
            mode="upgrade",
            status="running",
            started_at=func.getutcdate(),
            tool_version=RUN_MARK,
            host=func.host_name(),
            os_user=func.suser_sname(),
            acting_associate_id=self.ctx.settings.acting_associate_id,
            superoffice_version=f.superoffice.version.label() if f.superoffice.version else None,
            synchronizer_version=f.synchronizer.version.label() if f.synchronizer.version else None,
        )
        return _go("-- The run record (setup-tool history lists it).", sql(insert.inline()))

    def _step_row(self, key: str, rows: int) -> list[str]:
        insert = self.books.step.insert().values(
            run_id=var("run_id"),
            step_key=key,
            status="completed",
            rows_planned=rows,
            rows_changed=rows,
            batches_done=1,
            started_at=var("now"),
            finished_at=var("now"),
        )
        return ["DECLARE @step INT;", sql(insert.inline()), "SET @step = SCOPE_IDENTITY();"]

    def _travel(self, table: str, ids: Any, count: str, kind: int) -> list[str]:
        if not self.ctx.findings.travel.enabled:
            return []
        seq = self.ctx.tables.sequence
        name = "traveltransactionlog"
        reserve = (
            update(seq)
            .where(func.lower(seq.c.TableName) == name)
            .values(next_id=seq.c.next_id + var(count))
        )
        first = select(seq.c.next_id - var(count)).where(func.lower(seq.c.TableName) == name)
        log = log_changes_statement(
            self.ctx.tables,
            ids,
            first_id=var("first"),
            kind=kind,
            table_no=self.table_numbers[table],
            associate_id=self.ctx.settings.acting_associate_id,
            now=var("now"),
        )
        return [
            "-- Tell Travel: one traveltransactionlog row per changed record.",
            sql(reserve),
            f"SET @first = ({sql(first)[:-1]});",
            sql(log),
        ]

    def preference(self, step: StepPlan) -> str:
        if step.decision == "skip":
            return _go(f"-- {step.title}: skipped. {step.reason}")
        lines = [
            f"-- {step.title}: {step.reason}",
            *self._declare_run(),
            "DECLARE @first INT;",
            "DECLARE @rows INT;",
            "BEGIN TRANSACTION;",
        ]
        if step.decision == "change":
            lines += self._step_row(preference.STEP_ID, step.rows)
            lines += (
                self._insert_preference()
                if not self.ctx.findings.preference.system
                else self._switch_on(step.sample_ids)
            )
        run = self.books.run
        lines += [
            sql(
                update(run).where(run.c.run_id == var("run_id")).values(preference_on_at=var("now"))
            ),
            "COMMIT TRANSACTION;",
        ]
        return _go(*lines)

    def overrides(self, step: StepPlan) -> str:
        return _go(
            f"-- {step.title}: {step.reason}",
            *self._declare_run(),
            "DECLARE @first INT;",
            "DECLARE @rows INT;",
            "BEGIN TRANSACTION;",
            *self._step_row(preference.OVERRIDES_ID, step.rows),
            *self._switch_on(step.sample_ids),
            "COMMIT TRANSACTION;",
        )

    def _insert_preference(self) -> list[str]:
        seq, up, pv = (
            self.ctx.tables.sequence,
            self.ctx.tables.userpreference,
            self.books.previous_value,
        )
        name = preference.TABLE_NAME.lower()
        reserve = (
            update(seq).where(func.lower(seq.c.TableName) == name).values(next_id=seq.c.next_id + 1)
        )
        new_id = select(seq.c.next_id - 1).where(func.lower(seq.c.TableName) == name)
        record = pv.insert().values(
            step_row_id=var("step"),
            batch_no=1,
            table_name=preference.TABLE_NAME,
            record_id=var("pref_id"),
            inserted=1,
            new_updated_count=0,
        )
        ids = select(up.c.userpreference_id).where(up.c.userpreference_id == var("pref_id"))
        return [
            "DECLARE @pref_id INT;",
            sql(reserve),
            f"SET @pref_id = ({sql(new_id)[:-1]});",
            sql(preference.insert_statement(self.ctx, var("pref_id"), var("now")).inline()),
            sql(record.inline()),
            "SET @rows = 1;",
            *self._travel("UserPreference", ids, "rows", INSERTED),
        ]

    def _switch_on(self, ids: list[int]) -> list[str]:
        up = self.ctx.tables.userpreference
        changed = select(up.c.userpreference_id).where(up.c.userpreference_id.in_(ids))
        return [
            sql(
                preference.record_statement(
                    self.books, self.ctx.tables, var("step"), ids, var("now")
                )
            ),
            sql(preference.switch_on_statement(self.ctx, ids, var("now"))),
            "SET @rows = @@ROWCOUNT;",
            *self._travel("UserPreference", changed, "rows", UPDATED),
        ]

    def mark(self, selection: Selection) -> str:
        tables, books, settings = self.ctx.tables, self.books, self.ctx.settings
        window = dataclasses.replace(selection.window, until_sql=var("until"))
        selection = dataclasses.replace(selection, window=window)
        step, lo, hi, batch = var("step"), var("lo"), var("hi"), var("batch")
        s, run = books.step, books.run
        open_step = s.insert().values(
            run_id=var("run_id"),
            step_key=marking.STEP_ID,
            status="staging",
            rows_planned=0,
            rows_changed=0,
            window_from=window.start,
            window_until=var("until"),
            invites_since=selection.invites_since,
            footprints=",".join(sorted(selection.footprints)),
            batches_done=0,
            started_at=var("now"),
        )
        until = select(run.c.preference_on_at).where(run.c.run_id == var("run_id"))
        boundary = marking.next_boundary_statement(books, step, settings.batch_size, lo)
        checkpoint = (
            update(s)
            .where(s.c.step_row_id == step)
            .values(
                checkpoint_key=hi,
                rows_changed=s.c.rows_changed + var("changed"),
                batches_done=s.c.batches_done + 1,
            )
        )
        changed_ids = marking.recorded_ids(books, step, batch)
        loop = [
            "WHILE 1 = 1",
            "BEGIN",
            f"    SET @hi = ({sql(boundary)[:-1]});",
            "    IF @hi IS NULL BREAK;",
            "    SET @batch = @batch + 1;",
            "    BEGIN TRANSACTION;",
            "    "
            + sql(marking.record_batch_statement(tables, books, step, lo, hi, batch, var("now"))),
            "    SET @recorded = @@ROWCOUNT;",
            "    "
            + sql(
                marking.mark_batch_statement(
                    tables,
                    books,
                    step,
                    lo,
                    hi,
                    batch,
                    settings.acting_associate_id,
                    var("now"),
                )
            ),
            "    SET @changed = @@ROWCOUNT;",
            "    IF @changed <> @recorded",
            "    BEGIN",
            "        ROLLBACK TRANSACTION;",
            "        RAISERROR('Rows changed by another session meanwhile; batch rolled back. "
            "Run setup-tool upgrade to resume.', 16, 1);",
            "        RETURN;",
            "    END;",
            *(
                "    " + line
                for line in self._travel("appointment", changed_ids, "changed", UPDATED)
            ),
            "    " + sql(checkpoint),
            "    COMMIT TRANSACTION;",
            "    SET @lo = @hi;",
            "END;",
        ]
        finish = (
            update(s)
            .where(s.c.step_row_id == step)
            .values(status="completed", finished_at=func.getutcdate())
        )
        candidates = books.candidate
        return _go(
            f"-- Mark pre-existing invite appointments, {settings.batch_size} candidates per "
            "batch (one transaction each).",
            *self._declare_run(),
            "DECLARE @until DATETIME;",
            f"SET @until = ({sql(until)[:-1]});",
            "DECLARE @step INT;",
            "DECLARE @lo INT;",
            "SET @lo = -2147483648;",
            "DECLARE @hi INT;",
            "DECLARE @batch INT;",
            "SET @batch = 0;",
            "DECLARE @recorded INT;",
            "DECLARE @changed INT;",
            "DECLARE @first INT;",
            sql(open_step.inline()),
            "SET @step = SCOPE_IDENTITY();",
            sql(marking.stage_candidates_statement(tables, books, step, selection)),
            sql(update(s).where(s.c.step_row_id == step).values(status="marking")),
            *loop,
            sql(finish),
            sql(candidates.delete().where(candidates.c.step_row_id == step)),
        )

    def finish_run(self, plan: UpgradePlan) -> str:
        from setup_tool.upgrade import applied_outcome

        outcome, code = applied_outcome(plan, changed=plan.changes_pending)
        run = self.books.run
        finish = (
            update(run)
            .where(run.c.run_id == var("run_id"))
            .values(
                status="completed",
                outcome=outcome,
                exit_code=int(code),
                finished_at=func.getutcdate(),
            )
        )
        return _go("-- Done: record the outcome.", *self._declare_run(), sql(finish))
