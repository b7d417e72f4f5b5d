"""SQL Server connections the way sqlcmd's users know them: which ODBC driver is chosen, the
keywords it gets, and one clear paragraph (with the option that fixes it) for each way a login
fails.

No SQL Server runs here. The failures are the drivers' recorded texts, raised as the real pyodbc
exception types, each with where it was recorded (public issue threads where people pasted them);
"composed" marks a text assembled from the driver's prefix and the server's documented message.
FreeTDS's failures are real: pyodbc + FreeTDS against sockets on loopback.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pyodbc
import pytest
from cli_helpers import invoke
from sqlalchemy import URL, create_engine, event

from setup_tool.connect_failures import Failure, classify, describe_connect_failure, driver_message
from setup_tool.connection import (
    ConnectionSettings,
    build_url,
    create_engine_for,
    driver_warning,
    open_connection,
    pick_odbc_driver,
)
from setup_tool.errors import ConnectError, ExitCode

MS18 = "ODBC Driver 18 for SQL Server"
MS17 = "ODBC Driver 17 for SQL Server"
SNAC11 = "SQL Server Native Client 11.0"
SNAC10 = "SQL Server Native Client 10.0"
BUILT_IN = "SQL Server"
PASSWORD = "S3cret;pw"

needs_freetds = pytest.mark.skipif(
    "FreeTDS" not in pyodbc.drivers(), reason="the FreeTDS ODBC driver (tdsodbc) is not installed"
)


def sql_url(driver: str = MS18, *, trusted: bool = False, server: str = "sql01") -> URL:
    query = {"driver": driver, **({"Trusted_Connection": "yes"} if trusted else {})}
    return URL.create(
        "mssql+pyodbc",
        username=None if trusted else "so_admin",
        password=None if trusted else PASSWORD,
        host=server,
        database="SuperOffice",
        query=query,
    )


# --- which driver, like sqlcmd ----------------------------------------------------------------


def test_driver_order_newest_microsoft_then_native_client_then_built_in_then_freetds() -> None:
    everything = ["FreeTDS", BUILT_IN, SNAC10, SNAC11, MS17, MS18]
    assert pick_odbc_driver(everything) == MS18
    assert pick_odbc_driver(["FreeTDS", BUILT_IN, SNAC10, SNAC11, MS17]) == MS17
    assert pick_odbc_driver(["FreeTDS", BUILT_IN, SNAC10, SNAC11]) == SNAC11
    assert pick_odbc_driver(["FreeTDS", BUILT_IN, SNAC10]) == SNAC10
    assert pick_odbc_driver(["FreeTDS", BUILT_IN]) == BUILT_IN
    assert pick_odbc_driver(["PostgreSQL Unicode", "FreeTDS"]) == "FreeTDS"


def test_the_built_in_driver_comes_with_a_warning_about_tls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = ConnectionSettings(server="sql01", database="SuperOffice", trusted_connection=True)
    url = build_url(settings, installed_drivers=[BUILT_IN, "PostgreSQL Unicode"])
    assert url.query["driver"] == BUILT_IN
    warning = capsys.readouterr().err
    assert "built-in ODBC driver 'SQL Server'" in warning
    assert "TLS 1.2" in warning and "ODBC Driver 18" in warning


def test_native_client_is_used_with_a_warning_and_a_modern_driver_without(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = ConnectionSettings(server="sql01", database="SuperOffice", trusted_connection=True)
    build_url(settings, installed_drivers=[SNAC11])
    assert "no longer ships or recommends" in capsys.readouterr().err
    build_url(settings, installed_drivers=[SNAC11, MS18])
    assert capsys.readouterr().err == ""
    assert driver_warning(MS18) is None and driver_warning("FreeTDS") is None


@pytest.mark.parametrize(
    ("settings", "expected", "absent"),
    [
        # sqlcmd -C: trust the certificate (the connection stays encrypted)
        ({"trust_server_certificate": True}, ["TrustServerCertificate=yes"], ["Encrypt="]),
        # sqlcmd -N / -No
        ({"encrypt": True}, ["Encrypt=yes"], ["TrustServerCertificate"]),
        ({"encrypt": False}, ["Encrypt=no"], ["TrustServerCertificate"]),
        # sqlcmd -E: Windows integrated login, no UID/PWD at all
        ({"trusted_connection": True, "user": None}, ["Trusted_Connection=yes"], ["UID=", "PWD="]),
    ],
)
def test_the_odbc_connection_string_carries_the_options_like_sqlcmd(
    settings: dict[str, object], expected: list[str], absent: list[str]
) -> None:
    fields: dict[str, object] = {"server": "sql01", "database": "SuperOffice", "user": "so_admin"}
    fields.update(settings)
    url = build_url(ConnectionSettings(**fields), installed_drivers=[MS18])  # type: ignore[arg-type]
    engine = create_engine(url)
    (connection_string,), _ = engine.dialect.create_connect_args(url)
    engine.dispose()
    assert "DRIVER={ODBC Driver 18 for SQL Server}" in connection_string
    for keyword in expected:
        assert keyword in connection_string
    for keyword in absent:
        assert keyword not in connection_string


@needs_freetds
def test_login_timeout_reaches_pyodbc_as_its_login_timeout() -> None:
    """--login-timeout is pyodbc's timeout argument (SQL_ATTR_LOGIN_TIMEOUT), like sqlcmd -l."""
    url = build_url(
        ConnectionSettings(
            server=f"127.0.0.1,{closed_port()}", database="SuperOffice", user="sa", password="x"
        ),
        installed_drivers=["FreeTDS"],
    )
    engine = create_engine_for(url, login_timeout=42)
    seen: dict[str, object] = {}
    event.listen(engine, "do_connect", lambda _d, _r, _cargs, cparams: seen.update(cparams))
    with pytest.raises(ConnectError):
        open_connection(engine)  # the real driver, refused on loopback
    engine.dispose()
    assert seen == {"timeout": 42}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- the drivers' recorded failures -------------------------------------------------------------


