"""Who runs the tool, as the run history and the reports record it.

On Windows that is DOMAIN\\user: the account Windows integrated login (--trusted-connection)
presents to SQL Server, and the form SQL Server itself shows (SUSER_SNAME(), which the T-SQL
script records for the same column). A bare "administrator" would not tell the customer's domain
administrator from a consultant's local one. Elsewhere it is the login name.
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Callable, Mapping

# GetUserNameExW's EXTENDED_NAME_FORMAT NameSamCompatible: "DOMAIN\user" (a local account's
# "domain" is the computer name). Microsoft's documentation of GetUserNameExW (secext.h).
_NAME_SAM_COMPATIBLE = 2
_UNKNOWN = "unknown"


def os_account(
    platform: str | None = None,
    environ: Mapping[str, str] | None = None,
    windows_api: Callable[[], str | None] | None = None,
) -> str:
    """DOMAIN\\user on Windows, the login name elsewhere, "unknown" when nothing says."""
    if (platform or sys.platform) == "win32":
        ask_windows = windows_api or _sam_compatible_name
        return ask_windows() or _from_environment(os.environ if environ is None else environ)
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some service accounts and containers
        return _UNKNOWN


def _from_environment(environ: Mapping[str, str]) -> str:
    """USERDOMAIN\\USERNAME, as Windows sets them for every logon session (a service running as
    LocalSystem has USERNAME "<COMPUTER>$")."""
    user = environ.get("USERNAME", "").strip()
    domain = environ.get("USERDOMAIN", "").strip()
    if not user:
        return _UNKNOWN
    return f"{domain}\\{user}" if domain and "\\" not in user else user


def _sam_compatible_name() -> str | None:
    """GetUserNameExW(NameSamCompatible), or None when Windows does not answer."""
    try:
        import ctypes
        from ctypes import wintypes

        secur32 = ctypes.WinDLL("secur32", use_last_error=True)  # type: ignore[attr-defined]
        size = wintypes.ULONG(0)
        secur32.GetUserNameExW(_NAME_SAM_COMPATIBLE, None, ctypes.byref(size))
        if not size.value:
            return None
        buffer = ctypes.create_unicode_buffer(size.value + 1)
        if not secur32.GetUserNameExW(_NAME_SAM_COMPATIBLE, buffer, ctypes.byref(size)):
            return None
        return buffer.value or None
    except (OSError, AttributeError, ValueError):
        return None
