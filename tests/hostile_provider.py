"""A hostile provider for the hardening tests: the OpenAI Files + Batches routes and
the Anthropic Message Batches routes, well enough for the real SDKs, answering with
the shapes a hostile or broken provider (or anything at a configured base URL) can
send.

The simulator in `batchtop.sim` is a faithful provider; this one is not. Every batch
ends at once; its results are the honest lines for what was submitted, wrapped in the
`shape` chosen in `HostileConfig` (which tests may change while the server runs):

- ``ok``: the honest lines only;
- ``endless``: the honest lines, then lines for custom_ids we never sent, forever;
- ``huge_line``: a single line of `huge_line_bytes` bytes first, streamed in chunks;
- ``endless_line``: one line that never ends (no newline, ever);
- ``bad_first``: ``{"custom_id": [..]}`` first, which parses but has no usable id;
- ``truncated``: a line cut off in the middle of its JSON, before the honest lines;
- ``escapes``: terminal escapes and Rich markup in batch ids, error text and custom_ids.

`slow_upload_s` / `slow_create_s` hold the upload and the batch create that long
before answering (a slow network mount or provider); `trickle_s` sleeps between
chunks of a results stream. Counters record what was created, so a test can prove
the provider received a submission twice.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

SHAPES = ("ok", "endless", "huge_line", "endless_line", "bad_first", "truncated", "escapes", "broken")
ESC_ID = "\x1b]0;pwned\x07\x1b[2J[/]"
"""Window title, clear screen and a Rich closing tag: what an id must never do on screen."""
CHUNK = 64 * 1024


@dataclass
class HostileConfig:
    shape: str = "ok"
    huge_line_bytes: int = 64 * 1024 * 1024
    slow_upload_s: float = 0.0
    slow_create_s: float = 0.0
    trickle_s: float = 0.0
    endless_lines_per_chunk: int = 50


@dataclass
class _Batch:
    id: str
    provider: str
    created: float
    custom_ids: list[str]
    metadata: dict[str, str] | None = None
    endpoint: str = "/v1/chat/completions"
    input_file_id: str = ""
    output_file_id: str | None = None
    cancelled: bool = False


@dataclass
class HostileState:
    files: dict[str, bytes] = field(default_factory=dict)
    file_meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, _Batch] = field(default_factory=dict)
    creates_by_uid: Counter[str] = field(default_factory=Counter)
    """How many OpenAI batches were created per submission uid (metadata)."""
    submissions: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(provider, custom_id) -> how many batches carried it."""
    result_bytes_sent: int = 0
    uploads_started: int = 0
    """Uploads (OpenAI files, Anthropic creates) whose request has arrived."""
    downloads: Counter[str] = field(default_factory=Counter)
    """batch id -> how many times its results were requested."""
    seq: itertools.count = field(default_factory=lambda: itertools.count(1))


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _openai_line(cid: str, shape: str) -> bytes:
    if shape == "escapes":
        return json.dumps({
            "id": f"batch_req_{cid}", "custom_id": cid, "response": None,
            "error": {"code": "server_error\x1b[31m", "message": f"failed {ESC_ID}"},
        }).encode() + b"\n"
    body = {
        "id": f"chatcmpl-{cid}", "object": "chat.completion", "created": int(time.time()), "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"reply to {cid}"},
                     "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    return json.dumps({
        "id": f"batch_req_{cid}", "custom_id": cid,
        "response": {"status_code": 200, "request_id": f"req_{cid}", "body": body}, "error": None,
    }).encode() + b"\n"


def _anthropic_line(cid: str, shape: str) -> bytes:
    if shape == "escapes":
        result: dict[str, Any] = {"type": "errored", "error": {"type": "error", "error": {
            "type": "api_error", "message": f"failed {ESC_ID}"}}}
    else:
        result = {"type": "succeeded", "message": {
            "id": f"msg_{cid}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
            "content": [{"type": "text", "text": f"reply to {cid}"}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 10, "output_tokens": 5}}}
    return json.dumps({"custom_id": cid, "result": result}).encode() + b"\n"