def odbc_error(state: str, message: str) -> pyodbc.Error:
    kind = pyodbc.InterfaceError if state.startswith("IM") else pyodbc.OperationalError
    return kind(state, message)


RECORDED: list[tuple[str, str, str, Failure, str]] = [
    # (where it was recorded, SQLSTATE, the driver's text, the failure, what the hint must offer)
    (
        "ODBC 18, Linux, OpenSSL 3 (pyodbc #610)",
        "08001",
        f"[08001] [Microsoft][{MS18}]SSL Provider: [error:0A000086:SSL routines::certificate "
        "verify failed:self-signed certificate] (-1) (SQLDriverConnect)",
        Failure.CERTIFICATE_UNTRUSTED,
        "--trust-server-certificate",
    ),
    (
        "ODBC 18, Linux, OpenSSL 1.1 (dbt-sqlserver #219)",
        "08001",
        f"[08001] [Microsoft][{MS18}]SSL Provider: [error:1416F086:SSL routines:"
        "tls_process_server_certificate:certificate verify failed:self signed certificate] "
        "(-1) (SQLDriverConnect)",
        Failure.CERTIFICATE_UNTRUSTED,
        "--no-encrypt",
    ),
    (
        "ODBC 18, Windows (dbt-sqlserver #267)",
        "08001",
        f"[08001] [Microsoft][{MS18}]SSL Provider: The certificate chain was issued by an "
        "authority that is not trusted.\r\n (-2146893019) (SQLDriverConnect); [08001] "
        f"[Microsoft][{MS18}]Client unable to establish connection (-2146893019); [08001] "
        f"[Microsoft][{MS18}]Invalid connection string attribute (0)",
        Failure.CERTIFICATE_UNTRUSTED,
        "--trust-server-certificate",
    ),
    (
        "ODBC 18, Windows in German (webtrees #5246)",
        "08001",
        f"[08001] [Microsoft][{MS18}]SSL-Anbieter: Die Zertifikatkette wurde von einer nicht "
        "vertrauenswürdigen Zertifizierungsstelle ausgestellt. (SQLDriverConnect)",
        Failure.CERTIFICATE_UNTRUSTED,
        "--trust-server-certificate",
    ),
    (
        "ODBC 17, Linux, certificate for another name (pyodbc #799)",
        "08001",
        f"[08001] [unixODBC][Microsoft][{MS17}]SSL Provider: [error:14090086:SSL routines:"
        "ssl3_get_server_certificate:certificate verify failed:subject name does not match "
        "host name] (SQLDriverConnect)",
        Failure.CERTIFICATE_NAME,
        "full DNS name",
    ),
    (
        "ODBC 18, Windows, certificate for another name (composed: Schannel's text)",
        "08001",
        f"[08001] [Microsoft][{MS18}]SSL Provider: The target principal name is incorrect.\r\n "
        "(-2146893022) (SQLDriverConnect)",
        Failure.CERTIFICATE_NAME,
        "--trust-server-certificate",
    ),
    (
        "ODBC 17, Linux, SQL Server 2008 speaking TLS 1.0 (sql-docs #6532)",
        "08001",
        f"[08001] [Microsoft][{MS17}]SSL Provider: [error:1425F102:SSL routines:"
        "ssl_choose_client_version:unsupported protocol] (SQLDriverConnect)",
        Failure.TLS_HANDSHAKE,
        "TLS 1.2",
    ),
    (
        "ODBC 17, Linux, connection reset at the TLS handshake (pyodbc #610)",
        "08001",
        f"[08001] [Microsoft][{MS17}]TCP Provider: Error code 0x2746 (10054) (SQLDriverConnect)",
        Failure.TLS_HANDSHAKE,
        "ODBC Driver 18",
    ),
    (
        "Windows' built-in driver, TLS 1.2-only server (pyodbc #895)",
        "HY000",
        "[HY000] [Microsoft][ODBC SQL Server Driver][SQL Server]Reason: Login failed due to "
        "client TLS version being less than minimal TLS version allowed by the server. (47072) "
        "(SQLDriverConnect); [HY000] [Microsoft][ODBC SQL Server Driver]Invalid connection "
        "string attribute (0)",
        Failure.TLS_HANDSHAKE,
        "ODBC Driver 18",
    ),
    (
        "ODBC 18, wrong password (SQL Server message 18456)",
        "28000",
        f"[28000] [Microsoft][{MS18}][SQL Server]Login failed for user 'so_admin'. (18456) "
        "(SQLDriverConnect)",
        Failure.LOGIN_FAILED,
        "mixed-mode",
    ),
    (
        "ODBC 17, integrated login from outside the domain (composed: server message 18452)",
        "28000",
        f"[28000] [Microsoft][{MS17}][SQL Server]Login failed. The login is from an untrusted "
        "domain and cannot be used with Integrated authentication. (18452) (SQLDriverConnect)",
        Failure.INTEGRATED_LOGIN,
        "--user",
    ),
    (
        "ODBC 18, Linux, integrated login without a Kerberos ticket (composed)",
        "HY000",
        f"[HY000] [Microsoft][{MS18}]SSPI Provider: No Kerberos credentials available (default "
        "cache: FILE:/tmp/krb5cc_0) (851968) (SQLDriverConnect)",
        Failure.INTEGRATED_LOGIN,
        "LocalSystem",
    ),
    (
        "ODBC 18, database missing or not allowed (SQL Server message 4060)",
        "42000",
        f'[42000] [Microsoft][{MS18}][SQL Server]Cannot open database "SuperOffice" requested '
        "by the login. The login failed. (4060) (SQLDriverConnect)",
        Failure.DATABASE_MISSING,
        "--database",
    ),
    (
        "ODBC 13, Linux, unknown instance (sql-server-samples #274)",
        "08001",
        "[08001] [Microsoft][ODBC Driver 13 for SQL Server]MAX_PROVS: Error Locating "
        "Server/Instance Specified [xFFFFFFFF]. (-1) (SQLDriverConnect); [HYT00] "
        "[Microsoft][ODBC Driver 13 for SQL Server]Login timeout expired (0)",
        Failure.INSTANCE_NOT_FOUND,
        "host,PORT",
    ),
    (
        "ODBC 17, Windows, unknown instance (composed: SNI's text)",
        "08001",
        f"[08001] [Microsoft][{MS17}]SQL Server Network Interfaces: Error Locating "
        "Server/Instance Specified [xFFFFFFFF].  (-1) (SQLDriverConnect); [08001] "
        f"[Microsoft][{MS17}]Login timeout expired (0); [08001] [Microsoft][{MS17}]A "
        "network-related or instance-specific error has occurred while establishing a "
        "connection to SQL Server. Server is not found or not accessible. Check if instance "
        "name is correct and if SQL Server is configured to allow remote connections. For more "
        "information see SQL Server Books Online. (-1)",
        Failure.INSTANCE_NOT_FOUND,
        "SQL Server Browser",
    ),
    (
        "Windows' built-in driver, unknown instance (TSQLEasy #19)",
        "08001",
        "[08001] [Microsoft][ODBC SQL Server Driver][DBNETLIB]Specified SQL Server not found. "
        "(6) (SQLDriverConnect)",
        Failure.INSTANCE_NOT_FOUND,
        "UDP 1434",
    ),
    (
        "ODBC 17, Windows, unknown host (composed: Winsock 11001)",
        "08001",
        f"[08001] [Microsoft][{MS17}]TCP Provider: No such host is known.\r\n (11001) "
        f"(SQLDriverConnect); [08001] [Microsoft][{MS17}]Login timeout expired (0)",
        Failure.HOST_NOT_FOUND,
        "full DNS name",
    ),
    (
        "Native Client 11, port closed (django-pyodbc #172)",
        "08001",
        f"[08001] [Microsoft][{SNAC11}]TCP Provider: No connection could be made because the "
        "target machine actively refused it.\r\n (10061) (SQLDriverConnect); [08001] "
        f"[Microsoft][{SNAC11}]Login timeout expired (0); [08001] [Microsoft][{SNAC11}]Invalid "
        f"connection string attribute (0); [08001] [Microsoft][{SNAC11}]A network-related or "
        "instance-specific error has occurred while establishing a connection to SQL Server. "
        "Server is not found or not accessible. Check if instance name is correct and if SQL "
        "Server is configured to allow remote connections. For more information see SQL Server "
        "Books Online. (10061)",
        Failure.REFUSED,
        "TCP/IP is enabled",
    ),
    (
        "Native Client 11, named pipes (node-mssql #362)",
        "08001",
        f"[08001] [Microsoft][{SNAC11}]Named Pipes Provider: Could not open a connection to "
        f"SQL Server [53].  (53) (SQLDriverConnect); [08001] [Microsoft][{SNAC11}]Login timeout "
        "expired (0)",
        Failure.NAMED_PIPES,
        "--server sql01,1433",
    ),
    (
        "ODBC 13 via sqlcmd, named pipes (navcontainerhelper #18)",
        "08001",
        "[08001] [Microsoft][ODBC Driver 13 for SQL Server]Named Pipes Provider: Could not "
        "open a connection to SQL Server [2].  (2) (SQLDriverConnect)",
        Failure.NAMED_PIPES,
        "tcp:",
    ),
    (
        "ODBC 17, Linux, no answer (python-pyodbc-buildpack #1)",
        "HYT00",
        f"[HYT00] [unixODBC][Microsoft][{MS17}]Login timeout expired (0) (SQLDriverConnect)",
        Failure.LOGIN_TIMEOUT,
        "--login-timeout",
    ),
    (
        "ODBC 18, Windows, no answer (pyodbc #1319)",
        "08001",
        f"[08001] [Microsoft][{MS18}]TCP Provider: The wait operation timed out.\r\n (258) "
        f"(SQLDriverConnect); [08001] [Microsoft][{MS18}]Login timeout expired (258)",
        Failure.LOGIN_TIMEOUT,
        "--login-timeout",
    ),
    (
        "Windows' built-in driver, nothing reached (pyodbc #163)",
        "08001",
        "[08001] [Microsoft][ODBC SQL Server Driver][DBNETLIB]SQL Server does not exist or "
        "access denied. (17) (SQLDriverConnect)",
        Failure.UNREACHABLE,
        "firewall",
    ),
    (
        "FreeTDS, untrusted domain (r-dbi/odbc #251)",
        "42000",
        "[42000] [FreeTDS][SQL Server]Logon failed. The logon is from an untrusted domain and "
        "can not be used with Windows Authentication. (18452) (SQLDriverConnect)",
        Failure.INTEGRATED_LOGIN,
        "--user",
    ),
    (
        "FreeTDS, nothing listening (pymssql #719, the same DB-Lib text)",
        "08001",
        "[08001] [FreeTDS][SQL Server]Unable to connect: Adaptive Server is unavailable or does "
        "not exist (20009) (SQLDriverConnect)",
        Failure.UNREACHABLE,
        "firewall",
    ),
]


