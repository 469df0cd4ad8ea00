"""Redaction: one function that blanks secrets in any text we store, print or log.

It knows the exact keys in use (every key handed to an SDK client is remembered here,
whatever variable held it and whatever its shape) and also catches credentials by
their place (`Bearer ...`, `x-api-key: ...`, the userinfo of a URL) and by the shape
of OpenAI, Anthropic and Google keys. Provider error text is where keys turn up: a 401 from a
proxy can quote the Authorization header it got.
"""

from __future__ import annotations

import os
import re

_KEYISH = re.compile(r"\bsk-[A-Za-z0-9_\-*…]{4,}")
_GOOGLE_KEY = re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")
"""Google API keys (GEMINI_API_KEY / GOOGLE_API_KEY): AIza and 35 more characters."""
_KEY_PARAM = re.compile(r"([?&]key=)[^&\s'\"]+")
"""Google APIs also take the key as `?key=` in a URL."""
# credentials by their place rather than their shape: `Bearer <token>`, `x-api-key: <key>`
_QUOTED = re.compile(
    r"(?i)(\bbearer\s+|\bbasic\s+|\bx-(?:goog-)?api-key['\"]?\s*[:=]\s*['\"]?)([^\s'\",;)}\]]{4,})"
)
# the userinfo of a URL: scheme://user:password@host
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"]+@")
_MIN_SECRET = 4
"""Shorter values are not redacted by value (they would blank every such substring of
any message); the patterns above still catch them by place."""

_secrets: set[str] = set()
"""Every key (and base-URL credential) this process handed to an SDK client: redacted
by exact value, whatever the variable that held it or its shape."""


_ordered: tuple[str, ...] | None = None
"""The values to blank, longest first (one key may contain another); None: to be
computed (from `_secrets` and the environment) at the next `redact`."""


def remember_secret(value: str | None) -> None:
    """Make `redact` blank this value wherever it shows up from now on."""
    global _ordered
    if value and len(value) >= _MIN_SECRET and value not in _secrets:
        _secrets.add(value)
        _ordered = None


def remember_environment() -> None:
    """Re-read the environment's `*_API_KEY` / `*_AUTH_TOKEN` variables at the next
    `redact` (keys of other tools, redacted too). Read once per change rather than per
    call: scanning the environment cost more than the rest of a redaction, which runs
    on every failed result line."""
    global _ordered
    _ordered = None


def _values() -> tuple[str, ...]:
    global _ordered
    if _ordered is None:
        values = set(_secrets)
        for name, value in os.environ.items():
            if name.endswith(("_API_KEY", "_AUTH_TOKEN")) and len(value) >= _MIN_SECRET:
                values.add(value)
        _ordered = tuple(sorted(values, key=len, reverse=True))
    return _ordered


def remember_url(url: str | None) -> None:
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


def remember_store_url(url: str | None) -> None:
    """The password of a store URL (`postgresql://user:pass@host/db`, or a `password=`
    parameter), and `$PGPASSWORD`, which libpq reads when the URL has none: redacted by
    value from now on. The user name is not a secret (and often a plain word such as
    `batchtop`, which redacting would blank everywhere)."""
    from urllib.parse import unquote, urlsplit

    remember_secret(os.environ.get("PGPASSWORD"))
    if not url:
        return
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return
    found = re.findall(r"(?i)(?:^|&)password=([^&]*)", parts.query)
    for value in (password, *found):
        if value:
            remember_secret(value)
            remember_secret(unquote(value))


def redact(text: str) -> str:
    """Text without secrets, for anything we store, print or log: the exact keys in use
    (a 401 can quote the Authorization header), credentials by their place (Bearer ...,
    x-api-key: ..., URL userinfo), and anything shaped like an OpenAI/Anthropic key."""
    for value in _values():
        if value in text:
            text = text.replace(value, "[redacted]")
    # each pattern only where its anchor occurs: most error text has none of them
    if "://" in text:
        text = _USERINFO.sub(r"\1[redacted]@", text)
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered or "x-api-key" in lowered or "x-goog-api-key" in lowered:
        text = _QUOTED.sub(r"\1[redacted]", text)
    if "sk-" in text:
        text = _KEYISH.sub("[redacted]", text)
    if "AIza" in text:
        text = _GOOGLE_KEY.sub("[redacted]", text)
    if "key=" in text:
        text = _KEY_PARAM.sub(r"\1[redacted]", text)
    return text
