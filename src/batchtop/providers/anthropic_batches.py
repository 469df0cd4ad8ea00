"""Anthropic Message Batches over the official async SDK (imported only here)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import anthropic
import httpx2  # the HTTP client both SDKs are built on: a streamed download raises its errors as is

from batchtop.providers.base import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    ERRORED,
    EXPIRED,
    IN_PROGRESS,
    SKEW,
    SUCCEEDED,
    ListingAdapter,
    RemoteBatch,
    ResultLine,
    load_line,
)
from batchtop.providers.errors import (
    ProviderError,
    ProviderNotFound,
    ProviderTransient,
    classify_status,
    retry_after_seconds,
)
from batchtop.providers.streaming import (
    DEFAULT_MAX_LINE,
    START,
    Position,
    ResultItem,
    result_items,
)
from batchtop.states import Outcome

PAGE = 1000  # the largest page messages.batches.list takes
_OUTCOMES = {"canceled": Outcome.CANCELLED, "expired": Outcome.EXPIRED}  # Anthropic result type -> ours


def _error_type(body: object) -> str | None:
    """The `error.type` of an error answer's body (`billing_error`, `overloaded_error`, ...)."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else None


def translate(exc: anthropic.APIError | httpx2.HTTPError, *, creating: str | None = None, batch_id: str | None = None) -> ProviderError:
    """The typed error for an exception of the Anthropic SDK (or of its HTTP client, which
    a streamed download raises as is): the one place this SDK's errors are read.

    An error answer goes by its status, its body's `error.type` and its message (a
    too-low credit balance is a 400 whose message says so) and Retry-After headers
    (`errors.classify_status`; `creating` and `batch_id` as there); anything else (a
    timeout, a broken connection, an answer the SDK could not read) is transient.
    """
    source = type(exc).__name__
    if isinstance(exc, anthropic.APIStatusError):
        return classify_status(
            exc.status_code, exc.message, kind=_error_type(exc.body),
            retry_after=retry_after_seconds(exc.response.headers),
            creating=creating, batch_id=batch_id, source=source,
        )
    return ProviderTransient(str(exc) or source, source=source)


@contextmanager
def translated(*, creating: str | None = None, batch_id: str | None = None) -> Iterator[None]:
    """Raise the SDK's (and httpx's) exceptions inside as `providers.errors` (`translate`)."""
    try:
        yield
    except (anthropic.APIError, httpx2.HTTPError) as exc:
        raise translate(exc, creating=creating, batch_id=batch_id) from exc


def _status(b: Any) -> str:
    if b.processing_status == "in_progress":
        return IN_PROGRESS
    if b.processing_status == "canceling":
        return CANCELLING
    if b.cancel_initiated_at is not None:
        return CANCELLED
    return EXPIRED if b.request_counts.expired else COMPLETED


def _total(b: Any) -> int:
    c = b.request_counts
    return c.processing + c.succeeded + c.errored + c.canceled + c.expired


def _remote(b: Any) -> RemoteBatch:
    c = b.request_counts
    return RemoteBatch(
        id=b.id,
        status=_status(b),
        total=_total(b),
        succeeded=c.succeeded,
        failed=c.errored + c.canceled + c.expired,
        created_at=b.created_at.timestamp(),
        expires_at=b.expires_at.timestamp() if b.expires_at else None,
        ended_at=b.ended_at.timestamp() if b.ended_at else None,
    )


