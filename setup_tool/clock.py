"""UTC wall-clock time as SuperOffice stores it: naive datetimes in UTC, whole seconds."""

from __future__ import annotations

from datetime import UTC, datetime

# SuperOffice writes DateTime.MinValue-style "empty" dates; 1900-01-01 is what SQL Server shows.
NEVER = datetime(1900, 1, 1)


def utc_now() -> datetime:
    # Whole seconds: SQL Server datetime rounds to 1/300 s, and a rounded cutoff must not move.
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def is_real_date(value: datetime | None) -> bool:
    """False for NULL and for SuperOffice's 'never' placeholder dates."""
    return value is not None and value.year > 1900


def iso(value: datetime | None) -> str | None:
    return value.isoformat(sep=" ") if value is not None else None
