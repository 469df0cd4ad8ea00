"""Knobs of the provider simulator.

One mutable dataclass so tests can flip behaviour between phases
(``sim.config.fault_rate = 0.2``). Timing and failure knobs are copied into
each batch when it is created, so a batch's lifecycle never jumps when a knob
changes later; fault and auth knobs are read on every HTTP request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class SimConfig:
    """All simulator behaviour; defaults are fast enough for unit tests."""

    # --- timing, real seconds (captured per batch at creation) ---
    validate_s: float = 0.0
    """OpenAI: time in ``validating``. Anthropic: queue delay before work starts."""
    per_request_s: float = 0.0005
    """Processing time per request; requests finish one after another."""
    finalize_s: float = 0.0
    """OpenAI: time in ``finalizing``. Anthropic: extra time before ``ended``."""
    cancel_s: float = 0.0
    """Time spent in ``cancelling``/``canceling`` before the batch ends."""
    window_s: float = 86400.0
    """Completion window; unfinished requests expire when it passes."""

    # --- per-request outcomes (captured per batch at creation) ---
    failure_rate: float = 0.0
    """Probability a request attempt errors (a transient 500); hash of (seed, custom_id, attempt)."""
    first_try_failure_rate: float = 0.0
    """Share of custom_ids that error on their first submission only."""
    token_limit_batches: int = 0
    """The next this many OpenAI batches fail validation with ``token_limit_exceeded``
    (the enqueued-token limit of the account), as the real API does when it is full."""
    cached_input_share: float = 0.0
    """Share of input tokens reported as cache reads."""
    cache_write_share: float = 0.0
    """Share of input tokens reported as cache writes (Anthropic, OpenAI responses)."""
    cache_write_1h_share: float = 0.5
    """Share of those cache writes that Anthropic lines report as 1-hour writes
    (`ephemeral_1h_input_tokens`, 2x input); the rest are 5-minute writes (1.25x)."""
    output_tokens_min: int = 8
    output_tokens_max: int = 256
    """Output tokens are a hash of custom_id in [min, max], capped by max_tokens."""
    replay: Mapping[str, bytes] | None = None
    """Replay mode: recorded result lines by custom_id (``sim.replay.load_recorded``),
    answered verbatim to the requests with those custom_ids; the rest are simulated."""
    scripted_errors: dict[str, str] = dataclasses.field(default_factory=dict)
    """custom_id -> a kind of :data:`~batchtop.sim.scripted.KINDS` (``"invalid_request"``,
    ``"insufficient_quota"``, ``"overloaded_flat"``, ...): that request fails on every
    attempt with the provider's own line for that error."""
    create_error: str | None = None
    """A kind of :data:`~batchtop.sim.scripted.KINDS`: every batch create (OpenAI
    ``POST /v1/batches``, Anthropic ``POST /v1/messages/batches``, Gemini
    ``:batchGenerateContent``) is refused with it,
    as an account out of quota or credit is. Read on every request."""
    thoughts_share: float = 0.0
    """Gemini: share of a success's output tokens reported as thoughts (thoughtsTokenCount)."""
    gemini_window_s: float = 48 * 3600.0
    """Gemini: a batch still pending or running this long after it was created expires
    (Batch Mode's 48 hours, as its docs state it; not checked against the live API)."""
    stalled_batches: int = 0
    """Gemini: the next this many batches stay PENDING until cancelled or their window
    ends, as jobs reported stuck for over a day do. Read when a batch is created."""
    shuffle_results: bool = False
    """Emit result lines in a hash order instead of input order (order is never promised)."""

    # --- HTTP behaviour (read on every request) ---
    fault_rate: float = 0.0
    """Share of HTTP requests answered 429/500 with a short retry-after."""
    fault_retry_after_ms: tuple[int, int] = (20, 100)
    """Range of the ``retry-after-ms`` header sent with injected faults."""
    require_api_key: str | None = None
    """If set, requests must carry this key (Bearer, or x-api-key on Anthropic)."""

    # --- real-time routes and stalls (issue 15; read on every request) ---
    realtime_latency_s: float = 0.0
    """Seconds each synchronous call (chat completions, responses, embeddings, messages) takes."""
    realtime_fault_rate: float = 0.0
    """Share of synchronous calls answered 429 (with Retry-After) or 500; batch routes untouched."""
    flex_refusal_rate: float = 0.0
    """Share of OpenAI ``service_tier: "flex"`` calls answered 429 "resource unavailable"."""
    stall: bool = False
    """Batches created while set never progress: they stay in progress with nothing
    done until cancelled (or their window passes). Captured per batch."""

    seed: int = 0

    # --- limits ---
    max_openai_requests: int = 50_000
    max_anthropic_requests: int = 100_000
    max_gemini_inline_bytes: int = 20 * 1000 * 1000
    max_upload_bytes: int = 512 * 1024 * 1024
    max_json_body_bytes: int = 256 * 1024 * 1024

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None = None, **kwargs: Any) -> SimConfig:
        """Build from CLI-style keyword options; ``None`` values keep the default.

        Unknown names raise ``TypeError`` so a typo in a flag does not pass silently.
        """
        merged = {**(options or {}), **kwargs}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(merged) - names)
        if unknown:
            raise TypeError(f"unknown SimConfig option(s): {', '.join(unknown)}")
        return cls(**{k: v for k, v in merged.items() if v is not None})

    def copy(self, **changes: Any) -> SimConfig:
        """A copy with some fields replaced."""
        return dataclasses.replace(self, **changes)


__all__ = ["SimConfig"]
