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
    Refused,
    RemoteBatch,
    ResultLine,
    is_refusal,
    load_line,
    retry_after,
)
from batchtop.providers.streaming import (
    DEFAULT_MAX_LINE,
    START,
    Position,
    ResultItem,
    result_items,
)

PAGE = 1000  # the largest page messages.batches.list takes
_OUTCOMES = {"canceled": "cancelled", "expired": "expired"}


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


def parse_result_line(raw: str) -> ResultLine:
    obj = load_line(raw)
    cid = obj.get("custom_id")
    result = obj.get("result") or {}
    kind = result.get("type")
    if kind == "succeeded":
        u = (result.get("message") or {}).get("usage") or {}
        return ResultLine(
            cid,
            SUCCEEDED,
            raw,
            None,
            None,
            int(u.get("input_tokens") or 0),
            int(u.get("cache_read_input_tokens") or 0),
            int(u.get("cache_creation_input_tokens") or 0),
            int(u.get("output_tokens") or 0),
        )
    if kind in _OUTCOMES:
        return ResultLine(cid, _OUTCOMES[kind], raw, f"{kind}: the request did not run", kind)
    inner = ((result.get("error") or {}).get("error")) or {}
    code = inner.get("type") or "error"
    return ResultLine(cid, ERRORED, raw, f"{code}: {inner.get('message') or ''}", code)


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
                raise Refused(f"create refused: {exc.status_code} {exc.message}", retry_after(exc)) from exc
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

    async def retrieve(self, batch_id: str) -> RemoteBatch:
        return _remote(await self.client.messages.batches.retrieve(batch_id))

    async def cancel(self, batch_id: str) -> RemoteBatch:
        return _remote(await self.client.messages.batches.cancel(batch_id))

    def results(
        self, batch: RemoteBatch, start: Position = START, max_line: int = DEFAULT_MAX_LINE
    ) -> AsyncIterator[ResultItem]:
        """The results stream from `start` on, split into bounded raw lines
        (`providers.streaming`) so each is stored verbatim."""
        return result_items([(0, partial(self._result_bytes, batch.id))], parse_result_line, start, max_line)

    async def _result_bytes(self, batch_id: str) -> AsyncIterator[bytes]:
        decoder = await self.client.messages.batches.results(batch_id)
        try:
            async for chunk in decoder.http_response.aiter_bytes():
                yield chunk
        finally:
            await decoder.close()
