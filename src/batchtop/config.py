"""The TOML config: read with tomllib, written with tomli-w, validated on load.

Every key is optional; an unknown key or a wrong type is an error naming the file
and the key, so a typo never silently falls back to a default.

The settings are declared, not hand-parsed: each key is one field of a frozen
dataclass below, made with `setting(default, parser, doc)`. That one line is the
whole table entry: the loader reads the key's type, default and constraint from it
(the parser refuses a bad value with the message the operator sees), the README's
config table is generated from its doc (`python -m batchtop.config`, checked by
tests/test_readme.py), and the test of config.example.toml asks for the key there.
`Config` names the sections; `section(...)` says the shape of each (a table, an
array of tables, a table per provider), so a new section is a dataclass and one line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from batchtop.errors import BatchtopError
from batchtop.pricing.table import PriceSpecError, table_with
from batchtop.providers.limits import CAPS, PROVIDERS
from batchtop.timefmt import parse_duration


class ConfigError(BatchtopError):
    pass


# -- what a setting is -------------------------------------------------------------------------


class Invalid(ValueError):
    """A parser's refusal: `message` is shown after the key; `at` is appended to the key
    when the fault is inside the value (`[1]` for an array's second item)."""

    def __init__(self, message: str, at: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.at = at


@dataclass(frozen=True)
class Context:
    """What a parser may need besides the value: the config file (paths in it are
    relative to its directory)."""

    path: Path | None


Parser = Callable[[Any, Context], Any]
"""Turns a TOML value into the setting's value, or raises Invalid."""


@dataclass(frozen=True)
class Setting:
    """One key's declaration, kept in its dataclass field's metadata."""

    parse: Parser
    doc: str
    """The README's meaning column."""
    shown: str | None = None
    """The README's default column, when it is not the default written as TOML."""
    required: str | None = None
    """For a key without a default: what the error says when it is missing."""


def setting(default: Any, parse: Parser, doc: str, *, shown: str | None = None) -> Any:
    """A dataclass field that is a config key: its default, its parser, its doc."""
    return field(default=default, metadata={"setting": Setting(parse, doc, shown)})


def required(parse: Parser, doc: str, *, missing: str, shown: str = "required") -> Any:
    """A config key without a default: `missing` is the error when it is left out."""
    return field(metadata={"setting": Setting(parse, doc, shown, required=missing)})


def settings_of(cls: type) -> dict[str, Setting]:
    """The declared keys of a section's dataclass, in declaration order."""
    return {f.name: f.metadata["setting"] for f in dataclasses.fields(cls) if "setting" in f.metadata}


# -- parsers: each refuses a bad value with the message the operator reads ---------------------


def duration(value: Any, ctx: Context) -> float:
    try:
        return parse_duration(value)
    except (ValueError, TypeError) as exc:
        raise Invalid(str(exc)) from None


def integer(minimum: int) -> Parser:
    def parse(value: Any, ctx: Context) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise Invalid(f"must be an integer >= {minimum}")
        return value

    return parse


def boolean(value: Any, ctx: Context) -> bool:
    if not isinstance(value, bool):
        raise Invalid("must be true or false")
    return value


def fraction(value: Any, ctx: Context) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise Invalid("must be a number from 0 to 1")
    return float(value)


def dollars(value: Any, ctx: Context) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
        raise Invalid("must be a number of US dollars >= 0")
    return Decimal(str(value))


def text(value: Any, ctx: Context) -> str:
    if not isinstance(value, str):
        raise Invalid("must be a string")
    return value


def one_of(*choices: str, quoted: bool = False) -> Parser:
    def parse(value: Any, ctx: Context) -> str:
        if not isinstance(value, str) or value not in choices:
            raise Invalid(f"must be one of {', '.join(repr(c) if quoted else c for c in choices)}")
        return value

    return parse


def provider_name(value: Any, ctx: Context) -> str:
    if text(value, ctx) not in PROVIDERS:
        raise Invalid(f"must be one of {', '.join(PROVIDERS)}")
    return str(value)


def model_ids(value: Any, ctx: Context) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Invalid('must be an array of model ids, e.g. ["gpt-4o-mini", "claude-haiku-4-5"]')
    for i, model in enumerate(value):
        if not isinstance(model, str) or not model.strip():
            raise Invalid("must be a non-empty model id", at=f"[{i}]")
    return tuple(dict.fromkeys(m.strip() for m in value))


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_ENV = (
    "required: the name of the environment variable holding the signing secret (e.g. BATCHTOP_WEBHOOK_SECRET),"
    " never the secret itself"
)
_HOOK_URL = "required: the receiver's http:// or https:// URL"


def secret_env(value: Any, ctx: Context) -> str:
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise Invalid(_SECRET_ENV)
    return value


def http_url(value: Any, ctx: Context) -> str:
    """An http or https URL with a host (and a valid port, and no spaces or controls)."""
    from urllib.parse import urlsplit

    if not isinstance(value, str) or not value:
        raise Invalid(_HOOK_URL)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise Invalid(f"not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() or ord(c) < 32 for c in value):
        raise Invalid("must be an http:// or https:// URL with a host")
    return value


def event_kinds(value: Any, ctx: Context) -> frozenset[str]:
    from batchtop.store.events import KINDS

    if not isinstance(value, list) or not value:
        raise Invalid(f"must be a non-empty array of event kinds ({', '.join(KINDS)}); omit it for every kind")
    for j, kind in enumerate(value):
        if kind not in KINDS:
            raise Invalid(f"unknown event kind {kind!r} (known: {', '.join(KINDS)})", at=f"[{j}]")
    return frozenset(value)


def schema_file(value: Any, ctx: Context) -> Path:
    """A JSON Schema file, relative to the config file's directory, checked now so a
    typo fails at load time rather than on the first result."""
    if not isinstance(value, str) or not value:
        raise Invalid("must be a path to a JSON Schema file")
    schema_path = Path(value).expanduser()
    if not schema_path.is_absolute() and ctx.path is not None:
        schema_path = ctx.path.parent / schema_path
    from batchtop.engine.output_checks import SchemaFileError, read_schema

    try:
        schema = read_schema(schema_path)
    except SchemaFileError as exc:
        raise Invalid(str(exc)) from None
    except OSError as exc:
        raise Invalid(f"cannot read {schema_path} ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"{schema_path} is not JSON ({exc})") from None
    from jsonschema import (  # lazy: only configs that use a schema pay for it
        SchemaError,
        validators,
    )

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise Invalid(f"{schema_path} is not a valid JSON Schema ({exc.message})") from None
    return schema_path.resolve()


# -- the settings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineConfig:
    poll_interval: float = setting(
        30.0, duration, "how often the engine ticks (`batchtop run` and the console alike), sooner when work comes due or an action asks"
    )
    max_attempts: int = setting(3, integer(1), "attempts per request before it is a dead letter")
    auto_resubmit: bool = setting(True, boolean, "resubmit failed requests by itself (else wait for `batchtop resubmit`)")
    lease_ttl: float = setting(60.0, duration, "how long an engine's hold on the data dir lasts without renewal")
    retry_delay: float = setting(
        0.0, duration,
        "how long a failed request waits before its next attempt; `\"0s\"`: it goes out at the next tick after its"
        " batch was ingested, whatever the buffer's `flush.max_age`",
    )
    ingest_budget: float = setting(
        10.0, duration, "time per tick and provider spent reading result files; the rest is read on the next tick"
    )
    ingest_budget_bytes: int = setting(64 * 1024 * 1024, integer(1024), "bytes of result lines stored per tick and provider")
    ingest_max_line: int = setting(
        16 * 1024 * 1024, integer(1024), "a result line longer than this (bytes) is skipped and recorded as an anomaly"
    )


@dataclass(frozen=True)
class FlushPolicy:
    """When a buffer is flushed, and how big its batches may be (capped by the provider)."""

    max_requests: int = setting(50_000, integer(1), "flush a buffer once it holds this many requests (capped by the provider)")
    max_bytes: int = setting(100_000_000, integer(1), "... or this many bytes of lines (capped by the provider)")
    max_age: float = setting(3600.0, duration, "... or once its oldest request has waited this long")
    deadline_margin: float = setting(2 * 3600.0, duration, "submit by deadline − 24 h − margin")
    min_requests: int = setting(
        1, integer(1), "below this many queued, age alone does not flush a buffer (a deadline or `flush` still does)"
    )


_OUTPUT_KINDS = ("json", "text")
_MATCHES = "which buffers an entry applies to (later entries win)"


@dataclass(frozen=True)
class BufferOverride:
    """`[[buffers]]`: settings for the buffers matching all of provider / endpoint / model
    it names; `values` holds the `[flush]` keys it sets."""

    provider: str | None = setting(None, provider_name, _MATCHES, shown="all")
    endpoint: str | None = setting(None, text, _MATCHES, shown="all")
    model: str | None = setting(None, text, _MATCHES, shown="all")
    values: dict[str, Any] = field(default_factory=dict)
    output: str | None = setting(
        None, one_of(*_OUTPUT_KINDS, quoted=True),
        "`\"json\"`: a result whose text is not JSON is a failed attempt; `\"text\"`: no check", shown="",
    )
    output_schema: Path | None = setting(
        None, schema_file, "a JSON Schema file (relative to the config file) results must satisfy", shown=""
    )
    flex: bool | None = setting(
        None, boolean, "OpenAI: due requests of these buffers may go by flex before real time", shown="`false`"
    )

    def matches(self, provider: str, endpoint: str, model: str) -> bool:
        return (
            (self.provider is None or self.provider == provider)
            and (self.endpoint is None or self.endpoint == endpoint)
            and (self.model is None or self.model == model)
        )

    def check(self) -> None:
        """The one constraint between keys: a schema needs JSON output."""
        if self.output_schema is not None and self.output == "text":
            raise Invalid("\"text\" contradicts output_schema (a schema needs JSON output)", at="output")


@dataclass(frozen=True)
class Account:
    """Where to find a provider's key and URL: names of env vars, never the key itself."""

    provider: str
    name: str = setting("default", text, "the account's name in the status")
    api_key_env: str | None = setting(
        None, text, "the variable holding the key",
        shown="`OPENAI_API_KEY` / `ANTHROPIC_API_KEY` / `GEMINI_API_KEY` (else `GOOGLE_API_KEY`)",
    )
    base_url: str | None = setting(None, text, "an endpoint, or the variable holding it", shown="the SDK's")
    base_url_env: str | None = setting(None, text, "an endpoint, or the variable holding it", shown="the SDK's")


@dataclass(frozen=True)
class AlertConfig:
    failure_rate: float = setting(0.05, fraction, "alert when more than this share of attempts failed in the window")
    window: float = setting(86400.0, duration, "the window of that failure rate")
    stuck_after: float | None = setting(
        None, duration,
        "a batch not ended this long after it was sent raises `stuck_batch` (none: past what observed durations"
        " make unlikely; see [Tiers and lanes](#tiers-and-lanes))",
        shown="none",
    )


TIERS = ("critical", "high", "normal", "low")
"""The seeds' priority tiers (`enqueue --tier`); `low` is batch work with no deadline of its own."""


@dataclass(frozen=True)
class TierConfig:
    """`[tiers]`: the default SLA of each priority tier, in seconds (`low` has none)."""

    critical: float = setting(0.0, duration, "each tier's default SLA (`enqueue --tier`)")
    high: float = setting(60.0, duration, "each tier's default SLA (`enqueue --tier`)", shown='`"1m"`')
    normal: float = setting(3600.0, duration, "each tier's default SLA (`enqueue --tier`)")

    def sla(self, tier: str) -> float | None:
        return None if tier == "low" else float(getattr(self, tier))


@dataclass(frozen=True)
class RealtimeConfig:
    """`[realtime]`: the synchronous lanes (real time at list price, flex)."""

    rescue: bool = setting(
        True, boolean,
        "send requests whose deadline no batch can meet real time, and cancel in-flight batches that will likely"
        " miss theirs to do the same",
    )
    concurrency: int = setting(8, integer(1), "real-time calls in flight at once, per engine")
    daily_usd: Decimal | None = setting(None, dollars, "cap on what real time and flex spend per UTC day", shown="none")


@dataclass(frozen=True)
class BudgetLimits:
    """Spending caps in USD at batch price; None = no cap."""

    daily_usd: Decimal | None = setting(
        None, dollars, "hold new batches that would take batch spend past this cap (UTC day / month)", shown="none"
    )
    monthly_usd: Decimal | None = setting(
        None, dollars, "hold new batches that would take batch spend past this cap (UTC day / month)", shown="none"
    )


@dataclass(frozen=True)
class BudgetConfig:
    """`[budget]` caps all providers together; `[budget.<provider>]` caps one."""

    total: BudgetLimits = BudgetLimits()
    providers: dict[str, BudgetLimits] = field(default_factory=dict)

    def has_caps(self) -> bool:
        """Whether any cap is set: without one the engine skips the spend query."""
        limits = [self.total, *self.providers.values()]
        return any(lim.daily_usd is not None or lim.monthly_usd is not None for lim in limits)


@dataclass(frozen=True)
class RoutingConfig:
    """`[routing]`: models worth routing work to, priced by the savings screen's what-if
    (and by `batchtop report` when no `--what-if` is given)."""

    candidates: tuple[str, ...] = setting(
        (), model_ids,
        "models to price the same usage on, in batch, for the what-if (the console's savings screen, and `report`"
        " without `--what-if`); each is compared with the models of its own provider",
    )


@dataclass(frozen=True)
class Webhook:
    """`[[webhooks]]`: a receiver of the event log. The secret is never here, only the
    name of the variable that holds it, read when a delivery is signed."""

    url: str = required(
        http_url, "a receiver of every event, POSTed as JSON (http or https; see [Events and webhooks](#events-and-webhooks))",
        missing=_HOOK_URL, shown="none",
    )
    secret_env: str = required(
        secret_env,
        "the environment variable holding its signing secret; while it is unset nothing is sent to that receiver (the events wait)",
        missing=_SECRET_ENV,
    )
    events: frozenset[str] | None = setting(
        None, event_kinds, "the event kinds it receives, e.g. `[\"ended\", \"alert\"]`", shown="every kind"
    )
    """The kinds it receives; None: every kind."""

    def wants(self) -> tuple[str, ...]:
        from batchtop.store.events import KINDS

        return tuple(k for k in KINDS if self.events is None or k in self.events)


STORE_ENV = "BATCHTOP_STORE"
"""The environment variable naming the store (between `--store` and `[store] url`)."""

_STORE_URL = "must be a PostgreSQL URL, postgresql://user@host:port/db (or postgres://, any libpq URI)"


def store_url(value: Any, ctx: Context) -> str:
    """A libpq URI (postgresql:// or postgres://): passed to libpq as written (sslmode
    and the other parameters too); a password in it is never shown."""
    if not isinstance(value, str) or value.split(":", 1)[0].lower() not in ("postgresql", "postgres") or "://" not in value:
        raise Invalid(_STORE_URL)
    return value


def schema_name(value: Any, ctx: Context) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
        raise Invalid("must be a plain lower-case name (letters, digits, _; at most 63)")
    return value


@dataclass(frozen=True)
class StoreConfig:
    """`[store]`: where the state lives. Once resolved (`resolve_store`), `url` is the
    store the process uses: `--store`, else `$BATCHTOP_STORE`, else this key."""

    url: str | None = setting(
        None, store_url,
        "a shared PostgreSQL store: a libpq URI, `postgresql://user@host:5432/db?sslmode=verify-full`, every"
        " parameter passed through (`--store` and `$BATCHTOP_STORE` win); its password is never shown: prefer"
        " `PGPASSWORD` or `~/.pgpass` to writing it here",
        shown="none: SQLite in the data dir",
    )
    schema: str = setting("batchtop", schema_name, "the PostgreSQL schema holding every object of the store")


# -- sections: the shape of each top-level key -------------------------------------------------


def _fail(path: Path | None, key: str, message: str) -> ConfigError:
    return ConfigError(f"{path or 'config'}: key '{key}': {message}")


def _check_keys(path: Path | None, prefix: str, table: dict[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise _fail(path, f"{prefix}{key}", f"unknown key (known: {', '.join(sorted(allowed))})")


def _table_at(ctx: Context, key: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _fail(ctx.path, key, "must be a table")
    return raw


def _array_at(ctx: Context, key: str, raw: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise _fail(ctx.path, key, f"must be an array of tables ([[{key}]])")
    return raw


def _values(cls: type, raw: dict[str, Any], ctx: Context, prefix: str) -> dict[str, Any]:
    """The declared keys of `cls` present in `raw`, parsed in declaration order."""
    out: dict[str, Any] = {}
    for name, spec in settings_of(cls).items():
        if name not in raw:
            if spec.required is not None:
                raise _fail(ctx.path, prefix + name, spec.required)
            continue
        try:
            out[name] = spec.parse(raw[name], ctx)
        except Invalid as exc:
            raise _fail(ctx.path, prefix + name + exc.at, exc.message) from None
    return out


def _build(cls: type, raw: dict[str, Any], ctx: Context, prefix: str, spill: type | None = None, **fixed: Any) -> Any:
    """One instance of a section's dataclass from its TOML table: unknown keys refused,
    each declared key parsed; a class with `check()` then checks its keys together.
    With `spill`, the keys of that class are taken too, parsed into the `values` dict
    (a `[[buffers]]` entry's `[flush]` keys)."""
    extra = settings_of(spill) if spill is not None else {}
    _check_keys(ctx.path, prefix, raw, set(settings_of(cls)) | set(extra))
    obj = cls(**_values(cls, raw, ctx, prefix), **fixed)
    if hasattr(obj, "check"):
        try:
            obj.check()
        except Invalid as exc:
            raise _fail(ctx.path, prefix + exc.at, exc.message) from None
    if spill is not None:
        obj = dataclasses.replace(obj, values=_values(spill, raw, ctx, prefix))
    return obj


Shape = Literal["table", "array", "per_provider", "custom"]
Row = tuple[str, str, str]
"""A README row: key, default, meaning."""


@dataclass(frozen=True)
class Section:
    """How a top-level key is read, kept in its Config field's metadata.

    shape: "table" (`[name]`, the keys of `cls`), "array" (`[[name]]`, each entry a
    `cls`), "per_provider" (`[name.<provider>]`, each a `cls` given `provider=`) or
    "custom" (read by the function named in `_CUSTOM`). `spill`: a class whose keys an
    entry also takes, into its `values`. `rows` replace the README rows generated from
    `cls`'s keys; `more` follow them."""

    shape: Shape
    cls: type | None = None
    spill: type | None = None
    rows: tuple[Row, ...] = ()
    more: tuple[Row, ...] = ()


def section(shape: Shape, cls: type | None = None, *, spill: type | None = None, default: Callable[[], Any] | None = None,
            rows: tuple[Row, ...] = (), more: tuple[Row, ...] = ()) -> Any:
    """A Config field that is a top-level key of the config file."""
    meta = {"section": Section(shape, cls, spill, rows, more)}
    if shape == "array":
        return field(default=(), metadata=meta)
    factory = default or (dict if shape == "per_provider" else cls)
    assert factory is not None
    return field(default_factory=factory, metadata=meta)


def _load_table(name: str, sec: Section, raw: Any, ctx: Context) -> Any:
    assert sec.cls is not None
    if sec.shape == "table":
        return _build(sec.cls, _table_at(ctx, name, raw), ctx, f"{name}.")
    if sec.shape == "array":
        return tuple(
            _build(sec.cls, _table_at(ctx, f"{name}[{i}]", entry), ctx, f"{name}[{i}].", sec.spill)
            for i, entry in enumerate(_array_at(ctx, name, raw))
        )
    out: dict[str, Any] = {}  # per_provider
    for provider, entry in _table_at(ctx, name, raw).items():
        if provider not in PROVIDERS:
            raise _fail(ctx.path, f"{name}.{provider}", f"unknown provider (one of {', '.join(PROVIDERS)})")
        out[provider] = _build(sec.cls, _table_at(ctx, f"{name}.{provider}", entry), ctx, f"{name}.{provider}.", provider=provider)
    return out


def _load_prices(raw: Any, ctx: Context) -> dict[str, dict[str, Any]]:
    try:
        table_with(raw)  # validate now; pricing.table applies it when prices are read
    except PriceSpecError as exc:
        raise _fail(ctx.path, f"prices.{exc.key}", exc.message) from None
    return raw


def _load_budget(raw: dict[str, Any], ctx: Context) -> BudgetConfig:
    """`[budget]`'s own caps, and a table of the same keys per provider."""
    keys = set(settings_of(BudgetLimits))
    providers: dict[str, BudgetLimits] = {}
    for key, value in raw.items():
        if key in keys:
            continue
        if key not in PROVIDERS:
            raise _fail(ctx.path, f"budget.{key}", f"unknown key (known: {', '.join(sorted(keys | set(PROVIDERS)))})")
        providers[key] = _build(BudgetLimits, _table_at(ctx, f"budget.{key}", value), ctx, f"budget.{key}.")
    total = BudgetLimits(**_values(BudgetLimits, raw, ctx, "budget."))
    return BudgetConfig(total=total, providers=providers)


_CUSTOM: dict[str, Callable[[Any, Context], Any]] = {"prices": _load_prices, "budget": _load_budget}

_PRICE_ROWS: tuple[Row, ...] = (
    ("`prices.<provider>.batch_discount`", "`0.5`", "share off list price in batch"),
    (
        "`prices.<provider>.\"<family>\"` `input`, `output`, `cached_input`, `cache_write`, `cache_write_1h`",
        "the shipped table",
        "USD per million tokens (`cached_input` and `cache_write` default to `input`, `cache_write_1h` to 2 x `input`);"
        " a model id is priced by its own entry, else by the family it is a dated snapshot of"
        " (see [Prices and estimates](#prices-and-estimates))",
    ),
)
_BUDGET_ROWS: tuple[Row, ...] = (
    ("`budget.daily_usd` / `budget.monthly_usd`", "none",
     "hold new batches that would take batch spend past this cap (UTC day / month)"),
    ("`budget.<provider>.daily_usd` / `monthly_usd`", "none", "the same cap, for one provider"),
)


@dataclass(frozen=True)
class Config:
    """The whole config. Each field but `path` is a top-level key of the file."""

    path: Path | None = None
    engine: EngineConfig = section("table", EngineConfig)
    flush: FlushPolicy = section("table", FlushPolicy)
    buffers: tuple[BufferOverride, ...] = section(
        "array", BufferOverride, spill=FlushPolicy, more=(("`[[buffers]]` flush keys", "", "any `flush.*` key, for those buffers"),)
    )
    accounts: dict[str, Account] = section("per_provider", Account)
    alerts: AlertConfig = section("table", AlertConfig)
    prices: dict[str, dict[str, Any]] = section("custom", default=dict, rows=_PRICE_ROWS)
    budget: BudgetConfig = section("custom", BudgetLimits, default=BudgetConfig, rows=_BUDGET_ROWS)
    routing: RoutingConfig = section("table", RoutingConfig)
    webhooks: tuple[Webhook, ...] = section("array", Webhook)
    tiers: TierConfig = section("table", TierConfig)
    realtime: RealtimeConfig = section("table", RealtimeConfig)
    store: StoreConfig = section("table", StoreConfig)

    def flex_for(self, provider: str, endpoint: str, model: str) -> bool:
        """Whether this buffer may use OpenAI's flex tier (`[[buffers]] flex`, later entries win)."""
        flex = False
        for override in self.buffers:
            if override.matches(provider, endpoint, model) and override.flex is not None:
                flex = override.flex
        return flex and provider == "openai"

    def policy_for(self, provider: str, endpoint: str, model: str) -> FlushPolicy:
        """The flush policy of one buffer: defaults, then matching overrides, then provider caps."""
        values: dict[str, Any] = {}
        for override in self.buffers:
            if override.matches(provider, endpoint, model):
                values.update(override.values)
        policy = dataclasses.replace(self.flush, **values)
        caps = CAPS[provider]
        return dataclasses.replace(
            policy,
            max_requests=min(policy.max_requests, caps.max_requests),
            max_bytes=min(policy.max_bytes, caps.max_bytes),
        )


def sections() -> dict[str, Section]:
    """The top-level keys of a config file and how each is read, in file order."""
    return {f.name: f.metadata["section"] for f in dataclasses.fields(Config) if "section" in f.metadata}


def parse_config(data: dict[str, Any], path: Path | None = None) -> Config:
    """Build a Config from a TOML document, rejecting unknown keys and bad values."""
    ctx = Context(path)
    declared = sections()
    _check_keys(path, "", data, set(declared))
    for name, sec in declared.items():  # every table's type first, then its keys
        if name in data and sec.shape != "array":
            _table_at(ctx, name, data[name])
    values = {
        name: _CUSTOM[name](data[name], ctx) if sec.shape == "custom" else _load_table(name, sec, data[name], ctx)
        for name, sec in declared.items()
        if name in data
    }
    return Config(path=path, **values)


# -- the README's config table, generated from the declarations --------------------------------


def _show_duration(seconds: float) -> str:
    return f'"{seconds / 3600:g}h"' if seconds and seconds % 3600 == 0 else f'"{seconds:g}s"'


def _shown(spec: Setting, default: Any) -> str:
    if spec.shown is not None:
        return spec.shown
    if spec.parse is duration:
        literal = _show_duration(default)
    elif isinstance(default, bool):
        literal = "true" if default else "false"
    elif isinstance(default, str):
        literal = f'"{default}"'
    elif isinstance(default, tuple):
        literal = "[]" if not default else repr(list(default))
    else:
        literal = str(default)
    return f"`{literal}`"


def readme_rows() -> Iterator[str]:
    """The rows of the README's config table (`| Key | Default | Meaning |`): one per key,
    keys in a row that share their default and meaning."""
    for name, sec in sections().items():
        rows: list[tuple[str, str, str]] = list(sec.rows)
        if not rows and sec.cls is not None:
            label = {"table": "`{name}.{key}`", "array": "`[[{name}]]` `{key}`", "per_provider": "`{name}.<provider>.{key}`"}[sec.shape]
            defaults = {f.name: f.default for f in dataclasses.fields(sec.cls)}
            merged: list[tuple[list[str], str, str]] = []
            for key, spec in settings_of(sec.cls).items():
                shown = _shown(spec, defaults[key])
                if merged and merged[-1][1:] == (shown, spec.doc):
                    merged[-1][0].append(f"`{key}`")
                else:
                    merged.append(([label.format(name=name, key=key)], shown, spec.doc))
            rows = [(" / ".join(labels), shown, doc) for labels, shown, doc in merged]
        for label, shown, doc in [*rows, *sec.more]:
            yield f"| {label} | {shown} | {doc} |".replace("|  |", "| |")


def declared_keys() -> Iterator[str]:
    """Every key path a config may hold, for the tests of config.example.toml: `<provider>`
    stands for each provider, `<family>` for a priced model and `<a flush key>` for any."""
    from batchtop.pricing.table import PRICE_KEYS

    for name, sec in sections().items():
        if name == "prices":
            yield "prices.<provider>.batch_discount"
            yield from (f"prices.<provider>.<family>.{k}" for k in PRICE_KEYS)
        elif name == "budget":
            yield from (f"budget.{k}" for k in settings_of(BudgetLimits))
            yield from (f"budget.<provider>.{k}" for k in settings_of(BudgetLimits))
        else:
            assert sec.cls is not None
            infix = ".<provider>." if sec.shape == "per_provider" else "."
            yield from (f"{name}{infix}{k}" for k in settings_of(sec.cls))
            if sec.spill is not None:  # [[buffers]]: any [flush] key, one name standing for them all
                yield f"{name}.<a flush key>"




def resolve_store(config: Config, override: str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """The config with its store resolved, once per process: `override` (`--store`),
    else `$BATCHTOP_STORE` (an empty one counts as unset), else `[store] url`, else
    None (the SQLite file in the data dir). A URL's password is remembered by
    `batchtop.redaction`, so no log or error line that goes through `redact` shows it."""
    env = os.environ if env is None else env
    url, origin = config.store.url, f"{config.path or 'config'}: key 'store.url'"
    if env.get(STORE_ENV):
        url, origin = env[STORE_ENV], f"${STORE_ENV}"
    if override is not None:
        url, origin = override, "--store"
    if url is not None:
        try:
            store_url(url, Context(config.path))
        except Invalid as exc:
            raise ConfigError(f"{origin}: {exc.message}") from None
        from batchtop.redaction import remember_store_url

        remember_store_url(url)
    if url == config.store.url:
        return config
    return dataclasses.replace(config, store=dataclasses.replace(config.store, url=url))


MAX_CONFIG_BYTES = 1 << 20
"""A config is a few kilobytes; the cap keeps a path to a device from being read for ever."""


def _private_group(gid: int, uid: int) -> bool:
    """Whether `gid` is the user's own group (user-private groups, umask 002): its
    group-write bit lets nobody else in. Unknown users or groups count as shared."""
    import grp
    import pwd

    try:
        user, group = pwd.getpwuid(uid), grp.getgrgid(gid)
    except KeyError:
        return False
    return user.pw_gid == gid and set(group.gr_mem) <= {user.pw_name}


def _others_can_write(info: os.stat_result) -> bool:
    if info.st_mode & stat.S_IWOTH:
        return True
    return bool(info.st_mode & stat.S_IWGRP) and not _private_group(info.st_gid, info.st_uid)


def _trusted_owner(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def _check_dirs(path: Path, target: Path) -> None:
    """Every directory above the config must keep others from replacing it: owned by us
    or root, and not writable by others, unless sticky (like /tmp: there others cannot
    rename or remove what is ours)."""
    for directory in target.parents:
        try:
            info = directory.stat()
        except OSError:
            continue
        if not _trusted_owner(info.st_uid):
            raise ConfigError(
                f"{path}: its directory {directory} is owned by another user (uid {info.st_uid}), who could replace"
                " the config and send your API keys to a server of theirs; not used: keep the config in a directory of yours"
            )
        if _others_can_write(info) and not info.st_mode & stat.S_ISVTX:
            raise ConfigError(
                f"{path}: its directory {directory} is writable by other users (mode {stat.S_IMODE(info.st_mode):04o},"
                " not sticky), who could replace the config and send your API keys to a server of theirs;"
                f" not used: fix it with `chmod go-w {directory}`"
            )


def _check_file(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: not a regular file")
    if not _trusted_owner(info.st_uid):
        raise ConfigError(
            f"{path}: owned by another user (uid {info.st_uid}), who could point batchtop at a server of theirs"
            " and receive your API keys; not used: use a config file of your own"
        )
    if _others_can_write(info):
        raise ConfigError(
            f"{path}: writable by other users (mode {stat.S_IMODE(info.st_mode):04o}), who could point batchtop at"
            f" a server of theirs and receive your API keys; not used: fix it with `chmod go-w {path}`"
        )
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a batchtop config")


def _read_trusted(path: Path) -> bytes:
    """The config's bytes, if no other user can have written them: the file and the
    directories above it (and, for a symlink, the link and where it points) are checked
    on the descriptor that is read, so what was checked is what is read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_file(path, os.fstat(fd))
        link = path.lstat()
        if stat.S_ISLNK(link.st_mode) and not _trusted_owner(link.st_uid):
            raise ConfigError(f"{path}: a symlink of another user (uid {link.st_uid}); not followed")
        absolute = Path(os.path.abspath(path))
        _check_dirs(path, absolute)
        real = Path(os.path.realpath(path))
        if real != absolute:
            _check_dirs(path, real)
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_CONFIG_BYTES:
                raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB; not a batchtop config")
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_config(path: Path, *, required: bool = False) -> Config:
    """Read the config file; a missing optional file gives the defaults. A config that
    another user can write is refused: it names the servers our keys are sent to."""
    try:
        raw = _read_trusted(path)
    except FileNotFoundError:
        if required:
            raise ConfigError(f"{path}: config file not found") from None
        return Config(path=None)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        data = tomllib.loads(raw.decode())
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: nested too deeply") from None
    return parse_config(data, path)


def write_config(path: Path, data: dict[str, Any]) -> None:
    """Write a config document (validated first, so we never write one we cannot read)."""
    import tomli_w

    parse_config(data, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(data))


if __name__ == "__main__":  # `python -m batchtop.config`: the README's config table, to paste
    print("| Key | Default | Meaning |\n|---|---|---|")
    print("\n".join(readme_rows()))
