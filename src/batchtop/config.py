"""The TOML config: read with tomllib, written with tomli-w, validated on load.

Every key is optional; an unknown key or a wrong type is an error naming the file
and the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from batchtop.errors import BatchtopError
from batchtop.pricing.table import PriceSpecError, table_with
from batchtop.providers.limits import CAPS, PROVIDERS
from batchtop.timefmt import parse_duration


class ConfigError(BatchtopError):
    pass


@dataclass(frozen=True)
class FlushPolicy:
    """When a buffer is flushed, and how big its batches may be (capped by the provider)."""

    max_requests: int = 50_000
    max_bytes: int = 100_000_000
    max_age: float = 3600.0
    deadline_margin: float = 2 * 3600.0
    min_requests: int = 1


@dataclass(frozen=True)
class BufferOverride:
    provider: str | None
    endpoint: str | None
    model: str | None
    values: dict[str, Any]
    output: str | None = None  # "json": the model's text must parse as JSON; "text": no check
    output_schema: Path | None = None  # JSON Schema the output must satisfy (implies json)
    flex: bool | None = None  # issue 15: `flex = true` lets this buffer's due requests use OpenAI flex

    def matches(self, provider: str, endpoint: str, model: str) -> bool:
        return (
            (self.provider is None or self.provider == provider)
            and (self.endpoint is None or self.endpoint == endpoint)
            and (self.model is None or self.model == model)
        )


@dataclass(frozen=True)
class Account:
    """Where to find a provider's key and URL: names of env vars, never the key itself."""

    provider: str
    name: str = "default"
    api_key_env: str | None = None
    base_url: str | None = None
    base_url_env: str | None = None


@dataclass(frozen=True)
class EngineConfig:
    poll_interval: float = 30.0
    max_attempts: int = 3
    auto_resubmit: bool = True
    lease_ttl: float = 60.0
    retry_delay: float = 0.0
    """How long a failed request waits before it goes out again (0: the next tick after
    its batch was ingested), whatever its buffer's flush.max_age says."""
    ingest_budget: float = 10.0
    """Seconds per tick and provider spent reading result files; the rest waits a tick."""
    ingest_budget_bytes: int = 64 * 1024 * 1024
    """Bytes of result lines stored per tick and provider."""
    ingest_max_line: int = 16 * 1024 * 1024
    """A result line longer than this is skipped (an anomaly), never held in memory."""


_ENGINE_KEYS = {
    "poll_interval", "max_attempts", "auto_resubmit", "lease_ttl", "retry_delay", "ingest_budget",
    "ingest_budget_bytes", "ingest_max_line",
}


@dataclass(frozen=True)
class AlertConfig:
    failure_rate: float = 0.05
    window: float = 86400.0
    stuck_after: float | None = None
    """`alerts.stuck_after` (issue 15): a batch not ended this long after it was sent is
    `stuck_batch`; None: past what observed durations make unlikely."""


# -- tiers and lanes (issue 15) ---------------------------------------------------------
TIERS = ("critical", "high", "normal", "low")


@dataclass(frozen=True)
class TierConfig:
    """`[tiers]`: the default SLA of each priority tier, in seconds (`low` has none)."""

    critical: float = 0.0
    high: float = 60.0
    normal: float = 3600.0

    def sla(self, tier: str) -> float | None:
        return None if tier == "low" else float(getattr(self, tier))


@dataclass(frozen=True)
class RealtimeConfig:
    """`[realtime]`: the synchronous lanes (real time at list price, flex)."""

    rescue: bool = True
    """Send requests whose deadline no batch can meet real time, and cancel in-flight
    batches that will likely miss theirs to do the same."""
    concurrency: int = 8
    """Real-time calls in flight at once, per engine."""
    daily_usd: Decimal | None = None
    """Cap on what the synchronous lanes spend per UTC day; None: no cap."""
