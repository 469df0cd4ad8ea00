"""What the engine needs from a provider, in provider-neutral terms: the adapter
contract (`ProviderAdapter`) and the plain values it returns.

The adapters (`openai_batches`, `anthropic_batches`) turn SDK objects into these
plain values and SDK exceptions into `providers.errors`, so the engine never touches
an SDK type and the statuses are the normalized ones of the CLI contract.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import orjson

from batchtop.providers.streaming import DEFAULT_MAX_LINE, START, Position, ResultItem
from batchtop.redaction import redact

# Normalized batch statuses (shared/cli.md).
SUBMITTING = "submitting"
VALIDATING = "validating"
IN_PROGRESS = "in_progress"
FINALIZING = "finalizing"
CANCELLING = "cancelling"
COMPLETED = "completed"
FAILED = "failed"
EXPIRED = "expired"
CANCELLED = "cancelled"
UNKNOWN = "unknown"

ENDED = frozenset({COMPLETED, FAILED, EXPIRED, CANCELLED})
RUNNING = frozenset({VALIDATING, IN_PROGRESS, FINALIZING, CANCELLING})

# Attempt outcomes.
SUCCEEDED = "succeeded"
ERRORED = "errored"
MISSING = "missing"
INVALID_OUTPUT = "invalid_output"


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


def load_line(raw: str | bytes) -> Any:
    """A result line: orjson first (ingest speed is measured); what it refuses, such
    as a lone surrogate escape, the standard parser still takes, so one odd line
    never stops a batch from being ingested."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


async def pages(first: Any) -> AsyncIterator[list[Any]]:
    """The items of an SDK page and of every page after it, one list per call."""
    page = await first
    while True:
        yield list(page.data)
        if not page.has_next_page():
            return
        page = await page.get_next_page()


SKEW = 600.0
"""Clock difference we tolerate between us and a provider, in seconds."""




class ProviderAdapter(ABC):
    """One provider account's batch API, as the engine uses it.

    An adapter wraps one SDK client (bound to the event loop it first ran on) for one
    account. Every method that calls the provider raises only the typed errors of
    `batchtop.providers.errors` for what the provider or the network did: the SDK's
    own exceptions never leave the adapter. Any of them may raise `ProviderAuthError`
    (key refused), `ProviderQuota` (account out of quota or credit) or
    `ProviderTransient` (5xx, rate limit, timeout, connection); each method says what
    else it raises.

    Attributes:
        provider: the registry name ("openai", "anthropic").
        account: the config account the client's key belongs to; the engine only
            polls the batches submitted under it.
        page_size: items per listing page (the largest the API takes).
    """

    provider: str
    account: str
    page_size: int

    @abstractmethod
    async def submit(self, uid: str, endpoint: str, lines: list[bytes]) -> RemoteBatch:
        """Create one batch from native request lines.

        Args:
            uid: our submission id. Where the provider keeps metadata it is stored
                with the batch, so `find_submission` can find it after a crash.
            endpoint: the API path every line targets ("/v1/chat/completions").
            lines: the requests, each one JSON line of the provider's batch format,
                newline included.

        Returns:
            The batch as the provider created it.

        Raises:
            ProviderRefused: the batch was not taken (rate, queue or enqueued-token
                limit, a bad request): nothing was created, and anything uploaded for
                it was deleted. `retry_after` says when to try, where the provider said.
            ProviderQuota: the account is out of quota or credit; nothing was created.
            ProviderAuthError: the key was refused; nothing was created.
            ProviderTransient: no answer or a 5xx: the batch may or may not exist,
                which `find_submission` settles on the next pass.
        """

    @abstractmethod
    async def find_submission(self, uid: str, created_at: float, total: int, owned: set[str]) -> list[RemoteBatch]:
        """The batches that may be the one submission `uid` created before a crash.

        Args:
            uid: our submission id (see `submit`).
            created_at: when we recorded the intent to submit; batches much older
                (by more than SKEW) are not it.
            total: the number of requests the submission holds.
            owned: provider batch ids already adopted by other submissions: never it.

        Returns:
            Every candidate: none (it was never created: send it), one (adopt it) or
            several (the operator decides). An upload left without a batch may be
            deleted on the way.

        Raises:
            ProviderAuthError, ProviderQuota, ProviderTransient.
        """

    @abstractmethod
    async def list_recent(self, oldest: float, wanted: set[str]) -> tuple[dict[str, RemoteBatch], int]:
        """The wanted batches as the provider lists them, newest first.

        Args:
            oldest: the creation time of the oldest wanted batch; the listing stops
                once past it (less SKEW).
            wanted: provider batch ids in flight.

        Returns:
            (the wanted batches seen, by id; the number of list calls made). A wanted
            batch not seen is asked for with `retrieve`.

        Raises:
            ProviderAuthError, ProviderQuota, ProviderTransient.
        """

    @abstractmethod
    async def retrieve(self, batch_id: str) -> RemoteBatch:
        """One batch as the provider has it now.

        Args:
            batch_id: the provider's batch id.

        Returns:
            The batch.

        Raises:
            ProviderNotFound: the provider answers 404: it no longer knows the batch.
            ProviderAuthError, ProviderQuota, ProviderTransient.
        """

    @abstractmethod
    async def cancel(self, batch_id: str) -> RemoteBatch:
        """Ask the provider to cancel a batch.

        Args:
            batch_id: the provider's batch id.

        Returns:
            The batch after the request (usually cancelling). A batch that ended
            meanwhile, whose cancel the provider therefore refuses (400/409), is
            returned as it is now.

        Raises:
            ProviderNotFound: the provider answers 404: it no longer knows the batch.
            ProviderAuthError, ProviderQuota, ProviderTransient.
        """

    @abstractmethod
    async def probe(self) -> None:
        """One cheap authenticated call (a one-item listing), so a refused key is
        found without uploading a batch.

        Raises:
            ProviderAuthError: the key is still refused.
            ProviderQuota, ProviderTransient.
        """

    @abstractmethod
    def results(self, batch: RemoteBatch, start: Position = START, max_line: int = DEFAULT_MAX_LINE) -> AsyncIterator[ResultItem]:
        """An ended batch's result lines, parsed, with their positions.

        Args:
            batch: the ended batch (from `retrieve`, `list_recent` or `cancel`): its
                result file ids, where the provider has them.
            start: where a previous, interrupted ingest stopped; lines before it are
                not yielded again.
            max_line: bytes; a longer line is not kept but yielded as an anomaly
                (`providers.streaming`).

        Returns:
            An async iterator of `ResultItem`s, each a parsed `ResultLine` (or an
            anomaly) with the position after it. The iterator raises the errors
            below while it is consumed.

        Raises:
            ProviderNotFound: a result file (or the results) answers 404: gone.
            ProviderAuthError, ProviderTransient (a download broken mid-way).
        """

    @abstractmethod
    async def close(self) -> None:
        """Close the SDK client (its HTTP connections). Called on the event loop the
        adapter ran on; the adapter is not used afterwards."""


