"""Cross-cutting HTTP behaviour: request log, API-key check, fault injection,
and turning every failure into the provider's error shape."""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .errors import error_response
from .state import ANTHROPIC, GEMINI, OPENAI, LogRecord, StateError

log = logging.getLogger(__name__)

#: The app holds the :class:`~batchtop.sim.server.Simulator` under this key.
APP_SIM: web.AppKey[Any] = web.AppKey("batchtop_sim", object)

#: Paths of the simulator's own debug routes: never faulted, never logged.
DEBUG_PREFIX = "/_sim/"

#: Send ``x-sim-fault: 429`` (or 500, 503, 529: any 4xx/5xx) to force one injected fault.
FORCE_FAULT_HEADER = "x-sim-fault"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Whether the middleware answered a request with an injected fault (for its log entry).
_FAULT: web.RequestKey[bool] = web.RequestKey("batchtop_sim_fault", bool)


def provider_of(path: str) -> str:
    if path.startswith("/gemini/"):
        return GEMINI
    return ANTHROPIC if path.startswith("/v1/messages") else OPENAI


def _upload_chunk(request: web.Request, provider: str) -> bool:
    """A chunk of a Gemini resumable upload: google-genai sends it with the upload
    headers only (no API key); the upload id in the URL stands for the key."""
    return provider == GEMINI and request.path.startswith("/gemini/upload/") and "upload_id" in request.query


def _presented_keys(request: web.Request, provider: str) -> list[str]:
    keys = []
    if provider == GEMINI:
        if "x-goog-api-key" in request.headers:
            keys.append(request.headers["x-goog-api-key"].strip())
        if "key" in request.query:
            keys.append(request.query["key"])
        return keys
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        keys.append(auth[7:].strip())
    if provider == ANTHROPIC and "x-api-key" in request.headers:
        keys.append(request.headers["x-api-key"].strip())
    return keys


class FaultDice:
    """Seeded, thread-safe source of injected faults (429 or 500)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def roll(self, rate: float, retry_range: tuple[int, int]) -> tuple[int, int] | None:
        """``(status, retry_after_ms)`` for a faulted request, else None."""
        with self._lock:
            if rate <= 0 or self._rng.random() >= rate:
                return None
            status = 429 if self._rng.random() < 0.5 else 500
            low, high = retry_range
            return status, self._rng.randint(min(low, high), max(low, high))


def fault_response(provider: str, status: int, retry_after_ms: int) -> web.Response:
    """A retryable error with short ``retry-after-ms`` (and a whole-second ``Retry-After``)."""
    message = "Rate limit reached (simulated)." if status == 429 else "Simulated server error."
    headers = {
        "retry-after-ms": str(retry_after_ms),
        "Retry-After": str(max(1, math.ceil(retry_after_ms / 1000))),
    }
    return error_response(provider, status, message, headers=headers)


def _pick_fault(request: web.Request, sim: Any) -> tuple[int, int] | None:
    """A forced fault from the header, else a seeded roll against ``fault_rate``."""
    cfg = sim.config
    forced = request.headers.get(FORCE_FAULT_HEADER, "")
    if forced.isdigit() and 400 <= int(forced) <= 599:
        return int(forced), cfg.fault_retry_after_ms[0]
    return sim.fault_dice.roll(cfg.fault_rate, cfg.fault_retry_after_ms)


async def _drain(request: web.Request) -> None:
    """Read an unwanted body so the keep-alive connection stays usable."""
    if request.body_exists and not request.content.at_eof():
        while await request.content.readany():
            pass


@web.middleware
async def sim_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = request.app[APP_SIM]
    cfg = sim.config
    provider = provider_of(request.path)
    debug = request.path.startswith(DEBUG_PREFIX)
    fault = False
    response: web.StreamResponse
    try:
        if (
            cfg.require_api_key is not None
            and cfg.require_api_key not in _presented_keys(request, provider)
            and not _upload_chunk(request, provider)
        ):
            await _drain(request)
            message = {
                ANTHROPIC: "invalid x-api-key",
                GEMINI: "API key not valid. Please pass a valid API key.",
            }.get(provider, "Incorrect API key provided.")
            response = error_response(provider, 401, message)
        elif not debug and (rolled := _pick_fault(request, sim)) is not None:
            await _drain(request)
            fault = True
            response = fault_response(provider, *rolled)
        else:
            response = await handler(request)
    except StateError as exc:
        response = error_response(provider, exc.status, exc.message, param=exc.param, code=exc.code)
    except web.HTTPException as exc:
        message = f"Unknown request URL: {request.method} {request.path}." if exc.status == 404 else (exc.reason or "error")
        response = error_response(provider, exc.status, message)
    except Exception:  # noqa: BLE001 - the client must get a well-formed 500
        log.exception("simulator handler failed for %s %s", request.method, request.path)
        response = error_response(provider, 500, "Internal simulator error.")
    request[_FAULT] = fault
    return response


async def log_on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Record a request in the log as its response starts, before any byte of it is
    sent: a client that has its answer always finds its request logged. (Recording on
    the way out of the middleware raced with streamed bodies, which a handler sends
    itself: a fast client read the whole file before the entry existed.)"""
    if request.path.startswith(DEBUG_PREFIX):
        return
    sim = request.app[APP_SIM]
    retry = request.headers.get("x-stainless-retry-count", "")
    sim.state.record(
        LogRecord(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            status=response.status,
            provider=provider_of(request.path),
            retry_count=int(retry) if retry.isdigit() else None,
            fault=bool(request.get(_FAULT, False)),
            headers={k.lower(): v for k, v in request.headers.items()},
            at=sim.clock.now(),
        )
    )
