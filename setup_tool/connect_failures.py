"""Why a connection failed, in one paragraph with the option that fixes it.

The drivers' own words decide: the SQLSTATE alone is too coarse (ODBC Driver 18 reports an
untrusted certificate, an unknown host and a refused port all as 08001), so the message texts of
Microsoft ODBC Driver 17 and 18 (Windows and Linux), SQL Server Native Client, Windows' built-in
"SQL Server" driver, FreeTDS, psycopg and SQLite are matched first, most specific first, and the
SQLSTATE is the fallback. tests/test_sqlserver_errors.py holds the drivers' recorded texts.

What the options change is documented by Microsoft ("ODBC Driver 18 for SQL Server: major
version differences"): Driver 18 encrypts by default and then validates the server certificate,
so SQL Server's own self-signed certificate fails where Driver 17 connected; TrustServerCertificate
keeps the encryption and skips the validation; Encrypt=no restores Driver 17's default.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from sqlalchemy import URL
from sqlalchemy.exc import DBAPIError

from setup_tool.errors import ConnectError

# Query keys that carry a password when someone writes it into the URL's query string.
SECRET_QUERY_KEYS = frozenset({"pwd", "password", "odbc_connect"})


def scrub_secret(text: str, secret: str | None) -> str:
    """`text` with the password hidden as a whole (setup_tool.logs.hide_secrets: the one rule)."""
    from setup_tool.logs import hide_secrets

    return hide_secrets(text, secret)


def _url_secrets(url: URL) -> list[str]:
    secrets = [url.password] if url.password else []
    for key, value in url.query.items():
        if key.lower() in SECRET_QUERY_KEYS:
            secrets += [value] if isinstance(value, str) else list(value)
    return secrets


class Failure(Enum):
    DRIVER_MISSING = "driver missing"
    CERTIFICATE_NAME = "certificate for another name"
    CERTIFICATE_UNTRUSTED = "certificate not trusted"
    TLS_HANDSHAKE = "no common TLS"
    DATABASE_MISSING = "database missing"
    INTEGRATED_LOGIN = "Windows login refused"
    LOGIN_FAILED = "login failed"
    INSTANCE_NOT_FOUND = "instance not found"
    HOST_NOT_FOUND = "host not found"
    NAMED_PIPES = "named pipes"
    REFUSED = "refused"
    LOGIN_TIMEOUT = "login timeout"
    UNREACHABLE = "unreachable"
    NOT_A_DATABASE = "not a database"
    CANNOT_OPEN_FILE = "cannot open file"
    FILE_BUSY = "file busy"
    OTHER = "other"


@dataclass(frozen=True)
class _Rule:
    failure: Failure
    pattern: re.Pattern[str] | None = None
    states: frozenset[str] = frozenset()


def _words(*alternatives: str) -> re.Pattern[str]:
    return re.compile("|".join(alternatives), re.IGNORECASE)


# First match wins, most specific first: an untrusted certificate also says "Client unable to
# establish connection"; "Cannot open database ... The login failed" is a missing database, not a
# wrong password; a refused Windows login is also "Login failed". A rule matches by its text, or
# by its SQLSTATE when no earlier rule's text matched.
_RULES: list[_Rule] = [
    _Rule(
        Failure.DRIVER_MISSING,
        _words(r"can't open lib", "data source name not found", "no default driver"),
        frozenset({"IM002", "IM003"}),
    ),
    _Rule(
        Failure.CERTIFICATE_NAME,
        _words(
            "CN name does not match",
            "subject name does not match",
            "target principal name is incorrect",
            "does not match the host ?name",
        ),
    ),
    _Rule(
        Failure.CERTIFICATE_UNTRUSTED,
        _words(
            "certificate verify failed",
            "certificate chain was issued by an authority that is not trusted",
            "self[- ]signed certificate",
            "certificate has expired",
            "unable to get local issuer certificate",
            # Localized Windows messages (SSL-Anbieter: Die Zertifikatkette ..., certificat ...)
            "Zertifikat",
            "certificat",
        ),
    ),
    _Rule(
        Failure.TLS_HANDSHAKE,
        _words(
            "unsupported protocol",
            "SSL Security error",
            "client TLS version",
            r"SECDoClientHandshake",
            "Encryption not supported",
            "does not support encryption",
            "SSL routines",
            "SSL Provider",
            "TLS handshake",
            # WSAECONNRESET during the login: on Linux, OpenSSL refusing an old server's TLS 1.0
            # (inferred from the reports collected in pyodbc #610 and mssql-docker #390).
            "Error code 0x2746",
        ),
    ),
    _Rule(
        Failure.DATABASE_MISSING,
        _words(r"\(4060\)", "cannot open database", 'database "[^"]*" does not exist'),
        frozenset({"3D000"}),
    ),
    _Rule(
        Failure.INTEGRATED_LOGIN,
        _words(
            "untrusted domain",
            r"\(18452\)",
            "Cannot generate SSPI context",
            "SSPI Provider",
            "ANONYMOUS LOGON",
            "No Kerberos credentials",
        ),
    ),
    _Rule(
        Failure.LOGIN_FAILED,
        _words(r"\(18456\)", "login failed", "password authentication failed", r"pg_hba\.conf"),
        frozenset({"28000", "28P01"}),
    ),
    _Rule(
        Failure.INSTANCE_NOT_FOUND,
        _words(r"Error Locating Server/Instance Specified", "Specified SQL Server not found"),
    ),
    _Rule(
        Failure.HOST_NOT_FOUND,
        _words(
            "No such host is known",
            "could not translate host name",
            "Name or service not known",
            "nodename nor servname",
            "Temporary failure in name resolution",
            "getaddrinfo failed",
            "Unknown host",
            # Winsock's WSAHOST_NOT_FOUND (11001), as the Linux driver prints it (inferred from
            # Microsoft's "Windows Sockets Error Codes").
            r"\(11001\)",
            "Error code 0x2AF9",
        ),
    ),
    _Rule(Failure.NAMED_PIPES, _words("Named Pipes Provider")),
    _Rule(
        Failure.REFUSED,
        _words("actively refused", "connection refused", r"\(10061\)", "Error code 0x274D"),
    ),
    _Rule(
        Failure.LOGIN_TIMEOUT,
        _words(
            "login timeout expired",
            "wait operation timed out",
            "timeout expired",
            "timed out",
            r"\(10060\)",
            "Error code 0x274C",
        ),
        frozenset({"HYT00", "HYT01"}),
    ),
    _Rule(
        Failure.UNREACHABLE,
        _words(
            "unable to connect",
            "could not connect",
            "server is unavailable",
            "Adaptive Server is unavailable",
            "SQL Server does not exist or access denied",
            "network-related or instance-specific error",
            "TCP Provider",
        ),
        frozenset({"08001", "08S01"}),
    ),
    _Rule(
        Failure.NOT_A_DATABASE,
        _words("file is not a database"),
        frozenset({"SQLITE_NOTADB"}),
    ),
    _Rule(
        Failure.CANNOT_OPEN_FILE,
        _words("unable to open database file"),
        frozenset({"SQLITE_CANTOPEN"}),
    ),
    _Rule(
        Failure.FILE_BUSY,
        _words("database (?:table )?is locked"),
        frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"}),
    ),
]


def classify(state: str | None, detail: str) -> Failure:
    """Which failure the driver reported: by its words first, then by its SQLSTATE."""
    for rule in _RULES:
        if rule.pattern is not None and rule.pattern.search(detail):
            return rule.failure
    for rule in _RULES:
        if state in rule.states:
            return rule.failure
    return Failure.OTHER


def describe_connect_failure(error: BaseException, url: URL) -> ConnectError:
    """The ConnectError to show for a failed connection to `url`: what failed and what to check."""
    original = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    detail = driver_message(original)
    for secret in _url_secrets(url):
        detail = scrub_secret(detail, secret)
    failure = classify(state_code(original), detail)
    return _EXPLAINERS[failure](url, detail)


# Diagnostic records that say nothing the first one did not: pyodbc joins every record of a
# failed SQLDriverConnect with "; ", and the Microsoft drivers add these to most failures.
_NOISE = _words(
    r"^Invalid connection string attribute",
    r"^Client unable to establish connection",
)
_RECORD_PREFIX = re.compile(r"^\[[0-9A-Z]{5}\]\s*")
_DRIVER_TAGS = re.compile(r"^(?:\[(?:unixODBC|Microsoft|FreeTDS)\])+(?:\[[^\]]+\])*")


def driver_message(error: BaseException) -> str:
    """The driver's own words, one paragraph: pyodbc's (sqlstate, message) message without the
    call name and without records that only repeat that the connection failed."""
    args = error.args
    text = args[1] if len(args) >= 2 and isinstance(args[1], str) else str(error)
    text = text.replace("(SQLDriverConnect)", "")
    records = [r.strip() for r in re.split(r";\s*(?=\[[0-9A-Z]{5}\])", text) if r.strip()]
    kept = [
        r
        for n, r in enumerate(records)
        if n == 0 or not _NOISE.search(_DRIVER_TAGS.sub("", _RECORD_PREFIX.sub("", r)))
    ]
    return " ".join("; ".join(kept).split())  # psycopg puts hints on tab-indented lines


def state_code(error: BaseException) -> str | None:
    for attribute in ("sqlstate", "sqlite_errorname"):
        value = getattr(error, attribute, None)
        if isinstance(value, str):
            return value
    first = error.args[0] if error.args else None
    if isinstance(first, str) and re.fullmatch(r"[0-9A-Z]{5}", first):
        return first  # pyodbc
    return None


# --- naming what failed -----------------------------------------------------------------------


def _sqlite_path(url: URL) -> str:
    from setup_tool.connection import sqlite_path

    return str(sqlite_path(url) or ":memory:")


def _server(url: URL) -> str:
    """The server or file as the user knows it, for the first words of a message."""
    backend = url.get_backend_name()
    if backend == "sqlite":
        return f"SQLite database '{_sqlite_path(url)}'"
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


def _integrated(url: URL) -> bool:
    return any(
        key.lower() == "trusted_connection" and str(value).lower() == "yes"
        for key, value in url.query.items()
    )


def _windows_account() -> str:
    from setup_tool.os_account import os_account

    return os_account()


def _login(url: URL) -> str:
    if url.username:
        return f"user '{url.username}'"
    if _integrated(url):
        return f"the Windows account '{_windows_account()}' (integrated login)"
    return "the Windows account running setup-tool"


def _odbc_driver(url: URL) -> str:
    driver = next((v for k, v in url.query.items() if k.lower() == "driver"), "")
    return driver if isinstance(driver, str) else ",".join(driver)


def _is_sql_server(url: URL) -> bool:
    return url.get_backend_name() == "mssql"


# --- the paragraphs ---------------------------------------------------------------------------

_FIREWALL = (
    "that no firewall blocks the way (TCP 1433 for a default instance, the instance's own port "
    "otherwise, and UDP 1434 for the SQL Server Browser when you name an instance)"
)
_DRIVER_18 = (
    "Install Microsoft ODBC Driver 18 for SQL Server (README: Installing on a Windows server "
    "without internet)"
)


def _explain_driver_missing(url: URL, detail: str) -> ConnectError:
    from setup_tool.connection import INSTALL_HINT, installed_odbc_drivers

    try:
        installed = ", ".join(installed_odbc_drivers()) or "none"
    except ConnectError:
        installed = "none (no ODBC driver manager)"
    return ConnectError(
        f"The ODBC driver '{_odbc_driver(url)}' needed to reach {_target(url)} is not installed "
        f"or not registered with the ODBC driver manager ({detail}). "
        f"Installed ODBC drivers: {installed}.",
        f"{INSTALL_HINT}, or leave out --odbc-driver so setup-tool picks an installed one.",
    )


def _explain_certificate_untrusted(url: URL, detail: str) -> ConnectError:
    return ConnectError(
        f"{_server(url)} was reached, but this machine does not trust its TLS certificate "
        f"({detail}). ODBC Driver 18 encrypts every connection and checks the server's "
        "certificate; the self-signed certificate SQL Server makes for itself fails that check "
        "(ODBC Driver 17 did not encrypt unless asked, which is why other tools may connect).",
        "Best: give SQL Server a certificate from a certificate authority this machine trusts. "
        "On a network you trust, --trust-server-certificate keeps the connection encrypted and "
        "accepts the server's certificate as it is (like SQL Server Management Studio's 'Trust "
        "server certificate'); --no-encrypt turns encryption off, unless the server forces it.",
    )


def _explain_certificate_name(url: URL, detail: str) -> ConnectError:
    return ConnectError(
        f"{_server(url)} was reached, but its TLS certificate is made out to another name than "
        f"'{url.host}' ({detail}).",
        "Give --server the name the certificate names, usually the server's full DNS name (for "
        "example sql01.corp.example.com, not an IP address or a short name), or, on a network "
        "you trust, add --trust-server-certificate.",
    )


def _explain_tls_handshake(url: URL, detail: str) -> ConnectError:
    return ConnectError(
        f"{_server(url)} was reached, but this machine and the server found no TLS version or "
        f"encryption setting both accept ({detail}).",
        f"{_DRIVER_18}: Windows' built-in 'SQL Server' driver and old Native Client versions "
        "cannot speak TLS 1.2, which current servers require. A SQL Server 2012-2016 without its "
        "TLS 1.2 update cannot either: ask the DBA to update it. When you gave --encrypt to a "
        "server without a certificate, leave it out.",
    )


def _explain_database_missing(url: URL, detail: str) -> ConnectError:
    return ConnectError(
        f"{_server(url)} was reached, but database '{url.database}' does not exist or "
        f"{_login(url)} may not open it ({detail}).",
        "Check --database (the SuperOffice database's name as the server lists it) and that "
        "the login is a user in that database.",
    )


def _explain_integrated_login(url: URL, detail: str) -> ConnectError:
    return ConnectError(
        f"{_server(url)} refused the Windows account '{_windows_account()}' (integrated login, "
        f"--trusted-connection) ({detail}).",
        "Run setup-tool as a domain account that is a login on the server: an installer or "
        "scheduled task running as LocalSystem is seen as DOMAIN\\COMPUTER$. From a machine "
        "outside the server's domain, or when Kerberos fails (connect by the server's full DNS "
        "name, not its IP address), use a SQL Server login with --user instead.",
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


def _explain_instance_not_found(url: URL, detail: str) -> ConnectError:
    return ConnectError(
        f"The named instance in {_server(url)} could not be found ({detail}).",
        "Check the instance name after the backslash. The driver asks the SQL Server Browser "
        "service (UDP 1434) for the instance's port: it must run and be reachable, or give the "
        "port instead: --server host,PORT (SQL Server Configuration Manager shows it).",
    )


def _explain_host_not_found(url: URL, detail: str) -> ConnectError:
    what = "database server" if not _is_sql_server(url) else "SQL Server"
    return ConnectError(
        f"The name '{url.host}' of the {what} is not known on this network ({detail}).",
        "Check the spelling of --server (or the host in --database-url); try the full DNS name "
        "(sql01.corp.example.com) or the IP address.",
    )


def _explain_named_pipes(url: URL, detail: str) -> ConnectError:
    return ConnectError(
        f"Cannot reach {_target(url)}: the driver fell back to named pipes and could not open "
        f"one ({detail}).",
        "Usually the server name or instance is wrong, or TCP did not get through first. Check "
        "the name; make the driver use TCP by giving the port (--server sql01,1433) or the "
        f"prefix tcp: (--server tcp:sql01); and check {_FIREWALL}.",
    )


def _explain_refused(url: URL, detail: str) -> ConnectError:
    if url.get_backend_name() == "postgresql":
        hint = (
            "Check the host and port, that PostgreSQL is running and accepts TCP/IP "
            "connections (listen_addresses), and that no firewall blocks the port (5432 by "
            "default)."
        )
    else:
        hint = (
            "Nothing accepts connections at that address and port: check the port (a named "
            "instance usually has its own, not 1433), that SQL Server is running, and that "
            "TCP/IP is enabled in SQL Server Configuration Manager."
        )
    return ConnectError(
        f"Cannot reach {_target(url)}: the connection was refused ({detail}).", hint
    )


def _explain_login_timeout(url: URL, detail: str) -> ConnectError:
    if not _is_sql_server(url):
        return _explain_unreachable(url, detail)
    return ConnectError(
        f"{_server(url)} did not answer within the login timeout ({detail}).",
        f"Check the server name and instance, that SQL Server is running, and {_FIREWALL}. On "
        "a slow network or a busy server, wait longer: --login-timeout 60 (seconds; 15 by "
        "default).",
    )


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
            f"when you name an instance, and {_FIREWALL}; on a slow network, --login-timeout 60."
        )
    return ConnectError(f"Cannot reach {_target(url)} ({detail}).", hint)


def _explain_not_a_database(url: URL, detail: str) -> ConnectError:
    return ConnectError(
        f"'{_sqlite_path(url)}' is not a SQLite database ({detail}).",
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


_EXPLAINERS: dict[Failure, Callable[[URL, str], ConnectError]] = {
    Failure.DRIVER_MISSING: _explain_driver_missing,
    Failure.CERTIFICATE_NAME: _explain_certificate_name,
    Failure.CERTIFICATE_UNTRUSTED: _explain_certificate_untrusted,
    Failure.TLS_HANDSHAKE: _explain_tls_handshake,
    Failure.DATABASE_MISSING: _explain_database_missing,
    Failure.INTEGRATED_LOGIN: _explain_integrated_login,
    Failure.LOGIN_FAILED: _explain_login_failed,
    Failure.INSTANCE_NOT_FOUND: _explain_instance_not_found,
    Failure.HOST_NOT_FOUND: _explain_host_not_found,
    Failure.NAMED_PIPES: _explain_named_pipes,
    Failure.REFUSED: _explain_refused,
    Failure.LOGIN_TIMEOUT: _explain_login_timeout,
    Failure.UNREACHABLE: _explain_unreachable,
    Failure.NOT_A_DATABASE: _explain_not_a_database,
    Failure.CANNOT_OPEN_FILE: _explain_cannot_open_file,
    Failure.FILE_BUSY: _explain_file_busy,
    Failure.OTHER: _explain_other,
}
