"""The price table: shipped list prices (prices.toml) plus the config's `[prices]`.

Everything is Decimal so that sums over millions of tokens stay exact and a test can
check a figure to the cent. A model id resolves, per provider, to the entry named
exactly as it is (a snapshot with its own list price, such as gpt-4o-2024-05-13),
else to the family it is a dated snapshot or alias of: what follows the family name
must be a date stamp (`-2024-08-06`, `-20250514`, Vertex's `@20250514`) or `-latest`.
Anything else (`gpt-4o-minii`, `gpt-5-turbo-xl`, a newer model the table lacks) is
"unknown", which callers must show as unknown, never as $0 and never as a near
miss's price: a typo priced as its prefix was seen to quote at 16x the real rate.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from batchtop.providers.limits import PROVIDERS

if TYPE_CHECKING:
    from batchtop.config import Config

MILLION = Decimal(1_000_000)
DEFAULT_BATCH_DISCOUNT = Decimal("0.5")
PRICE_KEYS = ("input", "cached_input", "cache_write", "cache_write_1h", "output")
TIER_KEYS = ("tier_above", "input_above", "cached_input_above", "output_above")
"""A prompt-length tier (Gemini Pro): a request whose prompt is over `tier_above` tokens
pays the `*_above` prices, for all of its tokens."""
UPPER_TIER = "above"
"""The rollups' `tier` of a request whose prompt is over its model's `tier_above`
(the base tier's is ''): the store keeps their tokens apart so each is priced right."""
CACHE_WRITE_1H_MULTIPLE = Decimal(2)
"""A 1-hour cache write costs 2x the input price (Anthropic) unless the table says otherwise."""
_STAMP = re.compile(r"[-@](?:\d{4}-\d{2}-\d{2}|\d{8})|-(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])|-latest")
"""What may follow a family name in a model id of that family: one date stamp (also
OpenAI's older month-day form, gpt-3.5-turbo-0125) or `-latest`."""
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class PriceSpecError(ValueError):
    """A bad entry in a price table; `key` is its TOML path below `[prices]`."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True)
class Tokens:
    """Token counts in the four disjoint billing categories, plus one subset.

    `cache_write` is every cache write, as the providers' `cache_creation_input_tokens`
    reports it; `cache_write_1h` is the part of it written for 1 hour (Anthropic's
    `ephemeral_1h_input_tokens`), billed at its own price. Keeping the total whole
    (rather than a 5-minute part) means a row stored before 1-hour writes were told
    apart reads as what it was priced as then: all 5-minute writes.
    """

    input: int = 0
    cached_input: int = 0
    cache_write: int = 0
    output: int = 0
    cache_write_1h: int = 0

    def __add__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.input + other.input,
            self.cached_input + other.cached_input,
            self.cache_write + other.cache_write,
            self.output + other.output,
            self.cache_write_1h + other.cache_write_1h,
        )

    def __sub__(self, other: Tokens) -> Tokens:
        return Tokens(
            self.input - other.input,
            self.cached_input - other.cached_input,
            self.cache_write - other.cache_write,
            self.output - other.output,
            self.cache_write_1h - other.cache_write_1h,
        )

    @property
    def cache_write_5m(self) -> int:
        """Cache writes at the 5-minute (default) price: all writes but the 1-hour ones."""
        return max(self.cache_write - self.cache_write_1h, 0)

    @property
    def total(self) -> int:
        return self.input + self.cached_input + self.cache_write + self.output


def prompt_tier(tier_above: int | None, input_tokens: int, cached_input_tokens: int, cache_write_tokens: int) -> str:
    """The tier of one request: UPPER_TIER when its prompt (input, cache reads and
    writes, as Gemini's promptTokenCount counts) is over `tier_above`, else ''. The
    ingest calls this for each result, the quote through `ModelPrice.for_request`."""
    if tier_above is None:
        return ""
    return UPPER_TIER if input_tokens + cached_input_tokens + cache_write_tokens > tier_above else ""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One family's list prices (USD per million tokens) and its provider's batch discount."""

    provider: str
    family: str
    input: Decimal
    cached_input: Decimal
    cache_write: Decimal
    output: Decimal
    batch_discount: Decimal
    cache_write_1h: Decimal = Decimal(0)
    tier_above: int | None = None
    """Prompt tokens above which a request is priced by `above` (None: one tier)."""
    above: ModelPrice | None = None

    def for_request(self, tokens: Tokens) -> ModelPrice:
        """The prices one request's tokens pay: its own prompt length picks the tier
        (prompt = input, cache reads and writes, as Gemini's promptTokenCount counts)."""
        if self.above is None:
            return self
        upper = prompt_tier(self.tier_above, tokens.input, tokens.cached_input, tokens.cache_write) == UPPER_TIER
        return self.above if upper else self

    def tiered_list_cost(self, tokens: Tokens, upper: Tokens) -> Decimal:
        """Summed tokens of many requests at real-time prices, `upper` being the part of
        them whose requests were over the prompt tier (the store rolls them up apart):
        each part at its own tier's prices."""
        if self.above is None or not upper.total:
            return self.list_cost(tokens)
        return self.list_cost(tokens - upper) + self.above.list_cost(upper)

    def tiered_batch_cost(self, tokens: Tokens, upper: Tokens) -> Decimal:
        """`tiered_list_cost` in a batch: every category discounted alike."""
        return self.tiered_list_cost(tokens, upper) * (1 - self.batch_discount)

    def request_list_cost(self, tokens: Tokens) -> Decimal:
        """One request's real-time cost, at its own tier."""
        return self.for_request(tokens).list_cost(tokens)

    def request_batch_cost(self, tokens: Tokens) -> Decimal:
        """One request's batch cost, at its own tier."""
        return self.for_request(tokens).batch_cost(tokens)

    def list_cost(self, tokens: Tokens) -> Decimal:
        """What these tokens cost at real-time list prices (the base tier: summed tokens
        of many requests do not say which were long; `request_list_cost` does)."""
        return (
            tokens.input * self.input
            + tokens.cached_input * self.cached_input
            + tokens.cache_write_5m * self.cache_write
            + min(tokens.cache_write_1h, tokens.cache_write) * self.cache_write_1h
            + tokens.output * self.output
        ) / MILLION

    def batch_cost(self, tokens: Tokens) -> Decimal:
        """What these tokens cost in a batch: every category discounted alike."""
        return self.list_cost(tokens) * (1 - self.batch_discount)


@dataclass(frozen=True)
class ProviderPrices:
    batch_discount: Decimal
    families: Mapping[str, ModelPrice]
    _longest_first: tuple[str, ...] = field(default=(), repr=False)

    def family(self, model: str) -> str | None:
        """The entry `model` is priced by: its own, else the family it is a snapshot of.

        The family is the longest name such that the rest of `model` is one date stamp
        or `-latest`: `gpt-4o-mini-2024-07-18` is gpt-4o-mini, `gpt-4o-minii` nothing.
        """
        if model in self.families:
            return model
        for name in self._longest_first:
            if model.startswith(name) and _STAMP.fullmatch(model, len(name)):
                return name
        return None


@dataclass(frozen=True)
class PriceTable:
    as_of: str
    source: str
    providers: Mapping[str, ProviderPrices]

    def family(self, provider: str, model: str) -> str | None:
        table = self.providers.get(provider)
        return table.family(model) if table is not None else None

    def price(self, provider: str, model: str) -> ModelPrice | None:
        """The price of a model id (dated or not), or None when it has no known price."""
        table = self.providers.get(provider)
        if table is None:
            return None
        name = table.family(model)
        return table.families[name] if name is not None else None


# -- building tables ----------------------------------------------------------------


def _quote(name: str) -> str:
    return name if _BARE_KEY.fullmatch(name) else '"' + name.replace('"', '\\"') + '"'


def _number(key: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise PriceSpecError(key, "must be a number (USD per million tokens)")
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite() or number < 0:
        raise PriceSpecError(key, "must be a number >= 0")
    return number


def _discount(key: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise PriceSpecError(key, "must be a number from 0 to 1 (0.5 = half price in batch)")
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    if not number.is_finite() or not 0 <= number < 1:
        raise PriceSpecError(key, "must be a number from 0 (no discount) up to, not including, 1")
    return number


_Raw = dict[str, dict[str, Any]]  # provider -> {"batch_discount": Decimal, "families": {name: {key: Decimal}}}


def _merge(raw: _Raw, doc: Mapping[str, Any], allowed_providers: set[str] | None) -> None:
    """Fold one `[prices]`-shaped document into `raw`, validating as it goes.

    A family already in `raw` may be given any subset of the price keys; a new one
    needs at least `input` and `output`.
    """
    for provider, table in doc.items():
        pkey = _quote(provider)
        if allowed_providers is not None and provider not in allowed_providers:
            raise PriceSpecError(pkey, f"unknown provider (one of {', '.join(sorted(allowed_providers))})")
        if not isinstance(table, dict):
            raise PriceSpecError(pkey, "must be a table of model prices")
        entry = raw.setdefault(provider, {"batch_discount": DEFAULT_BATCH_DISCOUNT, "families": {}})
        for name, prices in table.items():
            key = f"{pkey}.{_quote(name)}"
            if name == "batch_discount":
                entry["batch_discount"] = _discount(key, prices)
                continue
            if not isinstance(prices, dict):
                raise PriceSpecError(
                    key, f"must be a table of prices ({', '.join(PRICE_KEYS)}) or the key batch_discount"
                )
            if not name:
                raise PriceSpecError(key, "a model family name must not be empty")
            for k in prices:
                if k not in PRICE_KEYS and k not in TIER_KEYS:
                    raise PriceSpecError(
                        f"{key}.{_quote(k)}", f"unknown key (known: {', '.join(PRICE_KEYS + TIER_KEYS)})"
                    )
            values = {k: _number(f"{key}.{k}", v) for k, v in prices.items()}
            if "tier_above" in values and values["tier_above"] != int(values["tier_above"]):
                raise PriceSpecError(f"{key}.tier_above", "must be a whole number of prompt tokens")
            known = entry["families"].get(name)
            if known is None:
                missing = [k for k in ("input", "output") if k not in values]
                if missing:
                    raise PriceSpecError(key, f"a model not in the shipped table needs {' and '.join(missing)}")
                entry["families"][name] = values
            else:
                known.update(values)


def _build(as_of: str, source: str, raw: _Raw) -> PriceTable:
    providers: dict[str, ProviderPrices] = {}
    for provider, entry in raw.items():
        discount: Decimal = entry["batch_discount"]
        families = {name: _model_price(provider, name, v, discount) for name, v in entry["families"].items()}
        order = tuple(sorted(families, key=len, reverse=True))
        providers[provider] = ProviderPrices(discount, families, order)
    return PriceTable(as_of=as_of, source=source, providers=providers)


def _model_price(provider: str, name: str, v: dict[str, Decimal], discount: Decimal) -> ModelPrice:
    """One family's prices; with `tier_above`, the long-prompt tier beside them (each
    `*_above` price unset is the base tier's own)."""
    base = ModelPrice(
        provider=provider,
        family=name,
        input=v["input"],
        cached_input=v.get("cached_input", v["input"]),
        cache_write=v.get("cache_write", v["input"]),
        output=v["output"],
        batch_discount=discount,
        cache_write_1h=v.get("cache_write_1h", v["input"] * CACHE_WRITE_1H_MULTIPLE),
    )
    if "tier_above" not in v:
        return base
    long_input = v.get("input_above", base.input)
    above = ModelPrice(
        provider=provider,
        family=name,
        input=long_input,
        cached_input=v.get("cached_input_above", base.cached_input),
        cache_write=long_input,
        output=v.get("output_above", base.output),
        batch_discount=discount,
        cache_write_1h=long_input * CACHE_WRITE_1H_MULTIPLE,
    )
    return ModelPrice(
        provider=provider, family=name, input=base.input, cached_input=base.cached_input,
        cache_write=base.cache_write, output=base.output, batch_discount=discount,
        cache_write_1h=base.cache_write_1h, tier_above=int(v["tier_above"]), above=above,
    )


def _copy(raw: _Raw) -> _Raw:
    return {
        p: {"batch_discount": e["batch_discount"], "families": {n: dict(v) for n, v in e["families"].items()}}
        for p, e in raw.items()
    }


@lru_cache(maxsize=1)
def _shipped_raw() -> tuple[str, str, _Raw]:
    """prices.toml, parsed once per process (floats as Decimal, so 0.075 stays 0.075)."""
    text = resources.files("batchtop.pricing").joinpath("prices.toml").read_text(encoding="utf-8")
    doc = tomllib.loads(text, parse_float=Decimal)
    as_of, source = doc.pop("as_of"), doc.pop("source")
    raw: _Raw = {}
    _merge(raw, doc, None)
    return str(as_of), str(source), raw


@lru_cache(maxsize=1)
def shipped_table() -> PriceTable:
    """The package's own dated table, without any config."""
    as_of, source, raw = _shipped_raw()
    return _build(as_of, source, raw)


def table_with(overrides: Mapping[str, Any]) -> PriceTable:
    """The shipped table with a `[prices]` document applied; PriceSpecError on a bad entry."""
    if not overrides:
        return shipped_table()
    as_of, source, shipped = _shipped_raw()
    raw = _copy(shipped)
    _merge(raw, overrides, set(PROVIDERS) | set(shipped))
    return _build(as_of, f"{source} Overridden by the config's [prices].", raw)


def price_table(config: Config | None) -> PriceTable:
    """The table in force for a config (validated when the config was loaded)."""
    return table_with(config.prices if config is not None else {})


def price_of(config: Config | None, provider: str, model: str) -> ModelPrice | None:
    return price_table(config).price(provider, model)
