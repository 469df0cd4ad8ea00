"""Which failed requests are worth another attempt: one verdict per failed result line.

Retrying what cannot succeed burns attempts and money, and retrying into an empty
account burns them all at once; not retrying a blip loses work. Each provider's error
shapes are read by its own function here (the adapters parse the lines; this module
only judges the parsed fields), behind `classify`, the one function the engine calls.

- `RETRY`: transient (429 rate limits, 5xx, overloaded, timeouts, expired, cancelled,
  missing, invalid output): queued again, within `engine.max_attempts`.
- `PERMANENT`: the provider rejected the request itself (400 `invalid_request_error`,
  unknown model, too large): a dead letter at once, its error saying why.
- `QUOTA`: the account is out of quota or credit (`insufficient_quota`, billing
  errors): the attempt does not count, the provider's buffers are held and an alert
  is raised; sending more would fail the same way.
"""

from __future__ import annotations

from batchtop.providers.base import ERRORED, ResultLine
from batchtop.providers.errors import is_quota
from batchtop.providers.limits import ANTHROPIC, GEMINI, OPENAI

RETRY = "retry"
PERMANENT = "permanent"
QUOTA = "quota"

_OPENAI_PERMANENT_STATUS = frozenset({400, 403, 404, 413, 422})
_ANTHROPIC_PERMANENT = frozenset({"invalid_request_error", "not_found_error", "request_too_large", "permission_error"})


def _openai(line: ResultLine) -> str:
    if is_quota(line.error_code, line.error_type, line.error):
        return QUOTA
    status = line.status_code
    if status is not None and status in _OPENAI_PERMANENT_STATUS:
        return PERMANENT
    return RETRY  # 429, 5xx, request_timeout, an error line we do not know: worth another try


def _anthropic(line: ResultLine) -> str:
    if is_quota(line.error_code, line.error_type, line.error):
        return QUOTA
    if line.error_type in _ANTHROPIC_PERMANENT:
        return PERMANENT
    return RETRY  # rate_limit_error, api_error, overloaded_error, timeout_error, ...


def _gemini(line: ResultLine) -> str:
    """A Gemini line's error is a google.rpc.Status: INVALID_ARGUMENT, NOT_FOUND,
    PERMISSION_DENIED (status_code 400/404/403) cannot succeed as written;
    RESOURCE_EXHAUSTED is a rate limit unless its message says the quota is spent."""
    if is_quota(line.error_code, line.error_type, line.error):
        return QUOTA
    if line.status_code is not None and line.status_code in _OPENAI_PERMANENT_STATUS:
        return PERMANENT
    return RETRY


_BY_PROVIDER = {OPENAI: _openai, ANTHROPIC: _anthropic, GEMINI: _gemini}


def classify(provider: str, line: ResultLine) -> str:
    """RETRY, PERMANENT or QUOTA for a failed result line (RETRY for anything that is
    not a provider's own error: expired, cancelled, missing, invalid output)."""
    if line.outcome != ERRORED:
        return RETRY
    judge = _BY_PROVIDER.get(provider)
    return judge(line) if judge is not None else RETRY


def verdicts(provider: str, lines: list[ResultLine]) -> dict[str, str]:
    """custom_id -> verdict for the lines of a chunk that must not simply be retried."""
    out = {}
    for line in lines:
        if line.outcome == ERRORED:
            verdict = classify(provider, line)
            if verdict != RETRY:
                out[line.custom_id] = verdict
    return out
