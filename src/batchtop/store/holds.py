"""Holds on a provider's buffers: why they wait, and until when.

A hold set for a provider-wide condition (no key, a refused key, no quota left)
starts with that condition's prefix, so the engine lifts exactly those holds once
the condition is gone and never one the budget or a refusal set.
"""

from __future__ import annotations

from batchtop.store.store import Store


def hold_provider(store: Store, provider: str, reason: str, retry_at: float | None, *, queued_only: bool) -> None:
    """Hold the provider's buffers (with work only, or every one, so that new work
    waits too) with `reason`, until `retry_at` (None: until the engine lifts it)."""
    where = " AND queued > 0" if queued_only else ""
    with store.transaction() as db:
        if retry_at is None:
            db.execute(f"UPDATE buffers SET held_reason = ? WHERE provider = ?{where}", (reason, provider))
        else:
            db.execute(
                f"UPDATE buffers SET held_reason = ?, retry_at = ? WHERE provider = ?{where}",
                (reason, retry_at, provider),
            )


def release(store: Store, provider: str, prefixes: tuple[str, ...]) -> None:
    """Lift the provider's holds whose reason starts with one of `prefixes`; reads
    first, so the common case (nothing held) takes no write lock."""
    where = " OR ".join("substr(held_reason, 1, ?) = ?" for _ in prefixes)
    args = [x for p in prefixes for x in (len(p), p)]
    if store.db.execute(
        f"SELECT 1 FROM buffers WHERE provider = ? AND ({where}) LIMIT 1", (provider, *args)
    ).fetchone() is None:
        return
    with store.transaction() as db:
        db.execute(
            f"UPDATE buffers SET held_reason = NULL, retry_at = NULL WHERE provider = ? AND ({where})", (provider, *args)
        )