# -- end tiers and lanes ------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetLimits:
    """Spending caps in USD at batch price; None = no cap."""

    daily_usd: Decimal | None = None
    monthly_usd: Decimal | None = None


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

    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Webhook:
    """`[[webhooks]]`: a receiver of the event log. The secret is never here, only the
    name of the variable that holds it, read when a delivery is signed."""

    url: str
    secret_env: str
    events: frozenset[str] | None = None
    """The kinds it receives; None: every kind."""

    def wants(self) -> tuple[str, ...]:
        from batchtop.store.events import KINDS

        return tuple(k for k in KINDS if self.events is None or k in self.events)


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    engine: EngineConfig = EngineConfig()
    flush: FlushPolicy = FlushPolicy()
    buffers: tuple[BufferOverride, ...] = ()
    accounts: dict[str, Account] = field(default_factory=dict)
    alerts: AlertConfig = AlertConfig()
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    budget: BudgetConfig = BudgetConfig()
    routing: RoutingConfig = RoutingConfig()
    webhooks: tuple[Webhook, ...] = ()
    tiers: TierConfig = TierConfig()
    realtime: RealtimeConfig = RealtimeConfig()

    def flex_for(self, provider: str, endpoint: str, model: str) -> bool:
        """Whether this buffer may use OpenAI's flex tier (issue 15: per buffer)."""
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
        base = self.flush
        policy = FlushPolicy(**{**base.__dict__, **values})
        caps = CAPS[provider]
        return FlushPolicy(
            max_requests=min(policy.max_requests, caps.max_requests),
            max_bytes=min(policy.max_bytes, caps.max_bytes),
            max_age=policy.max_age,
            deadline_margin=policy.deadline_margin,
            min_requests=policy.min_requests,
        )


def _fail(path: Path | None, key: str, message: str) -> ConfigError:
    return ConfigError(f"{path or 'config'}: key '{key}': {message}")


