"""One synchronous call of a stored batch line through the provider's official SDK (issue 15).

OpenAI chat completions, responses and embeddings, and Anthropic messages, on the
same async SDK client the provider's batch adapter holds (one connection pool, one
key). The line's body goes to the SDK's typed `create` (keys the SDK does not name
go in `extra_body`), through `with_raw_response`, so the provider's body is kept
verbatim and wrapped in the provider's own batch result-line shape: `results`, the
usage parsers and every view read a real-time answer like a batch one.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any

from batchtop.providers.base import SUCCEEDED, ResultLine
from batchtop.providers.errors import retry_after_seconds

CUSTOM_ID_HEADER = "x-batchtop-custom-id"
"""Names the request on the wire (the simulator counts calls by it; providers ignore it)."""

SYNC_ENDPOINTS = {
    "openai": ("/v1/chat/completions", "/v1/responses", "/v1/embeddings"),
    "anthropic": ("/v1/messages",),
}


class Retryable(Exception):
    """A call that may succeed later (429, 5xx, a connection failure)."""

    def __init__(self, message: str, wait: float | None, *, status: int | None = None, flex_refused: bool = False) -> None:
        super().__init__(message)
        self.wait = wait
        self.status = status
        self.flex_refused = flex_refused


@dataclass(frozen=True, slots=True)
class Answer:
    """A call's answer: the result line (batch shape) and what it parses to."""

    raw: str
    parsed: ResultLine
    permanent: bool = False


def supports(provider: str, endpoint: str) -> bool:
    return endpoint in SYNC_ENDPOINTS.get(provider, ())


def _resource(client: Any, endpoint: str) -> Any:
    if endpoint == "/v1/chat/completions":
        return client.chat.completions
    if endpoint == "/v1/responses":
        return client.responses
    if endpoint == "/v1/embeddings":
        return client.embeddings
    return client.messages


_NAMES: dict[Any, frozenset[str]] = {}


def _split(method: Any, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(keyword arguments the SDK method names, the rest for `extra_body`); the
    signature is read once per SDK method (it costs more than the rest of the call)."""
    key = getattr(method, "__func__", method)
    names = _NAMES.get(key)
    if names is None:
        names = _NAMES[key] = frozenset(inspect.signature(method).parameters)
    known = {k: v for k, v in body.items() if k in names and not k.startswith("extra_")}
    extra = {k: v for k, v in body.items() if k not in known}
    return known, extra


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def _error_body(exc: BaseException) -> Any:
    body = getattr(exc, "body", None)
    if body is None:
        response = getattr(exc, "response", None)
        try:
            body = response.json() if response is not None else None
        except Exception:  # noqa: BLE001 - not JSON: the text stands
            body = None
    return body


async def call(
    client: Any, provider: str, endpoint: str, custom_id: str, line: str, *, flex: bool = False, timeout: float | None = None
) -> Answer:
    """Send one stored line once. Raises `Retryable` for what may pass; a refusal of
    the request itself (another 4xx) comes back as a failed answer, `permanent`."""
    obj = json.loads(line)
    body = dict(obj.get("params" if provider == "anthropic" else "body") or {})
    body.pop("stream", None)  # the lane reads whole answers
    if flex:
        body["service_tier"] = "flex"
    resource = _resource(client, endpoint)
    known, extra = _split(resource.create, body)
    options: dict[str, Any] = {"extra_headers": {CUSTOM_ID_HEADER: custom_id}}
    if extra:
        options["extra_body"] = extra
    if timeout is not None:
        options["timeout"] = timeout
    try:
        raw = await resource.with_raw_response.create(**known, **options)
    except TypeError as exc:  # the SDK refused the arguments (a required one missing): the request itself is bad
        return _failed(provider, custom_id, 400, None, f"invalid_request: the SDK refused it: {exc}")
    except Exception as exc:
        status = _status_of(exc)
        if status is None and not _is_connection_error(exc):
            raise
        if status is None or status == 429 or status >= 500 or status == 408:
            message = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
            return_wait = retry_after_seconds(getattr(getattr(exc, "response", None), "headers", None))
            raise Retryable(message[:500], return_wait, status=status, flex_refused=flex and status == 429) from None
        return _failed(provider, custom_id, status, _error_body(exc), str(getattr(exc, "message", exc)))
    text = raw.http_response.text  # the body verbatim (the SDKs' legacy responses differ on `.text`)
    request_id = raw.headers.get("x-request-id") or raw.headers.get("request-id")
    answer = json.loads(text)
    if provider == "anthropic":
        from batchtop.providers.anthropic_batches import parse_result_line as parse_anthropic

        result = json.dumps({"custom_id": custom_id, "result": {"type": "succeeded", "message": answer}})
        return Answer(result, parse_anthropic(result))
    from batchtop.providers.openai_batches import parse_result_line as parse_openai

    result = json.dumps(
        {"id": f"rt_{request_id or custom_id}", "custom_id": custom_id,
         "response": {"status_code": 200, "request_id": request_id, "body": answer}, "error": None}
    )
    return Answer(result, parse_openai(result))


def _is_connection_error(exc: BaseException) -> bool:
    return type(exc).__name__ in ("APIConnectionError", "APITimeoutError")


def _failed(provider: str, custom_id: str, status: int, body: Any, message: str) -> Answer:
    """The provider refused the request itself: a failed line in the batch shape."""
    if provider == "anthropic":
        from batchtop.providers.anthropic_batches import parse_result_line as parse_anthropic

        error = body if isinstance(body, dict) else {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
        result = json.dumps({"custom_id": custom_id, "result": {"type": "errored", "error": error}})
        return Answer(result, parse_anthropic(result), permanent=True)
    from batchtop.providers.openai_batches import parse_result_line as parse_openai

    error_body = body if isinstance(body, dict) and "error" in body else {"error": body if isinstance(body, dict) else {"message": message}}
    result = json.dumps(
        {"id": f"rt_{custom_id}", "custom_id": custom_id, "response": {"status_code": status, "body": error_body}, "error": None}
    )
    parsed = parse_openai(result)
    return Answer(result, parsed, permanent=parsed.outcome != SUCCEEDED)
