"""Estimating one request's tokens from its native batch line, before it is sent.

This is the one estimator: `quote` applies it line by line, and the enqueue step
stores its sums per buffer so that the queued and in-flight estimates of the status
document and the budget check come from the same figures (`pricing.inflight`).

Input: the characters of what the model reads (messages, system, input, ...) / 4,
images excepted: those count by their own dimensions (`pricing.images`).
Output: the request's own cap (max_tokens and kin) when it has one, which makes the
figure an upper bound; else the model's observed mean per success; else a default.

Which fields of a line are which is the provider's (`ProviderSpec.request_body`,
`prompt_parts`, `output_cap`, `outputs`); this module only does the arithmetic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import Any

import orjson

from batchtop.pricing.images import ImageTokens, image_tokens
from batchtop.pricing.table import shipped_table
from batchtop.pricing.usage import DEFAULT_OUTPUT_TOKENS
from batchtop.providers import registry

CHARS_PER_TOKEN = 4
NO_OUTPUT_ENDPOINTS = frozenset({"/v1/embeddings", "/v1/moderations"})


@dataclass(frozen=True, slots=True)
class RequestEstimate:
    input_tokens: int  # text and images
    output_tokens: int
    output_basis: str  # "cap" | "observed" | "default" | "none"
    images: ImageTokens = field(default_factory=ImageTokens)
    outputs: int = 1
    """Outputs asked for (`n`), which an uncapped output estimate is a multiple of."""


def request_body(provider: str, line: dict[str, Any]) -> dict[str, Any]:
    """The part of a native line the provider bills for: OpenAI `body`, Anthropic `params`."""
    return registry.get(provider).request_body(line)


def _chars(value: Any) -> int:
    """Characters of a field as compact JSON (orjson: enqueue runs this on every line)."""
    if isinstance(value, str):
        return len(value)
    try:
        return len(orjson.dumps(value).decode())
    except TypeError:  # an integer beyond 64 bits, say
        return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _ceil_div(n: int | Decimal, d: int) -> int:
    if isinstance(n, int):
        return -(-n // d)  # exact, and enqueue runs it on every line
    return int((Decimal(n) / d).to_integral_value(ROUND_CEILING))


def _family(provider: str, body: dict[str, Any]) -> str | None:
    model = body.get("model")
    return shipped_table().family(provider, model) if isinstance(model, str) else None


def estimate_request(
    endpoint: str,
    body: dict[str, Any],
    observed_output: Decimal | None = None,
    *,
    provider: str | None = None,
    scan_images: bool = True,
) -> RequestEstimate:
    """Token estimate of one request body (see the module docstring for the rules).

    `provider` picks the image formula; by default it follows from the endpoint.
    `scan_images=False` skips the walk for image parts, for a caller that knows the
    line has none (every image part's type names "image").
    """
    spec = registry.get(provider) if provider else registry.for_endpoint(endpoint)
    provider = spec.name
    fields = spec.prompt_parts(body)
    chars = sum(_chars(v) for v in fields)
    structured = [v for v in fields if isinstance(v, (dict, list))] if scan_images else []  # where image parts can be
    family = _family(provider, body) if structured else None
    images = sum((image_tokens(provider, family, v) for v in structured), ImageTokens())
    input_tokens = _ceil_div(max(chars - images.chars, 0), CHARS_PER_TOKEN) + images.tokens
    if endpoint in NO_OUTPUT_ENDPOINTS:
        return RequestEstimate(input_tokens, 0, "none", images, 0)
    n = spec.outputs(body)
    cap = spec.output_cap(body)
    if cap is not None:
        return RequestEstimate(input_tokens, cap * n, "cap", images, n)
    if observed_output is not None:
        return RequestEstimate(input_tokens, _ceil_div(observed_output * n, 1), "observed", images, n)
    return RequestEstimate(input_tokens, DEFAULT_OUTPUT_TOKENS * n, "default", images, n)


def enqueue_figures(
    provider: str, endpoint: str, line: str, body: dict[str, Any] | None = None
) -> tuple[int, int, int]:
    """(input tokens, capped output tokens, uncapped outputs) of one stored line.

    What the store sums per buffer at enqueue (`buffer_estimates`): the queued and
    in-flight estimates scale these sums to the requests at each stage, and price
    the uncapped outputs at the model's observed mean of the moment, as `quote` does.
    `body` is the line's billed part when the caller has it parsed already.
    """
    if body is None:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = json.loads(line)
        body = request_body(provider, obj)
    # a line without the word "image" has no image part to measure: half the cost of
    # enqueueing a 100,000-line file was walking for them
    est = estimate_request(endpoint, body, provider=provider, scan_images="image" in line)
    if est.output_basis == "cap":
        return est.input_tokens, est.output_tokens, 0
    return est.input_tokens, 0, est.outputs
