"""The run lock, for real: other processes, killed holders, terminated sessions, a real server.

Every engine comes from the production factory (setup_tool.connection.create_engine_for), so the
lock is taken on the URL the tool really holds (a SQLite engine's is a percent-encoded file: URI).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import sqlglot
from conftest import DEMO_NOW
from postgres_fixture import PostgresDatabase, PostgresServer
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlglot import exp

from setup_tool import locking
from setup_tool.connection import create_engine_for
from setup_tool.demo import DemoOptions, build_demo_database
from setup_tool.errors import ExitCode, LockBusyError, SetupToolError
from setup_tool.locking import (
    LOCK_RESOURCE,
    POSTGRES_LOCK_KEY,
    LockLostError,
    advisory_lock_held_sql,
    applock_acquired,
    applock_held_sql,
    applock_sql,
    lock_file_path,
    release_applock_sql,
    run_lock,
    sqlite_lock_file,
)

HOLDER = "run 42 started 2024-05-01 09:30 by alice on WS-7"
TOOL = [sys.executable, "-m", "setup_tool"]


def engine_for(url: str) -> Engine:
    """An engine as the tool makes one (setup_tool.connection.create_engine_for)."""
    return create_engine_for(make_url(url))


# A second setup-tool process: takes the lock, says "locked", then holds it until stdin closes
# ("hold"), for N seconds ("hold-for N"), or lets go at once ("try").
CHILD_SCRIPT = """
import sys, time
from sqlalchemy import make_url
from setup_tool.connection import create_engine_for
from setup_tool.errors import SetupToolError
from setup_tool.locking import run_lock
url, mode, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
try:
    engine = create_engine_for(make_url(url))
    with run_lock(engine, timeout_seconds=timeout, describe_holder=lambda: "parent"):
        print("locked", flush=True)
        if mode == "hold":
            sys.stdin.readline()
        elif mode == "hold-for":
            time.sleep(float(sys.argv[4]))
except SetupToolError as exc:
    print(exc, flush=True)
    sys.exit(int(exc.exit_code))
