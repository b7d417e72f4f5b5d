"""Where the packaged data lives: inside the wheel, or at the top of a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _locate(name: str) -> Path:
    # An installed wheel carries the folder inside the package (hatch force-include);
    # a source checkout (or an editable install) has it at the repository top.
    for candidate in (_PACKAGE / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"setup-tool is installed without its {name}/ folder")


def templates_dir() -> Path:
    return _locate("templates")


def migrations_dir() -> Path:
    return _locate("migrations")
