"""Hardening: two hosts sharing one data dir (a network mount) never both act on a
submission (issue 19, item 3).

The second host is real where it can be: a `batchtop` process in its own UTS
namespace (`unshare -u`, as root) with its own host name. Where the test needs a
clock that runs ahead, the second host is an Engine in this process with another
host name and clock, through the real lease API on its own Store connection: the
lease code takes both, as it does on a real second machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from batchtop.config import FlushPolicy
from batchtop.engine.tick import Engine
from batchtop.providers.base import RemoteBatch
from batchtop.store import Store, lease, submissions
from batchtop.store.ingest import BatchIngest, Settle
from batchtop.store.lease import EngineBusy, Lease, LeaseLost

from engine_helpers import close, config, enqueue, openai_lines, run, states
from hostile_provider import HostileProvider, hostile  # noqa: F401 (hostile is a fixture)


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-u", "true"], capture_output=True, check=False).returncode == 0


def _on_host(host: str | None, args: list[str]) -> list[str]:
    """`batchtop ARGS` as a process of this host, or of another host name."""
    cmd = [sys.executable, "-m", "batchtop", *args]
    if host is None:
        return cmd
    return ["unshare", "-u", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *cmd]


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare for a second host name")
@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
def test_a_second_host_cannot_take_the_lease_during_an_upload_that_outlasts_the_ttl(
    hostile: HostileProvider, data_dir: Path, tmp_path: Path
) -> None:
    # the case, scaled down: lease_ttl 1 s, an upload that takes 4 s
    hostile.config.slow_upload_s = 4.0
    cfg = tmp_path / "config.toml"
    cfg.write_text('[flush]\nmax_age = 0\n[engine]\npoll_interval = "0.2s"\nlease_ttl = "1s"\n')
    enqueue(data_dir, openai_lines(3))
    args = ["--data-dir", str(data_dir), "--config", str(cfg)]
    env = {**os.environ}
    first = subprocess.Popen(_on_host(None, [*args, "run"]), env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        end = time.monotonic() + 30
        while hostile.state.uploads_started == 0:
            assert first.poll() is None and time.monotonic() < end, "the first engine never started its upload"
            time.sleep(0.05)
        started = time.monotonic()
        second_tries = []
        # host-b keeps trying while the upload runs, well past the ttl
        while time.monotonic() - started < 3.5 and not hostile.state.creates_by_uid:
            second = subprocess.run(_on_host("host-b", [*args, "tick"]), env=env, capture_output=True, text=True,
                                    timeout=60, check=False)
            second_tries.append((second.returncode, second.stderr.strip().splitlines()[-1:]))
        assert second_tries, "the second host never tried"
        end = time.monotonic() + 30
        while sum(hostile.state.submissions.values()) < 3 or not hostile.state.creates_by_uid:
            assert time.monotonic() < end, "the first engine never finished its submission"
            time.sleep(0.05)
        time.sleep(1.0)  # any second submission would have arrived by now
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)
    # the provider received each submission once: nothing orphaned, nothing billed twice
    assert dict(hostile.state.creates_by_uid.items()) and set(hostile.state.creates_by_uid.values()) == {1}, (
        hostile.state.creates_by_uid, second_tries)
    assert set(hostile.state.submissions.values()) == {1}, hostile.state.submissions
    # every try of the second host was refused, naming the holder
    assert all(code == 1 and "another batchtop engine holds" in " ".join(err) for code, err in second_tries), second_tries
    with Store(data_dir) as store:
        assert store.db.execute("SELECT count(*) FROM batches WHERE provider_batch_id IS NOT NULL").fetchone() == (1,)


def _in_thread(engine: Engine, result: list[object]) -> threading.Thread:
    """Run one tick of `engine` in a thread (its own loop), keeping what it returned or raised."""

    def go() -> None:
        try:
            result.append(run(engine, engine.tick()))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result.append(exc)

    thread = threading.Thread(target=go)
    thread.start()
    return thread


def test_a_host_whose_clock_runs_120s_ahead_is_refused_while_the_first_engine_runs(
    hostile: HostileProvider, data_dir: Path
) -> None:
    hostile.config.slow_upload_s = 4.0
    enqueue(data_dir, openai_lines(3))
    with Store(data_dir) as store_a, Store(data_dir) as store_b:
        engine_a = Engine(store_a, config(lease_ttl=2.0))
        engine_b = Engine(store_b, config(lease_ttl=2.0), host="host-b", now=lambda: time.time() + 120)
        try:
            result: list[object] = []
            thread = _in_thread(engine_a, result)
            end = time.monotonic() + 30
            while hostile.state.uploads_started == 0:
                assert time.monotonic() < end
                time.sleep(0.02)
            # by host-b's clock host-a's lease ran out two minutes ago, but host-a renews it
            assert lease.holder(store_b, time.time() + 120, host="host-b") is None
            with pytest.raises(EngineBusy, match="clocks differ"):
                engine_b.lease.acquire()
            thread.join(30)
            assert result and not isinstance(result[0], BaseException), result
            assert set(hostile.state.creates_by_uid.values()) == {1}
            assert states(store_a) == {"in_flight": 3}
            assert store_a.db.execute("SELECT host FROM lease").fetchone() == (socket.gethostname(),)
        finally:
            thread.join(30)
            close(engine_a)
            close(engine_b)


def test_a_host_whose_clock_is_far_ahead_takes_over_and_the_first_is_fenced_mid_submission(
    hostile: HostileProvider, data_dir: Path
) -> None:
    hostile.config.slow_upload_s = 2.0
    enqueue(data_dir, openai_lines(3))
    here = socket.gethostname()
    ahead = 3600.0  # beyond any clock difference the lease tolerates: only the fence is left
    with Store(data_dir) as store_a, Store(data_dir) as store_b:
        engine_a = Engine(store_a, config(lease_ttl=5.0))
        engine_b = Engine(store_b, config(lease_ttl=5.0), host="host-b", now=lambda: time.time() + ahead)
        try:
            result: list[object] = []
            thread = _in_thread(engine_a, result)
            end = time.monotonic() + 30
            while hostile.state.uploads_started == 0:
                assert time.monotonic() < end
                time.sleep(0.02)
            # host-b's clock says host-a's lease ran out an hour ago: it takes over at once...
            hostile.config.slow_upload_s = 0.0
            engine_b.lease.acquire()
            assert engine_b.lease.token is not None and engine_b.lease.token > (engine_a.lease.token or 0)
            # ...and host-a, whose upload then completes, may record nothing
            thread.join(30)
            assert result and isinstance(result[0], LeaseLost), result
            (intent,) = submissions.pending(store_b, "openai")
            assert intent.uid in hostile.state.creates_by_uid
            anomaly = store_b.db.execute("SELECT detail FROM anomalies WHERE kind = 'orphaned_batch'").fetchone()
            assert anomaly and "lost the lease" in anomaly[0]
            # host-b reconciles the intent: it adopts host-a's batch rather than sending it again
            report = run(engine_b, engine_b.tick())
            assert not report.errors and report.adopted and not report.submitted, report
            assert set(hostile.state.creates_by_uid.values()) == {1}
            assert set(hostile.state.submissions.values()) == {1}
            # host-a's release leaves host-b's row alone
            engine_a.lease.release()
            holder = lease.holder(store_a, time.time() + ahead, host="host-b")
            assert holder is not None and holder.host == "host-b", holder
            assert holder.host != here
            engine_b.lease.release()
            assert store_a.db.execute("SELECT count(*) FROM lease").fetchone() == (0,)
        finally:
            thread.join(30)
            close(engine_a)
            close(engine_b)


def _plan_one(store: Store) -> submissions.Intent:
    (buffer_id,) = store.db.execute("SELECT id FROM buffers").fetchone()
    intent = submissions.plan(store, buffer_id, FlushPolicy(max_age=0.0), "default", time.time())
    assert intent is not None
    return intent


def test_every_state_change_of_a_submission_is_fenced_by_the_token(data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(4))
    with Store(data_dir) as store_a, Store(data_dir) as store_b:
        mine = Lease(store_a, 5.0)
        mine.acquire()
        intent = _plan_one(store_a)  # allowed: we hold the lease
        # another host takes over (its clock ahead); every write of ours is refused now
        theirs = Lease(store_b, 5.0, host="host-b", now=lambda: time.time() + 3600)
        theirs.acquire()
        before = store_a.db.execute("SELECT status, provider_batch_id FROM batches").fetchall()
        claim = store_a.db.execute("SELECT queued, claimed_through FROM buffers").fetchall()
        remote = RemoteBatch("batch_x", "validating", 4, 0, 0, time.time())
        with pytest.raises(LeaseLost, match="lost the lease"):
            submissions.record_submitted(store_a, intent.id, remote, time.time())
        with pytest.raises(LeaseLost):
            submissions.undo(store_a, intent.id, "refused", None, time.time())
        with pytest.raises(LeaseLost):
            submissions.mark_unknown(store_a, intent.id, ["a", "b"])
        with pytest.raises(LeaseLost):
            _plan_one(store_a)
        with pytest.raises(LeaseLost):
            BatchIngest(store_a, intent.id, Settle(3, True)).finish(time.time())
        with pytest.raises(LeaseLost):
            mine.renew()
        assert store_a.db.execute("SELECT status, provider_batch_id FROM batches").fetchall() == before
        # the intent still claims its 4 requests (one id range: their rows untouched, none
        # queued for the buffer, its cursor past them, no attempt written yet)
        assert store_a.db.execute("SELECT queued, claimed_through FROM buffers").fetchall() == claim == [(0, 4)]
        assert states(store_a) == {"queued": 4}
        assert store_a.db.execute("SELECT count(*) FROM attempts").fetchone() == (0,)
        # the holder's writes go through, conditional on the intent still being its own
        assert store_b.fence is theirs
        assert submissions.record_submitted(store_b, intent.id, remote, time.time())
        assert states(store_b) == {"in_flight": 4}
        assert store_b.db.execute("SELECT number, count(*) FROM attempts GROUP BY 1").fetchall() == [(1, 4)]
        other = RemoteBatch("batch_y", "validating", 4, 0, 0, time.time())
        assert not submissions.record_submitted(store_b, intent.id, other, time.time())
        assert store_b.db.execute("SELECT provider_batch_id FROM batches").fetchall() == [("batch_x",)]
        orphans = [d for (d,) in store_b.db.execute("SELECT detail FROM anomalies WHERE kind = 'orphaned_batch'")]
        assert len(orphans) == 2 and "batch_y" in orphans[1] and "another engine" in orphans[1], orphans


def test_tokens_only_grow_and_a_release_deletes_only_its_own_row(data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(1))
    with Store(data_dir) as store:
        tokens = []
        first = Lease(store, 5.0)
        tokens.append(first.acquire())
        assert first.acquire() == tokens[-1]  # a renewal keeps the term
        first.release()
        second = Lease(store, 5.0, host="host-b")
        tokens.append(second.acquire())
        # a new term on the same host and pid (a restarted engine object): the old term's
        # release must not delete the new row
        third = Lease(store, 5.0, host="host-b", pid=second.pid)
        tokens.append(third.acquire())
        second.release()
        assert lease.holder(store, time.time(), host="host-b") is not None
        third.release()
        assert store.db.execute("SELECT count(*) FROM lease").fetchone() == (0,)
        tokens.append(Lease(store, 5.0).acquire())
        assert tokens == sorted(set(tokens)), tokens
        # another host's live lease is refused, naming it
        with pytest.raises(EngineBusy, match="on " + socket.gethostname()):
            Lease(store, 5.0, host="host-c").acquire()


def test_a_lease_just_expired_elsewhere_and_not_renewed_is_taken_after_watching_it(data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(1))
    with Store(data_dir) as store:
        gone = Lease(store, 1.0, host="host-a")  # acquired once, then its host went away
        gone.acquire()
        late = Lease(store, 1.0, host="host-b", now=lambda: time.time() + 5)  # 4 s past its expiry
        started = time.monotonic()
        token = late.acquire()
        waited = time.monotonic() - started
        assert 0.4 < waited < 3.0, f"watched {waited:.1f}s for a 1 s ttl"
        assert token > (gone.token or 0)
        with pytest.raises(LeaseLost):
            gone.renew()


def test_the_lease_is_renewed_while_a_long_provider_call_is_pending(hostile: HostileProvider, data_dir: Path) -> None:
    hostile.config.slow_upload_s = 2.0
    enqueue(data_dir, openai_lines(2))
    with Store(data_dir) as store, Store(data_dir) as other:
        engine = Engine(store, config(lease_ttl=0.6))
        try:
            result: list[object] = []
            thread = _in_thread(engine, result)
            end = time.monotonic() + 30
            while hostile.state.uploads_started == 0:  # the engine holds the lease and waits on the upload
                assert time.monotonic() < end
                time.sleep(0.02)
            refused = 0
            while thread.is_alive():
                try:
                    Lease(other, 0.6, host="host-b").acquire()
                except EngineBusy:
                    refused += 1
                else:
                    raise AssertionError("host-b took the lease while the upload was pending")
                time.sleep(0.1)
            thread.join()
            assert result and not isinstance(result[0], BaseException), result
            assert refused >= 10, f"only {refused} tries during the upload"
            assert states(store) == {"in_flight": 2}
        finally:
            thread.join(30)
            close(engine)