def _count(value: Any) -> int:
    """A token count from untrusted usage: a non-negative int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _cache_writes(usage: dict[str, Any]) -> tuple[int, int]:
    """(all cache writes, the 1-hour ones among them).

    `cache_creation_input_tokens` is the sum of the two write kinds that
    `cache_creation` reports apart (5-minute at 1.25x input, 1-hour at 2x); a line
    with only the split, or only the sum (older API versions), is read alike.
    """
    split = usage.get("cache_creation")
    split = split if isinstance(split, dict) else {}
    five, hour = _count(split.get("ephemeral_5m_input_tokens")), _count(split.get("ephemeral_1h_input_tokens"))
    total = _count(usage.get("cache_creation_input_tokens")) if "cache_creation_input_tokens" in usage else five + hour
    total = max(total, five + hour)
    return total, hour


def parse_result_line(raw: str) -> ResultLine:
    obj = load_line(raw)
    cid = obj.get("custom_id")
    result = obj.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        u = (result.get("message") or {}).get("usage") or {}
        write, write_1h = _cache_writes(u)
        return ResultLine(
            cid,
            SUCCEEDED,
            raw,
            None,
            None,
            _count(u.get("input_tokens")),
            _count(u.get("cache_read_input_tokens")),
            write,
            _count(u.get("output_tokens")),
            cache_creation_1h_input_tokens=write_1h,
        )
    if kind in _OUTCOMES:
        return ResultLine(cid, _OUTCOMES[kind], raw, f"{kind}: the request did not run", kind)
    error = result.get("error")
    outer: dict[str, Any] = error if isinstance(error, dict) else {}
    # nested as documented ({"type": "error", "error": {...}}), or flat as some lines come
    # ({"type": "overloaded_error", "message": "Overloaded"}): both keep their message
    nested = outer.get("error")
    inner: dict[str, Any] = nested if isinstance(nested, dict) else outer
    code = inner.get("type") if isinstance(inner.get("type"), str) and inner.get("type") != "error" else "error"
    message = inner.get("message") if isinstance(inner.get("message"), str) else ""
    return ResultLine(cid, ERRORED, raw, f"{code}: {message}", code, error_type=code if code != "error" else None)


class AnthropicBatches(ListingAdapter):
    provider = "anthropic"
    page_size = PAGE

    def _first_page(self) -> Any:
        return self.client.messages.batches.list(limit=PAGE)

    @staticmethod
    def _created(item: Any) -> float:
        return item.created_at.timestamp()

    @staticmethod
    def _remote(item: Any) -> RemoteBatch:
        return _remote(item)

    def _translated(self, *, creating: str | None = None, batch_id: str | None = None) -> Any:
        return translated(creating=creating, batch_id=batch_id)

    async def submit(self, uid: str, endpoint: str, lines: list[bytes]) -> RemoteBatch:
        """One create call with every request inline (`uid` is not kept: no metadata)."""
        requests = [json.loads(line) for line in lines]
        with translated(creating="create"):
            batch = await self.client.messages.batches.create(requests=requests)
        return _remote(batch)

    async def find_submission(self, uid: str, created_at: float, total: int, owned: set[str]) -> list[RemoteBatch]:
        """No metadata here: the batches created in the intent's window with the same
        request count that no other submission owns."""
        found: list[RemoteBatch] = []
        with translated():
            async for items in self._pages():
                for b in items:
                    created = b.created_at.timestamp()
                    if created >= created_at - SKEW and b.id not in owned and _total(b) == total:
                        found.append(_remote(b))
                if not items or items[-1].created_at.timestamp() < created_at - SKEW:
                    break
        return found

    async def probe(self) -> None:
        with translated():
            await self.client.messages.batches.list(limit=1)

    async def retrieve(self, batch_id: str) -> RemoteBatch:
        with translated(batch_id=batch_id):
            return _remote(await self.client.messages.batches.retrieve(batch_id))

    async def cancel(self, batch_id: str) -> RemoteBatch:
        with translated(batch_id=batch_id):
            try:
                return _remote(await self.client.messages.batches.cancel(batch_id))
            except (anthropic.BadRequestError, anthropic.ConflictError):
                pass  # it ended meanwhile: as it is now
        return await self.retrieve(batch_id)

    def results(
        self, batch: RemoteBatch, start: Position = START, max_line: int = DEFAULT_MAX_LINE
    ) -> AsyncIterator[ResultItem]:
        """The results stream from `start` on, split into bounded raw lines
        (`providers.streaming`) so each is stored verbatim."""
        return result_items([(0, partial(self._result_bytes, batch.id))], parse_result_line, start, max_line)

    async def _result_bytes(self, batch_id: str) -> AsyncGenerator[bytes, None]:
        with translated():
            try:
                decoder = await self.client.messages.batches.results(batch_id)
            except anthropic.NotFoundError as exc:
                raise ProviderNotFound(
                    batch_id, f"404 for its results ({exc.message})", source=type(exc).__name__
                ) from exc
            try:
                async for chunk in decoder.http_response.aiter_bytes():
                    yield chunk
            finally:
                await decoder.close()
