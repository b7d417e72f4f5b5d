"""A throwaway PostgreSQL cluster for the test suite, started on loopback and removed afterwards.

Fixtures:

- ``postgres_server`` (session): a running :class:`PostgresServer`.
- ``pg_database`` (function): a fresh, empty database for one test, as a :class:`PostgresDatabase`
  object (``.name``, ``.admin_url``, ``.url(user=..., password=...)``), owned by ``crm_user`` and
  dropped afterwards (its connections are terminated first).

Roles: ``postgres`` is the superuser and logs in over loopback TCP without a password (trust);
``crm_user`` and ``crm_reader`` must log in with a SCRAM password (``CRM_USER_PASSWORD``,
``CRM_READER_PASSWORD``), so a wrong password is rejected for real. ``crm_reader`` gets no rights
here; tests GRANT it what they want it to read.

The binaries are looked up in ``$SETUP_TOOL_TEST_PG_BINDIR``, then the newest
``/usr/lib/postgresql/*/bin``, then ``PATH``. Without them the tests that need PostgreSQL are
skipped, except on CI (``CI=true``) where a silent skip would hide lost coverage: there they fail.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import URL

__all__ = [
    "ADMIN_USER",
    "CRM_READER",
    "CRM_READER_PASSWORD",
    "CRM_USER",
    "CRM_USER_PASSWORD",
    "PostgresDatabase",
    "PostgresServer",
    "pg_database",
    "postgres_server",
]

ADMIN_USER = "postgres"
CRM_USER = "crm_user"
CRM_USER_PASSWORD = "crm-Pa55word"
CRM_READER = "crm_reader"
CRM_READER_PASSWORD = "reader-Pa55word"
_PASSWORDS = {CRM_USER: CRM_USER_PASSWORD, CRM_READER: CRM_READER_PASSWORD}

HOST = "127.0.0.1"
_OS_USER = "postgres"  # initdb and postgres refuse to run as root
_START_TIMEOUT_SECONDS = 30.0
_STOP_TIMEOUT_SECONDS = 15.0
_PORT_ATTEMPTS = 3

_PG_HBA = f"""\
# Written by tests/postgres_fixture.py. First match wins.
local all {ADMIN_USER} trust
host  all {ADMIN_USER} {HOST}/32 trust
host  all all {HOST}/32 scram-sha-256
"""

_SERVER_SETTINGS = {
    "listen_addresses": HOST,
    # Durability is worthless for a cluster deleted after the run; speed is not.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "logging_collector": "off",
    "password_encryption": "scram-sha-256",
}


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _unavailable(reason: str) -> None:
    """Skip locally; fail on CI, where the workflow must install the `postgresql` package."""
    if _on_ci():
        pytest.fail(f"PostgreSQL tests cannot run on CI: {reason}. Install `postgresql`.")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def _version_key(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, newest version first."""
    candidates: list[Path] = []
    if env_dir := os.environ.get("SETUP_TOOL_TEST_PG_BINDIR"):
        candidates.append(Path(env_dir))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    """Runs in the server's child process: if pytest is killed, take the server down too."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGQUIT)  # 1 = PR_SET_PDEATHSIG; set after setuid, so it sticks


class PostgresServer:
    """One running cluster. Create with :meth:`start`; always :meth:`stop` it."""

    def __init__(self, bindir: Path, base_dir: Path, as_os_user: bool) -> None:
        self.bindir = bindir
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir / "socket"
        self.log_file = base_dir / "server.log"
        self.port = 0
        self.pid = 0
        self.startup_seconds = 0.0
        self._as_os_user = as_os_user
        self._process: subprocess.Popen[bytes] | None = None

    # --- public API -----------------------------------------------------------------------------

    def admin_url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL of the superuser (no password: trust on loopback)."""
        return self._render(ADMIN_USER, None, dbname)

    def url(self, dbname: str, user: str = CRM_USER, password: str | None = None) -> str:
        """SQLAlchemy URL for a password role; `password` defaults to that role's known one."""
        return self._render(
            user, password if password is not None else _PASSWORDS.get(user), dbname
        )

    def create_database(self, name: str, owner: str = CRM_USER) -> str:
        """Create an empty database owned by `owner`; returns its admin URL."""
        self._admin_execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(owner)
            )
        )
        return self.admin_url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database even while clients are still connected (they are terminated)."""
        self._admin_execute(
            sql.SQL(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = {} AND pid <> pg_backend_pid()"
            ).format(sql.Literal(name))
        )
        self._admin_execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        began = time.monotonic()
        self._prepare_dirs()
        self._run_initdb()
        (self.data_dir / "pg_hba.conf").write_text(_PG_HBA)
        self._start_on_free_port()
        self._create_roles()
        self.startup_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Fast shutdown by the postmaster's PID, then remove every file of the cluster."""
        try:
            if self._process is not None and self._process.poll() is None:
                self._signal_and_wait()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # --- internals ------------------------------------------------------------------------------

    def _render(self, user: str, password: str | None, dbname: str) -> str:
        url = URL.create(
            "postgresql+psycopg",
            username=user,
            password=password,
            host=HOST,
            port=self.port,
            database=dbname,
        )
        return url.render_as_string(hide_password=False)

    def _admin_execute(self, statement: sql.Composed) -> None:
        with psycopg.connect(
            host=HOST, port=self.port, user=ADMIN_USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(statement)

    def _run_as(self) -> str | None:
        """The OS user for initdb and postgres: both refuse to run as root."""
        return _OS_USER if self._as_os_user else None

    def _prepare_dirs(self) -> None:
        self.socket_dir.mkdir()
        if self._as_os_user:
            for path in (self.base_dir, self.socket_dir):
                shutil.chown(path, _OS_USER, _OS_USER)

    def _run_initdb(self) -> None:
        command = [
            str(self.bindir / "initdb"),
            f"--pgdata={self.data_dir}",
            f"--username={ADMIN_USER}",
            "--encoding=UTF8",
            "--locale=C",
            "--auth=trust",
            "--no-sync",
        ]
        user = self._run_as()
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed ({result.returncode}) in {self.base_dir}; the {_OS_USER} OS user"
                f" must be able to reach that directory.\n{result.stdout}\n{result.stderr}"
            )

    def _start_on_free_port(self) -> None:
        # Another process may grab the port between probing and binding: try a few.
        for _ in range(_PORT_ATTEMPTS):
            self.port = _free_port()
            if self._launch_and_wait():
                return
        raise RuntimeError(f"PostgreSQL did not start:\n{self._log_tail()}")

    def _launch_and_wait(self) -> bool:
        command = [str(self.bindir / "postgres"), "-D", str(self.data_dir)]
        settings = {
            **_SERVER_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
        }
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        user = self._run_as()
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        if not self._wait_until_ready():
            return False
        self.pid = self._read_postmaster_pid()
        return True

    def _wait_until_ready(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                psycopg.connect(
                    host=HOST, port=self.port, user=ADMIN_USER, dbname="postgres", connect_timeout=2
                ).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        self._signal_and_wait()
        return False

    def _read_postmaster_pid(self) -> int:
        first_line = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        return int(first_line)

    def _signal_and_wait(self) -> None:
        assert self._process is not None
        pid = self.pid or self._process.pid
        # SIGINT = fast shutdown (disconnects clients); SIGQUIT = immediate; SIGKILL = last resort.
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=_STOP_TIMEOUT_SECONDS)
                return

    def _create_roles(self) -> None:
        for role, password in _PASSWORDS.items():
            self._admin_execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


