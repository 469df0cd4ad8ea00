"""Gemini Batch Mode end to end: Gemini lines enqueued, the engine over the real
google-genai client and our simulator over HTTP, real SQLite; prices, quote, savings,
resubmission and dead letters for Gemini."""

from __future__ import annotations

import json
from decimal import Decimal
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from batchtop.engine.tick import Engine
from batchtop.pricing.table import Tokens, shipped_table
from batchtop.providers import gemini_batches
from batchtop.providers.base import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    IN_PROGRESS,
    UNKNOWN,
    VALIDATING,
)
from batchtop.providers.errors import ProviderNotFound
from batchtop.sim import Simulator
from batchtop.store import Store, actions

from engine_helpers import (  # noqa: F401  (sim is a fixture)
    all_settled,
    close,
    config,
    drive,
    enqueue,
    gemini_lines,
    sim,
    states,
    tick,
)


def _write(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


# -- intake ---------------------------------------------------------------------------


def test_enqueue_takes_gemini_lines_with_their_model_or_the_model_flag(cli, tmp_path: Path) -> None:
    named = _write(tmp_path / "named.jsonl", gemini_lines(2))
    bare = [{k: v for k, v in line.items() if k != "model"} for line in gemini_lines(2, prefix="b")]
    unnamed = _write(tmp_path / "unnamed.jsonl", bare)
    assert cli("enqueue", str(named)).code == 0
    refused = cli("enqueue", str(unnamed))
    assert refused.code != 0 and "model" in refused.err and "--model" in refused.err
    assert cli("enqueue", "--model", "models/gemini-2.5-flash", str(unnamed)).code == 0
    out = cli("--once", "--format", "json", "--no-refresh")
    doc = json.loads(out.out)
    buffers = {(b["provider"], b["model"]): b["queued"] for b in doc["buffers"]}
    assert buffers == {("gemini", "gemini-2.0-flash"): 2, ("gemini", "gemini-2.5-flash"): 2}


def test_gemini_line_errors_name_the_field(cli, tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.jsonl", [
        {"key": "a", "request": {"contents": []}, "model": "gemini-2.0-flash"},
        {"key": 7, "request": {"contents": [{"parts": [{"text": "x"}]}]}, "model": "gemini-2.0-flash"},
        {"key": "c", "request": {"contents": [{"parts": [{"text": "x"}]}]}, "model": "gemini-2.0-flash", "extra": 1},
    ])
    result = cli("enqueue", str(bad))
    assert result.code != 0
    assert "request.contents" in result.err and ":2" in result.err and "key" in result.err and "extra" in result.err


def test_either_field_spelling_is_taken_and_estimated_alike(tmp_path: Path) -> None:
    from batchtop.intake.validation import parse_lines
    from batchtop.pricing.estimate import estimate_request

    camel = gemini_lines(1)[0]
    snake = {**camel, "request": {"contents": camel["request"]["contents"], "generation_config": {"max_output_tokens": 50}}}
    parsed = parse_lines([("x", 1, json.dumps(camel)), ("x", 2, json.dumps({**snake, "key": "s"}))])
    estimates = [estimate_request(p.endpoint, p.body or {}, provider=p.provider) for p in parsed]
    assert estimates[0] == estimates[1] and estimates[0].output_tokens == 50 and estimates[0].output_basis == "cap"


# -- prices ---------------------------------------------------------------------------


def test_gemini_prices_seed_flash_tiered_pro_and_unknown_models() -> None:
    table = shipped_table()
    flash = table.price("gemini", "gemini-2.0-flash")
    assert flash is not None and (flash.input, flash.output) == (Decimal("0.10"), Decimal("0.40"))
    million = Tokens(input=1_000_000, output=1_000_000)
    assert flash.batch_cost(million) == Decimal("0.25")  # half of 0.10 + 0.40
    assert table.price("gemini", "gemini-2.5-flash-lite") is not None
    assert table.price("gemini", "gemini-9-ultra") is None and table.price("gemini", "gemini-2.5-flash-preview") is None
    pro = table.price("gemini", "gemini-2.5-pro")
    assert pro is not None
    short, long = Tokens(input=200_000, output=1_000), Tokens(input=200_001, output=1_000)
    assert pro.request_list_cost(short) == (200_000 * Decimal("1.25") + 1_000 * Decimal(10)) / 1_000_000
    assert pro.request_list_cost(long) == (200_001 * Decimal("2.50") + 1_000 * Decimal(15)) / 1_000_000
    assert pro.request_batch_cost(long) == pro.request_list_cost(long) / 2


