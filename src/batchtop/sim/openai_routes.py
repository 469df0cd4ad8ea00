"""OpenAI Files and Batch API routes (mounted under ``/v1``)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import BodyPartReader, web

from .errors import json_ok, new_request_id
from .http_helpers import int_query, read_json, stream_bytes
from .ids import seq_of
from .middleware import APP_SIM
from .parsing import OPENAI_ENDPOINTS, parse_openai_input
from .scripted import create_refusal
from .state import OPENAI, StateError

#: Purposes an upload may carry (the ``FileObject.purpose`` literal minus outputs).
UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data")
CONTENT_CHUNK = 256 * 1024
TTL_RANGE = (3600, 2_592_000)

routes = web.RouteTableDef()


def _cursor(request: web.Request, name: str, prefix: str) -> int | None:
    raw = request.query.get(name)
    if not raw:
        return None
    seq = seq_of(raw, prefix)
    if seq is None:
        raise StateError(400, f"Invalid '{name}': '{raw}' is not a valid id.", param=name)
    return seq


def _list(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def _ttl(value: Any, param: str) -> int:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise StateError(400, f"Invalid '{param}': expected an integer.", param=param) from None
    if not TTL_RANGE[0] <= seconds <= TTL_RANGE[1]:
        raise StateError(400, f"Invalid '{param}': must be between {TTL_RANGE[0]} and {TTL_RANGE[1]}.", param=param)
    return seconds


# ------------------------------------------------------------------ files


@routes.post("/v1/files")
async def create_file(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    if not request.content_type.startswith("multipart/"):
        raise StateError(400, "Expected a multipart/form-data body.")
    fields: dict[str, str] = {}
    chunks: list[bytes] = []
    filename: str | None = None
    size, limit = 0, sim.config.max_upload_bytes
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader):
            raise StateError(400, "Nested multipart bodies are not supported.")
        if part.name == "file":
            filename = part.filename or "upload"
            while chunk := await part.read_chunk(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise StateError(413, f"File exceeds the maximum upload size of {limit} bytes.")
                chunks.append(chunk)
        elif part.name:
            fields[part.name] = await part.text()
    purpose = fields.get("purpose")
    if purpose not in UPLOAD_PURPOSES:
        raise StateError(400, f"Invalid 'purpose': {purpose!r}.", param="purpose")
    if filename is None:
        raise StateError(400, "Missing required parameter: 'file'.", param="file")
    ttl = None
    if "expires_after[seconds]" in fields:
        if fields.get("expires_after[anchor]") != "created_at":
            raise StateError(400, "Invalid 'expires_after[anchor]'.", param="expires_after[anchor]")
        ttl = _ttl(fields["expires_after[seconds]"], "expires_after[seconds]")
    return json_ok(OPENAI, sim.state.add_file(filename, purpose, b"".join(chunks), ttl))


@routes.get("/v1/files")
async def list_files(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    order = request.query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise StateError(400, "Invalid 'order': expected 'asc' or 'desc'.", param="order")
    data, more = sim.state.list_files(
        purpose=request.query.get("purpose"),
        after=_cursor(request, "after", "file-"),
        limit=int_query(request, "limit", 10_000, 1, 10_000),
        ascending=order == "asc",
    )
    return json_ok(OPENAI, _list(data, more))


@routes.get("/v1/files/{file_id}")
async def retrieve_file(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    return json_ok(OPENAI, sim.state.get_file(request.match_info["file_id"]).to_json())


@routes.get("/v1/files/{file_id}/content")
async def file_content(request: web.Request) -> web.StreamResponse:
    """Raw bytes in chunks, with Content-Length (files may be hundreds of MB)."""
    sim = request.app[APP_SIM]
    content = sim.state.get_file(request.match_info["file_id"]).content
    view = memoryview(content)
    chunks = (bytes(view[i : i + CONTENT_CHUNK]) for i in range(0, len(content), CONTENT_CHUNK))
    return await stream_bytes(
        request, chunks, content_type="application/octet-stream", length=len(content),
        headers={"x-request-id": new_request_id()},
    )


@routes.delete("/v1/files/{file_id}")
async def delete_file(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    file_id = request.match_info["file_id"]
    sim.state.delete_file(file_id)
    return json_ok(OPENAI, {"id": file_id, "object": "file", "deleted": True})


# ------------------------------------------------------------------ batches


def _check_metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > 16:
        raise StateError(400, "Invalid 'metadata': at most 16 string key-value pairs.", param="metadata")
    for key, value in metadata.items():
        if not isinstance(value, str) or len(key) > 64 or len(value) > 512:
            raise StateError(
                400, "Invalid 'metadata': keys up to 64 and string values up to 512 characters.", param="metadata"
            )
    return dict(metadata)


@routes.post("/v1/batches")
async def create_batch(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    body = await read_json(request)
    if sim.config.create_error is not None:
        status, message, code = create_refusal(OPENAI, sim.config.create_error)
        raise StateError(status, message, code=code)
    if not isinstance(body, dict):
        raise StateError(400, "Expected a JSON object body.")
    input_file_id = body.get("input_file_id")
    endpoint = body.get("endpoint")
    window = body.get("completion_window")
    if not isinstance(input_file_id, str) or not input_file_id:
        raise StateError(400, "Missing required parameter: 'input_file_id'.", param="input_file_id")
    if endpoint not in OPENAI_ENDPOINTS:
        raise StateError(
            400, f"Invalid 'endpoint': {endpoint!r}; the simulator supports {', '.join(OPENAI_ENDPOINTS)}.",
            param="endpoint",
        )
    if window != "24h":
        raise StateError(400, "Invalid 'completion_window': only '24h' is supported.", param="completion_window")
    metadata = _check_metadata(body.get("metadata"))
    output_ttl = None
    expires_after = body.get("output_expires_after")
    if expires_after is not None:
        if not isinstance(expires_after, dict) or expires_after.get("anchor") != "created_at":
            raise StateError(400, "Invalid 'output_expires_after'.", param="output_expires_after")
        output_ttl = _ttl(expires_after.get("seconds"), "output_expires_after.seconds")
    try:
        record = sim.state.get_file(input_file_id)
    except StateError:
        raise StateError(400, f"Invalid 'input_file_id': file '{input_file_id}' not found.", param="input_file_id") from None
    if record.purpose != "batch":
        raise StateError(400, "The input file must be uploaded with purpose 'batch'.", param="input_file_id")
    requests, errors = await asyncio.get_running_loop().run_in_executor(
        None, parse_openai_input, record.content, endpoint, sim.config.max_openai_requests
    )
    batch = sim.state.create_openai_batch(
        endpoint=endpoint, input_file_id=input_file_id, completion_window=window, metadata=metadata,
        output_ttl_s=output_ttl, requests=requests, errors=errors,
    )
    return json_ok(OPENAI, batch)


@routes.get("/v1/batches")
async def list_batches(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    data, more = sim.state.list_openai_batches(
        after=_cursor(request, "after", "batch_"), limit=int_query(request, "limit", 20, 1, 100)
    )
    return json_ok(OPENAI, _list(data, more))


@routes.get("/v1/batches/{batch_id}")
async def retrieve_batch(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    return json_ok(OPENAI, sim.state.get_openai_batch(request.match_info["batch_id"]))


@routes.post("/v1/batches/{batch_id}/cancel")
async def cancel_batch(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    return json_ok(OPENAI, sim.state.cancel_openai_batch(request.match_info["batch_id"]))
