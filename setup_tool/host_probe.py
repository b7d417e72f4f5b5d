"""Traces of the InfoBridge Synchronizer on the machine the tool runs on (Windows only).

The synchronizer usually runs on the SuperOffice application server, which is where upgrades are
run; finding nothing here proves nothing about other servers, and the findings say so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PureWindowsPath
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from setup_tool.findings import Strength

SERVICE_EXE = "infobridge.synchronizer.service.exe"
INSTALL_FOLDER = PureWindowsPath(r"C:\Program Files (x86)\InfoBridge\Exchange Online Synchronizer")
UNINSTALL_KEYS = (
    r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall",
    r"SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall",
)
SERVICES_KEY = r"SYSTEM\CurrentControlSet\Services"


@dataclass(frozen=True)
class HostTrace:
    kind: str  # "registry", "service" or "folder"
    detail: str
    version: str | None = None


# How strong each kind of trace is (issue 16), and why. The service executable and the install
# folder are InfoBridge's own (InfoBridge knowledge base; SUPEROFFICE.md "Known traces"). The
# uninstall entry is Windows' standard place for installed programs, but InfoBridge does not
# publish the DisplayName/DisplayVersion it writes: matching them is a guess.
TRACE_STRENGTHS: dict[str, tuple[Strength, str]] = {
    "service": (
        "documented",
        "InfoBridge.Synchronizer.Service.exe, InfoBridge knowledge base (SUPEROFFICE.md)",
    ),
    "folder": ("documented", "the install folder, InfoBridge knowledge base (SUPEROFFICE.md)"),
    "registry": (
        "inferred",
        "the uninstall entry's DisplayName/DisplayVersion are not published; matched on "
        "'InfoBridge' and 'synchron'",
    ),
}


def trace_strength(kind: str) -> tuple[Strength, str]:
    """(strength, why) of a trace kind; an unknown kind is inferred."""
    return TRACE_STRENGTHS.get(kind, ("inferred", f"a {kind} trace nothing publishes"))


class HostProbe(Protocol):
    def synchronizer_traces(self) -> list[HostTrace]: ...

    def describe(self) -> str: ...


class RegistryView(Protocol):
    """The few read-only registry operations the probe needs (HKEY_LOCAL_MACHINE)."""

    def subkeys(self, path: str) -> list[str]: ...

    def values(self, path: str) -> dict[str, str]: ...


class NoHostProbe:
    """Used off Windows, or when the operator turns host inspection off."""

    def __init__(self, reason: str = "not running on Windows") -> None:
        self.reason = reason

    def synchronizer_traces(self) -> list[HostTrace]:
        return []

    def describe(self) -> str:
        return f"host not inspected ({self.reason})"


class WindowsHostProbe:
    def __init__(self, registry: RegistryView, folder_exists: Callable[[str], bool]) -> None:
        self.registry = registry
        self.folder_exists = folder_exists

    def describe(self) -> str:
        return "registry, services and install folder of this machine"

    def synchronizer_traces(self) -> list[HostTrace]:
        return [*self._installed_programs(), *self._services(), *self._install_folder()]

    def _installed_programs(self) -> list[HostTrace]:
        traces = []
        for root in UNINSTALL_KEYS:
            for name in self.registry.subkeys(root):
                values = self.registry.values(rf"{root}\{name}")
                display = values.get("DisplayName", "")
                if "infobridge" in display.lower() and "synchron" in display.lower():
                    version = values.get("DisplayVersion") or None
                    traces.append(
                        HostTrace(
                            "registry",
                            rf"HKLM\{root}\{name}: {display} {version or ''}".rstrip(),
                            version,
                        )
                    )
        return traces

    def _services(self) -> list[HostTrace]:
        traces = []
        for name in self.registry.subkeys(SERVICES_KEY):
            values = self.registry.values(rf"{SERVICES_KEY}\{name}")
            if SERVICE_EXE in values.get("ImagePath", "").lower():
                traces.append(
                    HostTrace(
                        "service",
                        rf"service {name} ({values.get('DisplayName', name)}) runs "
                        f"{values['ImagePath']}",
                    )
                )
        return traces

    def _install_folder(self) -> list[HostTrace]:
        if self.folder_exists(str(INSTALL_FOLDER)):
            return [HostTrace("folder", f"install folder {INSTALL_FOLDER} exists")]
        return []


class _WinregView:  # pragma: no cover - exercised on Windows only
    def __init__(self) -> None:
        import winreg

        self._winreg = winreg

    def subkeys(self, path: str) -> list[str]:
        winreg = self._winreg
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path) as key:
                count = winreg.QueryInfoKey(key)[0]
                return [winreg.EnumKey(key, i) for i in range(count)]
        except OSError:
            return []

    def values(self, path: str) -> dict[str, str]:
        winreg = self._winreg
        try:
            with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, path) as key:
                count = winreg.QueryInfoKey(key)[1]
                pairs = (winreg.EnumValue(key, i) for i in range(count))
                return {name: str(value) for name, value, _ in pairs}
        except OSError:
            return {}


def default_host_probe() -> HostProbe:
    if sys.platform != "win32":
        return NoHostProbe()
    import os.path  # pragma: no cover

    return WindowsHostProbe(_WinregView(), os.path.isdir)  # pragma: no cover
