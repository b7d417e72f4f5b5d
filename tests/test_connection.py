"""Connection settings, URLs and connect failures, against real pyodbc + FreeTDS and real SQLite."""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote_plus

import psycopg
import pyodbc
import pytest
from sqlalchemy import URL, make_url, text
from sqlalchemy.exc import OperationalError

from setup_tool.connection import (
    ConnectionSettings,
    build_url,
    create_engine_for,
    describe_connect_failure,
    display_url,
    effective_table_prefix,
    open_connection,
    pick_odbc_driver,
    scrub_secret,
)
from setup_tool.errors import ConnectError, ExitCode, UsageError

PASSWORD = "Tr1cky;pa}ss=word"
MS18 = "ODBC Driver 18 for SQL Server"
MS17 = "ODBC Driver 17 for SQL Server"
MS13 = "ODBC Driver 13 for SQL Server"

needs_freetds = pytest.mark.skipif(
    "FreeTDS" not in pyodbc.drivers(), reason="the FreeTDS ODBC driver (tdsodbc) is not installed"
)


def closed_loopback_port() -> int:
    """A port nothing listens on: bound once to learn a free number, then released."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def sql_server_settings(**overrides: object) -> ConnectionSettings:
    fields: dict[str, object] = {
        "server": "sql01",
        "database": "SuperOffice",
        "user": "sa",
        "password": PASSWORD,
    }
    fields.update(overrides)
    return ConnectionSettings(**fields)  # type: ignore[arg-type]


def assert_no_password(*texts: str) -> None:
    for shown in texts:
        assert PASSWORD not in shown
        assert "Tr1cky" not in shown


# --- picking the ODBC driver ---------------------------------------------------------------


def test_newest_microsoft_driver_wins() -> None:
    assert pick_odbc_driver(["FreeTDS", MS13, MS18, MS17, "SQL Server"]) == MS18
    assert pick_odbc_driver([MS13, MS17, "FreeTDS"]) == MS17


def test_driver_versions_compare_as_numbers() -> None:
    assert pick_odbc_driver(["ODBC Driver 9 for SQL Server", "ODBC Driver 11 for SQL Server"]) == (
        "ODBC Driver 11 for SQL Server"
    )


def test_freetds_only_without_a_microsoft_driver() -> None:
    assert pick_odbc_driver(["PostgreSQL Unicode", "FreeTDS"]) == "FreeTDS"


def test_no_sql_server_driver_says_what_to_install() -> None:
    with pytest.raises(ConnectError) as caught:
        pick_odbc_driver(["PostgreSQL Unicode"])
    assert caught.value.exit_code == ExitCode.CANNOT_CONNECT
    assert "ODBC Driver 18 for SQL Server" in str(caught.value)
    assert "tdsodbc" in str(caught.value)
    assert "PostgreSQL Unicode" in str(caught.value)


def test_auto_pick_uses_the_drivers_installed_here() -> None:
    url = build_url(sql_server_settings())
    assert url.query["driver"] in pyodbc.drivers()


# --- building URLs -------------------------------------------------------------------------


def test_sql_server_url_from_fields() -> None:
    url = build_url(sql_server_settings(server="sql01,1433", encrypt=True), [MS18])
    assert (url.drivername, url.host, url.port, url.database) == (
        "mssql+pyodbc",
        "sql01",
        1433,
        "SuperOffice",
    )
    assert (url.username, url.password) == ("sa", PASSWORD)
    assert dict(url.query) == {"driver": MS18, "Encrypt": "yes"}
    assert display_url(url) == (
        "mssql+pyodbc://sa:***@sql01:1433/SuperOffice?Encrypt=yes&driver=ODBC+Driver+18+for+SQL+Server"
    )


def test_encrypt_is_explicit_only_when_asked() -> None:
    assert "Encrypt" not in build_url(sql_server_settings(), [MS18]).query
    assert build_url(sql_server_settings(encrypt=False), [MS18]).query["Encrypt"] == "no"


def test_trust_server_certificate() -> None:
    url = build_url(sql_server_settings(encrypt=True, trust_server_certificate=True), [MS18])
    assert url.query["TrustServerCertificate"] == "yes"
    assert "TrustServerCertificate" not in build_url(sql_server_settings(), [MS18]).query


def test_trusted_connection_has_no_user_or_password() -> None:
    settings = sql_server_settings(user=None, trusted_connection=True)
    url = build_url(settings, [MS17])
    assert (url.username, url.password) == (None, None)
    assert url.query["Trusted_Connection"] == "yes"
    assert url.query["driver"] == MS17


def test_named_instance_and_port() -> None:
    url = build_url(sql_server_settings(server="sql01\\SUPEROFFICE,50123"), [MS18])
    assert (url.host, url.port) == ("sql01\\SUPEROFFICE", 50123)
    connect_string = url.get_dialect()().create_connect_args(url)[0][0]
    assert "Server=sql01\\SUPEROFFICE,50123;" in connect_string


def test_explicit_driver_is_used_verbatim() -> None:
    url = build_url(sql_server_settings(odbc_driver=MS13), [MS18])
    assert url.query["driver"] == MS13


def test_freetds_gets_its_own_keywords() -> None:
    settings = sql_server_settings(encrypt=True, trust_server_certificate=True)
    url = build_url(settings, ["FreeTDS"])
    assert dict(url.query) == {
        "driver": "FreeTDS",
        "TDS_Version": "7.4",
        "ClientCharset": "UTF-8",
        "Encryption": "require",
    }
    assert build_url(sql_server_settings(encrypt=False), ["FreeTDS"]).query["Encryption"] == "off"


def test_password_is_quoted_by_sqlalchemy_not_spliced_in() -> None:
    """A password with ';' and '}' must not be able to add ODBC keywords of its own."""
    url = build_url(sql_server_settings(password="x;Trusted_Connection=yes}"), [MS18])
    connect_string = url.get_dialect()().create_connect_args(url)[0][0]
    assert "PWD={x;Trusted_Connection=yes}}};" in connect_string + ";"
    assert connect_string.count("Trusted_Connection") == 1


def test_password_never_shown() -> None:
    settings = sql_server_settings()
    url = build_url(settings, [MS18])
    assert_no_password(str(url), repr(url), display_url(url), repr(settings), str(settings))


@pytest.mark.parametrize(
    ("settings", "option"),
    [
        (ConnectionSettings(), "--server"),
        (ConnectionSettings(server="sql01", user="sa"), "--database"),
        (ConnectionSettings(server="sql01", database="CRM"), "--user"),
        (ConnectionSettings(server="sql01", database="CRM"), "--trusted-connection"),
        (
            ConnectionSettings(server="sql01", database="CRM", user="sa", trusted_connection=True),
            "--trusted-connection",
        ),
        (ConnectionSettings(server="sql01,port", database="CRM", user="sa"), "port"),
        (ConnectionSettings(server="sql01,70000", database="CRM", user="sa"), "port"),
    ],
)
def test_missing_or_contradictory_fields_name_the_option(
    settings: ConnectionSettings, option: str
) -> None:
    with pytest.raises(UsageError) as caught:
        build_url(settings, [MS18])
    assert option in str(caught.value)
    assert caught.value.exit_code == ExitCode.USAGE


def test_database_url_password_is_kept_but_hidden() -> None:
    url = build_url(ConnectionSettings(database_url="postgresql+psycopg://crm:pw123@db/crm"))
    assert url.password == "pw123"
    assert "pw123" not in display_url(url)
    assert "pw123" not in str(url)


def test_password_option_completes_a_database_url() -> None:
    settings = ConnectionSettings(database_url="postgresql+psycopg://crm@db/crm", password=PASSWORD)
    url = build_url(settings)
    assert url.password == PASSWORD
    assert_no_password(display_url(url))


def test_mssql_database_url_gets_a_driver_and_keeps_its_own_keywords() -> None:
    settings = ConnectionSettings(
        database_url="mssql+pyodbc://sa@sql01/CRM?encrypt=no", encrypt=True
    )
    url = build_url(settings, ["FreeTDS", MS17])
    assert url.query["driver"] == MS17
    assert url.query["encrypt"] == "no"
    assert "Encrypt" not in url.query


def test_database_url_refuses_odbc_connect() -> None:
    raw = quote_plus("DRIVER={FreeTDS};Server=sql01;UID=sa;PWD=" + PASSWORD)
    with pytest.raises(UsageError) as caught:
        build_url(ConnectionSettings(database_url=f"mssql+pyodbc://?odbc_connect={raw}"))
    assert "odbc_connect" in str(caught.value)
    assert_no_password(str(caught.value))


def test_database_url_with_server_options_is_refused() -> None:
    with pytest.raises(UsageError, match="--server"):
        build_url(ConnectionSettings(database_url="sqlite:///crm.db", server="sql01"))


def test_unparsable_database_url_is_not_echoed() -> None:
    with pytest.raises(UsageError) as caught:
        build_url(ConnectionSettings(database_url=f"not a url {PASSWORD}"))
    assert_no_password(str(caught.value))


def test_display_hides_passwords_in_the_query() -> None:
    url = make_url(f"mssql+pyodbc://sa@sql01/CRM?driver=FreeTDS&PWD={PASSWORD}")
    assert_no_password(display_url(url))
    assert "PWD=***" in display_url(url)


# --- table prefix --------------------------------------------------------------------------


def test_table_prefix_defaults_per_dialect() -> None:
    assert effective_table_prefix(make_url("mssql+pyodbc://sa@sql01/CRM"), None) == "crm7"
    assert effective_table_prefix(make_url("postgresql+psycopg://u@db/crm"), None) == "crm7"
    assert effective_table_prefix(make_url("sqlite:///crm.db"), None) is None


def test_table_prefix_requested() -> None:
    url = make_url("mssql+pyodbc://sa@sql01/CRM")
    assert effective_table_prefix(url, "dbo") == "dbo"
    assert effective_table_prefix(url, "") is None


def test_table_prefix_cannot_smuggle_sql() -> None:
    with pytest.raises(UsageError):
        effective_table_prefix(make_url("mssql+pyodbc://sa@sql01/CRM"), "crm7; drop table x")


# --- real SQL Server connection failures (pyodbc + FreeTDS, loopback only) -------------------


def connect_failure(settings: ConnectionSettings) -> tuple[ConnectError, float]:
    url = build_url(settings)
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        open_connection(create_engine_for(url, login_timeout=3))
    return caught.value, time.monotonic() - started


@needs_freetds
def test_closed_port_fails_fast_naming_the_server() -> None:
    port = closed_loopback_port()
    settings = sql_server_settings(server=f"127.0.0.1,{port}", odbc_driver="FreeTDS", encrypt=True)
    error, seconds = connect_failure(settings)
    assert seconds < 5
    assert error.exit_code == ExitCode.CANNOT_CONNECT
    assert f"127.0.0.1,{port}" in error.message
    assert "Cannot reach" in error.message
    # FreeTDS got as far as TCP, so it accepted every keyword build_url gave it.
    assert "Adaptive Server is unavailable" in error.message
    assert_no_password(str(error))


@needs_freetds
def test_unknown_odbc_driver_is_reported_as_missing() -> None:
    settings = sql_server_settings(server="127.0.0.1,1", odbc_driver="No Such Driver 99")
    error, _ = connect_failure(settings)
    assert "'No Such Driver 99'" in error.message
    assert "is not installed" in error.message
    assert "FreeTDS" in error.message  # lists what is installed
    assert_no_password(str(error))


@needs_freetds
def test_malformed_server_name_fails_fast() -> None:
    # Not a valid host name, so the resolver refuses it without asking DNS.
    error, seconds = connect_failure(sql_server_settings(server="bad host!name"))
    assert seconds < 2
    assert "bad host!name" in error.message
    assert_no_password(str(error))


# --- PostgreSQL failure without a server (psycopg, loopback) --------------------------------


def test_postgresql_refused_connection() -> None:
    port = closed_loopback_port()
    url = build_url(
        ConnectionSettings(
            database_url=f"postgresql+psycopg://crm@127.0.0.1:{port}/crm", password=PASSWORD
        )
    )
    started = time.monotonic()
    with pytest.raises(ConnectError) as caught:
        open_connection(create_engine_for(url, read_only=True, login_timeout=2))
    assert time.monotonic() - started < 5
    assert f"PostgreSQL server '127.0.0.1:{port}'" in caught.value.message
    assert "Connection refused" in caught.value.message
    assert_no_password(str(caught.value))


# --- mapping driver errors (real exception types with the texts drivers send) ---------------

MSSQL_URL = URL.create(
    "mssql+pyodbc",
    username="sa",
    password=PASSWORD,
    host="sql01",
    database="CRM",
    query={"driver": MS18},
)
PG_URL = URL.create(
    "postgresql+psycopg", username="crm", password=PASSWORD, host="db", port=5432, database="crm"
)


@pytest.mark.parametrize(
    ("error", "url", "expected"),
    [
        (
            pyodbc.Error(
                "28000",
                f"[28000] [Microsoft][{MS18}][SQL Server]Login failed for user 'sa'. (18456) "
                "(SQLDriverConnect)",
            ),
            MSSQL_URL,
            "Login failed for user 'sa' on SQL Server 'sql01'",
        ),
        (
            pyodbc.Error(
                "42000",
                f'[42000] [Microsoft][{MS18}][SQL Server]Cannot open database "CRM" requested '
                "by the login. The login failed. (4060) (SQLDriverConnect)",
            ),
            MSSQL_URL,
            "database 'CRM' does not exist",
        ),
        (
            pyodbc.Error(
                "HYT00", f"[HYT00] [Microsoft][{MS18}]Login timeout expired (0) (SQLDriverConnect)"
            ),
            MSSQL_URL,
            "SQL Server 'sql01' did not answer within the login timeout",
        ),
        (
            pyodbc.Error(
                "IM002",
                "[IM002] [unixODBC][Driver Manager]Data source name not found and no default "
                "driver specified (0) (SQLDriverConnect)",
            ),
            MSSQL_URL,
            f"ODBC driver '{MS18}'",
        ),
        (
            psycopg.OperationalError(
                'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
                'FATAL:  password authentication failed for user "crm"'
            ),
            PG_URL,
            "Login failed for user 'crm' on PostgreSQL server 'db:5432'",
        ),
        (
            psycopg.OperationalError(
                'connection failed: connection to server at "10.0.0.5", port 5432 failed: '
                'FATAL:  database "crm" does not exist'
            ),
            PG_URL,
            "database 'crm' does not exist",
        ),
        (
            psycopg.OperationalError(
                'connection failed: connection to server at "10.0.0.5", port 28000 failed: '
                "Connection refused"
            ),
            PG_URL.set(port=28000),
            "Cannot reach PostgreSQL server 'db:28000'",
        ),
    ],
)
def test_driver_errors_become_one_clear_paragraph(
    error: Exception, url: URL, expected: str
) -> None:
    described = describe_connect_failure(error, url)
    assert isinstance(described, ConnectError)
    assert expected in described.message
    assert described.hint
    assert "\n" not in described.message


def test_a_driver_that_echoes_the_password_is_scrubbed() -> None:
    echoed = pyodbc.Error(
        "HY000",
        f"[HY000] invalid attribute in 'DRIVER={{{MS18}}};UID=sa;PWD={{Tr1cky;pa}}}}ss=word}}'",
    )
    described = describe_connect_failure(echoed, MSSQL_URL)
    assert "Cannot connect to SQL Server 'sql01'" in described.message
    assert_no_password(str(described))


def test_scrub_secret() -> None:
    assert scrub_secret("login sa/hunter2 failed", "hunter2") == "login sa/*** failed"
    assert scrub_secret("PWD={a}}b}", "a}b") == "PWD=***"
    # A short secret is hidden where it stands as a password, not wherever its characters occur.
    assert scrub_secret("error 10060 at port 1433", "0") == "error 10060 at port 1433"
    assert scrub_secret("postgresql://u:p%40ss@h", "p@ss") == "postgresql://u:***@h"
    assert scrub_secret("nothing to hide", None) == "nothing to hide"
    assert scrub_secret("nothing to hide", "") == "nothing to hide"


# --- SQLite ------------------------------------------------------------------------------


def sqlite_url(path: Path) -> URL:
    return build_url(ConnectionSettings(database_url=f"sqlite:///{path}"))


@pytest.fixture
def crm_file(tmp_path: Path) -> Path:
    path = tmp_path / "crm.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE appointment (appointment_id INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO appointment VALUES (1)")
    db.close()
    return path


def test_missing_sqlite_file_is_a_usage_error_and_stays_missing(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(UsageError) as caught:
        create_engine_for(sqlite_url(path))
    assert str(path) in caught.value.message
    assert not path.exists()


def test_demo_may_create_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.db"
    with open_connection(create_engine_for(sqlite_url(path), create_missing=True)) as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.commit()
    assert path.exists()


def test_writable_sqlite_engine_writes(crm_file: Path) -> None:
    with open_connection(create_engine_for(sqlite_url(crm_file))) as conn:
        conn.execute(text("INSERT INTO appointment VALUES (2)"))
        conn.commit()
    with sqlite3.connect(crm_file) as db:
        assert db.execute("SELECT count(*) FROM appointment").fetchone() == (2,)
    db.close()


def test_read_only_sqlite_engine_refuses_writes(crm_file: Path) -> None:
    before = crm_file.read_bytes()
    engine = create_engine_for(sqlite_url(crm_file), read_only=True)
    with open_connection(engine) as conn:
        assert conn.execute(text("SELECT count(*) FROM appointment")).scalar() == 1
        with pytest.raises(OperationalError, match="readonly"):
            conn.execute(text("INSERT INTO appointment VALUES (2)"))
        conn.rollback()
    engine.dispose()
    assert crm_file.read_bytes() == before


def test_junk_file_is_not_a_sqlite_database(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    path.write_bytes(b"definitely not SQLite\n" * 200)
    with pytest.raises(ConnectError) as caught:
        open_connection(create_engine_for(sqlite_url(path), read_only=True))
    assert "is not a SQLite database" in caught.value.message
    assert str(path) in caught.value.message


def test_folder_instead_of_sqlite_file(tmp_path: Path) -> None:
    with pytest.raises(ConnectError) as caught:
        open_connection(create_engine_for(sqlite_url(tmp_path)))
    assert "is a folder, not a SQLite database file" in caught.value.message
    assert "server" not in caught.value.message  # not a database server that is running


def test_login_timeout_must_be_positive(crm_file: Path) -> None:
    with pytest.raises(UsageError, match="timeout"):
        create_engine_for(sqlite_url(crm_file), login_timeout=0)
