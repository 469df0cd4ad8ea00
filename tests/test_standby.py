"""`batchtop run --standby` (issue 14): a second engine waits while another holds the
store and takes over within `lease_ttl` of the holder dying, on both backends.

The in-process cases drive `entrypoints.stand_by` with a holder on another host name
(through the real lease API, on its own Store connection); the CLI cases run real
`batchtop run` processes against the simulator and SIGKILL the active one, its host
this one or (with root and `unshare -u`) another host name, so the takeover is by
the lease lapsing, not by the pid check.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batchtop.engine.entrypoints import stand_by
from batchtop.intake.validation import parse_lines
from batchtop.sim import Simulator
from batchtop.store import Store, lease
from batchtop.store.lease import Lease, LeaseLost
from batchtop.store.lifecycle import ProviderState

from engine_helpers import openai_lines, sim  # noqa: F401 (sim is a fixture)

TTL = 1.0


def _wait(predicate: Callable[[], object], timeout: float, what: str, *logs: Path) -> None:
    """Until `predicate()`; else fail saying `what`, with the end of each engine's log."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= end:
            tails = "".join(f"\n--- {log.name}:\n" + "\n".join(log.read_text().splitlines()[-20:]) for log in logs)
            raise AssertionError(what + tails)
        time.sleep(0.02)


class _Holder:
    """An engine on host-a that renews its lease every third of the ttl until it dies."""

    def __init__(self, store: Store, ttl: float) -> None:
        self.lease = Lease(store, ttl, host="host-a")
        self.lease.acquire()
        self._dead = threading.Event()
        self.last_renewal = time.monotonic()
        self._thread = threading.Thread(target=self._renew, daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._dead.wait(self.lease.ttl / 3):
            self.lease.renew()
            self.last_renewal = time.monotonic()

    def die(self) -> float:
        """Stop renewing, at once (a SIGKILL, a lost machine); when it last renewed."""
        self._dead.set()
        self._thread.join()
        return self.last_renewal


def _standby(store: Store, ttl: float) -> tuple[threading.Thread, threading.Event, list[object], list[str]]:
    said: list[str] = []
    result: list[object] = []
    stopped = threading.Event()
    standby_lease = Lease(store, ttl, host="host-b")

    def main() -> None:
        try:
            result.append(stand_by(standby_lease, stopped=stopped, say=said.append))
        except BaseException as exc:  # reported by the test
            result.append(exc)

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    return thread, stopped, result, said


def test_a_standby_waits_while_the_holder_renews_and_takes_over_within_the_ttl_of_its_death(
    data_dir: Path, store_url: str | None
) -> None:
    with Store(data_dir, url=store_url) as store_a, Store(data_dir, url=store_url) as store_b:
        holder = _Holder(store_a, TTL)
        thread, stopped, result, said = _standby(store_b, TTL)
        try:
            time.sleep(3 * TTL)  # the holder renews meanwhile: the standby stays one
            assert thread.is_alive() and not result, result
            assert len(said) == 1, said
            assert said[0] == f"standby: {holder.lease} (lease until" + said[0].split("(lease until", 1)[1]
            assert said[0].endswith(f" holds {store_b.where}; taking over when its lease lapses"), said
            died = holder.die()
            thread.join(TTL + 5)
            took = time.monotonic() - died
            assert result == [True], result
            assert took < TTL + 1.0, f"took over {took:.2f}s after the holder's last renewal (ttl {TTL}s)"
        finally:
            stopped.set()
            thread.join(10)
        held = lease.holder(store_a, host="host-c")
        assert held is not None and held.host == "host-b" and held.token == (holder.lease.token or 0) + 1
        with pytest.raises(LeaseLost):
            store_a.set_provider_state("openai", ProviderState(status="the old holder"))
        assert len(said) == 1


def test_a_standby_takes_a_free_store_at_once_and_says_nothing(data_dir: Path, store_url: str | None) -> None:
    with Store(data_dir, url=store_url) as store:
        said: list[str] = []
        standby_lease = Lease(store, TTL)
        assert stand_by(standby_lease, say=said.append) is True
        assert said == [] and store.fence is standby_lease
        held = lease.holder(store)
        assert held is not None and held.pid == os.getpid() and held.token == standby_lease.token


def test_a_standby_stops_at_once_when_told(data_dir: Path, store_url: str | None) -> None:
    with Store(data_dir, url=store_url) as store_a, Store(data_dir, url=store_url) as store_b:
        holder = _Holder(store_a, 30.0)
        thread, stopped, result, said = _standby(store_b, 30.0)
        try:
            _wait(lambda: said, 10, "the standby never said who holds the store")
            started = time.monotonic()
            stopped.set()
            thread.join(5)
            assert time.monotonic() - started < 1.5
            assert result == [False], result
        finally:
            stopped.set()
            holder.die()
        held = lease.holder(store_b, host="host-c")
        assert held is not None and held.host == "host-a"  # never touched


# -- the CLI: real engine processes --------------------------------------------------------

CONFIG = """
[engine]
poll_interval = "0.2s"
lease_ttl = "2s"

[flush]
max_age = 0
"""
LEASE_TTL = 2.0


def _can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "-u", "true"], capture_output=True, check=False).returncode == 0


def _store_args(data_dir: Path, store_url: str | None, config: Path) -> list[str]:
    return ["--data-dir", str(data_dir), *(["--store", store_url] if store_url else []), "--config", str(config)]


