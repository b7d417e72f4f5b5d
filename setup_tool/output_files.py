"""Where the tool may write: the one rule for every report, answer file, T-SQL script and log.

A file the tool writes is a new file or an existing regular file that is neither the database
nor one of its companion files (SQLite: the database file, ``-journal``, ``-wal``, ``-shm`` and
the run lock ``.setup-tool.lock``), judged after resolving symbolic links. A symbolic link, a
device node (``/dev/null``), a pipe or a folder is never written over: writing a file by
``os.replace`` would replace the link or node itself, and a log opened on a pipe would block.
An existing file that is a SQLite database (or its journal or WAL) is refused too, so even a
database this run does not know about (typed later at the wizard's prompt, another customer's
copy, a hard link) is never overwritten.

The commands check every output before they connect (a UsageError, exit 2), including that
its folder exists and can be written, so a real run never finishes its changes and then fails
on the report. The writers (report.write_text_file and the log's file handler) check again
right before they write.

A log or report the user named no path for goes to the tool's own folder, never the working
directory: an MSI custom action, SCCM or Intune starts the tool in C:\\Windows\\System32, and a
checkout is no place for run records either. On Windows that folder is %ProgramData%\\setup-tool
(the machine-wide application data every local account may create files in); elsewhere it is
$XDG_STATE_HOME/setup-tool, by default ~/.local/state/setup-tool (the XDG Base Directory
specification's place for "actions history (logs, history, ...)"). The commands print the full
path of every file they wrote.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from setup_tool.errors import UsageError

# What a file starts with when it is SQLite's: the database, its WAL, its rollback journal.
_SQLITE_HEADER = b"SQLite format 3\x00"
_WAL_MAGIC = (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")
_JOURNAL_MAGIC = b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7"

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # opening a pipe for writing must never hang
_O_BINARY = getattr(os, "O_BINARY", 0)


@dataclass(frozen=True)
class OutputFile:
    """A file a command will write: `given_as` names it for the user ("--report", "the log")."""

    path: Path
    given_as: str
    appends: bool = False  # the log grows in place; every other output is replaced whole


TOOL_FOLDER_NAME = "setup-tool"


def default_output_folder(
    environ: Mapping[str, str] | None = None, platform: str | None = None
) -> Path:
    """Where a log or report the user named no path for goes (see the module's docstring)."""
    env = os.environ if environ is None else environ
    if (platform or sys.platform) == "win32":
        program_data = env.get("ProgramData") or env.get("PROGRAMDATA") or r"C:\ProgramData"
        return Path(program_data) / TOOL_FOLDER_NAME
    state_home = env.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state_home):  # the specification: a relative path is to be ignored
        home = env.get("HOME") or os.path.expanduser("~")
        state_home = os.path.join(home, ".local", "state")
    return Path(state_home) / TOOL_FOLDER_NAME


def default_output_file(name: str) -> Path:
    """`name` in the default folder, created if it is missing (UsageError, exit 2, if it
    cannot be)."""
    folder = default_output_folder()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(
            f"Cannot create the folder for setup-tool's logs and reports '{folder}': "
            f"{describe_os_error(error)}.",
            "Name the files instead: --log-file FILE and --report FILE (or the answer-file keys "
            f"log-file and report). {_NOTHING_CHANGED}",
        ) from None
    return folder / name


def sqlite_file(database_url: str | None) -> Path | None:
    """The file a SQLite database URL opens, or None (a server database, in memory, unparsable).

    dialects.sqlite_path is the one place that maps a SQLite URL to a file; this only parses
    the text the user gave.
    """
    if not database_url:
        return None
    from sqlalchemy.engine import make_url

    from setup_tool.dialects import dialect_of

    try:
        url = make_url(database_url)
    except Exception:  # an unparsable URL is refused, in its own words, when it is opened
        return None
    return dialect_of(url).database_file(url)


def database_files(database_url: str | None) -> tuple[Path, ...]:
    """The files of the database at `database_url` that no output may touch: for SQLite the
    database file, its -journal, -wal and -shm, and the run lock; nothing for a server."""
    from setup_tool.dialects import sqlite_files

    database = sqlite_file(database_url)
    return () if database is None else sqlite_files(database)


def check_output_files(outputs: Iterable[OutputFile | None], database_url: str | None) -> None:
    """Refuse (UsageError, exit 2) any output that could harm the database at `database_url`,
    that two outputs share, or that cannot be written. Nothing is written by this check: only
    a probe file next to the target, created and removed at once."""
    protected = database_files(database_url)
    seen: dict[str, OutputFile] = {}
    for output in outputs:
        if output is None:
            continue
        try:
            refuse_unsafe_target(output.path, output.given_as, protected)
            check_writable(output)
        except UsageError as error:
            raise UsageError(error.message, f"{error.hint} {_NOTHING_CHANGED}") from None
        key = _identity(output.path)
        if key in seen:
            raise UsageError(
                f"{seen[key].given_as} and {output.given_as} name the same file "
                f"'{output.path}': one would overwrite the other.",
                f"Give each of them its own file. {_NOTHING_CHANGED}",
            )
        seen[key] = output


_NOTHING_CHANGED = "setup-tool stopped before connecting to the database: nothing was changed."


