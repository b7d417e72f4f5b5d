"""Build the offline installation kit for Windows: one zip with every wheel setup-tool needs on
64-bit Windows for CPython 3.11 and 3.12, and install.ps1 to install from it without internet.

    python scripts/build_wheelhouse.py [--out DIR] [--python 3.11 --python 3.12]

The zip, dist/setup-tool-<version>-windows-x64.zip, holds:

    setup-tool-<version>-windows-x64/install.ps1   creates a virtual environment with the py
                                                   launcher, installs with pip --no-index
    setup-tool-<version>-windows-x64/wheels/       setup-tool's wheel and all its dependencies
    setup-tool-<version>-windows-x64/README.txt    the steps, and the ODBC driver it needs

`pip download --platform win_amd64` picks Windows wheels, but it evaluates environment markers
(`platform_system == "Windows"`, `sys_platform == "win32"`) for the machine it runs on, so a
dependency only Windows needs would be missing. After pip, this script therefore walks the
requirements again with Windows' marker values and downloads whatever is still missing, until
every requirement of every wheel is met for each Python version. Then pip itself proves it:
`pip install --dry-run --no-index` for win_amd64 from the wheels alone.
"""

from __future__ import annotations

import argparse
import email.parser
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = "win_amd64"
PYTHONS = ("3.11", "3.12")


@dataclass(frozen=True)
class Target:
    """CPython x.y on 64-bit Windows: its wheel tags and its environment-marker values."""

    python: str

    @property
    def nodot(self) -> str:
        return self.python.replace(".", "")

    def tags(self) -> set[Tag]:
        version = tuple(int(part) for part in self.python.split("."))
        return set(
            cpython_tags(version, abis=[f"cp{self.nodot}", "abi3", "none"], platforms=[PLATFORM])
        ) | set(compatible_tags(version, f"cp{self.nodot}", platforms=[PLATFORM]))

    def marker_environment(self) -> dict[str, str]:
        full = f"{self.python}.0"
        return {
            "implementation_name": "cpython",
            "implementation_version": full,
            "os_name": "nt",
            "platform_machine": "AMD64",
            "platform_python_implementation": "CPython",
            "platform_release": "10",
            "platform_system": "Windows",
            "platform_version": "10.0.17763",  # Windows Server 2019
            "python_full_version": full,
            "python_version": self.python,
            "sys_platform": "win32",
            "extra": "",
        }


@dataclass(frozen=True)
class Wheel:
    path: Path
    name: str
    version: Version
    tags: frozenset[Tag]
    requires: tuple[Requirement, ...]


def read_wheel(path: Path) -> Wheel:
    name, version, _build, tags = parse_wheel_filename(path.name)
    with zipfile.ZipFile(path) as archive:
        metadata_name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = email.parser.Parser().parsestr(archive.read(metadata_name).decode("utf-8"))
    requires = tuple(Requirement(text) for text in metadata.get_all("Requires-Dist") or [])
    return Wheel(path, str(name), version, frozenset(tags), requires)


def missing_requirements(wheels: Sequence[Wheel], root: str, target: Target) -> list[Requirement]:
    """Requirements reachable from `root` on `target` that no wheel here meets."""
    tags = target.tags()
    usable = [w for w in wheels if w.tags & tags]
    by_name: dict[str, list[Wheel]] = {}
    for wheel in usable:
        by_name.setdefault(wheel.name, []).append(wheel)
    missing: list[Requirement] = []
    seen: set[str] = set()
    todo = [Requirement(root)]
    while todo:
        requirement = todo.pop()
        key = f"{canonicalize_name(requirement.name)}{sorted(requirement.extras)}"
        if key in seen:
            continue
        seen.add(key)
        candidates = [
            w
            for w in by_name.get(canonicalize_name(requirement.name), [])
            if requirement.specifier.contains(w.version, prereleases=True)
        ]
        if not candidates:
            missing.append(requirement)
            continue
        chosen = max(candidates, key=lambda w: w.version)
        for needed in chosen.requires:
            if _applies(needed, requirement.extras, target):
                todo.append(Requirement(str(needed).split(";")[0]))
    return missing


