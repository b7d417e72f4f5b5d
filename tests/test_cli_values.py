"""setup_tool.cli_values: each command's options become one typed value at the edge, with where
every value came from, and the password only as a Secret that nothing prints."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import click
import pytest

from setup_tool.cli import detect, history, undo, upgrade
from setup_tool.cli_values import (
    Secret,
    detect_options,
    history_options,
    undo_options,
    upgrade_options,
)
from setup_tool.config import PASSWORD_ENV
from setup_tool.support_log import log_options

FILE_PASSWORD = "pw-from-the-answer-file"
ENV_PASSWORD = "pw-from-the-environment"


@pytest.fixture(autouse=True)
def _no_setup_tool_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SETUP_TOOL_") and not name.startswith("SETUP_TOOL_TEST_"):
            monkeypatch.delenv(name)


def _context(command: click.Command, *args: str) -> click.Context:
    return command.make_context(command.name or "command", list(args))


def _answer_file(tmp_path: Path) -> Path:
    path = tmp_path / "answers.toml"
    path.write_text(
        "[connection]\n"
        'server = "sql01"\n'
        'database = "SuperOffice"\n'
        'user = "sa"\n'
        f'db-password = "{FILE_PASSWORD}"\n'
        "[answers]\n"
        "fix-overrides = true\n"
        "batch-size = 25\n"
        "invites-since = 2024-03-01\n",
        encoding="utf-8",
    )
    return path


def test_upgrade_options_are_typed_and_say_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SETUP_TOOL_LOCK_WAIT", "2.5")
    ctx = _context(
        upgrade,
        *("--config", str(_answer_file(tmp_path)), "--batch-size", "30"),
        *("--report", "plan.html", "--pause-between-batches", "1"),
    )
    with ctx:
        options = upgrade_options(ctx)

    assert options.batch_size == 30  # the command line wins over the answer file
    assert options.fix_overrides is True and options.lock_wait == 2.5
    assert options.pause_between_batches == 1.0 and options.lock_timeout is None
    assert options.acting_associate == 0 and not options.dry_run
    assert options.answers.invites_since == datetime(2024, 3, 1)
    assert options.answers.footprints == "invitation,send-email,email-id"
    assert options.output.report == Path("plan.html") and options.output.log_file is None
    connection = options.connection
    assert (connection.server, connection.database, connection.user) == (
        "sql01",
        "SuperOffice",
        "sa",
    )
    assert connection.target_remembered  # the wizard offers it as the default
    assert not connection.url_on_command_line
    where = {given.option: given.where for given in options.sources}
    assert where["--batch-size"] == "command line"
    assert where["--lock-wait"] == "environment"
    assert where["--fix-overrides"] == "answer file"
    assert where["--acting-associate"] == "default"


def test_the_password_comes_from_the_environment_first_and_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = _context(upgrade, "--config", str(_answer_file(tmp_path)))
    with ctx:
        from_file = upgrade_options(ctx)
    monkeypatch.setenv(PASSWORD_ENV, ENV_PASSWORD)
    ctx = _context(upgrade, "--config", str(_answer_file(tmp_path)))
    with ctx:
        from_env = upgrade_options(ctx)

    assert from_file.connection.password == Secret(FILE_PASSWORD)
    assert from_env.connection.password is not None
    assert from_env.connection.password.reveal() == ENV_PASSWORD
    with caplog.at_level(logging.INFO, logger="setup_tool"):
        log_options(from_file.sources)
    shown = [repr(from_file), str(from_file.connection.password), f"{from_env}", caplog.text]
    for text in shown:
        assert FILE_PASSWORD not in text and ENV_PASSWORD not in text
    assert "option --batch-size = 25 (answer file)" in caplog.text


def test_a_database_url_typed_on_the_command_line_is_known_as_such() -> None:
    ctx = _context(detect, "--database-url", "sqlite:///crm.db", "--format", "json", "-q")
    with ctx:
        options = detect_options(ctx)
    assert options.connection.database_url == "sqlite:///crm.db"
    assert options.connection.url_on_command_line
    assert not options.connection.target_remembered
    assert options.output.report_format == "json" and options.output.quiet


def test_undo_and_history_take_their_run_ids_as_whole_numbers() -> None:
    ctx = _context(undo, "--database-url", "sqlite:///crm.db", "--run", "3", "--run", "5")
    with ctx:
        options = undo_options(ctx)
    assert options.run_ids == (3, 5) and options.lock_timeout == 0.0
    ctx = _context(history, "--database-url", "sqlite:///crm.db", "--run", "2")
    with ctx:
        assert history_options(ctx).run_id == 2


def test_a_value_of_the_wrong_type_is_a_bug_in_the_declaration_not_passed_on() -> None:
    ctx = _context(upgrade, "--database-url", "sqlite:///crm.db")
    ctx.params["batch_size"] = "30"  # as an option declared without its type would give it
    with ctx, pytest.raises(TypeError, match="batch_size"):
        upgrade_options(ctx)
