"""The providers' synchronous APIs, for batchtop's real-time and flex lanes (issue 15).

OpenAI chat completions, responses and embeddings (mounted under ``/v1``, as the
SDK's paths have none of their own) and Anthropic messages. Bodies and usage are the
ones a batch line of the same request gets (`responses.openai_body`,
`responses.anthropic_message`), so a request costs the same in either lane. Faults:
the middleware's `fault_rate` applies as to every route; `realtime_fault_rate` only
here (429 with Retry-After, or 500); OpenAI ``service_tier: "flex"`` is accepted and
refused with a 429 at `flex_refusal_rate`, as the real flex tier does when it has no
capacity. The header ``x-batchtop-custom-id`` (sent by batchtop's lanes) names the
request in `SimState.realtime_calls`, so tests can count how often each was sent.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from aiohttp import web

from .errors import error_response, json_ok
from .http_helpers import read_json
from .middleware import APP_SIM, fault_response
from .outcomes import short_hash
from .parsing import SimRequest, _openai_request, estimate_tokens
from .responses import anthropic_message, openai_body, usage_for

routes = web.RouteTableDef()

CUSTOM_ID_HEADER = "x-batchtop-custom-id"


def calls(app: web.Application) -> Counter[str]:
    """custom_id -> synchronous calls answered 200 for it (`Simulator.realtime_calls`)."""
    counter: Counter[str] = app[APP_SIM].realtime_calls
    return counter


async def _fault(request: web.Request, provider: str, *, flex: bool) -> web.Response | None:
    sim = request.app[APP_SIM]
    cfg = sim.config
    if flex and cfg.flex_refusal_rate > 0 and sim.fault_dice.roll(cfg.flex_refusal_rate, cfg.fault_retry_after_ms):
        return error_response(
            provider, 429, "Resource unavailable: flex processing has no capacity now; retry later or use the default tier.",
            code="resource_unavailable", headers={"Retry-After": "1"},
        )
    rolled = sim.fault_dice.roll(cfg.realtime_fault_rate, cfg.fault_retry_after_ms)
    if rolled is not None:
        return fault_response(provider, *rolled)
    return None


async def _work(request: web.Request, cid: str) -> None:
    """The call is taken (counted in `realtime_received`, answered or not), then takes its time."""
    sim = request.app[APP_SIM]
    sim.realtime_received[cid] += 1
    if sim.config.realtime_latency_s > 0:
        await asyncio.sleep(sim.config.realtime_latency_s)


def _name(request: web.Request, body: Any) -> str:
    cid = request.headers.get(CUSTOM_ID_HEADER)
    if cid:
        return cid
    return f"rt-{short_hash(repr(body))}"


async def _openai(request: web.Request, endpoint: str) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        return error_response("openai", 400, "We could not parse the JSON body of your request.")
    tier = body.get("service_tier")
    if tier not in (None, "auto", "default", "flex", "priority"):
        return error_response("openai", 400, f"Invalid value for 'service_tier': {tier!r}.", param="service_tier")
    fault = await _fault(request, "openai", flex=tier == "flex")
    if fault is not None:
        return fault
    cid = _name(request, body)
    await _work(request, cid)
    sim_request = _openai_request(cid, endpoint, body)
    if sim_request.problem:
        return error_response("openai", 400, sim_request.problem, code="invalid_value")
    cfg = request.app[APP_SIM].config
    usage = usage_for(cfg, sim_request, embeddings=endpoint == "/v1/embeddings")
    out = openai_body(endpoint, sim_request, usage, int(time.time()), short_hash("rt", cid, str(time.time_ns())))
    if tier == "flex" and endpoint != "/v1/embeddings":
        out["service_tier"] = "flex"
    calls(request.app)[cid] += 1
    return json_ok("openai", out)


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.Response:
    return await _openai(request, "/v1/chat/completions")


@routes.post("/v1/responses")
async def responses(request: web.Request) -> web.Response:
    return await _openai(request, "/v1/responses")


@routes.post("/v1/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    return await _openai(request, "/v1/embeddings")


@routes.post("/v1/messages")
async def messages(request: web.Request) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict):
        return error_response("anthropic", 400, "messages: Field required")
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            return error_response("anthropic", 400, f"{name}: Field required")
    fault = await _fault(request, "anthropic", flex=False)
    if fault is not None:
        return fault
    cid = _name(request, body)
    await _work(request, cid)
    max_tokens = body.get("max_tokens")
    sim_request = SimRequest(
        cid, str(body.get("model")), estimate_tokens(body.get("system"), body.get("messages")),
        max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None,
    )
    message = anthropic_message(request.app[APP_SIM].config, "rt", sim_request)
    message["id"] = f"msg_{short_hash('rt', cid, str(time.time_ns()))}"
    message["usage"]["service_tier"] = "standard"
    calls(request.app)[cid] += 1
    return json_ok("anthropic", message)
