"""The engine's lease on both backends, PostgreSQL a real server (issue 14, "exactly
once across hosts"): one active engine per store, a fencing token that only grows,
every write of an engine whose lease was taken over refused in its own transaction.

Each host is a `Lease` with its own host name on its own `Store` connection, through
the real lease API, as it is on a second machine. On PostgreSQL expiry is judged by
the server's clock only, whatever the hosts' clocks say.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from batchtop.store import Store, lease
from batchtop.store.lease import EngineBusy, Lease, LeaseLost
from batchtop.store.lifecycle import ProviderState

TTL = 0.5


def _open(data_dir: Path, url: str | None) -> Store:
    return Store(data_dir, url=url)


def _dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_lease_taken_over_after_expiry_fences_every_write_of_the_old_holder(
    data_dir: Path, store_url: str | None
) -> None:
    with _open(data_dir, store_url) as store_a, _open(data_dir, store_url) as store_b:
        a = Lease(store_a, TTL, host="host-a")
        first = a.acquire()
        store_a.set_provider_state("openai", ProviderState(status="a's pass"))  # ours: it goes through
        b = Lease(store_b, TTL, host="host-b")
        with pytest.raises(EngineBusy, match="pid .* on host-a") as busy:
            b.acquire()  # a's lease is live
        assert busy.value.holder is not None and busy.value.holder.host == "host-a"
        time.sleep(TTL + 0.2)  # a stops renewing (paused, cut off): its lease lapses
        second = b.acquire()
        assert second > first
        held = lease.holder(store_b, host="host-c")
        assert held is not None and (held.host, held.token) == ("host-b", second)

        with pytest.raises(LeaseLost, match="lost the lease") as lost:
            with store_a.transaction():
                raise AssertionError("the body of a fenced write ran after a takeover")
        assert "host-b" in str(lost.value)
        password = urlsplit(store_url).password if store_url else None
        assert password is None or password not in str(lost.value)  # the store is named by its safe URL
        with pytest.raises(LeaseLost):
            store_a.set_provider_state("openai", ProviderState(status="a again"))
        with pytest.raises(LeaseLost):
            a.renew()  # a renewal never takes a lost term back
        assert store_b.provider_state("openai").status == "a's pass"  # nothing of a's changed
        assert not store_a.db.in_transaction and not store_b.db.in_transaction
        store_b.set_provider_state("openai", ProviderState(status="b's pass"))  # the holder's writes go through
        assert store_a.provider_state("openai").status == "b's pass"


def test_the_fence_is_checked_under_the_writer_lock(data_dir: Path, store_url: str | None) -> None:
    """A takeover waits for a write in progress and the write commits whole; the old
    holder's next write, however soon, sees the new term (its check runs after the
    lock is taken, on what the takeover committed)."""
    with _open(data_dir, store_url) as store_a, _open(data_dir, store_url) as store_b:
        a = Lease(store_a, TTL, host="host-a")
        a.acquire()
        time.sleep(TTL + 0.2)
        inside = threading.Event()
        b = Lease(store_b, TTL, host="host-b")
        done: list[object] = []

        def take_over() -> None:
            inside.wait(10)
            try:
                done.append(b.acquire())
            except BaseException as exc:  # reported by the assertion below
                done.append(exc)

        thread = threading.Thread(target=take_over)
        thread.start()
        try:
            with store_a.transaction() as db:  # a's check passes: the row is still a's
                db.execute("INSERT INTO engine_state (key, value) VALUES (?, ?)", ("test:a", "in progress"))
                inside.set()
                time.sleep(0.8)
                assert not done, "the takeover did not wait for the write lock"
        finally:
            thread.join(60)
        assert len(done) == 1 and isinstance(done[0], int), done
        assert _marker(store_b) == "in progress"  # committed whole, before the takeover
        with pytest.raises(LeaseLost):
            with store_a.transaction() as db:
                db.execute("UPDATE engine_state SET value = ? WHERE key = ?", ("too late", "test:a"))
        assert _marker(store_b) == "in progress"


def _marker(store: Store) -> str | None:
    row = store.db.execute("SELECT value FROM engine_state WHERE key = ?", ("test:a",)).fetchone()
    return row[0] if row else None


def test_tokens_only_grow_across_releases_and_takeovers(data_dir: Path, store_url: str | None) -> None:
    with _open(data_dir, store_url) as store:
        tokens = []
        first = Lease(store, 5.0)
        tokens.append(first.acquire())
        assert first.acquire() == tokens[-1]  # a renewal keeps the term
        first.release()
        assert lease.holder(store) is None
        second = Lease(store, 5.0, host="host-b")
        tokens.append(second.acquire())
        third = Lease(store, 5.0, host="host-b", pid=second.pid)  # a new term, same host and pid
        tokens.append(third.acquire())
        second.release()  # the old term's release leaves the new row alone
        assert lease.holder(store, host="host-b") is not None
        third.release()
        tokens.append(Lease(store, 5.0).acquire())
        assert tokens == sorted(set(tokens)) and tokens[0] >= 1, tokens
        with pytest.raises(EngineBusy, match="another batchtop engine holds"):
            Lease(store, 5.0, host="host-c").acquire()


def test_a_dead_holder_on_this_host_is_taken_over_at_once(data_dir: Path, store_url: str | None) -> None:
    with _open(data_dir, store_url) as store:
        crashed = Lease(store, 3600.0, pid=_dead_pid())  # this host, a long ttl, its process gone
        crashed.acquire()
        assert lease.holder(store) is None
        started = time.monotonic()
        token = Lease(store, 3600.0).acquire()
        assert time.monotonic() - started < 2.0
        assert token > (crashed.token or 0)
        # seen from another host, the dead process's lease would still run: only this host knows
        held = lease.holder(store, host="host-b")
        assert held is not None and held.token == token


def test_on_postgresql_expiry_is_the_servers_clock_not_the_hosts(data_dir: Path, pg_url: str) -> None:
    """Two hosts whose clocks are an hour apart either way agree on the lease: both
    write and read the expiry by the server's clock, and no clock-skew watch delays a
    takeover."""
    with Store(data_dir, url=pg_url) as store_a, Store(data_dir, url=pg_url) as store_b:
        assert store_a.shared
        behind = Lease(store_a, 2.0, host="host-a", now=lambda: time.time() - 3600)
        behind.acquire()
        held = lease.holder(store_a, time.time() + 7200, host="host-c")  # a host's clock does not count
        assert held is not None and held.host == "host-a"
        assert abs(held.expires_at - (store_a.clock() + 2.0)) < 1.0
        ahead = Lease(store_b, 2.0, host="host-b", now=lambda: time.time() + 3600)
        with pytest.raises(EngineBusy, match="host-a"):
            ahead.acquire()  # by its own clock host-a's lease lapsed an hour ago; by the server's it runs
        end = time.monotonic() + 10
        while True:
            try:
                token = ahead.acquire()
                break
            except EngineBusy:
                assert time.monotonic() < end, "never taken over after the server-side expiry"
                time.sleep(0.05)
        waited = store_b.clock() - held.expires_at
        assert -0.1 < waited < 0.5, f"taken {waited:.2f}s after the expiry by the server's clock"
        assert token == (behind.token or 0) + 1
        with pytest.raises(LeaseLost):
            store_a.set_provider_state("openai", ProviderState(status="x"))


def test_a_zombie_holder_on_this_host_is_gone(store_url: str | None, data_dir: Path) -> None:
    """An engine killed but not yet reaped by its parent (a zombie) holds nothing: a
    console or a standby takes over at once, as for a pid that is gone."""
    import os
    import socket

    pid = os.fork()
    if pid == 0:
        os._exit(0)
    try:
        time.sleep(0.2)  # exited, not reaped: a zombie
        with Store(data_dir, url=store_url) as store:
            store.db.execute(
                "INSERT INTO lease (name, host, pid, expires_at, token) VALUES ('engine', ?, ?, 9e12, 1)",
                (socket.gethostname(), pid),
            )
            assert lease.holder(store) is None
    finally:
        os.waitpid(pid, 0)
