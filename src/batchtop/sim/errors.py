"""Error responses in each provider's shape, with its request-id header."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import web

OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "requests",
}
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
OPENAI_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded", 500: "server_error"}


def new_request_id() -> str:
    return f"req_{secrets.token_hex(12)}"


def request_id_header(provider: str) -> str:
    """OpenAI's SDK reads ``x-request-id``; Anthropic's reads ``request-id``; Google's
    front end sends ``x-goog-request-id`` (google-genai reads none)."""
    return {"anthropic": "request-id", "gemini": "x-goog-request-id"}.get(provider, "x-request-id")


def gemini_status(status: int) -> str:
    """The google.rpc status name an HTTP error answer carries."""
    from .gemini_state import STATUS_NAMES

    return STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")


def error_response(
    provider: str,
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """``{"error": {...}}`` for OpenAI, ``{"type": "error", ...}`` for Anthropic,
    ``{"error": {"code", "message", "status"}}`` (google.rpc) for Gemini."""
    request_id = new_request_id()
    body: dict[str, Any]
    if provider == "gemini":
        body = {"error": {"code": status, "message": message, "status": gemini_status(status)}}
    elif provider == "anthropic":
        kind = ANTHROPIC_TYPES.get(status, "api_error")
        body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    else:
        kind = OPENAI_TYPES.get(status, "server_error")
        body = {"error": {"message": message, "type": kind, "param": param, "code": code or OPENAI_CODES.get(status)}}
    all_headers = {request_id_header(provider): request_id, **(headers or {})}
    return web.json_response(body, status=status, headers=all_headers)


def json_ok(provider: str, data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """A JSON success response carrying a request id like the real APIs."""
    return web.json_response(data, status=status, headers={request_id_header(provider): new_request_id(), **(headers or {})})
