"""Deterministic per-request decisions (success or error, output length).

Everything is a hash of the seed and the request's custom_id, so a rerun with
the same inputs gives the same results, and "the second submission of this
custom_id" is a well-defined event the tests can rely on.
"""

from __future__ import annotations

import hashlib

from .config import SimConfig

OK = 0
BAD_REQUEST = 400
SERVER_ERROR = 500


def unit_hash(*parts: object) -> float:
    """A uniform number in [0, 1) from the parts."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def short_hash(*parts: object, size: int = 12) -> str:
    """A hex tag for derived ids (``chatcmpl-…``, ``req_…``)."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=size).hexdigest()


def decide(cfg: SimConfig, custom_id: str, attempt: int) -> int:
    """Outcome of the ``attempt``-th (1-based) submission of ``custom_id``.

    ``failalways`` ids give 400 (permanent: an invalid request fails again); first-try
    and random failures give 500 (transient: what fails at random may succeed on a
    later attempt, and a client rightly retries it).
    """
    if "failalways" in custom_id:
        return BAD_REQUEST
    if attempt <= 1 and unit_hash(cfg.seed, "first", custom_id) < cfg.first_try_failure_rate:
        return SERVER_ERROR
    if unit_hash(cfg.seed, "fail", custom_id, attempt) < cfg.failure_rate:
        return SERVER_ERROR
    return OK


def output_tokens(cfg: SimConfig, custom_id: str, max_tokens: int | None) -> tuple[int, bool]:
    """``(tokens, hit_cap)``: a hash of custom_id in the configured range, capped by max_tokens."""
    low = max(1, cfg.output_tokens_min)
    high = max(low, cfg.output_tokens_max)
    tokens = low + int(unit_hash(cfg.seed, "out", custom_id) * (high - low + 1))
    if max_tokens is not None and max_tokens >= 0 and tokens >= max_tokens:
        return max_tokens, True
    return tokens, False
