"""What the engine does with a failed request: when it goes out again, and whether it
should at all. Real SQLite, the real SDKs, our simulator over HTTP."""

from __future__ import annotations

import time
from pathlib import Path

from batchtop.config import Config, EngineConfig, parse_config
from batchtop.engine import Engine
from batchtop.sim import Simulator
from batchtop.store import Store, actions

from engine_helpers import close, enqueue, openai_lines, sim, states, tick  # noqa: F401 (sim is a fixture)


def second_attempts(store: Store) -> int:
    (n,) = store.db.execute("SELECT count(*) FROM attempts WHERE number = 2").fetchone()
    return int(n)


def first_failures(store: Store) -> int:
    (n,) = store.db.execute(
        "SELECT count(*) FROM attempts WHERE number = 1 AND outcome IS NOT NULL AND outcome != 'succeeded'"
    ).fetchone()
    return int(n)


def test_failures_go_out_again_at_the_next_tick_not_after_max_age(sim: Simulator, data_dir: Path) -> None:
    """The default flush policy (max_age 1h): the operator flushed once; the batch's
    failures must not wait an hour in their buffer for a second try."""
    sim.config.first_try_failure_rate = 0.5
    enqueue(data_dir, openai_lines(44))
    with Store(data_dir) as store:
        engine = Engine(store, Config(engine=EngineConfig(poll_interval=0.1)))
        actions.request_flush(store, None, engine.now())
        assert len(tick(engine).submitted) == 1
        for _ in range(20):  # until the batch is ingested
            time.sleep(0.05)
            if tick(engine).ingested:
                break
        failed = first_failures(store)
        assert failed > 0, "the simulator failed no first try: the test proves nothing"
        if second_attempts(store) < failed:
            tick(engine)  # at the latest, the next tick sends them
        assert second_attempts(store) == failed
        assert states(store).get("queued", 0) == 0
        close(engine)


def test_engine_retry_delay_holds_failures_back_for_that_long(sim: Simulator, data_dir: Path) -> None:
    sim.config.first_try_failure_rate = 0.5
    enqueue(data_dir, openai_lines(30))
    offset = [0.0]
    with Store(data_dir) as store:
        cfg = parse_config({"engine": {"retry_delay": "10m", "poll_interval": 0.1}})
        assert cfg.engine.retry_delay == 600.0
        engine = Engine(store, cfg, now=lambda: time.time() + offset[0])
        actions.request_flush(store, None, engine.now())
        assert len(tick(engine).submitted) == 1
        for _ in range(20):
            time.sleep(0.05)
            if tick(engine).ingested:
                break
        failed = first_failures(store)
        assert failed > 0
        tick(engine)
        assert second_attempts(store) == 0 and states(store)["queued"] == failed
        (due,) = store.db.execute("SELECT flush_requested_at FROM buffers").fetchone()
        assert due is not None and 590 < due - engine.now() <= 600
        offset[0] = 601.0
        tick(engine)
        assert second_attempts(store) == failed
        close(engine)


def test_retry_delay_is_checked_like_every_duration(tmp_path: Path) -> None:
    import pytest

    from batchtop.config import ConfigError

    assert Config().engine.retry_delay == 0.0
    with pytest.raises(ConfigError, match="engine.retry_delay"):
        parse_config({"engine": {"retry_delay": "soon"}})
