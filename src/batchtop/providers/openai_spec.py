"""OpenAI as batchtop describes it: credentials, line and result shapes (`ProviderSpec`).

The SDK and the adapter (`openai_batches`) are imported only when an adapter is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchtop.providers.limits import OPENAI, OPENAI_ENDPOINTS
from batchtop.providers.spec import TIMEOUT, ProviderSpec

if TYPE_CHECKING:
    from batchtop.providers.base import ProviderAdapter, ResultLine

_PERMANENT_STATUS = frozenset({400, 403, 404, 413, 422})
"""A request's own HTTP status that another attempt cannot change; 429, 5xx and
request_timeout lines, and error lines we do not know, are worth another try."""


def _unwrap(body: dict[str, Any]) -> dict[str, Any]:
    """The response object, from itself or from a whole result line ({"response": {"body": ...}})."""
    response = body.get("response")
    if isinstance(response, dict) and isinstance(response.get("body"), dict):
        return response["body"]
    return body


def _choices_text(endpoint: str, body: dict[str, Any]) -> tuple[str | None, str | None]:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None, "no choices in the response"
    choice = choices[0]
    if endpoint == "/v1/completions":
        text = choice.get("text")
        return (text, None) if isinstance(text, str) else (None, "no text in the response")
    found = choice.get("message")
    message: dict[str, Any] = found if isinstance(found, dict) else {}
    content = message.get("content")
    if isinstance(content, str):
        return content, None
    refused = message.get("refusal")
    return None, f"the model refused: {refused}" if isinstance(refused, str) else "no message content in the response"


def _responses_text(body: dict[str, Any]) -> tuple[str | None, str | None]:
    texts: list[str] = []
    refusal: str | None = None
    for item in body.get("output") or []:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, dict) and part.get("type") == "refusal":
                refusal = str(part.get("refusal", ""))
    if texts:
        return "".join(texts), None
    return None, f"the model refused: {refusal}" if refusal is not None else "no output_text in the response"


class OpenAISpec(ProviderSpec):
    """OpenAI's Files + Batch API: one JSONL upload, `body` per line, counts while running."""

    name = OPENAI
    key_env = "OPENAI_API_KEY"
    base_url_env = "OPENAI_BASE_URL"
    reports_counts_while_running = True
    # chat (messages), responses (instructions, input), embeddings (input), completions (prompt)
    input_fields = ("instructions", "messages", "input", "prompt", "tools")
    output_cap_fields = ("max_completion_tokens", "max_output_tokens", "max_tokens")
    choices_field = "n"
    billed_field = "body"
    sdk_loggers = ("openai",)

    def adapter(
        self,
        api_key: str,
        base_url: str | None,
        *,
        account: str = "default",
        timeout: float = TIMEOUT,
        max_retries: int | None = None,
    ) -> ProviderAdapter:
        import openai

        from batchtop.providers.openai_batches import OpenAIBatches

        if max_retries is None:
            client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout)
        else:
            client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)
        return OpenAIBatches(client, account)

    def owns_endpoint(self, endpoint: str) -> bool:
        return endpoint in OPENAI_ENDPOINTS

    def result_text(self, endpoint: str, body: dict[str, Any]) -> tuple[str | None, str | None]:
        body = _unwrap(body)
        if endpoint in ("/v1/chat/completions", "/v1/completions"):
            return _choices_text(endpoint, body)
        if endpoint == "/v1/responses":
            return _responses_text(body)
        return None, None  # embeddings, moderations, images: no text to check

    def permanent_failure(self, line: ResultLine) -> bool:
        return line.status_code is not None and line.status_code in _PERMANENT_STATUS

    def truncated(self, body: dict[str, Any]) -> bool:
        body = _unwrap(body)
        if body.get("status") == "incomplete":
            return True
        choices = body.get("choices")
        return bool(
            isinstance(choices, list) and choices and isinstance(choices[0], dict)
            and choices[0].get("finish_reason") == "length"
        )
