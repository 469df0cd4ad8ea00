"""The operator's actions as the console performs them: a short store write each,
run in a worker thread on a Store of its own, returning the message to show.

Thin wrappers over `batchtop.store.actions` (the same writes the CLI makes); the
engine carries them out. `BatchtopError` propagates: the console shows it.
"""

from __future__ import annotations

from pathlib import Path

from batchtop.store import Store, actions


def _requests(n: int) -> str:
    return f"{n:,} request{'s' if n != 1 else ''}"


def flush(data_dir: Path, buffer_name: str | None, now: float) -> str:
    with Store(data_dir) as store:
        if buffer_name is None:
            n = actions.request_flush(store, None, now)
            return f"flush requested for every buffer ({_requests(n)})" if n else "nothing queued to flush"
        n = actions.request_flush(store, actions.find_buffer(store, buffer_name), now)
    return f"flush requested: {buffer_name} ({_requests(n)})" if n else f"{buffer_name} has nothing queued"


def resubmit(data_dir: Path, batch_id: str, now: float) -> str:
    with Store(data_dir) as store:
        n = actions.resubmit(store, batch_id, now)
    if not n:
        return f"{batch_id}: no failed, expired or cancelled requests to resubmit"
    return f"{batch_id}: {_requests(n)} queued again for a new attempt"


def cancel(data_dir: Path, batch_id: str, now: float) -> str:
    with Store(data_dir) as store:
        status, total, ok, failed = actions.request_cancel(store, batch_id, now)
    return f"cancel requested: {batch_id} ({status}, {ok:,} of {total:,} succeeded, {failed:,} failed)"
