"""Finding batches anywhere in the store by the words an operator types (`/`).

The console lists the batches in flight and only the most recent ended ones; a search
must reach every batch ever sent. One scan of the batches table (one row per batch,
not per request), each word matched as a plain substring: never a LIKE pattern, so
`%` and `_` in what is typed are only characters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from batchtop.store.db import Connection


SEARCH_LIMIT = 200
"""At most this many matching batches, newest first."""

_HAYSTACK = (
    "lower(coalesce(provider_batch_id, 'local-' || id) || ' ' || provider || ' ' || model || ' ' || status"
    " || ' ' || endpoint || ' ' || coalesce(last_error, ''))"
)


def matching_batches(db: Connection, needle: str, limit: int = SEARCH_LIMIT) -> list[int]:
    """Local ids of the batches whose id, provider, model, status, endpoint or error
    contains every word of `needle` (case-insensitive), newest first."""
    words = needle.lower().split()[:8]
    if not words:
        return []
    find = "instr" if db.dialect == "sqlite" else "strpos"  # the same position (1-based, 0: absent)
    where = " AND ".join(f"{find}({_HAYSTACK}, ?) > 0" for _ in words)
    rows = db.execute(f"SELECT id FROM batches WHERE {where} ORDER BY created_at DESC, id DESC LIMIT ?", (*words, limit))
    return [r[0] for r in rows]