def _check_keys(path: Path | None, prefix: str, table: dict[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            raise _fail(path, f"{prefix}{key}", f"unknown key (known: {', '.join(sorted(allowed))})")


def _int(path: Path | None, key: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(path, key, f"must be an integer >= {minimum}")
    return value


def _duration(path: Path | None, key: str, value: Any) -> float:
    try:
        return parse_duration(value)
    except (ValueError, TypeError) as exc:
        raise _fail(path, key, str(exc)) from None


def _flush_values(path: Path | None, prefix: str, table: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if key in ("max_requests", "max_bytes", "min_requests"):
            out[key] = _int(path, name, value, 1)
        elif key in ("max_age", "deadline_margin"):
            out[key] = _duration(path, name, value)
    return out


_FLUSH_KEYS = {"max_requests", "max_bytes", "max_age", "deadline_margin", "min_requests"}
_OUTPUT_KEYS = {"output", "output_schema"}
_OUTPUT_KINDS = ("json", "text")
_BUDGET_KEYS = {"daily_usd", "monthly_usd"}


def _output_schema(path: Path | None, key: str, value: Any) -> Path:
    """A JSON Schema file, relative to the config file's directory, checked now so a
    typo fails at load time rather than on the first result."""
    if not isinstance(value, str) or not value:
        raise _fail(path, key, "must be a path to a JSON Schema file")
    schema_path = Path(value).expanduser()
    if not schema_path.is_absolute() and path is not None:
        schema_path = path.parent / schema_path
    from batchtop.engine.output_checks import SchemaFileError, read_schema

    try:
        schema = read_schema(schema_path)
    except SchemaFileError as exc:
        raise _fail(path, key, str(exc)) from None
    except OSError as exc:
        raise _fail(path, key, f"cannot read {schema_path} ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(path, key, f"{schema_path} is not JSON ({exc})") from None
    from jsonschema import (  # lazy: only configs that use a schema pay for it
        SchemaError,
        validators,
    )

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise _fail(path, key, f"{schema_path} is not a valid JSON Schema ({exc.message})") from None
    return schema_path.resolve()


def _budget_limits(path: Path | None, prefix: str, table: dict[str, Any]) -> BudgetLimits:
    values: dict[str, Decimal] = {}
    for key in _BUDGET_KEYS & set(table):
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
            raise _fail(path, prefix + key, "must be a number of US dollars >= 0")
        values[key] = Decimal(str(value))
    return BudgetLimits(**values)


def _budget(path: Path | None, table: dict[str, Any]) -> BudgetConfig:
    providers: dict[str, BudgetLimits] = {}
    for key, value in table.items():
        if key in _BUDGET_KEYS:
            continue
        if key not in PROVIDERS:
            raise _fail(path, f"budget.{key}", f"unknown key (known: {', '.join(sorted(_BUDGET_KEYS | set(PROVIDERS)))})")
        if not isinstance(value, dict):
            raise _fail(path, f"budget.{key}", "must be a table")
        _check_keys(path, f"budget.{key}.", value, _BUDGET_KEYS)
        providers[key] = _budget_limits(path, f"budget.{key}.", value)
    return BudgetConfig(total=_budget_limits(path, "budget.", table), providers=providers)


def _routing(path: Path | None, table: dict[str, Any]) -> RoutingConfig:
    _check_keys(path, "routing.", table, {"candidates"})
    candidates = table.get("candidates", [])
    if not isinstance(candidates, list):
        raise _fail(path, "routing.candidates", 'must be an array of model ids, e.g. ["gpt-4o-mini", "claude-haiku-4-5"]')
    for i, model in enumerate(candidates):
        if not isinstance(model, str) or not model.strip():
            raise _fail(path, f"routing.candidates[{i}]", "must be a non-empty model id")
    return RoutingConfig(candidates=tuple(dict.fromkeys(m.strip() for m in candidates)))


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _webhooks(path: Path | None, raw: Any) -> tuple[Webhook, ...]:
    """Each receiver's URL (http or https, with a host), the event kinds it wants (known
    ones, at least one) and the variable holding its signing secret (a name, required:
    receivers only ever see signed events)."""
    from urllib.parse import urlsplit

    from batchtop.store.events import KINDS

    if not isinstance(raw, list):
        raise _fail(path, "webhooks", "must be an array of tables ([[webhooks]])")
    hooks: list[Webhook] = []
    for i, entry in enumerate(raw):
        prefix = f"webhooks[{i}]."
        if not isinstance(entry, dict):
            raise _fail(path, f"webhooks[{i}]", "must be a table")
        _check_keys(path, prefix, entry, {"url", "events", "secret_env"})
        url = entry.get("url")
        if not isinstance(url, str) or not url:
            raise _fail(path, prefix + "url", "required: the receiver's http:// or https:// URL")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError as exc:
            raise _fail(path, prefix + "url", f"not a URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() or ord(c) < 32 for c in url):
            raise _fail(path, prefix + "url", "must be an http:// or https:// URL with a host")
        secret_env = entry.get("secret_env")
        if not isinstance(secret_env, str) or not _ENV_NAME.fullmatch(secret_env):
            raise _fail(
                path, prefix + "secret_env",
                "required: the name of the environment variable holding the signing secret (e.g. BATCHTOP_WEBHOOK_SECRET),"
                " never the secret itself",
            )
        kinds = entry.get("events")
        if kinds is not None:
            if not isinstance(kinds, list) or not kinds:
                raise _fail(path, prefix + "events", f"must be a non-empty array of event kinds ({', '.join(KINDS)}); omit it for every kind")
            for j, kind in enumerate(kinds):
                if kind not in KINDS:
                    raise _fail(path, f"{prefix}events[{j}]", f"unknown event kind {kind!r} (known: {', '.join(KINDS)})")
        hooks.append(Webhook(url=url, secret_env=secret_env, events=frozenset(kinds) if kinds is not None else None))
    return tuple(hooks)


def parse_config(data: dict[str, Any], path: Path | None = None) -> Config:
    """Build a Config from a TOML document, rejecting unknown keys and bad values."""
    _check_keys(
        path, "", data,
        {"engine", "flush", "buffers", "accounts", "alerts", "prices", "budget", "routing", "webhooks", "tiers", "realtime"},
    )
    for section in ("engine", "flush", "accounts", "alerts", "prices", "budget", "routing", "tiers", "realtime"):
        if section in data and not isinstance(data[section], dict):
            raise _fail(path, section, "must be a table")

    engine_t = data.get("engine", {})
    _check_keys(path, "engine.", engine_t, _ENGINE_KEYS)
    engine = EngineConfig()
    if "poll_interval" in engine_t:
        engine = EngineConfig(**{**engine.__dict__, "poll_interval": _duration(path, "engine.poll_interval", engine_t["poll_interval"])})
    if "lease_ttl" in engine_t:
        engine = EngineConfig(**{**engine.__dict__, "lease_ttl": _duration(path, "engine.lease_ttl", engine_t["lease_ttl"])})
    if "retry_delay" in engine_t:
        engine = EngineConfig(**{**engine.__dict__, "retry_delay": _duration(path, "engine.retry_delay", engine_t["retry_delay"])})
    if "max_attempts" in engine_t:
        engine = EngineConfig(**{**engine.__dict__, "max_attempts": _int(path, "engine.max_attempts", engine_t["max_attempts"], 1)})
    if "ingest_budget" in engine_t:
        engine = EngineConfig(**{**engine.__dict__, "ingest_budget": _duration(path, "engine.ingest_budget", engine_t["ingest_budget"])})
    for key in ("ingest_budget_bytes", "ingest_max_line"):
        if key in engine_t:
            engine = EngineConfig(**{**engine.__dict__, key: _int(path, f"engine.{key}", engine_t[key], 1024)})
    if "auto_resubmit" in engine_t:
        if not isinstance(engine_t["auto_resubmit"], bool):
            raise _fail(path, "engine.auto_resubmit", "must be true or false")
        engine = EngineConfig(**{**engine.__dict__, "auto_resubmit": engine_t["auto_resubmit"]})

    flush_t = data.get("flush", {})
    _check_keys(path, "flush.", flush_t, _FLUSH_KEYS)
    flush = FlushPolicy(**{**FlushPolicy().__dict__, **_flush_values(path, "flush.", flush_t)})

    buffers: list[BufferOverride] = []
    raw_buffers = data.get("buffers", [])
    if not isinstance(raw_buffers, list):
        raise _fail(path, "buffers", "must be an array of tables ([[buffers]])")
    for i, entry in enumerate(raw_buffers):
        prefix = f"buffers[{i}]."
        if not isinstance(entry, dict):
            raise _fail(path, f"buffers[{i}]", "must be a table")
        _check_keys(path, prefix, entry, _FLUSH_KEYS | _OUTPUT_KEYS | {"provider", "endpoint", "model", "flex"})
        if "flex" in entry and not isinstance(entry["flex"], bool):
            raise _fail(path, prefix + "flex", "must be true or false")
        for k in ("provider", "endpoint", "model"):
            if k in entry and not isinstance(entry[k], str):
                raise _fail(path, prefix + k, "must be a string")
        if entry.get("provider") not in (None, *PROVIDERS):
            raise _fail(path, prefix + "provider", f"must be one of {', '.join(PROVIDERS)}")
        if entry.get("output") not in (None, *_OUTPUT_KINDS):
            raise _fail(path, prefix + "output", f"must be one of {', '.join(repr(k) for k in _OUTPUT_KINDS)}")
        schema = _output_schema(path, prefix + "output_schema", entry["output_schema"]) if "output_schema" in entry else None
        if schema is not None and entry.get("output") == "text":
            raise _fail(path, prefix + "output", "\"text\" contradicts output_schema (a schema needs JSON output)")
        buffers.append(
            BufferOverride(
                entry.get("provider"),
                entry.get("endpoint"),
                entry.get("model"),
                _flush_values(path, prefix, entry),
                output=entry.get("output"),
                output_schema=schema,
                flex=entry.get("flex"),
            )
        )

    accounts: dict[str, Account] = {}
    for provider, acct in data.get("accounts", {}).items():
        prefix = f"accounts.{provider}."
        if provider not in PROVIDERS:
            raise _fail(path, f"accounts.{provider}", f"unknown provider (one of {', '.join(PROVIDERS)})")
        if not isinstance(acct, dict):
            raise _fail(path, f"accounts.{provider}", "must be a table")
        _check_keys(path, prefix, acct, {"name", "api_key_env", "base_url", "base_url_env"})
        for k, v in acct.items():
            if not isinstance(v, str):
                raise _fail(path, prefix + k, "must be a string")
        accounts[provider] = Account(provider=provider, **acct)

    alerts_t = data.get("alerts", {})
    _check_keys(path, "alerts.", alerts_t, {"failure_rate", "window", "stuck_after"})
    alerts = AlertConfig()
    if "failure_rate" in alerts_t:
        rate = alerts_t["failure_rate"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise _fail(path, "alerts.failure_rate", "must be a number from 0 to 1")
        alerts = AlertConfig(failure_rate=float(rate), window=alerts.window)
    if "window" in alerts_t:
        alerts = AlertConfig(failure_rate=alerts.failure_rate, window=_duration(path, "alerts.window", alerts_t["window"]))
    if "stuck_after" in alerts_t:
        alerts = AlertConfig(alerts.failure_rate, alerts.window, _duration(path, "alerts.stuck_after", alerts_t["stuck_after"]))

    prices = data.get("prices", {})
    try:
        table_with(prices)  # validate now; pricing.table applies it when prices are read
    except PriceSpecError as exc:
        raise _fail(path, f"prices.{exc.key}", exc.message) from None
    budget = _budget(path, data.get("budget", {}))
    return Config(
        path=path,
        engine=engine,
        flush=flush,
        buffers=tuple(buffers),
        accounts=accounts,
        alerts=alerts,
        prices=prices,
        budget=budget,
        routing=_routing(path, data.get("routing", {})),
        webhooks=_webhooks(path, data.get("webhooks", [])),
        tiers=_tiers(path, data.get("tiers", {})),
        realtime=_realtime(path, data.get("realtime", {})),
    )


# -- tiers and lanes (issue 15) ---------------------------------------------------------
def _tiers(path: Path | None, table: dict[str, Any]) -> TierConfig:
    """`[tiers] critical = "0s"`, `high = "1m"`, `normal = "1h"`: each tier's default SLA."""
    _check_keys(path, "tiers.", table, {"critical", "high", "normal"})
    values = {k: _duration(path, f"tiers.{k}", v) for k, v in table.items()}
    return TierConfig(**{**TierConfig().__dict__, **values})


def _realtime(path: Path | None, table: dict[str, Any]) -> RealtimeConfig:
    """`[realtime] rescue`, `concurrency`, `daily_usd`."""
    _check_keys(path, "realtime.", table, {"rescue", "concurrency", "daily_usd"})
    out = RealtimeConfig()
    if "rescue" in table:
        if not isinstance(table["rescue"], bool):
            raise _fail(path, "realtime.rescue", "must be true or false")
        out = RealtimeConfig(table["rescue"], out.concurrency, out.daily_usd)
    if "concurrency" in table:
        out = RealtimeConfig(out.rescue, _int(path, "realtime.concurrency", table["concurrency"], 1), out.daily_usd)
    if "daily_usd" in table:
        value = table["daily_usd"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise _fail(path, "realtime.daily_usd", "must be a non-negative number of US dollars")
        out = RealtimeConfig(out.rescue, out.concurrency, Decimal(str(value)))
    return out
# -- end tiers and lanes ------------------------------------------------------------------


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
