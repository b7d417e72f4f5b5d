"""How the upgrade script is spelled: T-SQL for the DBA's script, PL/pgSQL for its transcription.

The script's logic (setup_tool.tsql_script) is written once against `ScriptDialect`: variables,
assignments, IF, a loop, transactions, messages and the stop. `TSql` spells it for SQL Server
Management Studio. `PlPgSql` spells the same logic as PostgreSQL DO blocks, because SQL Server
cannot run here while PostgreSQL can: the tests run the transcription on a real server, so a
keyset loop that never advances, or a first id taken before its sequence UPDATE, fails a test
instead of only reading wrong.

Statements are SQLAlchemy constructs compiled for each dialect with their values inlined, and
laid out for people by setup_tool.sql_layout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Insert, Select, literal_column
from sqlalchemy.dialects import mssql, postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement

from setup_tool.locking import (
    POSTGRES_LOCK_KEY,
    advisory_lock_held_sql,
    applock_mode,
    get_applock_statement,
    release_applock_sql,
)
from setup_tool.sql_layout import INDENT, layout

Lines = list[str]

# Portable variable types -> each dialect's spelling.
INT, BIGINT, DATETIME, TEXT = "int", "bigint", "datetime", "text"


def indent(lines: Lines, levels: int = 1) -> Lines:
    return [INDENT * levels + line if line else line for line in lines]


class ScriptDialect(ABC):
    """One procedural SQL dialect. Messages use RAISERROR's placeholders: %d for an integer
    variable, %s for a text one, %% for a percent sign."""

    dialect: Dialect
    types: ClassVar[dict[str, str]]
    now_sql: str  # the current UTC time
    host_sql: str  # the client's machine, for the run record
    user_sql: str  # the login, for the run record
    database_sql: str  # the database's name, for messages

    def var(self, name: str) -> ColumnElement[Any]:
        """Variable `name` inside a SQLAlchemy statement."""
        return literal_column(self.ref(name))

    @abstractmethod
    def ref(self, name: str) -> str:
        """Variable `name` as text."""

    def sql(self, statement: ClauseElement) -> Lines:
        """A statement as the database receives it, values inlined, laid out, with its `;`."""
        if isinstance(statement, Insert):
            # Else both dialects ask for the new key back (OUTPUT inserted..., RETURNING ...):
            # a result set per row in Management Studio, an error in PL/pgSQL.
            statement = statement.inline()
        return (self._compiled(statement) + ";").splitlines()

    def _compiled(self, element: ClauseElement) -> str:
        compiled = element.compile(dialect=self.dialect, compile_kwargs={"literal_binds": True})
        return layout(str(compiled).strip())

    def condition(self, element: ColumnElement[bool] | str) -> Lines:
        return [element] if isinstance(element, str) else self._compiled(element).splitlines()

    def declare(self, name: str, type_: str) -> str:
        return self._declare(name, self.types[type_])

    @abstractmethod
    def _declare(self, name: str, type_: str) -> str: ...

    @abstractmethod
    def assign(self, name: str, value: str) -> str:
        """Set variable `name` to the SQL expression `value`."""

    def assign_query(self, name: str, query: Select[Any]) -> Lines:
        """Set variable `name` to the single value `query` returns (NULL when none)."""
        lines = self._compiled(query).splitlines()
        first = self.assign(name, "(" + lines[0])
        if len(lines) == 1:
            return [first[:-1] + ");"]
        return [first[:-1], *indent(lines[1:-1]), indent([lines[-1] + ");"])[0]]

    @abstractmethod
    def table_exists(self, name: str) -> str:
        """A condition: table `name` (as the statements spell it) exists. A statement that reads
        a table which may be absent goes inside an IF on it, never beside it in one condition:
        SQL Server resolves a missing table only when its statement runs."""

    @abstractmethod
    def rowcount_into(self, name: str) -> str:
        """Right after a statement: how many rows it changed, into variable `name`."""

    @abstractmethod
    def insert_returning(self, insert: Insert, column: Any, name: str) -> Lines:
        """Insert one row and keep its new identity value in variable `name`."""

    @abstractmethod
    def if_(self, condition: ColumnElement[bool] | str, body: Lines) -> Lines: ...

    @abstractmethod
    def loop(self, body: Lines) -> Lines:
        """Repeat `body` until an exit_when() in it leaves."""

    @abstractmethod
    def exit_when(self, condition: str) -> str: ...

    @abstractmethod
    def begin(self) -> Lines: ...

    @abstractmethod
    def commit(self) -> Lines: ...

    @abstractmethod
    def leave(self) -> str:
        """End this batch here (what is done stays done)."""

    @abstractmethod
    def notice(self, message: str, *names: str) -> str:
        """A progress message the person running the script sees at once."""

    @abstractmethod
    def stop(self, message: str, *names: str, cleanup: Lines | None = None) -> Lines:
        """Roll back what is open, run `cleanup`, release the lock, say why, and run nothing
        more of the script."""

    @abstractmethod
    def seconds_since(self, name: str) -> str:
        """Whole seconds from the time in variable `name` until now."""

    @abstractmethod
    def lock_is_held(self) -> str:
        """A condition: this session holds setup-tool's run lock."""

    @abstractmethod
    def take_lock(self, timeout_ms: int, holder: Lines) -> Lines:
        """Take setup-tool's run lock (unless this session holds it) or stop; `holder` sets the
        text variable `holder` to who holds it, for the message."""

    @abstractmethod
    def release_lock(self) -> Lines: ...

    @abstractmethod
    def batch(self, comment: Lines, declares: Lines, body: Lines) -> str:
        """One batch of the script: the unit the person running it sees succeed or fail."""

    @staticmethod
    def quoted(message: str) -> str:
        return message.replace("'", "''")


