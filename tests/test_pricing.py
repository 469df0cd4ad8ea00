"""The price table: shipped data, family resolution, config overrides and their errors."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from batchtop.config import ConfigError, load_config, parse_config
from batchtop.pricing.table import Tokens, price_of, price_table, shipped_table


def test_shipped_table_is_dated_and_sourced() -> None:
    table = shipped_table()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", table.as_of) and table.as_of >= "2025-12-01"
    assert "openai" in table.source.lower() and "anthropic" in table.source.lower()
    assert {"openai", "anthropic", "gemini"} <= set(table.providers)
    for provider in table.providers.values():
        assert provider.batch_discount == Decimal("0.5")
        for price in provider.families.values():
            assert price.input >= 0 and price.output >= 0


@pytest.mark.parametrize(
    ("provider", "family", "inp", "cached", "write", "out"),
    [
        ("openai", "gpt-4o", "2.50", "1.25", None, "10.00"),
        ("openai", "gpt-4o-mini", "0.15", "0.075", None, "0.60"),
        ("openai", "gpt-4.1", "2.00", "0.50", None, "8.00"),
        ("openai", "gpt-4.1-mini", "0.40", "0.10", None, "1.60"),
        ("openai", "gpt-4.1-nano", "0.10", "0.025", None, "0.40"),
        ("anthropic", "claude-sonnet-4", "3", "0.30", "3.75", "15"),
        ("anthropic", "claude-3-5-haiku", "0.80", "0.08", "1.00", "4"),
        ("anthropic", "claude-opus-4", "15", "1.50", "18.75", "75"),
        ("anthropic", "claude-3-7-sonnet", "3", "0.30", "3.75", "15"),
        ("gemini", "gemini-2.0-flash", "0.10", None, None, "0.40"),
    ],
)
def test_shipped_prices(provider: str, family: str, inp: str, cached: str | None, write: str | None, out: str) -> None:
    price = shipped_table().providers[provider].families[family]
    assert price.input == Decimal(inp) and price.output == Decimal(out)
    if cached is not None:
        assert price.cached_input == Decimal(cached)
    if write is not None:
        assert price.cache_write == Decimal(write)
    for name in ("input", "cached_input", "cache_write", "output"):
        assert isinstance(getattr(price, name), Decimal)


@pytest.mark.parametrize(
    ("provider", "model", "family"),
    [
        ("openai", "gpt-4o", "gpt-4o"),
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("openai", "gpt-4.1-2025-04-14", "gpt-4.1"),
        ("openai", "o3-mini-2025-01-31", "o3-mini"),
        ("openai", "o3-2025-04-16", "o3"),
        ("openai", "o1-pro-2025-03-19", "o1-pro"),
        ("openai", "o4-mini", "o4-mini"),
        ("openai", "text-embedding-3-small", "text-embedding-3-small"),
        ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("anthropic", "claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("anthropic", "claude-opus-4-20250514", "claude-opus-4"),
        ("anthropic", "claude-3-7-sonnet-20250219", "claude-3-7-sonnet"),
        ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("anthropic", "claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("anthropic", "claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("anthropic", "claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("anthropic", "claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("gemini", "gemini-2.0-flash-001", "gemini-2.0-flash-001"),
        ("gemini", "gemini-2.5-flash", "gemini-2.5-flash"),
        ("openai", "gpt-5-2025-08-07", "gpt-5"),
        ("openai", "gpt-5-mini-2025-08-07", "gpt-5-mini"),
        ("openai", "gpt-4", "gpt-4"),
        ("openai", "gpt-4-0613", "gpt-4"),
        ("openai", "gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("openai", "gpt-3.5-turbo-1106", "gpt-3.5-turbo-1106"),  # its own, higher list price
        ("openai", "gpt-3.5-turbo-1399", None),  # not a month and day
        ("openai", "gpt-4-0125-preview", "gpt-4-0125-preview"),
        ("openai", "gpt-4-0314-preview", None),
        # an exact entry for a snapshot whose list price differs wins over its family
        ("openai", "gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),
        ("openai", "gpt-4o-2024-11-20", "gpt-4o"),
        # no family: unknown, never a near miss
        ("openai", "gpt-4o-minii", None),
        ("openai", "gpt-5-turbo-xl", None),
        ("openai", "gpt-4o-mini-search", None),
        ("openai", "gpt-4o-2024", None),
        ("openai", "gpt-4o-20240806x", None),
        ("openai", "gpt-4o-latest-2024-08-06", None),
        ("anthropic", "claude-opus-4-6", None),
        ("anthropic", "claude-sonnet-4-7-20260101", None),
        ("anthropic", "claude-sonnet-4-20250514-v2", None),
        ("gemini", "gemini-2.5-flash-preview", None),
        ("openai", "gpt-4omni", None),
        ("openai", "o1x", None),
        ("openai", "ft:gpt-4o-mini-2024-07-18:acme::abc", None),
        ("anthropic", "gpt-4o", None),
        ("openai", "claude-sonnet-4", None),
        ("mistral", "mistral-large", None),
    ],
)
def test_family_resolution(provider: str, model: str, family: str | None) -> None:
    table = shipped_table()
    assert table.family(provider, model) == family
    price = table.price(provider, model)
    assert (price.family if price else None) == family


def test_costs_are_exact_decimals() -> None:
    price = shipped_table().price("openai", "gpt-4o-mini")
    assert price is not None
    tokens = Tokens(input=1, cached_input=1, output=1)
    assert price.list_cost(tokens) == Decimal("0.825") / 1_000_000
    assert price.batch_cost(Tokens(input=5_000_000, output=2_000_000)) == Decimal("0.975")


def test_no_config_is_the_shipped_table() -> None:
    assert price_table(None) is shipped_table()
    assert price_of(parse_config({}), "openai", "gpt-4o") == shipped_table().price("openai", "gpt-4o")


def test_override_keeps_unnamed_keys_and_adds_models() -> None:
    config = parse_config(
        {
            "prices": {
                "openai": {"gpt-4o": {"output": 12}, "my-model": {"input": 1.0, "output": 2.0}},
                "anthropic": {"batch_discount": 0.4},
            }
        }
    )
    table = price_table(config)
    gpt = table.price("openai", "gpt-4o-2024-08-06")
    assert gpt is not None
    assert (gpt.input, gpt.cached_input, gpt.output) == (Decimal("2.50"), Decimal("1.25"), Decimal("12"))
    mine = table.price("openai", "my-model-2026-01-01")
    assert mine is not None and mine.family == "my-model"
    assert table.price("openai", "my-model-v2") is None  # not a date stamp: not my-model's price
    assert mine.cached_input == mine.cache_write == Decimal("1.0")  # cache prices default to the input price
    sonnet = table.price("anthropic", "claude-sonnet-4-20250514")
    assert sonnet is not None and sonnet.batch_discount == Decimal("0.4")
    assert sonnet.batch_cost(Tokens(input=1_000_000)) == Decimal("1.8")
    # the shipped table is not changed by an override
    assert shipped_table().price("openai", "gpt-4o").output == Decimal("10.00")  # type: ignore[union-attr]


def test_gpt_4o_2024_05_13_has_its_own_list_price() -> None:
    """Measured: a recorded gpt-4o-2024-05-13 line was costed at gpt-4o's rates, 62% of its cost."""
    price = shipped_table().price("openai", "gpt-4o-2024-05-13")
    assert price is not None and (price.input, price.output) == (Decimal("5.00"), Decimal("15.00"))
    tokens = Tokens(input=1_000, output=1_000)
    assert price.batch_cost(tokens) == Decimal("0.01")  # (1000 x 5 + 1000 x 15) / 1e6 / 2


