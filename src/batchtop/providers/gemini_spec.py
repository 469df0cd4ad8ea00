"""Gemini Batch Mode as batchtop describes it: credentials, line and result shapes (`ProviderSpec`).

The SDK (google-genai) and the adapter (`gemini_batches`) are imported only when an
adapter is built.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from batchtop.providers.limits import GEMINI, GEMINI_ENDPOINT
from batchtop.providers.spec import TIMEOUT, ProviderSpec

if TYPE_CHECKING:
    from batchtop.providers.base import ProviderAdapter, ResultLine

KEY_ENV = "GEMINI_API_KEY"
FALLBACK_KEY_ENV = "GOOGLE_API_KEY"
"""google-genai reads either; we do too, GEMINI_API_KEY first."""
_GENERATION_CONFIG = ("generationConfig", "generation_config")
_PERMANENT_STATUS = frozenset({400, 403, 404, 413, 422})
"""The HTTP statuses of INVALID_ARGUMENT, FAILED_PRECONDITION, PERMISSION_DENIED and
NOT_FOUND (`gemini_batches` maps a line's google.rpc code to them): the request as
written cannot succeed. RESOURCE_EXHAUSTED (429) is a rate limit unless its message
says the quota is spent, which `errors.is_quota` reads for every provider."""


def _unwrap(body: dict[str, Any]) -> dict[str, Any]:
    """The GenerateContentResponse, from itself or from a whole result line ({"key", "response"})."""
    response = body.get("response")
    return response if isinstance(response, dict) else body


def _config(body: dict[str, Any]) -> dict[str, Any]:
    for name in _GENERATION_CONFIG:
        config = body.get(name)
        if isinstance(config, dict):
            return config
    return {}


def _first_candidate(body: dict[str, Any]) -> dict[str, Any] | None:
    candidates = _unwrap(body).get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return None


class GeminiSpec(ProviderSpec):
    """Gemini Batch Mode: inline requests or one JSONL upload, `request` per line; the
    SDK reports no request counts for the Gemini Developer API (they come with the
    results)."""

    name = GEMINI
    base_url_env = "GOOGLE_GEMINI_BASE_URL"
    reports_counts_while_running = False
    input_fields = ("contents", "systemInstruction", "system_instruction", "tools")
    output_cap_fields = ("maxOutputTokens", "max_output_tokens")
    choices_field = None
    billed_field = "request"
    sdk_loggers = ("google_genai", "google.genai")

    @property
    def key_env(self) -> str:  # type: ignore[override]  # a spec attribute elsewhere; read the same way
        """GEMINI_API_KEY, or GOOGLE_API_KEY when only that one is set (as the SDK reads them)."""
        if not os.environ.get(KEY_ENV) and os.environ.get(FALLBACK_KEY_ENV):
            return FALLBACK_KEY_ENV
        return KEY_ENV

    def adapter(
        self,
        api_key: str,
        base_url: str | None,
        *,
        account: str = "default",
        timeout: float = TIMEOUT,
        max_retries: int | None = None,
    ) -> ProviderAdapter:
        from google import genai
        from google.genai import types

        from batchtop.providers.gemini_batches import GeminiBatches

        # google-genai retries nothing unless given HttpRetryOptions; its timeout is in ms
        retry = types.HttpRetryOptions(attempts=max_retries + 1) if max_retries else None
        options = types.HttpOptions(base_url=base_url, timeout=int(timeout * 1000), retry_options=retry)
        return GeminiBatches(genai.Client(vertexai=False, api_key=api_key, http_options=options), account)

    def owns_endpoint(self, endpoint: str) -> bool:
        return endpoint == GEMINI_ENDPOINT

    def output_cap(self, body: dict[str, Any]) -> int | None:
        """`maxOutputTokens` of the request's generation config (either spelling)."""
        return super().output_cap(_config(body))

    def outputs(self, body: dict[str, Any]) -> int:
        n = _config(body).get("candidateCount", _config(body).get("candidate_count"))
        return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1

    def result_text(self, endpoint: str, body: dict[str, Any]) -> tuple[str | None, str | None]:
        """The text parts of the first candidate, joined (thought parts left out)."""
        candidate = _first_candidate(body)
        if candidate is None:
            feedback = _unwrap(body).get("promptFeedback") or {}
            reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
            return None, f"the prompt was blocked: {reason}" if reason else "no candidates in the response"
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        texts = [
            p["text"] for p in parts or []
            if isinstance(p, dict) and isinstance(p.get("text"), str) and not p.get("thought")
        ]
        if texts:
            return "".join(texts), None
        reason = candidate.get("finishReason")
        return None, f"no text part in the response (finishReason {reason})" if reason else "no text part in the response"

    def permanent_failure(self, line: ResultLine) -> bool:
        return line.status_code is not None and line.status_code in _PERMANENT_STATUS

    def truncated(self, body: dict[str, Any]) -> bool:
        candidate = _first_candidate(body)
        return candidate is not None and candidate.get("finishReason") == "MAX_TOKENS"
