"""Anthropic Message Batches routes (``/v1/messages/batches``)."""

from __future__ import annotations

from aiohttp import web

from .errors import json_ok, new_request_id
from .http_helpers import int_query, origin, read_json, stream_bytes
from .ids import seq_of
from .middleware import APP_SIM
from .parsing import InvalidBatch, parse_anthropic_requests
from .scripted import create_refusal
from .state import ANTHROPIC, StateError

PREFIX = "msgbatch_"

routes = web.RouteTableDef()


def _cursor(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if not raw:
        return None
    seq = seq_of(raw, PREFIX)
    if seq is None:
        raise StateError(400, f"{name}: '{raw}' is not a valid message batch id.")
    return seq


@routes.post("/v1/messages/batches")
async def create_batch(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    body = await read_json(request)
    if sim.config.create_error is not None:
        status, message, _ = create_refusal(ANTHROPIC, sim.config.create_error)
        raise StateError(status, message)
    try:
        requests = parse_anthropic_requests(body, sim.config.max_anthropic_requests)
    except InvalidBatch as exc:
        raise StateError(400, str(exc)) from None
    return json_ok(ANTHROPIC, sim.state.create_anthropic_batch(requests, origin(request)))


@routes.get("/v1/messages/batches")
async def list_batches(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    data, more = sim.state.list_anthropic_batches(
        after=_cursor(request, "after_id"),
        before=_cursor(request, "before_id"),
        limit=int_query(request, "limit", 20, 1, 1000),
        origin=origin(request),
    )
    return json_ok(
        ANTHROPIC,
        {
            "data": data,
            "has_more": more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        },
    )


@routes.get("/v1/messages/batches/{batch_id}")
async def retrieve_batch(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    return json_ok(ANTHROPIC, sim.state.get_anthropic_batch(request.match_info["batch_id"], origin(request)))


@routes.delete("/v1/messages/batches/{batch_id}")
async def delete_batch(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    batch_id = request.match_info["batch_id"]
    sim.state.delete_anthropic_batch(batch_id)
    return json_ok(ANTHROPIC, {"id": batch_id, "type": "message_batch_deleted"})


@routes.post("/v1/messages/batches/{batch_id}/cancel")
async def cancel_batch(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    return json_ok(ANTHROPIC, sim.state.cancel_anthropic_batch(request.match_info["batch_id"], origin(request)))


@routes.get("/v1/messages/batches/{batch_id}/results")
async def results(request: web.Request) -> web.StreamResponse:
    """JSONL stream, chunked; one result per ``\\n``-terminated line."""
    sim = request.app[APP_SIM]
    chunks = sim.state.anthropic_results(request.match_info["batch_id"])
    return await stream_bytes(
        request, chunks, content_type="application/x-jsonl", headers={"request-id": new_request_id()}
    )
