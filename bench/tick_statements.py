"""SQL statements of one engine tick with 400 batches in flight, at two request counts.

The store is built for real: requests enqueued (`enqueue_files`), flushed by the engine
(`EngineDriver.tick`, the one driver `batchtop run` uses) into 400 batches at the
simulator (`batchtop.sim`, in-process, stalled: its batches stay in progress), half
OpenAI, half Anthropic. Then the next tick (every batch polled, nothing to flush or
ingest) and the one after it (the steady state) are measured, each with its SQL
statements counted. The same is done with 10 and with 100 requests per batch: a tick
must cost a bounded number of statements, independent of how many requests the
batches hold.

How the statements are counted (nothing of ours is replaced or wrapped; the count is
taken below the store, at the database driver):
  - SQLite: `sqlite3.Connection.set_trace_callback` on the store's connection, which
    SQLite calls once per statement it runs (each row of an `executemany` is a run;
    statements run by triggers arrive prefixed `--` and are counted apart).
  - PostgreSQL: libpq's own protocol trace of the store's connection
    (`store.db.conn.pgconn.trace`), counting what the server completed for us: each
    `CommandComplete` (and `ErrorResponse`) message is one statement executed; each
    `ReadyForQuery` is one round trip. psycopg has no trace callback, and
    pg_stat_statements would need the server preloaded with it; the libpq trace needs
    nothing of the server and sees only this connection.
The lease's background renewal is kept out of the count by a long lease_ttl.

    python bench/tick_statements.py [--batches 400] [--per-batch 10 100] [--store postgresql://...]

Without --store only SQLite is measured; with it, both.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import PgDatabases  # noqa: E402

from batchtop.config import Config, EngineConfig, FlushPolicy  # noqa: E402
from batchtop.engine.driver import EngineDriver  # noqa: E402
from batchtop.intake.files import enqueue_files  # noqa: E402
from batchtop.sim import SimConfig, Simulator  # noqa: E402
from batchtop.store import Store  # noqa: E402
from batchtop.store.postgres import display_url  # noqa: E402


def write_requests(path: Path, batches: int, per_batch: int, tag: str) -> Path:
    """batches x per_batch request lines, half OpenAI, half Anthropic."""
    with path.open("w") as f:
        for b in range(batches):
            for i in range(per_batch):
                n = b * per_batch + i
                prompt = f"item {n}: one line please"
                if b % 2 == 0:
                    line = {"custom_id": f"{tag}-o{n}", "method": "POST", "url": "/v1/chat/completions",
                            "body": {"model": "gpt-4o-mini", "max_tokens": 32,
                                     "messages": [{"role": "user", "content": prompt}]}}
                else:
                    line = {"custom_id": f"{tag}-a{n}",
                            "params": {"model": "claude-sonnet-4-20250514", "max_tokens": 32,
                                       "messages": [{"role": "user", "content": prompt}]}}
                f.write(json.dumps(line, separators=(",", ":")) + "\n")
    return path


def _kind(text: str) -> str:
    """SELECT, INSERT, ...; "trigger" for a statement a trigger ran."""
    words = text.split(None, 1)
    return "trigger" if words and words[0].startswith("--") else (words[0].upper() if words else "?")


@contextmanager
def counting(store: Store, tmp: Path) -> Iterator[Callable[[], tuple[int, int | None, Counter[str]]]]:
    """Count the statements the store's connection runs inside the block; the callable
    (valid after the block) gives (statements, round trips or None, by kind)."""
    kinds: Counter[str] = Counter()
    result: dict[str, int | None] = {"trips": None}
    if store.db.dialect == "sqlite":
        def trace(statement: str) -> None:
            kinds[_kind(statement)] += 1

        store.db.set_trace_callback(trace)  # type: ignore[union-attr]
        try:
            yield lambda: (sum(n for k, n in kinds.items() if k != "trigger"), None, kinds)
        finally:
            store.db.set_trace_callback(None)  # type: ignore[union-attr]
        return
    from psycopg import pq

    pgconn = store.db.conn.pgconn  # type: ignore[union-attr]
    path = tmp / f"libpq-trace-{os.getpid()}-{id(store)}.txt"
    with path.open("w") as f:
        pgconn.trace(f.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            yield lambda: (sum(n for k, n in kinds.items() if k != "trigger"), result["trips"], kinds)
        finally:
            pgconn.untrace()
    # F <len> Query "text" | F <len> Parse "" "text" ... | B <len> CommandComplete "TAG" | B <len> ReadyForQuery
    trips = 0
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split("\t", 3)
        if len(parts) < 3:
            continue
        direction, message = parts[0], parts[2]
        if direction == "B" and message == "CommandComplete":
            tag = parts[3].strip().strip('"') if len(parts) > 3 else "?"
            kinds[tag.split()[0] if tag else "?"] += 1
        elif direction == "B" and message == "ErrorResponse":
            kinds["(error)"] += 1
        elif direction == "B" and message == "ReadyForQuery":
            trips += 1
    result["trips"] = trips
    path.unlink()


def config(per_batch: int) -> Config:
    return Config(
        engine=EngineConfig(poll_interval=3600.0, lease_ttl=3600.0),
        flush=FlushPolicy(max_age=0.0, max_requests=per_batch),
    )


def measure(tmp: Path, batches: int, per_batch: int, url: str | None, tag: str) -> list[tuple[int, int | None, Counter[str]]]:
    """[(statements, round trips, by kind)] of the first tick with every batch in
    flight and of the one after it."""
    source = write_requests(tmp / f"{tag}.jsonl", batches, per_batch, tag)
    store = Store(tmp / tag, url=url)
    try:
        enqueue_files(store, [str(source)])
        with EngineDriver(store, config(per_batch)) as driver:
            for _ in range(5):  # the flush: every buffer due at once, split into `batches` batches
                flushed = driver.tick()
                if flushed.errors:
                    raise SystemExit(f"{tag}: the flush failed: {flushed.errors}")
                (submitted,) = store.db.execute(
                    "SELECT count(*) FROM batches WHERE provider_batch_id IS NOT NULL").fetchone()
                if submitted >= batches:
                    break
            (queued,) = store.db.execute("SELECT count(*) FROM requests WHERE state = 'queued'").fetchone()
            if submitted != batches or queued:
                raise SystemExit(f"{tag}: {submitted} batches submitted ({queued} requests still queued), wanted {batches}")
            out = []
            for _ in range(2):
                with counting(store, tmp) as counted:
                    report = driver.tick()
                if report.submitted or report.ingested or report.errors:
                    raise SystemExit(f"{tag}: the measured tick did more than poll: {report}")
                out.append(counted())
            return out
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=400)
    parser.add_argument("--per-batch", type=int, nargs=2, default=[10, 100], metavar=("FEW", "MANY"))
    parser.add_argument("--store", metavar="URL", help="also measure on this PostgreSQL server (postgresql://...)")
    parser.add_argument("--verbose", action="store_true", help="print the statements by kind")
    args = parser.parse_args()
    few, many = args.per_batch
    failed = False
    with Simulator(SimConfig(stall=True)) as sim, tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.environ.update({
            "OPENAI_API_KEY": "sk-bench", "ANTHROPIC_API_KEY": "sk-bench", "NO_PROXY": "127.0.0.1,localhost",
            "OPENAI_BASE_URL": sim.openai_base_url, "ANTHROPIC_BASE_URL": sim.anthropic_base_url,
        })
        backends: list[tuple[str, str | None]] = [("SQLite", None)]
        databases = PgDatabases(args.store, tmp, "tick") if args.store else None
        if databases is not None:
            backends.append((f"PostgreSQL ({display_url(args.store)})", ""))
        try:
            for name, url in backends:
                results = {}
                for per_batch in (few, many):
                    tag = f"{'pg' if url is not None else 'lite'}{per_batch}"
                    db_url = databases.fresh() if url is not None and databases is not None else None
                    results[per_batch] = measure(tmp, args.batches, per_batch, db_url, tag)
                for label, index in (("first tick", 0), ("next tick", 1)):
                    (s_few, t_few, k_few), (s_many, t_many, k_many) = results[few][index], results[many][index]
                    ok = s_few == s_many
                    failed |= not ok
                    trips = f"; {t_few} and {t_many} round trips" if t_few is not None else ""
                    triggers = k_few.get("trigger", 0), k_many.get("trigger", 0)
                    extra = f"; {triggers[0]} and {triggers[1]} trigger statements" if any(triggers) else ""
                    print(f"{name}, {label} with {args.batches} batches in flight: {s_few} statements at {few} req/batch,"
                          f" {s_many} at {many} req/batch{trips}{extra}"
                          f"  ({'PASS: independent of requests' if ok else 'MISS: grows with requests'})")
                    if args.verbose or not ok:
                        print(f"    at {few}:  {dict(sorted(k_few.items()))}")
                        print(f"    at {many}: {dict(sorted(k_many.items()))}")
        finally:
            if databases is not None:
                databases.close()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