class ListingAdapter(ProviderAdapter):
    """What the SDK adapters share: one SDK client, and paging the provider's batch
    list newest first. A subclass names its first page and reads its items."""

    def __init__(self, client: Any, account: str = "default") -> None:
        self.client = client
        self.account = account
        self.list_calls = 0

    @abstractmethod
    def _first_page(self) -> Any:
        """The awaitable first page of the batch listing, newest first, one SDK call."""

    @staticmethod
    @abstractmethod
    def _created(item: Any) -> float:
        """A listed batch's creation time, Unix seconds."""

    @staticmethod
    @abstractmethod
    def _remote(item: Any) -> RemoteBatch:
        """A listed SDK batch object as a RemoteBatch."""

    async def _pages(self) -> AsyncIterator[list[Any]]:
        """The listing's pages; the SDK's errors leave here untranslated (callers translate)."""
        async for items in pages(self._first_page()):
            self.list_calls += 1
            yield items

    async def list_recent(self, oldest: float, wanted: set[str]) -> tuple[dict[str, RemoteBatch], int]:
        """Newest first, stopping once every wanted batch was seen or the listing
        passed the oldest of them: ceil(N/page)+1 calls at most for N in flight."""
        seen: dict[str, RemoteBatch] = {}
        calls_before = self.list_calls
        missing = set(wanted)
        with self._translated():
            async for items in self._pages():
                for item in items:
                    if item.id in missing:
                        seen[item.id] = self._remote(item)
                        missing.discard(item.id)
                if not items or self._created(items[-1]) < oldest - SKEW:
                    break
        return seen, self.list_calls - calls_before

    @abstractmethod
    def _translated(self, *, creating: str | None = None, batch_id: str | None = None) -> AbstractContextManager[None]:
        """A context in which the SDK's exceptions are raised as `providers.errors`
        (the SDK's translation function, `creating` and `batch_id` as there)."""

    async def close(self) -> None:
        await self.client.close()