@pytest.mark.parametrize(
    ("source", "state", "text", "failure", "option"), RECORDED, ids=[r[0] for r in RECORDED]
)
def test_each_recorded_failure_is_one_paragraph_with_the_option_that_fixes_it(
    source: str, state: str, text: str, failure: Failure, option: str
) -> None:
    error = odbc_error(state, text)
    assert classify(state, driver_message(error)) is failure, source
    url = sql_url(trusted=failure is Failure.INTEGRATED_LOGIN)
    described = describe_connect_failure(error, url)
    assert described.exit_code == ExitCode.CANNOT_CONNECT
    assert "SQL Server 'sql01'" in described.message or "'sql01'" in described.message
    assert "\n" not in described.message and described.hint and "\n" not in described.hint
    assert option in described.hint, described.hint
    assert "(SQLDriverConnect)" not in described.message
    assert PASSWORD not in str(described)


def test_an_untrusted_certificate_is_not_called_a_firewall_problem() -> None:
    """The issue's example: ODBC Driver 18 and SQL Server's self-signed certificate."""
    described = describe_connect_failure(odbc_error(*RECORDED[0][1:3]), sql_url())
    text = str(described)
    assert "does not trust its TLS certificate" in described.message
    assert "firewall" not in text and "Cannot reach" not in text
    assert "--trust-server-certificate" in text and "--no-encrypt" in text


