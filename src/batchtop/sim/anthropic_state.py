"""Anthropic Message Batches: records, lifecycle views and the results stream."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .config import SimConfig
from .lifecycle import CANCELLED, CANCELLING, EXPIRED, TERMINAL, Progress, Timing, progress
from .outcomes import short_hash
from .parsing import SimRequest
from .replay import replayed
from .responses import anthropic_result_line

RESULTS_CHUNK = 64 * 1024


def rfc3339(t: float | None) -> str | None:
    """Anthropic timestamps are RFC 3339 strings with microseconds and ``Z``."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def processing_status(p: Progress) -> str:
    """Map the shared phases onto ``in_progress | canceling | ended``."""
    if p.phase in TERMINAL:
        return "ended"
    return "canceling" if p.phase == CANCELLING else "in_progress"


@dataclass
class AnthropicBatch:
    """A message batch and what is needed to recompute it at any instant."""

    id: str
    seq: int
    created: float
    cfg: SimConfig
    requests: list[SimRequest]
    outcomes: list[int]
    cancel_at: float | None = None
    expire_at: float | None = None
    timing: Timing = field(init=False)
    _errored_prefix: list[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.timing = Timing.from_config(self.cfg)
        self._errored_prefix = [0, *itertools.accumulate(1 if o else 0 for o in self.outcomes)]

    @property
    def n(self) -> int:
        return len(self.requests)

    def progress(self, now: float) -> Progress:
        return progress(
            self.created, self.n, self.timing, now, cancel_at=self.cancel_at, expire_at=self.expire_at
        )

    def counts(self, p: Progress) -> dict[str, int]:
        """Only ``processing`` is non-zero until the batch has ended."""
        counts = {"processing": self.n, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if p.phase not in TERMINAL:
            return counts
        errored = self._errored_prefix[p.done]
        counts.update(processing=0, succeeded=p.done - errored, errored=errored)
        if p.phase == CANCELLED:
            counts["canceled"] = self.n - p.done
        elif p.phase == EXPIRED:
            counts["expired"] = self.n - p.done
        return counts

    def to_json(self, p: Progress, origin: str) -> dict[str, Any]:
        ended = p.phase in TERMINAL
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": processing_status(p),
            "request_counts": self.counts(p),
            "ended_at": rfc3339(p.ended_at),
            "created_at": rfc3339(self.created),
            "expires_at": rfc3339(self.created + self.timing.window_s),
            "archived_at": None,
            "cancel_initiated_at": rfc3339(p.cancelling_at),
            "results_url": f"{origin}/v1/messages/batches/{self.id}/results" if ended else None,
        }

    def iter_results(self, p: Progress) -> Iterator[bytes]:
        """JSONL results in chunks of about 64 KiB; ``\\n`` endings, never a blank line."""
        leftover = "canceled" if p.phase == CANCELLED else "expired"
        order: Any = range(self.n)
        if self.cfg.shuffle_results:
            order = sorted(order, key=lambda i: short_hash(self.cfg.seed, self.requests[i].custom_id))
        chunk: list[bytes] = []
        size = 0
        for i in order:
            outcome: int | str = self.outcomes[i] if i < p.done else leftover
            recorded = replayed(self.cfg.replay, self.requests[i].custom_id) if i < p.done else None
            if recorded is not None:
                data = recorded + b"\n"
            else:
                line = anthropic_result_line(self.cfg, self.id, self.requests[i], outcome)
                data = json.dumps(line, separators=(",", ":")).encode() + b"\n"
            chunk.append(data)
            size += len(data)
            if size >= RESULTS_CHUNK:
                yield b"".join(chunk)
                chunk, size = [], 0
        if chunk:
            yield b"".join(chunk)
