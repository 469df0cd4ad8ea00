"""OpenAI Files + Batch API over the official async SDK (imported only here)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import openai

from batchtop.providers.base import (
    ERRORED,
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

META_KEY = "batchtop_submission"
PAGE = 100  # the largest page batches.list takes
_REFUSAL_CODES = {"token_limit_exceeded", "batch_limit_exceeded", "too_many_requests", "rate_limit_exceeded"}
_ABORTS: dict[str, str] = {"batch_expired": Outcome.EXPIRED, "batch_cancelled": Outcome.CANCELLED}  # error code -> ours


def _quota(exc: openai.APIStatusError) -> bool:
    return is_quota(getattr(exc, "code", None), getattr(exc, "type", None), exc.message)


def upload_name(uid: str) -> str:
    return f"batchtop-{uid}.jsonl"


def _remote(b: Any) -> RemoteBatch:
    counts = b.request_counts
    errors = [e for e in (b.errors.data if b.errors and b.errors.data else [])]
    codes = {e.code for e in errors if e.code}
    text = "; ".join(f"{e.code or 'error'}: {e.message or ''}" + (f" (line {e.line})" if e.line else "") for e in errors[:5])
    ended = b.completed_at or b.failed_at or b.expired_at or b.cancelled_at
    return RemoteBatch(
        id=b.id,
        status=b.status,
        total=counts.total if counts else 0,
        succeeded=counts.completed if counts else 0,
        failed=counts.failed if counts else 0,
        created_at=float(b.created_at),
        expires_at=float(b.expires_at) if b.expires_at else None,
        ended_at=float(ended) if ended else None,
        output_file_id=b.output_file_id,
        error_file_id=b.error_file_id,
        submission_uid=(b.metadata or {}).get(META_KEY),
        error=text or None,
        refused=b.status == "failed" and bool(codes & _REFUSAL_CODES),
    )


def _usage(body: dict[str, Any]) -> tuple[int, int, int, int]:
    """(input, cached input, cache write, output), disjoint; chat, responses and embeddings shapes."""
    u = body.get("usage") or {}
    if "prompt_tokens" in u:
        prompt = int(u.get("prompt_tokens") or 0)
        cached = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        return prompt - cached, cached, 0, int(u.get("completion_tokens") or 0)
    details = u.get("input_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0)
    write = int(details.get("cache_write_tokens") or 0)
    total = int(u.get("input_tokens") or 0)
    return total - cached - write, cached, write, int(u.get("output_tokens") or 0)


def parse_result_line(raw: str) -> ResultLine:
    """One line of an output or error file."""
    obj = load_line(raw)
    cid = obj.get("custom_id")
    response = obj.get("response")
    error = obj.get("error")
    if response and response.get("status_code") == 200:
        body = response.get("body") or {}
        i, c, w, o = _usage(body)
        return ResultLine(cid, SUCCEEDED, raw, None, None, i, c, w, o)
    if error:
        code = error.get("code") or "error"
        return ResultLine(cid, _ABORTS.get(code, ERRORED), raw, f"{code}: {error.get('message') or ''}", code)
    body = (response or {}).get("body") or {}
    err = body.get("error") or {}
    status = (response or {}).get("status_code")
    code = err.get("code") or err.get("type") or f"http_{status}"
    i, c, w, o = _usage(body)
    return ResultLine(
        cid, ERRORED, raw, f"{code}: {err.get('message') or ''}", code, i, c, w, o,
        status_code=status if isinstance(status, int) else None,
        error_type=err.get("type") if isinstance(err.get("type"), str) else None,
    )


class OpenAIBatches(ListingAdapter):
    provider = "openai"
    page_size = PAGE

    def _first_page(self) -> Any:
        return self.client.batches.list(limit=PAGE)

    @staticmethod
    def _created(item: Any) -> float:
        return float(item.created_at)

    @staticmethod
    def _remote(item: Any) -> RemoteBatch:
        return _remote(item)

    async def submit(self, uid: str, endpoint: str, lines: list[bytes]) -> RemoteBatch:
        data = b"".join(lines)
        try:
            uploaded = await self.client.files.create(file=(upload_name(uid), data), purpose="batch")
        except openai.APIStatusError as exc:
            if is_refusal(exc.status_code):
                raise Refused(
                    f"upload refused: {exc.status_code} {exc.message}", retry_after(exc), quota=_quota(exc)
                ) from exc
            raise
        try:
            batch = await self.client.batches.create(
                input_file_id=uploaded.id,
                endpoint=endpoint,  # type: ignore[arg-type]
                completion_window="24h",
                metadata={META_KEY: uid},
            )
        except openai.APIStatusError as exc:
            if is_refusal(exc.status_code):
                await self._delete_file(uploaded.id)
                raise Refused(
                    f"create refused: {exc.status_code} {exc.message}", retry_after(exc), quota=_quota(exc)
                ) from exc
            raise
        return _remote(batch)

    async def _delete_file(self, file_id: str) -> None:
        try:
            await self.client.files.delete(file_id)
        except openai.NotFoundError:
            pass

    async def find_submission(self, uid: str, created_at: float, total: int, owned: set[str]) -> list[RemoteBatch]:
        """Batches carrying our submission id in metadata; an upload left without
        a batch (killed between upload and create) is deleted."""
        found: list[RemoteBatch] = []
        async for items in self._pages():
            for b in items:
                if (b.metadata or {}).get(META_KEY) == uid:
                    found.append(_remote(b))
            if not items or items[-1].created_at < created_at - SKEW:
                break
        if not found:
            files = await self.client.files.list(purpose="batch", order="desc", limit=1000)
            for f in files.data:
                if f.filename == upload_name(uid):
                    await self._delete_file(f.id)
                if f.created_at < created_at - SKEW:
                    break
        return found

    async def probe(self) -> None:
        await self.client.batches.list(limit=1)

    async def retrieve(self, batch_id: str) -> RemoteBatch:
        try:
            return _remote(await self.client.batches.retrieve(batch_id))
        except openai.NotFoundError as exc:
            raise Lost(batch_id, f"404 {exc.message}") from exc

    async def cancel(self, batch_id: str) -> RemoteBatch:
        try:
            return _remote(await self.client.batches.cancel(batch_id))
        except openai.NotFoundError as exc:
            raise Lost(batch_id, f"404 {exc.message}") from exc

    def results(
        self, batch: RemoteBatch, start: Position = START, max_line: int = DEFAULT_MAX_LINE
    ) -> AsyncIterator[ResultItem]:
        """Output file, then the error file (always read), from `start` on, in
        bounded lines (`providers.streaming`)."""
        files = [
            (index, partial(self._file_bytes, batch.id, file_id))
            for index, file_id in enumerate((batch.output_file_id, batch.error_file_id))
            if file_id
        ]
        return result_items(files, parse_result_line, start, max_line)

    async def _file_bytes(self, batch_id: str, file_id: str) -> AsyncIterator[bytes]:
        try:
            async with self.client.files.with_streaming_response.content(file_id) as response:
                async for chunk in response.iter_bytes():
                    yield chunk
        except openai.NotFoundError as exc:  # deleted, or expired: what it held is gone
            raise Lost(batch_id, f"404 for its result file {file_id} ({exc.message})") from exc
