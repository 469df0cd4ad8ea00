"""Anthropic as batchtop describes it: credentials, line and result shapes (`ProviderSpec`).

The SDK and the adapter (`anthropic_batches`) are imported only when an adapter is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchtop.providers.limits import ANTHROPIC, ANTHROPIC_ENDPOINT
from batchtop.providers.spec import TIMEOUT, ProviderSpec

if TYPE_CHECKING:
    from batchtop.providers.base import ProviderAdapter, ResultLine

_PERMANENT = frozenset({"invalid_request_error", "not_found_error", "request_too_large", "permission_error"})
"""Error types another attempt cannot change; rate_limit_error, api_error,
overloaded_error, timeout_error and the rest are worth another try."""


def _unwrap(body: dict[str, Any]) -> dict[str, Any]:
    """The message, from itself or from a whole result line ({"result": {"type": "succeeded", "message": ...}})."""
    result = body.get("result")
    if isinstance(result, dict):
        body = result
    if body.get("type") == "succeeded" and isinstance(body.get("message"), dict):
        body = body["message"]
    return body


class AnthropicSpec(ProviderSpec):
    """Anthropic's Message Batches: requests inline, `params` per line, counts only at the end."""

    name = ANTHROPIC
    key_env = "ANTHROPIC_API_KEY"
    base_url_env = "ANTHROPIC_BASE_URL"
    reports_counts_while_running = False
    """`request_counts` stay at zero (all `processing`) until the batch ends."""
    input_fields = ("system", "messages", "tools")
    output_cap_fields = ("max_tokens",)
    choices_field = None
    billed_field = "params"
    sdk_loggers = ("anthropic",)

    def adapter(
        self,
        api_key: str,
        base_url: str | None,
        *,
        account: str = "default",
        timeout: float = TIMEOUT,
        max_retries: int | None = None,
    ) -> ProviderAdapter:
        import anthropic

        from batchtop.providers.anthropic_batches import AnthropicBatches

        if max_retries is None:
            client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=timeout)
        else:
            client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        return AnthropicBatches(client, account)

    def owns_endpoint(self, endpoint: str) -> bool:
        return endpoint == ANTHROPIC_ENDPOINT

    def result_text(self, endpoint: str, body: dict[str, Any]) -> tuple[str | None, str | None]:
        """The text blocks of the message, joined (every endpoint is /v1/messages)."""
        blocks = _unwrap(body).get("content")
        if not isinstance(blocks, list):
            return None, "no content in the response"
        texts = [b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)]
        return ("".join(texts), None) if texts else (None, "no text block in the response")

    def permanent_failure(self, line: ResultLine) -> bool:
        return line.error_type in _PERMANENT

    def truncated(self, body: dict[str, Any]) -> bool:
        return bool(_unwrap(body).get("stop_reason") == "max_tokens")
