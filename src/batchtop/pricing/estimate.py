"""Estimating one request's tokens from its native batch line, before it is sent.

Input: the characters of what the model reads (messages, system, input, ...) / 4.
Output: the request's own cap (max_tokens and kin) when it has one, which makes the
figure an upper bound; else the model's observed mean per success; else a default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any

from batchtop.pricing.usage import DEFAULT_OUTPUT_TOKENS
from batchtop.providers.limits import ANTHROPIC

CHARS_PER_TOKEN = 4
# What the model reads, across the endpoints: chat/messages, responses, embeddings, completions.
INPUT_FIELDS = ("system", "instructions", "messages", "input", "prompt", "tools")
OUTPUT_CAPS = ("max_completion_tokens", "max_output_tokens", "max_tokens")
NO_OUTPUT_ENDPOINTS = frozenset({"/v1/embeddings", "/v1/moderations"})


@dataclass(frozen=True, slots=True)
class RequestEstimate:
    input_tokens: int
    output_tokens: int
    output_basis: str  # "cap" | "observed" | "default" | "none"


def request_body(provider: str, line: dict[str, Any]) -> dict[str, Any]:
    """The part of a native line the provider bills for: OpenAI `body`, Anthropic `params`."""
    body = line.get("params" if provider == ANTHROPIC else "body")
    return body if isinstance(body, dict) else {}


def _chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _ceil_div(n: int | Decimal, d: int) -> int:
    return int((Decimal(n) / d).to_integral_value(ROUND_CEILING))


def estimate_request(
    endpoint: str, body: dict[str, Any], observed_output: Decimal | None = None
) -> RequestEstimate:
    """Token estimate of one request body (see the module docstring for the rules)."""
    chars = sum(_chars(body[k]) for k in INPUT_FIELDS if k in body and body[k] is not None)
    input_tokens = _ceil_div(chars, CHARS_PER_TOKEN)
    if endpoint in NO_OUTPUT_ENDPOINTS:
        return RequestEstimate(input_tokens, 0, "none")
    choices = body.get("n")
    n = choices if isinstance(choices, int) and not isinstance(choices, bool) and choices > 1 else 1
    for key in OUTPUT_CAPS:
        cap = body.get(key)
        if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0:
            return RequestEstimate(input_tokens, cap * n, "cap")
    if observed_output is not None:
        return RequestEstimate(input_tokens, _ceil_div(observed_output * n, 1), "observed")
    return RequestEstimate(input_tokens, DEFAULT_OUTPUT_TOKENS * n, "default")
