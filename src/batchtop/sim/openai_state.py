"""OpenAI files and batches: records, lifecycle views and result files."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .config import SimConfig
from .lifecycle import CANCELLED, EXPIRED, FAILED, Progress, Timing, progress
from .outcomes import OK, short_hash
from .parsing import SimRequest
from .replay import replayed
from .responses import openai_abort_line, openai_result_line, usage_for

DEFAULT_FILE_TTL_S = 30 * 86400


def _int(t: float | None) -> int | None:
    return None if t is None else int(t)


@dataclass
class FileRecord:
    """An uploaded or batch-produced file; content is held as bytes."""

    id: str
    seq: int
    created_at: int
    filename: str
    purpose: str
    content: bytes
    expires_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": self.expires_at,
        }


@dataclass
class OpenAIBatch:
    """A batch and everything needed to recompute its state at any instant."""

    id: str
    seq: int
    created: float
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None
    cfg: SimConfig
    requests: list[SimRequest]
    outcomes: list[int]
    errors: list[dict[str, Any]]
    output_ttl_s: int | None = None
    cancel_at: float | None = None
    expire_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    finished: bool = False
    timing: Timing = field(init=False)
    _failed_prefix: list[int] = field(init=False, repr=False)
    _usage_prefix: list[tuple[int, int, int]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.timing = Timing.from_config(self.cfg)
        self._failed_prefix = [0, *itertools.accumulate(1 if o else 0 for o in self.outcomes)]
        embeddings = self.endpoint == "/v1/embeddings"
        totals = [(0, 0, 0)]
        inp = cached = out = 0
        for request, outcome in zip(self.requests, self.outcomes):
            if outcome == OK:
                u = usage_for(self.cfg, request, embeddings)
                inp, cached, out = inp + u.input_total, cached + u.cached, out + u.output
            totals.append((inp, cached, out))
        self._usage_prefix = totals

    @property
    def n(self) -> int:
        return len(self.requests)

    @property
    def model(self) -> str | None:
        return self.requests[0].model or None if self.requests else None

    def progress(self, now: float) -> Progress:
        return progress(
            self.created, self.n, self.timing, now,
            invalid=bool(self.errors), cancel_at=self.cancel_at, expire_at=self.expire_at,
        )

    def counts(self, p: Progress) -> dict[str, int]:
        """request_counts; at the end they equal the output/error file line counts."""
        if self.errors:
            return {"total": 0, "completed": 0, "failed": 0}
        failed = self._failed_prefix[p.done]
        completed = p.done - failed
        if p.phase in (EXPIRED, CANCELLED):
            failed += self.n - p.done
        return {"total": self.n, "completed": completed, "failed": failed}

    def usage(self, p: Progress) -> dict[str, Any]:
        inp, cached, out = self._usage_prefix[p.done]
        return {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": inp + out,
        }

    def to_json(self, p: Progress) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            # Validation errors are only known once validation has finished (the batch
            # failed); a batch cancelled or expired while validating never reports them.
            "errors": {"object": "list", "data": self.errors} if self.errors and p.phase == FAILED else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": p.phase,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created),
            "in_progress_at": _int(p.in_progress_at),
            "expires_at": int(self.created + self.timing.window_s),
            "finalizing_at": _int(p.finalizing_at),
            "completed_at": _int(p.completed_at),
            "failed_at": _int(p.failed_at),
            "expired_at": _int(p.expired_at),
            "cancelling_at": _int(p.cancelling_at),
            "cancelled_at": _int(p.cancelled_at),
            "request_counts": self.counts(p),
            "usage": self.usage(p),
            "metadata": self.metadata,
        }

    def _order(self) -> Iterable[int]:
        if not self.cfg.shuffle_results:
            return range(self.n)
        return sorted(range(self.n), key=lambda i: short_hash(self.cfg.seed, self.requests[i].custom_id))

    def build_result_files(self, p: Progress) -> tuple[bytes, bytes]:
        """``(output, errors)`` JSONL once the batch has ended; unrun requests get abort lines.

        A batch with an invalid input file never accepted its requests, so it has no
        result lines whichever way it ended (failed, or cancelled/expired while
        validating); that keeps the files in line with its all-zero request_counts.
        """
        out, err = io.BytesIO(), io.BytesIO()
        if self.errors:
            return b"", b""
        start = self.created + self.timing.validate_s
        abort = "batch_expired" if p.phase == EXPIRED else "batch_cancelled"
        for i in self._order():
            request = self.requests[i]
            if i < p.done:
                outcome = self.outcomes[i]
                created = int(start + (i + 1) * max(self.timing.per_request_s, 0.0))
                target = err if outcome else out
                recorded = replayed(self.cfg.replay, request.custom_id)
                if recorded is not None:
                    target.write(recorded + b"\n")
                    continue
                line = openai_result_line(self.id, self.endpoint, self.cfg, request, outcome, created)
            elif p.phase == FAILED:
                continue
            else:
                line = openai_abort_line(self.id, request, abort)
                target = err
            target.write(json.dumps(line, separators=(",", ":")).encode())
            target.write(b"\n")
        return out.getvalue(), err.getvalue()
