"""Anthropic Message Batches over the official async SDK (imported only here)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import anthropic

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
    Lost,
    Refused,
    RemoteBatch,
    ResultLine,
    is_refusal,
    load_line,
    retry_after,
)
from batchtop.providers.failures import is_quota
from batchtop.states import Outcome
from batchtop.providers.streaming import (
    DEFAULT_MAX_LINE,
    START,
    Position,
    ResultItem,
    result_items,
)

PAGE = 1000  # the largest page messages.batches.list takes
_OUTCOMES = {"canceled": Outcome.CANCELLED, "expired": Outcome.EXPIRED}  # Anthropic result type -> ours


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
    outer = result.get("error") if isinstance(result.get("error"), dict) else {}
    # nested as documented ({"type": "error", "error": {...}}), or flat as some lines come
    # ({"type": "overloaded_error", "message": "Overloaded"}): both keep their message
    inner = outer.get("error") if isinstance(outer.get("error"), dict) else outer
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

    async def submit(self, uid: str, endpoint: str, lines: list[bytes]) -> RemoteBatch:
        requests = [json.loads(line) for line in lines]
        try:
            batch = await self.client.messages.batches.create(requests=requests)
        except anthropic.APIStatusError as exc:
            if is_refusal(exc.status_code):
                quota = is_quota(None, getattr(exc, "type", None), exc.message)
                raise Refused(f"create refused: {exc.status_code} {exc.message}", retry_after(exc), quota=quota) from exc
            raise
        return _remote(batch)

    async def find_submission(self, uid: str, created_at: float, total: int, owned: set[str]) -> list[RemoteBatch]:
        """No metadata here: the batches created in the intent's window with the same
        request count that no other submission owns."""
        found: list[RemoteBatch] = []
        async for items in self._pages():
            for b in items:
                created = b.created_at.timestamp()
                if created >= created_at - SKEW and b.id not in owned and _total(b) == total:
                    found.append(_remote(b))
            if not items or items[-1].created_at.timestamp() < created_at - SKEW:
                break
        return found

    async def probe(self) -> None:
        await self.client.messages.batches.list(limit=1)

    async def retrieve(self, batch_id: str) -> RemoteBatch:
        try:
            return _remote(await self.client.messages.batches.retrieve(batch_id))
        except anthropic.NotFoundError as exc:
            raise Lost(batch_id, f"404 {exc.message}") from exc

    async def cancel(self, batch_id: str) -> RemoteBatch:
        try:
            return _remote(await self.client.messages.batches.cancel(batch_id))
        except anthropic.NotFoundError as exc:
            raise Lost(batch_id, f"404 {exc.message}") from exc

    def results(
        self, batch: RemoteBatch, start: Position = START, max_line: int = DEFAULT_MAX_LINE
    ) -> AsyncIterator[ResultItem]:
        """The results stream from `start` on, split into bounded raw lines
        (`providers.streaming`) so each is stored verbatim."""
        return result_items([(0, partial(self._result_bytes, batch.id))], parse_result_line, start, max_line)

    async def _result_bytes(self, batch_id: str) -> AsyncIterator[bytes]:
        try:
            decoder = await self.client.messages.batches.results(batch_id)
        except anthropic.NotFoundError as exc:
            raise Lost(batch_id, f"404 for its results ({exc.message})") from exc
        try:
            async for chunk in decoder.http_response.aiter_bytes():
                yield chunk
        finally:
            await decoder.close()
