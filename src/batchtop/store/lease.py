"""One engine per data dir: a lease row with its owner, an expiry and a fencing token.

A lease whose owner was on this host and whose process is gone is taken over at
once, so a restart after a crash never waits; one held elsewhere is taken over
only after it expires.

Expiry alone cannot keep two hosts apart on a shared data dir (a network mount):
a call that outlives the lease, a paused process, or a clock ahead on the other
host all let a second engine in while the first still acts. So:

- the holder renews the lease in the background while it waits on a provider
  (`Lease.renewing`), never only between calls;
- every takeover gets a new fencing token, one more than any before it (kept in
  `lease_tokens`, so a release never lets a number come back);
- the `Lease` is the store's fence: every write transaction of the engine's store
  first checks that the lease row still carries our host, pid and token, and
  raises `LeaseLost` otherwise, in the same transaction as the write it guards;
- a release deletes only our own row (host, pid and token);
- another host's lease that our clock says expired only just (less than
  CLOCK_TOLERANCE ago) is watched for half its holder's ttl on our own monotonic
  clock first: a holder that renews it meanwhile is alive, whatever the clocks say.

On a shared store (PostgreSQL, `Store.shared`) the contract is the same, with one
clock: every expiry is written and judged by the server's (`Store.clock`), never a
host's, so hosts whose clocks differ still agree on when a lease lapses, and the
clock-skew watch is not needed. The fence `check` runs under the store's writer
lock there too (`begin_write` takes it), so no write of an engine whose lease was
taken over can commit after the takeover did. A holder on this host is still
judged by its pid: a dead one is taken over at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from batchtop.errors import BatchtopError
from batchtop.store.db import Connection, StoreBusy
from batchtop.store.store import Store
from batchtop.timefmt import iso

NAME = "engine"
log = logging.getLogger("batchtop.lease")

CLOCK_TOLERANCE = 600.0
"""Seconds another host's clock may be behind ours: a lease of another host that
expired by our clock less than this ago is watched for one ttl before it is taken,
and taken only if its holder did not renew it meanwhile."""
WATCH_MAX = 300.0
"""Seconds a takeover watches a just-expired lease at most."""


class EngineBusy(BatchtopError):
    """Another engine holds the data dir (the store)."""

    def __init__(self, message: str, holder: Holder | None = None) -> None:
        super().__init__(message)
        self.holder = holder
        """Who holds it, as the refused `acquire` saw it."""


class LeaseLost(BatchtopError):
    """Our lease was taken over (or released) by another engine: this one may change
    nothing more until it holds the lease again."""


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    expires_at: float
    token: int = 0
    ttl: float | None = None
    """The holder's own ttl: it renews every third of it."""

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host} (lease until {iso(self.expires_at)})"


