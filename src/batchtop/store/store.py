"""The `Store`: the only object that writes the database.

Methods here are small transactions the engine, the Python API and the CLI share;
the engine's queries and state changes (what to poll, cancel, ingest; a provider's
state; a batch as the provider reports it) come from `batchtop.store.lifecycle`,
mixed in; read-side queries for the views live in `batchtop.store.status_queries`.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, Protocol

import orjson

from batchtop.errors import EnqueueError, LineError
from batchtop.intake.validation import ParsedRequest
from batchtop.pricing.estimate import enqueue_figures
from batchtop.store import estimates
from batchtop.store.db import connect, rollback
from batchtop.store.lifecycle import Lifecycle

_DUP_CHUNK = 500


_INSERT_JSON = (
    "INSERT INTO requests (provider, custom_id, buffer_id, line, bytes, enqueued_at, deadline, tier)"
    " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),"
    " json_extract(value, '$[3]'), json_extract(value, '$[4]'), ?, ?, ? FROM json_each(?)"
)


class _Writer:
    """Runs `insert` on chunks in a thread, started on first use; `close` waits for
    it and re-raises what it raised, so the caller's transaction sees the error."""

    def __init__(self, insert: Callable[[bytes], None]) -> None:
        self._insert = insert
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._failure is None:
                try:
                    self._insert(data)
                except BaseException as exc:  # re-raised in the caller's thread
                    self._failure = exc

    def put(self, data: bytes) -> None:
        if self._failure is not None:
            raise self._failure
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="batchtop-enqueue", daemon=True)
            self._thread.start()
        self._queue.put(data)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._failure is not None:
            raise self._failure


class BufferKey(NamedTuple):
    provider: str
    endpoint: str
    model: str

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.endpoint}:{self.model}"


class Fence(Protocol):
    def check(self, db: sqlite3.Connection) -> None:
        """Inside a write transaction: raise if this writer may no longer write."""


class Store(Lifecycle):
    """The data dir's database; the engine's typed calls come from `Lifecycle`."""

    def __init__(self, data_dir: Path, *, create: bool = True) -> None:
        self.data_dir = data_dir
        self.db: sqlite3.Connection = connect(data_dir, create=create)
        self._buffer_ids: dict[BufferKey, int] = {}
        self.fence: Fence | None = None
        """The engine's lease (`store.lease.Lease`) once it holds one: checked first
        in every write transaction, so an engine that lost the lease writes nothing."""

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, fenced: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: take the write lock up front, so a writer waits (busy
        timeout) instead of failing half-way, and nothing is ever half-applied.
        The fence (if any) is checked under that lock, in the same transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if fenced and self.fence is not None:
                self.fence.check(self.db)
            yield self.db
        except BaseException:
            rollback(self.db)
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
        self,
        requests: Sequence[ParsedRequest],
        *,
        deadline: float | None = None,
        now: float | None = None,
        tier: str | None = None,
    ) -> dict[BufferKey, int]:
        """Store validated requests, all or none, in one transaction (`tier`: the
        priority tier they were enqueued with, kept beside their deadline)."""
        seen = {(r.provider, r.custom_id): (r.source, r.lineno) for r in requests}
        return self.enqueue_chunks([list(requests)], seen=seen, deadline=deadline, now=now, tier=tier)

    def enqueue_chunks(
        self,
        chunks: Iterable[Sequence[ParsedRequest]],
        *,
        seen: dict[tuple[str, str], tuple[str, int]],
        deadline: float | None = None,
        now: float | None = None,
        tier: str | None = None,
    ) -> dict[BufferKey, int]:
        """Store requests as a validator yields them, all or none, in one transaction.

        Each chunk goes to SQLite as one JSON array expanded by `json_each`, so the
        insert runs inside one sqlite3_step with the GIL released; from the second
        chunk on a writer thread does that while this thread goes on parsing, and the
        two really overlap (row-by-row executemany takes the GIL back after every row
        and was measured slower threaded than not). If the chunks' iterator raises (a
        bad line further on) the transaction is rolled back. A custom_id already live
        for its provider rejects the whole input, naming the lines (`seen` maps each
        (provider, custom_id) to its source and line). Returns how many requests went
        into which buffer.
        """
        now = time.time() if now is None else now
        ids: dict[tuple[str, str, str], int] = {}
        added: dict[int, list[int]] = {}

        def payload(chunk: Sequence[ParsedRequest]) -> bytes:
            rows = []
            for r in chunk:
                key = (r.provider, r.endpoint, r.model)
                buffer_id = ids.get(key)
                if buffer_id is None:
                    buffer_id = ids[key] = self._buffer_id(BufferKey(*key))
                    added[buffer_id] = [0, 0, 0, 0, 0]
                entry = added[buffer_id]
                entry[0] += 1
                entry[1] += r.bytes
                inp, capped, uncapped = enqueue_figures(r.provider, r.endpoint, r.line, r.body)
                entry[2] += inp
                entry[3] += capped
                entry[4] += uncapped
                rows.append((r.provider, r.custom_id, buffer_id, r.line, r.bytes))
            return orjson.dumps(rows)

        def insert(data: bytes) -> None:
            self.db.execute(_INSERT_JSON, (now, deadline, tier, data))

        writer = _Writer(insert)
        self.db.execute("BEGIN IMMEDIATE")
        try:
            try:
                for i, chunk in enumerate(chunks):
                    data = payload(chunk)
                    if i == 0:
                        insert(data)  # most calls (the Python API) have one chunk: no thread
                    else:
                        writer.put(data)
            finally:
                writer.close()
            # buffers.queued / queued_bytes follow by trigger (schema._queue_counters_by_trigger)
            estimates.add(self.db, [(buffer_id, n, size, inp, capped, uncapped)
                                    for buffer_id, (n, size, inp, capped, uncapped) in added.items()])
            self.db.execute("COMMIT")
        except BaseException as exc:
            rollback(self.db)
            self._buffer_ids.clear()  # rolled back: cached ids of new buffers are void
            if isinstance(exc, sqlite3.IntegrityError):
                raise self._live_duplicates(seen) from None
            raise
        by_id = {v: BufferKey(*k) for k, v in ids.items()}
        return {by_id[b]: n for b, (n, *_) in added.items()}

    def _live_duplicates(self, seen: dict[tuple[str, str], tuple[str, int]]) -> EnqueueError:
        by_provider: dict[str, list[str]] = {}
        for provider, cid in seen:
            by_provider.setdefault(provider, []).append(cid)
        errors: list[LineError] = []
        total = 0
        for provider, keys in by_provider.items():
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
                        source, lineno = seen[(provider, cid)]
                        errors.append(
                            LineError(source, lineno, "custom_id", f"{cid!r} is already live in batchtop for {provider} ({state})")
                        )
        if not errors:  # pragma: no cover - an integrity error we did not foresee
            errors.append(LineError("input", 0, "", "rejected by the database's integrity rules"))
        errors.sort(key=lambda e: (e.source, e.line))
        return EnqueueError(errors, total - len(errors))
