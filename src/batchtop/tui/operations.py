"""The operator's actions as the console performs them: a short store write each,
run in a worker thread on a Store of its own, returning the message to show.

Thin wrappers over `batchtop.store.actions` (the same writes the CLI makes); the
engine carries them out. `BatchtopError` propagates: the console shows it.
"""

from __future__ import annotations

from pathlib import Path

from batchtop.config import Config, StoreConfig
from batchtop.states import RequestState
from batchtop.store import Store, actions
from batchtop.store.retries import Fates, failure_fates


def _requests(n: int) -> str:
    return f"{n:,} request{'s' if n != 1 else ''}"


SQLITE = StoreConfig()
"""The default: the data dir's SQLite file."""


def _open(data_dir: Path, where: StoreConfig) -> Store:
    """The console's store (`where`: its config's resolved [store]) for one action."""
    return Store(data_dir, url=where.url, schema=where.schema)


def flush(data_dir: Path, buffer_name: str | None, now: float, where: StoreConfig = SQLITE) -> str:
    with _open(data_dir, where) as store:
        if buffer_name is None:
            n = actions.request_flush(store, None, now)
            return f"flush requested for every buffer ({_requests(n)})" if n else "nothing queued to flush"
        n = actions.request_flush(store, actions.find_buffer(store, buffer_name), now)
    return f"flush requested: {buffer_name} ({_requests(n)})" if n else f"{buffer_name} has nothing queued"


def resubmit(data_dir: Path, batch_id: str, now: float, where: StoreConfig = SQLITE) -> str:
    with _open(data_dir, where) as store:
        n = actions.resubmit(store, batch_id, now)
        fates = failure_fates(store.db, batch_id) if not n else None
    if fates is not None:
        return f"{batch_id}: {nothing_to_resubmit(fates)}"
    return f"{batch_id}: {_requests(n)} queued again for a new attempt"


_ORDER: tuple[str, ...] = (
    RequestState.SUCCEEDED, RequestState.QUEUED, RequestState.SUBMITTING, RequestState.IN_FLIGHT,
    RequestState.FAILED, RequestState.EXPIRED, RequestState.CANCELLED, RequestState.DEAD,
)
"""How a resubmit names what became of retried requests: done first, dead last."""


def nothing_to_resubmit(fates: Fates) -> str:
    """Why a resubmit found nothing: no failures, or (the usual case with
    engine.auto_resubmit) they were already tried again, and how that went."""
    if not fates.failed:
        return "no failed, expired or cancelled requests to resubmit"
    tried = sum(fates.retried.values())
    how = ", ".join(
        f"{fates.retried[s]:,} {s}" for s in sorted(fates.retried, key=lambda s: (_ORDER.index(s) if s in _ORDER else 99, s))
    )
    if tried == fates.failed:
        return f"{fates.failed:,} failed, all resubmitted automatically: {how}"
    if tried:
        return f"{fates.failed:,} failed; {tried:,} resubmitted automatically ({how}); the rest have a newer attempt under way"
    return f"{fates.failed:,} failed, and each already has a newer attempt under way: nothing to resubmit"


def cancel(data_dir: Path, batch_id: str, now: float, where: StoreConfig = SQLITE) -> str:
    with _open(data_dir, where) as store:
        status, total, ok, failed = actions.request_cancel(store, batch_id, now)
    return f"cancel requested: {batch_id} ({status}, {ok:,} of {total:,} succeeded, {failed:,} failed)"


def retry_estimate(data_dir: Path, config: Config) -> tuple[int, str]:
    """How many dead letters can go real time, and the prompt's line on their cost (issue 15)."""
    from batchtop.engine.realtime import retry_estimate as estimate
    from batchtop.pricing.money import fmt_usd

    with _open(data_dir, config.store) as store:
        ids, skipped, cost, known = estimate(store.db, config)
    text = f"{_requests(len(ids))} at list price, about {fmt_usd(cost)}" + ("" if known else " (some prices unknown)")
    if skipped:
        text += f"; {skipped:,} of endpoints with no real-time API stay as they are"
    return len(ids), text


def retry_realtime(data_dir: Path, config: Config) -> str:
    """Mark the dead letters for the engine holding the data dir to send real time, once."""
    from batchtop.engine.realtime import retry_estimate as estimate
    from batchtop.store import realtime as rt

    with _open(data_dir, config.store) as store:
        ids, _skipped, _cost, _known = estimate(store.db, config)
        n = rt.request_retry(store, ids)
    return f"{_requests(n)} of the dead letters marked to go real time" if n else "no dead letters to retry real time"
