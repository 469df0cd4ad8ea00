"""Per-request error shapes a test can ask for by custom_id (`SimConfig.scripted_errors`).

Each kind is the result line the real API sends for that failure, as recorded from
the live APIs and their docs: which of them a client may retry and which it must not
is exactly what the engine's tests need to see, so the shapes are verbatim, quirks
included (Anthropic's low-credit error is an `invalid_request_error`; an overloaded
request can come back with its error flat in `result`, not nested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScriptedError:
    status: int
    """The HTTP status the request would have had (the OpenAI line's status_code)."""
    openai_error: dict[str, Any]
    """`response.body.error` of the OpenAI error-file line."""
    anthropic_result: dict[str, Any]
    """The Anthropic line's `result` object."""


def _nested(kind: str, message: str) -> dict[str, Any]:
    return {"type": "errored", "error": {"type": "error", "error": {"type": kind, "message": message}, "request_id": None}}


def _openai(message: str, kind: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"message": message, "type": kind, "param": param, "code": code}


_QUOTA = "You exceeded your current quota, please check your plan and billing details."
_CREDIT = (
    "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or"
    " purchase credits."
)

_GOOGLE_BILLING = (
    "This API method requires billing to be enabled. Please enable billing on project #sim by visiting"
    " https://console.developers.google.com/billing/enable?project=sim then retry."
)
"""Google's 403 PERMISSION_DENIED for a project without billing (the shape Google APIs send)."""

KINDS: dict[str, ScriptedError] = {
    "invalid_request": ScriptedError(
        400,
        _openai("Invalid value for 'max_tokens': must be a positive integer.", "invalid_request_error", None, "max_tokens"),
        _nested("invalid_request_error", "max_tokens: Field required"),
    ),
    "context_length": ScriptedError(
        400,
        _openai(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130412 tokens.",
            "invalid_request_error", "context_length_exceeded", "messages",
        ),
        _nested("invalid_request_error", "prompt is too long: 210433 tokens > 200000 maximum"),
    ),
    "rate_limit": ScriptedError(
        429,
        _openai("Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 500.", "requests", "rate_limit_exceeded"),
        _nested("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    ),
    "server_error": ScriptedError(
        500,
        _openai("The server had an error while processing your request. Sorry about that!", "server_error", "server_error"),
        _nested("api_error", "Internal server error"),
    ),
    "overloaded": ScriptedError(
        503,
        _openai("The engine is currently overloaded, please try again later.", "server_error", None),
        _nested("overloaded_error", "Overloaded"),
    ),
    "overloaded_flat": ScriptedError(
        503,
        _openai("The engine is currently overloaded, please try again later.", "server_error", None),
        {"type": "errored", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ),
    "insufficient_quota": ScriptedError(
        429,
        _openai(_QUOTA, "insufficient_quota", "insufficient_quota"),
        _nested("invalid_request_error", _CREDIT),
    ),
    "billing": ScriptedError(
        400,
        _openai("Billing hard limit has been reached", "invalid_request_error", "billing_hard_limit_reached"),
        _nested("billing_error", "This organization has been disabled for billing reasons."),
    ),
}


def scripted(errors: dict[str, str], custom_id: str) -> ScriptedError | None:
    """The scripted error for this custom_id, if the config names one (an unknown kind
    is a test's typo: it raises rather than passing silently)."""
    kind = errors.get(custom_id)
    if kind is None:
        return None
    if kind not in KINDS:
        raise ValueError(f"unknown scripted error {kind!r} (known: {', '.join(sorted(KINDS))})")
    return KINDS[kind]


_ANTHROPIC_STATUS = {
    "invalid_request_error": 400, "billing_error": 402, "rate_limit_error": 429,
    "api_error": 500, "overloaded_error": 529,
}


def create_refusal(provider: str, kind: str) -> tuple[int, str, str | None]:
    """(status, message, code) with which a batch create is refused as this kind
    (`SimConfig.create_error`): the account-level errors arrive there too."""
    script = KINDS.get(kind)
    if script is None:
        raise ValueError(f"unknown scripted error {kind!r} (known: {', '.join(sorted(KINDS))})")
    if provider == "gemini":  # Google's front end answers with the HTTP status and its own text
        if kind == "billing":
            return 403, _GOOGLE_BILLING, None
        return script.status, script.openai_error["message"], None
    if provider == "anthropic":
        error = script.anthropic_result["error"]
        inner = error.get("error", error)
        return _ANTHROPIC_STATUS.get(inner["type"], 500), inner["message"], None
    return script.status, script.openai_error["message"], script.openai_error.get("code")
