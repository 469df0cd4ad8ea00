"""Durations ("36h", "1h30m") and timestamps (ISO 8601 <-> unix seconds)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}

MAX_DURATION = 5 * 365 * 86400.0
"""The longest duration or the farthest deadline we accept: five years. Batch work is
due in hours or days; a bound keeps every timestamp we compute from it printable
(1e300 s overflowed datetime in every status view)."""
_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


def parse_duration(text: str | int | float) -> float:
    """Seconds in a duration such as "36h", "1h30m", "90s", or a bare number of seconds."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError("a duration must be a number of seconds or text like '36h'")
    if isinstance(text, (int, float)):
        return _checked(float(text))
    s = text.strip().lower()
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        return _checked(value)
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"{text!r} is not a duration (examples: 36h, 90m, 1h30m, 2d)")
    return _checked(total)


def _checked(seconds: float) -> float:
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION:
        raise ValueError(f"a duration must be at most {MAX_DURATION / 86400:.0f}d (five years)")
    return seconds


def checked_deadline(ts: float, now: float) -> float:
    """A deadline as given (unix seconds), if it is finite and within five years of now
    either way: one further off is a typo, and would overflow the status views."""
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise ValueError("a deadline must be unix seconds or an ISO 8601 time")
    ts = float(ts)
    if not math.isfinite(ts):
        raise ValueError("a deadline must be a finite time")
    if abs(ts - now) > MAX_DURATION:
        years = abs(ts - now) / (365.25 * 86400)
        side = "in the past" if ts < now else "ahead"
        raise ValueError(
            f"a deadline must be within {MAX_DURATION / 86400:.0f} days (five years) of now;"
            f" this one is {years:,.0f} years {side}"
        )
    return ts


def parse_time(text: str) -> float:
    """Unix seconds of an ISO 8601 time; a time without offset is taken as UTC."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time (example: 2026-11-26T09:00:00Z)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC with a Z, to the second; None stays None."""
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return None  # unrepresentable (a row written before the bounds): shown as unknown, never a crash


def human_duration(seconds: float) -> str:
    """Short, for tables: 45s, 12m, 3h05m, 2d04h."""
    if not math.isfinite(seconds):
        return "?"
    s = int(abs(seconds))
    sign = "-" if seconds < 0 else ""
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        return f"{sign}{s // 60}m"
    if s < 86400:
        return f"{sign}{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{sign}{s // 86400}d{(s % 86400) // 3600:02d}h"
