"""Durations ("36h", "1h30m") and timestamps (ISO 8601 <-> unix seconds)."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
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
    return seconds


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
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def iso(ts: float | None) -> str | None:
    """ISO 8601 UTC with a Z, to the second; None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_duration(seconds: float) -> str:
    """Short, for tables: 45s, 12m, 3h05m, 2d04h."""
    s = int(abs(seconds))
    sign = "-" if seconds < 0 else ""
    if s < 60:
        return f"{sign}{s}s"
    if s < 3600:
        return f"{sign}{s // 60}m"
    if s < 86400:
        return f"{sign}{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{sign}{s // 86400}d{(s % 86400) // 3600:02d}h"
