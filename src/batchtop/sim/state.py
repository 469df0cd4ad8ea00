"""All simulator state behind one lock: files, batches, counters, request log.

The HTTP handlers run on the server's event loop while tests read the same
state from their own thread, hence the lock. Batches are refreshed lazily:
the first time a batch is seen ended, its OpenAI result files are written.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .anthropic_state import AnthropicBatch, processing_status
from .clock import Clock
from .config import SimConfig
from .gemini_state import (
    GeminiBatch,
    GeminiFile,
    Upload,
    parse_inline_requests,
    parse_input_file,
)
from .ids import IdMaker
from .lifecycle import FAILED, RUNNING, TERMINAL, Progress
from .openai_state import DEFAULT_FILE_TTL_S, FileRecord, OpenAIBatch
from .outcomes import BAD_REQUEST, decide
from .parsing import SimRequest
from .replay import recorded_outcome, replayed
from .scripted import scripted

OPENAI = "openai"
ANTHROPIC = "anthropic"
GEMINI = "gemini"

T = TypeVar("T")


@dataclass(frozen=True)
class LogRecord:
    """One HTTP request as the simulator saw it."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    provider: str
    retry_count: int | None = None
    """The ``x-stainless-retry-count`` header (0 on a first attempt)."""
    fault: bool = False
    """True if the response was an injected 429/500."""
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    at: float = 0.0


