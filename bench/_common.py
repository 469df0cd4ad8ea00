"""Helpers for the benchmarks: timing, request lines, a fresh store."""

from __future__ import annotations

import json
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def best_of(n: int, fn: Callable[[], float]) -> float:
    """The least of n timings: the machine is shared and noise only ever adds time."""
    return min(fn() for _ in range(n))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def openai_line(i: int, content_bytes: int = 200) -> str:
    return json.dumps(
        {
            "custom_id": f"req-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "max_tokens": 200,
                "messages": [{"role": "user", "content": "x" * content_bytes}],
            },
        },
        separators=(",", ":"),
    )


def write_lines(path: Path, n: int) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(openai_line(i) + "\n")
    return path


def verdict(ratio: float, target: float, higher_is_better: bool = True) -> str:
    ok = ratio >= target if higher_is_better else ratio <= target
    return "PASS" if ok else "MISS"