"""


def run_child(url: str, timeout: float = 0.0) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", CHILD_SCRIPT, url, "try", str(timeout)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@contextmanager
def holding_process(url: str, *extra: str) -> Iterator[subprocess.Popen[str]]:
    """A child process that has taken the lock (it has said so) and still holds it."""
    mode = "hold-for" if extra else "hold"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_SCRIPT, url, mode, "0", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0


# --- SQLite --------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE appointment (appointment_id INTEGER PRIMARY KEY, text TEXT)")
        conn.executemany("INSERT INTO appointment (text) VALUES (?)", [("x",)] * 100)
    conn.close()
    return path


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def test_sqlite_second_process_is_busy_then_gets_the_lock(sqlite_file: Path) -> None:
    url = sqlite_url(sqlite_file)
    with run_lock(engine_for(url)):
        busy = run_child(url)
    assert busy.returncode == ExitCode.BUSY
    assert "Another setup-tool run holds the lock on this database" in busy.stdout
    free = run_child(url)
    assert (free.returncode, free.stdout.strip()) == (0, "locked")


def test_sqlite_busy_message_names_holder_and_what_to_do(sqlite_file: Path) -> None:
    url = sqlite_url(sqlite_file)
    engine = engine_for(url)
    busy = pytest.raises(LockBusyError)
    with holding_process(url), busy as caught, run_lock(engine, describe_holder=lambda: HOLDER):
        pytest.fail("took a lock another process holds")
    message = str(caught.value)
    assert HOLDER in message
    assert str(lock_file_path(sqlite_file)) in message
    assert "Wait for that run to finish" in message
    assert caught.value.exit_code == ExitCode.BUSY


def test_sqlite_holder_killed_with_sigkill_leaves_no_lock(sqlite_file: Path) -> None:
    url = sqlite_url(sqlite_file)
    with holding_process(url) as holder:
        assert run_child(url).returncode == ExitCode.BUSY  # it really holds the lock...
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        with run_lock(engine_for(url)):  # ...and its death released it: now it is ours
            assert run_child(url).returncode == ExitCode.BUSY


def test_sqlite_database_file_is_untouched(sqlite_file: Path) -> None:
    before = sqlite_file.read_bytes()
    mtime = sqlite_file.stat().st_mtime_ns
    with run_lock(engine_for(sqlite_url(sqlite_file))):
        pass
    assert sqlite_file.read_bytes() == before
    assert sqlite_file.stat().st_mtime_ns == mtime
    # No journal, no WAL: only the (empty) sidecar that carries the OS lock.
    assert sorted(p.name for p in sqlite_file.parent.iterdir()) == [
        "crm.db",
        "crm.db.setup-tool.lock",
    ]
    assert lock_file_path(sqlite_file).stat().st_size == 0


def test_sqlite_timeout_waits_at_least_as_long_as_asked(sqlite_file: Path) -> None:
    url = sqlite_url(sqlite_file)
    with holding_process(url):
        started = time.monotonic()
        busy = pytest.raises(LockBusyError, match=r"waited 0\.8 s")
        with busy, run_lock(engine_for(url), timeout_seconds=0.8):
            pass
        assert time.monotonic() - started >= 0.8


def test_sqlite_waiter_gets_the_lock_when_holder_finishes(sqlite_file: Path) -> None:
    url = sqlite_url(sqlite_file)
    with holding_process(url, "0.5"):
        started = time.monotonic()
        with run_lock(engine_for(url), timeout_seconds=20):
            waited = time.monotonic() - started
            assert run_child(url).returncode == ExitCode.BUSY
    # It waited for the holder (who keeps it 0.5 s after saying so), not for the timeout.
    assert 0.2 <= waited < 10


def test_sqlite_second_lock_in_the_same_process_is_busy(sqlite_file: Path) -> None:
    engine = engine_for(sqlite_url(sqlite_file))
    with run_lock(engine), pytest.raises(LockBusyError), run_lock(engine):
        pass


def test_sqlite_failing_describe_holder_still_reports_busy(sqlite_file: Path) -> None:
    def broken() -> str:
        raise RuntimeError("no run table yet")

    engine = engine_for(sqlite_url(sqlite_file))
    busy = pytest.raises(LockBusyError, match="could not be identified")
    with run_lock(engine), busy, run_lock(engine, describe_holder=broken):
        pass


def test_sqlite_in_memory_is_not_locked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    engine = engine_for("sqlite://")
    with run_lock(engine), run_lock(engine):
        pass
    assert list(tmp_path.iterdir()) == []


def test_sqlite_lock_file_that_cannot_be_created_is_an_error(sqlite_file: Path) -> None:
    lock_file_path(sqlite_file).mkdir()  # a folder where the lock file should be
    engine = engine_for(sqlite_url(sqlite_file))
    failed = pytest.raises(SetupToolError, match="Could not take the setup-tool run lock")
    with failed as caught, run_lock(engine):
        pass
    assert not isinstance(caught.value, LockBusyError)


# --- SQLite: which file, whatever the URL looks like --------------------------------------------

HOSTILE_NAMES = [
    ("x y", "crm db.db"),  # spaces, percent-encoded in the engine's file: URI
    ("Østfold kontor", "crm Ø.db"),  # non-ASCII, UTF-8 percent-encoded
    ("50% off #1", "a?b=c&d.db"),  # characters that mean something in a URL or a URI
]


def sqlite_opened_file(engine: Engine) -> Path:
    """The file SQLite itself has open for `engine` (PRAGMA database_list)."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("PRAGMA database_list").fetchall()
    [main] = [row[2] for row in rows if row[1] == "main"]
    return Path(main)


def url_forms(path: Path, cwd: Path) -> list[str]:
    """One database file, written every way a user may write it."""
    encoded = quote(str(path))
    forms = [
        f"sqlite:///{encoded}",  # absolute, percent-encoded
        f"sqlite:///{quote(str(path.relative_to(cwd)))}",  # relative to the working directory
        f"sqlite:///file:{quote(encoded)}?uri=true",  # a SQLite URI (SQLite decodes it again)
        f"sqlite:///file://{quote(encoded)}?mode=rw&uri=true",  # a file:// URI
    ]
    if not any(c in str(path) for c in "%?#"):  # a URL can hold these only encoded
        forms += [f"sqlite:///{path}", f"sqlite:///{path.relative_to(cwd)}"]  # as typed
    return forms