def test_the_noise_records_are_dropped_but_the_first_record_is_kept() -> None:
    windows_18 = odbc_error(*RECORDED[2][1:3])
    detail = driver_message(windows_18)
    assert "certificate chain was issued" in detail
    assert "Invalid connection string attribute" not in detail
    assert "Client unable to establish connection" not in detail
    assert "\r" not in detail


def test_integrated_login_names_the_windows_account() -> None:
    from setup_tool.os_account import os_account

    described = describe_connect_failure(odbc_error(*RECORDED[10][1:3]), sql_url(trusted=True))
    assert f"'{os_account()}'" in described.message
    assert "--trusted-connection" in described.message


# --- FreeTDS, for real -------------------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: a server that hangs at login."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()
    for connection in accepted:
        connection.close()


@needs_freetds
def test_freetds_login_timeout_is_the_timeout_paragraph(silent_server: int) -> None:
    settings = ConnectionSettings(
        server=f"127.0.0.1,{silent_server}",
        database="SuperOffice",
        user="sa",
        password=PASSWORD,
        odbc_driver="FreeTDS",
    )
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        open_connection(create_engine_for(build_url(settings), login_timeout=2))
    assert time.monotonic() - started < 10  # bounded by --login-timeout, not by FreeTDS
    assert "did not answer within the login timeout" in caught.value.message
    assert "Timeout expired" in caught.value.message  # FreeTDS's own words are kept
    assert "--login-timeout" in (caught.value.hint or "")


