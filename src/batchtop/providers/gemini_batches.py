"""Gemini Batch Mode over the official google-genai SDK's async client (imported only here).

Wire facts this relies on, read from the SDK's source (google/genai/batches.py,
files.py, _transformers.py, types.py; google-genai 3.6):
- a batch is `batches/<id>`; its state comes as `JOB_STATE_*` (the SDK maps the wire's
  `BATCH_STATE_*` for some, and passes others such as `BATCH_STATE_QUEUED` through as
  they are), so states are normalized by their suffix;
- the Gemini Developer API's `BatchJob` has no request counts (the SDK maps
  `completion_stats` for Vertex only) and no batch-level error: counts are known once
  the results are read;
- inline requests are `InlinedRequest(contents, config, metadata)`: our key travels in
  `metadata` and comes back on each `InlinedResponse`; a request with a field the
  inline type has no place for goes as a file instead;
- `files.download(destination=...)` awaits the destination's `write` when it returns an
  awaitable, which gives the result stream its back-pressure.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any, cast

import aiohttp
import orjson
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from batchtop.providers.base import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    ENDED,
    ERRORED,
    EXPIRED,
    FAILED,
    IN_PROGRESS,
    SKEW,
    SUCCEEDED,
    UNKNOWN,
    VALIDATING,
    ProviderAdapter,
    RemoteBatch,
    ResultLine,
    load_line,
)
from batchtop.providers.errors import (
    ProviderError,
    ProviderNotFound,
    ProviderRefused,
    ProviderTransient,
    classify_status,
    retry_after_seconds,
)
from batchtop.providers.limits import GEMINI, GEMINI_INLINE_MAX_BYTES
from batchtop.providers.streaming import (
    DEFAULT_MAX_LINE,
    START,
    Position,
    ResultItem,
    result_items,
)

PAGE = 100
"""Batches per list page we ask for (the SDK passes `page_size` through)."""
DISPLAY_PREFIX = "batchtop-"
KEY = "key"
"""The metadata field (inline) or line field (file) carrying a request's key."""
DOWNLOAD_QUEUE = 8
"""Chunks (of the SDK's 1 MiB) held between the download and the line splitter."""

_STATES = {
    "UNSPECIFIED": UNKNOWN,
    "QUEUED": VALIDATING,
    "PENDING": VALIDATING,
    "RUNNING": IN_PROGRESS,
    "UPDATING": IN_PROGRESS,
    "PAUSED": IN_PROGRESS,
    "SUCCEEDED": COMPLETED,
    "PARTIALLY_SUCCEEDED": COMPLETED,
    "CANCELLING": CANCELLING,
    "FAILED": FAILED,
    "CANCELLED": CANCELLED,
    "EXPIRED": EXPIRED,
}
# GenerateContentRequest fields that GenerateContentConfig carries (the SDK moves them
# back to the request when it builds the wire body), in both spellings the API takes
_CONFIG_FIELDS = frozenset({
    "systemInstruction", "system_instruction", "tools", "toolConfig", "tool_config",
    "safetySettings", "safety_settings", "cachedContent", "cached_content",
})
_GENERATION_CONFIG = ("generationConfig", "generation_config")
# google.rpc.Code names a request can fail with, and the HTTP status each stands for
_RPC = {
    1: ("CANCELLED", 499), 2: ("UNKNOWN", 500), 3: ("INVALID_ARGUMENT", 400), 4: ("DEADLINE_EXCEEDED", 504),
    5: ("NOT_FOUND", 404), 7: ("PERMISSION_DENIED", 403), 8: ("RESOURCE_EXHAUSTED", 429),
    9: ("FAILED_PRECONDITION", 400), 11: ("OUT_OF_RANGE", 400), 13: ("INTERNAL", 500), 14: ("UNAVAILABLE", 503),
    16: ("UNAUTHENTICATED", 401),
}


_TRANSPORT = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
"""What the SDK's HTTP client (aiohttp, when installed, as here) raises as is."""