class HostileProvider:
    """Serve from a daemon thread on 127.0.0.1; `openai_base_url` / `anthropic_base_url`
    go into the SDKs' base-URL variables."""

    def __init__(self, config: HostileConfig | None = None) -> None:
        self.config = config or HostileConfig()
        self.state = HostileState()
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- addresses -----------------------------------------------------------------
    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- result streams --------------------------------------------------------------
    def _result_chunks(self, batch: _Batch):  # type: ignore[no-untyped-def]
        """The result file as a generator of byte chunks, in the configured shape."""
        shape = self.config.shape
        line = _openai_line if batch.provider == "openai" else _anthropic_line
        if shape == "huge_line":
            yield b'{"custom_id": "' + b"x" * 16
            left = self.config.huge_line_bytes
            filler = b"y" * CHUNK
            while left > 0:
                yield filler[: min(left, CHUNK)]
                left -= CHUNK
            yield b'"}\n'
        elif shape == "endless_line":
            yield b'{"custom_id": "'
            filler = b"z" * CHUNK
            while True:
                yield filler
        elif shape == "bad_first":
            yield b'{"custom_id": [1, 2, 3], "response": {"status_code": 200, "body": {}}}\n'
        elif shape == "truncated":
            yield b'{"custom_id": "' + batch.custom_ids[0].encode() + b'", "response": {"status_co\n'
        elif shape == "broken":  # the connection dies a line into the file: the download fails
            yield line(batch.custom_ids[0], "ok")
            raise RuntimeError("hostile: the connection is dropped mid-file")
        for cid in batch.custom_ids:
            yield line(cid, shape)
        if shape == "endless":
            for n in itertools.count():
                yield b"".join(line(f"ghost-{n}-{i}", "ok") for i in range(self.config.endless_lines_per_chunk))

    async def _stream(self, request: web.Request, batch: _Batch) -> web.StreamResponse:
        self.state.downloads[batch.id] += 1
        response = web.StreamResponse(status=200)
        response.content_type = "application/octet-stream" if batch.provider == "openai" else "application/binary"
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for chunk in self._result_chunks(batch):
                await response.write(chunk)
                self.state.result_bytes_sent += len(chunk)
                await asyncio.sleep(self.config.trickle_s)
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    # -- OpenAI ----------------------------------------------------------------------
    def _openai_batch(self, b: _Batch) -> dict[str, Any]:
        n = len(b.custom_ids)
        ended = int(b.created) + 1
        esc = self.config.shape == "escapes"
        return {
            "id": b.id, "object": "batch", "endpoint": b.endpoint, "errors": None,
            "input_file_id": b.input_file_id, "completion_window": "24h",
            "status": "cancelled" if b.cancelled else "completed",
            "output_file_id": b.output_file_id, "error_file_id": None,
            "created_at": int(b.created), "in_progress_at": int(b.created), "expires_at": int(b.created) + 86400,
            "finalizing_at": ended, "completed_at": None if b.cancelled else ended, "failed_at": None,
            "expired_at": None, "cancelling_at": None, "cancelled_at": ended if b.cancelled else None,
            "request_counts": {"total": n, "completed": 0 if esc else n, "failed": n if esc else 0},
            "metadata": b.metadata,
        }

    async def _files_create(self, request: web.Request) -> web.Response:
        self.state.uploads_started += 1
        reader = await request.multipart()
        content, filename, purpose = b"", "upload", "batch"
        async for part in reader:
            if part.name == "file":
                filename = part.filename or filename
                content = bytes(await part.read())
            elif part.name == "purpose":
                purpose = await part.text()
        await asyncio.sleep(self.config.slow_upload_s)
        fid = f"file-{next(self.state.seq)}"
        self.state.files[fid] = content
        meta = {"id": fid, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                "filename": filename, "purpose": purpose, "status": "processed", "status_details": None}
        self.state.file_meta[fid] = meta
        return web.json_response(meta)

    async def _files_list(self, request: web.Request) -> web.Response:
        data = sorted(self.state.file_meta.values(), key=lambda m: -m["created_at"])
        return web.json_response({"object": "list", "data": data, "has_more": False,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})

    async def _files_delete(self, request: web.Request) -> web.Response:
        fid = request.match_info["file_id"]
        self.state.files.pop(fid, None)
        self.state.file_meta.pop(fid, None)
        return web.json_response({"id": fid, "object": "file", "deleted": True})

    async def _files_content(self, request: web.Request) -> web.StreamResponse:
        fid = request.match_info["file_id"]
        batch = next((b for b in self.state.batches.values() if b.output_file_id == fid), None)
        if batch is None:
            return web.json_response({"error": {"message": "No such file", "type": "invalid_request_error"}}, status=404)
        return await self._stream(request, batch)

    async def _batches_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(self.config.slow_create_s)
        content = self.state.files.get(body["input_file_id"], b"")
        cids = [json.loads(line)["custom_id"] for line in content.splitlines() if line.strip()]
        n = next(self.state.seq)
        bid = f"batch_{n}" + (ESC_ID if self.config.shape == "escapes" else "")
        batch = _Batch(bid, "openai", time.time(), cids, body.get("metadata"), body.get("endpoint", ""),
                       body["input_file_id"], output_file_id=f"file-out-{n}")
        self.state.batches[bid] = batch
        uid = (batch.metadata or {}).get("batchtop_submission")
        if uid:
            self.state.creates_by_uid[uid] += 1
        for cid in cids:
            self.state.submissions[("openai", cid)] += 1
        return web.json_response(self._openai_batch(batch))

    def _of(self, provider: str) -> list[_Batch]:
        return sorted((b for b in self.state.batches.values() if b.provider == provider),
                      key=lambda b: (-b.created, b.id))

    async def _batches_list(self, request: web.Request) -> web.Response:
        data = [self._openai_batch(b) for b in self._of("openai")]
        return web.json_response({"object": "list", "data": data, "has_more": False,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})

    def _get(self, request: web.Request) -> _Batch:
        batch = self.state.batches.get(request.match_info["batch_id"])
        if batch is None:
            raise web.HTTPNotFound(text=json.dumps({"error": {"message": "not found", "type": "not_found_error"}}),
                                   content_type="application/json")
        return batch

    async def _batches_retrieve(self, request: web.Request) -> web.Response:
        return web.json_response(self._openai_batch(self._get(request)))

    async def _batches_cancel(self, request: web.Request) -> web.Response:
        batch = self._get(request)
        batch.cancelled = True
        return web.json_response(self._openai_batch(batch))

    # -- Anthropic -------------------------------------------------------------------
    def _anthropic_batch(self, request: web.Request, b: _Batch) -> dict[str, Any]:
        n = len(b.custom_ids)
        esc = self.config.shape == "escapes"
        return {
            "id": b.id, "type": "message_batch", "processing_status": "ended",
            "request_counts": {"processing": 0, "succeeded": 0 if esc else n, "errored": n if esc else 0,
                               "canceled": 0, "expired": 0},
            "ended_at": _iso(b.created + 1), "created_at": _iso(b.created), "expires_at": _iso(b.created + 86400),
            "archived_at": None, "cancel_initiated_at": _iso(b.created) if b.cancelled else None,
            "results_url": f"http://{request.host}/v1/messages/batches/{quote(b.id, safe='')}/results",
        }

    async def _messages_batches_create(self, request: web.Request) -> web.Response:
        self.state.uploads_started += 1
        body = await request.json()
        await asyncio.sleep(self.config.slow_upload_s + self.config.slow_create_s)
        cids = [r["custom_id"] for r in body.get("requests", [])]
        n = next(self.state.seq)
        bid = f"msgbatch_{n:024d}" + (ESC_ID if self.config.shape == "escapes" else "")
        batch = _Batch(bid, "anthropic", time.time(), cids)
        self.state.batches[bid] = batch
        for cid in cids:
            self.state.submissions[("anthropic", cid)] += 1
        return web.json_response(self._anthropic_batch(request, batch))

    async def _messages_batches_list(self, request: web.Request) -> web.Response:
        data = [self._anthropic_batch(request, b) for b in self._of("anthropic")]
        return web.json_response({"data": data, "has_more": False,
                                  "first_id": data[0]["id"] if data else None,
                                  "last_id": data[-1]["id"] if data else None})

    async def _messages_batches_retrieve(self, request: web.Request) -> web.Response:
        return web.json_response(self._anthropic_batch(request, self._get(request)))

    async def _messages_batches_cancel(self, request: web.Request) -> web.Response:
        batch = self._get(request)
        batch.cancelled = True
        return web.json_response(self._anthropic_batch(request, batch))

    async def _messages_batches_results(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, self._get(request))

    # -- lifecycle -------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.add_routes([
            web.post("/v1/files", self._files_create),
            web.get("/v1/files", self._files_list),
            web.delete("/v1/files/{file_id}", self._files_delete),
            web.get("/v1/files/{file_id}/content", self._files_content),
            web.post("/v1/batches", self._batches_create),
            web.get("/v1/batches", self._batches_list),
            web.get("/v1/batches/{batch_id}", self._batches_retrieve),
            web.post("/v1/batches/{batch_id}/cancel", self._batches_cancel),
            web.post("/v1/messages/batches", self._messages_batches_create),
            web.get("/v1/messages/batches", self._messages_batches_list),
            web.get("/v1/messages/batches/{batch_id}", self._messages_batches_retrieve),
            web.post("/v1/messages/batches/{batch_id}/cancel", self._messages_batches_cancel),
            web.get("/v1/messages/batches/{batch_id}/results", self._messages_batches_results),
        ])
        return app

    def start(self) -> HostileProvider:
        ready = threading.Event()

        async def serve() -> None:
            self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=0.5)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = self._runner.addresses[0][1]

        def run() -> None:
            loop = self._loop = asyncio.new_event_loop()
            loop.run_until_complete(serve())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())  # type: ignore[union-attr]
            loop.close()

        self._thread = threading.Thread(target=run, name="hostile-provider", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._thread = self._loop = None


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileProvider]:
    """A hostile provider on 127.0.0.1, and the SDK variables pointing at it."""
    server = HostileProvider().start()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-hostile-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-hostile-test")
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
    try:
        yield server
    finally:
        server.stop()
