"""Helpers for the benchmarks: timing, request lines, a fresh store."""

from __future__ import annotations

import itertools
import json
import os
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

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


# -- PostgreSQL (the benches' --store URL) ------------------------------------------------

_PG_SEQ = itertools.count(1)


def pg_database_url(url: str, name: str) -> str:
    """The server's URL with another database name (its query parameters kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


class PgDatabases:
    """Fresh databases on the server of `url` (its role may create databases), each a
    copy of one migrated template (so no run pays for the migration), all dropped by
    `close`."""

    def __init__(self, url: str, tmp: Path, tag: str) -> None:
        import psycopg

        from batchtop.store import Store

        self.url = url
        self.tag = tag
        self.admin = psycopg.connect(url, autocommit=True)
        self.made: list[str] = []
        self.template = self._create(None)
        Store(tmp / f"pg-template-{tag}", url=pg_database_url(url, self.template)).close()

    def _create(self, template: str | None) -> str:
        name = f"bench_{self.tag}_{os.getpid()}_{next(_PG_SEQ)}"
        self.admin.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        self.made.append(name)
        return name

    def fresh(self) -> str:
        """The URL of a new database holding an empty, migrated store."""
        return pg_database_url(self.url, self._create(self.template))

    def close(self) -> None:
        for name in reversed(self.made):
            self.admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        self.admin.close()
