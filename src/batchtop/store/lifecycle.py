"""The engine's side of the store: what to work on, and what it learned, as typed calls.

The engine asks "which providers have work", "which batches to poll, cancel or
ingest" and tells "the provider says this batch is now ...", "this provider's pass
ended so"; the SQL for all of it is here, so the engine holds none and a second
storage backend implements these methods once. `Store` inherits them (`Lifecycle`
is a mixin), so callers write `store.batches_to_poll(...)`.

Each write is one transaction of its own (`Store.transaction`, fenced by the
engine's lease), as before the move; reads run on the store's connection outside
any transaction, like every read of the engine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from typing import Any

from batchtop.providers.base import RemoteBatch
from batchtop.states import ENDED, BatchStatus
from batchtop.store import events
from batchtop.store.db import Connection

_PROVIDER_KEY = "provider:"
_TICK_KEY = "tick"

_ENDED_PARAMS = tuple(sorted(ENDED))
_OPEN = "provider_batch_id IS NOT NULL AND ingested_at IS NULL"
"""A batch the provider has and whose results are not stored yet."""


@dataclass(frozen=True)
class ProviderState:
    """How a provider's last pass went: the status line, its error, its backoff.

    Stored as a JSON object under `engine_state` key `provider:<name>` in the format
    it always had (a key is left out when its value is None or False), so stores
    written before this record read the same, and the views read it through
    `provider_states`, never by parsing the blob themselves.
    """

    status: str | None = None
    """What the console's provider line says ("ok", "backing off 8s (...)", ...)."""
    error: str | None = None
    """The last pass's error, redacted, at most 500 characters."""
    retry_at: float | None = None
    """Backing off: no pass before this time (the operator's `flush` clears it)."""
    polled_at: float | None = None
    """When a pass last polled this provider successfully."""
    failures: int | None = None
    """Failed passes in a row, while backing off."""
    auth_failed: bool = False
    """The key was refused: the next pass first asks once, cheaply, before uploading."""

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if v is not None and v is not False})

    @classmethod
    def from_json(cls, text: str | None) -> ProviderState:
        """Tolerant of what older versions wrote: unknown keys are ignored."""
        data: dict[str, Any] = json.loads(text) if text else {}
        if not isinstance(data, dict):
            return cls()
        return cls(
            status=data.get("status"),
            error=data.get("error"),
            retry_at=data.get("retry_at"),
            polled_at=data.get("polled_at"),
            failures=data.get("failures"),
            auth_failed=bool(data.get("auth_failed")),
        )


@dataclass(frozen=True)
class PollTarget:
    """A batch in flight the engine must poll."""

    local_id: int
    batch_id: str
    """The provider's batch id."""
    provider_created_at: float | None


@dataclass(frozen=True)
class CancelTarget:
    """A batch the operator asked to cancel, not cancelling or ended yet."""

    local_id: int
    batch_id: str


@dataclass(frozen=True)
class IngestTarget:
    """An ended batch whose results are not stored yet."""

    local_id: int
    batch_id: str
    buffer_id: int
    ingest_retry_at: float | None
    """After a failed ingest: not before this time."""


@dataclass(frozen=True)
class BatchRoute:
    """Where a batch's requests went: what decides its output validation rule."""

    provider: str
    endpoint: str
    model: str


@dataclass(frozen=True)
class BatchSummary:
    """A batch as the `cancel` confirmation names it."""

    provider: str
    model: str
    status: str
    total: int
    succeeded: int
    failed: int


def clear_provider_backoff(db: Connection) -> None:
    """Inside the caller's transaction: every provider may be tried at once (the
    operator's `flush` overrides a backoff). The JSON is edited by the database: SQLite's
    json_remove keeps the compact text, PostgreSQL's jsonb writes its own spacing and
    key order; `ProviderState.from_json` reads either."""
    if db.dialect == "postgresql":
        removed = "(value::jsonb - 'retry_at')::text"
    else:
        removed = "json_remove(value, '$.retry_at')"
    db.execute(f"UPDATE engine_state SET value = {removed} WHERE key LIKE ?", (_PROVIDER_KEY + "%",))


def provider_states(db: Connection) -> dict[str, ProviderState]:
    """Every provider's last pass, by provider name, for the status views."""
    return {
        key.removeprefix(_PROVIDER_KEY): ProviderState.from_json(value)
        for key, value in db.execute("SELECT key, value FROM engine_state WHERE key LIKE ?", (_PROVIDER_KEY + "%",))
    }


