"""One estimator everywhere: `quote`, the status document's queued and in-flight
estimates and the budget check agree on the same requests.

Seen: quote said $0.0006 for a file that `--once` then showed as "in flight ≈$0.0020",
because the in-flight estimate guessed bytes/4 and 256 output tokens, ignoring the
requests' max_tokens (and it counted queued work as in flight).
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import pytest

from batchtop.config import Config, parse_config
from batchtop.engine.tick import Engine
from batchtop.intake.files import enqueue_files
from batchtop.intake.quote import quote
from batchtop.pricing.budget import budget_hold_reason
from batchtop.pricing.inflight import estimate_batch_cost
from batchtop.pricing.money import usd
from batchtop.sim import Simulator
from batchtop.store import Store
from batchtop.views import status
from images import b64, data_url, jpeg_header

from engine_helpers import close, config, sim, tick  # noqa: F401


def _chat(i: int, **body: object) -> dict:
    return {
        "custom_id": f"r{i}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"Say hello, number {i}."}], **body},
    }


def _write(path: Path, lines: list[dict]) -> str:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_quote_queued_and_in_flight_say_the_same(sim: Simulator, data_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    sim.config.per_request_s = 30.0  # keep the batch in flight while we look
    path = _write(tmp_path / "in.jsonl", [_chat(i, max_tokens=16) for i in range(20)])
    (quoted,) = quote([path], Config())
    with Store(data_dir) as store:
        enqueue_files(store, [path])
        queued = status.collect(store.db, Config(), time.time()).to_json()
        assert queued["queued_estimate_usd"] == quoted["batch_usd"]
        assert queued["in_flight_estimate_usd"] == 0.0  # nothing is in flight yet
        assert usd(estimate_batch_cost(store.db, Config(), "openai", "gpt-4o-mini", 20,
                                       queued["buffers"][0]["bytes"])) == quoted["batch_usd"]
        engine = Engine(store, config())
        report = tick(engine)
        assert len(report.submitted) == 1
        flying = status.collect(store.db, Config(), time.time()).to_json()
        close(engine)
    assert flying["in_flight_estimate_usd"] == quoted["batch_usd"]
    assert flying["queued_estimate_usd"] == 0.0
    (entry,) = flying["in_flight_estimate"]["by_model"]
    assert (entry["stage"], entry["input_tokens"], entry["output_tokens"]) == (
        "in_flight", quoted["input_tokens"], quoted["output_tokens"])
    assert entry["output_tokens"] == 20 * 16  # max_tokens, not 256 per request
    assert "bytes/4" not in flying["in_flight_estimate"]["basis"]


def test_a_part_of_a_buffer_is_estimated_in_proportion(tmp_path: Path) -> None:
    lines = [_chat(i, max_tokens=100) for i in range(10)]
    with Store(tmp_path / "d") as store:
        enqueue_files(store, [_write(tmp_path / "in.jsonl", lines)])
        (size,) = store.db.execute("SELECT queued_bytes FROM buffers").fetchone()
        whole = estimate_batch_cost(store.db, Config(), "openai", "gpt-4o-mini", 10, size)
        half = estimate_batch_cost(store.db, Config(), "openai", "gpt-4o-mini", 5, size // 2)
    assert whole is not None and half is not None
    assert abs(half * 2 - whole) <= Decimal("0.000001")


def test_an_inlined_image_no_longer_trips_the_budget_cap(sim: Simulator, data_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    """Seen: a request costing under $0.003 was held as "would exceed $0.01"."""
    photo = jpeg_header(728, 485, exif_bytes=65_000)
    body = {"model": "gpt-4o", "max_tokens": 200, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Describe this photo."},
        {"type": "image_url", "image_url": {"url": data_url(photo, "image/jpeg"), "detail": "high"}}]}]}
    path = _write(tmp_path / "in.jsonl", [{"custom_id": "img1", "method": "POST", "url": "/v1/chat/completions",
                                            "body": body}])
    (quoted,) = quote([path], Config())
    assert quoted["batch_usd"] < 0.003
    capped = parse_config({"budget": {"daily_usd": 0.01}, "engine": {"poll_interval": 0.1},
                           "flush": {"max_age": "0s"}})
    with Store(data_dir) as store:
        enqueue_files(store, [path])
        (size,) = store.db.execute("SELECT queued_bytes FROM buffers").fetchone()
        cost = estimate_batch_cost(store.db, capped, "openai", "gpt-4o", 1, size)
        assert usd(cost) == quoted["batch_usd"]
        assert budget_hold_reason(store.db, capped, "openai", cost, time.time()) is None
        engine = Engine(store, capped)
        assert len(tick(engine).submitted) == 1
        close(engine)
    assert len(b64(photo)) / 4 > 21_000  # what bytes/4 made of it


@pytest.mark.parametrize("n", [1, 3])
def test_uncapped_outputs_follow_the_observed_mean(tmp_path: Path, n: int) -> None:
    lines = [_chat(i, n=n) for i in range(4)]
    with Store(tmp_path / "d") as store:
        store.db.execute(
            "INSERT INTO usage_rollup (provider, model, first_attempt, succeeded, attempts, input_tokens, output_tokens)"
            " VALUES ('openai', 'gpt-4o-mini', 1, 1, 2, 0, 100)"  # observed mean: 50 per success
        )
        path = _write(tmp_path / "in.jsonl", lines)
        (quoted,) = quote([path], Config(), db=store.db)
        enqueue_files(store, [path])
        doc = status.collect(store.db, Config(), time.time()).to_json()
    (entry,) = doc["in_flight_estimate"]["by_model"]
    assert entry["output_tokens"] == quoted["output_tokens"] == 4 * 50 * n
    assert doc["queued_estimate_usd"] == quoted["batch_usd"]
