"""Who answers the upgrade's questions: the wizard asks a person; unattended never asks."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import click

from setup_tool.console import Console
from setup_tool.detect import OperatorAnswers
from setup_tool.errors import BlockedError, MissingAnswerError
from setup_tool.findings import Findings
from setup_tool.steps.gate import SUPPLY_VERSION
from setup_tool.upgrade import UpgradePlan
from setup_tool.versions import VersionParseError, parse_synchronizer_version


class UnattendedInteraction:
    """Every answer comes from options, environment or the answer file; a gap is an error."""

    def answer_superoffice_version(self, findings: Findings) -> str | None:
        raise BlockedError(
            "The SuperOffice version is undetermined: the database does not say "
            "which 8.5 release this build is.",
            SUPPLY_VERSION,
        )

    def answer_synchronizer(self, findings: Findings) -> OperatorAnswers | None:
        raise MissingAnswerError(
            "the database is licensed for the InfoBridge synchronizer (superoffice.exchange-sync) "
            "but nothing shows whether it is installed; say whether it is in use",
            "--synchronizer-version VERSION or --no-synchronizer",
            "SETUP_TOOL_SYNCHRONIZER_VERSION or SETUP_TOOL_NO_SYNCHRONIZER",
            "synchronizer-version / no-synchronizer",
        )

    def answer_invites_since(self, findings: Findings) -> datetime | None:
        return None  # goes on without footprint (c); the findings and warnings say so

    def confirm(self, plan: UpgradePlan) -> bool:
        return True


class WizardInteraction:
    """Asks on the terminal; shows the findings and the plan before the one confirmation."""

    def __init__(
        self,
        console: Console,
        describe_plan: Callable[[UpgradePlan], str] | None = None,
        assume_yes: bool = False,
    ) -> None:
        self.console = console
        self.describe_plan = describe_plan
        self.assume_yes = assume_yes

    def answer_superoffice_version(self, findings: Findings) -> str | None:
        self._show_evidence(
            "SuperOffice version", [e.detail for e in findings.superoffice.evidence]
        )
        answer: str = click.prompt(
            "Which SuperOffice version is installed (for example 8.5 R10)? Leave empty to stop",
            default="",
            show_default=False,
            err=True,
        )
        return answer.strip() or None

    def answer_synchronizer(self, findings: Findings) -> OperatorAnswers | None:
        self._show_evidence(
            "InfoBridge Synchronizer", [e.detail for e in findings.synchronizer.evidence]
        )
        in_use = click.confirm(
            "The database is licensed for the InfoBridge synchronizer. Is the "
            "on-premise synchronizer in use",
            default=True,
            err=True,
        )
        if not in_use:
            return OperatorAnswers(no_synchronizer=True)
        while True:
            version: str = click.prompt(
                "Its version (for example 3.2.284), or 'unknown'", default="unknown", err=True
            )
            if version.strip().lower() == "unknown":
                return OperatorAnswers(synchronizer_version="unknown")
            try:
                parse_synchronizer_version(version)
                return OperatorAnswers(synchronizer_version=version.strip())
            except VersionParseError as error:
                self.console.error(str(error))

    def answer_invites_since(self, findings: Findings) -> datetime | None:
        self._show_evidence(
            "Since when invites exist", [e.detail for e in findings.invites_since.evidence]
        )
        click.echo(
            "  Appointments with an e-mail address for invitations (emailId) exist, but only\n"
            "  those registered after the upgrade to 8.5 R10 are invitations.",
            err=True,
        )
        while True:
            answer: str = click.prompt(
                "When was this database upgraded to SuperOffice 8.5 R10 (UTC, YYYY-MM-DD)? "
                "Leave empty to go on without emailId",
                default="",
                show_default=False,
                err=True,
            )
            if not answer.strip():
                return None
            try:
                return datetime.fromisoformat(answer.strip()).replace(tzinfo=None)
            except ValueError:
                self.console.error(f"{answer.strip()!r} is not a date like 2020-03-01.")

    def _show_evidence(self, title: str, details: list[str]) -> None:
        click.echo(f"\n{title}: the database does not settle it. Evidence:", err=True)
        for detail in details:
            click.echo(f"  - {detail}", err=True)

    def confirm(self, plan: UpgradePlan) -> bool:
        if self.describe_plan is not None:
            self.console.say(self.describe_plan(plan))
        if self.assume_yes:
            click.echo("Applying the plan (--yes).", err=True)
            return True
        return click.confirm("Apply these changes to the database now?", default=False, err=True)