@pytest.mark.parametrize(("folder", "name"), HOSTILE_NAMES)
def test_every_url_form_locks_the_file_sqlite_opens(
    folder: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / folder / name
    path.parent.mkdir()
    sqlite3.connect(path).close()
    before = set(tmp_path.rglob("*"))
    for url in url_forms(path, tmp_path):
        engine = engine_for(url)
        assert sqlite_opened_file(engine) == path, url
        assert sqlite_lock_file(engine) == lock_file_path(path), url
        with run_lock(engine):
            assert lock_file_path(path).exists(), url
        engine.dispose()
    # Nothing beside the database and its lock file: no "x%20y" folder, no stray file.
    assert set(tmp_path.rglob("*")) - before == {lock_file_path(path)}


@pytest.mark.parametrize(
    "url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file::memory:?uri=true"]
)
def test_in_memory_databases_have_no_lock_file(url: str) -> None:
    assert sqlite_lock_file(engine_for(url)) is None


def test_two_spellings_of_one_file_share_one_lock(tmp_path: Path) -> None:
    path = tmp_path / "x y" / "crm Ø.db"
    path.parent.mkdir()
    sqlite3.connect(path).close()
    link = tmp_path / "link.db"
    link.symlink_to(path)
    with holding_process(f"sqlite:///{path}"):
        for url in (f"sqlite:///{quote(str(path))}", f"sqlite:///{link}"):
            busy = run_child(url)
            assert busy.returncode == ExitCode.BUSY, (url, busy.stdout)


