"""Hardening: a whole run with 20% of every HTTP call answered 429/500.

The simulator injects the faults on every route (uploads, creates, lists, retrieves,
result downloads) before the handler runs, so a faulted call never changed anything
at the provider. The SDKs retry twice themselves (honouring retry-after-ms); what
gets past them reaches the engine, which must back off, say so in the status, and
still end every request exactly once per recorded attempt.

The engine is driven tick by tick in-process with a clock that runs SPEED times
faster than the wall clock: its backoff and refusal waits (up to 30 s after a 429
on a batch create) pass quickly, while the simulator works in real time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from batchtop.config import FlushPolicy
from batchtop.engine.tick import Engine
from batchtop.sim import Simulator
from batchtop.store import Store
from batchtop.views.status import collect

from engine_helpers import anthropic_lines, close, config, enqueue, gemini_lines, openai_lines, sim, states, tick  # noqa: F401

N_PER_PROVIDER = 1500
N_GEMINI = 300
"""Fewer: google-genai retries nothing itself, so every fault on a Gemini call reaches
the engine, which backs the provider off."""
SPEED = 20.0
WALL_LIMIT = 150.0


def _backoffs(store: Store) -> list[str]:
    """What the store says right now about providers backing off or buffers held."""
    seen = []
    for key, value in store.db.execute("SELECT key, value FROM engine_state WHERE key LIKE 'provider:%'"):
        status = json.loads(value).get("status") or ""
        if status.startswith("backing off"):
            seen.append(f"{key}: {status}")
    for name, reason in store.db.execute(
        "SELECT provider || ':' || model, held_reason FROM buffers WHERE held_reason IS NOT NULL AND queued > 0"
    ):
        seen.append(f"buffer {name}: {reason}")
    return seen


def _shown_in_status(store: Store, engine: Engine) -> bool:
    """The status document (what --once and the console render) shows the backoff too."""
    doc = collect(store.db, engine.config, engine.now()).to_json()
    providers = doc["providers"].values()
    return any((p["status"] or "").startswith("backing off") for p in providers) or any(
        b["held_reason"] for b in doc["buffers"] if b["queued"]
    )


@pytest.mark.slow
def test_twenty_percent_faults_on_every_route_everything_ends_exactly_once(sim: Simulator, data_dir: Path) -> None:
    sim.config.fault_rate = 0.2
    sim.config.first_try_failure_rate = 0.05  # some requests need a second attempt too
    sim.config.per_request_s = 0.0002
    enqueue(data_dir, openai_lines(N_PER_PROVIDER) + anthropic_lines(N_PER_PROVIDER) + gemini_lines(N_GEMINI))
    t0 = time.time()

    def fast_clock() -> float:
        return t0 + (time.time() - t0) * SPEED

    with Store(data_dir) as store:
        engine = Engine(store, config(flush=FlushPolicy(max_age=0.0, max_requests=10)), now=fast_clock)
        backoffs: list[str] = []
        status_showed = False
        engine_errors = 0
        ticks = 0
        end = time.monotonic() + WALL_LIMIT
        try:
            while True:
                report = tick(engine)  # a failing provider is reported, never raised
                ticks += 1
                engine_errors += len(report.errors)
                now_seen = _backoffs(store)
                if now_seen:
                    backoffs += now_seen
                    status_showed = status_showed or _shown_in_status(store, engine)
                if set(states(store)) <= {"succeeded", "dead"}:
                    break
                assert time.monotonic() < end, (
                    f"not done after {WALL_LIMIT}s / {ticks} ticks: {states(store)}, last backoffs {backoffs[-3:]}"
                )
                time.sleep(0.02)
        finally:
            close(engine)

        faults = sum(r.fault for r in sim.request_log)
        # ~1,400 calls, ~20% faulted: the SDK's two retries hide most (0.2^3 get through)
        assert faults > 150, f"only {faults} faults injected: the test proves little"
        assert engine_errors, f"{faults} faults injected and none reached the engine: the test proves little"
        # those that got through backed the provider off (or held a buffer), and the status said so
        assert backoffs, f"{engine_errors} provider errors but the engine never backed off or held a buffer"
        assert status_showed, f"the store recorded backoffs {backoffs[:3]} but the status document did not show them"

        # everything ended, and succeeded
        rows = store.db.execute("SELECT provider, custom_id, state, attempts FROM requests").fetchall()
        assert len(rows) == 2 * N_PER_PROVIDER + N_GEMINI
        assert sum(r.fault for r in sim.request_log if r.provider == "gemini"), "no fault hit a Gemini call"
        assert {r[2] for r in rows} == {"succeeded"}, states(store)
        # nothing duplicated: never submitted more often than the attempts we recorded
        submitted = sim.submissions
        over = [(p, c, n, submitted[(p, c)]) for p, c, _, n in rows if submitted[(p, c)] > n]
        assert not over, f"submitted more often than recorded: {over[:5]}"
        assert all(submitted[(p, c)] >= 1 for p, c, _, _ in rows)
        # a request whose attempts never failed went to the provider exactly once per attempt
        failed_ids = {
            (p, c)
            for p, c in store.db.execute(
                "SELECT DISTINCT r.provider, r.custom_id FROM attempts a JOIN requests r ON r.id = a.request_id"
                " WHERE a.outcome != 'succeeded'"
            )
        }
        clean = [(p, c, n) for p, c, _, n in rows if (p, c) not in failed_ids]
        assert clean and all(submitted[(p, c)] == n == 1 for p, c, n in clean), [
            (p, c, n, submitted[(p, c)]) for p, c, n in clean if submitted[(p, c)] != n
        ][:5]
        assert failed_ids, "no attempt failed: first_try_failure_rate had no effect"
        # every recorded attempt has an outcome, exactly one success per request
        assert store.db.execute("SELECT count(*) FROM attempts WHERE outcome IS NULL").fetchone() == (0,)
        assert store.db.execute(
            "SELECT count(*), count(DISTINCT request_id) FROM attempts WHERE outcome = 'succeeded'"
        ).fetchone() == (len(rows), len(rows))
        assert store.db.execute("SELECT sum(attempts) FROM requests").fetchone() == (
            store.db.execute("SELECT count(*) FROM attempts").fetchone()[0],
        )
        # the rollups add up to the attempts, faults or not
        rolled = store.db.execute("SELECT sum(attempts), sum(input_tokens), sum(output_tokens) FROM usage_rollup").fetchone()
        raw = store.db.execute("SELECT count(*), sum(input_tokens), sum(output_tokens) FROM attempts").fetchone()
        assert rolled == raw
        # the queue counters the views read are exact again
        assert store.db.execute("SELECT sum(queued), sum(queued_bytes) FROM buffers").fetchone() == (0, 0)
