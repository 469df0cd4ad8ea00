"""Building the async SDK clients from the environment or config accounts.

Keys are read from environment variables (the SDKs' own, or the one an account
names) and handed to the SDK client; they are never stored or printed. The SDKs
are imported here, lazily, so commands that make no provider call stay fast.
"""

from __future__ import annotations

import logging
import os
import re

from batchtop.config import Account, Config
from batchtop.providers.base import ProviderAdapter
from batchtop.providers.limits import ANTHROPIC, OPENAI

TIMEOUT = 120.0
"""Seconds per provider call: the SDKs' 600 s default would let a hung provider
freeze its pass for ten minutes before the backoff takes over."""

_DEFAULT_KEY_ENV = {OPENAI: "OPENAI_API_KEY", ANTHROPIC: "ANTHROPIC_API_KEY"}
_DEFAULT_URL_ENV = {OPENAI: "OPENAI_BASE_URL", ANTHROPIC: "ANTHROPIC_BASE_URL"}


_KEYISH = re.compile(r"\bsk-[A-Za-z0-9_\-*…]{4,}")
# credentials by their place rather than their shape: `Bearer <token>`, `x-api-key: <key>`
_QUOTED = re.compile(r"(?i)(\bbearer\s+|\bbasic\s+|\bx-api-key['\"]?\s*[:=]\s*['\"]?)([^\s'\",;)}\]]{4,})")
# the userinfo of a URL: scheme://user:password@host
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"]+@")
_MIN_SECRET = 4
"""Shorter values are not redacted by value (they would blank every such substring of
any message); the patterns above still catch them by place."""

_secrets: set[str] = set()
"""Every key (and base-URL credential) this process handed to an SDK client: redacted
by exact value, whatever the variable that held it or its shape."""


def remember_secret(value: str | None) -> None:
    """Make `redact` blank this value wherever it shows up from now on."""
    if value and len(value) >= _MIN_SECRET:
        _secrets.add(value)


def _remember_url(url: str | None) -> None:
    """The user and password of a base URL (http://user:pass@proxy/v1) are secrets too."""
    if not url:
        return
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return
    for value in (user, password):
        if value:
            remember_secret(value)
            remember_secret(unquote(value))


def remember_config(config: Config) -> None:
    """Remember the keys and base-URL credentials every account of `config` points at,
    so errors raised before an adapter exists are redacted too."""
    for provider in (OPENAI, ANTHROPIC):
        account = account_for(config, provider)
        remember_secret(os.environ.get(account.api_key_env or _DEFAULT_KEY_ENV[provider]))
        _remember_url(_base_url(account) or os.environ.get(_DEFAULT_URL_ENV[provider]))


def redact_url(url: str) -> str:
    """A URL fit to print or log: its userinfo replaced by [redacted]."""
    return _USERINFO.sub(r"\1[redacted]@", url)


def redact(text: str) -> str:
    """Text without secrets, for anything we store, print or log: the exact keys in use
    (a 401 can quote the Authorization header), credentials by their place (Bearer ...,
    x-api-key: ..., URL userinfo), and anything shaped like an OpenAI/Anthropic key."""
    values = set(_secrets)
    for name, value in os.environ.items():
        if name.endswith(("_API_KEY", "_AUTH_TOKEN")) and len(value) >= _MIN_SECRET:
            values.add(value)
    for value in sorted(values, key=len, reverse=True):  # longest first: one key may contain another
        text = text.replace(value, "[redacted]")
    text = _USERINFO.sub(r"\1[redacted]@", text)
    text = _QUOTED.sub(r"\1[redacted]", text)
    return _KEYISH.sub("[redacted]", text)


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


HTTP_LOGGERS = ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "anthropic")
"""The SDKs' and their HTTP client's loggers: at INFO httpx logs every request's URL.
Set to WARNING so their INFO is not even formatted; LogFilter catches any other name."""


def configure_logging(*, verbose: bool = False) -> None:
    """Logging for `batchtop run`: our own INFO on stderr, every record redacted, and
    the HTTP client's and SDKs' loggers at WARNING unless `verbose` (`run --verbose`:
    every request is logged, still redacted)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, LogFilter)]:
            handler.removeFilter(old)
        handler.addFilter(LogFilter(verbose=verbose))
    for name in HTTP_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


class NotConfigured(Exception):
    """No credentials for a provider: its buffers wait and the status says why."""


def account_for(config: Config, provider: str) -> Account:
    return config.accounts.get(provider) or Account(provider=provider)


def _base_url(account: Account) -> str | None:
    """The account's base URL: its own, else the variable it names; None leaves the
    SDK to its default (and to OPENAI_BASE_URL / ANTHROPIC_BASE_URL)."""
    if account.base_url:
        return account.base_url
    return os.environ.get(account.base_url_env) if account.base_url_env else None


def key_env(config: Config, provider: str) -> str:
    """The name of the variable the provider's key is read from (never its value)."""
    return account_for(config, provider).api_key_env or _DEFAULT_KEY_ENV[provider]


NO_KEY = "no API key"
"""How a hold for a missing key starts: the engine lifts it once the key is there."""


def build_adapter(config: Config, provider: str) -> ProviderAdapter:
    account = account_for(config, provider)
    key_env = account.api_key_env or _DEFAULT_KEY_ENV[provider]
    api_key = os.environ.get(key_env)
    if not api_key:
        raise NotConfigured(f"{NO_KEY}: set {key_env}")
    base_url = _base_url(account)
    remember_secret(api_key)
    _remember_url(base_url or os.environ.get(_DEFAULT_URL_ENV[provider]))
    if provider == OPENAI:
        import openai

        from batchtop.providers.openai_batches import OpenAIBatches

        return OpenAIBatches(openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=TIMEOUT), account.name)
    import anthropic

    from batchtop.providers.anthropic_batches import AnthropicBatches

    return AnthropicBatches(
        anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=TIMEOUT), account.name
    )