def test_quote_prices_each_pro_request_by_its_own_tier(cli, tmp_path: Path) -> None:
    def line(key: str, chars: int) -> dict:
        return {"key": key, "model": "gemini-2.5-pro", "request": {
            "contents": [{"parts": [{"text": "x" * chars}]}], "generationConfig": {"maxOutputTokens": 100}}}

    # one request over 200k prompt tokens (~4 characters a token) and one well under
    path = _write(tmp_path / "pro.jsonl", [line("long", 900_000), line("short", 4_000)])
    (row,) = json.loads(cli("quote", "--json", str(path)).out)
    tokens = [row["input_tokens"], row["output_tokens"]]
    assert row["provider"] == "gemini" and row["price_known"]
    pro = shipped_table().price("gemini", "gemini-2.5-pro")
    assert pro is not None and pro.above is not None
    # the long request alone is priced at the upper tier: more than all tokens at the base price
    assert Decimal(str(row["realtime_usd"])) > pro.list_cost(Tokens(input=tokens[0], output=tokens[1]))
    assert Decimal(str(row["realtime_usd"])) < pro.above.list_cost(Tokens(input=tokens[0], output=tokens[1]))


# -- the engine -----------------------------------------------------------------------


def test_inline_batch_end_to_end_usage_and_savings(sim: Simulator, data_dir: Path) -> None:
    from batchtop.pricing.savings import savings

    sim.config.thoughts_share = 0.25
    sim.config.cached_input_share = 0.5
    enqueue(data_dir, gemini_lines(12))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 12}
        (job,) = sim.batches("gemini")
        assert job["inline"] and job["display_name"].startswith("batchtop-")
        assert set(job["custom_ids"]) == {f"g{i}" for i in range(12)}
        # thoughts are billed as output; the cached part of the prompt is a cache read
        line = json.loads(store.db.execute("SELECT response FROM attempts LIMIT 1").fetchone()[0])
        usage = line["response"]["usageMetadata"]
        i, c, o = store.db.execute(
            "SELECT input_tokens, cached_input_tokens, output_tokens FROM attempts a JOIN requests r ON r.id = a.request_id"
            " WHERE r.custom_id = ?", (line["key"],)
        ).fetchone()
        assert usage["thoughtsTokenCount"] > 0 and usage["cachedContentTokenCount"] > 0
        assert o == usage["candidatesTokenCount"] + usage["thoughtsTokenCount"]
        assert (i, c) == (usage["promptTokenCount"] - usage["cachedContentTokenCount"], usage["cachedContentTokenCount"])
        (row,) = [m for m in savings(store.db, engine.config)["by_model"] if m["provider"] == "gemini"]
        ti, tc, to = store.db.execute(
            "SELECT sum(input_tokens), sum(cached_input_tokens), sum(output_tokens) FROM attempts"
        ).fetchone()
        realtime = (Decimal(ti) * Decimal("0.10") + Decimal(tc) * Decimal("0.025") + Decimal(to) * Decimal("0.40")) / 10**6
        assert abs(Decimal(str(row["realtime_cost_usd"])) - realtime) <= Decimal("0.000001")
        assert abs(Decimal(str(row["batch_cost_usd"])) - realtime / 2) <= Decimal("0.000001")
        close(engine)


def test_a_batch_over_the_inline_limit_goes_as_an_uploaded_file(
    sim: Simulator, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gemini_batches, "GEMINI_INLINE_MAX_BYTES", 500)  # a few lines are "over 20 MB"
    sim.config.require_api_key = "sk-test-key"  # the upload's chunks carry no key: the upload id stands for it
    enqueue(data_dir, gemini_lines(9))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 9}
        (job,) = sim.batches("gemini")
        assert not job["inline"] and job["output_file"]
        uploads = sim.requests(provider="gemini", method="POST", path="/gemini/upload/")
        assert len(uploads) >= 2 and all(r.status == 200 for r in uploads)  # start, then the bytes
        assert sim.requests(provider="gemini", path="/gemini/v1/files/")  # the output file was downloaded
        close(engine)


