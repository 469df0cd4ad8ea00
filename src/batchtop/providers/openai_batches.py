"""OpenAI Files + Batch API over the official async SDK (imported only here)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import httpx2  # the HTTP client both SDKs are built on: a streamed download raises its errors as is
import openai

from batchtop.providers.base import (
    ERRORED,
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
    ProviderQuota,
    ProviderRefused,
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

META_KEY = "batchtop_submission"
PAGE = 100  # the largest page batches.list takes
_REFUSAL_CODES = {"token_limit_exceeded", "batch_limit_exceeded", "too_many_requests", "rate_limit_exceeded"}
_ABORTS: dict[str, str] = {"batch_expired": Outcome.EXPIRED, "batch_cancelled": Outcome.CANCELLED}  # error code -> ours


def translate(exc: openai.APIError | httpx2.HTTPError, *, creating: str | None = None, batch_id: str | None = None) -> ProviderError:
    """The typed error for an exception of the OpenAI SDK (or of its HTTP client, which
    a streamed download raises as is): the one place this SDK's errors are read.

    An error answer goes by its status, `code`, `type` and Retry-After headers
    (`errors.classify_status`; `creating` and `batch_id` as there); anything else (a
    timeout, a broken connection, an answer the SDK could not read) is transient.
    """
    source = type(exc).__name__
    if isinstance(exc, openai.APIStatusError):
        return classify_status(
            exc.status_code, exc.message, code=exc.code, kind=exc.type,
            retry_after=retry_after_seconds(exc.response.headers),
            creating=creating, batch_id=batch_id, source=source,
        )
    return ProviderTransient(str(exc) or source, source=source)


@contextmanager
def translated(*, creating: str | None = None, batch_id: str | None = None) -> Iterator[None]:
    """Raise the SDK's (and httpx's) exceptions inside as `providers.errors` (`translate`)."""
    try:
        yield
    except (openai.APIError, httpx2.HTTPError) as exc:
        raise translate(exc, creating=creating, batch_id=batch_id) from exc


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

    def _translated(self, *, creating: str | None = None, batch_id: str | None = None) -> Any:
        return translated(creating=creating, batch_id=batch_id)

    async def submit(self, uid: str, endpoint: str, lines: list[bytes]) -> RemoteBatch:
        """Upload the lines as one file, then create the batch over it, our `uid` in its
        metadata. A refused create deletes the upload it leaves behind."""
        data = b"".join(lines)
        with translated(creating="upload"):
            uploaded = await self.client.files.create(file=(upload_name(uid), data), purpose="batch")
        try:
            with translated(creating="create"):
                batch = await self.client.batches.create(
                    input_file_id=uploaded.id,
                    endpoint=endpoint,
                    completion_window="24h",
                    metadata={META_KEY: uid},
                )
        except (ProviderRefused, ProviderQuota):  # nothing was created: no upload left behind
            with translated():
                await self._delete_file(uploaded.id)
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
        with translated():
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
        with translated():
            await self.client.batches.list(limit=1)

    async def retrieve(self, batch_id: str) -> RemoteBatch:
        with translated(batch_id=batch_id):
            return _remote(await self.client.batches.retrieve(batch_id))

    async def cancel(self, batch_id: str) -> RemoteBatch:
        with translated(batch_id=batch_id):
            try:
                return _remote(await self.client.batches.cancel(batch_id))
            except (openai.BadRequestError, openai.ConflictError):
                pass  # it ended meanwhile: as it is now
        return await self.retrieve(batch_id)

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

    async def _file_bytes(self, batch_id: str, file_id: str) -> AsyncGenerator[bytes, None]:
        with translated():
            try:
                async with self.client.files.with_streaming_response.content(file_id) as response:
                    async for chunk in response.iter_bytes():
                        yield chunk
            except openai.NotFoundError as exc:  # deleted, or expired: what it held is gone
                raise ProviderNotFound(
                    batch_id, f"404 for its result file {file_id} ({exc.message})", source=type(exc).__name__
                ) from exc