def _batchtop(args: list[str], log: Path, host: str | None = None) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "batchtop", *args]
    if host is not None:  # another host name: its own UTS namespace (the same pid: unshare and sh exec)
        cmd = ["unshare", "-u", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *cmd]
    with log.open("wb") as out:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=out, env=dict(os.environ))


def _enqueue(data_dir: Path, store_url: str | None, lines: list[dict]) -> None:
    parsed = parse_lines(("<test>", i, json.dumps(line)) for i, line in enumerate(lines, 1))
    with Store(data_dir, url=store_url) as store:
        store.enqueue(parsed)


def _holder_pid(data_dir: Path, store_url: str | None) -> int | None:
    with Store(data_dir, url=store_url) as store:
        held = lease.holder(store, host="an-observer")  # judged by expiry alone, as any other host would
    return held.pid if held is not None else None


def _stop(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=timeout)


@pytest.mark.slow
@pytest.mark.parametrize("holder_host", ["this-host", "other-host"])
def test_run_standby_takes_over_within_the_ttl_when_the_engine_is_killed(
    sim: Simulator, data_dir: Path, tmp_path: Path, store_url: str | None, holder_host: str
) -> None:
    if holder_host == "other-host" and not _can_unshare():
        pytest.skip("needs root and unshare for a second host name")
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    args = _store_args(data_dir, store_url, config)
    _enqueue(data_dir, store_url, openai_lines(3, prefix="before-"))
    logs = first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = _batchtop([*args, "run"], first_log, host="host-a" if holder_host == "other-host" else None)
    second: subprocess.Popen[bytes] | None = None
    try:
        _wait(lambda: _holder_pid(data_dir, store_url) == first.pid or first.poll() is not None, 30,
              "the first engine never took the lease", first_log)
        assert first.poll() is None, first_log.read_text()
        _wait(lambda: sim.submissions[("openai", "before-0")], 30, "the first engine never submitted", first_log)
        second = _batchtop([*args, "run", "--standby"], second_log)
        _wait(lambda: "standby: " in second_log.read_text() or second.poll() is not None, 30,
              "the standby never said it stands by", *logs)
        assert second.poll() is None, second_log.read_text()
        time.sleep(LEASE_TTL + 0.5)  # the first renews its lease meanwhile: the standby waits
        assert _holder_pid(data_dir, store_url) == first.pid

        first.kill()
        killed = time.monotonic()
        first.wait()  # reaped: its pid is gone from this host
        _wait(lambda: _holder_pid(data_dir, store_url) == second.pid or second.poll() is not None, LEASE_TTL + 1.0,
              "the standby did not take over within lease_ttl + 1 s", second_log)
        took = time.monotonic() - killed
        assert second.poll() is None, second_log.read_text()

        _enqueue(data_dir, store_url, openai_lines(2, prefix="after-"))
        _wait(lambda: sim.submissions[("openai", "after-0")] and sim.submissions[("openai", "after-1")], 30,
              "the new engine never submitted work enqueued after the kill", second_log)
        assert _holder_pid(data_dir, store_url) == second.pid
    finally:
        first.kill()
        first.wait()
        if second is not None:
            assert _stop(second) == 0
    log = second_log.read_text()
    host = "host-a" if holder_host == "other-host" else socket.gethostname()
    told = [line for line in log.splitlines() if "standby: " in line]
    assert len(told) == 1 and f"standby: pid {first.pid} on {host} (lease until" in told[0], log
    assert told[0].endswith("; taking over when its lease lapses"), told
    assert "took the lease over from" in log and "engine running" in log and "engine stopped" in log, log
    if store_url:
        password = store_url.split("@", 1)[0].rsplit(":", 1)[1]
        assert password not in log
    assert took < LEASE_TTL + 1.0


@pytest.mark.slow  # four engine processes: about 10 s
def test_run_standby_stops_at_once_on_a_signal_and_run_without_it_exits_1(
    sim: Simulator, data_dir: Path, tmp_path: Path, store_url: str | None
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.replace('lease_ttl = "2s"', 'lease_ttl = "30s"'))
    args = _store_args(data_dir, store_url, config)
    _enqueue(data_dir, store_url, openai_lines(1))
    first_log = tmp_path / "first.log"
    first = _batchtop([*args, "run"], first_log)
    try:
        _wait(lambda: _holder_pid(data_dir, store_url) == first.pid or first.poll() is not None, 30,
              "the first engine never took the lease", first_log)
        assert first.poll() is None, first_log.read_text()
        busy = subprocess.run([sys.executable, "-m", "batchtop", *args, "run"], capture_output=True, text=True,
                              env=dict(os.environ), timeout=60, check=False)
        assert busy.returncode == 1 and f"pid {first.pid}" in busy.stderr and "holds" in busy.stderr, busy.stderr
        for sig in (signal.SIGTERM, signal.SIGINT):
            log = tmp_path / f"standby-{sig.name}.log"
            standby = _batchtop([*args, "run", "--standby"], log)
            try:
                _wait(lambda: "standby: " in log.read_text() or standby.poll() is not None, 30,  # noqa: B023
                      "the standby never said it stands by", log)
                started = time.monotonic()
                standby.send_signal(sig)
                assert standby.wait(timeout=10) == 0, log.read_text()
                assert time.monotonic() - started < 2.0
            finally:
                standby.kill()
                standby.wait()
            text = log.read_text()
            assert "standby stopped" in text and "Traceback" not in text, text
        assert _holder_pid(data_dir, store_url) == first.pid  # the active engine never noticed
    finally:
        assert _stop(first) == 0
