"""What the engine needs from a provider, in provider-neutral terms.

The adapters (`openai_batches`, `anthropic_batches`) turn SDK objects into these
plain values, so the engine never touches an SDK type and the statuses are the
normalized ones of the CLI contract.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from batchtop.redaction import redact
from batchtop.states import ENDED as ENDED  # re-exported: the adapters and views import it from here
from batchtop.states import RUNNING as RUNNING
from batchtop.states import BatchStatus, Outcome

if TYPE_CHECKING:
    from batchtop.providers.streaming import Position, ResultItem

# Normalized batch statuses (shared/cli.md) and attempt outcomes: aliases of the
# members of `batchtop.states`, the one definition every layer shares.
SUBMITTING = BatchStatus.SUBMITTING
VALIDATING = BatchStatus.VALIDATING
IN_PROGRESS = BatchStatus.IN_PROGRESS
FINALIZING = BatchStatus.FINALIZING
CANCELLING = BatchStatus.CANCELLING
COMPLETED = BatchStatus.COMPLETED
FAILED = BatchStatus.FAILED
EXPIRED = BatchStatus.EXPIRED
CANCELLED = BatchStatus.CANCELLED
UNKNOWN = BatchStatus.UNKNOWN

# Attempt outcomes.
SUCCEEDED = Outcome.SUCCEEDED
ERRORED = Outcome.ERRORED
MISSING = Outcome.MISSING
INVALID_OUTPUT = Outcome.INVALID_OUTPUT


@dataclass(frozen=True)
class RemoteBatch:
    """One batch as the provider lists it."""

    id: str
    status: str
    total: int
    succeeded: int
    failed: int
    created_at: float
    expires_at: float | None = None
    ended_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    submission_uid: str | None = None
    """Our local submission id, where the provider keeps metadata (OpenAI)."""
    error: str | None = None
    """Batch-level error (a failed OpenAI batch's validation errors)."""
    refused: bool = False
    """Failed because of the provider's enqueued-token / queue limit: not an attempt."""

    def __post_init__(self) -> None:
        # provider text, stored and printed: a key it echoes never gets further
        if self.error:
            object.__setattr__(self, "error", redact(self.error))


@dataclass(frozen=True)
class ResultLine:
    """One request's result, with usage in disjoint billing categories."""

    custom_id: str
    outcome: str  # succeeded | errored | expired | cancelled
    response: str | None  # the provider's response body, JSON text
    error: str | None  # short error text: "code: message"
    error_code: str | None = None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    """The part of `cache_creation_input_tokens` written to the 1-hour cache (Anthropic)."""
    status_code: int | None = None
    """The HTTP status the request had, where the line says (OpenAI's response.status_code)."""
    error_type: str | None = None
    """The provider's error type (`invalid_request_error`, `overloaded_error`, ...)."""

    def __post_init__(self) -> None:
        # a failure's text and line are stored and printed: a key the provider echoes
        # never gets further (a success's line is the output, kept verbatim)
        if self.error:
            object.__setattr__(self, "error", redact(self.error))
        if self.outcome != SUCCEEDED and self.response:
            object.__setattr__(self, "response", redact(self.response))


class Refused(Exception):
    """The provider did not take the batch (rate, queue or token limit, bad request):
    nothing was created, so the requests go back to their buffer without an attempt."""

    def __init__(self, reason: str, retry_after: float | None = None, *, quota: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.quota = quota
        """The account is out of quota or credit: the whole provider must wait."""


class Lost(Exception):
    """The provider answers 404 for a batch we submitted: it no longer knows it."""

    def __init__(self, batch_id: str, detail: str) -> None:
        super().__init__(f"{batch_id}: {detail}")
        self.batch_id = batch_id
        self.detail = detail


def load_line(raw: str | bytes) -> Any:
    """A result line: orjson first (ingest speed is measured); what it refuses, such
    as a lone surrogate escape, the standard parser still takes, so one odd line
    never stops a batch from being ingested."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def retry_after(exc: BaseException) -> float | None:
    """Seconds the provider asked us to wait (`retry-after-ms`, then `retry-after`)."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if not headers:
        return None
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        return None
    return None


async def pages(first: Any) -> AsyncIterator[list[Any]]:
    """The items of an SDK page and of every page after it, one list per call."""
    page = await first
    while True:
        yield list(page.data)
        if not page.has_next_page():
            return
        page = await page.get_next_page()


def is_refusal(status: int) -> bool:
    """A 4xx other than timeout/conflict: the provider created nothing. Not a 401: a
    refused key is no judgement on the batch, it is the provider's error (`is_auth_error`)."""
    return 400 <= status < 500 and status not in (401, 408, 409)


def is_auth_error(exc: BaseException) -> bool:
    """The provider refused our key (401, either SDK)."""
    return getattr(exc, "status_code", None) == 401


SKEW = 600.0
"""Clock difference we tolerate between us and a provider, in seconds."""


class ListingAdapter:
    """What both adapters share: paging the provider's batch list newest first."""

    provider: str
    page_size: int

    def __init__(self, client: Any, account: str = "default") -> None:
        self.client = client
        self.account = account
        self.list_calls = 0

    def _first_page(self) -> Any:
        raise NotImplementedError

    @staticmethod
    def _created(item: Any) -> float:
        raise NotImplementedError

    @staticmethod
    def _remote(item: Any) -> RemoteBatch:
        raise NotImplementedError

    async def _pages(self) -> AsyncIterator[list[Any]]:
        async for items in pages(self._first_page()):
            self.list_calls += 1
            yield items

    async def list_recent(self, oldest: float, wanted: set[str]) -> tuple[dict[str, RemoteBatch], int]:
        """Newest first, stopping once every wanted batch was seen or the listing
        passed the oldest of them: ceil(N/page)+1 calls at most for N in flight."""
        seen: dict[str, RemoteBatch] = {}
        calls_before = self.list_calls
        missing = set(wanted)
        async for items in self._pages():
            for item in items:
                if item.id in missing:
                    seen[item.id] = self._remote(item)
                    missing.discard(item.id)
            if not missing or not items or self._created(items[-1]) < oldest - SKEW:
                break
        return seen, self.list_calls - calls_before

    async def probe(self) -> None:
        """One cheap authenticated call (a one-item list page): raises as the provider
        would, so a refused key is found without uploading a batch."""
        raise NotImplementedError

    async def close(self) -> None:
        await self.client.close()


class ProviderAdapter(Protocol):
    provider: str
    account: str
    page_size: int

    async def submit(self, uid: str, endpoint: str, lines: list[bytes]) -> RemoteBatch: ...

    async def find_submission(self, uid: str, created_at: float, total: int, owned: set[str]) -> list[RemoteBatch]: ...

    async def list_recent(self, oldest: float, wanted: set[str]) -> tuple[dict[str, RemoteBatch], int]: ...

    async def retrieve(self, batch_id: str) -> RemoteBatch:
        """The batch as the provider has it; raises Lost when it answers 404."""
        ...

    async def cancel(self, batch_id: str) -> RemoteBatch:
        """Ask for a cancel; raises Lost when the provider answers 404."""
        ...

    async def probe(self) -> None: ...

    def results(self, batch: RemoteBatch, start: Position = ..., max_line: int = ...) -> AsyncIterator[ResultItem]:
        """The batch's result files from `start` on, no line longer than `max_line` kept."""
        ...

    async def close(self) -> None: ...
