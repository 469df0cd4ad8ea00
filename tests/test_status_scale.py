"""A status refresh does the same work whatever the store has done.

The console reads the status every second and `--once` runs from cron, so
`status.collect` must not read more of the database as batches end, attempts pile up
and anomalies are recorded. Measured as SQLite's own count of virtual-machine steps
(a progress handler), which is exact and does not depend on the machine's load; the
stores are built in SQL by the console benchmark's builder (bench/console.py), after
the store's own code has created the schema.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from pathlib import Path

import pytest

from batchtop.config import Config
from batchtop.store import Store
from batchtop.views import status

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import console as bench  # noqa: E402


def _steps(data_dir: Path) -> tuple[int, list[str]]:
    """VM steps (in hundreds) of one collect, and the SQL it ran."""
    with Store(data_dir, create=False) as store:
        status.collect(store.db, Config(), time.time())  # warm: prices, statement cache
        ticks = [0]
        statements: list[str] = []

        def tick() -> int:
            ticks[0] += 1
            return 0

        store.db.set_progress_handler(tick, 100)
        store.db.set_trace_callback(statements.append)
        status.collect(store.db, Config(), time.time())
        store.db.set_progress_handler(None, 0)
        store.db.set_trace_callback(None)
        return ticks[0], statements


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    built = {}
    for name, shape in {
        # at least the RECENT_ENDED batches the status lists, then 100 times as many
        "small": bench.Shape("small", ended=status.RECENT_ENDED, in_flight=10, per_in_flight=20, queued=100, per_ended=10),
        "done": bench.Shape("done", ended=100 * status.RECENT_ENDED, in_flight=10, per_in_flight=20, queued=100,
                            per_ended=10),
    }.items():
        built[name] = tmp_path_factory.mktemp(name) / "data"
        bench.build(built[name], shape, time.time())
    return built


def test_collect_does_the_same_work_at_100_times_the_ended_batches(stores: dict[str, Path]) -> None:
    small, _ = _steps(stores["small"])
    done, _ = _steps(stores["done"])
    with sqlite3.connect(stores["done"] / "batchtop.sqlite3") as db:
        ended, anomalies, attempts = db.execute(
            "SELECT (SELECT count(*) FROM batches WHERE ingested_at IS NOT NULL),"
            " (SELECT count(*) FROM anomalies), (SELECT count(*) FROM attempts)"
        ).fetchone()
    assert (ended, anomalies, attempts) == (5_000, 1_002, 50_200)  # the store did 100x the work
    assert done <= 1.2 * small, (small, done)


def test_no_statement_of_collect_scans_a_table_that_grows(stores: dict[str, Path]) -> None:
    """Every statement reads an index or a small table (buffers, lease, rollups): a plan
    that scans batches, requests, attempts or anomalies whole would grow with the store."""
    _, statements = _steps(stores["done"])
    assert statements
    with sqlite3.connect(stores["done"] / "batchtop.sqlite3") as db:
        for sql in statements:
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                continue
            plan = [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}")]
            for step in plan:
                for table in ("batches", "requests", "attempts", "anomalies"):
                    if step.startswith(f"SCAN {table}") and "USING" not in step:
                        pytest.fail(f"{sql!r} scans {table}: {plan}")
                assert not step.startswith("SCAN attempts") and "anomalies_once" not in step, (sql, plan)
