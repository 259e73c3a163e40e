"""Time helpers: the exact units every comparison and every file uses.

Comparisons are in integer microseconds since the Unix epoch (docs/semantics.md), never in
floats; what is written for a reader (the capture log, the replay headers) is ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

__all__ = ["from_us", "human_duration", "iso_utc", "seconds_to_us", "to_us"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(moment: datetime) -> int:
    """Microseconds since the Unix epoch: the exact unit every comparison uses."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    """The moment ``us`` microseconds after the Unix epoch (UTC): :func:`to_us` undone."""
    return _EPOCH + timedelta(microseconds=us)


def seconds_to_us(seconds: float) -> int:
    """``seconds`` (as written, e.g. ``0.1``) in whole microseconds, half up."""
    exact = Decimal(repr(seconds)) * 1_000_000
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def human_duration(seconds: float) -> str:
    """``19 h 17 min 9.7 s``, ``2 min 3.0 s``, ``0.4 s``: rounded to the tenth of a second (half up) first, so
    59.96 s reads ``1 min 0.0 s``; units above the largest non-zero one are left out (docs/analysis.md)."""
    tenths = int((Decimal(repr(abs(seconds))) * 10).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    hours, rest = divmod(tenths, 36_000)
    minutes, rest = divmod(rest, 600)
    text = f"{rest // 10}.{rest % 10} s"
    if hours:
        text = f"{hours} h {minutes} min {text}"
    elif minutes:
        text = f"{minutes} min {text}"
    return f"-{text}" if seconds < 0 and tenths else text


def iso_utc(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``: exact to the microsecond, read back identically by the loader."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
