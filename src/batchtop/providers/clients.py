"""Building the async SDK clients from the environment or config accounts, and the
engine loop's logging.

Keys are read from environment variables (the SDKs' own, or the one an account
names) and handed to the SDK client; they are never stored or printed: each one is
remembered by `batchtop.redaction`, which blanks it in every error we store, print or
log. Which SDK client a provider gets, and from which variables, is its spec's
(`providers.registry`); the SDKs are imported there, lazily, so commands that make no
provider call stay fast.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from batchtop.config import Account, Config
from batchtop.providers import registry
from batchtop.providers.base import ProviderAdapter
from batchtop.providers.spec import TIMEOUT
from batchtop.redaction import (
    redact,
    remember_environment,
    remember_secret,
    remember_url,
)

__all__ = ["TIMEOUT", "NotConfigured", "account_for", "build_adapter", "configure_logging", "redact"]


class LogFilter(logging.Filter):
    """On the handler of `batchtop run`: every record's final text goes through
    `redact` (the SDKs and their HTTP client log URLs, with userinfo, and at DEBUG
    request options), and records of other libraries below WARNING are dropped unless
    verbose, whatever the library's logger is called (httpx, a fork of it, the SDKs)."""

    def __init__(self, *, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name == "batchtop" or record.name.startswith("batchtop.")
        if not ours and not self.verbose and record.levelno < logging.WARNING:
            return False
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


HTTP_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2")
"""The SDKs' HTTP client's loggers: at INFO httpx logs every request's URL. Set to
WARNING with each provider's SDK loggers, so their INFO is not even formatted;
LogFilter catches any other name."""


def _quiet_loggers() -> tuple[str, ...]:
    return HTTP_LOGGERS + tuple(name for spec in registry.specs() for name in spec.sdk_loggers)


def configure_logging(*, verbose: bool = False) -> None:
    """Logging for `batchtop run`: our own INFO on stderr, every record redacted, and
    the HTTP client's and SDKs' loggers at WARNING unless `verbose` (`run --verbose`:
    every request is logged, still redacted)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, LogFilter)]:
            handler.removeFilter(old)
        handler.addFilter(LogFilter(verbose=verbose))
    for name in _quiet_loggers():
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


class NotConfigured(Exception):
    """No credentials for a provider: its buffers wait and the status says why."""


def account_for(config: Config, provider: str) -> Account:
    """The provider's config account, or the default one (the SDK's own variables)."""
    return config.accounts.get(provider) or Account(provider=provider)


def _base_url(account: Account) -> str | None:
    """The account's base URL: its own, else the variable it names; None leaves the
    SDK to its default (and to its spec's `base_url_env`, OPENAI_BASE_URL say)."""
    if account.base_url:
        return account.base_url
    return os.environ.get(account.base_url_env) if account.base_url_env else None


def key_env(config: Config, provider: str) -> str:
    """The name of the variable the provider's key is read from (never its value)."""
    return account_for(config, provider).api_key_env or registry.get(provider).key_env


NO_KEY = "no API key"
"""How a hold for a missing key starts: the engine lifts it once the key is there."""


def build_adapter(config: Config, provider: str) -> ProviderAdapter:
    """The provider's adapter for the engine, with the key and base URL of its config
    account (else its SDK's variables). Raises NotConfigured when the key is not set,
    UnknownProvider for a name no spec has."""
    spec = registry.get(provider)
    account = account_for(config, provider)
    env = account.api_key_env or spec.key_env
    api_key = os.environ.get(env)
    if not api_key:
        raise NotConfigured(f"{NO_KEY}: set {env}")
    base_url = _base_url(account)
    remember_environment()
    remember_secret(api_key)
    remember_url(base_url or os.environ.get(spec.base_url_env))
    return spec.adapter(api_key, base_url, account=account.name, timeout=TIMEOUT)


def sdk_adapter(
    provider: str, api_key: str, base_url: str | None, *, account: str = "default", max_retries: int | None = None
) -> ProviderAdapter:
    """The provider's adapter over its official SDK's async client (imported here, on
    first use: `--once --no-refresh` never pays for it). `max_retries=None` keeps the
    SDK's own retry policy."""
    return registry.get(provider).adapter(api_key, base_url, account=account, timeout=TIMEOUT, max_retries=max_retries)


def fixed_factory(base_urls: dict[str, str], api_key: str) -> Callable[[Config, str], ProviderAdapter]:
    """An adapter factory for the engine that ignores the config's accounts: every
    provider at its given base URL with one key and no SDK retries (the simulator's
    sample data dirs and tests, where a retry would only hide what happened)."""

    def build(config: Config, provider: str) -> ProviderAdapter:
        return sdk_adapter(provider, api_key, base_urls[provider], max_retries=0)

    return build