class TSql(ScriptDialect):
    """SQL Server, as SQL Server Management Studio runs a script: batches separated by GO."""

    # A connected run on SQL Server 2012 or newer uses NVARCHAR(max), never NTEXT: so does the
    # script (sqlalchemy's mssql dialect guesses NTEXT when it has no server to ask).
    dialect = mssql.dialect(deprecate_large_types=True)  # type: ignore[no-untyped-call]
    types: ClassVar[dict[str, str]] = {
        INT: "INT",
        BIGINT: "BIGINT",
        DATETIME: "DATETIME",
        TEXT: "NVARCHAR(2048)",
    }
    now_sql = "GETUTCDATE()"
    host_sql = "HOST_NAME()"
    user_sql = "SUSER_SNAME()"
    database_sql = "DB_NAME()"

    def ref(self, name: str) -> str:
        return f"@{name}"

    def _declare(self, name: str, type_: str) -> str:
        return f"DECLARE @{name} {type_};"

    def assign(self, name: str, value: str) -> str:
        return f"SET @{name} = {value};"

    def table_exists(self, name: str) -> str:
        return f"OBJECT_ID(N'{self.quoted(name)}', N'U') IS NOT NULL"

    def rowcount_into(self, name: str) -> str:
        return f"SET @{name} = @@ROWCOUNT;"

    def insert_returning(self, insert: Insert, column: Any, name: str) -> Lines:
        return [*self.sql(insert), f"SET @{name} = SCOPE_IDENTITY();"]

    def if_(self, condition: ColumnElement[bool] | str, body: Lines) -> Lines:
        cond = self.condition(condition)
        return [f"IF {cond[0]}", *indent(cond[1:]), "BEGIN", *indent(body), "END;"]

    def loop(self, body: Lines) -> Lines:
        return ["WHILE 1 = 1", "BEGIN", *indent(body), "END;"]

    def exit_when(self, condition: str) -> str:
        return f"IF {condition} BREAK;"

    def begin(self) -> Lines:
        return ["BEGIN TRANSACTION;"]

    def commit(self) -> Lines:
        return ["COMMIT TRANSACTION;"]

    def leave(self) -> str:
        return "RETURN;"

    def _raiserror(self, severity: int, message: str, names: tuple[str, ...]) -> str:
        args = "".join(f", @{name}" for name in names)
        return f"RAISERROR(N'{self.quoted(message)}', {severity}, 1{args}) WITH NOWAIT;"

    def notice(self, message: str, *names: str) -> str:
        # Severity 0 is a message, not an error; WITH NOWAIT shows it in Management Studio's
        # Messages tab at once instead of when the batch ends (PRINT waits).
        return self._raiserror(0, message, names)

    def stop(self, message: str, *names: str, cleanup: Lines | None = None) -> Lines:
        # SET NOEXEC ON: Management Studio goes on with the next batch after an error; with it,
        # every later batch is only compiled, until the script's last batch turns it off.
        return [
            "IF @@TRANCOUNT > 0 ROLLBACK TRANSACTION;",
            *(cleanup or []),
            *self.release_lock(),
            self._raiserror(16, message, names),
            "SET NOEXEC ON;",
            "RETURN;",
        ]

    def seconds_since(self, name: str) -> str:
        return f"DATEDIFF(SECOND, @{name}, GETUTCDATE())"

    def lock_is_held(self) -> str:
        return self._compiled(applock_mode() != "NoLock")

    def take_lock(self, timeout_ms: int, holder: Lines) -> Lines:
        return [
            "SET @lock = 0;",
            *self.if_(
                self._compiled(applock_mode() == "NoLock"),
                [get_applock_statement("@lock", timeout_ms)],
            ),
            *self.if_(
                "@lock < 0",
                [
                    *holder,
                    *self.stop(
                        "setup-tool's lock on this database is held by %s (sp_getapplock "
                        "returned %d): another setup-tool run or script is working here. This "
                        "script changed nothing. Run it again when that one has finished.",
                        "holder",
                        "lock",
                    ),
                ],
            ),
        ]

    def release_lock(self) -> Lines:
        return self.if_(self.lock_is_held(), [release_applock_sql()])

    def batch(self, comment: Lines, declares: Lines, body: Lines) -> str:
        return "\n".join([*comment, *declares, *body, "GO", ""])