@needs_freetds
def test_freetds_unknown_host_is_a_clear_exit_6_from_the_command_line() -> None:
    # .invalid never resolves (RFC 6761); FreeTDS says only "Unable to connect to data source".
    result = invoke(
        "detect",
        "--server",
        "sql01.setup-tool.invalid",
        "--database",
        "SuperOffice",
        "--user",
        "sa",
        "--odbc-driver",
        "FreeTDS",
        "--login-timeout",
        "2",
        env={"SETUP_TOOL_DB_PASSWORD": PASSWORD},
    )
    assert result.exit_code == ExitCode.CANNOT_CONNECT, result.output
    assert "Cannot reach SQL Server 'sql01.setup-tool.invalid'" in result.stderr
    assert "Unable to connect to data source" in result.stderr
    assert PASSWORD not in result.output


@needs_freetds
def test_freetds_silent_server_from_the_command_line_names_the_option(silent_server: int) -> None:
    result = invoke(
        "upgrade",
        "--dry-run",
        "--server",
        f"127.0.0.1,{silent_server}",
        "--database",
        "SuperOffice",
        "--user",
        "sa",
        "--odbc-driver",
        "FreeTDS",
        "--login-timeout",
        "1",
        env={"SETUP_TOOL_DB_PASSWORD": PASSWORD},
    )
    assert result.exit_code == ExitCode.CANNOT_CONNECT, result.output
    assert "--login-timeout 60" in result.stderr
    assert result.stderr.count("Error:") == 1
