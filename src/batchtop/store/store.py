"""The `Store`: the only object that writes the database.

Methods here are small transactions the engine, the Python API and the CLI share;
read-side queries for the views live in `batchtop.store.views`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from batchtop.errors import EnqueueError, LineError
from batchtop.store.db import connect
from batchtop.validation import ParsedRequest

_DUP_CHUNK = 500


class BufferKey(NamedTuple):
    provider: str
    endpoint: str
    model: str

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.endpoint}:{self.model}"


class Store:
    def __init__(self, data_dir: Path, *, create: bool = True) -> None:
        self.data_dir = data_dir
        self.db: sqlite3.Connection = connect(data_dir, create=create)
        self._buffer_ids: dict[BufferKey, int] = {}

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: take the write lock up front, so a writer waits (busy
        timeout) instead of failing half-way, and nothing is ever half-applied."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- buffers -----------------------------------------------------------------
    def _buffer_id(self, key: BufferKey) -> int:
        """Inside a transaction: the buffer's id, created on first use."""
        cached = self._buffer_ids.get(key)
        if cached is not None:
            return cached
        self.db.execute(
            "INSERT OR IGNORE INTO buffers (provider, endpoint, model) VALUES (?, ?, ?)", key
        )
        (buffer_id,) = self.db.execute(
            "SELECT id FROM buffers WHERE provider = ? AND endpoint = ? AND model = ?", key
        ).fetchone()
        self._buffer_ids[key] = buffer_id
        return buffer_id

    # -- enqueue -----------------------------------------------------------------
    def enqueue(
        self, requests: Sequence[ParsedRequest], *, deadline: float | None = None, now: float | None = None
    ) -> dict[BufferKey, int]:
        """Store validated requests, all or none, in one transaction.

        A custom_id already live for its provider rejects the whole input, naming the
        lines. Returns how many requests went into which buffer.
        """
        now = time.time() if now is None else now
        counts: dict[BufferKey, int] = {}
        try:
            with self.transaction() as db:
                rows = []
                for r in requests:
                    key = BufferKey(r.provider, r.endpoint, r.model)
                    counts[key] = counts.get(key, 0) + 1
                    rows.append((r.provider, r.custom_id, self._buffer_id(key), r.line, r.bytes, now, deadline))
                db.executemany(
                    "INSERT INTO requests (provider, custom_id, buffer_id, line, bytes, enqueued_at, deadline)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                added: dict[int, list[int]] = {}
                for row in rows:
                    entry = added.setdefault(row[2], [0, 0])
                    entry[0] += 1
                    entry[1] += row[4]
                db.executemany(
                    "UPDATE buffers SET queued = queued + ?, queued_bytes = queued_bytes + ? WHERE id = ?",
                    [(n, size, buffer_id) for buffer_id, (n, size) in added.items()],
                )
        except sqlite3.IntegrityError:
            self._buffer_ids.clear()  # rolled back: cached ids of new buffers are void
            raise self._live_duplicates(requests) from None
        except BaseException:
            self._buffer_ids.clear()
            raise
        return counts

    def _live_duplicates(self, requests: Sequence[ParsedRequest]) -> EnqueueError:
        by_provider: dict[str, dict[str, ParsedRequest]] = {}
        for r in requests:
            by_provider.setdefault(r.provider, {})[r.custom_id] = r
        errors: list[LineError] = []
        total = 0
        for provider, ids in by_provider.items():
            keys = list(ids)
            for i in range(0, len(keys), _DUP_CHUNK):
                chunk = keys[i : i + _DUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                for cid, state in self.db.execute(
                    f"SELECT custom_id, state FROM requests WHERE provider = ? AND state NOT IN ('succeeded', 'dead')"
                    f" AND custom_id IN ({marks})",
                    [provider, *chunk],
                ):
                    total += 1
                    if len(errors) < 20:
                        r = ids[cid]
                        errors.append(
                            LineError(r.source, r.lineno, "custom_id", f"{cid!r} is already live in batchtop for {provider} ({state})")
                        )
        if not errors:  # pragma: no cover - an integrity error we did not foresee
            errors.append(LineError("input", 0, "", "rejected by the database's integrity rules"))
        return EnqueueError(errors, total - len(errors))