def test_a_real_upgrade_of_a_database_in_a_folder_with_spaces(tmp_path: Path) -> None:
    """Issue #9 item 10: "x y/crm db.db" (and non-ASCII) end to end through the CLI."""
    path = tmp_path / "x y Ø" / "crm db Ø.db"
    path.parent.mkdir()
    build_demo_database(path, DemoOptions(appointments=600, now=DEMO_NOW))
    with holding_process(f"sqlite:///{path}"):  # the CLI takes the same lock under that name
        busy = subprocess.run(
            [*TOOL, "upgrade", "--database-url", f"sqlite:///{quote(str(path))}", "--unattended"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
    assert busy.returncode == ExitCode.BUSY, busy.stderr
    for url in (f"sqlite:///{path}", f"sqlite:///{quote(str(path))}"):
        done = subprocess.run(
            [*TOOL, "upgrade", "--database-url", url, "--unattended", "--fix-overrides"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    assert lock_file_path(path).parent == path.parent
    assert {p.name for p in path.parent.iterdir()} >= {"crm db Ø.db", "crm db Ø.db.setup-tool.lock"}
    assert not [p for p in tmp_path.rglob("*%*")]  # no folder or file named after the URL
    with sqlite3.connect(path) as conn:
        runs = conn.execute("SELECT status FROM setup_tool_run ORDER BY run_id").fetchall()
    assert runs[0] == ("completed",)


# --- the lock's check: still held? ---------------------------------------------------------------


def test_sqlite_check_passes_while_held(sqlite_file: Path) -> None:
    with run_lock(engine_for(sqlite_url(sqlite_file))) as lock:
        lock.check()
        lock.check()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_sqlite_lock_file_deleted_or_replaced_is_a_lost_lock(sqlite_file: Path, how: str) -> None:
    """A newcomer would lock the new file under the same name and run alongside."""
    path = lock_file_path(sqlite_file)
    with run_lock(engine_for(sqlite_url(sqlite_file))) as lock:
        path.unlink()
        if how == "replaced":
            path.touch()
            with run_lock(engine_for(sqlite_url(sqlite_file))):
                pass  # the newcomer gets "the" lock
        with pytest.raises(LockLostError) as lost:
            lock.check()
    assert lost.value.exit_code == ExitCode.FAILED
    assert "was lost" in str(lost.value) and "deleted or replaced" in str(lost.value)
    assert "run the same command again to resume" in str(lost.value)


def test_negative_timeout_is_refused(sqlite_file: Path) -> None:
    with (
        pytest.raises(ValueError),
        run_lock(engine_for(sqlite_url(sqlite_file)), timeout_seconds=-1),
    ):
        pass


# --- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture
def pg_engines(pg_database: PostgresDatabase) -> Iterator[tuple[Engine, Engine]]:
    first, second = engine_for(pg_database.url()), engine_for(pg_database.url())
    yield first, second
    first.dispose()
    second.dispose()


@pytest.fixture
def pg_admin(pg_database: PostgresDatabase) -> Iterator[Engine]:
    # The test's own superuser session, not the tool's: a plain engine.
    engine = create_engine(pg_database.admin_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def advisory_lock_holders(admin: Engine) -> list[tuple[int, str]]:
    """(pid, state) of every session holding the run lock in the current database."""
    query = text(
        "SELECT l.pid, a.state FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with admin.connect() as conn:
        return [(pid, state) for pid, state in conn.execute(query)]


def wait_until_gone(admin: Engine, pid: int, seconds: float = 10.0) -> bool:
    query = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
    deadline = time.monotonic() + seconds
    with admin.connect() as conn:
        while conn.execute(query, {"pid": pid}).scalar_one():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
    return True


def test_pg_second_engine_is_busy_while_first_holds(pg_engines: tuple[Engine, Engine]) -> None:
    first, second = pg_engines
    busy = pytest.raises(LockBusyError)
    with run_lock(first), busy as caught, run_lock(second, describe_holder=lambda: HOLDER):
        pytest.fail("took a lock another session holds")
    assert HOLDER in str(caught.value)
    assert "Another setup-tool run holds the lock on this database" in str(caught.value)
    with run_lock(second):
        pass


def test_pg_lock_is_taken_on_its_own_idle_session(
    pg_engines: tuple[Engine, Engine], pg_admin: Engine
) -> None:
    first, _ = pg_engines
    with first.connect() as caller:
        caller_pid = caller.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with run_lock(first):
            [(lock_pid, state)] = advisory_lock_holders(pg_admin)
            assert lock_pid != caller_pid
            assert state == "idle"  # autocommit: not "idle in transaction" for the whole run
    assert advisory_lock_holders(pg_admin) == []
    # The lock's session is closed, not pooled, so a failed unlock could never linger.
    assert wait_until_gone(pg_admin, lock_pid)


def test_pg_terminated_holder_session_releases_the_lock(
    pg_engines: tuple[Engine, Engine], pg_admin: Engine
) -> None:
    first, second = pg_engines
    with run_lock(first):  # leaving this block must not fail although its session is gone
        [(lock_pid, _)] = advisory_lock_holders(pg_admin)
        with pg_admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lock_pid})
        with run_lock(second, timeout_seconds=10):
            pass


def terminate(admin: Engine, pid: int) -> None:
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    assert wait_until_gone(admin, pid)


def test_pg_check_passes_while_held_and_the_query_sees_only_the_holder(
    pg_engines: tuple[Engine, Engine], pg_admin: Engine
) -> None:
    first, second = pg_engines
    with run_lock(first) as lock:
        lock.check()
        lock.check()
        with second.connect() as other:  # the same question on another session: not held there
            assert other.exec_driver_sql(advisory_lock_held_sql()).scalar() == 0
        assert len(advisory_lock_holders(pg_admin)) == 1


def test_pg_terminated_lock_session_fails_the_check(
    pg_engines: tuple[Engine, Engine], pg_admin: Engine
) -> None:
    first, second = pg_engines
    with run_lock(first) as lock:
        [(lock_pid, _)] = advisory_lock_holders(pg_admin)
        terminate(pg_admin, lock_pid)
        with run_lock(second):  # why the holder must stop: another run can start now
            pass
        with pytest.raises(LockLostError) as lost:
            lock.check()
    message = str(lost.value)
    assert lost.value.exit_code == ExitCode.FAILED
    assert "run lock on database" in message and "was lost" in message
    assert "its database session has ended" in message
    assert "stopped before committing its next batch" in message
    assert "run the same command again to resume" in message


def test_pg_lock_session_is_not_ended_by_idle_session_timeout(
    pg_database: PostgresDatabase, pg_admin: Engine
) -> None:
    with pg_admin.connect() as conn:  # every new session of the tool's login, in this database
        conn.exec_driver_sql(
            f"ALTER ROLE crm_user IN DATABASE {pg_database.name} SET idle_session_timeout = 300"
        )
    engine = engine_for(pg_database.url())
    try:
        with engine.connect() as idle:  # the setting bites: an ordinary idle session is ended
            time.sleep(1.0)
            with pytest.raises(OperationalError):
                idle.exec_driver_sql("SELECT 1")
        with run_lock(engine) as lock:  # the lock's session sits idle much longer, and lives
            time.sleep(1.0)
            lock.check()
            assert len(advisory_lock_holders(pg_admin)) == 1
    finally:
        engine.dispose()


def test_pg_holder_process_killed_with_sigkill_releases_the_lock(
    pg_database: PostgresDatabase, pg_engines: tuple[Engine, Engine]
) -> None:
    _, second = pg_engines
    with holding_process(pg_database.url()) as holder:
        with pytest.raises(LockBusyError), run_lock(second):
            pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        with run_lock(second, timeout_seconds=10):
            pass


def test_pg_waiter_polls_until_the_holder_is_done(pg_database: PostgresDatabase) -> None:
    engine = engine_for(pg_database.url())
    with holding_process(pg_database.url(), "0.5"):
        started = time.monotonic()
        with run_lock(engine, timeout_seconds=20):
            waited = time.monotonic() - started
            assert run_child(pg_database.url()).returncode == ExitCode.BUSY
    # It waited for the holder (who keeps it 0.5 s after saying so), not for the timeout.
    assert 0.2 <= waited < 10
    with holding_process(pg_database.url()):
        started = time.monotonic()
        with pytest.raises(LockBusyError), run_lock(engine, timeout_seconds=0.5):
            pass
        assert time.monotonic() - started >= 0.5
    engine.dispose()


def test_pg_lock_is_per_database(
    pg_database: PostgresDatabase, postgres_server: PostgresServer
) -> None:
    other = f"{pg_database.name}_b"
    postgres_server.create_database(other)
    try:
        engines = [engine_for(pg_database.url()), engine_for(postgres_server.url(other))]
        with run_lock(engines[0]), run_lock(engines[1]):
            pass
        for engine in engines:
            engine.dispose()
    finally:
        postgres_server.drop_database(other)


def test_pg_wrong_password_is_an_error_not_busy(pg_database: PostgresDatabase) -> None:
    engine = engine_for(pg_database.url(password="wrong-Secret-123"))
    with pytest.raises(SetupToolError) as caught, run_lock(engine):
        pass
    assert not isinstance(caught.value, LockBusyError)
    assert "password authentication failed" in str(caught.value)
    assert "wrong-Secret-123" not in str(caught.value)


def test_pg_lock_key_never_changes() -> None:
    # Two tool versions deriving different keys would both "hold" the lock at the same time.
    assert (LOCK_RESOURCE, POSTGRES_LOCK_KEY) == ("setup-tool", -2839683357394678058)


# --- SQL Server, without a server ----------------------------------------------------------------


def exec_arguments(statement: exp.Execute) -> dict[str, object]:
    arguments: dict[str, object] = {}
    for argument in statement.expressions:
        assert isinstance(argument, exp.EQ)
        value = argument.expression
        arguments[argument.this.name] = value.to_py() if isinstance(value, exp.Literal) else value
    return arguments


def test_applock_sql_asks_for_an_exclusive_session_lock_and_returns_the_code() -> None:
    batch = applock_sql(5000)
    for part in (
        "EXEC @r = sp_getapplock",
        "@Resource = N'setup-tool'",
        "@LockMode = 'Exclusive'",
        "@LockOwner = 'Session'",
        "@LockTimeout = 5000",
        "SELECT @r",
    ):
        assert part in batch


def test_applock_sql_parses_as_tsql_without_opaque_commands() -> None:
    statements = sqlglot.parse(applock_sql(5000), read="tsql")
    assert not [s for s in statements if isinstance(s, exp.Command)]
    nocount, declare, execute, select = statements
    assert isinstance(nocount, exp.Set)
    assert isinstance(declare, exp.Declare)
    assert declare.sql(dialect="tsql") == "DECLARE @r INTEGER"
    assert isinstance(execute, exp.Execute)
    assert execute.this.name == "sp_getapplock"
    assert execute.args["return_status"].name == "r"  # the return code lands in @r ...
    arguments = exec_arguments(execute)
    assert isinstance(arguments.pop("Resource"), exp.National)
    assert arguments == {"LockMode": "Exclusive", "LockOwner": "Session", "LockTimeout": 5000}
    assert isinstance(select, exp.Select)
    assert select.sql(dialect="tsql") == "SELECT @r"  # ... and comes back to be checked


def test_applock_held_sql_asks_applock_mode_for_this_session() -> None:
    sql = applock_held_sql()
    assert sql == (
        "SELECT CASE WHEN (APPLOCK_MODE('public', N'setup-tool', 'Session') <> 'NoLock') "
        "THEN 1 ELSE 0 END AS held"
    )
    [statement] = sqlglot.parse(sql, read="tsql")
    assert isinstance(statement, exp.Select)
    [call] = [f for f in statement.find_all(exp.Anonymous) if f.name.upper() == "APPLOCK_MODE"]
    principal, resource, owner = call.expressions
    assert (principal.name, owner.name) == ("public", "Session")
    assert isinstance(resource, exp.National) and resource.name == LOCK_RESOURCE
    [compared] = list(statement.find_all(exp.NEQ))
    assert compared.this == call and compared.expression.name == "NoLock"


class FakeMssqlSession:
    """The lock's dedicated SQL Server session, scripted: which statements reach it, and what
    APPLOCK_MODE answers."""

    def __init__(self, held: list[int]) -> None:
        self.held = held
        self.statements: list[str] = []

    def exec_driver_sql(self, statement: str) -> Any:
        self.statements.append(statement)
        answer: object = None
        if statement == applock_sql(0):
            answer = 0  # granted
        elif statement == applock_held_sql():
            answer = self.held.pop(0)
        return SimpleNamespace(scalar=lambda: answer)


def test_mssql_check_runs_applock_mode_on_the_lock_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = FakeMssqlSession(held=[1, 0])

    @contextmanager
    def dedicated(_engine: Engine) -> Iterator[FakeMssqlSession]:
        yield session

    monkeypatch.setattr(locking, "_dedicated_session", dedicated)
    engine = engine_for("mssql+pyodbc://sa@127.0.0.1:1/crm?driver=FreeTDS")  # never connects
    with run_lock(engine) as lock:
        lock.check()  # 'Exclusive'
        with pytest.raises(LockLostError, match="no longer lists it"):
            lock.check()  # 'NoLock'
    assert session.statements == [
        applock_sql(0),
        applock_held_sql(),
        applock_held_sql(),
        release_applock_sql(),
    ]


def test_release_applock_sql_parses_as_tsql() -> None:
    [statement] = sqlglot.parse(release_applock_sql(), read="tsql")
    assert isinstance(statement, exp.Execute)
    assert statement.this.name == "sp_releaseapplock"
    resource = exec_arguments(statement).pop("Resource")
    assert isinstance(resource, exp.National) and resource.name == LOCK_RESOURCE
    assert exec_arguments(statement)["LockOwner"] == "Session"


@pytest.mark.parametrize(("code", "acquired"), [(0, True), (1, True), (-1, False)])
def test_applock_return_codes(code: int, acquired: bool) -> None:
    assert applock_acquired(code) is acquired


@pytest.mark.parametrize("code", [-2, -3, -999, None])
def test_applock_failures_are_errors_not_busy(code: int | None) -> None:
    with pytest.raises(SetupToolError) as caught:
        applock_acquired(code)
    assert not isinstance(caught.value, LockBusyError)


def test_applock_sql_refuses_negative_timeout() -> None:
    with pytest.raises(ValueError):
        applock_sql(-1)


ODBC_CONNECT = quote_plus(
    "DRIVER={ODBC Driver 18 for SQL Server};SERVER=127.0.0.1,1;PWD=Hidden-Pa55"
)


@pytest.mark.parametrize(
    "url",
    [
        "mssql+pyodbc://sa:Hidden-Pa55@127.0.0.1:1/crm?driver=ODBC+Driver+18+for+SQL+Server",
        f"mssql+pyodbc:///?odbc_connect={ODBC_CONNECT}",
    ],
)
def test_mssql_unreachable_is_an_error_without_the_password(url: str) -> None:
    with pytest.raises(SetupToolError) as caught, run_lock(engine_for(url)):
        pass
    assert not isinstance(caught.value, LockBusyError)
    assert "Could not take the setup-tool run lock" in str(caught.value)
    assert "Hidden-Pa55" not in str(caught.value)
