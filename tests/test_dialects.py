"""setup_tool.dialects: each engine's facts in one place, and one answer for SQLite's files.

The lock, the rights check, the output-safety rule and the engine must agree on which files a
SQLite database is; before they asked one function, a folder with spaces got two answers.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import make_url
from sqlalchemy.dialects import mssql, postgresql

from setup_tool.connection import create_engine_for, effective_table_prefix
from setup_tool.dialects import (
    LOCK_FILE_SUFFIX,
    SQLITE_COMPANION_NAMES,
    dialect_of,
    lock_file_path,
    sqlite_files,
    sqlite_path,
)
from setup_tool.lock_waits import holding_lock_wait, lock_timeout_sql, yield_deadlocks_sql
from setup_tool.locking import sqlite_lock_file
from setup_tool.output_files import database_files


def test_each_engine_is_known_by_name_url_engine_and_connection(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    sqlite3.connect(path).close()
    engine = create_engine_for(make_url(f"sqlite:///{path}"))
    try:
        with engine.connect() as conn:
            found = {
                dialect_of("sqlite"),
                dialect_of(make_url(f"sqlite:///{path}")),
                dialect_of(engine),
                dialect_of(conn),
            }
    finally:
        engine.dispose()
    assert len(found) == 1
    (sqlite,) = found
    assert sqlite.is_file and sqlite.run_lock == "file lock" and not sqlite.row_locks
    assert dialect_of(make_url("mssql+pyodbc://sa@sql01/SuperOffice")).run_lock == "applock"
    assert dialect_of(make_url("postgresql+psycopg://u@h/db")).run_lock == "advisory lock"


def test_an_unknown_engine_gets_no_lock_no_rights_check_and_no_lock_wait_bound() -> None:
    other = dialect_of("oracle")
    assert other.name == "oracle" and other.run_lock is None
    assert other.table_right_sql is None and other.create_table_query("crm7") is None
    assert other.lock_timeout_sql(500) is None and other.analyze_sql('"t"') is None


@pytest.mark.parametrize(
    ("name", "statement"),
    [
        ("mssql", "SET LOCK_TIMEOUT 1500"),
        ("postgresql", "SET LOCAL lock_timeout = 1500"),
        ("sqlite", "PRAGMA busy_timeout = 1500"),
    ],
)
def test_lock_waits_are_bounded_in_each_engines_words(name: str, statement: str) -> None:
    assert lock_timeout_sql(name, 1.5) == statement
    assert str(lock_timeout_sql(name, 0.0001)).endswith(" 1")  # never 0: PostgreSQL waits forever
    with pytest.raises(ValueError):
        dialect_of(name).lock_timeout_sql(0)


def test_only_sql_server_yields_in_deadlocks_and_only_row_locks_shorten_the_holding_wait() -> None:
    assert yield_deadlocks_sql("mssql") == "SET DEADLOCK_PRIORITY LOW"
    assert yield_deadlocks_sql("postgresql") is None and yield_deadlocks_sql("sqlite") is None
    assert holding_lock_wait("mssql", 10.0) == holding_lock_wait("postgresql", 10.0) == 0.5
    assert holding_lock_wait("sqlite", 10.0) == 10.0  # a writer holds the whole file anyway


def test_rights_queries_take_their_parameters_on_each_server() -> None:
    pg, ms = dialect_of("postgresql"), dialect_of("mssql")
    assert pg.table_right_sql == "SELECT has_table_privilege(:table, :right)"
    assert ms.table_right_sql == "SELECT HAS_PERMS_BY_NAME(:table, 'OBJECT', :right)"
    assert pg.create_table_query(None) == (
        "SELECT has_schema_privilege(:schema, 'CREATE')",
        {"schema": "public"},
    )
    assert pg.create_table_query("crm7") == (
        "SELECT has_schema_privilege(:schema, 'CREATE')",
        {"schema": "crm7"},
    )
    assert ms.create_table_query("crm7") == (
        "SELECT HAS_PERMS_BY_NAME(DB_NAME(), 'DATABASE', 'CREATE TABLE')",
        {},
    )


def test_only_postgresql_refreshes_statistics_and_sql_server_names_variables_with_at() -> None:
    table = postgresql.dialect().identifier_preparer.quote("setup_tool_candidate")  # type: ignore[no-untyped-call]
    assert dialect_of("postgresql").analyze_sql(table) == f"ANALYZE {table}"
    assert dialect_of("mssql").analyze_sql("[t]") is None
    assert dialect_of("sqlite").analyze_sql('"t"') is None
    assert dialect_of(mssql.dialect.name).variable("lo") == "@lo"
    assert dialect_of("postgresql").variable("lo") == ":lo"


def test_the_default_table_prefix_is_crm7_on_servers_and_none_in_a_file() -> None:
    assert effective_table_prefix(make_url("mssql+pyodbc://sa@h/db"), None) == "crm7"
    assert effective_table_prefix(make_url("postgresql+psycopg://u@h/db"), None) == "crm7"
    assert effective_table_prefix(make_url("sqlite:///crm.db"), None) is None


def test_lock_output_safety_and_engine_agree_on_the_files_of_a_database_with_spaces(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "x y"
    folder.mkdir()
    database = folder / "crm db.db"
    sqlite3.connect(database).close()
    database = database.resolve()  # the engine opens the resolved file
    url_text = f"sqlite:///{quote(str(database))}"  # percent-encoded, as a user may write it
    engine = create_engine_for(make_url(url_text))
    try:
        assert engine.url.database and engine.url.database.startswith("file:")  # a URI now
        assert sqlite_path(engine.url) == database
        lock = sqlite_lock_file(engine)
    finally:
        engine.dispose()
    assert lock == lock_file_path(database) == Path(f"{database}{LOCK_FILE_SUFFIX}")
    protected = set(database_files(url_text))
    assert protected == set(sqlite_files(database))
    assert {database, lock} | {Path(f"{database}{s}") for s in SQLITE_COMPANION_NAMES} <= protected
    assert not (tmp_path / "x%20y").exists()


def test_a_database_reached_through_a_link_shares_the_resolved_files(tmp_path: Path) -> None:
    database = (tmp_path / "crm.db").resolve()
    sqlite3.connect(database).close()
    link = tmp_path / "link.db"
    link.symlink_to(database)
    assert lock_file_path(link) == lock_file_path(database)
    files = set(sqlite_files(link))
    assert {link, database, lock_file_path(database), Path(f"{database}-wal")} <= files
    assert sqlite_path(make_url("sqlite://")) is None
    assert sqlite_path(make_url("sqlite:///:memory:")) is None
