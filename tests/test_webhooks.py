"""Webhook delivery against a real HTTP receiver on 127.0.0.1 that checks the HMAC, and
can be down (port closed), hang, or refuse; the real engine drives it through the
simulator with the real SDKs, on a real SQLite store."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from batchtop.config import Config, ConfigError, Webhook, parse_config
from batchtop.engine.tick import Engine
from batchtop.integrations import webhooks
from batchtop.sim import Simulator
from batchtop.store import Store, events
from batchtop.views import status

from conftest import run_batchtop
from engine_helpers import (  # noqa: F401  (sim is a fixture)
    all_settled,
    close,
    config,
    drive,
    enqueue,
    openai_lines,
    sim,
    tick,
)

SECRET = "s3cret-for-tests"
TOKEN = "tok-in-the-path-9f1c"


class Receiver:
    """A webhook receiver: verifies every signature, keeps what it got, answers as told."""

    def __init__(self) -> None:
        self.got: list[tuple[dict, bytes, dict[str, str]]] = []
        self.bad_signatures = 0
        self.answer: int | str = 200  # an HTTP status, or "hang"
        self.released = threading.Event()
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/{TOKEN}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                sig = self.headers.get("X-Batchtop-Signature", "")
                want = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
                ok = sig.startswith("sha256=") and hmac.compare_digest(sig.removeprefix("sha256="), want)
                with receiver.lock:
                    if not ok:
                        receiver.bad_signatures += 1
                    else:
                        receiver.got.append((json.loads(raw), raw, dict(self.headers)))
                    answer = receiver.answer
                if answer == "hang":
                    receiver.released.wait(30)
                    answer = 200
                try:
                    self.send_response(int(answer))
                    self.send_header("Content-Length", "5")
                    self.end_headers()
                    self.wfile.write(b"nope\x1b")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the engine gave up on us (killed, or timed out): as a real receiver sees it

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Down: the port is closed, connections are refused."""
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def ids(self) -> list[int]:
        with self.lock:
            return [doc["id"] for doc, _, _ in self.got]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.released.set()
        if r._server is not None:
            r.stop()


def hooked(base: Config, *hooks: Webhook) -> Config:
    return dataclasses.replace(base, webhooks=hooks)


def all_ids(store: Store) -> list[int]:
    return [e.id for e in events.after(store.db, 0, limit=100_000)]


def tick_until(engine: Engine, done: Callable[[], bool], seconds: float = 20.0, pause: float = 0.1) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "not done in time"
        tick(engine)
        time.sleep(pause)


def alerts_of(store: Store, engine: Engine) -> dict[str, str]:
    doc = status.collect(store.db, engine.config, time.time()).to_json()
    return {a["kind"]: a["message"] for a in doc["alerts"] if a["kind"].startswith("webhook")}