def test_failed_requests_are_resubmitted_and_permanent_ones_are_dead_letters(sim: Simulator, data_dir: Path, cli) -> None:
    sim.config.first_try_failure_rate = 0.4
    enqueue(data_dir, gemini_lines(20) + gemini_lines(2, prefix="failalways-"))
    with Store(data_dir) as store:
        engine = Engine(store, config(max_attempts=3))
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 20, "dead": 2}
        twice = {cid for (p, cid), n in sim.submissions.items() if n == 2}
        assert twice and all(cid.startswith("g") for cid in twice)
        assert sim.submissions[("gemini", "failalways-0")] == 1  # INVALID_ARGUMENT: never sent again
        dead = store.db.execute("SELECT custom_id, last_error FROM requests WHERE state = 'dead'").fetchall()
        assert all("INVALID_ARGUMENT" in err for _, err in dead)
        close(engine)
    listed = cli("dead-letters", "--json")
    assert sorted(d["custom_id"] for d in json.loads(listed.out)) == ["failalways-0", "failalways-1"]


def test_operator_resubmits_a_gemini_batch(sim: Simulator, data_dir: Path) -> None:
    sim.config.first_try_failure_rate = 0.5
    enqueue(data_dir, gemini_lines(16))
    with Store(data_dir) as store:
        engine = Engine(store, config(auto_resubmit=False))
        drive(engine, lambda: "in_flight" not in states(store) and "submitting" not in states(store))
        failed = states(store).get("failed", 0)
        assert failed > 0
        (batch_id,) = store.db.execute("SELECT provider_batch_id FROM batches").fetchone()
        assert batch_id.startswith("batches/")
        assert actions.resubmit(store, batch_id, 0.0) == failed
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 16}
        close(engine)


def test_a_stalled_job_stays_validating_until_cancelled(sim: Simulator, data_dir: Path) -> None:
    sim.config.stalled_batches = 1
    enqueue(data_dir, gemini_lines(4))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        (batch_id,) = tick(engine).submitted
        sim.advance(36 * 3600 - 60)  # a day and a half: still PENDING
        tick(engine)
        assert store.db.execute("SELECT status FROM batches").fetchone() == (VALIDATING,)
        actions.request_cancel(store, batch_id, 0.0)
        report = tick(engine)
        assert report.cancelled == [batch_id]
        tick(engine)
        assert store.db.execute("SELECT status FROM batches WHERE provider_batch_id = ?", (batch_id,)).fetchone() == (CANCELLED,)
        drive(engine, all_settled(store))  # the cancelled requests go again, in a batch that runs
        assert states(store) == {"succeeded": 4}
        close(engine)


def test_states_normalize_from_sdk_and_wire_names() -> None:
    from google.genai import types

    assert gemini_batches.status_of(types.JobState.JOB_STATE_PENDING) == VALIDATING
    assert gemini_batches.status_of("BATCH_STATE_QUEUED") == VALIDATING
    assert gemini_batches.status_of("JOB_STATE_RUNNING") == IN_PROGRESS
    assert gemini_batches.status_of("BATCH_STATE_SUCCEEDED") == COMPLETED
    assert gemini_batches.status_of(types.JobState.JOB_STATE_PARTIALLY_SUCCEEDED) == COMPLETED
    assert gemini_batches.status_of("JOB_STATE_CANCELLING") == "cancelling"
    assert gemini_batches.status_of("BATCH_STATE_FAILED") == FAILED
    assert gemini_batches.status_of("BATCH_STATE_EXPIRED") == EXPIRED
    assert gemini_batches.status_of("JOB_STATE_CANCELLED") == CANCELLED
    assert gemini_batches.status_of("BATCH_STATE_SOMETHING_NEW") == UNKNOWN


def test_reconcile_finds_the_batch_by_display_name_and_deletes_an_orphan_upload(sim: Simulator) -> None:
    import asyncio

    from google.genai import errors as genai_errors

    from batchtop.providers import registry

    async def scenario() -> None:
        adapter = registry.get("gemini").adapter("sk-test-key", sim.gemini_base_url, max_retries=0)
        try:
            lines = [json.dumps(line).encode() + b"\n" for line in gemini_lines(3)]
            created = await adapter.submit("uid-1", "generateContent", lines)
            assert [b.id for b in await adapter.find_submission("uid-1", sim.now(), 3, set())] == [created.id]
            assert await adapter.find_submission("uid-1", sim.now(), 3, {created.id}) == []
            # killed between the upload and the create: the file is found by its display name and deleted
            orphan = await adapter._upload("uid-2", [json.loads(line) for line in lines])
            assert await adapter.find_submission("uid-2", sim.now(), 3, set()) == []
            with pytest.raises(genai_errors.ClientError):
                await adapter.client.aio.files.get(name=orphan)
            sim.advance(5)
            await adapter.delete(created.id)
            with pytest.raises(ProviderNotFound):
                await adapter.retrieve(created.id)
        finally:
            await adapter.close()

    asyncio.run(scenario())


