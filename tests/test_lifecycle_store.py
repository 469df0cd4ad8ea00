"""The engine's typed store calls (`store/lifecycle.py`) and the states they use.

Real SQLite files; the provider state is read back in the JSON format older
versions wrote, so a data dir written before the typed record reads the same.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from batchtop.providers import base
from batchtop.states import ENDED, BatchStatus, Outcome, RequestState
from batchtop.store import Store, actions
from batchtop.store.lifecycle import ProviderState
from batchtop.store.schema import _queue_counters_by_trigger

from engine_helpers import enqueue, openai_lines


def test_states_are_the_stored_strings_and_the_old_names_alias_them() -> None:
    assert RequestState.IN_FLIGHT == "in_flight" and BatchStatus.IN_PROGRESS == "in_progress"
    assert base.SUBMITTING is BatchStatus.SUBMITTING and base.SUCCEEDED is Outcome.SUCCEEDED
    assert base.ENDED is ENDED and "completed" in ENDED  # a status read from the database is found
    assert json.dumps({"s": BatchStatus.FAILED}) == '{"s": "failed"}' and f"{RequestState.DEAD}" == "dead"


def test_provider_state_reads_what_older_versions_wrote(data_dir: Path) -> None:
    written = {"status": "backing off 8s", "error": "APIConnectionError: x", "retry_at": 1700000000.0,
               "polled_at": 1699999990.0, "failures": 3}
    with Store(data_dir) as store:
        with store.transaction() as db:
            db.execute("INSERT INTO engine_state (key, value) VALUES ('provider:openai', ?)", (json.dumps(written),))
        state = store.provider_state("openai")
        assert state == ProviderState("backing off 8s", "APIConnectionError: x", 1700000000.0, 1699999990.0, 3)
        assert store.provider_state("anthropic") == ProviderState()  # before its first pass
        store.set_provider_state("openai", state)
        (value,) = store.db.execute("SELECT value FROM engine_state WHERE key = 'provider:openai'").fetchone()
        assert json.loads(value) == written  # the same format: no key for what is unset
        store.set_provider_state("anthropic", ProviderState(status="auth error (401)", auth_failed=True))
        assert store.provider_states()["anthropic"].auth_failed


def test_the_operators_flush_clears_every_provider_backoff_and_nothing_else(data_dir: Path) -> None:
    with Store(data_dir) as store:
        store.set_provider_state("openai", ProviderState(status="backing off", retry_at=2e9, polled_at=1e9, failures=2))
        actions.request_flush(store, None, 1e9)
        assert store.provider_state("openai") == ProviderState(status="backing off", polled_at=1e9, failures=2)


def test_upgrade_recomputes_counters_that_had_drifted(tmp_path: Path) -> None:
    """Stores written before the counter triggers start exact, whatever they held."""
    data_dir = tmp_path / "d"
    enqueue(data_dir, openai_lines(7))
    db = sqlite3.connect(data_dir / "batchtop.sqlite3", isolation_level=None)
    (bytes_,) = db.execute("SELECT sum(bytes) FROM requests").fetchone()
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'requests_queue_%'"):
        db.execute(f"DROP TRIGGER {name}")
    db.execute("UPDATE buffers SET queued = 99, queued_bytes = 5")  # a drift of the hand-kept days
    db.execute("BEGIN")
    _queue_counters_by_trigger(db)  # the migration, as an upgrade runs it
    db.execute("COMMIT")
    db.close()
    with Store(data_dir) as store:
        assert store.db.execute("SELECT queued, queued_bytes FROM buffers").fetchone() == (7, bytes_)
        enqueue(data_dir, openai_lines(1, prefix="later"))  # and the triggers keep them so
        assert store.db.execute("SELECT queued FROM buffers").fetchone() == (8,)