@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
def test_every_event_arrives_signed_across_an_outage_and_a_restart(
    sim: Simulator, data_dir: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    cfg = hooked(config(), Webhook(receiver.url, "HOOK_SECRET"))
    sim.config.first_try_failure_rate = 0.3
    enqueue(data_dir, openai_lines(40))
    with Store(data_dir) as store:
        engine = Engine(store, cfg)
        assert tick(engine).submitted
        tick_until(engine, lambda: receiver.ids() == all_ids(store))
        receiver.stop()  # down while the batches end, are ingested and retried
        drive(engine, all_settled(store))
        tick_until(engine, lambda: "webhook_failing" in alerts_of(store, engine))
        message = alerts_of(store, engine)["webhook_failing"]
        assert f"http://127.0.0.1:{receiver.port}" in message and TOKEN not in message and "events wait" in message
        pending = set(all_ids(store)) - set(receiver.ids())
        assert pending, "nothing happened while the receiver was down: the test proves nothing"
        close(engine)
        engine.settle_deliveries()
    receiver.start()  # back, and a new engine process picks up where the old one was
    with Store(data_dir) as store:
        engine = Engine(store, cfg)
        tick_until(engine, lambda: set(receiver.ids()) == set(all_ids(store)))
        assert receiver.bad_signatures == 0
        assert not alerts_of(store, engine)
        kinds = {doc["kind"] for doc, _, _ in receiver.got}
        assert {"submitted", "ended", "ingested", "resubmitted"} <= kinds
        # the body is exactly the event's JSON line, its id and kind in the headers too
        lines = {e.id: webhooks.body(e) for e in events.after(store.db, 0, limit=100_000)}
        for doc, raw, headers in receiver.got:
            assert raw == lines[doc["id"]]
            assert headers["X-Batchtop-Event-Id"] == str(doc["id"]) and headers["X-Batchtop-Event"] == doc["kind"]
        close(engine)
        assert engine.settle_deliveries()
    # neither the secret nor the URL's token is anywhere in the database
    dump = "\n".join(sqlite3.connect(data_dir / "batchtop.sqlite3").iterdump())
    assert SECRET not in dump and TOKEN not in dump


def test_a_hanging_receiver_does_not_slow_the_engine(
    sim: Simulator, data_dir: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    receiver.answer = "hang"
    enqueue(data_dir, openai_lines(5))
    with Store(data_dir) as store:
        engine = Engine(store, hooked(config(), Webhook(receiver.url, "HOOK_SECRET")))
        took = []
        for _ in range(6):
            started = time.monotonic()
            tick(engine)
            took.append(time.monotonic() - started)
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while not receiver.ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.ids(), "the receiver was never called: the test proves nothing"
        print(f"tick seconds with a hanging receiver: {[round(t, 3) for t in took]}")
        assert max(took[1:]) < 1.0  # the first builds the SDK clients
        receiver.released.set()
        receiver.answer = 200
        tick_until(engine, lambda: set(receiver.ids()) == set(all_ids(store)))
        close(engine)
        assert engine.settle_deliveries()


def test_a_hanging_receiver_does_not_delay_another(
    sim: Simulator, data_dir: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    receiver.answer = "hang"
    other = Receiver()
    try:
        enqueue(data_dir, openai_lines(3))
        with Store(data_dir) as store:
            hooks = (Webhook(receiver.url, "HOOK_SECRET"), Webhook(other.url.replace("/hooks/", "/other/"), "HOOK_SECRET"))
            engine = Engine(store, hooked(config(), *hooks))
            started = time.monotonic()
            drive(engine, all_settled(store))
            tick_until(engine, lambda: set(other.ids()) == set(all_ids(store)), seconds=webhooks.TIMEOUT - 1)
            print(f"the other receiver had every event after {time.monotonic() - started:.2f}s")
            assert len(receiver.ids()) == 1  # still holding the first one
            receiver.released.set()
            close(engine)
            engine.settle_deliveries()
    finally:
        other.released.set()
        other.stop()


def test_a_receiver_refusing_events_is_reported_and_they_are_given_up(
    sim: Simulator, data_dir: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, cli, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    receiver.answer = 400
    path = tmp_path / "config.toml"
    path.write_text(
        f'[flush]\nmax_age = "0s"\n\n[[webhooks]]\nurl = "{receiver.url}"\nsecret_env = "HOOK_SECRET"\nevents = ["submitted"]\n'
    )
    enqueue(data_dir, openai_lines(2))
    with Store(data_dir) as store:
        engine = Engine(store, hooked(config(), Webhook(receiver.url, "HOOK_SECRET", frozenset({"submitted"}))))
        tick(engine)
        tick_until(engine, lambda: "webhook_failing" in alerts_of(store, engine))
        shown = cli("--config", str(path), "--once", "--no-refresh", "--fail-on-alert")
        assert shown.code == 3, shown
        assert f"webhook http://127.0.0.1:{receiver.port}" in shown.out and "HTTP 400: nope" in shown.out
        assert TOKEN not in shown.out and "\x1b" not in shown.out
        tick_until(engine, lambda: "webhook_rejected" in alerts_of(store, engine))
        (submitted,) = [e.id for e in events.after(store.db, 0, kinds=["submitted"])]
        assert receiver.ids() == [submitted] * webhooks.REJECT_TRIES  # tried, then given up: not for ever
        assert "given up" in alerts_of(store, engine)["webhook_rejected"]
        # the receiver is fixed: later events arrive, the given-up one is not sent again
        receiver.answer = 200
        enqueue(data_dir, openai_lines(1, prefix="later"))
        tick_until(engine, lambda: len(set(receiver.ids())) == 2)
        assert "webhook_failing" not in alerts_of(store, engine)
        close(engine)
        engine.settle_deliveries()


def test_without_its_secret_nothing_is_sent_and_nothing_is_lost(
    sim: Simulator, data_dir: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    enqueue(data_dir, openai_lines(2))
    with Store(data_dir) as store:
        engine = Engine(store, hooked(config(), Webhook(receiver.url, "HOOK_SECRET")))
        tick(engine)
        tick_until(engine, lambda: "webhook_failing" in alerts_of(store, engine))
        assert "HOOK_SECRET is not set" in alerts_of(store, engine)["webhook_failing"]
        assert receiver.ids() == [] and receiver.bad_signatures == 0
        monkeypatch.setenv("HOOK_SECRET", SECRET)
        tick_until(engine, lambda: set(receiver.ids()) == set(all_ids(store)) and receiver.ids() != [])
        assert not alerts_of(store, engine)
        close(engine)
        engine.settle_deliveries()


def test_a_receiver_gets_only_the_kinds_it_asked_for(
    sim: Simulator, data_dir: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    enqueue(data_dir, openai_lines(3))
    with Store(data_dir) as store:
        engine = Engine(store, hooked(config(), Webhook(receiver.url, "HOOK_SECRET", frozenset({"ingested"}))))
        drive(engine, all_settled(store))
        tick_until(engine, lambda: bool(receiver.ids()))
        assert [doc["kind"] for doc, _, _ in receiver.got] == ["ingested"]
        close(engine)
        engine.settle_deliveries()


@pytest.mark.parametrize(
    ("entry", "key", "words"),
    [
        ({"secret_env": "S"}, "webhooks[0].url", "required"),
        ({"url": "ftp://h/x", "secret_env": "S"}, "webhooks[0].url", "http:// or https://"),
        ({"url": "https:///nohost", "secret_env": "S"}, "webhooks[0].url", "with a host"),
        ({"url": "https://h:99999/", "secret_env": "S"}, "webhooks[0].url", "not a URL"),
        ({"url": "https://h/"}, "webhooks[0].secret_env", "required"),
        ({"url": "https://h/", "secret_env": "whsec_abc-123"}, "webhooks[0].secret_env", "never the secret itself"),
        ({"url": "https://h/", "secret_env": "S", "events": []}, "webhooks[0].events", "non-empty"),
        ({"url": "https://h/", "secret_env": "S", "events": ["ended", "finished"]}, "webhooks[0].events[1]", "'finished'"),
        ({"url": "https://h/", "secret_env": "S", "secret": "x"}, "webhooks[0].secret", "unknown key"),
    ],
)
def test_bad_webhook_config_names_the_key(entry: dict, key: str, words: str, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    with pytest.raises(ConfigError) as info:
        parse_config({"webhooks": [entry]}, path)
    message = str(info.value)
    assert str(path) in message and f"'{key}'" in message and words in message


def test_a_good_webhook_config_loads(cli, tmp_path: Path) -> None:
    config = parse_config({"webhooks": [{"url": "https://h.example/x?t=1", "secret_env": "S", "events": ["alert"]}]})
    (hook,) = config.webhooks
    assert hook.wants() == ("alert",) and Webhook("https://h/", "S").wants() == events.KINDS
    assert webhooks.label("https://user:pw@h.example:8443/p?t=1") == "https://h.example:8443"
    path = tmp_path / "bad.toml"
    path.write_text('[[webhooks]]\nurl = "gopher://x"\nsecret_env = "S"\n')
    result = cli("--config", str(path), "tick")
    assert result.code == 1 and str(path) in result.err and "webhooks[0].url" in result.err
    assert not (tmp_path / "data").exists()


def _config_file(tmp_path: Path, receiver: Receiver) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        '[engine]\npoll_interval = "0.2s"\n\n[flush]\nmax_age = "0s"\n\n'
        f'[[webhooks]]\nurl = "{receiver.url}"\nsecret_env = "HOOK_SECRET"\n'
    )
    return path


@pytest.mark.slow
def test_tick_with_a_hanging_receiver_exits_within_its_grace(
    sim: Simulator, data_dir: Path, receiver: Receiver, tmp_path: Path
) -> None:
    """`batchtop tick` as cron runs it: the pass is done at once, and the process waits
    for its deliveries at most SETTLE_GRACE before exiting; nothing is lost."""
    receiver.answer = "hang"
    enqueue(data_dir, openai_lines(3))
    env = {"HOOK_SECRET": SECRET, "BATCHTOP_DATA_DIR": str(data_dir), "BATCHTOP_CONFIG": str(_config_file(tmp_path, receiver))}
    started = time.monotonic()
    result = run_batchtop("tick", env=env, timeout=60)
    took = time.monotonic() - started
    print(f"batchtop tick with a hanging receiver: {took:.2f}s (grace {webhooks.SETTLE_GRACE}s)")
    assert result.returncode == 0, result.stderr
    assert "submitted 1" in result.stdout
    assert took < webhooks.SETTLE_GRACE + 8  # python's start, one tick, then at most the grace
    assert receiver.ids()  # it was called, and hung
    receiver.released.set()
    receiver.answer = 200
    assert run_batchtop("tick", env=env, timeout=60).returncode == 0
    with Store(data_dir) as store:
        assert set(receiver.ids()) == set(all_ids(store))


@pytest.mark.slow
def test_an_engine_killed_mid_delivery_sends_that_event_again(
    sim: Simulator, data_dir: Path, receiver: Receiver, tmp_path: Path
) -> None:
    """SIGKILL while a receiver holds a POST open: the cursor never moved, so the next
    engine sends that event again (at least once) and then everything after it."""
    receiver.answer = "hang"
    enqueue(data_dir, openai_lines(3))
    env = {**os.environ, "HOOK_SECRET": SECRET, "BATCHTOP_DATA_DIR": str(data_dir),
           "BATCHTOP_CONFIG": str(_config_file(tmp_path, receiver))}
    proc = subprocess.Popen([sys.executable, "-m", "batchtop", "run"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not receiver.ids():
            assert time.monotonic() < deadline and proc.poll() is None, "never delivered"
            time.sleep(0.05)
        first = receiver.ids()[0]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    receiver.answer = 200
    receiver.released.set()
    with Store(data_dir) as store:
        engine = Engine(store, hooked(config(), Webhook(receiver.url, "HOOK_SECRET")))
        os.environ["HOOK_SECRET"] = SECRET
        try:
            drive(engine, all_settled(store))
            tick_until(engine, lambda: set(receiver.ids()) == set(all_ids(store)))
        finally:
            del os.environ["HOOK_SECRET"]
        assert receiver.ids().count(first) >= 2  # sent again after the kill
        close(engine)
        engine.settle_deliveries()