def test_every_current_family_is_listed_with_its_own_price() -> None:
    """A family missing from the table is unknown, not its parent's price: each is listed."""
    families = {
        ("anthropic", "claude-sonnet-4-5"): ("3.00", "15.00"),
        ("anthropic", "claude-haiku-4-5"): ("1.00", "5.00"),
        ("anthropic", "claude-opus-4-5"): ("5.00", "25.00"),
        ("openai", "gpt-4.1-mini"): ("0.40", "1.60"),
        ("openai", "gpt-5"): ("1.25", "10.00"),
        ("gemini", "gemini-2.0-flash"): ("0.10", "0.40"),
        ("gemini", "gemini-2.5-flash"): ("0.30", "2.50"),
    }
    for (provider, family), (inp, out) in families.items():
        price = shipped_table().providers[provider].families[family]
        assert (price.input, price.output) == (Decimal(inp), Decimal(out)), family


def test_an_override_names_an_unknown_model() -> None:
    assert shipped_table().price("anthropic", "claude-opus-4-6") is None
    config = parse_config({"prices": {"anthropic": {"claude-opus-4-6": {"input": 5, "output": 25}}}})
    price = price_of(config, "anthropic", "claude-opus-4-6")
    assert price is not None and price.output == Decimal(25)
    assert price.cache_write_1h == Decimal(10)  # unset: 2 x input


def test_anthropic_cache_write_prices_are_multiples_of_input() -> None:
    for name, price in shipped_table().providers["anthropic"].families.items():
        if name == "claude-3-haiku":  # listed rounded: $0.03 reads and $0.30 writes on $0.25 input
            assert (price.cached_input, price.cache_write, price.cache_write_1h) == (
                Decimal("0.03"), Decimal("0.30"), Decimal("0.50"))
            continue
        assert price.cached_input == price.input / 10, name
        assert price.cache_write == price.input * Decimal("1.25"), name
        assert price.cache_write_1h == price.input * 2, name


