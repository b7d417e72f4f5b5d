"""Who answers the upgrade's questions: the wizard asks a person; unattended never asks."""

from __future__ import annotations

from datetime import datetime

import click

from setup_tool.console import Console
from setup_tool.detect import OperatorAnswers
from setup_tool.errors import BlockedError, MissingAnswerError
from setup_tool.findings import Findings
from setup_tool.logs import LOGGER
from setup_tool.steps.gate import SUPPLY_VERSION
from setup_tool.upgrade import UpgradePlan
from setup_tool.versions import (
    VersionParseError,
    parse_superoffice_version,
    parse_synchronizer_version,
)
from setup_tool.wizard_screens import (
    findings_screen,
    plan_screen,
    resumed_notice,
    terminal_width,
    wrap_for_terminal,
)


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
            "the database holds a licence for the InfoBridge synchronizer "
            "(superoffice.exchange-sync or superoffice.nebula) but nothing shows whether it is "
            "installed; say whether it is in use",
            "--synchronizer-version VERSION or --no-synchronizer",
            "SETUP_TOOL_SYNCHRONIZER_VERSION or SETUP_TOOL_NO_SYNCHRONIZER",
            "synchronizer-version / no-synchronizer",
        )

    def answer_invites_since(self, findings: Findings) -> datetime | None:
        return None  # goes on without footprint (c); the findings and warnings say so

    def confirm(self, plan: UpgradePlan) -> bool:
        LOGGER.info("decision: apply (unattended)")
        return True


class WizardInteraction:
    """Asks on the terminal. Everything a question refers to goes where the question goes
    (stderr), so it stays on screen when stdout is redirected to a file: first what was found,
    with its evidence, then the plan, one line per step, right above the one confirmation."""

    def __init__(self, console: Console, assume_yes: bool = False) -> None:
        self.console = console
        self.assume_yes = assume_yes

    def answer_superoffice_version(self, findings: Findings) -> str | None:
        self._show_evidence(
            "SuperOffice version", [e.detail for e in findings.superoffice.evidence]
        )
        while True:
            answer: str = click.prompt(
                "Which SuperOffice version is installed (for example 8.5 R10)? Leave empty to stop",
                default="",
                show_default=False,
                err=True,
            )
            if not answer.strip():
                LOGGER.info("answer: SuperOffice version left empty")
                return None
            try:
                parse_superoffice_version(answer)  # a typo is asked again, not a stop
            except VersionParseError as error:
                self.console.error(str(error))
                continue
            LOGGER.info("answer: SuperOffice version %r", answer.strip())
            return answer.strip()

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
            LOGGER.info("answer: no on-premise synchronizer in use")
            return OperatorAnswers(no_synchronizer=True)
        while True:
            version: str = click.prompt(
                "Its version (for example 3.2.284), or 'unknown'", default="unknown", err=True
            )
            if version.strip().lower() == "unknown":
                LOGGER.info("answer: synchronizer in use, version unknown")
                return OperatorAnswers(synchronizer_version="unknown")
            try:
                parse_synchronizer_version(version)
            except VersionParseError as error:
                self.console.error(str(error))
                continue
            LOGGER.info("answer: synchronizer version %r", version.strip())
            return OperatorAnswers(synchronizer_version=version.strip())

    def answer_invites_since(self, findings: Findings) -> datetime | None:
        self._show_evidence(
            "Since when invites exist", [e.detail for e in findings.invites_since.evidence]
        )
        self.console.tell(
            "  Appointments with an e-mail address for invitations (emailId) exist, but only\n"
            "  those registered after the upgrade to 8.5 R10 are invitations."
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
                LOGGER.info("answer: invites-since left empty (footprint (c) not used)")
                return None
            try:
                since = datetime.fromisoformat(answer.strip()).replace(tzinfo=None)
            except ValueError:
                self.console.error(f"{answer.strip()!r} is not a date like 2020-03-01.")
                continue
            LOGGER.info("answer: invites-since %s", since.isoformat(sep=" "))
            return since

    def _show_evidence(self, title: str, details: list[str]) -> None:
        width = terminal_width(self.console.err)
        self.console.tell()
        self.console.tell(
            self.console.style(f"{title}: the database does not settle it. Evidence:", bold=True)
        )
        for detail in details:
            for line in wrap_for_terminal(detail, width, "  - "):
                self.console.tell(line)

    def confirm(self, plan: UpgradePlan) -> bool:
        width, style = terminal_width(self.console.err), self.console.style
        screens = [
            resumed_notice(plan.findings, width, style),
            findings_screen(plan.findings, width, style),
            [""],
            plan_screen(plan, width, style),
        ]
        self.console.tell()
        for screen in screens:
            for line in screen:
                self.console.tell(line)
        if self.assume_yes:
            self.console.tell("Applying the plan (--yes).")
            LOGGER.info("decision: apply (--yes)")
            return True
        answer = click.confirm("Apply these changes to the database now?", default=False, err=True)
        LOGGER.info("decision: %s", "apply" if answer else "do not apply")
        return answer