def _applies(requirement: Requirement, extras: Iterable[str], target: Target) -> bool:
    if requirement.marker is None:
        return True
    environment = target.marker_environment()
    for extra in ("", *extras):
        if requirement.marker.evaluate({**environment, "extra": extra}):
            return True
    return False


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def download_for(target: Target, wheels_dir: Path, *requirements: str, deps: bool = True) -> None:
    pip(
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--platform",
        PLATFORM,
        "--python-version",
        target.python,
        "--implementation",
        "cp",
        "--dest",
        str(wheels_dir),
        *([] if deps else ["--no-deps"]),
        *requirements,
    )


def build_own_wheel(wheels_dir: Path) -> Wheel:
    # --no-build-isolation: hatchling from the development environment (the test extra), so
    # the build itself needs no download.
    pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(wheels_dir), str(ROOT))
    (built,) = wheels_dir.glob("setup_tool-*.whl")
    return read_wheel(built)


def complete_for(target: Target, wheels_dir: Path, own: Wheel) -> None:
    """Download until every requirement of setup-tool holds on `target` (at most a few rounds:
    each round adds at least one missing distribution)."""
    download_for(target, wheels_dir, str(own.path))
    for _ in range(10):
        wheels = [read_wheel(path) for path in sorted(wheels_dir.glob("*.whl"))]
        missing = missing_requirements(wheels, f"setup-tool=={own.version}", target)
        if not missing:
            return
        download_for(target, wheels_dir, *(str(r) for r in missing), deps=False)
    raise SystemExit(f"CPython {target.python} on Windows: still missing {missing}")


def prove_offline_install(target: Target, wheels_dir: Path, version: Version) -> None:
    """pip's own resolver, with no index and no configuration, for 64-bit Windows."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    environment["PIP_CONFIG_FILE"] = os.devnull  # no mirror, no find-links from this machine
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--dry-run",
            "--ignore-installed",
            "--no-index",
            "--find-links",
            str(wheels_dir),
            "--only-binary=:all:",
            "--platform",
            PLATFORM,
            "--python-version",
            target.python,
            "--implementation",
            "cp",
            "--target",
            tempfile.gettempdir(),  # required with --platform; nothing is written by --dry-run
            f"setup-tool=={version}",
        ],
        check=True,
        env=environment,
    )


def build(out: Path, pythons: Sequence[str]) -> Path:
    """Build the kit into `out` and return the zip's path."""
    with tempfile.TemporaryDirectory() as scratch:
        wheels_dir = Path(scratch) / "wheels"
        wheels_dir.mkdir()
        own = build_own_wheel(wheels_dir)
        kit_name = f"setup-tool-{own.version}-windows-x64"
        for python in pythons:
            complete_for(Target(python), wheels_dir, own)
        for python in pythons:
            prove_offline_install(Target(python), wheels_dir, own.version)
        out.mkdir(parents=True, exist_ok=True)
        archive_path = out / f"{kit_name}.zip"
        with zipfile.ZipFile(archive_path, "w", zipfile.ZIP_DEFLATED) as archive:
            for wheel in sorted(wheels_dir.glob("*.whl")):
                archive.write(wheel, f"{kit_name}/wheels/{wheel.name}")
            archive.write(ROOT / "packaging" / "install.ps1", f"{kit_name}/install.ps1")
            archive.writestr(f"{kit_name}/README.txt", _readme(own.version, pythons))
    return archive_path


def _readme(version: Version, pythons: Sequence[str]) -> str:
    # CRLF: the file is read in Notepad on the server.
    lines = [
        f"setup-tool {version}: offline installation kit for 64-bit Windows",
        "",
        f"Needs: CPython {' or '.join(pythons)} (64-bit, from python.org, with the py launcher)",
        "and Microsoft ODBC Driver 18 for SQL Server (msodbcsql.msi, x64).",
        "",
        "1. Copy this folder to the server (unzipped).",
        "2. In PowerShell, as administrator, in this folder:",
        "       Unblock-File .\\install.ps1",
        "       powershell -ExecutionPolicy Bypass -File .\\install.ps1",
        "3. install.ps1 prints where setup-tool.exe is.",
        "",
        "More: README.md of setup-tool, 'Installing on a Windows server without internet'.",
        "",
    ]
    return "\r\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="folder for the zip")
    parser.add_argument(
        "--python",
        action="append",
        dest="pythons",
        help=f"CPython version to cover (repeatable; default: {', '.join(PYTHONS)})",
    )
    options = parser.parse_args(argv)
    archive = build(options.out, options.pythons or list(PYTHONS))
    print(f"Windows offline kit: {archive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
