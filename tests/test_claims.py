"""A flush claims a buffer's fresh requests as one id range (O(1) rows before the
provider call); requests queued again after an attempt are claimed row by row; the
range becomes attempts and `in_flight` rows once the provider has the batch."""

from __future__ import annotations

import time
from pathlib import Path

from batchtop.config import Config, FlushPolicy
from batchtop.providers.base import RemoteBatch, ResultLine
from batchtop.store import Store, status_queries, submissions
from batchtop.store.ingest import BatchIngest, Settle

from engine_helpers import enqueue, openai_lines, states


def _buffer(store: Store, model: str = "gpt-4o-mini") -> int:
    (buffer_id,) = store.db.execute("SELECT id FROM buffers WHERE model = ?", (model,)).fetchone()
    return int(buffer_id)


def _plan(store: Store, buffer_id: int, **caps: int) -> submissions.Intent:
    intent = submissions.plan(store, buffer_id, FlushPolicy(**caps), "default", time.time())  # type: ignore[arg-type]
    assert intent is not None
    return intent


def _ids(store: Store, intent: submissions.Intent) -> list[str]:
    import json

    return [json.loads(line)["custom_id"] for line in submissions.lines(store, intent.id)]


def _record(store: Store, intent: submissions.Intent) -> None:
    remote = RemoteBatch(f"batch_{intent.id}", "validating", intent.total, 0, 0, time.time())
    assert submissions.record_submitted(store, intent.id, remote, time.time())


def _claim(store: Store, intent: submissions.Intent) -> tuple[int | None, int | None]:
    return store.db.execute("SELECT claim_lo, claim_hi FROM batches WHERE id = ?", (intent.id,)).fetchone()


def test_fresh_requests_are_claimed_as_one_range_and_written_once_the_provider_has_them(data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(10))
    with Store(data_dir) as store:
        buffer_id = _buffer(store)
        first = _plan(store, buffer_id, max_requests=4)
        assert (first.total, _claim(store, first)) == (4, (1, 4))
        # nothing per request yet: no attempt, every row as it was
        assert store.db.execute("SELECT count(*) FROM attempts").fetchone() == (0,)
        assert states(store) == {"queued": 10}
        assert store.db.execute("SELECT queued, claimed_through FROM buffers").fetchone() == (6, 4)
        # the next flush leaves the open claim alone
        second = _plan(store, buffer_id, max_requests=4)
        assert _claim(store, second) == (5, 8)
        assert _ids(store, first) == ["o0", "o1", "o2", "o3"]
        assert _ids(store, second) == ["o4", "o5", "o6", "o7"]
        _record(store, first)
        assert states(store) == {"in_flight": 4, "queued": 6}
        assert store.db.execute(
            "SELECT r.custom_id, a.number, r.attempts FROM attempts a JOIN requests r ON r.id = a.request_id"
            " WHERE a.batch_id = ? ORDER BY a.id", (first.id,)
        ).fetchall() == [(f"o{i}", 1, 1) for i in range(4)]
        assert _ids(store, first) == ["o0", "o1", "o2", "o3"]  # the same lines, now read through the attempts
        third = _plan(store, buffer_id)
        assert (_claim(store, third), _ids(store, third)) == ((9, 10), ["o8", "o9"])
        assert submissions.plan(store, buffer_id, FlushPolicy(), "default", time.time()) is None


def test_the_byte_cap_cuts_the_range_and_one_oversized_request_still_goes_alone(data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(5))
    with Store(data_dir) as store:
        buffer_id = _buffer(store)
        sizes = [n for (n,) in store.db.execute("SELECT bytes FROM requests ORDER BY id")]
        intent = _plan(store, buffer_id, max_bytes=sum(sizes[:3]) + 1)
        assert (intent.total, intent.bytes, _ids(store, intent)) == (3, sum(sizes[:3]), ["o0", "o1", "o2"])
        alone = _plan(store, buffer_id, max_bytes=1)
        assert (alone.total, _ids(store, alone)) == (1, ["o3"])
        assert store.db.execute("SELECT queued, queued_bytes FROM buffers").fetchone() == (1, sizes[4])


