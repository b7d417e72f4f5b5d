"""SuperOffice and InfoBridge Synchronizer versions: parsing, ordering and the invite gates.

SuperOffice strings ("8.5 R10", "SuperOffice G8 8.5 R17", "8.5.7346.1605") are read with an
explicit pattern: `packaging.version.Version` rejects "8.5 R10" and silently turns "8.5.R10"
into 8.5.post10, so it must never see them.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from setup_tool.errors import UsageError

SUPEROFFICE_FORMS: tuple[str, ...] = (
    "8.5 R10",
    "SuperOffice G8 8.5 R17",
    "SuperOffice CRM 8.5 R10",
    "8.5.7346.1605",
    "10.2.6.1269",
    "11.1.447",
    "10.3",
)
SYNCHRONIZER_FORMS: tuple[str, ...] = ("3.2.284", "v3.2.314", "InfoBridge Synchronizer 3.2.314")

# The first release that supports SuperOffice invites is 8.5 R10 (InfoBridge's statement).
_INVITES_MINOR_VERSION = (8, 5)
_INVITES_RELEASE = 10
_MAX_QUOTED = 80
# The releases each version shipped as, where they are known (SUPEROFFICE.md: 8.5 R01...R17);
# a release outside them is a typo, not a newer SuperOffice.
LAST_RELEASE: dict[tuple[int, int], int] = {(8, 5): 17}

# [0-9] rather than \d: \d also matches other scripts' digits, which no SuperOffice writes.
# The product words are optional and in a fixed order; "G8" is a product generation, not a version.
_SUPEROFFICE_PATTERN = re.compile(
    r"""
    (?:superoffice\s+)? (?:g[0-9]{1,2}\s+)? (?:crm\s+)?
    (?P<major>[0-9]{1,3}) \. (?P<minor>[0-9]{1,3})
    (?:
        \s* r (?P<release>[0-9]{1,2})
      | (?P<build>(?:\.[0-9]{1,9}){1,2})
    )?
    """,
    re.IGNORECASE | re.VERBOSE,
)
_CANONICAL_BUILD_KEY = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,9}){2,3}")
_RELEASE_TEXT = re.compile(r"r([0-9]{1,2})", re.IGNORECASE)
# A synchronizer version stands alone: not glued to a word or to further dotted numbers, and
# not the front of a wildcard or pre-release ("3.2.x", "3.2.284-beta" are not 3.2 / 3.2.284).
_SYNCHRONIZER_PATTERN = re.compile(
    r"(?<![\w.])v?(?P<version>[0-9]{1,5}(?:\.[0-9]{1,9}){1,3})(?!\w|[.\-+]\w)",
    re.IGNORECASE,
)


class VersionParseError(UsageError):
    """A version string that is not in any accepted form; the message quotes it."""

    def __init__(
        self,
        text: str,
        what: str = "SuperOffice version",
        accepted: Sequence[str] = SUPEROFFICE_FORMS,
        reason: str | None = None,
        hint: str | None = None,
    ) -> None:
        because = f" ({reason})" if reason else ""
        super().__init__(
            f"Cannot read the {what} {_quote(text)}{because}.",
            hint or f"Accepted forms: {', '.join(accepted)}.",
        )
        self.text = text


def _quote(text: str) -> str:
    # repr shows control characters and quotes the text; long pastes are cut to stay one paragraph.
    shown = text if len(text) <= _MAX_QUOTED else text[: _MAX_QUOTED - 3] + "..."
    return repr(shown)


@dataclass(frozen=True)
class SuperOfficeVersion:
    """A SuperOffice version as found, with the release when it is known."""

    major: int
    minor: int
    release: int | None
    build: tuple[int, ...] | None
    text: str

    def label(self) -> str:
        """Human form: "8.5 R10", "10.2.6.1269", "8.5 build 7346.1605 (release unknown)"."""
        base = f"{self.major}.{self.minor}"
        build = ".".join(str(part) for part in self.build) if self.build else None
        if self.release is not None:
            release = f"{base} R{self.release:02d}"
            return f"{release} (build {build})" if build else release
        if self.supports_invites() is None:
            # Only an 8.5 gets here: its release decides the gate, so say that it is missing.
            found = f"{base} build {build}" if build else base
            return f"{found} (release unknown)"
        return f"{base}.{build}" if build else base

    def supports_invites(self) -> bool | None:
        """True from 8.5 R10 on, False before; None for an 8.5 whose release is unknown."""
        minor_version = (self.major, self.minor)
        if minor_version != _INVITES_MINOR_VERSION:
            return minor_version > _INVITES_MINOR_VERSION
        if self.release is None:
            return None
        return self.release >= _INVITES_RELEASE

    def sort_key(self) -> tuple[int, int, int, tuple[int, ...]]:
        """Order by (major, minor), then known release, then build.

        Within one major.minor, a version whose release is known sorts above one whose release is
        unknown: no public table says which R a bare 8.5 build belongs to, so the two cannot be
        ordered truthfully, and the one that can be judged for invites is preferred.
        """
        # An unknown release counts as 0, below every real release (they start at R01).
        return (self.major, self.minor, self.release or 0, self.build or ())


def parse_superoffice_version(
    text: str, known_builds: Mapping[str, int] | None = None
) -> SuperOfficeVersion:
    """Read a SuperOffice version string; raises VersionParseError if it is in no accepted form.

    A build-only string is looked up in `known_builds` (keys in canonical dotted form, as
    `load_known_builds` returns them) to learn its release; absent builds keep release None.
    """
    match = _SUPEROFFICE_PATTERN.fullmatch(text.strip())
    if match is None:
        raise VersionParseError(text)
    major, minor = int(match["major"]), int(match["minor"])
    build = _build_parts(match["build"])
    release = int(match["release"]) if match["release"] else None
    if release == 0:
        raise VersionParseError(text, reason="releases start at R01")
    last = LAST_RELEASE.get((major, minor))
    if release is not None and last is not None and release > last:
        raise VersionParseError(
            text,
            reason=f"SuperOffice {major}.{minor} shipped as releases R01 to R{last:02d}",
            hint=f'Give the release that is installed (e.g. "{major}.{minor} R10"); for a '
            "build number, list it with its release in a --known-builds file.",
        )
    if build is not None and known_builds:
        release = known_builds.get(_build_key(major, minor, build))
    return SuperOfficeVersion(major, minor, release, build, text)


# SuperOffice's release notes list "8.5 R11 Incoming and outgoing invitations for internal and
# external people" (SOD release-notes/8.5/index.md); InfoBridge says invites arrived with 8.5 R10,
# which stays the gate (the mission; SUPEROFFICE.md, Versions).
DOCUMENTED_INVITES_RELEASE = 11


def invites_documented_note(version: SuperOfficeVersion | None) -> str | None:
    """For 8.5 R10 exactly: why the gate passes and yet there may be nothing to mark."""
    if version is None or (version.major, version.minor) != _INVITES_MINOR_VERSION:
        return None
    if version.release != _INVITES_RELEASE:
        return None
    return (
        "SuperOffice 8.5 R10 passes the gate (InfoBridge says invites arrived with 8.5 R10), but "
        "SuperOffice's release notes put incoming and outgoing invitations in 8.5 R"
        f"{DOCUMENTED_INVITES_RELEASE} (SOD release-notes/8.5/index.md): on an 8.5 R10 "
        "database SuperOffice's invite system may never have run, so there may be nothing to "
        "mark."
    )


def try_parse_superoffice_version(
    text: str, known_builds: Mapping[str, int] | None = None
) -> SuperOfficeVersion | None:
    """Like parse_superoffice_version, but None instead of an error (for scanning found text)."""
    try:
        return parse_superoffice_version(text, known_builds)
    except VersionParseError:
        return None


def newest_superoffice_version(
    versions: Iterable[SuperOfficeVersion],
) -> SuperOfficeVersion | None:
    """The newest by `SuperOfficeVersion.sort_key` (the first of equals); None for no versions.

    Among 8.5 versions where one has a known release and another only an unknown build, the one
    with the known release wins: that is a preference for a decidable answer, not a claim that it
    is newer.
    """
    return max(versions, key=SuperOfficeVersion.sort_key, default=None)


def _build_parts(dotted: str | None) -> tuple[int, ...] | None:
    # The pattern captures the build with its leading dot: ".7346.1605".
    if not dotted:
        return None
    return tuple(int(part) for part in dotted[1:].split("."))


def _build_key(major: int, minor: int, build: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in (major, minor, *build))


# --- the known-builds table -------------------------------------------------------------------


def load_known_builds(extra_file: Path | None = None) -> dict[str, int]:
    """The shipped build-to-release table merged with the user's TOML file (the user's entries win).

    Keys are canonical dotted versions ("8.5.7346.1605"), values release numbers (10 for R10).
    Raises UsageError naming the file when the user's file is missing or malformed.
    """
    shipped = resources.files("setup_tool").joinpath("data", "known_builds.toml")
    builds = _read_known_builds(shipped.read_text(encoding="utf-8"), str(shipped))
    if extra_file is not None:
        builds.update(_read_known_builds(_read_user_file(extra_file), str(extra_file)))
    return builds


def _read_user_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"The known-builds file {path} does not exist.",
            "Check the path, or leave the option out to use only the shipped table.",
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"Cannot read the known-builds file {path}: {error}.") from None


def _read_known_builds(source: str, origin: str) -> dict[str, int]:
    try:
        document = tomllib.loads(source)
    except tomllib.TOMLDecodeError as error:
        # The decoder's message already says "(at line N, column M)".
        raise _known_builds_error(origin, None, f"it is not valid TOML: {error}") from None
    unexpected = sorted(set(document) - {"builds"})
    if unexpected:
        where = _line_of(source, unexpected[0])
        raise _known_builds_error(origin, where, f"unexpected top-level key {unexpected[0]!r}")
    table = document.get("builds", {})
    if not isinstance(table, dict):
        raise _known_builds_error(origin, _line_of(source, "builds"), "'builds' must be a table")
    builds: dict[str, int] = {}
    for key, value in table.items():
        canonical, release = _known_build_entry(source, origin, key, value)
        builds[canonical] = release
    return builds


def _known_build_entry(source: str, origin: str, key: str, value: Any) -> tuple[str, int]:
    where = _line_of(source, key)
    if isinstance(value, dict):
        # `8.5.7346.1605 = 10` without quotes is a dotted key: TOML nests it as tables.
        raise _known_builds_error(origin, where, f"key {key!r} is not a full version; quote it")
    canonical = _canonical_build_key(key)
    if canonical is None:
        problem = f'key {key!r} is not an 8.x build version like "8.5.7346.1605"'
        raise _known_builds_error(origin, where, problem)
    release = _release_value(value)
    if release is None:
        problem = f'the release of {key!r} must be a number like 10 or a string like "R10"'
        raise _known_builds_error(origin, where, f"{problem}, not {value!r}")
    major, minor = (int(part) for part in canonical.split(".")[:2])
    last = LAST_RELEASE.get((major, minor))
    if last is not None and release > last:
        problem = f"{major}.{minor} shipped as releases R01 to R{last:02d}, not R{release}"
        raise _known_builds_error(origin, where, f"the release of {key!r}: {problem}")
    return canonical, release


def _canonical_build_key(key: str) -> str | None:
    # Releases ("R" numbers) exist for 8.x only; leading zeros are dropped to match parsed builds.
    if _CANONICAL_BUILD_KEY.fullmatch(key) is None:
        return None
    parts = [int(part) for part in key.split(".")]
    return ".".join(str(part) for part in parts) if parts[0] == 8 else None


def _release_value(value: Any) -> int | None:
    # bool is an int in Python; `true` is never a release.
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and (match := _RELEASE_TEXT.fullmatch(value.strip())):
        number = int(match[1])
    else:
        return None
    return number if 1 <= number <= 99 else None


def _line_of(source: str, key: str) -> int | None:
    """The first line that defines `key` (bare, quoted or as a table header), if any."""
    name = re.escape(key)
    definition = re.compile(rf"""\s*\[?\s*(?:"{name}"|'{name}'|{name})\s*[=.\]]""")
    for number, line in enumerate(source.splitlines(), start=1):
        if definition.match(line):
            return number
    return None


def _known_builds_error(origin: str, line: int | None, problem: str) -> UsageError:
    where = f"{origin}, line {line}" if line else origin
    return UsageError(
        f"The known-builds file {where} is malformed: {problem}.",
        'Each entry goes in the [builds] table as "8.5.7346.1605" = 10 (or = "R10").',
    )


# --- the InfoBridge Synchronizer ---------------------------------------------------------------


@dataclass(frozen=True, order=True)
class SynchronizerVersion:
    """An InfoBridge Synchronizer version; compares numerically part by part (3.10 > 3.9)."""

    parts: tuple[int, ...]
    text: str = field(compare=False)

    def label(self) -> str:
        """The dotted version, e.g. "3.2.284"."""
        return ".".join(str(part) for part in self.parts)


def parse_synchronizer_version(text: str) -> SynchronizerVersion:
    """Read "3.2.284", "v3.2.314" or "InfoBridge Synchronizer 3.2.314".

    Surrounding words are allowed, but exactly one dotted version must stand in the text;
    raises VersionParseError otherwise.
    """
    found = {match["version"] for match in _SYNCHRONIZER_PATTERN.finditer(text)}
    if len(found) != 1:
        reason = "it names more than one version" if found else None
        raise VersionParseError(
            text, what="InfoBridge Synchronizer version", accepted=SYNCHRONIZER_FORMS, reason=reason
        )
    (dotted,) = found
    return SynchronizerVersion(tuple(int(part) for part in dotted.split(".")), text)


MINIMUM_SYNCHRONIZER = parse_synchronizer_version("3.2.284")


def synchronizer_supports_invites(version: SynchronizerVersion) -> bool:
    """True when the synchronizer is 3.2.284 or newer (needed for SuperOffice invites)."""
    return version >= MINIMUM_SYNCHRONIZER
