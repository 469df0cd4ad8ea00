"""What a provider call can fail with, in provider-neutral terms.

Each adapter translates its SDK's exceptions into these at its boundary (one
translation function per SDK, `openai_batches.translate`, `anthropic_batches.translate`),
so the engine decides what to do from the type alone and never reads an SDK
exception, a status code or a header.

The categories are the engine's decisions:

- `ProviderAuthError` (401): the key was refused. The provider's work is held, and the
  next pass asks once, cheaply (`probe`), before anything is uploaded again.
- `ProviderQuota` (402, `insufficient_quota`, billing errors, a too-low credit balance):
  the account cannot pay. Every buffer of the provider is held for a while and an
  alert is raised; sending more would fail the same way.
- `ProviderNotFound` (404 for a batch or its result file): the provider no longer
  knows it. That one batch is marked lost; the rest of the pass goes on.
- `ProviderRefused` (any other 4xx, and on a create also 404/429): the provider
  answered and declined this request. Nothing was created, so a refused submission's
  requests go back to their buffer without using an attempt.
- `ProviderTransient` (5xx, 408, 409, 429 outside a create, timeouts, connection
  errors): worth asking again later. The provider's pass backs off, at least
  `retry_after` seconds when the provider said.

Every error keeps the provider's own text (`message`, redacted: it is stored and
printed), the HTTP status where there was one, and the SDK exception's class name
(`source`), which the status line shows ("backing off 8s ... after InternalServerError").
"""

from __future__ import annotations

from collections.abc import Mapping

from batchtop.redaction import redact

__all__ = [
    "ProviderAuthError",
    "ProviderError",
    "ProviderNotFound",
    "ProviderQuota",
    "ProviderRefused",
    "ProviderTransient",
    "classify_status",
    "error_name",
    "is_quota",
    "retry_after_seconds",
]


class ProviderError(Exception):
    """Base of every typed provider failure.

    Attributes:
        message: the provider's (or transport's) own text, redacted.
        status_code: the HTTP status, or None for a connection error or timeout.
        retry_after: seconds the provider asked us to wait (Retry-After), if it said.
        source: the class name of the exception this was translated from.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
        source: str | None = None,
    ) -> None:
        self.message = redact(message)
        self.status_code = status_code
        self.retry_after = retry_after
        self.source = source or type(self).__name__
        super().__init__(self.message)


class ProviderRefused(ProviderError):
    """The provider answered and declined the request: nothing was created or changed.

    On a submission: the batch was not taken (rate, queue or enqueued-token limit, a
    bad request); its requests go back to their buffer, to wait `retry_after` when the
    provider said, else a growing backoff of that buffer alone.
    """

    @property
    def reason(self) -> str:
        """What the provider said, as the refusal is reported ("create refused: 429 ...")."""
        return self.message


class ProviderQuota(ProviderError):
    """The account is out of quota or credit: the whole provider must wait, whatever
    the request was; an operator pays or raises the limit."""

    @property
    def reason(self) -> str:
        return self.message


class ProviderNotFound(ProviderError):
    """The provider answers 404 for a batch we submitted, or for its result file:
    it no longer knows it (deleted, expired, another account's)."""

    def __init__(self, batch_id: str, detail: str, *, source: str | None = None) -> None:
        super().__init__(f"{batch_id}: {detail}", status_code=404, source=source)
        self.batch_id = batch_id
        self.detail = redact(detail)


class ProviderTransient(ProviderError):
    """A failure worth trying again later: 5xx, overloaded, 408/409, a rate limit
    outside a create, a timeout or a broken connection."""


class ProviderAuthError(ProviderError):
    """The provider refused our key (401). Not a judgement on any batch: nothing is
    uploaded until a cheap probe succeeds with the key."""


_QUOTA_CODES = frozenset({
    "insufficient_quota", "billing_hard_limit_reached", "billing_not_active", "billing_error", "quota_exceeded",
})
_QUOTA_PHRASES = ("credit balance is too low", "exceeded your current quota", "requires billing to be enabled")
"""Anthropic reports a low credit balance as a 400 `invalid_request_error`: its message
is the only sign that paying, not rewriting, fixes it. Google says both in prose too:
a 429 RESOURCE_EXHAUSTED "You exceeded your current quota" (a rate limit has other
text) and a 403 "This API method requires billing to be enabled"."""


def is_quota(code: str | None, kind: str | None, message: str | None) -> bool:
    """Out of quota or credit, whichever field says it (an error code, an error type or
    the message): on a refused call and on a failed result line alike."""
    if (code or "") in _QUOTA_CODES or (kind or "") in _QUOTA_CODES:
        return True
    text = (message or "").lower()
    return any(phrase in text for phrase in _QUOTA_PHRASES)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the provider asked us to wait: `retry-after-ms`, then `retry-after`
    (seconds); None when neither is there or readable (an HTTP date is not taken)."""
    if not headers:
        return None
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        return None
    return None


def classify_status(
    status: int,
    message: str,
    *,
    code: str | None = None,
    kind: str | None = None,
    retry_after: float | None = None,
    creating: str | None = None,
    batch_id: str | None = None,
    source: str | None = None,
) -> ProviderError:
    """The typed error for an HTTP error answer: the one rule both SDKs' translations share.

    Args:
        status: the HTTP status of the answer.
        message: the provider's error message.
        code: the provider's error code (OpenAI `code`), if any.
        kind: the provider's error type (`invalid_request_error`, `billing_error`, ...).
        retry_after: seconds from the Retry-After headers, if any.
        creating: the call created a batch or uploaded its file, named by this word
            ("upload", "create"), which starts a refusal's text ("create refused: 429
            ..."). There any 4xx but 401/408/409 means "this batch was not taken" (a
            429 is the enqueued-token or rate limit of this submission, a 404 an
            endpoint or file it named), so it is a `ProviderRefused`, retried for that
            buffer only.
        batch_id: the batch the call was about; with it a 404 is `ProviderNotFound`.
        source: the SDK exception's class name, kept for the status line.

    Returns:
        The error to raise (the caller raises it `from` the SDK exception).
    """
    status_text = f"{status} {message}"

    def make(cls: type[ProviderError], text: str) -> ProviderError:
        return cls(text, status_code=status, retry_after=retry_after, source=source)

    if status == 401:
        return make(ProviderAuthError, message)
    refusal = 400 <= status < 500 and status not in (408, 409)
    said = f"{creating} refused: {status_text}" if creating else status_text
    if refusal and (status == 402 or is_quota(code, kind, message)):  # 402 Payment Required: billing
        return make(ProviderQuota, said)
    if creating and refusal:
        return make(ProviderRefused, said)
    if status == 404 and batch_id is not None:
        return ProviderNotFound(batch_id, status_text, source=source)
    if refusal and status != 429:
        return make(ProviderRefused, status_text)
    # 408, 409, 429, 5xx (529 overloaded), or a 3xx or other odd answer: ask again later
    return make(ProviderTransient, message)


def error_name(exc: BaseException) -> str:
    """The name a failure is reported under: the SDK exception's for a translated
    provider error (`InternalServerError`, `APIConnectionError`), else the class name."""
    return exc.source if isinstance(exc, ProviderError) else type(exc).__name__