def translate(exc: BaseException, *, creating: str | None = None, batch_id: str | None = None) -> ProviderError:
    """The typed error for an exception of google-genai (or of its HTTP client): the
    one place this SDK's errors are read. An error answer goes by its HTTP status
    (`APIError.code`), its message and Retry-After headers (`errors.classify_status`);
    anything else (a timeout, a broken connection) is transient."""
    source = type(exc).__name__
    if isinstance(exc, genai_errors.APIError) and isinstance(exc.code, int):
        headers = getattr(getattr(exc, "response", None), "headers", None)
        message = " ".join(str(p) for p in (exc.status, exc.message) if p) or source
        return classify_status(
            exc.code, message, kind=exc.status if isinstance(exc.status, str) else None,
            retry_after=retry_after_seconds(headers), creating=creating, batch_id=batch_id, source=source,
        )
    return ProviderTransient(str(exc) or source, source=source)


@contextmanager
def translated(*, creating: str | None = None, batch_id: str | None = None) -> Iterator[None]:
    """Raise the SDK's (and its HTTP client's) exceptions inside as `providers.errors`."""
    try:
        yield
    except ProviderError:
        raise
    except (genai_errors.APIError, *_TRANSPORT) as exc:
        raise translate(exc, creating=creating, batch_id=batch_id) from exc


def display_name(uid: str) -> str:
    """The batch's (and its uploaded file's) display name: how a crash is reconciled."""
    return f"{DISPLAY_PREFIX}{uid}"


