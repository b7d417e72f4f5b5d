"""Opening the customer database: engine, SuperOffice tables as stored, the tool's own tables."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL

from setup_tool.bookkeeping import Bookkeeping
from setup_tool.connection import (
    ConnectionSettings,
    build_url,
    create_engine_for,
    display_url,
    effective_table_prefix,
    open_connection,
)
from setup_tool.dialects import LOCK_FILE_SUFFIX, dialect_of
from setup_tool.errors import BlockedError, DryRunWriteAttempt
from setup_tool.schema import SuperOfficeTables, reflect_tables


@dataclass(frozen=True)
class Database:
    engine: Engine
    url: URL
    schema: str | None
    tables: SuperOfficeTables
    books: Bookkeeping
    read_only: bool

    @property
    def display_url(self) -> str:
        return display_url(self.url)

    @property
    def dialect_name(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(settings: ConnectionSettings, *, read_only: bool) -> Database:
    """Connect, check it is SuperOffice, and find the tables as this database stores them."""
    url = build_url(settings)
    schema = effective_table_prefix(url, settings.table_prefix)
    if not read_only:
        require_writable_sqlite_file(url)
    engine = create_engine_for(url, read_only=read_only, login_timeout=settings.login_timeout)
    if dialect_of(engine).is_file:  # SQLite: it stores whatever bytes it is given
        event.listen(engine, "connect", _lenient_text)
    if read_only:
        guard_against_writes(engine)
    try:
        with open_connection(engine) as conn:
            tables = reflect_tables(conn, schema)
    except BaseException:
        engine.dispose()
        raise
    return Database(engine, url, schema, tables, Bookkeeping.for_schema(schema), read_only)


def _lenient_text(dbapi_connection: Any, _record: Any) -> None:
    # SQLite stores whatever bytes it is given; text that is not UTF-8 (a ProductVersion row
    # written by some other tool) is read with U+FFFD where it breaks, as unreadable evidence,
    # instead of failing the whole query.
    dbapi_connection.text_factory = _decode_text


def _decode_text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def require_writable_sqlite_file(url: URL) -> None:
    """Before a run that writes: the SQLite file, and the folder where SQLite puts its journal
    and setup-tool its run lock file, must be writable for this user."""
    path = dialect_of(url).database_file(url)
    if path is None or not path.is_file():
        return  # in memory, or missing: opening it says what is wrong
    folder = path.resolve().parent
    hint = (
        "Make it writable for the account running setup-tool, or copy the database to a "
        "writable folder. A dry run (--dry-run) works with read access only."
    )
    if not os.access(folder, os.W_OK):
        raise BlockedError(
            f"The folder {folder} is read-only for this user, but a run that changes the "
            f"database creates files beside {path.name}: SQLite's journal and setup-tool's run "
            f"lock ({path.name}{LOCK_FILE_SUFFIX}). Nothing was changed.",
            hint,
        )
    if not os.access(path, os.W_OK):
        raise BlockedError(
            f"The SQLite database file {path} is read-only for this user. Nothing was changed.",
            hint,
        )


# Reads only: the dry run's promise is enforced here, not just intended.
_READ = re.compile(
    r"^\s*(select|with|show|explain|pragma\s+[\w.]+(\s*\([^)]*\))?\s*;?\s*$)", re.IGNORECASE
)
_SESSION = re.compile(
    r"^\s*(set\s+|begin|commit|rollback|release\s+savepoint|savepoint)", re.IGNORECASE
)


# Words that make any statement a write, wherever they stand (WITH ... DELETE, SELECT ... INTO).
_WRITE_WORDS = re.compile(
    r"\b(insert|update|delete|merge|into|create|drop|alter|truncate|exec|execute|grant|revoke|"
    r"call|do|copy|vacuum|reindex|attach|detach|replace|upsert)\b",
    re.IGNORECASE,
)
_STRING_LITERALS = re.compile(r"'(?:[^']|'')*'")


def is_read_statement(statement: str) -> bool:
    code = _STRING_LITERALS.sub("''", statement)
    if ";" in code.rstrip().rstrip(";"):
        return False  # more than one statement
    if _SESSION.match(code):
        return not _WRITE_WORDS.search(code)
    return bool(_READ.match(code)) and not _WRITE_WORDS.search(code)


def guard_against_writes(engine: Engine) -> None:
    """Refuse, before it reaches the database, any statement that is not a read."""

    @event.listens_for(engine, "before_cursor_execute")
    def _refuse_writes(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not is_read_statement(statement):
            first_line = statement.strip().splitlines()[0][:120] if statement.strip() else ""
            raise DryRunWriteAttempt(
                f"Refused a write during a dry run: {first_line}",
                "This is a bug in setup-tool; nothing was changed. Please report it.",
            )