class PlPgSql(ScriptDialect):
    """PostgreSQL: each batch a DO block, run outside a transaction block so that its COMMITs
    end one transaction and start the next, as the T-SQL batches do."""

    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    types: ClassVar[dict[str, str]] = {
        INT: "integer",
        BIGINT: "bigint",
        DATETIME: "timestamp",
        TEXT: "text",
    }
    now_sql = "timezone('UTC', clock_timestamp())"
    host_sql = "coalesce(host(inet_client_addr()), 'local')"
    user_sql = "session_user"
    database_sql = "current_database()"

    def ref(self, name: str) -> str:
        return f"v_{name}"  # never a column's name

    def _declare(self, name: str, type_: str) -> str:
        return f"v_{name} {type_};"

    def assign(self, name: str, value: str) -> str:
        return f"v_{name} := {value};"

    def table_exists(self, name: str) -> str:
        return f"to_regclass('{self.quoted(name)}') IS NOT NULL"

    def rowcount_into(self, name: str) -> str:
        return f"GET DIAGNOSTICS v_{name} = ROW_COUNT;"

    def insert_returning(self, insert: Insert, column: Any, name: str) -> Lines:
        lines = self._compiled(insert.returning(column)).splitlines()
        return [*lines[:-1], lines[-1] + f" INTO v_{name};"]

    def if_(self, condition: ColumnElement[bool] | str, body: Lines) -> Lines:
        cond = self.condition(condition)
        return [f"IF {cond[0]}", *indent(cond[1:]), "THEN", *indent(body), "END IF;"]

    def loop(self, body: Lines) -> Lines:
        return ["LOOP", *indent(body), "END LOOP;"]

    def exit_when(self, condition: str) -> str:
        return f"EXIT WHEN {condition};"

    def begin(self) -> Lines:
        return []  # a COMMIT in a DO block starts the next transaction by itself

    def commit(self) -> Lines:
        return ["COMMIT;"]

    def leave(self) -> str:
        return "RETURN;"

    def _format(self, message: str) -> str:
        return self.quoted(message.replace("%d", "%").replace("%s", "%"))

    def notice(self, message: str, *names: str) -> str:
        args = "".join(f", v_{name}" for name in names)
        return f"RAISE NOTICE '{self._format(message)}'{args};"

    def stop(self, message: str, *names: str, cleanup: Lines | None = None) -> Lines:
        # The exception rolls back the open transaction and ends the DO block; whoever runs the
        # blocks stops at the first that fails. `cleanup` would be rolled back with it.
        args = "".join(f", v_{name}" for name in names)
        return [f"RAISE EXCEPTION '{self._format(message)}'{args};"]

    def seconds_since(self, name: str) -> str:
        return f"floor(extract(epoch FROM {self.now_sql} - v_{name}))::integer"

    def lock_is_held(self) -> str:
        return f"({advisory_lock_held_sql()}) > 0"

    def take_lock(self, timeout_ms: int, holder: Lines) -> Lines:
        # No server-side wait here: the transcription only has to hold the same lock as the
        # tool, so that the tests can see the tool meet it.
        return self.if_(
            f"NOT ({self.lock_is_held()}) AND NOT pg_try_advisory_lock({POSTGRES_LOCK_KEY})",
            [
                *holder,
                *self.stop(
                    "setup-tool's lock on this database is held by %s.",
                    "holder",
                ),
            ],
        )

    def release_lock(self) -> Lines:
        return self.if_(self.lock_is_held(), [f"PERFORM pg_advisory_unlock({POSTGRES_LOCK_KEY});"])

    def batch(self, comment: Lines, declares: Lines, body: Lines) -> str:
        declare = ["DECLARE", *indent(declares)] if declares else []
        return "\n".join(
            [*comment, "DO $script$", *declare, "BEGIN", *indent(body), "END", "$script$;", ""]
        )