def test_an_inline_image_counts_by_its_size_not_its_base64() -> None:
    import base64
    import struct
    import zlib

    from batchtop.pricing.estimate import estimate_request

    def png(width: int, height: int) -> str:
        rows = b"".join(b"\x00" + b"\x00" * width * 3 for _ in range(height))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
        return base64.b64encode(data).decode()

    def estimate(width: int, height: int) -> int:
        part = {"inlineData": {"mimeType": "image/png", "data": png(width, height)}}
        body = {"contents": [{"parts": [part]}]}
        return estimate_request("generateContent", body, provider="gemini").images.tokens

    assert estimate(300, 200) == 258  # one small image
    assert estimate(1000, 800) == 258 * 2 * 2  # four 768 px tiles


def test_google_keys_are_redacted_by_shape_and_by_place() -> None:
    from batchtop.redaction import redact

    key = "AIza" + "SyA1b2C3d4E5f6G7h8I9j0KlMnOpQrStUvW"
    assert len(key) == 39
    assert key not in redact(f"400 API key not valid: {key}")
    assert "hunter22" not in redact("request headers {'x-goog-api-key': 'hunter22'}")
    assert "hunter22" not in redact("GET https://generativelanguage.googleapis.com/v1/batches?key=hunter22&pageSize=1")
    assert redact("the key field of a batch line") == "the key field of a batch line"


def test_a_request_the_inline_type_cannot_carry_goes_as_a_file_once(sim: Simulator, data_dir: Path) -> None:
    """`audioTimestamp` is a GenerateContentConfig field google-genai refuses for the
    Gemini API (it raises before sending): the batch goes as a file, and only once."""
    lines = gemini_lines(3)
    lines[1]["request"]["generationConfig"] = {"maxOutputTokens": 50, "audioTimestamp": True}
    enqueue(data_dir, lines)
    with Store(data_dir) as store:
        engine = Engine(store, config())
        drive(engine, all_settled(store))
        jobs = sim.batches("gemini")
        assert jobs and not any(j["inline"] for j in jobs) and set(sim.submissions.values()) == {1}
        assert sum(j["n"] for j in jobs) == 3
        close(engine)


def test_the_quota_alert_clears_on_ingested_successes_of_a_file_input_batch(
    sim: Simulator, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file-input Gemini batch reports no counts (the SDK drops batchStats), so the
    alert must clear on the successes the ingest stored, not the batch's own counts."""
    from batchtop.views import status

    monkeypatch.setattr(gemini_batches, "GEMINI_INLINE_MAX_BYTES", 500)  # a few lines are "over 20 MB"
    sim.config.create_error = "insufficient_quota"
    enqueue(data_dir, gemini_lines(6))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        assert tick(engine).quota == ["gemini"]

        def quota_alerts() -> list[str]:
            doc = status.collect(store.db, engine.config, engine.now()).to_json()
            return [a["provider"] for a in doc["alerts"] if a["kind"] == "quota"]

        assert quota_alerts() == ["gemini"]
        sim.config.create_error = None
        actions.request_flush(store, None, engine.now())
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 6}
        (job,) = sim.batches("gemini")
        assert not job["inline"]  # a file batch: no counts came with it
        assert quota_alerts() == []
        close(engine)