def state_name(state: Any) -> str:
    """`JOB_STATE_SUCCEEDED` / `BATCH_STATE_SUCCEEDED` / an unknown enum -> `SUCCEEDED`."""
    name = str(getattr(state, "value", state) or "")
    for prefix in ("JOB_STATE_", "BATCH_STATE_"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def status_of(state: Any) -> str:
    return _STATES.get(state_name(state), UNKNOWN)


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _remote(job: types.BatchJob) -> RemoteBatch:
    status = status_of(job.state)
    created = _ts(job.create_time) or 0.0
    ended = _ts(job.end_time) or (_ts(job.update_time) if status in ENDED else None)
    dest = job.dest
    name = job.display_name or ""
    error = job.error.message if job.error is not None and job.error.message else None
    # the only counts the SDK lets through: an ended inline batch's responses
    inline = (dest.inlined_responses if dest is not None else None) or []
    failed = sum(1 for r in inline if r.error is not None or r.response is None)
    return RemoteBatch(
        id=job.name or "",
        status=status,
        total=len(inline),
        succeeded=len(inline) - failed,
        failed=failed,
        created_at=created,
        ended_at=ended,
        output_file_id=dest.file_name if dest is not None else None,
        submission_uid=name[len(DISPLAY_PREFIX):] if name.startswith(DISPLAY_PREFIX) else None,
        error=error if status == FAILED else None,
    )


def _count(value: Any) -> int:
    """A token count from untrusted usage: a non-negative int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _field(obj: dict[str, Any], camel: str, snake: str) -> Any:
    return obj.get(camel, obj.get(snake))


def usage_tokens(usage: Any) -> tuple[int, int, int]:
    """(input, cached input, output), disjoint, from a `usageMetadata`.

    `promptTokenCount` includes the cached content (`cachedContentTokenCount`), so
    fresh input is their difference; thoughts are billed as output, beside the
    candidates; tool-use prompt tokens are input the model read.
    """
    u = usage if isinstance(usage, dict) else {}
    prompt = _count(_field(u, "promptTokenCount", "prompt_token_count"))
    cached = min(_count(_field(u, "cachedContentTokenCount", "cached_content_token_count")), prompt)
    tool = _count(_field(u, "toolUsePromptTokenCount", "tool_use_prompt_token_count"))
    output = _count(_field(u, "candidatesTokenCount", "candidates_token_count")) + _count(
        _field(u, "thoughtsTokenCount", "thoughts_token_count")
    )
    return prompt - cached + tool, cached, output


def parse_result_line(raw: str) -> ResultLine:
    """One result, `{"key", "response": GenerateContentResponse}` or `{"key", "error":
    Status}` (the output file's lines, and the inline responses as `_inline_line`
    writes them)."""
    obj = load_line(raw)
    key = obj.get(KEY)
    if key is None and isinstance(obj.get("metadata"), dict):
        key = obj["metadata"].get(KEY)
    error = obj.get("error")
    response = obj.get("response")
    if isinstance(error, dict) and error:
        code = error.get("code")
        code = code if isinstance(code, int) and not isinstance(code, bool) else None
        status_name = error.get("status") if isinstance(error.get("status"), str) else None
        message = error.get("message") if isinstance(error.get("message"), str) else ""
        # a google.rpc.Code (3) in the output file, an HTTP status (400) where one is echoed
        rpc_name, http = _RPC.get(code, (None, None)) if code is not None and code < 100 else (None, code)
        status_name = status_name or rpc_name
        label = status_name or (f"code_{code}" if code is not None else "error")
        return ResultLine(key, ERRORED, raw, f"{label}: {message}", label, status_code=http, error_type=status_name)
    if not isinstance(response, dict):
        return ResultLine(key, ERRORED, raw, "no_response: the line has neither a response nor an error", "no_response")
    i, c, o = usage_tokens(_field(response, "usageMetadata", "usage_metadata"))
    candidates = response.get("candidates")
    if not candidates:  # blocked prompt: a response, billed for its prompt, with no answer
        feedback = _field(response, "promptFeedback", "prompt_feedback") or {}
        reason = _field(feedback, "blockReason", "block_reason") if isinstance(feedback, dict) else None
        code = str(reason or "no_candidates")
        return ResultLine(key, ERRORED, raw, f"{code}: the prompt got no candidate", code, i, c, 0, o, status_code=400)
    return ResultLine(key, SUCCEEDED, raw, None, None, i, c, 0, o)


def _inline_request(obj: dict[str, Any]) -> types.InlinedRequest | None:
    """A stored line as the SDK's inline request, or None when it has a field the
    inline type has no place for (it then goes in a file, as written)."""
    request = dict(obj.get("request") or {})
    contents = request.pop("contents", None)
    request.pop("model", None)
    config: dict[str, Any] = {}
    for name in _GENERATION_CONFIG:
        generation = request.pop(name, None)
        if isinstance(generation, dict):
            config.update(generation)
    for name in list(request):
        if name in _CONFIG_FIELDS:
            config[name] = request.pop(name)
    if request:
        return None
    try:
        return types.InlinedRequest(
            contents=contents,
            metadata={KEY: obj[KEY]},
            config=types.GenerateContentConfig.model_validate(config) if config else None,
        )
    except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
        return None


def _inline_line(item: types.InlinedResponse) -> bytes:
    """An inline response as one result line, in the output file's shape."""
    line: dict[str, Any] = {KEY: (item.metadata or {}).get(KEY)}
    if item.error is not None:
        line["error"] = item.error.model_dump(mode="json", by_alias=True, exclude_none=True)
    elif item.response is not None:
        line["response"] = item.response.model_dump(mode="json", by_alias=True, exclude_none=True)
    return orjson.dumps(line) + b"\n"


class _QueueSink:
    """A download destination whose `write` waits while the reader is behind."""

    def __init__(self, queue: asyncio.Queue[bytes]) -> None:
        self.queue = queue

    async def write(self, chunk: bytes) -> None:
        await self.queue.put(bytes(chunk))


class GeminiBatches(ProviderAdapter):
    """The provider adapter for Gemini Batch Mode (Gemini Developer API)."""

    provider = GEMINI
    page_size = PAGE

    def __init__(self, client: genai.Client, account: str = "default") -> None:
        self.client = client
        self.account = account
        self.list_calls = 0

    # -- listing ------------------------------------------------------------------

    async def _pages(self) -> AsyncIterator[list[types.BatchJob]]:
        """The listing's pages (`batches.list` pages by `pageToken`); untranslated."""
        pager = await self.client.aio.batches.list(config=types.ListBatchJobsConfig(page_size=PAGE))
        self.list_calls += 1
        while True:
            yield list(pager.page)
            if not pager.config.get("page_token"):
                return
            await pager.next_page()
            self.list_calls += 1

    @staticmethod
    def _past(items: list[types.BatchJob], oldest: float) -> bool:
        """The page ends before `oldest` and is newest first (the order is not
        documented: a page in any other order never stops the listing early)."""
        times = [_ts(b.create_time) or 0.0 for b in items]
        return bool(times) and times == sorted(times, reverse=True) and times[-1] < oldest - SKEW

    async def list_recent(self, oldest: float, wanted: set[str]) -> tuple[dict[str, RemoteBatch], int]:
        seen: dict[str, RemoteBatch] = {}
        before = self.list_calls
        missing = set(wanted)
        with translated():
            async for items in self._pages():
                for job in items:
                    if job.name in missing:
                        seen[job.name] = _remote(job)
                        missing.discard(job.name)
                if not missing or not items or self._past(items, oldest):
                    break
        return seen, self.list_calls - before

    async def probe(self) -> None:
        with translated():
            await self.client.aio.batches.list(config=types.ListBatchJobsConfig(page_size=1))

    # -- create -------------------------------------------------------------------

    async def submit(self, uid: str, endpoint: str, lines: list[bytes]) -> RemoteBatch:
        """Inline requests when the batch is small enough and every request fits the
        SDK's inline type; an uploaded JSONL file otherwise. Our uid is the display
        name of both, which is what `find_submission` looks for after a crash."""
        objs = [load_line(line) for line in lines]
        model = objs[0]["model"]
        config = types.CreateBatchJobConfig(display_name=display_name(uid))
        inline: list[types.InlinedRequest] | None = None
        if sum(len(line) for line in lines) <= GEMINI_INLINE_MAX_BYTES:
            converted = [_inline_request(o) for o in objs]
            if all(r is not None for r in converted):
                inline = cast(list[types.InlinedRequest], converted)
        if inline is not None and self._buildable(model, inline, config):
            with translated(creating="create"):
                job = await self.client.aio.batches.create(model=model, src=cast(Any, inline), config=config)
            return _remote(job)
        name = await self._upload(uid, objs)
        try:
            with translated(creating="create"):
                job = await self.client.aio.batches.create(model=model, src=name, config=config)
        except ProviderError as exc:
            if isinstance(exc, ProviderTransient):
                raise  # the batch may exist: find_submission settles it, and keeps the file
            await self._delete_file(name)
            raise
        return _remote(job)

    def _buildable(self, model: str, inline: list[types.InlinedRequest], config: types.CreateBatchJobConfig) -> bool:
        """Whether the SDK builds the inline create's body (it refuses config fields the
        Gemini API lacks, such as `labels`). Asked before the call, never by catching its
        ValueError: the SDK raises one for an answer it cannot read too, after the batch
        was created, and sending the requests again as a file would submit them twice.
        Uses the SDK's own converter; should it move, every batch goes as a file."""
        try:
            from google.genai import _transformers
            from google.genai import batches as sdk_batches

            params = types._CreateBatchJobParameters(
                model=model, src=_transformers.t_batch_job_source(self.client._api_client, cast(Any, inline)), config=config
            )
            sdk_batches._CreateBatchJobParameters_to_mldev(self.client._api_client, params)
        except Exception:  # noqa: BLE001 - any refusal to build means: send it as a file
            return False
        return True

    async def _upload(self, uid: str, objs: list[dict[str, Any]]) -> str:
        """The requests as a JSONL file, in Batch Mode's own line shape, uploaded by the
        SDK's resumable protocol."""
        data = b"".join(orjson.dumps({KEY: o[KEY], "request": o["request"]}) + b"\n" for o in objs)
        with translated(creating="upload"):
            uploaded = await self.client.aio.files.upload(
                file=io.BytesIO(data),
                config=types.UploadFileConfig(display_name=display_name(uid), mime_type="jsonl"),
            )
        if not uploaded.name:
            raise ProviderTransient("the upload answered without a file name", source="GeminiBatches")
        return uploaded.name

    async def _delete_file(self, name: str) -> None:
        try:
            with translated(batch_id=name):
                await self.client.aio.files.delete(name=name)
        except ProviderNotFound:
            pass

    async def find_submission(self, uid: str, created_at: float, total: int, owned: set[str]) -> list[RemoteBatch]:
        """Batches whose display name carries our submission id; an upload left
        without a batch (killed between upload and create) is deleted."""
        found: list[RemoteBatch] = []
        wanted = display_name(uid)
        with translated():
            async for items in self._pages():
                found += [_remote(b) for b in items if b.display_name == wanted and b.name not in owned]
                if not items or self._past(items, created_at):
                    break
            if found:
                return found
            orphans: list[str] = []
            pager = await self.client.aio.files.list(config=types.ListFilesConfig(page_size=100))
            async for f in pager:
                if f.display_name == wanted and f.name:
                    orphans.append(f.name)
                if (_ts(f.create_time) or created_at) < created_at - SKEW:
                    break
        for name in orphans:
            await self._delete_file(name)
        return found

    # -- one batch ----------------------------------------------------------------

    async def retrieve(self, batch_id: str) -> RemoteBatch:
        with translated(batch_id=batch_id):
            return _remote(await self.client.aio.batches.get(name=batch_id))

    async def cancel(self, batch_id: str) -> RemoteBatch:
        try:
            with translated(batch_id=batch_id):
                await self.client.aio.batches.cancel(name=batch_id)
        except ProviderRefused as exc:
            if exc.status_code not in (400, 409):
                raise  # 400/409: it ended meanwhile, and is returned as it is now
        return await self.retrieve(batch_id)

    async def delete(self, batch_id: str) -> None:
        """Delete an ended batch at the provider (its results go with it).

        Raises:
            ProviderNotFound: the provider does not know the batch.
            ProviderRefused: it has not ended.
        """
        with translated(batch_id=batch_id):
            await self.client.aio.batches.delete(name=batch_id)

    # -- results ------------------------------------------------------------------

    def results(
        self, batch: RemoteBatch, start: Position = START, max_line: int = DEFAULT_MAX_LINE
    ) -> AsyncIterator[ResultItem]:
        """The output file (file input) or the inline responses (inline input), from
        `start` on, in bounded lines (`providers.streaming`)."""
        opener = (
            partial(self._file_bytes, batch.id, batch.output_file_id)
            if batch.output_file_id
            else partial(self._inline_bytes, batch.id)
        )
        return result_items([(0, opener)], parse_result_line, start, max_line)

    async def _inline_bytes(self, batch_id: str) -> AsyncGenerator[bytes, None]:
        with translated(batch_id=batch_id):
            job = await self.client.aio.batches.get(name=batch_id)
        dest = job.dest
        if dest is not None and dest.file_name:  # listed before its output was known
            async for chunk in self._file_bytes(batch_id, dest.file_name):
                yield chunk
            return
        for item in (dest.inlined_responses if dest is not None else None) or []:
            yield _inline_line(item)

    async def _file_bytes(self, batch_id: str, file_name: str) -> AsyncGenerator[bytes, None]:
        """The file's bytes as the SDK downloads them, never more than a few chunks
        ahead of the reader; the download stops when the reader does."""
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=DOWNLOAD_QUEUE)
        sink = _QueueSink(queue)
        task = asyncio.ensure_future(self.client.aio.files.download(file=file_name, destination=cast(Any, sink)))
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                    continue
                getter.cancel()
                while not queue.empty():
                    yield queue.get_nowait()
                try:
                    with translated(batch_id=batch_id):
                        task.result()
                except ProviderNotFound as exc:  # deleted, or expired: what it held is gone
                    raise ProviderNotFound(
                        batch_id, f"404 for its result file {file_name} ({exc.detail})", source=exc.source
                    ) from exc
                return
        finally:
            if not task.done():
                task.cancel()
                # the reader stopped: why the download then ended no longer matters
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def close(self) -> None:
        await self.client.aio.aclose()
