"""Where the users are: a fresh Debian quick start, an offline Windows server (the wheelhouse
kit and install.ps1), the single-file executable, and the workflows that build and test them on
hosts this machine is not (a Windows runner, a SQL Server container)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
SYSTEM_PACKAGES = SCRIPTS / "install-system-packages"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A command-line tool of the test environment (shellcheck, check-jsonschema...)."""
    found = BIN / name
    if not found.exists():
        pytest.skip(f"{name} is not installed: pip install -e '.[test]'")
    return str(found)


def build_wheelhouse_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_wheelhouse", SCRIPTS / "build_wheelhouse.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_wheelhouse"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


# --- a fresh Debian ------------------------------------------------------------------------------


def run_system_packages(
    *args: str, env: dict[str, str] | None = None, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(SYSTEM_PACKAGES), *args]
    if user is not None:  # as an ordinary user, the way a developer without sudo runs it
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


@pytest.fixture
def python_without_venv(tmp_path: Path) -> dict[str, str]:
    """Python as a minimal Debian has it: no ensurepip (Debian moves it to python3.X-venv).
    A module on PYTHONPATH that fails to import the way a missing module does stands in for
    the package that is not installed."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "ensurepip.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'ensurepip'\", name='ensurepip')\n"
    )
    return {"PYTHONPATH": str(shadow), "PYTHON": sys.executable}


needs_debian = pytest.mark.skipif(
    shutil.which("dpkg") is None or shutil.which("apt-get") is None, reason="not a Debian system"
)


@needs_debian
def test_demo_needs_pythons_venv_package_and_says_how_to_install_it(
    python_without_venv: dict[str, str],
) -> None:
    result = run_system_packages("demo", "--check", env=python_without_venv)
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Debian packages needed for 'demo': python{version}-venv" in result.stdout
    assert (
        f"apt-get install -y -q --no-install-recommends --no-upgrade python{version}-venv"
        in result.stdout
    )


@needs_debian
def test_everything_installed_here_means_nothing_to_do() -> None:
    result = run_system_packages("--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "are installed" in result.stdout


@needs_debian
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("sudo") is not None,
    reason="needs root (to become an ordinary user) on a machine without sudo",
)
def test_without_root_and_without_sudo_it_names_the_packages_and_the_command(
    python_without_venv: dict[str, str],
) -> None:
    # The ordinary user cannot read root's temporary folders: a shadow folder it can read, and
    # the system's Python.
    shadow = Path(tempfile.mkdtemp(prefix="setup-tool-shadow-"))
    try:
        shadow.chmod(0o755)
        stub = Path(python_without_venv["PYTHONPATH"]) / "ensurepip.py"
        (shadow / "ensurepip.py").write_text(stub.read_text())
        (shadow / "ensurepip.py").chmod(0o644)
        env = {"PYTHONPATH": str(shadow), "PYTHON": shutil.which("python3") or "python3"}
        result = run_system_packages("demo", env=env, user="65534")
    finally:
        shutil.rmtree(shadow)
    assert result.returncode == 1
    assert "sudo: command not found" not in result.stderr
    assert "not root and sudo is not installed" in result.stderr
    assert "Ask an administrator" in result.stderr
    assert "--no-install-recommends --no-upgrade python" in result.stderr


def _package_whose_install_upgrades_another() -> str | None:
    for candidate in ("libaom-dev", "e2fsprogs-l10n", "libapt-pkg-dev", "bash-builtins"):
        if subprocess.run(["dpkg", "-s", candidate], capture_output=True).returncode == 0:
            continue
        simulation = subprocess.run(
            ["apt-get", "-s", "install", "--no-install-recommends", "--no-upgrade", candidate],
            capture_output=True,
            text=True,
        ).stdout
        if any(line.startswith("Inst ") and " [" in line for line in simulation.splitlines()):
            return candidate
    return None


@needs_debian
def test_an_install_that_would_upgrade_installed_packages_is_named_first() -> None:
    candidate = _package_whose_install_upgrades_another()
    if candidate is None:
        pytest.skip("no package here whose installation would upgrade an installed one")
    result = run_system_packages("demo", "--check", env={"EXTRA_PACKAGES": candidate})
    assert result.returncode == 1
    assert "apt would also upgrade these installed packages:" in result.stdout


def test_the_system_packages_script_passes_shellcheck() -> None:
    subprocess.run([tool("shellcheck"), str(SYSTEM_PACKAGES)], check=True)


def test_make_sets_up_pythons_venv_package_before_the_virtual_environment() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    plan = subprocess.run(
        ["make", "-n", "-B", "-f", str(ROOT / "Makefile"), "venv"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.splitlines()
    first_packages = next(
        n for n, line in enumerate(plan) if "install-system-packages demo" in line
    )
    first_venv = next(n for n, line in enumerate(plan) if "-m venv" in line)
    assert first_packages < first_venv


# --- the offline Windows kit ---------------------------------------------------------------------


def _reach_the_index(tmp_path: Path) -> str | None:
    """None when pip can download a Windows wheel from the configured index, else why not."""
    probe = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            "win_amd64",
            "--python-version",
            "3.11",
            "--dest",
            str(tmp_path / "probe"),
            "click",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return None if probe.returncode == 0 else probe.stderr.strip().splitlines()[-1:]


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kit, built as `make wheelhouse` builds it, and unzipped."""
    out = tmp_path_factory.mktemp("kit")
    if (unreachable := _reach_the_index(out)) is not None:
        pytest.skip(f"PyPI (or the configured index) is unreachable: {unreachable}")
    subprocess.run(
        [sys.executable, str(SCRIPTS / "build_wheelhouse.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (archive,) = out.glob("setup-tool-*-windows-x64.zip")
    with zipfile.ZipFile(archive) as opened:
        opened.extractall(out / "unzipped")
    (folder,) = (out / "unzipped").iterdir()
    return folder


@pytest.mark.slow
def test_the_kit_holds_the_installer_and_windows_wheels_for_311_and_312(kit: Path) -> None:
    assert (kit / "install.ps1").read_bytes() == (ROOT / "packaging" / "install.ps1").read_bytes()
    assert b"\r\n" in (kit / "README.txt").read_bytes()  # read in Notepad on the server
    names = [p.name for p in (kit / "wheels").glob("*.whl")]
    assert any(n.startswith("setup_tool-") for n in names)
    for python in ("311", "312"):
        # the compiled dependencies, each for Windows x64 and this CPython
        for project in ("pyodbc", "sqlalchemy", "markupsafe"):
            assert any(
                n.lower().startswith(project) and f"cp{python}-win_amd64" in n for n in names
            ), (project, python, names)
    assert not any("linux" in n or "macosx" in n for n in names)


@pytest.mark.slow
@pytest.mark.parametrize("python", ["3.11", "3.12"])
def test_pip_resolves_the_kit_completely_for_windows_without_an_index(
    kit: Path, python: str, tmp_path: Path
) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    environment["PIP_CONFIG_FILE"] = os.devnull  # no mirror, no find-links of this machine
    report = tmp_path / "report.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-index",
            "--find-links",
            str(kit / "wheels"),
            "--only-binary=:all:",
            "--platform",
            "win_amd64",
            "--python-version",
            python,
            "--implementation",
            "cp",
            "--target",
            str(tmp_path / "target"),
            "--report",
            str(report),
            "setup-tool",
        ],
        check=True,
        capture_output=True,
        env=environment,
        timeout=120,
    )
    installed = {
        item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]
    }
    assert {"setup-tool", "pyodbc", "sqlalchemy", "alembic", "jinja2", "click"} <= installed


