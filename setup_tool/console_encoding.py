"""Output that never fails on the console's code page.

A Windows console in code page 850 or 1252, output redirected to a file or a pipe (Python then
writes the ANSI code page, cp1252 on a Western European server) or PYTHONIOENCODING=ascii cannot
encode every name a CRM holds ("Łukasz 田中"). Python's default for stdout is to raise
UnicodeEncodeError, which ended a redirected dry run. Here a character the stream cannot encode
is written as a \\uXXXX escape instead: the text still names the person, and inside JSON the
escape is the same string. A character beyond U+FFFF becomes a surrogate pair of escapes, the way
JSON writes it.

Files the tool writes (reports, logs, answer files, scripts) do not go through this: they are
always UTF-8.
"""

from __future__ import annotations

import codecs
import contextlib
import sys

ESCAPE_UNENCODABLE = "setup_tool_escape"


def json_escape(character: str) -> str:
    """`character` as JSON writes it escaped: \\u0141, or a surrogate pair beyond U+FFFF."""
    code = ord(character)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def _escape_unencodable(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeEncodeError):
        raise error
    return "".join(map(json_escape, error.object[error.start : error.end])), error.end


codecs.register_error(ESCAPE_UNENCODABLE, _escape_unencodable)


def _is_utf(encoding: str) -> bool:
    try:
        return codecs.lookup(encoding).name.startswith("utf")
    except LookupError:
        return False


def encode_any_text(*streams: object) -> None:
    """Let `streams` (default: stdout and stderr) write any text: what their encoding lacks is
    escaped (see the module's docstring). A UTF stream, and one that cannot be reconfigured
    (not a text file, closed, detached), is left as it is."""
    for stream in streams or (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None)
        reconfigure = getattr(stream, "reconfigure", None)
        if not isinstance(encoding, str) or reconfigure is None or _is_utf(encoding):
            continue
        with contextlib.suppress(ValueError, OSError, AttributeError):
            reconfigure(errors=ESCAPE_UNENCODABLE)
