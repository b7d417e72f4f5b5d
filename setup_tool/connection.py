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
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, urlparse
from urllib.request import url2pathname

from sqlalchemy import URL, Connection, Engine, create_engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from setup_tool.errors import ConnectError, UsageError
from setup_tool.schema import validate_table_prefix

_MICROSOFT_DRIVER = re.compile(r"^ODBC Driver (\d+) for SQL Server$")
_FREETDS = "FreeTDS"
# TDS 7.4 is SQL Server 2012 and newer, which every SuperOffice 8.5 R10 installation runs on;
# FreeTDS would otherwise fall back to whatever its freetds.conf says, possibly a Sybase version.
_FREETDS_TDS_VERSION = "7.4"
_INSTALL_HINT = (
    "Install Microsoft ODBC Driver 18 for SQL Server, or on Debian/Ubuntu the FreeTDS driver "
    "(apt-get install unixodbc tdsodbc)"
)
# Query keys that carry a password when someone writes it into the URL's query string.
_SECRET_QUERY_KEYS = frozenset({"pwd", "password", "odbc_connect"})
_DEFAULT_TABLE_PREFIX = {"mssql": "crm7", "postgresql": "crm7"}
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
    """The newest Microsoft "ODBC Driver NN for SQL Server", else FreeTDS, else a ConnectError."""
    versions = {
        int(match.group(1)): name
        for name in installed
        if (match := _MICROSOFT_DRIVER.match(name.strip()))
    }
    if versions:
        return versions[max(versions)]
    for name in installed:
        if name.strip().lower() == _FREETDS.lower():
            return name
    listed = ", ".join(installed) if installed else "none"
    raise ConnectError(
        f"No ODBC driver for SQL Server is installed (installed ODBC drivers: {listed}).",
        f"{_INSTALL_HINT}, or name an installed driver with --odbc-driver.",
    )


