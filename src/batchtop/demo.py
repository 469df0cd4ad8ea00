"""`batchtop demo`: the console on a throw-away data dir fed by the simulator.

Everything is local to this process: a temp data dir (removed on exit, never the
real one), the simulator on a free 127.0.0.1 port, SDK env vars with a dummy key
set in this process only, short flush and poll intervals so everything on screen
moves within a minute, and a background workload enqueueing through the public
`batchtop.Client`. `DemoSession` is the same set-up without the App, for tests.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from batchtop.config import BufferOverride, Config, EngineConfig, FlushPolicy
from batchtop.sim import SimConfig, Simulator

if TYPE_CHECKING:  # pragma: no cover
    from batchtop.tui.app import BatchtopApp

OPENAI_MODELS = ("gpt-4o-mini", "gpt-4.1-nano", "o4-mini")
ANTHROPIC_MODELS = ("claude-haiku-4-5", "claude-sonnet-4-20250514")
ENV_KEYS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "NO_PROXY", "no_proxy")


def demo_config(speed: float = 1.0) -> Config:
    """Seconds instead of hours: flush after 5 s, poll every 2 s; one buffer waits
    longer so its deadline, not its age, decides when it goes."""
    s = 1.0 / max(speed, 0.01)
    return Config(
        engine=EngineConfig(poll_interval=max(0.5, 2.0 * s), max_attempts=3, lease_ttl=60.0),
        flush=FlushPolicy(max_age=5.0 * s, deadline_margin=5.0 * s),
        buffers=(BufferOverride("anthropic", None, "claude-haiku-4-5", {"max_age": 40.0 * s}),),
    )


def demo_sim_config(speed: float = 1.0) -> SimConfig:
    """Visible per-request times (a 50-line batch takes ~20 s), 10% first-try failures."""
    s = 1.0 / max(speed, 0.01)
    return SimConfig(
        validate_s=1.5 * s,
        per_request_s=0.4 * s,
        finalize_s=1.0 * s,
        cancel_s=2.0 * s,
        first_try_failure_rate=0.1,
        seed=random.randrange(1 << 30),
    )


def _openai_line(cid: str, model: str) -> dict[str, Any]:
    return {
        "custom_id": cid,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": f"Summarise document {cid}."}]},
    }


def _anthropic_line(cid: str, model: str) -> dict[str, Any]:
    return {
        "custom_id": cid,
        "params": {"model": model, "max_tokens": 200, "messages": [{"role": "user", "content": f"Classify {cid}."}]},
    }


class Workload(threading.Thread):
    """Enqueues a few requests every few seconds over several models, two lines
    that always fail (future dead letters), some with a deadline, and expires one
    running batch after a while."""

    def __init__(self, data_dir: Path, sim: Simulator, speed: float) -> None:
        super().__init__(name="batchtop-demo-workload", daemon=True)
        self.data_dir = data_dir
        self.sim = sim
        self.scale = 1.0 / max(speed, 0.01)
        self.stop = threading.Event()
        self.rng = random.Random()
        self.count = 0
        self.error: BaseException | None = None

    def _cid(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}-{self.count:05d}"

    def _round(self, client: Any, n_round: int) -> None:
        from batchtop.errors import BatchtopError

        models = [("openai", m) for m in OPENAI_MODELS] + [("anthropic", m) for m in ANTHROPIC_MODELS]
        for provider, model in self.rng.sample(models, 2):
            n = self.rng.randint(3, 15) if n_round % 5 else self.rng.randint(40, 70)
            make = _openai_line if provider == "openai" else _anthropic_line
            lines = [make(self._cid("doc"), model) for _ in range(n)]
            if n_round == 1:
                lines.append(make(self._cid("doc-failalways"), model))
            try:
                client.enqueue_many(lines)
            except BatchtopError:  # a demo must keep going; the console shows the state
                continue
        if n_round % 4 == 2:  # results needed by a deadline: flushed when the deadline says so
            lines = [_anthropic_line(self._cid("urgent"), "claude-haiku-4-5") for _ in range(self.rng.randint(2, 6))]
            client.enqueue_many(lines, deadline=time.time() + 86400 + 20 * self.scale)

    def _expire_one(self) -> bool:
        running = [b for b in self.sim.batches() if b["phase"] == "in_progress" and b["done"] < b["n"]]
        if not running:
            return False
        victim = max(running, key=lambda b: b["n"] - b["done"])
        self.sim.expire(victim["id"])
        return True

    def run(self) -> None:
        from batchtop.intake.client import Client

        try:
            with Client(self.data_dir, store=False) as client:  # the demo's throw-away file, always
                n_round = 0
                expired = False
                started = time.monotonic()
                while not self.stop.is_set():
                    n_round += 1
                    self._round(client, n_round)
                    if not expired and time.monotonic() - started > 25 * self.scale:
                        expired = self._expire_one()
                    self.stop.wait(self.rng.uniform(2.0, 4.0) * self.scale)
        except BaseException as exc:  # reported by the session; never kills the console
            self.error = exc


class DemoSession:
    """The demo's world: temp data dir, simulator, env, workload. A context manager."""

    def __init__(self, speed: float = 1.0) -> None:
        self.speed = speed
        self.config = demo_config(speed)
        self.sim = Simulator(demo_sim_config(speed))
        self.data_dir: Path | None = None
        self.workload: Workload | None = None
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> DemoSession:
        self.data_dir = Path(tempfile.mkdtemp(prefix="batchtop-demo-")) / "data"
        try:
            self.sim.start()
            self._saved_env = {k: os.environ.get(k) for k in ENV_KEYS}
            no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"]))
            os.environ.update(
                OPENAI_API_KEY="demo-key-not-secret",
                OPENAI_BASE_URL=self.sim.openai_base_url,
                ANTHROPIC_API_KEY="demo-key-not-secret",
                ANTHROPIC_BASE_URL=self.sim.anthropic_base_url,
                NO_PROXY=no_proxy,
                no_proxy=no_proxy,
            )
            from batchtop.store import Store

            Store(self.data_dir).close()  # created before the workload and the console race for it
            self.workload = Workload(self.data_dir, self.sim, self.speed)
            self.workload.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def app(self, exit_after: float | None = None) -> BatchtopApp:
        from batchtop.tui.app import BatchtopApp

        assert self.data_dir is not None
        return BatchtopApp(self.data_dir, self.config, exit_after=exit_after, label="demo: throw-away data dir, simulated providers")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.workload is not None:
            self.workload.stop.set()
            self.workload.join(timeout=10)
        self.sim.stop()
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def run_demo(speed: float = 1.0, seconds: float | None = None) -> int:
    """Run the console on a simulated workload; `seconds` quits by itself (tests)."""
    with DemoSession(speed) as demo:
        result = demo.app(exit_after=seconds).run()
    return int(result or 0)