def test_one_hour_cache_writes_cost_twice_the_input_price() -> None:
    """Measured: a claude-sonnet-4-5 line with 26,241 one-hour write tokens showed $0.1735, not $0.2030."""
    price = shipped_table().price("anthropic", "claude-sonnet-4-5-20250929")
    assert price is not None
    # all writes are 1-hour ones: 26,241 x $6.00/M, plus input and output, halved in batch
    tokens = Tokens(input=10, cache_write=26_241, cache_write_1h=26_241, output=20_000)
    expected = (10 * Decimal(3) + 26_241 * Decimal(6) + 20_000 * Decimal(15)) / 1_000_000 / 2
    assert price.batch_cost(tokens) == expected
    assert round(price.batch_cost(tokens), 4) == Decimal("0.2287")
    mixed = Tokens(cache_write=1_000, cache_write_1h=400)  # 600 at 1.25x, 400 at 2x
    assert price.list_cost(mixed) == (600 * Decimal("3.75") + 400 * Decimal(6)) / 1_000_000
    assert Tokens(cache_write=5, cache_write_1h=2) + Tokens(cache_write=1) == Tokens(cache_write=6, cache_write_1h=2)


def test_a_longer_override_prefix_wins() -> None:
    config = parse_config({"prices": {"openai": {"gpt-4o-2024-05-13": {"input": 5, "output": 15}}}})
    table = price_table(config)
    assert table.price("openai", "gpt-4o-2024-05-13").family == "gpt-4o-2024-05-13"  # type: ignore[union-attr]
    assert table.price("openai", "gpt-4o-2024-08-06").family == "gpt-4o"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("prices", "key", "message"),
    [
        ({"openia": {}}, "prices.openia", "unknown provider"),
        ({"openai": 3}, "prices.openai", "must be a table"),
        ({"openai": {"gpt-4o": {"inptu": 1}}}, "prices.openai.gpt-4o.inptu", "unknown key"),
        ({"openai": {"gpt-4.1": {"input": "cheap"}}}, 'prices.openai."gpt-4.1".input', "must be a number"),
        ({"openai": {"gpt-4o": {"output": -1}}}, "prices.openai.gpt-4o.output", ">= 0"),
        ({"openai": {"gpt-4o": {"output": True}}}, "prices.openai.gpt-4o.output", "must be a number"),
        ({"openai": {"new-model": {"input": 1}}}, "prices.openai.new-model", "needs output"),
        ({"openai": {"gpt-4o": 2.5}}, "prices.openai.gpt-4o", "must be a table of prices"),
        ({"anthropic": {"batch_discount": 1}}, "prices.anthropic.batch_discount", "from 0"),
        ({"anthropic": {"batch_discount": -0.1}}, "prices.anthropic.batch_discount", "from 0"),
    ],
)
def test_bad_prices_name_the_key(prices: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"prices": prices})
    assert f"key '{key}'" in str(info.value)
    assert message in str(info.value)


def test_bad_prices_in_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[prices.openai."gpt-4o"]\ninput = 2.5\nouput = 10\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "prices.openai.gpt-4o.ouput" in str(info.value)


def test_prices_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[prices.openai]\nbatch_discount = 0.5\n\n[prices.openai."my-model"]\ninput = 0.3\noutput = 1.2\n')
    price = price_of(load_config(path), "openai", "my-model-2026-01-01")
    assert price is not None and price.input == Decimal("0.3") and price.output == Decimal("1.2")


def test_money_text() -> None:
    from batchtop.pricing.money import fmt_usd, usd

    assert [fmt_usd(Decimal("4.2")), fmt_usd(-3.25), fmt_usd(Decimal("0.001625")), fmt_usd(None)] == [
        "$4.20", "-$3.25", "$0.0016", "unknown",
    ]
    assert usd(Decimal("0.0000015")) == 0.000002 and usd(None) is None


def test_each_family_s_dated_snapshots_resolve_to_it() -> None:
    """The table names each family's dated snapshot ids (a comment above the entry)."""
    from importlib import resources

    text = resources.files("batchtop.pricing").joinpath("prices.toml").read_text(encoding="utf-8")
    found = re.findall(r'# snapshots? ([^;\n]+).*\n\[(\w+)\."([^"]+)"\]', text)
    assert len(found) >= 20
    for ids, provider, family in found:
        for model in (m.strip() for m in ids.split(",")):
            assert shipped_table().family(provider, model) == family, model