def installed_odbc_drivers() -> list[str]:
    """The drivers the ODBC driver manager knows; a ConnectError when there is no manager."""
    try:
        import pyodbc  # late: without unixODBC this import fails, and SQLite must still work
    except ImportError as error:
        raise ConnectError(
            f"The ODBC driver manager cannot be loaded ({error}).",
            f"{_INSTALL_HINT}.",
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
    driver = settings.odbc_driver or pick_odbc_driver(
        installed_odbc_drivers() if installed_drivers is None else installed_drivers
    )
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
    if (
        url.password is None
        and settings.password is not None
        and url.get_backend_name() != "sqlite"
    ):
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
    driver = settings.odbc_driver or pick_odbc_driver(
        installed_odbc_drivers() if installed_drivers is None else installed_drivers
    )
    present = {key.lower() for key in url.query}
    extra = {k: v for k, v in _odbc_query(settings, driver).items() if k.lower() not in present}
    return url.update_query_dict(extra)


def display_url(url: URL) -> str:
    """The URL as it may be shown or logged: password and password-like query values hidden."""
    masked = {key: _HIDDEN for key in url.query if key.lower() in _SECRET_QUERY_KEYS}
    rendered = url.update_query_dict(masked).render_as_string(hide_password=True)
    return rendered.replace(quote_plus(_HIDDEN), _HIDDEN)  # the same mark as for the password


def effective_table_prefix(url: URL, requested: str | None) -> str | None:
    """The schema the SuperOffice tables live in: the requested one, else the dialect's default.

    An empty string asks explicitly for no prefix (the login's default schema).
    """
    if requested is not None:
        return validate_table_prefix(requested)
    return _DEFAULT_TABLE_PREFIX.get(url.get_backend_name())


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
    if backend == "sqlite":
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


def sqlite_path(url: URL) -> Path | None:
    """The file a SQLite URL opens, or None for an in-memory database.

    The one place that knows how a SQLite URL maps to a file: the engine, the run lock, the
    rights check and the messages all ask it. `url.database` is already percent-decoded by
    make_url (sqlite:///x%20y/crm%20db.db is the file "x y/crm db.db"); a `file:` URI, as the
    engines of create_engine_for() hold, is decoded once more, as SQLite itself decodes it
    (file:///srv/x%20y/crm%20db.db is "/srv/x y/crm db.db"). A relative path stays relative: it
    is taken from the working directory, as SQLite takes it.
    """
    database = url.database or ""
    if database in ("", ":memory:") or _is_memory_mode(url.query.get("mode")):
        return None
    if not database.startswith("file:"):
        return Path(database)
    parsed = urlparse(database)  # file:name, file:/abs, file:///abs, file://host/share/...
    if _is_memory_mode(parse_qs(parsed.query).get("mode")):
        return None
    path = parsed.path
    if parsed.netloc and parsed.netloc.lower() != "localhost":
        path = f"//{parsed.netloc}{path}"  # a UNC path: \\server\share\...
    name = url2pathname(path) if path else ""
    return None if name in ("", ":memory:") else Path(name)


def _is_memory_mode(mode: str | Sequence[str] | None) -> bool:
    values = [mode] if isinstance(mode, str) else list(mode or [])
    return "memory" in values


def _postgresql_connect_args(url: URL, read_only: bool, login_timeout: int) -> dict[str, Any]:
    if url.get_driver_name() not in _LIBPQ_DRIVERS:
        if read_only:
            raise UsageError(
                f"Read-only mode needs the psycopg driver, not '{url.get_driver_name()}'.",
                "Write the URL as postgresql+psycopg://...",
            )
        return {}
    connect_args: dict[str, Any] = {"connect_timeout": login_timeout}
    if read_only:
        # A server-side default, so even a statement we did not anticipate cannot write.
        options = url.query.get("options", "")
        given = options if isinstance(options, str) else " ".join(options)
        connect_args["options"] = f"{given} -c default_transaction_read_only=on".strip()
    return connect_args


def open_connection(engine: Engine) -> Connection:
    """A live connection, or a ConnectError (exit 6) explaining why there is none."""
    try:
        connection = engine.connect()
    except DBAPIError as error:
        raise describe_connect_failure(error, engine.url) from None
    if engine.dialect.name == "sqlite":
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


# --- Explaining failures --------------------------------------------------------------------


def scrub_secret(text: str, secret: str | None) -> str:
    """`text` with the password hidden as a whole (setup_tool.logs.hide_secrets: the one rule)."""
    from setup_tool.logs import hide_secrets

    return hide_secrets(text, secret)


def _url_secrets(url: URL) -> list[str]:
    secrets = [url.password] if url.password else []
    for key, value in url.query.items():
        if key.lower() in _SECRET_QUERY_KEYS:
            secrets += [value] if isinstance(value, str) else list(value)
    return secrets


class _Failure(Enum):
    DRIVER_MISSING = "driver missing"
    DATABASE_MISSING = "database missing"
    LOGIN_FAILED = "login failed"
    UNREACHABLE = "unreachable"
    NOT_A_DATABASE = "not a database"
    CANNOT_OPEN_FILE = "cannot open file"
    FILE_BUSY = "file busy"
    OTHER = "other"


# First match wins: "Cannot open database ... The login failed" is a missing database, not a
# wrong password, so the database check comes before the login check.
_SQLSTATES: list[tuple[_Failure, frozenset[str]]] = [
    (_Failure.DRIVER_MISSING, frozenset({"IM002"})),
    (_Failure.DATABASE_MISSING, frozenset({"3D000"})),
    (_Failure.LOGIN_FAILED, frozenset({"28000", "28P01"})),
    (_Failure.UNREACHABLE, frozenset({"08001", "08S01", "HYT00", "HYT01"})),
    (_Failure.NOT_A_DATABASE, frozenset({"SQLITE_NOTADB"})),
    (_Failure.CANNOT_OPEN_FILE, frozenset({"SQLITE_CANTOPEN"})),
    (_Failure.FILE_BUSY, frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"})),
]
_MESSAGES: list[tuple[_Failure, re.Pattern[str]]] = [
    (
        _Failure.DRIVER_MISSING,
        re.compile(r"can't open lib|data source name not found|no default driver", re.I),
    ),
    (
        _Failure.DATABASE_MISSING,
        re.compile(r"\(4060\)|cannot open database|database \"[^\"]*\" does not exist", re.I),
    ),
    (
        _Failure.LOGIN_FAILED,
        re.compile(r"\(18456\)|login failed|password authentication failed|pg_hba\.conf", re.I),
    ),
    (
        _Failure.UNREACHABLE,
        re.compile(
            r"unable to connect|connection refused|could not connect|timeout expired|timed out"
            r"|could not translate host name|name or service not known|server is unavailable",
            re.I,
        ),
    ),
    (_Failure.NOT_A_DATABASE, re.compile(r"file is not a database", re.I)),
    (_Failure.CANNOT_OPEN_FILE, re.compile(r"unable to open database file", re.I)),
    (_Failure.FILE_BUSY, re.compile(r"database (?:table )?is locked", re.I)),
]


def describe_connect_failure(error: BaseException, url: URL) -> ConnectError:
    """The ConnectError to show for a failed connection to `url`: what failed and what to check."""
    original = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    detail = _driver_message(original)
    for secret in _url_secrets(url):
        detail = scrub_secret(detail, secret)
    failure = _classify(_state_code(original), detail)
    return _EXPLAINERS[failure](url, detail)


def _driver_message(error: BaseException) -> str:
    # pyodbc errors are (sqlstate, message); the message alone reads better.
    args = error.args
    text = args[1] if len(args) >= 2 and isinstance(args[1], str) else str(error)
    text = text.replace("(SQLDriverConnect)", "")
    return " ".join(text.split())  # one paragraph: psycopg puts hints on tab-indented lines


def _state_code(error: BaseException) -> str | None:
    for attribute in ("sqlstate", "sqlite_errorname"):
        value = getattr(error, attribute, None)
        if isinstance(value, str):
            return value
    first = error.args[0] if error.args else None
    if isinstance(first, str) and re.fullmatch(r"[0-9A-Z]{5}", first):
        return first  # pyodbc
    return None


def _classify(state: str | None, detail: str) -> _Failure:
    for failure, states in _SQLSTATES:
        if state in states:
            return failure
    for failure, pattern in _MESSAGES:
        if pattern.search(detail):
            return failure
    return _Failure.OTHER


def _server(url: URL) -> str:
    """The server or file as the user knows it, for the first words of a message."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return f"SQLite database '{sqlite_path(url) or ':memory:'}'"
    host = url.host or "localhost"
    if backend == "mssql":
        return f"SQL Server '{host}{f',{url.port}' if url.port else ''}'"
    if backend == "postgresql":
        return f"PostgreSQL server '{host}{f':{url.port}' if url.port else ''}'"
    return f"{backend} server '{host}'"


def _target(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return _server(url)
    return f"{_server(url)} (database '{url.database or ''}')"


def _login(url: URL) -> str:
    return f"user '{url.username}'" if url.username else "the Windows account running setup-tool"


def _odbc_driver(url: URL) -> str:
    driver = next((v for k, v in url.query.items() if k.lower() == "driver"), "")
    return driver if isinstance(driver, str) else ",".join(driver)


def _explain_driver_missing(url: URL, detail: str) -> ConnectError:
    try:
        installed = ", ".join(installed_odbc_drivers()) or "none"
    except ConnectError:
        installed = "none (no ODBC driver manager)"
    return ConnectError(
        f"The ODBC driver '{_odbc_driver(url)}' needed to reach {_target(url)} is not installed "
        f"or not registered with the ODBC driver manager ({detail}). "
        f"Installed ODBC drivers: {installed}.",
        f"{_INSTALL_HINT}, or leave out --odbc-driver so setup-tool picks an installed one.",
    )


def _explain_database_missing(url: URL, detail: str) -> ConnectError:
    return ConnectError(
        f"{_server(url)} was reached, but database '{url.database}' does not exist or "
        f"{_login(url)} may not open it ({detail}).",
        "Check --database (the SuperOffice database's name as the server lists it) and that "
        "the login is a user in that database.",
    )


def _explain_login_failed(url: URL, detail: str) -> ConnectError:
    if url.get_backend_name() == "postgresql":
        hint = (
            "Check the user name and password, and that pg_hba.conf lets this user connect "
            "from this machine."
        )
    else:
        hint = (
            "Check the user name and password, that the server allows SQL Server logins "
            "(mixed-mode authentication) when you give --user, or use --trusted-connection for "
            "Windows integrated login."
        )
    return ConnectError(f"Login failed for {_login(url)} on {_target(url)} ({detail}).", hint)


def _explain_unreachable(url: URL, detail: str) -> ConnectError:
    if url.get_backend_name() == "postgresql":
        hint = (
            "Check the host and port, that PostgreSQL is running and accepts TCP/IP connections "
            "(listen_addresses), and that no firewall blocks the port (5432 by default)."
        )
    else:
        hint = (
            "Check the server name (host, host\\instance or host,port), that SQL Server is "
            "running and accepts TCP/IP connections, that the SQL Server Browser service runs "
            "when you name an instance, and that no firewall blocks the port (1433 by default)."
        )
    return ConnectError(f"Cannot reach {_target(url)} ({detail}).", hint)


def _explain_not_a_database(url: URL, detail: str) -> ConnectError:
    return ConnectError(
        f"'{sqlite_path(url)}' is not a SQLite database ({detail}).",
        "Check --database-url: it must name the SuperOffice SQLite database "
        "(for example one made by 'setup-tool demo').",
    )


def _explain_cannot_open_file(url: URL, detail: str) -> ConnectError:
    return ConnectError(
        f"Cannot open {_target(url)} ({detail}).",
        "Check that the path names a file (not a folder) and that you may read it, and write it "
        "unless this is a dry run.",
    )


def _explain_file_busy(url: URL, detail: str) -> ConnectError:
    return ConnectError(
        f"{_target(url)} is busy: another program holds a lock on the file and did not let go "
        f"within the wait ({detail}).",
        "Close the program that is writing to it (SuperOffice, a database browser, a backup or "
        "copy in progress) or wait until it is done, then run again.",
    )


def _explain_other(url: URL, detail: str) -> ConnectError:
    if url.get_backend_name() == "sqlite":  # a file: there is no server to be running
        return ConnectError(
            f"Cannot open {_target(url)}: {detail}",
            "Check --database-url, that the file is a SQLite database, and that you may read "
            "it (and write it, unless this is a dry run).",
        )
    return ConnectError(
        f"Cannot connect to {_target(url)}: {detail}",
        "Check the connection settings (--server, --database, --user, or --database-url) and "
        "that the database server is running.",
    )


_EXPLAINERS = {
    _Failure.DRIVER_MISSING: _explain_driver_missing,
    _Failure.DATABASE_MISSING: _explain_database_missing,
    _Failure.LOGIN_FAILED: _explain_login_failed,
    _Failure.UNREACHABLE: _explain_unreachable,
    _Failure.NOT_A_DATABASE: _explain_not_a_database,
    _Failure.CANNOT_OPEN_FILE: _explain_cannot_open_file,
    _Failure.FILE_BUSY: _explain_file_busy,
    _Failure.OTHER: _explain_other,
}