def _alive(pid: int) -> bool:
    """Whether the process runs: a zombie (killed, not yet reaped by its parent, as
    under a terminal multiplexer whose shell died first) holds nothing any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc (macOS): the signal said it exists
        return True


def _row(db: Connection) -> Holder | None:
    row = db.execute("SELECT host, pid, expires_at, token, ttl FROM lease WHERE name = ?", (NAME,)).fetchone()
    return Holder(*row) if row else None


def _living(h: Holder | None, now: float, host: str) -> Holder | None:
    """`h` if it still holds the lease at `now` as seen from `host`: a process on that
    host by its pid, one elsewhere by its expiry."""
    if h is None:
        return None
    if h.host == host:
        return h if h.pid == os.getpid() or _alive(h.pid) else None
    return h if h.expires_at > now else None


def holder(store: Store, now: float | None = None, *, host: str | None = None) -> Holder | None:
    """Who holds the lease now, if anyone living does, as seen from `host` (this
    machine by default): a process on the asking host is checked directly, one
    elsewhere by its expiry. `now` is this host's clock, for a SQLite file (default:
    time.time()); a shared store's expiry is judged by the server's clock only."""
    if store.shared or now is None:
        now = store.clock()
    return _living(_row(store.db), now, host or socket.gethostname())


class Lease:
    """This process's hold on a data dir, and the fence of its store's writes.

    `host` and `pid` default to this machine and process; `now` is the clock the
    expiry is written and read with on a SQLite file (each host has its own, and
    they differ). On a shared store it is the server's (`Store.clock`), whatever
    `now` is given: one clock for every host."""

    def __init__(
        self,
        store: Store,
        ttl: float,
        *,
        host: str | None = None,
        pid: int | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.host = host or socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self.now: Callable[[], float] = store.clock if store.shared else now
        self.token: int | None = None
        """The fencing token of our current term; None when we hold nothing."""
        self._renewer: asyncio.Task[None] | None = None
        self._seen: tuple[Holder | None, float] | None = None
        """The lease row as `current` last read it, and since when (monotonic) it has
        read the same: a standby's watch of it, which `_watch` counts."""

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"

    def current(self) -> Holder | None:
        """Who holds the lease now, if anyone living does, as this lease judges it (its
        host, its clock): a read, no lock taken. Called again and again (a standby), it
        watches the row: one seen unchanged for long enough needs no watch of its own
        before it is taken (`_watch`)."""
        row = _row(self.store.db)
        if self._seen is None or self._seen[0] != row:
            self._seen = (row, time.monotonic())
        return _living(row, self.now(), self.host)

    def _ours(self, h: Holder | None) -> bool:
        return h is not None and (h.host, h.pid, h.token) == (self.host, self.pid, self.token)

    def acquire(self) -> int:
        """Renew our term, or start a new one with the next fencing token; raise
        EngineBusy naming the holder. Installs this lease as the store's fence.
        Call it only where no write of an older term can still be pending (before a
        tick, not during one): a new term would let such a write through.
        Taking over another host's just-expired lease of a SQLite file first watches
        it for a ttl (blocking, see `_watch`)."""
        seen = self._just_expired_elsewhere()
        if seen is not None:
            self._watch(seen)
        with self.store.transaction(fenced=False) as db:
            now = self.now()  # under the writer lock: a wait for it does not shorten the term
            row = _row(db)
            if self._ours(row):
                db.execute("UPDATE lease SET expires_at = ?, ttl = ? WHERE name = ?", (now + self.ttl, self.ttl, NAME))
            else:
                if seen is not None and row is not None and row != seen:
                    raise self._renewed(row)
                current = _living(row, now, self.host)
                if current is not None and (current.host, current.pid) != (self.host, self.pid):
                    raise EngineBusy(f"another batchtop engine holds {self.store.where}: {current}", current)
                issued = db.execute(
                    "INSERT INTO lease_tokens (name, token) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET"
                    " token = CASE WHEN lease_tokens.token > excluded.token - 1 THEN lease_tokens.token"
                    " ELSE excluded.token - 1 END + 1 RETURNING token",
                    (NAME, (row.token if row else 0) + 1),
                ).fetchone()
                assert issued is not None  # an upsert's RETURNING always has its row
                (token,) = issued
                db.execute(
                    "INSERT INTO lease (name, host, pid, expires_at, token, ttl) VALUES (?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid,"
                    " expires_at = excluded.expires_at, token = excluded.token, ttl = excluded.ttl",
                    (NAME, self.host, self.pid, now + self.ttl, token, self.ttl),
                )
                if row is not None and row.token:
                    log.warning("took the lease over from %s (token %d -> %d)", row, row.token, token)
                self.token = int(token)
        self.store.fence = self
        assert self.token is not None
        return self.token

    def _just_expired_elsewhere(self) -> Holder | None:
        """Another host's row that our clock calls expired, but only just: that
        host's clock may merely be behind ours. Never on a shared store: its one clock
        is the server's."""
        if self.store.shared:
            return None
        row = _row(self.store.db)
        if row is None or row.host == self.host or self._ours(row):
            return None
        late = self.now() - row.expires_at
        return row if 0 <= late < CLOCK_TOLERANCE else None

    def _watch(self, seen: Holder) -> None:
        """Watch the row on our monotonic clock for half the holder's ttl (it renews
        every third of it; WATCH_MAX at most): EngineBusy if it is renewed meanwhile
        (its holder is alive), else return and let the takeover go on. The time
        `current` has already seen this very row unchanged counts."""
        span = min(WATCH_MAX, (seen.ttl or self.ttl) / 2)
        since = self._seen[1] if self._seen is not None and self._seen[0] == seen else time.monotonic()
        end = since + span
        if end <= time.monotonic():
            return  # watched long enough already, and never renewed
        log.info("the lease of %s looks expired by our clock; watching it for %.0fs before taking it", seen, end - time.monotonic())
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(0.1, left))
            row = _row(self.store.db)
            if row is None:
                return  # released meanwhile: free
            if row != seen:
                raise self._renewed(row)

    def _renewed(self, row: Holder) -> EngineBusy:
        return EngineBusy(
            f"another batchtop engine holds {self.store.where}: {row}; its expiry has passed by this host's clock"
            " but it is still renewed, so the two hosts' clocks differ: check them (NTP)",
            row,
        )

    def renew(self) -> None:
        """Extend our current term; LeaseLost if it is no longer ours. Never takes
        the lease over: a term once lost stays lost until the next `acquire`."""
        with self.store.transaction(fenced=False) as db:
            cur = db.execute(
                "UPDATE lease SET expires_at = ? WHERE name = ? AND host = ? AND pid = ? AND token = ?",
                (self.now() + self.ttl, NAME, self.host, self.pid, self.token),
            )
            if cur.rowcount != 1:
                raise self._lost(db)

    def check(self, db: Connection) -> None:
        """The fence, inside a write transaction: raise LeaseLost (the transaction is
        rolled back) unless the lease row still carries our term."""
        if not self._ours(_row(db)):
            raise self._lost(db)

    def _lost(self, db: Connection) -> LeaseLost:
        now_holder = _row(db)
        by = f"now held by {now_holder} with token {now_holder.token}" if now_holder else "now held by nobody"
        return LeaseLost(f"{self} lost the lease on {self.store.where} (token {self.token}; {by})")

    def release(self) -> None:
        """Give the data dir back: delete our own row, never another's."""
        with self.store.transaction(fenced=False) as db:
            db.execute(
                "DELETE FROM lease WHERE name = ? AND host = ? AND pid = ? AND token = ?",
                (NAME, self.host, self.pid, self.token),
            )
        self.token = None
        if self.store.fence is self:
            self.store.fence = None

    @asynccontextmanager
    async def renewing(self) -> AsyncIterator[None]:
        """Keep our term alive in the background (every third of the ttl) for the
        duration, however long the provider calls inside take. Nested uses share
        one renewer. A renewal that finds the lease lost never takes it back; the
        next fenced write raises LeaseLost."""
        if self._renewer is not None and not self._renewer.done():
            yield
            return
        task = self._renewer = asyncio.create_task(self._renew_forever(), name="batchtop-lease-renewal")
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if self._renewer is task:
                self._renewer = None

    async def _renew_forever(self) -> None:
        interval = max(0.05, self.ttl / 3)
        reported: int | None = None
        while True:
            await asyncio.sleep(interval)
            if self.token is None:
                continue
            try:
                self.renew()
            except LeaseLost as exc:  # the next fenced write raises it; a new term (acquire) renews again
                if reported != self.token:
                    log.error("%s", exc)
                    reported = self.token
            except StoreBusy as exc:  # locked past the busy timeout (or the server unreachable): try again soon
                log.warning("store busy renewing the lease (%s)", exc)


def acquire(store: Store, ttl: float, now: float) -> Lease:
    """Take the lease for this process at `now`, as a new term (see `Lease.acquire`)."""
    lease = Lease(store, ttl, now=lambda: now)
    lease.acquire()
    return lease


def release(store: Store) -> None:
    """Give back the lease this store holds (its fence), or this process's row."""
    if isinstance(store.fence, Lease):
        store.fence.release()
        return
    with store.transaction(fenced=False) as db:
        db.execute("DELETE FROM lease WHERE name = ? AND host = ? AND pid = ?", (NAME, socket.gethostname(), os.getpid()))
