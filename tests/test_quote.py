"""`quote`: estimated cost of batch input files, validated exactly as enqueue validates."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path

import pytest

from batchtop.config import Config, parse_config
from batchtop.errors import EnqueueError
from batchtop.intake.quote import quote, quote_warning, render_quote
from batchtop.pricing.estimate import estimate_request
from batchtop.store import Store

# '[{"role":"user","content":""}]' is 30 characters: 1,970 more make 2,000 = 500 tokens
CONTENT_500_TOKENS = "x" * 1_970


def openai(i: int, model: str = "gpt-4o", **body: object) -> str:
    return json.dumps(
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": CONTENT_500_TOKENS}], **body},
        },
        separators=(",", ":"),
    )


def write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


def test_quote_worked_example(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", [openai(i, max_tokens=200) for i in range(10_000)])
    (row,) = quote([path], Config())
    assert (row["provider"], row["model"], row["family"]) == ("openai", "gpt-4o", "gpt-4o")
    assert row["requests"] == 10_000
    assert (row["input_tokens"], row["output_tokens"]) == (5_000_000, 2_000_000)
    assert row["realtime_usd"] == 32.50
    assert row["batch_usd"] == 16.25
    assert row["saved_usd"] == 16.25
    assert row["price_known"] is True


def test_output_estimate_rules(tmp_path: Path) -> None:
    with Store(tmp_path / "data") as store:
        store.db.execute(
            "INSERT INTO usage_rollup (provider, model, first_attempt, succeeded, attempts, input_tokens, output_tokens)"
            " VALUES ('openai', 'gpt-4o-mini', 1, 1, 4, 0, 300)"  # observed mean: 75 per success
        )
        lines = [
            openai(1, "gpt-4o-mini", max_completion_tokens=100),  # the cap
            openai(2, "gpt-4o-mini"),  # observed mean 75
            openai(3, "gpt-4.1"),  # no history: default 256
        ]
        rows = {r["model"]: r for r in quote([write(tmp_path / "in.jsonl", lines)], Config(), db=store.db)}
    assert rows["gpt-4o-mini"]["output_tokens"] == 175
    assert rows["gpt-4o-mini"]["input_tokens"] == 1_000
    assert rows["gpt-4.1"]["output_tokens"] == 256


def test_estimate_request_fields() -> None:
    body = {"system": "s" * 400, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64, "tools": [{"name": "t"}]}
    est = estimate_request("/v1/messages", body)
    # 400 + len('[{"role":"user","content":"hi"}]') = 32 + len('[{"name":"t"}]') = 14 -> 446 chars -> 112 tokens
    assert (est.input_tokens, est.output_tokens, est.output_basis) == (112, 64, "cap")
    assert estimate_request("/v1/embeddings", {"input": "a" * 8}).output_tokens == 0
    assert estimate_request("/v1/chat/completions", {"messages": [], "n": 3}, Decimal("10.5")).output_tokens == 32
    assert estimate_request("/v1/responses", {"input": "abcd", "max_output_tokens": 9}).output_tokens == 9


def test_anthropic_and_unknown_models(tmp_path: Path) -> None:
    lines = [
        json.dumps({"custom_id": "a1", "params": {"model": "claude-sonnet-4-20250514", "max_tokens": 1000,
                                                  "messages": [{"role": "user", "content": CONTENT_500_TOKENS}]}}),
        openai(2, "some-unreleased-model", max_tokens=10),
    ]
    rows = {r["model"]: r for r in quote([write(tmp_path / "in.jsonl", lines)], Config())}
    sonnet = rows["claude-sonnet-4-20250514"]
    # 500 x $3 + 1000 x $15 per million = $0.0165 real time
    assert sonnet["realtime_usd"] == 0.0165 and sonnet["batch_usd"] == 0.00825
    unknown = rows["some-unreleased-model"]
    assert unknown["price_known"] is False
    assert unknown["batch_usd"] is None and unknown["realtime_usd"] is None and unknown["saved_usd"] is None
    assert unknown["requests"] == 1


def test_quote_uses_config_prices(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", [openai(1, "house-model", max_tokens=500)])
    config = parse_config({"prices": {"openai": {"house-model": {"input": 10, "output": 20}}}})
    (row,) = quote([path], config)
    assert row["realtime_usd"] == 0.015 and row["batch_usd"] == 0.0075


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).parent / "corpus" / "bad").iterdir()))
def test_bad_files_rejected_as_enqueue_rejects_them(name: str, corpus: Path, cli) -> None:
    path = str(corpus / "bad" / name)
    with pytest.raises(EnqueueError) as info:
        quote([path], Config())
    result = cli("enqueue", path)
    assert result.code == 1
    assert result.err == f"batchtop: {info.value}\n"


def test_forced_provider_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", [openai(1)])
    with pytest.raises(EnqueueError):
        quote([path], Config(), provider="anthropic")
    with pytest.raises(Exception, match="cannot read"):
        quote([str(tmp_path / "absent.jsonl")], Config())


def test_render_quote(tmp_path: Path) -> None:
    lines = [openai(i, max_tokens=200) for i in range(1_000)] + [openai(5_000, "mystery", max_tokens=1)]
    rows = quote([write(tmp_path / "in.jsonl", lines)], Config())
    out = io.StringIO()
    render_quote(rows, out)
    text = out.getvalue()
    header, gpt, mystery, total = text.splitlines()[:4]
    assert header.split() == ["PROVIDER", "MODEL", "REQUESTS", "EST_INPUT_TOK", "EST_OUTPUT_TOK", "BATCH", "REALTIME", "SAVED"]
    assert gpt.split() == ["openai", "gpt-4o", "1,000", "500,000", "200,000", "$1.62", "$3.25", "$1.62"]
    assert mystery.split()[-3:] == ["unknown", "unknown", "unknown"]
    assert total.startswith("TOTAL (priced models only)") and "1,001" in total and "$3.25" in total
    assert "estimate" in text
    assert quote_warning(rows) is not None and "openai:mystery" in quote_warning(rows)  # type: ignore[operator]


def test_quote_rows_add_up_to_the_total(tmp_path: Path) -> None:
    """One precision per money column, at which the shown rows sum to the shown total."""
    lines = [openai(i, "gpt-4o-mini", max_tokens=16) for i in range(3)] + [openai(9, "gpt-4.1", max_tokens=7)]
    rows = quote([write(tmp_path / "in.jsonl", lines)], Config())
    out = io.StringIO()
    render_quote(rows, out)
    table = out.getvalue().splitlines()
    mini, gpt41, total = table[1].split(), table[2].split(), table[3].split()
    for column in (-3, -2, -1):
        shown = Decimal(mini[column].lstrip("$")) + Decimal(gpt41[column].lstrip("$"))
        assert shown == Decimal(total[column].lstrip("$")), (mini, gpt41, total)
        assert len({len(x[column].split(".")[1]) for x in (mini, gpt41, total)}) == 1  # one precision


@pytest.mark.parametrize("model", ["gpt-4o-minii", "gpt-5-turbo-xl", "some-unreleased-model"])
def test_quote_and_enqueue_warn_on_stderr_but_do_not_refuse(tmp_path: Path, cli, model: str) -> None:
    path = write(tmp_path / "in.jsonl", [openai(1, model, max_tokens=10), openai(2, "gpt-4o-mini", max_tokens=10)])
    rows = {r["model"]: r for r in quote([path], Config())}
    assert rows[model]["price_known"] is False and rows[model]["batch_usd"] is None
    assert rows["gpt-4o-mini"]["price_known"] is True
    quoted = cli("quote", path)
    assert quoted.code == 0
    assert f"warning: no known price for openai:{model};" in quoted.err and "openai:gpt-4o-mini;" not in quoted.err
    enqueued = cli("enqueue", path)
    assert enqueued.code == 0 and "enqueued 2 requests" in enqueued.out
    assert f"warning: no known price for openai:{model}" in enqueued.err


def test_enqueue_of_priced_models_says_nothing_and_config_prices_count(tmp_path: Path, cli) -> None:
    path = write(tmp_path / "in.jsonl", [openai(1, "house-model", max_tokens=10)])
    config = tmp_path / "c.toml"
    config.write_text('[prices.openai."house-model"]\ninput = 1\noutput = 2\n')
    result = cli("--config", str(config), "enqueue", path)
    assert result.code == 0 and result.err == ""