def refuse_unsafe_target(
    path: Path, given_as: str | None = None, protected: Sequence[Path] = ()
) -> None:
    """Raise UsageError unless `path` is a new file or an existing regular file that is none
    of `protected` (the database's files), not a symbolic link and not a SQLite file."""
    try:
        status: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        status = None
    except OSError as error:  # a file where a folder should be, a name too long...
        raise _refusal(path, given_as, describe_os_error(error)) from None
    if status is not None:
        _refuse_special(path, given_as, status)
    try:
        real = os.path.realpath(path)
    except OSError as error:  # the working folder itself is gone
        raise _refusal(path, given_as, describe_os_error(error)) from None
    for database in protected:
        if _same_file(real, status, database):
            raise _refusal(path, given_as, f"it is {_describe_database_file(database)}")
    what = _sqlite_content(path) if status is not None else None
    if what is None:
        what = _companion_by_name(Path(real))
    if what is not None:
        raise _refusal(path, given_as, what)


def check_writable(output: OutputFile) -> None:
    """Raise UsageError unless `output` can be written now: its folder exists and takes a new
    file (a report is written next to its target and moved over it), or, for a log that exists
    already, the file itself opens for appending. Nothing in an existing file changes."""
    path = output.path
    try:
        if output.appends and os.path.lexists(path):
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | _O_NOFOLLOW | _O_NONBLOCK)
            os.close(descriptor)
            return
        probe = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_BINARY, 0o600)
        os.close(descriptor)
        with contextlib.suppress(OSError):
            os.unlink(probe)
    except OSError as error:
        raise _refusal(path, output.given_as, describe_os_error(error)) from None


def open_for_append(path: Path) -> int:
    """A descriptor for appending to `path` (created if new), opened so that a symbolic link
    or a device swapped in after the checks is never written: OSError or UsageError otherwise."""
    refuse_unsafe_target(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_NOFOLLOW | _O_NONBLOCK | _O_BINARY
    descriptor = os.open(path, flags, 0o666)
    status = os.fstat(descriptor)
    if not stat.S_ISREG(status.st_mode):
        os.close(descriptor)
        _refuse_special(path, None, status)
    if _O_NONBLOCK:  # only needed to open a pipe without hanging; a file writes as usual
        os.set_blocking(descriptor, True)
    return descriptor


# --- the reasons ----------------------------------------------------------------------------


def _refuse_special(path: Path, given_as: str | None, status: os.stat_result) -> None:
    mode = status.st_mode
    if stat.S_ISLNK(mode):
        target = os.readlink(path)
        raise _refusal(
            path,
            given_as,
            f"it is a symbolic link (to '{target}'); setup-tool never writes through a link",
            "Give the path of a regular file instead.",
        )
    if stat.S_ISDIR(mode):
        raise _refusal(path, given_as, "it is a folder", "Give a file name, not a folder.")
    if not stat.S_ISREG(mode):
        kind = (
            "a device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a pipe"
            if stat.S_ISFIFO(mode)
            else "a socket"
            if stat.S_ISSOCK(mode)
            else "not a regular file"
        )
        raise _refusal(
            path,
            given_as,
            f"it is {kind}, not a regular file",
            "Give the path of a regular file (new, or one to replace).",
        )


def _identity(path: Path) -> str:
    try:
        return os.path.normcase(os.path.realpath(path))
    except OSError:  # no working folder to resolve against: the name is all there is
        return os.path.normcase(str(path))


def _same_file(real: str, status: os.stat_result | None, database: Path) -> bool:
    if _identity(Path(real)) == _identity(database):
        return True
    if status is None or stat.S_ISLNK(status.st_mode):
        return False
    with contextlib.suppress(OSError):  # a hard link has another name, but the same inode
        return os.path.samefile(real, database)
    return False


def _describe_database_file(database: Path) -> str:
    from setup_tool.dialects import SQLITE_FILE_NAMES

    for suffix, name in SQLITE_FILE_NAMES.items():
        if database.name.endswith(suffix):
            return f"the database's {name} ('{database}')"
    return f"the database itself ('{database}')"


def _sqlite_content(path: Path) -> str | None:
    """What an existing file is when SQLite made it: a database, a WAL or a rollback journal."""
    try:
        with open(path, "rb") as file:
            head = file.read(len(_SQLITE_HEADER))
    except OSError:  # unreadable: the checks of the write itself will say why
        return None
    if head.startswith(_SQLITE_HEADER):
        return "it is a SQLite database; setup-tool never writes its outputs over a database"
    if head[:4] in _WAL_MAGIC or head.startswith(_JOURNAL_MAGIC):
        return "it is a SQLite journal or WAL file, part of a database"
    return None


def _companion_by_name(real: Path) -> str | None:
    """`real` is named as a companion of an existing SQLite database next to it."""
    from setup_tool.dialects import SQLITE_FILE_NAMES

    for suffix in SQLITE_FILE_NAMES:
        if real.name.endswith(suffix) and len(real.name) > len(suffix):
            database = real.with_name(real.name.removesuffix(suffix))
            if _sqlite_content(database) is not None:
                return f"it belongs to the SQLite database '{database}' ({suffix.lstrip('-.')})"
    return None


_WHY: dict[int, str] = {
    errno.ENOENT: "its folder does not exist",
    errno.ENOTDIR: "a part of its folder path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "it would be larger than this system allows",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.ELOOP: "it is a symbolic link; setup-tool never writes through a link",
    errno.ENXIO: "it is a pipe or device, not a regular file",
}


def describe_os_error(error: OSError) -> str:
    """Why a file could not be written, in words: "the disk is full", "permission denied"."""
    return _WHY.get(error.errno or 0, error.strerror or str(error))


def _refusal(path: Path, given_as: str | None, why: str, hint: str | None = None) -> UsageError:
    named = f" ({given_as})" if given_as else ""
    choose = f"Choose another file for {given_as}." if given_as else "Choose another path."
    return UsageError(
        f"Cannot write the file '{path}'{named}: {why}. Nothing was written there.",
        hint or choose,
    )
