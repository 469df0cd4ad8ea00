"""Many producers on one store at once: each call all or nothing, nothing lost or
doubled under contention, on the SQLite file and on a shared PostgreSQL store."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

from batchtop.errors import EnqueueError
from batchtop.intake.validation import parse_lines
from batchtop.store import Store

PRODUCERS = 8
CALLS = 9
LINES = 40


def _line(cid: str) -> str:
    return json.dumps({
        "custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": cid}]},
    })


def _produce(data_dir: str, url: str | None, k: int, barrier) -> None:  # type: ignore[no-untyped-def]
    """One producer process: CALLS calls of LINES lines; every third call also holds a
    custom_id already live in the store, so it must store none of its lines."""
    with Store(Path(data_dir), url=url) as store:
        barrier.wait()
        for call in range(CALLS):
            cids = [f"p{k}-{call}-{i}" for i in range(LINES)]
            if call % 3 == 2:
                cids.insert(LINES // 2, "live-0")
            parsed = parse_lines([(f"producer{k}", n, _line(c)) for n, c in enumerate(cids, 1)], None, None)
            try:
                store.enqueue(parsed)
            except EnqueueError as exc:
                assert call % 3 == 2, exc
                assert "live-0" in str(exc.errors[0]) and exc.errors[0].line == LINES // 2 + 1
            else:
                assert call % 3 != 2, "a call with a live custom_id was stored"


def test_concurrent_producers_are_all_or_nothing(store_url: str | None, data_dir: Path) -> None:
    with Store(data_dir, url=store_url) as store:
        store.enqueue(parse_lines([("seed", 1, _line("live-0"))], None, None))
    ctx = multiprocessing.get_context("fork")  # a process and connection each, as producers on other hosts
    barrier = ctx.Barrier(PRODUCERS)
    procs = [ctx.Process(target=_produce, args=(str(data_dir), store_url, k, barrier)) for k in range(PRODUCERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * PRODUCERS
    good_calls = sum(1 for call in range(CALLS) if call % 3 != 2)
    with Store(data_dir, url=store_url) as store:
        rows = store.db.execute("SELECT custom_id, id FROM requests ORDER BY id").fetchall()
        cids = [c for c, _ in rows]
        assert len(cids) == len(set(cids)) == 1 + PRODUCERS * good_calls * LINES
        expected = {"live-0"} | {f"p{k}-{c}-{i}" for k in range(PRODUCERS) for c in range(CALLS) if c % 3 != 2
                                  for i in range(LINES)}
        assert set(cids) == expected
        # each call's rows are contiguous ids: no call interleaved with another's
        by_call: dict[str, list[int]] = {}
        for cid, rid in rows[1:]:
            by_call.setdefault(cid.rsplit("-", 1)[0], []).append(rid)
        assert all(ids == list(range(ids[0], ids[0] + LINES)) for ids in by_call.values())
        (queued, queued_bytes) = store.db.execute("SELECT sum(queued), sum(queued_bytes) FROM buffers").fetchone()
        assert store.db.execute("SELECT count(*), sum(bytes) FROM requests WHERE state = 'queued'").fetchone() == (
            queued, queued_bytes)
        (estimated,) = store.db.execute("SELECT sum(requests) FROM buffer_estimates").fetchone()
        assert estimated == len(cids)
