"""Building the async SDK clients from the environment or config accounts.

Keys are read from environment variables (the SDKs' own, or the one an account
names) and handed to the SDK client; they are never stored or printed. The SDKs
are imported here, lazily, so commands that make no provider call stay fast.
"""

from __future__ import annotations

import os
import re

from batchtop.config import Account, Config
from batchtop.providers.base import ProviderAdapter
from batchtop.providers.limits import ANTHROPIC, OPENAI

TIMEOUT = 120.0
"""Seconds per provider call: the SDKs' 600 s default would let a hung provider
freeze its pass for ten minutes before the backoff takes over."""

_DEFAULT_KEY_ENV = {OPENAI: "OPENAI_API_KEY", ANTHROPIC: "ANTHROPIC_API_KEY"}


_KEYISH = re.compile(r"\bsk-[A-Za-z0-9_\-*…]{4,}")


def redact(text: str) -> str:
    """Provider error text without anything key-like: a 401 from a real provider can
    quote part of the key, and error text is stored and printed."""
    for name in os.environ:
        if name.endswith("_API_KEY") or name.endswith("_AUTH_TOKEN"):
            value = os.environ[name]
            if len(value) >= 8:
                text = text.replace(value, "[redacted]")
    return _KEYISH.sub("[redacted]", text)


class NotConfigured(Exception):
    """No credentials for a provider: its buffers wait and the status says why."""


def account_for(config: Config, provider: str) -> Account:
    return config.accounts.get(provider) or Account(provider=provider)


def key_env(config: Config, provider: str) -> str:
    """The environment variable that holds the provider's API key (never its value)."""
    return account_for(config, provider).api_key_env or _DEFAULT_KEY_ENV[provider]


def build_adapter(config: Config, provider: str) -> ProviderAdapter:
    account = account_for(config, provider)
    key_env = account.api_key_env or _DEFAULT_KEY_ENV[provider]
    api_key = os.environ.get(key_env)
    if not api_key:
        raise NotConfigured(f"no API key: set {key_env}")
    base_url = account.base_url or (os.environ.get(account.base_url_env) if account.base_url_env else None)
    if provider == OPENAI:
        import openai

        from batchtop.providers.openai_batches import OpenAIBatches

        return OpenAIBatches(openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=TIMEOUT), account.name)
    import anthropic

    from batchtop.providers.anthropic_batches import AnthropicBatches

    return AnthropicBatches(
        anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=TIMEOUT), account.name
    )
