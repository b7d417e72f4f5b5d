"""--help in sections, each option with its variable and default; --format sql only where a
T-SQL script exists; --report - and report file names whose extension says what they hold."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_helpers import invoke

pytestmark = pytest.mark.usefixtures("workdir")

SECTIONS = {
    "Connection options": ["--database-url", "--server", "--user", "--table-prefix"],
    "Answer options": [
        "--config",
        "--superoffice-version",
        "--synchronizer-version",
        "--footprints",
    ],
    "Run options": ["--unattended", "--dry-run", "--yes", "--batch-size", "--lock-wait"],
    "Output options": ["--report", "--format", "--log-file", "--log-level", "--color / --no-color"],
}


def sections(help_text: str) -> dict[str, str]:
    """Section title -> its text, from click's help layout."""
    found = re.split(r"^([A-Z][a-z]+(?: [a-z]+)?):\n", help_text, flags=re.M)
    return dict(zip(found[1::2], found[2::2], strict=True))


def test_upgrade_help_groups_its_options() -> None:
    result = invoke("upgrade", "--help")
    assert result.exit_code == 0
    shown = sections(result.stdout)
    titles = [t for t in shown if t.lower().endswith("options")]
    assert titles == [*SECTIONS, "Options"], titles  # -h last, on its own
    for title, options in SECTIONS.items():
        for option in options:
            assert re.search(rf"^  (-\w, )?{re.escape(option)}\b", shown[title], re.M), (
                title,
                option,
            )
    flat = " ".join(result.stdout.split())
    assert "[env var: SETUP_TOOL_BATCH_SIZE; default: 1000; 1<=x<=100000]" in flat
    assert "setup-tool upgrade --database-url sqlite:///crm.db" in result.stdout  # the example


@pytest.mark.parametrize("command", ["detect", "history", "undo"])
def test_format_sql_is_offered_only_where_it_exists(command: str) -> None:
    assert "sql" not in re.search(r"--format \[([^\]]+)\]", invoke(command, "--help").stdout)[1]
    refused = invoke(command, "--database-url", "sqlite:///x.db", "--format", "sql")
    assert refused.exit_code == 2 and "'sql' is not one of" in refused.stderr


def test_upgrade_offers_format_sql() -> None:
    assert "sql" in re.search(r"--format \[([^\]]+)\]", invoke("upgrade", "--help").stdout)[1]


@pytest.mark.parametrize(
    "argv", [["upgrade", "--dry-run"], ["upgrade"], ["detect"], ["history"], ["undo", "--dry-run"]]
)
@pytest.mark.parametrize("name", ["plan.pdf", "report.docx", "plan.sql"])
def test_a_report_name_whose_extension_says_nothing_is_refused(
    argv: list[str], name: str, workdir: Path
) -> None:
    if name == "plan.sql" and argv == ["upgrade", "--dry-run"]:
        pytest.skip("the T-SQL script of a dry run")
    missing = workdir / "not-there.db"  # refused before connecting: no "cannot connect"
    result = invoke(*argv, "--database-url", f"sqlite:///{missing}", "--report", name)
    assert result.exit_code == 2, result.output
    if name != "plan.sql" or argv[0] != "upgrade":
        assert f"does not write {Path(name).suffix} files" in result.stderr
    assert not (workdir / name).exists() and not missing.exists()


def test_an_explicit_format_names_what_an_odd_extension_holds(demo_db: Path) -> None:
    result = invoke(
        "upgrade",
        "--database-url",
        f"sqlite:///{demo_db}",
        "--dry-run",
        "--report",
        "plan.out",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(Path("plan.out").read_text())["mode"] == "dry-run"


@pytest.mark.parametrize("argv", [["upgrade", "--dry-run"], ["detect"], ["history"]])
def test_report_dash_writes_to_standard_output(argv: list[str], demo_db: Path) -> None:
    result = invoke(
        *argv, "--database-url", f"sqlite:///{demo_db}", "--report", "-", "--format", "json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["schema_version"] == 2
    assert not Path("-").exists()


def test_a_real_run_can_write_its_report_to_standard_output(demo_db: Path) -> None:
    result = invoke(
        "upgrade",
        "--database-url",
        f"sqlite:///{demo_db}",
        "--unattended",
        "--report",
        "-",
        "--format",
        "json",
    )
    assert result.exit_code == 4, result.output
    assert json.loads(result.stdout)["mode"] == "upgrade"
    assert "Report:" not in result.stderr and not Path("-").exists()