def test_a_range_covers_only_its_own_buffer_when_buffers_interleave(data_dir: Path) -> None:
    lines = [line for pair in zip(openai_lines(5, "m"), openai_lines(5, "n", model="gpt-4o")) for line in pair]
    enqueue(data_dir, lines)
    with Store(data_dir) as store:
        mini = _plan(store, _buffer(store, "gpt-4o-mini"))
        assert _ids(store, mini) == [f"m{i}" for i in range(5)]
        _record(store, mini)
        by_state = store.db.execute(
            "SELECT substr(custom_id, 1, 1), state, attempts, count(*) FROM requests GROUP BY 1, 2, 3 ORDER BY 1"
        ).fetchall()
        assert by_state == [("m", "in_flight", 1, 5), ("n", "queued", 0, 5)]
        big = _plan(store, _buffer(store, "gpt-4o"))
        assert _ids(store, big) == [f"n{i}" for i in range(5)]


def test_undo_gives_a_claim_back_fresh_when_last_and_row_by_row_otherwise(data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(10))
    with Store(data_dir) as store:
        buffer_id = _buffer(store)
        first = _plan(store, buffer_id, max_requests=4)
        second = _plan(store, buffer_id, max_requests=4)
        submissions.undo(store, first.id, "refused", None, time.time())  # not the last claim: the cursor stays
        assert store.db.execute("SELECT queued, claimed_through FROM buffers").fetchone() == (6, 8)
        third = _plan(store, buffer_id, max_requests=6)
        # the oldest first: the four given back (row by row, attempts at once), then fresh ones
        assert _ids(store, third) == ["o0", "o1", "o2", "o3", "o8", "o9"]
        assert _claim(store, third) == (9, 10)
        assert states(store) == {"submitting": 4, "queued": 6}
        submissions.undo(store, third.id, "refused", None, time.time())  # the last claim: fresh again
        assert states(store) == {"queued": 10}
        assert store.db.execute("SELECT claimed_through FROM buffers").fetchone() == (8,)
        assert store.db.execute("SELECT count(*), sum(attempts) FROM requests").fetchone() == (10, 0)
        _record(store, second)
        fourth = _plan(store, buffer_id)
        assert _ids(store, fourth) == ["o0", "o1", "o2", "o3", "o8", "o9"]
        _record(store, fourth)
        assert states(store) == {"in_flight": 10}
        assert store.db.execute("SELECT count(*), max(number) FROM attempts").fetchone() == (10, 1)


def test_a_request_queued_again_goes_first_with_its_next_attempt_number(data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(3))
    with Store(data_dir) as store:
        buffer_id = _buffer(store)
        intent = _plan(store, buffer_id)
        _record(store, intent)
        ingest = BatchIngest(store, intent.id, Settle(3, True))
        ingest.add([ResultLine("o0", "succeeded", "{}", None), ResultLine("o1", "errored", None, "server_error")],
                   time.time())
        ingest.finish(time.time())  # o2 had no line: missing, queued again too
        enqueue(data_dir, openai_lines(2, "p"))
        retry = _plan(store, buffer_id)
        assert _ids(store, retry) == ["o1", "o2", "p0", "p1"]
        _record(store, retry)
        assert store.db.execute(
            "SELECT r.custom_id, a.number FROM attempts a JOIN requests r ON r.id = a.request_id"
            " WHERE a.batch_id = ? ORDER BY a.id", (retry.id,)
        ).fetchall() == [("o1", 2), ("o2", 2), ("p0", 1), ("p1", 1)]


def test_an_open_claim_is_not_the_buffers_oldest_queued_request(data_dir: Path) -> None:
    enqueue(data_dir, openai_lines(6))
    with Store(data_dir) as store:
        buffer_id = _buffer(store)
        with store.transaction() as db:  # the first three were enqueued an hour earlier
            db.execute("UPDATE requests SET enqueued_at = enqueued_at - 3600, deadline = 1.0 WHERE id <= 3")
        (later,) = store.db.execute("SELECT enqueued_at FROM requests WHERE id = 4").fetchone()
        _plan(store, buffer_id, max_requests=3)
        (row,) = status_queries.buffers(store.db, Config())
        assert (row.queued, row.oldest_enqueued_at, row.earliest_deadline) == (3, later, None)