@dataclass(frozen=True)
class PostgresDatabase:
    """A database created for one test."""

    server: PostgresServer
    name: str

    @property
    def admin_url(self) -> str:
        return self.server.admin_url(self.name)

    def url(self, user: str = CRM_USER, password: str | None = None) -> str:
        return self.server.url(self.name, user=user, password=password)


def _os_user_exists(name: str) -> bool:
    import pwd  # POSIX only; importing it lazily keeps this module importable on Windows

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _new_server() -> PostgresServer:
    bindir = find_bindir()
    if bindir is None:
        _unavailable("initdb/pg_ctl/postgres not found (set SETUP_TOOL_TEST_PG_BINDIR)")
    assert bindir is not None
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if is_root and not _os_user_exists(_OS_USER):
        _unavailable(f"running as root but there is no '{_OS_USER}' OS user to run the server")
    # Not pytest's tmp_path: as root that lives under a 0700 directory the server cannot enter.
    base_dir = Path(tempfile.mkdtemp(prefix="setup-tool-pg-"))
    return PostgresServer(bindir, base_dir, as_os_user=is_root)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = _new_server()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _database_name(test_name: str) -> str:
    stem = re.sub(r"[^a-z0-9]+", "_", test_name.lower()).strip("_")[:40]
    return f"t_{stem}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pg_database(
    postgres_server: PostgresServer, request: pytest.FixtureRequest
) -> Iterator[PostgresDatabase]:
    name = _database_name(request.node.name)
    postgres_server.create_database(name)
    try:
        yield PostgresDatabase(postgres_server, name)
    finally:
        postgres_server.drop_database(name)
