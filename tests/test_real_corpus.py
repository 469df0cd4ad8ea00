"""Recorded real-world result lines, replayed through the real path and priced by hand.

The simulator's replay mode answers each request with its recorded line verbatim
(tests/corpus/real, sources in its README); the real SDKs fetch the results, the
engine ingests them into a real store. Each line's cost is then checked against
arithmetic done here from the line's own usage and the list prices written out
below (not read from batchtop's table), to 1e-6.
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from batchtop.config import Config
from batchtop.engine.tick import Engine
from batchtop.intake.client import Client
from batchtop.pricing.savings import savings
from batchtop.pricing.table import Tokens, shipped_table
from batchtop.sim import SimConfig, Simulator
from batchtop.sim.replay import load_recorded
from batchtop.store import Store

from engine_helpers import all_settled, close, config, drive, point_sdks_at

REAL = Path(__file__).parent / "corpus" / "real"
FILES = sorted(p.relative_to(REAL).as_posix() for p in REAL.glob("*/*.jsonl"))
MILLION = Decimal(1_000_000)
TOLERANCE = Decimal("0.000001")

# List prices (USD per million tokens) by hand, from the providers' pricing pages:
# (input, cache read, 5-minute cache write, 1-hour cache write, output).
HAND_PRICES: dict[str, tuple[str, str, str, str, str]] = {
    "gpt-4o-2024-05-13": ("5.00", "5.00", "5.00", "5.00", "15.00"),  # no cached-input discount listed
    "gpt-4o-2024-08-06": ("2.50", "1.25", "2.50", "2.50", "10.00"),
    "gpt-4o-mini": ("0.15", "0.075", "0.15", "0.15", "0.60"),
    "claude-sonnet-4-5-20250929": ("3", "0.30", "3.75", "6", "15"),
    "claude-3-5-sonnet-20240620": ("3", "0.30", "3.75", "6", "15"),
}


def _model(provider: str, line: dict) -> str:
    return line["result"]["message"]["model"] if provider == "anthropic" else line["response"]["body"]["model"]


def _hand_batch_cost(provider: str, line: dict) -> Decimal:
    """Half the list cost of the line's usage, computed from the raw usage object."""
    inp, read, write5, write1, out = (Decimal(p) for p in HAND_PRICES[_model(provider, line)])
    if provider == "anthropic":
        u = line["result"]["message"]["usage"]
        split = u.get("cache_creation") or {}
        one_hour = split.get("ephemeral_1h_input_tokens", 0)
        five_min = split.get("ephemeral_5m_input_tokens", u.get("cache_creation_input_tokens", 0) if not split else 0)
        cost = (u["input_tokens"] * inp + u.get("cache_read_input_tokens", 0) * read + five_min * write5
                + one_hour * write1 + u["output_tokens"] * out)
    else:
        u = line["response"]["body"]["usage"]
        cached = (u.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
        cost = (u["prompt_tokens"] - cached) * inp + cached * read + u["completion_tokens"] * out
    return cost / MILLION / 2


def _request(provider: str, custom_id: str, model: str) -> dict:
    messages = [{"role": "user", "content": f"replay {custom_id}"}]
    if provider == "anthropic":
        return {"custom_id": custom_id, "params": {"model": model, "max_tokens": 1024, "messages": messages}}
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": model, "messages": messages}}


@pytest.mark.parametrize("name", FILES)
def test_recorded_lines_replay_verbatim_and_cost_what_hand_arithmetic_says(
    name: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = name.split("/")[0]
    recorded = load_recorded([REAL / name])
    lines = {cid: json.loads(raw) for cid, raw in recorded.items()}
    sim = Simulator(SimConfig(replay=recorded)).start()
    try:
        point_sdks_at(sim, monkeypatch)
        with Client(data_dir) as bt:
            bt.enqueue_many([_request(provider, cid, _model(provider, line)) for cid, line in lines.items()])
        with Store(data_dir) as store:
            engine = Engine(store, config())
            drive(engine, all_settled(store))
            close(engine)
            rows = store.db.execute(
                "SELECT r.custom_id, a.response, a.input_tokens, a.cached_input_tokens, a.cache_creation_input_tokens,"
                " a.output_tokens, a.cache_creation_1h_input_tokens, b.model FROM attempts a"
                " JOIN requests r ON r.id = a.request_id JOIN batches b ON b.id = a.batch_id"
            ).fetchall()
            doc = savings(store.db, Config())
    finally:
        sim.stop()
    assert {r[0] for r in rows} == set(recorded) and len(rows) == len(recorded)  # one attempt each: all succeeded
    table = shipped_table()
    by_model: dict[str, Decimal] = {}
    for cid, response, i, c, w, o, w1h, model in rows:
        assert response.encode() == recorded[cid]  # byte for byte through the SDK and the store
        price = table.price(provider, model)
        assert price is not None, model
        ours = price.batch_cost(Tokens(i, c, w, o, w1h))
        hand = _hand_batch_cost(provider, lines[cid])
        assert abs(ours - hand) <= TOLERANCE, (cid, ours, hand)
        by_model[model] = by_model.get(model, Decimal(0)) + hand
    for row in doc["by_model"]:
        assert row["price_known"] is True
        assert abs(Decimal(str(row["batch_cost_usd"])) - by_model[row["model"]]) <= TOLERANCE


def test_the_measured_lines_give_the_issues_figures() -> None:
    """gpt-4o-2024-05-13 at its own price; 1-hour writes at 2x input."""
    enzy = json.loads((REAL / "openai" / "gpt-4o-2024-05-13_enzyextract.jsonl").read_text())
    assert _hand_batch_cost("openai", enzy) == (771 * Decimal(5) + 356 * Decimal(15)) / MILLION / 2
    recorded = load_recorded([REAL / "anthropic" / "composed_cache_usage.jsonl"])
    measured = json.loads(recorded["one-hour-writes-measured"])
    assert round(_hand_batch_cost("anthropic", measured), 4) == Decimal("0.2030")


def test_replay_needs_a_custom_id_per_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"custom_id": "a"}\n{"custom_id": "a"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        load_recorded([path])


def test_batchtop_sim_replay_serves_the_recorded_lines(tmp_path: Path) -> None:
    """`batchtop sim --replay FILE`: the real SDK downloads the recorded output file byte for byte."""
    import openai

    from test_sim_cli import SimProcess

    path = REAL / "openai" / "gpt-4o-2024-05-13_enzyextract.jsonl"
    (custom_id,) = load_recorded([path])
    sim = SimProcess("--port", "0", "--per-request-s", "0", "--replay", str(path))
    try:
        client = openai.OpenAI(base_url=sim.urls["OPENAI_BASE_URL"], api_key="k", max_retries=0)
        with client:
            line = json.dumps(_request("openai", custom_id, "gpt-4o-2024-05-13")).encode() + b"\n"
            f = client.files.create(file=("in.jsonl", line), purpose="batch")
            batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
            done = client.batches.retrieve(batch.id)
            assert done.status == "completed" and done.output_file_id
            assert client.files.content(done.output_file_id).content == path.read_bytes()
    finally:
        sim.kill()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    result = subprocess.run([sys.executable, "-m", "batchtop", "sim", "--replay", str(bad)],
                            check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and f"--replay: {bad}:1: not a JSON result line" in result.stderr