class StateError(Exception):
    """A request the API would refuse; the routes render it in the provider's shape."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


def page(items: Sequence[T], limit: int) -> tuple[list[T], bool]:
    """First ``limit`` items and whether more remain."""
    return list(items[:limit]), len(items) > limit


class SimState:
    """The simulator's data; every public method takes the lock."""

    def __init__(self, config: Callable[[], SimConfig], clock: Clock) -> None:
        self._config = config
        self.clock = clock
        self.lock = threading.RLock()
        self.ids = IdMaker()
        self.files: dict[str, FileRecord] = {}
        self.openai_batches: dict[str, OpenAIBatch] = {}
        self.anthropic_batches: dict[str, AnthropicBatch] = {}
        self.gemini_batches: dict[str, GeminiBatch] = {}
        self.gemini_files: dict[str, GeminiFile] = {}
        self.gemini_uploads: dict[str, Upload] = {}
        self.submissions: Counter[tuple[str, str]] = Counter()
        self.log: list[LogRecord] = []

    # ------------------------------------------------------------ common

    def record(self, entry: LogRecord) -> None:
        with self.lock:
            self.log.append(entry)

    def _outcomes(self, provider: str, cfg: SimConfig, requests: list[SimRequest]) -> list[int]:
        """Count the submission of every custom_id and decide each request's fate."""
        outcomes = []
        for request in requests:
            self.submissions[(provider, request.custom_id)] += 1
            attempt = self.submissions[(provider, request.custom_id)]
            recorded = replayed(cfg.replay, request.custom_id)
            if recorded is not None:
                outcomes.append(recorded_outcome(provider, recorded))
                continue
            script = scripted(cfg.scripted_errors, request.custom_id)
            if script is not None:
                outcomes.append(script.status)
                continue
            outcomes.append(BAD_REQUEST if request.problem else decide(cfg, request.custom_id, attempt))
        return outcomes

    # ------------------------------------------------------------ OpenAI files

    def add_file(self, filename: str, purpose: str, content: bytes, ttl_s: int | None = None) -> dict[str, Any]:
        with self.lock:
            file_id, seq = self.ids.make("file-")
            now = int(self.clock.now())
            if ttl_s is None and purpose == "batch":
                ttl_s = DEFAULT_FILE_TTL_S
            record = FileRecord(file_id, seq, now, filename, purpose, content, None if ttl_s is None else now + ttl_s)
            self.files[file_id] = record
            return record.to_json()

    def get_file(self, file_id: str) -> FileRecord:
        with self.lock:
            record = self.files.get(file_id)
            if record is None:
                raise StateError(404, f"No such File object: {file_id}", param="id")
            return record

    def list_files(self, *, purpose: str | None, after: int | None, limit: int, ascending: bool) -> tuple[list[dict[str, Any]], bool]:
        with self.lock:
            items = sorted(self.files.values(), key=lambda f: f.seq, reverse=not ascending)
            if purpose:
                items = [f for f in items if f.purpose == purpose]
            if after is not None:
                items = [f for f in items if (f.seq > after if ascending else f.seq < after)]
            chosen, more = page(items, limit)
            return [f.to_json() for f in chosen], more

    def delete_file(self, file_id: str) -> None:
        with self.lock:
            if self.files.pop(file_id, None) is None:
                raise StateError(404, f"No such File object: {file_id}", param="id")

    # ------------------------------------------------------------ OpenAI batches

    def create_openai_batch(
        self,
        *,
        endpoint: str,
        input_file_id: str,
        completion_window: str,
        metadata: dict[str, str] | None,
        output_ttl_s: int | None,
        requests: list[SimRequest],
        errors: list[dict[str, Any]],
    ) -> dict[str, Any]:
        with self.lock:
            live = self._config()
            if live.token_limit_batches > 0 and not errors:
                live.token_limit_batches -= 1
                errors = [{
                    "code": "token_limit_exceeded",
                    "message": "Enqueued token limit reached for this model in organization sim. "
                    "Please try again once some in_progress batches have been completed.",
                    "param": None,
                    "line": None,
                }]
            cfg = live.copy()
            batch_id, seq = self.ids.make("batch_")
            batch = OpenAIBatch(
                id=batch_id, seq=seq, created=self.clock.now(), endpoint=endpoint,
                input_file_id=input_file_id, completion_window=completion_window, metadata=metadata,
                cfg=cfg, requests=requests, outcomes=self._outcomes(OPENAI, cfg, requests),
                errors=errors, output_ttl_s=output_ttl_s,
            )
            self.openai_batches[batch_id] = batch
            return batch.to_json(self._refresh_openai(batch))

    def _refresh_openai(self, batch: OpenAIBatch) -> Progress:
        """Current progress; writes the result files the first time the batch is seen ended."""
        p = batch.progress(self.clock.now())
        if p.phase in TERMINAL and not batch.finished:
            batch.finished = True
            if p.phase != FAILED:
                out, err = batch.build_result_files(p)
                created = int(p.ended_at or self.clock.now())
                expires = None if batch.output_ttl_s is None else created + batch.output_ttl_s
                for content, kind in ((out, "output"), (err, "error")):
                    if not content:
                        continue
                    file_id, seq = self.ids.make("file-")
                    self.files[file_id] = FileRecord(
                        file_id, seq, created, f"{batch.id}_{kind}.jsonl", "batch_output", content, expires
                    )
                    if kind == "output":
                        batch.output_file_id = file_id
                    else:
                        batch.error_file_id = file_id
        return p

    def _openai_batch(self, batch_id: str) -> OpenAIBatch:
        batch = self.openai_batches.get(batch_id)
        if batch is None:
            raise StateError(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        return batch

    def get_openai_batch(self, batch_id: str) -> dict[str, Any]:
        with self.lock:
            batch = self._openai_batch(batch_id)
            return batch.to_json(self._refresh_openai(batch))

    def list_openai_batches(self, *, after: int | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        with self.lock:
            items = sorted(self.openai_batches.values(), key=lambda b: b.seq, reverse=True)
            if after is not None:
                items = [b for b in items if b.seq < after]
            chosen, more = page(items, limit)
            return [b.to_json(self._refresh_openai(b)) for b in chosen], more

    def cancel_openai_batch(self, batch_id: str) -> dict[str, Any]:
        with self.lock:
            batch = self._openai_batch(batch_id)
            p = self._refresh_openai(batch)
            if p.phase in TERMINAL:
                raise StateError(400, f"Cannot cancel a batch with status '{p.phase}'.")
            if batch.cancel_at is None:
                batch.cancel_at = self.clock.now()
            return batch.to_json(self._refresh_openai(batch))

    # ------------------------------------------------------------ Anthropic batches

    def create_anthropic_batch(self, requests: list[SimRequest], origin: str) -> dict[str, Any]:
        with self.lock:
            cfg = self._config().copy()
            batch_id, seq = self.ids.make("msgbatch_")
            batch = AnthropicBatch(
                id=batch_id, seq=seq, created=self.clock.now(), cfg=cfg,
                requests=requests, outcomes=self._outcomes(ANTHROPIC, cfg, requests),
            )
            self.anthropic_batches[batch_id] = batch
            return batch.to_json(batch.progress(self.clock.now()), origin)

    def _anthropic_batch(self, batch_id: str) -> AnthropicBatch:
        batch = self.anthropic_batches.get(batch_id)
        if batch is None:
            raise StateError(404, f"No message batch found with id '{batch_id}'.")
        return batch

    def get_anthropic_batch(self, batch_id: str, origin: str) -> dict[str, Any]:
        with self.lock:
            batch = self._anthropic_batch(batch_id)
            return batch.to_json(batch.progress(self.clock.now()), origin)

    def list_anthropic_batches(
        self, *, after: int | None, before: int | None, limit: int, origin: str
    ) -> tuple[list[dict[str, Any]], bool]:
        """Newest first; ``before`` gives the ``limit`` batches just newer than the cursor."""
        with self.lock:
            items = sorted(self.anthropic_batches.values(), key=lambda b: b.seq, reverse=True)
            if after is not None:
                items = [b for b in items if b.seq < after]
            if before is not None:
                newer = [b for b in items if b.seq > before]
                chosen, more = newer[-limit:], len(newer) > limit
            else:
                chosen, more = page(items, limit)
            now = self.clock.now()
            return [b.to_json(b.progress(now), origin) for b in chosen], more

    def cancel_anthropic_batch(self, batch_id: str, origin: str) -> dict[str, Any]:
        with self.lock:
            batch = self._anthropic_batch(batch_id)
            p = batch.progress(self.clock.now())
            if p.phase in TERMINAL:
                raise StateError(400, f"Message batch '{batch_id}' has already ended and cannot be canceled.")
            if batch.cancel_at is None:
                batch.cancel_at = self.clock.now()
            return batch.to_json(batch.progress(self.clock.now()), origin)

    def delete_anthropic_batch(self, batch_id: str) -> None:
        with self.lock:
            batch = self._anthropic_batch(batch_id)
            if batch.progress(self.clock.now()).phase not in TERMINAL:
                raise StateError(
                    400, f"Message batch '{batch_id}' is still processing; cancel it and wait for it to end first."
                )
            del self.anthropic_batches[batch_id]

    def anthropic_results(self, batch_id: str) -> Iterator[bytes]:
        with self.lock:
            batch = self._anthropic_batch(batch_id)
            p = batch.progress(self.clock.now())
            if p.phase not in TERMINAL:
                raise StateError(400, f"Message batch '{batch_id}' has not ended; results are not available yet.")
            return batch.iter_results(p)

    # ------------------------------------------------------------ Gemini files

    def gemini_start_upload(self, display_name: str | None, mime_type: str, size: int) -> str:
        """Open a resumable upload session; returns its upload id."""
        with self.lock:
            upload_id, _ = self.ids.make("upload-")
            self.gemini_uploads[upload_id] = Upload(display_name, mime_type, size)
            return upload_id

    def gemini_upload_chunk(self, upload_id: str, offset: int, data: bytes, finalize: bool, origin: str) -> dict[str, Any] | None:
        """Append a chunk at `offset`; on finalize the file is created and returned."""
        with self.lock:
            upload = self.gemini_uploads.get(upload_id)
            if upload is None:
                raise StateError(404, "Upload session not found.")
            if offset != len(upload.data):
                raise StateError(400, f"Upload offset {offset} does not match the {len(upload.data)} bytes received.")
            upload.data += data
            if len(upload.data) > self._config().max_upload_bytes:
                del self.gemini_uploads[upload_id]
                raise StateError(413, "The file is too large.")
            if not finalize:
                return None
            del self.gemini_uploads[upload_id]
            if len(upload.data) != upload.size:
                raise StateError(400, f"Upload size {len(upload.data)} does not match the declared {upload.size}.")
            record = self._gemini_add_file(upload.display_name, upload.mime_type, bytes(upload.data))
            return record.to_json(origin)

    def _gemini_add_file(self, display_name: str | None, mime_type: str, content: bytes, generated: bool = False) -> GeminiFile:
        file_id, seq = self.ids.make("gfile")
        record = GeminiFile(file_id, seq, self.clock.now(), display_name, mime_type, content, generated)
        self.gemini_files[file_id] = record
        return record

    def gemini_file(self, file_id: str) -> GeminiFile:
        with self.lock:
            record = self.gemini_files.get(file_id)
            if record is None:
                raise StateError(404, f"File files/{file_id} does not exist.")
            return record

    def gemini_list_files(self, page_size: int, after: int | None, origin: str) -> tuple[list[dict[str, Any]], int | None]:
        """Newest first; the cursor is the last file's sequence."""
        with self.lock:
            items = sorted(self.gemini_files.values(), key=lambda f: f.seq, reverse=True)
            if after is not None:
                items = [f for f in items if f.seq < after]
            chosen, more = page(items, page_size)
            return [f.to_json(origin) for f in chosen], (chosen[-1].seq if more and chosen else None)

    def gemini_delete_file(self, file_id: str) -> None:
        with self.lock:
            if self.gemini_files.pop(file_id, None) is None:
                raise StateError(404, f"File files/{file_id} does not exist.")

    # ------------------------------------------------------------ Gemini batches

    def create_gemini_batch(self, model: str, batch: dict[str, Any], origin: str) -> dict[str, Any]:
        """`batchGenerateContent`: inline requests or `fileName` of an uploaded file."""
        with self.lock:
            live = self._config()
            source = batch.get("inputConfig") or {}
            file_name = source.get("fileName") if isinstance(source, dict) else None
            metadata: list[dict[str, str] | None] | None = None
            invalid = False
            if isinstance(file_name, str):
                record = self.gemini_files.get(file_name.removeprefix("files/"))
                if record is None:
                    raise StateError(400, f"File {file_name} does not exist.")
                requests, invalid = parse_input_file(record.content, model)
            else:
                requests, metadata = parse_inline_requests(batch, model)
                if not requests:
                    raise StateError(400, "* BatchGenerateContentRequest.batch.input_config: input_config is required.")
            stalled = live.stalled_batches > 0
            if stalled:
                live.stalled_batches -= 1
            cfg = live.copy()
            batch_id, seq = self.ids.make("gbatch")
            name = batch.get("displayName")
            job = GeminiBatch(
                id=batch_id, seq=seq, created=self.clock.now(), cfg=cfg, model=model,
                display_name=name if isinstance(name, str) else None, requests=requests,
                outcomes=[] if invalid else self._outcomes(GEMINI, cfg, requests),
                inline_metadata=metadata, input_file=file_name if isinstance(file_name, str) else None,
                stalled=stalled, invalid=invalid,
            )
            if invalid:
                job.requests = []
            self.gemini_batches[batch_id] = job
            return job.to_json(self._refresh_gemini(job), origin)

    def _refresh_gemini(self, job: GeminiBatch) -> Progress:
        """Current progress; a file-input batch's output file is written when it ends."""
        p = job.progress(self.clock.now())
        if p.phase in TERMINAL and p.phase != FAILED and job.inline_metadata is None and job.output_file is None:
            record = self._gemini_add_file(f"{job.name}-output", "application/jsonl", job.file_lines(p), generated=True)
            job.output_file = record.name
        return p

    def _gemini_batch(self, batch_id: str) -> GeminiBatch:
        job = self.gemini_batches.get(batch_id)
        if job is None:
            raise StateError(404, f"Batch batches/{batch_id} not found.")
        return job

    def get_gemini_batch(self, batch_id: str, origin: str) -> dict[str, Any]:
        with self.lock:
            job = self._gemini_batch(batch_id)
            return job.to_json(self._refresh_gemini(job), origin)

    def list_gemini_batches(self, page_size: int, after: int | None, origin: str) -> tuple[list[dict[str, Any]], int | None]:
        """Newest first; the page token is the last batch's sequence."""
        with self.lock:
            items = sorted(self.gemini_batches.values(), key=lambda b: b.seq, reverse=True)
            if after is not None:
                items = [b for b in items if b.seq < after]
            chosen, more = page(items, page_size)
            return [b.to_json(self._refresh_gemini(b), origin) for b in chosen], (chosen[-1].seq if more and chosen else None)

    def cancel_gemini_batch(self, batch_id: str) -> None:
        with self.lock:
            job = self._gemini_batch(batch_id)
            if self._refresh_gemini(job).phase in TERMINAL:
                raise StateError(400, f"Batch batches/{batch_id} has already finished and cannot be cancelled.")
            if job.cancel_at is None:
                job.cancel_at = self.clock.now()

    def delete_gemini_batch(self, batch_id: str) -> None:
        with self.lock:
            job = self._gemini_batch(batch_id)
            if self._refresh_gemini(job).phase not in TERMINAL:
                raise StateError(400, f"Batch batches/{batch_id} is still running; cancel it first.")
            del self.gemini_batches[batch_id]

    # ------------------------------------------------------------ test helpers

    def expire(self, batch_id: str) -> None:
        """Make a running batch's window end now (partial results are kept)."""
        with self.lock:
            batch: OpenAIBatch | AnthropicBatch | GeminiBatch | None = (
                self.openai_batches.get(batch_id)
                or self.anthropic_batches.get(batch_id)
                or self.gemini_batches.get(batch_id.removeprefix("batches/"))
            )
            if batch is None:
                raise KeyError(batch_id)
            now = self.clock.now()
            if batch.progress(now).phase in RUNNING:
                batch.expire_at = now

    def forget(self, batch_id: str) -> None:
        """Drop a batch as if the provider had lost it: from now on it is not listed and
        every route answers 404 for it (its files stay, as a real provider's may)."""
        with self.lock:
            if (
                self.openai_batches.pop(batch_id, None) is None
                and self.anthropic_batches.pop(batch_id, None) is None
                and self.gemini_batches.pop(batch_id.removeprefix("batches/"), None) is None
            ):
                raise KeyError(batch_id)

    def describe(self, provider: str | None = None) -> list[dict[str, Any]]:
        """Plain dicts of every batch, oldest first, for test assertions."""
        with self.lock:
            out: list[dict[str, Any]] = []
            now = self.clock.now()
            if provider in (None, OPENAI):
                for b in self.openai_batches.values():
                    p = self._refresh_openai(b)
                    out.append({
                        "provider": OPENAI, "id": b.id, "status": p.phase, "phase": p.phase,
                        "metadata": b.metadata, "n": b.n, "done": p.done, "seq": b.seq,
                        "request_counts": b.counts(p), "custom_ids": [r.custom_id for r in b.requests],
                        "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
                    })
            if provider in (None, ANTHROPIC):
                for a in self.anthropic_batches.values():
                    p = a.progress(now)
                    out.append({
                        "provider": ANTHROPIC, "id": a.id, "status": processing_status(p), "phase": p.phase,
                        "metadata": None, "n": a.n, "done": p.done, "seq": a.seq,
                        "request_counts": a.counts(p), "custom_ids": [r.custom_id for r in a.requests],
                    })
            if provider in (None, GEMINI):
                for g in self.gemini_batches.values():
                    p = self._refresh_gemini(g)
                    out.append({
                        "provider": GEMINI, "id": g.name, "status": p.phase, "phase": p.phase,
                        "metadata": None, "display_name": g.display_name, "n": g.n, "done": p.done, "seq": g.seq,
                        "request_counts": g.stats(p), "custom_ids": [r.custom_id for r in g.requests],
                        "inline": g.inline_metadata is not None, "output_file": g.output_file, "_order": g.id,
                    })
            out.sort(key=lambda d: self.ids.order[d.pop("_order", d["id"])])
            return out
