"""Bad input, as a hostile or unlucky user types it: every command, every option, every
answer-file key and every SETUP_TOOL_* variable. The answer is always a documented exit code and
one clear paragraph, never a traceback; values are checked against what the database columns and
the clock can hold before anything connects."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from setup_tool.cli import cli
from setup_tool.cli_options import INT32_MAX, answer_file_kinds
from setup_tool.config import PASSWORD_ENV, PASSWORD_KEY, envvar
from setup_tool.errors import ExitCode, UsageError
from setup_tool.schema import validate_table_prefix

pytestmark = pytest.mark.usefixtures("workdir")

DOCUMENTED = {int(code) for code in ExitCode}  # README "Exit codes"


def invoke(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, prog_name="setup-tool")


def assert_clean(result: Result, what: str) -> None:
    """A documented exit code, no traceback, no 'please report it', one paragraph of error."""
    where = f"{what}\n--- exit {result.exit_code}\n{result.output}"
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{where}\n{result.exception!r}"
    )
    assert result.exit_code in DOCUMENTED, where
    assert "Traceback" not in result.output, where
    assert "Unexpected error" not in result.output, where
    assert "please report it" not in result.output, where
    errors = result.stderr.count("Error: ")
    assert errors <= 1, where
    if errors:
        paragraph = result.stderr[result.stderr.index("Error: ") :].rstrip("\n")
        assert "\n\n" not in paragraph, where  # one paragraph (then at most a Log: line)


def url(db: Path) -> str:
    return f"sqlite:///{db}"


def execute(db: Path, *statements: str) -> None:
    with closing(sqlite3.connect(db)) as con:
        for statement in statements:
            con.execute(statement)
        con.commit()


# --- item 7: answer-file types, ranges the columns can hold, the table prefix -----------------

WRONG_TYPES: dict[str, tuple[str, str, str]] = {
    # case: (command, answer-file line, what the message says)
    "password as a number": (
        "upgrade",
        "db-password = 12345",
        "as an integer; it must be a string",
    ),
    "batch size 1.5": (
        "upgrade",
        "batch-size = 1.5",
        "as a number (1.5); it must be a whole number",
    ),
    "batch size true": ("upgrade", "batch-size = true", "as a boolean (true); it must be a whole"),
    "lock timeout nan": ("upgrade", "lock-timeout = nan", "it must be a finite number"),
    "lock timeout inf": ("undo", "lock-timeout = inf", "it must be a finite number"),
    "flag as text": ("upgrade", 'fix-overrides = "yes"', "it must be true or false"),
    "prefix as a number": ("detect", "table-prefix = 7", "as an integer (7); it must be a string"),
    "report as a list": ("history", 'report = ["runs.txt"]', "as a list; it must be"),
    "date as a time": ("upgrade", "invites-since = 07:32:00", "it must be a date"),
    "run ids with text": ("undo", 'run = [1, "two"]', "it must be a whole number (or a list"),
    "NUL in a string": ("upgrade", 'server = "sql01\\u0000"', "a string with a NUL character"),
}


@pytest.mark.parametrize("case", WRONG_TYPES, ids=list(WRONG_TYPES))
def test_an_answer_of_the_wrong_type_names_the_key_and_the_type(case: str, demo_db: Path) -> None:
    command, line, message = WRONG_TYPES[case]
    Path("answers.toml").write_text(f"database-url = '{url(demo_db)}'\n{line}\n")
    mode = "--quiet" if command in ("detect", "history") else "--unattended"
    result = invoke(command, "--config", "answers.toml", mode)
    assert_clean(result, case)
    assert result.exit_code == ExitCode.USAGE, result.output  # was a traceback, or 1 silently
    key = line.split(" =")[0]
    assert f"gives '{key}' as" in result.stderr and message in result.stderr, result.stderr
    assert "12345" not in result.output  # a password is never shown, even a wrong one


def test_toml_dates_and_single_run_ids_are_taken_as_they_are_meant(demo_db: Path) -> None:
    Path("answers.toml").write_text(
        f"database-url = '{url(demo_db)}'\ninvites-since = 2025-09-27\nformat = 'json'\n"
    )
    result = invoke("upgrade", "--config", "answers.toml", "--dry-run", "--unattended")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["findings"]["invites"]  # the date was used, not refused
    Path("undo.toml").write_text(f"database-url = '{url(demo_db)}'\nrun = 7\n")
    undone = invoke("undo", "--config", "undo.toml", "--unattended")
    assert undone.exit_code == ExitCode.DONE, undone.output  # no runs at all: nothing to undo


OUT_OF_RANGE: dict[str, tuple[list[str], dict[str, str], str]] = {
    # case: (arguments after the command, environment, option named in the message)
    "lock timeout nan": (["upgrade", "--lock-timeout", "nan"], {}, "--lock-timeout"),
    "lock timeout nan from the environment": (
        ["upgrade"],
        {"SETUP_TOOL_LOCK_TIMEOUT": "nan"},
        "--lock-timeout",
    ),
    "lock timeout inf": (["undo", "--lock-timeout", "inf"], {}, "--lock-timeout"),
    "lock timeout of a year": (["upgrade", "--lock-timeout", "31536000"], {}, "--lock-timeout"),
    "acting associate beyond 32 bits": (
        ["upgrade", "--acting-associate", "99999999999"],
        {},
        "--acting-associate",
    ),
    "acting associate one past the column": (
        ["undo", "--acting-associate", str(INT32_MAX + 1)],
        {},
        "--acting-associate",
    ),
    "run id beyond 32 bits": (["undo", "--run", str(INT32_MAX + 1)], {}, "--run"),
    "run id 0": (["undo", "--run", "0"], {}, "--run"),
    "login timeout of a day": (["detect", "--login-timeout", "86400"], {}, "--login-timeout"),
    "batch size 1.5": (["upgrade", "--batch-size", "1.5"], {}, "--batch-size"),
}


@pytest.mark.parametrize("case", OUT_OF_RANGE, ids=list(OUT_OF_RANGE))
def test_values_the_columns_or_the_clock_cannot_hold_are_refused_up_front(
    case: str, demo_db: Path
) -> None:
    args, env, option = OUT_OF_RANGE[case]
    extra = ["--dry-run"] if args[0] == "upgrade" else []
    if args[0] != "detect":
        extra.append("--unattended")
    result = invoke(*args, "--database-url", url(demo_db), *extra, env=env)
    assert_clean(result, case)
    assert result.exit_code == ExitCode.USAGE, result.output  # was 0 (nan waits forever), or
    assert f"Invalid value for '{option}'" in result.stderr  # 1 late with a resume hint
    assert not list(Path.cwd().glob("setup-tool-*.log"))  # refused before anything started


def test_the_largest_associate_id_the_column_holds_is_accepted(demo_db: Path) -> None:
    result = invoke(
        "upgrade", "--database-url", url(demo_db), "--dry-run", "--acting-associate", INT32_MAX
    )
    assert result.exit_code == ExitCode.DONE, result.output


@pytest.mark.parametrize("prefix", ["crm7\n", "main\n", "crm7\r\n", "\ncrm7"])
def test_a_table_prefix_with_a_line_break_is_not_an_identifier(prefix: str, demo_db: Path) -> None:
    with pytest.raises(UsageError, match="Invalid table prefix"):
        validate_table_prefix(prefix)
    result = invoke("detect", "--database-url", url(demo_db), "--table-prefix", prefix)
    assert_clean(result, repr(prefix))
    assert result.exit_code == ExitCode.USAGE, result.output  # was 3: "schema does not exist"
    assert "Invalid table prefix" in result.stderr


# --- the smaller ones ----------------------------------------------------------------------------


def test_a_release_8_5_never_had_is_refused(demo_db: Path) -> None:
    result = invoke(
        "upgrade", "--database-url", url(demo_db), "--dry-run", "--superoffice-version", "8.5 R99"
    )
    assert_clean(result, "8.5 R99")
    assert result.exit_code == ExitCode.USAGE, result.output  # was accepted as a release
    assert "8.5 shipped as releases R01 to R17" in result.stderr
    assert "--known-builds" in result.stderr  # the other routes stay open


def test_a_mistyped_setup_tool_variable_is_warned_about_before_anything_else(
    demo_db: Path,
) -> None:
    env = {
        "SETUP_TOOL_DRYRUN": "1",
        "SETUP_TOOL_TEST_ANYTHING": "1",  # the test suite's own: not warned about
        "SETUP_TOOL_LOG_FILE": "run.log",
    }
    result = invoke("upgrade", "--database-url", url(demo_db), "--unattended", "--dry-run", env=env)
    assert result.exit_code == ExitCode.DONE, result.output
    first_line = result.stderr.splitlines()[0]
    assert first_line.startswith("Warning: The environment variable SETUP_TOOL_DRYRUN")
    assert "Did you mean SETUP_TOOL_DRY_RUN?" in first_line
    assert "SETUP_TOOL_TEST_ANYTHING" not in result.stderr
    assert "SETUP_TOOL_LOG_FILE" not in result.stderr
    assert "SETUP_TOOL_DRYRUN" in Path("run.log").read_text()  # and the log keeps it


def test_a_folder_named_as_the_database_is_called_a_folder(demo_db: Path) -> None:
    folder = demo_db.parent / "crm-folder.db"
    folder.mkdir()
    for extra in (["--dry-run"], ["--unattended"]):
        result = invoke("upgrade", "--database-url", url(folder), *extra)
        assert_clean(result, str(extra))
        assert result.exit_code == ExitCode.CANNOT_CONNECT, result.output
        assert "is a folder, not a SQLite database file" in result.stderr
        assert "server" not in result.stderr  # was: "that the database server is running"


def test_a_database_file_another_program_holds_is_called_busy(demo_db: Path) -> None:
    with closing(sqlite3.connect(demo_db, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE appointment SET cautionWarning = cautionWarning WHERE 0")
        result = invoke("detect", "--database-url", url(demo_db))  # waits SQLite's 5 s
        holder.execute("ROLLBACK")
    assert_clean(result, "busy")
    assert result.exit_code == ExitCode.CANNOT_CONNECT, result.output
    assert "is busy: another program holds a lock on the file" in result.stderr
    assert "server" not in result.stderr  # was: "that the database server is running"


def test_a_version_row_that_is_not_utf8_is_unreadable_evidence_not_a_crash(demo_db: Path) -> None:
    execute(
        demo_db,
        "UPDATE ProductVersion SET version = CAST(X'382E3520523130FF' AS TEXT) "
        "WHERE ProductVersion_id = (SELECT max(ProductVersion_id) FROM ProductVersion "
        "WHERE ownerName = 'SuperOffice')",
    )
    result = invoke("upgrade", "--database-url", url(demo_db), "--dry-run", "--format", "json")
    assert_clean(result, "invalid UTF-8")
    assert result.exit_code == ExitCode.DONE, result.output  # was 1 with a resume hint
    evidence = json.loads(result.stdout)["findings"]["superoffice"]["evidence"]
    assert any("not a version string this tool can read" in e["detail"] for e in evidence)
    real = invoke("upgrade", "--database-url", url(demo_db), "--unattended", "--fix-overrides")
    assert real.exit_code == ExitCode.DONE, real.output


@contextmanager
def read_only_folder(demo_db: Path) -> Iterator[tuple[Path, Path, Callable[..., Any]]]:
    """A copy of the demo in a folder this user may not write, and a way to run the tool in a
    writable working directory. Root writes into any folder, so as root the tool runs without
    the capabilities that let it (setpriv), as an ordinary account would."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: every folder is writable")
    folder, work = demo_db.parent / "readonly", demo_db.parent / "work"
    folder.mkdir()
    work.mkdir()
    db = folder / "crm.db"
    shutil.copyfile(demo_db, db)
    folder.chmod(0o555)
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SETUP_TOOL_")}
        return subprocess.run(
            [*(drop if os.geteuid() == 0 else []), sys.executable, "-m", "setup_tool", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    try:
        yield folder, db, run
    finally:
        folder.chmod(0o755)


def test_a_read_only_folder_is_named_before_anything_is_written(demo_db: Path) -> None:
    with read_only_folder(demo_db) as (folder, db, run):
        before = db.read_bytes()
        for command in (["upgrade", "--unattended"], ["undo", "--unattended"]):
            done = run(*command, "--database-url", url(db))
            output = done.stdout + done.stderr
            assert "Traceback" not in output, output
            assert done.returncode == ExitCode.BLOCKED, output  # was 1 with a lock-file Errno
            assert f"The folder {folder} is read-only for this user" in done.stderr
            assert "Errno" not in done.stderr and "reachable" not in done.stderr
        dry = run("upgrade", "--dry-run", "--database-url", url(db))
        assert dry.returncode == ExitCode.DONE, dry.stderr  # a dry run needs read access only
        assert db.read_bytes() == before


# --- every command, every input, generated bad values ------------------------------------------

COMMANDS = ["upgrade", "detect", "history", "undo", "demo"]
SAFE_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    max_size=40,
)
HOSTILE_TEXT = [
    "",
    " ",
    "\n",
    "a\n\nb",
    "crm7\n",
    "'; DROP TABLE appointment; --",
    "%s%n%(x)s{0}",
    "\u202eevil",
    "\x1b[31mred",
    "x" * 3000,
    "nan",
    "-1",
    "99999999999",
    "8.5 R99",
    "sqlite:///crm.db",
]
# Relative names only: an absolute path in a test run as root could reach a system file.
HOSTILE_PATHS = [
    "",
    ".",
    "..",
    "no/such/folder/file.txt",
    "crm.db",
    "crm.db-journal",
    "crm.db.setup-tool.lock",
    "a\nb.txt",
    "n" * 300,
]
SAFE_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 ._-", min_size=1, max_size=20)
DATABASE_URLS = [
    "",
    "sqlite://",
    "sqlite:///",
    "sqlite:///.",
    "sqlite:///no-such.db",
    "sqlite:///crm.db?mode=rwc",
    "sqlite:///:memory:",
    "sqlite:///crm.db\n",
    "not a url",
    "oracle://scott@127.0.0.1:1/orcl",
    "postgresql+psycopg://u@127.0.0.1:1/db",
    "postgresql+psycopg://u:S3cret@127.0.0.1:1/db?options=-c%20x",
    "file:crm.db",
]


def _long_name(param: click.Parameter) -> str:
    return max((o for o in param.opts if o.startswith("--")), key=len, default=param.opts[0])


def _inputs(command: click.Command) -> list[click.Parameter]:
    return [p for p in command.params if p.name != "help"]


def bad_command_line_values(param: click.Parameter) -> st.SearchStrategy[str]:
    """Values a user could type for `param`: invalid ones where the type decides validity."""
    kind = param.type
    if isinstance(kind, click.types.IntParamType):
        low, high = getattr(kind, "min", None), getattr(kind, "max", None)
        outside = [str(v) for v in (low - 1 if low is not None else None,) if v is not None]
        outside += [str(high + 1)] if high is not None else []
        fractions = st.floats().filter(lambda f: not (math.isfinite(f) and f.is_integer()))
        return st.sampled_from(
            [*outside, "1.5", "nan", "inf", "", " ", "x", "1e3", "0x10", "9" * 5000]
        ) | fractions.map(repr)
    if isinstance(kind, click.types.FloatParamType):
        high = getattr(kind, "max", None)
        return st.sampled_from(
            ["nan", "NaN", "inf", "-inf", "-1", "-0.001", "1e309", "", "x", "0x10"]
            + ([str(high + 1), str(high * 1000)] if high is not None else [])
        )
    if isinstance(kind, click.DateTime):
        return (
            st.sampled_from(
                ["2025-13-01", "2025-02-30", "yesterday", "0000-01-01", "", "2025-09-27T25:00:00"]
            )
            | SAFE_TEXT
        )
    if isinstance(kind, click.Path):
        return st.sampled_from(HOSTILE_PATHS) | SAFE_NAMES
    if param.name == "database_url":
        return st.sampled_from(DATABASE_URLS) | SAFE_TEXT
    return st.sampled_from(HOSTILE_TEXT) | SAFE_TEXT


def bad_env_values(param: click.Parameter) -> st.SearchStrategy[str]:
    if isinstance(param, click.Option) and param.is_flag:
        return st.sampled_from(["maybe", "2", "yes please", "truee", "-1", "on off"])
    # An empty variable counts as not set (click), and so does a blank one for an option that
    # may be repeated (split on white space): neither is a bad value.
    return bad_command_line_values(param).filter(str.strip)


WRONG_TOML: dict[str, list[str]] = {
    "text": ["12345", "1.5", "true", "[1, 2]", "1979-05-27", "07:32:00", "nan", '"\\u0000"'],
    "integer": ["1.5", '"2000"', "true", "nan", "inf", "[1.5]", "1979-05-27", '""'],
    "number": ['"30"', "true", "nan", "-inf", "inf", "[1]", "07:32:00"],
    "boolean": ['"yes"', "1", "0", '"true"', "[true]", "1979-05-27"],
    "date": ["2025", "true", "07:32:00", "[1]", "1.5"],
}


def wrong_toml(kind: str) -> st.SearchStrategy[str]:
    return st.sampled_from(WRONG_TOML[kind.removeprefix("list of ")])


def hostile_toml(kind: str) -> st.SearchStrategy[str]:
    """Of the right TOML type, but values nobody should give."""
    item = kind.removeprefix("list of ")
    if item == "integer":
        return st.sampled_from(["-1", "0", "9223372036854775807", "-9223372036854775808"])
    if item == "number":
        return st.sampled_from(["-1.0", "1e300", "-0.0", "86401"])
    if item == "boolean":
        return st.sampled_from(["true", "false"])
    if item == "date":
        return st.sampled_from(
            ["0001-01-01", "9999-12-31T23:59:59Z", '"2025-09-27"', '"2025-13-45"', '"yesterday"']
        )
    return (st.sampled_from(HOSTILE_TEXT) | SAFE_TEXT).map(json.dumps)


def base_arguments(command: str, db: Path) -> dict[str, list[str]]:
    """A run that would otherwise work, by parameter: the one under test is left out, so that
    its bad value (from any source) is the one the command meets."""
    base = {"database_url": ["--database-url", url(db)]}
    if command == "upgrade":
        base |= {"dry_run": ["--dry-run"], "unattended": ["--unattended"]}
    if command == "undo":
        base |= {"unattended": ["--unattended"]}
    if command == "demo":
        return {
            "path": ["new-demo.db"],
            "appointments": ["--appointments", "10"],
            "overwrite": ["--overwrite"],
        }
    return base


def _arguments(base: dict[str, list[str]], leave_out: str) -> list[str]:
    path = base.get("path") if leave_out != "path" else None
    options = [a for name, args in base.items() if name not in (leave_out, "path") for a in args]
    return [*(path or []), *options]


@pytest.mark.parametrize("name", COMMANDS)
@settings(
    max_examples=3,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # each failure is one input: no shrink
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_every_command_answers_bad_values_for_every_input_with_a_documented_exit(
    name: str, demo_db: Path, data: st.DataObject
) -> None:
    """Each example gives every option (on the command line), every SETUP_TOOL_* variable and
    every answer-file key of the command a generated bad value, one at a time."""
    command = cli.commands[name]  # type: ignore[attr-defined]
    base = base_arguments(name, demo_db)
    kinds = answer_file_kinds(command) if name != "demo" else {}
    for param in _inputs(command):
        assert param.name is not None
        args = _arguments(base, param.name)
        long = _long_name(param)
        # the command line
        if isinstance(param, click.Argument):
            value = data.draw(st.sampled_from(HOSTILE_PATHS[:4] + HOSTILE_PATHS[7:]) | SAFE_NAMES)
            result = invoke(name, value, *args)
        elif isinstance(param, click.Option) and param.is_flag:
            value = data.draw(SAFE_TEXT)
            result = invoke(name, *args, f"{long}={value}")
            assert result.exit_code == ExitCode.USAGE, result.output  # a flag takes no value
        else:
            value = data.draw(bad_command_line_values(param))
            result = invoke(name, *args, long, value)
        assert_clean(result, f"{name} {long} {value!r}")
        if isinstance(param.type, click.types.IntParamType | click.types.FloatParamType):
            assert result.exit_code == ExitCode.USAGE, result.output
        if not isinstance(param, click.Option):
            continue
        # the environment
        variable = param.envvar if isinstance(param.envvar, str) else envvar(long)
        value = data.draw(bad_env_values(param))
        result = invoke(name, *args, env={variable: value})
        assert_clean(result, f"{name} {variable}={value!r}")
        if param.is_flag or isinstance(param.type, click.types.IntParamType):
            assert result.exit_code == ExitCode.USAGE, result.output
        # the answer file
        if param.name not in kinds:
            continue
        key, kind = long.removeprefix("--"), kinds[param.name]
        wrong = data.draw(wrong_toml(kind))
        Path("answers.toml").write_text(f"{key} = {wrong}\n")
        result = invoke(name, "--config", "answers.toml", *args)
        assert_clean(result, f"{name} answer {key} = {wrong}")
        assert result.exit_code == ExitCode.USAGE, result.output
        assert f"'{key}'" in result.stderr, result.stderr
        hostile = data.draw(hostile_toml(kind))
        Path("answers.toml").write_text(f"{key} = {hostile}\n")
        result = invoke(name, "--config", "answers.toml", *args)
        assert_clean(result, f"{name} answer {key} = {hostile}")
    if name == "demo":
        return
    # the password: a variable and an answer-file key of its own, never an option
    secret = data.draw(st.sampled_from(HOSTILE_TEXT) | SAFE_TEXT)
    result = invoke(name, *_arguments(base, ""), env={PASSWORD_ENV: secret})
    assert_clean(result, f"{name} {PASSWORD_ENV}={secret!r}")
    wrong = data.draw(wrong_toml("text"))
    Path("answers.toml").write_text(f"{PASSWORD_KEY} = {wrong}\n")
    result = invoke(name, "--config", "answers.toml", *_arguments(base, ""))
    assert_clean(result, f"{name} answer {PASSWORD_KEY} = {wrong}")
    assert result.exit_code == ExitCode.USAGE and f"'{PASSWORD_KEY}'" in result.stderr


def test_the_sweep_reaches_every_option_variable_and_key() -> None:
    """The lists come from the commands themselves: a new option is swept without a change
    here, and so are its variable and its answer-file key."""
    for name in COMMANDS:
        command = cli.commands[name]  # type: ignore[attr-defined]
        kinds = answer_file_kinds(command) if name != "demo" else {}
        for param in _inputs(command):
            if isinstance(param, click.Option):
                assert param.envvar, (name, param.name)
                if name != "demo" and param.name != "config":
                    assert param.name in kinds, (name, param.name)
    assert re.fullmatch(r"SETUP_TOOL_[A-Z_]+", PASSWORD_ENV)