@pytest.mark.slow
def test_every_requirement_holds_with_windows_marker_values(kit: Path) -> None:
    """What pip's --platform does not check: markers evaluated as on Windows, not here."""
    builder = build_wheelhouse_module()
    wheels = [builder.read_wheel(p) for p in (kit / "wheels").glob("*.whl")]
    version = next(w.version for w in wheels if w.name == "setup-tool")
    for python in ("3.11", "3.12"):
        assert (
            builder.missing_requirements(wheels, f"setup-tool=={version}", builder.Target(python))
            == []
        )
    # the check does check: without the 3.12 pyodbc wheel, 3.12 lacks pyodbc and 3.11 does not
    without = [w for w in wheels if not (w.name == "pyodbc" and "cp312" in w.path.name)]
    lacking = builder.missing_requirements(
        without, f"setup-tool=={version}", builder.Target("3.12")
    )
    assert [r.name for r in lacking] == ["pyodbc"]
    assert (
        builder.missing_requirements(without, f"setup-tool=={version}", builder.Target("3.11"))
        == []
    )


def test_windows_only_requirements_count_for_windows_and_not_for_linux() -> None:
    from packaging.requirements import Requirement

    builder = build_wheelhouse_module()
    windows_only = Requirement('colorama; platform_system == "Windows"')
    assert builder._applies(windows_only, (), builder.Target("3.12"))
    assert windows_only.marker is not None and not windows_only.marker.evaluate(
        {"platform_system": "Linux"}
    )
    assert not builder._applies(
        Requirement('tomli; python_version < "3.11"'), (), builder.Target("3.11")
    )


