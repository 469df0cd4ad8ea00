"""The `Store`: the only object that writes the database.

Methods here are small transactions the engine, the Python API and the CLI share;
the engine's queries and state changes (what to poll, cancel, ingest; a provider's
state; a batch as the provider reports it) come from `batchtop.store.lifecycle`,
mixed in; read-side queries for the views live in `batchtop.store.status_queries`.
"""

from __future__ import annotations

import queue
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
from batchtop.store import estimates, location
from batchtop.store.db import Connection, IntegrityError, connect, rollback
from batchtop.store.lifecycle import Lifecycle

_DUP_CHUNK = 500


_INSERT_JSON = (
    "INSERT INTO requests (provider, custom_id, buffer_id, line, bytes, enqueued_at, deadline, tier)"
    " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),"
    " json_extract(value, '$[3]'), json_extract(value, '$[4]'), ?, ?, ? FROM json_each(?)"
)


_COPY_REQUESTS = "COPY requests (provider, custom_id, buffer_id, line, bytes, enqueued_at, deadline, tier) FROM STDIN"


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


def _count(entry: list[int], r: ParsedRequest) -> None:
    """Add a request to its buffer's enqueue sums: count, bytes, and the estimate's
    input tokens, capped output tokens and uncapped outputs."""
    inp, capped, uncapped = enqueue_figures(r.provider, r.endpoint, r.line, r.body)
    entry[0] += 1
    entry[1] += r.bytes
    entry[2] += inp
    entry[3] += capped
    entry[4] += uncapped


class BufferKey(NamedTuple):
    provider: str
    endpoint: str
    model: str

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.endpoint}:{self.model}"


class Fence(Protocol):
    def check(self, db: Connection) -> None:
        """Inside a write transaction: raise if this writer may no longer write."""


class Store(Lifecycle):
    """The store's database; the engine's typed calls come from `Lifecycle`.

    `url`: a PostgreSQL store (`postgresql://...`, any libpq URI) shared by every host,
    its objects in `schema`; without one, the SQLite file in `data_dir`."""

    def __init__(
        self, data_dir: Path, *, create: bool = True, url: str | None = None, schema: str = location.DEFAULT_SCHEMA
    ) -> None:
        self.data_dir = data_dir
        self.url = url
        self.db: Connection = connect(data_dir, create=create, url=url, schema=schema)
        self._buffer_ids: dict[BufferKey, int] = {}
        self.fence: Fence | None = None
        """The engine's lease (`store.lease.Lease`) once it holds one: checked first
        in every write transaction, so an engine that lost the lease writes nothing."""

    def close(self) -> None:
        self.db.close()

    @property
    def where(self) -> str:
        """The store as messages name it: the data dir, or the URL with no password."""
        return str(self.data_dir) if self.url is None else location.display_url(self.url)

    @property
    def read_only(self) -> bool:
        """Whether this connection may only read the store: a PostgreSQL role without
        UPDATE on `batches` (a viewer granted SELECT). A SQLite file opened at all is
        writable (its permissions are checked on open): False."""
        if self.db.dialect != location.DIALECT:
            return False
        row = self.db.execute("SELECT NOT has_table_privilege('batches', 'UPDATE')").fetchone()
        return bool(row and row[0])

    @property
    def shared(self) -> bool:
        """A store other hosts write too (PostgreSQL): its clock is the server's."""
        return self.db.dialect == location.DIALECT

    def clock(self) -> float:
        """Now, by the clock every writer of this store agrees on: the PostgreSQL
        server's for a shared store (hosts' clocks differ), this host's for a file."""
        if self.db.dialect == location.DIALECT:
            (now,) = self.db.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
            return float(now)
        return time.time()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, fenced: bool = True) -> Iterator[Connection]:
        """Take the store's write lock up front (SQLite's BEGIN IMMEDIATE, PostgreSQL's
        writer advisory lock), so a writer waits (busy timeout) instead of failing
        half-way, and nothing is ever half-applied. The fence (if any) is checked
        under that lock, in the same transaction."""
        self.db.begin_write()
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
            "INSERT INTO buffers (provider, endpoint, model) VALUES (?, ?, ?) ON CONFLICT DO NOTHING", key
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
                _count(added[buffer_id], r)
                rows.append((r.provider, r.custom_id, buffer_id, r.line, r.bytes))
            return orjson.dumps(rows)

        def insert(data: bytes) -> None:
            self.db.execute(_INSERT_JSON, (now, deadline, tier, data))

        if self.db.dialect == location.DIALECT:
            return self._enqueue_copy(chunks, seen=seen, deadline=deadline, now=now, tier=tier)
        writer = _Writer(insert)
        self.db.begin_write()
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
            if isinstance(exc, IntegrityError):
                raise self._live_duplicates(seen) from None
            raise
        by_id = {v: BufferKey(*k) for k, v in ids.items()}
        return {by_id[b]: n for b, (n, *_) in added.items()}

    def _enqueue_copy(
        self,
        chunks: Iterable[Sequence[ParsedRequest]],
        *,
        seen: dict[tuple[str, str], tuple[str, int]],
        deadline: float | None,
        now: float,
        tier: str | None,
    ) -> dict[BufferKey, int]:
        """`enqueue_chunks` on PostgreSQL: the rows stream into one COPY as the
        validator yields them, in one transaction under the writer lock (so ids are
        handed out in commit order, as the range claims need), all or none."""
        from batchtop.store.postgres import PgConnection

        assert isinstance(self.db, PgConnection)
        ids: dict[tuple[str, str, str], int] = {}
        added: dict[int, list[int]] = {}
        self.db.begin_write()
        try:
            # A COPY holds the connection, so each chunk's new buffers are looked up (or
            # made) first, then the chunk goes in as one COPY.
            for chunk in chunks:
                for r in chunk:
                    key = (r.provider, r.endpoint, r.model)
                    if key not in ids:
                        ids[key] = self._buffer_id(BufferKey(*key))
                        added[ids[key]] = [0, 0, 0, 0, 0]
                with self.db.errors(), self.db.conn.cursor().copy(_COPY_REQUESTS) as copy:
                    for r in chunk:
                        buffer_id = ids[(r.provider, r.endpoint, r.model)]
                        _count(added[buffer_id], r)
                        copy.write_row((r.provider, r.custom_id, buffer_id, r.line, r.bytes, now, deadline, tier))
            estimates.add(self.db, [(buffer_id, n, size, inp, capped, uncapped)
                                    for buffer_id, (n, size, inp, capped, uncapped) in added.items()])
            self.db.execute("COMMIT")
        except BaseException as exc:
            rollback(self.db)
            self._buffer_ids.clear()
            if isinstance(exc, IntegrityError):
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
