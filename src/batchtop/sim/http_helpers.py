"""Small request helpers shared by both providers' routes."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from .state import StateError

_INLINE_JSON_BYTES = 1 << 20


def int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in ``[low, high]``; 400 otherwise, like the APIs."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise StateError(400, f"Invalid '{name}': expected an integer.", param=name) from None
    if not low <= value <= high:
        raise StateError(400, f"Invalid '{name}': must be between {low} and {high}.", param=name)
    return value


async def read_json(request: web.Request) -> Any:
    """Parse a JSON body; large ones are parsed off the event loop."""
    raw = await request.read()
    try:
        if len(raw) > _INLINE_JSON_BYTES:
            return await asyncio.get_running_loop().run_in_executor(None, json.loads, raw)
        return json.loads(raw) if raw else None
    except ValueError:
        raise StateError(400, "We could not parse the JSON body of your request.") from None


def origin(request: web.Request) -> str:
    """``http://host:port`` as the client addressed us, for absolute URLs."""
    return f"{request.scheme}://{request.host}"


async def stream_bytes(request: web.Request, chunks: Any, *, content_type: str, length: int | None = None,
                       headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Send an iterable of byte chunks; Content-Length if known, else chunked."""
    response = web.StreamResponse(status=200, headers=headers or {})
    response.content_type = content_type
    if length is not None:
        response.content_length = length
    else:
        response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for chunk in chunks:
            await response.write(chunk)
        await response.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    return response