def test_install_ps1_installs_offline_with_the_py_launcher_and_says_where_the_exe_is() -> None:
    # No PowerShell here: the windows workflow runs it for real; this keeps its contract.
    script = (ROOT / "packaging" / "install.ps1").read_text()
    assert "--no-index" in script and "--find-links $wheels" in script
    assert '"-$version-64"' in script and "py.exe" in script  # 64-bit CPython via the py launcher
    assert "setup-tool.exe is here: $exe" in script
    assert "PIP_CONFIG_FILE = 'NUL'" in script  # no index from a pip.ini on the server
    assert "ODBC Driver" in script
    assert script.isascii()  # Windows PowerShell 5.1 reads a BOM-less script as ANSI


# --- the single-file executable and the workflows ----------------------------------------------


@pytest.mark.slow
def test_the_pyinstaller_spec_builds_an_executable_that_upgrades_a_demo(tmp_path: Path) -> None:
    """PyInstaller builds for the system it runs on: here a Linux executable from the same spec
    as the Windows .exe, which proves the spec's data files and hidden imports."""
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed: pip install -e '.[packaging]'")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--clean",
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            str(tmp_path / "dist"),
            "--workpath",
            str(tmp_path / "build"),
            str(ROOT / "packaging" / "setup-tool.spec"),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    exe = tmp_path / "dist" / "setup-tool"
    run = tmp_path / "run"
    run.mkdir()
    environment = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}

    def frozen(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(exe), *args], cwd=run, env=environment, capture_output=True, text=True, timeout=120
        )

    assert frozen("demo", "crm.db", "--appointments", "1000").returncode == 0
    upgrade = frozen("upgrade", "--database-url", "sqlite:///crm.db", "--unattended")
    assert upgrade.returncode == 4, upgrade.stderr  # the demo leaves an override off
    assert list((tmp_path / "state" / "setup-tool").glob("setup-tool-*.log"))  # migrations ran


def test_workflows_are_valid_github_actions_workflows() -> None:
    assert {p.name for p in WORKFLOWS} >= {"windows.yml", "sqlserver-live.yml"}
    subprocess.run(
        [
            tool("check-jsonschema"),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, WORKFLOWS),
        ],
        check=True,
        capture_output=True,
    )


def test_the_workflows_bash_steps_pass_shellcheck(tmp_path: Path) -> None:
    yaml = pytest.importorskip("ruamel.yaml")
    checked = 0
    for workflow in WORKFLOWS:
        document = yaml.YAML(typ="safe").load(workflow.read_text())
        for job_name, job in document["jobs"].items():
            for number, step in enumerate(job["steps"]):
                if "run" not in step or step.get("shell", "bash") != "bash":
                    continue
                script = tmp_path / f"{workflow.stem}-{job_name}-{number}.sh"
                # ${{ ... }} is the workflow's, expanded before bash sees the script
                run = re.sub(r"\$\{\{[^}]*\}\}", "expanded-by-actions", step["run"])
                script.write_text("#!/usr/bin/env bash\nset -e\n" + run)
                result = subprocess.run(
                    [tool("shellcheck"), "--severity=warning", str(script)],
                    capture_output=True,
                    text=True,
                )
                assert result.returncode == 0, f"{workflow.name} {job_name}: {result.stdout}"
                checked += 1
    assert checked >= 3


def test_the_windows_workflow_builds_the_exe_from_the_spec_and_runs_the_smoke_test() -> None:
    text = (ROOT / ".github" / "workflows" / "windows.yml").read_text()
    assert "runs-on: windows-latest" in text
    assert "packaging/setup-tool.spec" in text and "packaging/smoke-test.ps1" in text
    assert "scripts/build_wheelhouse.py" in text and "install.ps1" in text
    smoke = (ROOT / "packaging" / "smoke-test.ps1").read_text()
    assert "System32" in smoke and "ProgramData" in smoke and "-eq 7" in smoke
