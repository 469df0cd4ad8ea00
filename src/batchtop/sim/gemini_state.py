"""Gemini Batch Mode: files, resumable uploads, batches and their results, as the wire has them.

The JSON here is what the Gemini Developer API sends and what google-genai reads
(its `_BatchJob_from_mldev`, `_InlinedResponse_from_mldev`, `File` types): a batch is
a long-running `Operation` named `batches/<id>` whose `metadata` holds the
`GenerateContentBatch` (`state` as `BATCH_STATE_*`, `displayName`, `batchStats`,
`output`); results are inline (`output.inlinedResponses.inlinedResponses`, each with
the request's `metadata`) for inline input, or an output file (`output.responsesFile`)
of `{"key", "response" | "error"}` lines for file input. Per-request errors are
`google.rpc.Status` objects (`code` a google.rpc.Code number, `message`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .config import SimConfig
from .lifecycle import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    EXPIRED,
    FAILED,
    FINALIZING,
    IN_PROGRESS,
    TERMINAL,
    VALIDATING,
    Progress,
    Timing,
    progress,
)
from .outcomes import BAD_REQUEST, short_hash
from .parsing import SimRequest, estimate_tokens
from .responses import usage_for
from .scripted import scripted

ROOT = "/gemini"
"""Where the simulator serves the Gemini API root (the base URL's path)."""
VERSIONS = ("v1", "v1beta")
API = "v1beta"
"""The version the simulator writes into the URLs it hands out (file uri, download)."""
BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch"
OUTPUT_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatchOutput"
FILE_TTL_S = 48 * 3600
"""Files expire 48 hours after upload (ai.google.dev files docs)."""
RESULTS_CHUNK = 64 * 1024
STALLED = float("inf")

_STATES = {
    VALIDATING: "BATCH_STATE_PENDING",
    IN_PROGRESS: "BATCH_STATE_RUNNING",
    FINALIZING: "BATCH_STATE_RUNNING",
    CANCELLING: "BATCH_STATE_RUNNING",  # the documented enum has no cancelling state
    COMPLETED: "BATCH_STATE_SUCCEEDED",
    FAILED: "BATCH_STATE_FAILED",
    EXPIRED: "BATCH_STATE_EXPIRED",
    CANCELLED: "BATCH_STATE_CANCELLED",
}
# HTTP status of a simulated failure -> (google.rpc.Code, its name)
RPC_CODES = {
    400: (3, "INVALID_ARGUMENT"),
    403: (7, "PERMISSION_DENIED"),
    404: (5, "NOT_FOUND"),
    429: (8, "RESOURCE_EXHAUSTED"),
    500: (13, "INTERNAL"),
    503: (14, "UNAVAILABLE"),
    504: (4, "DEADLINE_EXCEEDED"),
}
STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tokens_of(request: dict[str, Any]) -> int:
    return estimate_tokens(
        request.get("systemInstruction", request.get("system_instruction")), request.get("contents")
    )


def _max_tokens(request: dict[str, Any]) -> int | None:
    config = request.get("generationConfig", request.get("generation_config"))
    if not isinstance(config, dict):
        return None
    cap = config.get("maxOutputTokens", config.get("max_output_tokens"))
    return cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else None


def sim_request(key: str, model: str, request: Any) -> SimRequest:
    """One GenerateContentRequest reduced to what shapes its fake result; a request
    without contents errors when run (INVALID_ARGUMENT), as the API judges it."""
    if not isinstance(request, dict):
        return SimRequest(key, model, 0, None, problem="request: must be a GenerateContentRequest object")
    contents = request.get("contents")
    problem = None if isinstance(contents, list) and contents else "contents is not specified"
    return SimRequest(key, model, _tokens_of(request), _max_tokens(request), problem=problem)


@dataclass
class GeminiFile:
    """An uploaded input file or a generated output file (`files/<id>`)."""

    id: str
    seq: int
    created: float
    display_name: str | None
    mime_type: str
    content: bytes
    generated: bool = False

    @property
    def name(self) -> str:
        return f"files/{self.id}"

    def to_json(self, origin: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "mimeType": self.mime_type,
            "sizeBytes": str(len(self.content)),
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(self.created),
            "expirationTime": rfc3339(self.created + FILE_TTL_S),
            "sha256Hash": base64.b64encode(hashlib.sha256(self.content).hexdigest().encode()).decode(),
            "uri": f"{origin}{ROOT}/{API}/{self.name}",
            "state": "ACTIVE",
            "source": "GENERATED" if self.generated else "UPLOADED",
        }
        if self.display_name:
            body["displayName"] = self.display_name
        if self.generated:
            body["downloadUri"] = f"{origin}{ROOT}/{API}/{self.name}:download?alt=media"
        return body


@dataclass
class Upload:
    """A resumable upload session: the file's metadata and the bytes so far."""

    display_name: str | None
    mime_type: str
    size: int
    data: bytearray = field(default_factory=bytearray)


@dataclass
class GeminiBatch:
    """A batch and what is needed to recompute it at any instant."""

    id: str
    seq: int
    created: float
    cfg: SimConfig
    model: str
    display_name: str | None
    requests: list[SimRequest]
    outcomes: list[int]
    inline_metadata: list[dict[str, str] | None] | None
    """Each inline request's metadata (None for file input)."""
    input_file: str | None = None
    stalled: bool = False
    invalid: bool = False
    """The input file was not JSONL of requests: the batch fails when validated."""
    cancel_at: float | None = None
    expire_at: float | None = None
    output_file: str | None = None
    timing: Timing = field(init=False)

    def __post_init__(self) -> None:
        t = Timing.from_config(self.cfg)
        # never leaves PENDING when stalled: only a cancel or the window ends it
        self.timing = Timing(
            STALLED if self.stalled else t.validate_s, t.per_request_s, t.finalize_s, t.cancel_s, self.cfg.gemini_window_s
        )

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    @property
    def n(self) -> int:
        return len(self.requests)

    def progress(self, now: float) -> Progress:
        return progress(
            self.created, self.n, self.timing, now, invalid=self.invalid, cancel_at=self.cancel_at, expire_at=self.expire_at
        )

    def stats(self, p: Progress) -> dict[str, str]:
        """`batchStats`, int64s as strings as proto JSON writes them."""
        failed = sum(1 for o in self.outcomes[: p.done] if o)
        return {
            "requestCount": str(self.n),
            "successfulRequestCount": str(p.done - failed),
            "failedRequestCount": str(failed),
            "pendingRequestCount": str(self.n - p.done) if p.phase not in TERMINAL else "0",
        }

    def to_json(self, p: Progress, origin: str) -> dict[str, Any]:
        ended = p.phase in TERMINAL
        meta: dict[str, Any] = {
            "@type": BATCH_TYPE,
            "model": f"models/{self.model}",
            "name": self.name,
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(p.ended_at or max(self.created, p.in_progress_at or self.created)),
            "batchStats": self.stats(p),
            "state": _STATES[p.phase],
        }
        if self.display_name:
            meta["displayName"] = self.display_name
        if self.input_file:
            meta["inputConfig"] = {"fileName": self.input_file}
        body: dict[str, Any] = {"name": self.name, "metadata": meta, "done": ended}
        if ended:
            meta["endTime"] = rfc3339(p.ended_at)
        if ended and p.phase != FAILED:
            output = self.output(p)
            meta["output"] = output
            body["response"] = {"@type": OUTPUT_TYPE, **output}
        if p.phase == FAILED:
            body["error"] = {"code": 3, "message": "The batch could not be processed."}
        return body

    def output(self, p: Progress) -> dict[str, Any]:
        if self.inline_metadata is None:
            return {"responsesFile": self.output_file} if self.output_file else {}
        return {"inlinedResponses": {"inlinedResponses": [self.inline_response(i) for i in range(p.done)]}}

    def inline_response(self, i: int) -> dict[str, Any]:
        out = self.result(i)
        meta = (self.inline_metadata or [None])[i] if self.inline_metadata else None
        if meta is not None:
            out["metadata"] = meta
        return out

    def result(self, i: int) -> dict[str, Any]:
        """`{"response": GenerateContentResponse}` or `{"error": Status}` for request i."""
        request, outcome = self.requests[i], self.outcomes[i]
        if outcome:
            script = scripted(self.cfg.scripted_errors, request.custom_id)
            status = script.status if script is not None else outcome
            code, _ = RPC_CODES.get(status, (13, "INTERNAL"))
            if script is not None:
                message = str(script.openai_error.get("message") or "")
            elif outcome == BAD_REQUEST:
                message = request.problem or f"Simulated invalid request for key '{request.custom_id}'."
            else:
                message = "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
            return {"error": {"code": code, "message": message}}
        return {"response": generate_content_response(self.cfg, self.id, request)}

    def file_lines(self, p: Progress) -> bytes:
        """The output file: one `{"key", "response" | "error"}` line per request that ran."""
        return b"".join(
            json.dumps({"key": self.requests[i].custom_id, **self.result(i)}, separators=(",", ":")).encode() + b"\n"
            for i in range(p.done)
        )


def generate_content_response(cfg: SimConfig, batch_id: str, request: SimRequest) -> dict[str, Any]:
    """A GenerateContentResponse with the usage a real one reports: promptTokenCount
    includes the cached content, thoughts are counted apart from the candidates."""
    usage = usage_for(cfg, request)
    thoughts = int(usage.output * min(max(cfg.thoughts_share, 0.0), 1.0))
    candidates = usage.output - thoughts
    meta: dict[str, Any] = {
        "promptTokenCount": usage.input_total,
        "candidatesTokenCount": candidates,
        "totalTokenCount": usage.input_total + usage.output,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": usage.input_total}],
    }
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    if usage.cached:
        meta["cachedContentTokenCount"] = usage.cached
    text = f"Simulated reply {short_hash(request.custom_id, size=4)} to {request.custom_id}."
    return {
        "candidates": [
            {
                "content": {"parts": [{"text": text}], "role": "model"},
                "finishReason": "MAX_TOKENS" if usage.capped else "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": meta,
        "modelVersion": request.model,
        "responseId": short_hash(batch_id, request.custom_id, size=8),
    }


def parse_input_file(content: bytes, model: str) -> tuple[list[SimRequest], bool]:
    """The requests of an uploaded JSONL input file, and whether it is unreadable as one
    (a line that is not a JSON object with a `request`: the batch fails)."""
    requests: list[SimRequest] = []
    for number, raw in enumerate(content.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            return [], True
        if not isinstance(line, dict) or "request" not in line:
            return [], True
        key = line.get("key")
        requests.append(sim_request(key if isinstance(key, str) and key else f"request-{number}", model, line["request"]))
    return requests, not requests


def parse_inline_requests(batch: dict[str, Any], model: str) -> tuple[list[SimRequest], list[dict[str, str] | None]]:
    """`inputConfig.requests.requests`: each `{"request", "metadata"}`; the key we count
    submissions by is the metadata's `key` (else the request's position)."""
    items = (((batch.get("inputConfig") or {}).get("requests") or {}).get("requests")) or []
    requests: list[SimRequest] = []
    metadata: list[dict[str, str] | None] = []
    for i, item in enumerate(items if isinstance(items, list) else []):
        item = item if isinstance(item, dict) else {}
        meta = item.get("metadata") if isinstance(item.get("metadata"), dict) else None
        key = (meta or {}).get("key")
        requests.append(sim_request(key if isinstance(key, str) and key else f"request-{i + 1}", model, item.get("request")))
        metadata.append(meta)
    return requests, metadata


def chunks(content: bytes) -> Iterator[bytes]:
    view = memoryview(content)
    for i in range(0, len(content), RESULTS_CHUNK):
        yield bytes(view[i : i + RESULTS_CHUNK])