def test_ingested_pro_requests_are_priced_each_by_its_own_prompt_tier(sim: Simulator, data_dir: Path, cli) -> None:
    """One request over 200k prompt tokens and one under, through the simulator: the
    savings of `--once --json` and `report --json` price the long one at the upper tier
    and the short one at the base tier (hand arithmetic from each attempt's tokens);
    so does the budget's spend."""
    from batchtop.pricing.budget import spent
    from batchtop.pricing.table import price_table

    def line(key: str, chars: int) -> dict:
        return {"key": key, "model": "gemini-2.5-pro", "request": {
            "contents": [{"parts": [{"text": "x" * chars}]}], "generationConfig": {"maxOutputTokens": 100}}}

    enqueue(data_dir, [line("long", 900_000), line("short", 4_000)])
    with Store(data_dir) as store:
        engine = Engine(store, config())
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 2}
        tokens = {
            cid: (i, c, o) for cid, i, c, o in store.db.execute(
                "SELECT r.custom_id, a.input_tokens, a.cached_input_tokens, a.output_tokens"
                " FROM attempts a JOIN requests r ON r.id = a.request_id"
            )
        }
        today, month = spent(store.db, price_table(engine.config), engine.now(), "gemini")
        close(engine)
    (li, lc, lo), (si, sc, so) = tokens["long"], tokens["short"]
    assert li + lc > 200_000 > si + sc and lo and so
    realtime = (
        li * Decimal("2.50") + lc * Decimal("0.25") + lo * Decimal(15)
        + si * Decimal("1.25") + sc * Decimal("0.125") + so * Decimal(10)
    ) / 10**6
    batch = realtime / 2

    def near(value: object, expected: Decimal) -> bool:
        return abs(Decimal(str(value)) - expected) <= Decimal("0.000001")

    assert today == month == batch  # the budget's spend: exact, from the attempts themselves

    once = json.loads(cli("--once", "--json", "--no-refresh").out)
    jsonschema.validate(once, json.loads(resources.files("batchtop").joinpath("status.schema.json").read_text()))
    (row,) = once["savings"]["by_model"]
    assert row["model"] == "gemini-2.5-pro" and row["input_tokens"] == li + si
    assert near(row["realtime_cost_usd"], realtime) and near(row["batch_cost_usd"], batch)
    assert near(once["savings"]["total"]["saved_usd"], realtime - batch)
    report = json.loads(cli("report", "--json").out)
    (rrow,) = report["by_model"]
    assert near(rrow["realtime_cost_usd"], realtime) and near(rrow["batch_cost_usd"], batch)
    assert near(report["totals"]["batch_cost_usd"], batch)
    (day,) = report["by_day"]
    assert near(day["batch_cost_usd"], batch)


def test_the_tier_migration_keeps_stored_rollups_at_the_base_tier(tmp_path: Path) -> None:
    """Rollups stored before the tier column read back whole, at tier '' (how they were
    priced when ingested), and an upper-tier row then adds up beside them."""
    import sqlite3

    from batchtop.store.ingest import TIERED_ROLLUP_ADD
    from batchtop.store.schema import MIGRATIONS, _usage_rollups_by_prompt_tier

    d = tmp_path / "old"
    d.mkdir()
    db = sqlite3.connect(d / "batchtop.sqlite3", isolation_level=None)
    before = MIGRATIONS.index(_usage_rollups_by_prompt_tier)
    for migration in MIGRATIONS[:before]:
        migration(db)
    db.execute(f"PRAGMA user_version = {before}")
    db.execute("INSERT INTO usage_rollup VALUES ('gemini', 'gemini-2.5-pro', 1, 1, 3, 300, 0, 0, 30, 0)")
    db.execute("INSERT INTO usage_daily VALUES (20000, 'gemini', 'gemini-2.5-pro', 1, 1, 3, 300, 0, 0, 30, 0)")
    db.execute("INSERT INTO usage_hourly VALUES (480000, 'gemini', 'gemini-2.5-pro', 1, 1, 3, 300, 0, 0, 30, 0)")
    db.close()
    with Store(d) as store:
        for table in ("usage_rollup", "usage_daily", "usage_hourly"):
            assert store.db.execute(f"SELECT tier, attempts, input_tokens, output_tokens FROM {table}").fetchall() == [
                ("", 3, 300, 30)
            ]
        store.db.execute(TIERED_ROLLUP_ADD, ("gemini", "gemini-2.5-pro", 1, 1, "above", 1, 250_000, 0, 0, 10, 0))
        store.db.execute(TIERED_ROLLUP_ADD, ("gemini", "gemini-2.5-pro", 1, 1, "", 1, 100, 0, 0, 10, 0))
        assert sorted(store.db.execute("SELECT tier, attempts, input_tokens FROM usage_rollup")) == [
            ("", 4, 400), ("above", 1, 250_000)
        ]
