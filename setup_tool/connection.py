"""Reaching the customer's database.

Connection options become a SQLAlchemy URL built from fields (never a hand-made ODBC string), the
engine gets safe defaults (bounded login time, hidden parameters, SQLite never created by accident,
read-only where asked), and every way a connection can fail becomes one paragraph naming the
server or file and what to check next: never a traceback, never the password.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from sqlalchemy import URL, Connection, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from setup_tool.connect_failures import SECRET_QUERY_KEYS, describe_connect_failure
from setup_tool.connect_failures import scrub_secret as scrub_secret  # one rule, also here
from setup_tool.dialects import dialect_of
from setup_tool.dialects import sqlite_path as sqlite_path  # where the tool always found it
from setup_tool.errors import ConnectError, UsageError
from setup_tool.schema import validate_table_prefix

_MICROSOFT_DRIVER = re.compile(r"^ODBC Driver (\d+) for SQL Server$")
_NATIVE_CLIENT = re.compile(r"^SQL Server Native Client (\d+)\.(\d+)$")
_WINDOWS_BUILT_IN = "SQL Server"  # SQLSRV32.DLL, part of every Windows since the 1990s
_FREETDS = "FreeTDS"
# TDS 7.4 is SQL Server 2012 and newer, which every SuperOffice 8.5 R10 installation runs on;
# FreeTDS would otherwise fall back to whatever its freetds.conf says, possibly a Sybase version.
_FREETDS_TDS_VERSION = "7.4"
INSTALL_HINT = (
    "Install Microsoft ODBC Driver 18 for SQL Server, or on Debian/Ubuntu the FreeTDS driver "
    "(apt-get install unixodbc tdsodbc)"
)
_LIBPQ_DRIVERS = frozenset({"psycopg", "psycopg2"})
_HIDDEN = "***"


@dataclass(frozen=True)
class ConnectionSettings:
    """What the user told us about the database, before it becomes a URL."""

    database_url: str | None = None
    server: str | None = None
    database: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    trusted_connection: bool = False
    odbc_driver: str | None = None
    encrypt: bool | None = None
    trust_server_certificate: bool = False
    table_prefix: str | None = None
    login_timeout: int = 15


# --- ODBC drivers ---------------------------------------------------------------------------


def pick_odbc_driver(installed: Sequence[str]) -> str:
    """The driver sqlcmd's users would pick: the newest Microsoft "ODBC Driver NN for SQL
    Server", else the newest "SQL Server Native Client NN.N", else Windows' built-in "SQL Server"
    driver, else FreeTDS; a ConnectError when there is none of them."""
    for pattern in (_MICROSOFT_DRIVER, _NATIVE_CLIENT):
        versions = {
            tuple(int(part) for part in match.groups()): name
            for name in installed
            if (match := pattern.match(name.strip()))
        }
        if versions:
            return versions[max(versions)]
    for wanted in (_WINDOWS_BUILT_IN, _FREETDS):
        for name in installed:
            if name.strip().lower() == wanted.lower():
                return name
    listed = ", ".join(installed) if installed else "none"
    raise ConnectError(
        f"No ODBC driver for SQL Server is installed (installed ODBC drivers: {listed}).",
        f"{INSTALL_HINT}, or name an installed driver with --odbc-driver.",
    )


def driver_warning(driver: str) -> str | None:
    """What the operator should know about `driver` before trusting a connection to it."""
    name = driver.strip()
    if name.lower() == _WINDOWS_BUILT_IN.lower():
        # Microsoft points new work to its ODBC Driver 18 ("Microsoft ODBC Driver for SQL Server
        # on Windows"); a TLS 1.2-only server refusing SQLSRV32 is pyodbc #895. That it lacks
        # Driver 18's encryption defaults and certificate checks is inferred from its age.
        return (
            "Warning: using Windows' built-in ODBC driver 'SQL Server' (SQLSRV32.DLL) because no "
            "newer SQL Server driver is installed. It is a legacy driver: on many Windows "
            "versions it cannot speak TLS 1.2, which a current SQL Server may require, and it "
            "lacks ODBC Driver 18's encryption by default and certificate checks. Install "
            "Microsoft ODBC Driver 18 for SQL Server (README: Installing on a Windows server "
            "without internet)."
        )
    if _NATIVE_CLIENT.match(name):
        # "SQL Server Native Client (SNAC) isn't shipped with SQL Server 2022 and later" and is
        # not recommended for new development (Microsoft, SQL Server Native Client docs).
        return (
            f"Warning: using '{name}', which Microsoft no longer ships or recommends; it does "
            "not encrypt unless asked (--encrypt). Install Microsoft ODBC Driver 18 for SQL "
            "Server when you can."
        )
    return None


def _chosen_driver(settings: ConnectionSettings, installed_drivers: Sequence[str] | None) -> str:
    driver = settings.odbc_driver or pick_odbc_driver(
        installed_odbc_drivers() if installed_drivers is None else installed_drivers
    )
    if warning := driver_warning(driver):
        from setup_tool.console import Console

        Console().warn(warning)  # on stderr, and in the log
    return driver


def installed_odbc_drivers() -> list[str]:
    """The drivers the ODBC driver manager knows; a ConnectError when there is no manager."""
    try:
        import pyodbc  # late: without unixODBC this import fails, and SQLite must still work
    except ImportError as error:
        raise ConnectError(
            f"The ODBC driver manager cannot be loaded ({error}).",
            f"{INSTALL_HINT}.",
        ) from None
    return list(pyodbc.drivers())


def _is_freetds(driver: str) -> bool:
    # An odbcinst.ini name ("FreeTDS") or a path to the library itself (".../libtdsodbc.so").
    lowered = driver.lower()
    return "freetds" in lowered or "libtdsodbc" in lowered


def _odbc_query(settings: ConnectionSettings, driver: str) -> dict[str, str]:
    """ODBC keywords for the chosen driver; SQLAlchemy quotes each value when it connects."""
    query = {"driver": driver}
    if _is_freetds(driver):
        query["TDS_Version"] = _FREETDS_TDS_VERSION
        query["ClientCharset"] = "UTF-8"
        if settings.encrypt is not None:
            query["Encryption"] = "require" if settings.encrypt else "off"
        # FreeTDS has no TrustServerCertificate keyword: it checks certificates only when
        # freetds.conf names a CA file, so there is nothing to relax here.
    else:
        if settings.encrypt is not None:
            query["Encrypt"] = "yes" if settings.encrypt else "no"
        if settings.trust_server_certificate:
            query["TrustServerCertificate"] = "yes"
    if settings.trusted_connection:
        query["Trusted_Connection"] = "yes"
    return query


# --- URLs -----------------------------------------------------------------------------------


def build_url(settings: ConnectionSettings, installed_drivers: Sequence[str] | None = None) -> URL:
    """The URL to connect with: from --database-url, or from the SQL Server options.

    `installed_drivers` defaults to what the ODBC driver manager reports; it only matters when no
    --odbc-driver is given for SQL Server.
    """
    if settings.database_url:
        return _url_from_database_url(settings, installed_drivers)
    return _sql_server_url(settings, installed_drivers)


def _sql_server_url(settings: ConnectionSettings, installed_drivers: Sequence[str] | None) -> URL:
    if not settings.server:
        raise UsageError(
            "No database to connect to.",
            "Give --server (SQL Server host, host\\instance or host,port) with --database, "
            "or --database-url.",
        )
    if not settings.database:
        raise UsageError(
            f"No database name given for SQL Server '{settings.server}'.",
            "Give --database with the name of the SuperOffice database.",
        )
    _check_login_choice(settings)
    host, port = _split_server(settings.server)
    driver = _chosen_driver(settings, installed_drivers)
    return URL.create(
        "mssql+pyodbc",
        username=settings.user,  # None with --trusted-connection (checked above)
        password=None if settings.trusted_connection else settings.password,
        host=host,
        port=port,
        database=settings.database,
        query=_odbc_query(settings, driver),
    )


def _check_login_choice(settings: ConnectionSettings) -> None:
    if settings.trusted_connection and settings.user:
        raise UsageError(
            "Both --user and --trusted-connection were given.",
            "Choose one: --user for a SQL Server login, or --trusted-connection to log in as "
            "the Windows account running setup-tool.",
        )
    if not settings.trusted_connection and not settings.user:
        raise UsageError(
            "No login given for SQL Server.",
            "Give --user (a SQL Server login; the password is asked for or read from the "
            "environment) or --trusted-connection (Windows integrated login).",
        )


def _split_server(server: str) -> tuple[str, int | None]:
    """'host[\\instance][,port]' into host and port, so the URL shows the port as a port."""
    host, comma, port_text = server.strip().rpartition(",")
    if not comma:
        return port_text, None
    port = int(port_text) if port_text.strip().isdigit() else 0
    if not host or not 0 < port < 65536:
        raise UsageError(
            f"Invalid --server {server!r}: the part after the comma must be a TCP port.",
            "Write host, host\\instance or host,port (for example sql01,1433).",
        )
    return host, port


def _url_from_database_url(
    settings: ConnectionSettings, installed_drivers: Sequence[str] | None
) -> URL:
    _refuse_mixed_options(settings)
    assert settings.database_url is not None
    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        # Not echoed: the text may hold a password.
        raise UsageError(
            "--database-url is not a valid database URL.",
            "Write it as dialect+driver://user@host:port/database, for example "
            "mssql+pyodbc://sa@sql01:1433/SuperOffice or sqlite:///crm.db.",
        ) from None
    if any(key.lower() == "odbc_connect" for key in url.query):
        raise UsageError(
            "--database-url must not use odbc_connect: a raw ODBC string cannot keep the "
            "password hidden.",
            "Give host, database and user as URL parts and ODBC keywords as query parameters "
            "(?driver=...&Encrypt=yes), or use --server, --database and --user.",
        )
    # SQLite takes no password; a server URL without one takes the prompt's/environment's.
    if url.password is None and settings.password is not None and not dialect_of(url).is_file:
        url = url.set(password=settings.password)
    if _needs_odbc_driver(url):
        url = _add_odbc_keywords(url, settings, installed_drivers)
    return url


def _refuse_mixed_options(settings: ConnectionSettings) -> None:
    mixed = [
        option
        for option, value in (
            ("--server", settings.server),
            ("--database", settings.database),
            ("--user", settings.user),
            ("--trusted-connection", settings.trusted_connection),
        )
        if value
    ]
    if mixed:
        raise UsageError(
            f"--database-url cannot be combined with {', '.join(mixed)}.",
            "Put everything in --database-url, or leave it out and use --server, --database "
            "and --user (or --trusted-connection).",
        )


def _needs_odbc_driver(url: URL) -> bool:
    # SQLAlchemy treats a pyodbc URL with a host but no database as a DSN: the DSN names its driver.
    is_pyodbc = url.get_backend_name() == "mssql" and url.get_driver_name() == "pyodbc"
    has_driver = any(key.lower() == "driver" for key in url.query)
    return is_pyodbc and bool(url.database) and not has_driver


def _add_odbc_keywords(
    url: URL, settings: ConnectionSettings, installed_drivers: Sequence[str] | None
) -> URL:
    driver = _chosen_driver(settings, installed_drivers)
    present = {key.lower() for key in url.query}
    extra = {k: v for k, v in _odbc_query(settings, driver).items() if k.lower() not in present}
    return url.update_query_dict(extra)


def display_url(url: URL) -> str:
    """The URL as it may be shown or logged: password and password-like query values hidden."""
    masked = {key: _HIDDEN for key in url.query if key.lower() in SECRET_QUERY_KEYS}
    rendered = url.update_query_dict(masked).render_as_string(hide_password=True)
    return rendered.replace(quote_plus(_HIDDEN), _HIDDEN)  # the same mark as for the password


def effective_table_prefix(url: URL, requested: str | None) -> str | None:
    """The schema the SuperOffice tables live in: the requested one, else the dialect's default.

    An empty string asks explicitly for no prefix (the login's default schema).
    """
    if requested is not None:
        return validate_table_prefix(requested)
    return dialect_of(url).default_table_prefix


# --- Engines and connections ----------------------------------------------------------------


def create_engine_for(
    url: URL,
    *,
    read_only: bool = False,
    login_timeout: int = 15,
    create_missing: bool = False,
) -> Engine:
    """An engine with safe defaults for `url`.

    SQLite: the file must exist unless `create_missing` (only `setup-tool demo` creates one);
    `read_only` opens it with mode=ro. PostgreSQL: `read_only` makes every transaction read-only.
    SQL Server: the login is bounded by `login_timeout` seconds. Parameters are never shown in
    error messages.
    """
    if login_timeout < 1:
        raise UsageError(
            f"Invalid login timeout {login_timeout}: it must be at least 1 second.",
            "Give --login-timeout a positive number of seconds (15 is the default).",
        )
    backend = url.get_backend_name()
    if dialect_of(url).is_file:
        url = _sqlite_uri_url(url, read_only=read_only, create_missing=create_missing)
    # No pool_pre_ping on purpose: a terminated session must stop the run (its lock session may
    # be gone too), never be replaced silently. SQLAlchemy discards the pool on a disconnect, so
    # the run's final bookkeeping write still gets a live connection.
    options: dict[str, Any] = {"hide_parameters": True}
    if backend == "mssql" and url.get_driver_name() == "pyodbc":
        options["fast_executemany"] = True
        options["connect_args"] = {"timeout": login_timeout}
    elif backend == "postgresql":
        options["connect_args"] = _postgresql_connect_args(url, read_only, login_timeout)
    return _create_engine(url, options)


def _create_engine(url: URL, options: dict[str, Any]) -> Engine:
    try:
        return create_engine(url, **options)
    except NoSuchModuleError:
        raise UsageError(
            f"Unknown database type '{url.drivername}' in --database-url.",
            "Use mssql+pyodbc://, postgresql+psycopg:// or sqlite:///.",
        ) from None
    except ImportError as error:
        raise ConnectError(
            f"The Python driver for '{url.drivername}' is not installed ({error}).",
            "For PostgreSQL install setup-tool[postgresql] (psycopg); for SQL Server install "
            "pyodbc with an ODBC driver manager (unixODBC on Linux).",
        ) from None


def _sqlite_uri_url(url: URL, *, read_only: bool, create_missing: bool) -> URL:
    """Open the file through a SQLite URI so the mode, not our care, decides what may happen."""
    path = sqlite_path(url)
    if path is None:
        return url  # in memory: nothing on disk to protect
    if not path.exists() and not create_missing:
        raise UsageError(
            f"The SQLite database file '{path}' does not exist.",
            "Check --database-url (sqlite:///relative/path.db, or sqlite:////absolute/path.db), "
            "or create a demo database with 'setup-tool demo'.",
        )
    if path.is_dir():
        raise ConnectError(
            f"'{path}' is a folder, not a SQLite database file.",
            "Check --database-url: it names the database file itself, for example "
            f"sqlite:///{(path / 'crm.db').as_posix()}.",
        )
    # rw (not rwc): even if the file vanishes after the check above, SQLite will not create it.
    mode = "ro" if read_only else ("rwc" if create_missing else "rw")
    query = {**url.query, "mode": mode, "uri": "true"}
    return url.set(database=path.resolve().as_uri(), query=query)


def _postgresql_connect_args(url: URL, read_only: bool, login_timeout: int) -> dict[str, Any]:
    if url.get_driver_name() not in _LIBPQ_DRIVERS:
        if read_only:
            raise UsageError(
                f"Read-only mode needs the psycopg driver, not '{url.get_driver_name()}'.",
                "Write the URL as postgresql+psycopg://...",
            )
        return {}
    options = url.query.get("options", "")
    settings = [options if isinstance(options, str) else " ".join(options), *PLANNER_SETTINGS]
    if read_only:
        # A server-side default, so even a statement we did not anticipate cannot write.
        settings.append("-c default_transaction_read_only=on")
    return {"connect_timeout": login_timeout, "options": " ".join(s for s in settings if s)}


# The tool's own sessions only. Every join the tool makes is a small driving set (footprint
# meetings, staged candidates) seeking on an index; PostgreSQL cannot estimate the rows of a
# materialized CTE and then picks hash or merge joins that read the whole appointment table or its
# mother_id index, and JIT-compiles statements that run in well under a second. Measured on 1M
# appointments (benchmarks/PERFORMANCE.md): the invite survey 4.4 s with the defaults, 1.0 s
# with these; at 10M the difference is a full index scan per statement.
PLANNER_SETTINGS = ("-c jit=off", "-c enable_hashjoin=off", "-c enable_mergejoin=off")


def open_connection(engine: Engine) -> Connection:
    """A live connection, or a ConnectError (exit 6) explaining why there is none."""
    try:
        connection = engine.connect()
    except DBAPIError as error:
        raise describe_connect_failure(error, engine.url) from None
    if dialect_of(engine).is_file:
        _probe_sqlite(connection, engine.url)
    return connection


def _probe_sqlite(connection: Connection, url: URL) -> None:
    # SQLite opens any file lazily; a junk file only fails at the first read, so read now.
    try:
        connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
        connection.rollback()
    except DBAPIError as error:
        connection.close()
        raise describe_connect_failure(error, url) from None