class Lifecycle:
    """The engine's queries and state changes; mixed into `Store`."""

    db: Connection

    def transaction(self, *, fenced: bool = True) -> AbstractContextManager[Connection]:
        raise NotImplementedError  # Store's

    # -- engine state ------------------------------------------------------------
    def provider_state(self, provider: str) -> ProviderState:
        """The provider's last pass; an empty record before its first."""
        row = self.db.execute("SELECT value FROM engine_state WHERE key = ?", (_PROVIDER_KEY + provider,)).fetchone()
        return ProviderState.from_json(row[0] if row else None)

    def set_provider_state(self, provider: str, state: ProviderState) -> None:
        self._put_state(_PROVIDER_KEY + provider, state.to_json())

    def provider_states(self) -> dict[str, ProviderState]:
        return provider_states(self.db)

    def set_ticked(self, at: float) -> None:
        """A pass over every provider ended at `at`."""
        self._put_state(_TICK_KEY, json.dumps({"at": at}))

    def _put_state(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO engine_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- what has work -----------------------------------------------------------
    def active_providers(self) -> list[str]:
        """Providers with requests queued, batches not ingested yet, or real-time lane work
        (dead letters to retry real time, claims a dead engine left open), by name."""
        from batchtop.store.realtime import providers_with_retries

        batch_work = {
            r[0]
            for r in self.db.execute(
                "SELECT provider FROM buffers WHERE queued > 0 UNION SELECT provider FROM batches WHERE ingested_at IS NULL"
            )
        }
        return sorted(batch_work | set(providers_with_retries(self.db)))

    def cancel_requested_providers(self) -> list[str]:
        """Providers with a batch the operator asked to cancel and not ingested yet."""
        return [
            r[0]
            for r in self.db.execute(
                "SELECT DISTINCT provider FROM batches WHERE cancel_requested_at IS NOT NULL AND ingested_at IS NULL"
            )
        ]

    def cancel_due(self) -> bool:
        """A requested cancel the engine has not carried out yet (wakes `run` early)."""
        return (
            self.db.execute(
                f"SELECT 1 FROM batches WHERE cancel_requested_at IS NOT NULL AND {_OPEN}"
                " AND status NOT IN (?, ?, ?, ?, ?) LIMIT 1",
                (BatchStatus.CANCELLING, *_ENDED_PARAMS),
            ).fetchone()
            is not None
        )

    def other_account_batches(self, provider: str, account: str) -> int:
        """Open batches of the provider submitted under another account (not polled with this one)."""
        (n,) = self.db.execute(
            f"SELECT count(*) FROM batches WHERE provider = ? AND account != ? AND {_OPEN}", (provider, account)
        ).fetchone()
        return int(n)

    def batches_to_cancel(self, provider: str, account: str) -> list[CancelTarget]:
        rows = self.db.execute(
            f"SELECT id, provider_batch_id FROM batches WHERE provider = ? AND account = ?"
            f" AND cancel_requested_at IS NOT NULL AND {_OPEN} AND status NOT IN (?, ?, ?, ?, ?)",
            (provider, account, BatchStatus.CANCELLING, *_ENDED_PARAMS),
        ).fetchall()
        return [CancelTarget(*r) for r in rows]

    def batches_to_poll(self, provider: str, account: str) -> list[PollTarget]:
        rows = self.db.execute(
            f"SELECT id, provider_batch_id, provider_created_at FROM batches WHERE provider = ? AND account = ?"
            f" AND {_OPEN} AND status NOT IN (?, ?, ?, ?)",
            (provider, account, *_ENDED_PARAMS),
        ).fetchall()
        return [PollTarget(*r) for r in rows]

    def batches_to_ingest(self, provider: str, account: str) -> list[IngestTarget]:
        """Ended batches not ingested yet, oldest first."""
        rows = self.db.execute(
            f"SELECT id, provider_batch_id, buffer_id, ingest_retry_at FROM batches WHERE provider = ? AND account = ?"
            f" AND {_OPEN} AND status IN (?, ?, ?, ?) ORDER BY id",
            (provider, account, *_ENDED_PARAMS),
        ).fetchall()
        return [IngestTarget(*r) for r in rows]

    def batch_route(self, local_id: int) -> BatchRoute:
        provider, endpoint, model = self.db.execute(
            "SELECT provider, endpoint, model FROM batches WHERE id = ?", (local_id,)
        ).fetchone()
        return BatchRoute(provider, endpoint, model)

    def batch_summary(self, provider_batch_id: str) -> BatchSummary | None:
        """A batch by the provider's id; None when this data dir has no such batch."""
        row = self.db.execute(
            "SELECT provider, model, status, total, succeeded, failed FROM batches WHERE provider_batch_id = ?",
            (provider_batch_id,),
        ).fetchone()
        return BatchSummary(*row) if row else None

    # -- what the engine learned --------------------------------------------------
    def update_from_remote(self, local_id: int, remote: RemoteBatch, now: float, *, cancelled: bool = False) -> None:
        """The provider's view of a batch (a poll, or the answer to our cancel) becomes
        ours, with its event (`ended` once, `cancelled` when we asked), in one transaction."""
        self.update_many_from_remote([(local_id, remote)], now, cancelled=cancelled)

    def update_many_from_remote(
        self, polled: Sequence[tuple[int, RemoteBatch]], now: float, *, cancelled: bool = False
    ) -> None:
        """A whole poll's batches as the provider reports them, in ONE transaction: a
        tick with 400 batches in flight takes one writer lock and one fence check for
        them, not 400 (on PostgreSQL each is a round trip)."""
        if not polled:
            return
        with self.transaction() as db:
            for local_id, remote in polled:
                events.record_polled(db, local_id, remote.status, remote.succeeded, remote.failed, now, cancelled=cancelled)
            db.executemany(
                "UPDATE batches SET status = ?, succeeded = ?, failed = ?, provider_created_at = ?, expires_at = ?,"
                " ended_at = ?, output_file_id = ?, error_file_id = ?, last_error = ?, polled_at = ? WHERE id = ?",
                [
                    (
                        remote.status, remote.succeeded, remote.failed, remote.created_at, remote.expires_at,
                        remote.ended_at, remote.output_file_id, remote.error_file_id, remote.error, now, local_id,
                    )
                    for local_id, remote in polled
                ],
            )

    def hold_buffer(self, buffer_id: int, reason: str) -> None:
        """The buffer's next batch waits (the budget): `reason` is shown on its line."""
        with self.transaction() as db:
            db.execute("UPDATE buffers SET held_reason = ? WHERE id = ?", (reason, buffer_id))
