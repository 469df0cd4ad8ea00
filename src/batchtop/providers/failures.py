"""Which failed requests are worth another attempt: one verdict per failed result line.

Retrying what cannot succeed burns attempts and money, and retrying into an empty
account burns them all at once; not retrying a blip loses work. Each provider's error
shapes are judged by its spec (`ProviderSpec.permanent_failure`; the adapters parse the
lines, the specs judge the parsed fields), behind `classify`, the one function the
engine calls; out of quota or credit is read alike for every provider (`errors.is_quota`).

- `RETRY`: transient (429 rate limits, 5xx, overloaded, timeouts, expired, cancelled,
  missing, invalid output): queued again, within `engine.max_attempts`.
- `PERMANENT`: the provider rejected the request itself (400 `invalid_request_error`,
  unknown model, too large): a dead letter at once, its error saying why.
- `QUOTA`: the account is out of quota or credit (`insufficient_quota`, billing
  errors): the attempt does not count, the provider's buffers are held and an alert
  is raised; sending more would fail the same way.
"""

from __future__ import annotations

from batchtop.providers import registry
from batchtop.providers.base import ERRORED, ResultLine
from batchtop.providers.errors import is_quota

__all__ = ["PERMANENT", "QUOTA", "RETRY", "classify", "is_quota", "verdicts"]

RETRY = "retry"
PERMANENT = "permanent"
QUOTA = "quota"


def classify(provider: str, line: ResultLine) -> str:
    """RETRY, PERMANENT or QUOTA for a failed result line (RETRY for anything that is
    not a provider's own error: expired, cancelled, missing, invalid output, or a line
    of a provider this version does not know)."""
    if line.outcome != ERRORED:
        return RETRY
    if is_quota(line.error_code, line.error_type, line.error):
        return QUOTA
    spec = registry.find(provider)
    return PERMANENT if spec is not None and spec.permanent_failure(line) else RETRY


def verdicts(provider: str, lines: list[ResultLine]) -> dict[str, str]:
    """custom_id -> verdict for the lines of a chunk that must not simply be retried."""
    out = {}
    for line in lines:
        if line.outcome == ERRORED:
            verdict = classify(provider, line)
            if verdict != RETRY:
                out[line.custom_id] = verdict
    return out
