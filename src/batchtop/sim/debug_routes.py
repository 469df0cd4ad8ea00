"""Debug routes for tools that run the simulator in another process.

``GET /_sim/submissions`` returns what :attr:`Simulator.submissions` gives an
in-process test: how often each ``(provider, custom_id)`` was included in a created
batch, as ``{"total": n, "distinct": n, "submissions": {"openai": {custom_id: n},
"anthropic": {...}}}``. ``?min=N`` keeps only the ids submitted at least N times
(the totals still count every id).

``POST /_sim/forget/{batch_id}`` makes the simulator lose a batch, as
:meth:`Simulator.forget` does: it is no longer listed and its routes answer 404
(``{"id": ..., "forgotten": true}``; 404 for a batch it does not have). It is the
one route that changes state.

These routes are no part of either provider's API: injected faults never hit them
and they are left out of the request log, so asking does not change what a test
measures. The API-key check applies as on every route.
"""

from __future__ import annotations

from aiohttp import web

from .middleware import APP_SIM, DEBUG_PREFIX
from .state import StateError

routes = web.RouteTableDef()

@routes.get(DEBUG_PREFIX + "submissions")
async def submissions(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    raw = request.query.get("min", "1")
    try:
        least = int(raw)
    except ValueError:
        raise StateError(400, f"Invalid 'min': {raw!r} is not an integer.", param="min") from None
    counts = sim.submissions  # a copy, taken under the state lock
    by_provider: dict[str, dict[str, int]] = {"openai": {}, "anthropic": {}}
    for (provider, custom_id), n in counts.items():
        if n >= least:
            by_provider.setdefault(provider, {})[custom_id] = n
    body = {"total": sum(counts.values()), "distinct": len(counts), "submissions": by_provider}
    return web.json_response(body)


@routes.post(DEBUG_PREFIX + "forget/{batch_id}")
async def forget(request: web.Request) -> web.Response:
    sim = request.app[APP_SIM]
    batch_id = request.match_info["batch_id"]
    try:
        sim.forget(batch_id)
    except KeyError:
        raise StateError(404, f"No batch found with id '{batch_id}'.", param="batch_id") from None
    return web.json_response({"id": batch_id, "forgotten": True})
