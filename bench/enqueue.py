"""Enqueue throughput against raw sqlite3 on the same schema, measured in one run.

(a) `batchtop enqueue` of a 100,000-line file (a real subprocess: parse, validate,
    one transaction) vs a raw `executemany` of the same, already-built rows in one
    transaction into a fresh batchtop database. Target: >= 0.5 of raw.
(b) single-request `Client.enqueue`, each call durable on return, vs raw single-row
    autocommit inserts with the same pragmas (WAL, synchronous=FULL). Target: >= 0.5.

    python bench/enqueue.py [--lines 100000] [--single 2000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, openai_line, verdict, write_lines  # noqa: E402

from batchtop import Client  # noqa: E402
from batchtop.store import Store  # noqa: E402

INSERT = (
    "INSERT INTO requests (provider, custom_id, buffer_id, line, bytes, enqueued_at, deadline)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def raw_bulk(tmp: Path, lines: list[str], tag: str) -> float:
    store = Store(tmp / f"raw-{tag}")
    db = store.db
    db.execute("INSERT INTO buffers (provider, endpoint, model) VALUES ('openai', '/v1/chat/completions', 'gpt-4o-mini')")
    now = time.time()
    rows = [("openai", f"req-{i}", 1, line, len(line) + 1, now, None) for i, line in enumerate(lines)]
    start = time.perf_counter()
    db.execute("BEGIN")
    db.executemany(INSERT, rows)
    db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def cli_bulk(tmp: Path, path: Path, tag: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "batchtop", "--data-dir", str(tmp / f"cli-{tag}"), "enqueue", str(path)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def raw_single(tmp: Path, lines: list[str], tag: str) -> float:
    store = Store(tmp / f"raw1-{tag}")
    db = store.db
    db.execute("INSERT INTO buffers (provider, endpoint, model) VALUES ('openai', '/v1/chat/completions', 'gpt-4o-mini')")
    start = time.perf_counter()
    for i, line in enumerate(lines):
        db.execute(INSERT, ("openai", f"req-{i}", 1, line, len(line) + 1, time.time(), None))  # autocommit
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def api_single(tmp: Path, requests: list[dict], tag: str) -> float:
    with Client(tmp / f"api-{tag}") as bt:
        start = time.perf_counter()
        for r in requests:
            bt.enqueue(r)
        return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        path = write_lines(tmp / "in.jsonl", args.lines)
        lines = path.read_text().splitlines()
        counter = iter(range(10_000))
        raw = best_of(args.runs, lambda: raw_bulk(tmp, lines, str(next(counter))))
        cli = best_of(args.runs, lambda: cli_bulk(tmp, path, str(next(counter))))
        ratio = raw / cli
        print(f"(a) bulk enqueue of {args.lines:,} lines")
        print(f"    batchtop enqueue (CLI, subprocess): {cli:.3f} s  {args.lines / cli:>10,.0f} lines/s")
        print(f"    raw executemany, one transaction:   {raw:.3f} s  {args.lines / raw:>10,.0f} lines/s")
        print(f"    ratio {ratio:.2f} of raw (target >= 0.50)  {verdict(ratio, 0.5)}")

        single_lines = [openai_line(i) for i in range(args.single)]
        requests = [json.loads(l) for l in single_lines]
        raw1 = best_of(args.runs, lambda: raw_single(tmp, single_lines, str(next(counter))))
        api1 = best_of(args.runs, lambda: api_single(tmp, requests, str(next(counter))))
        ratio1 = raw1 / api1
        print(f"(b) single-request enqueue, durable per call, {args.single:,} calls")
        print(f"    Client.enqueue:              {api1:.3f} s  {args.single / api1:>8,.0f} req/s")
        print(f"    raw autocommit insert:       {raw1:.3f} s  {args.single / raw1:>8,.0f} req/s")
        print(f"    ratio {ratio1:.2f} of raw (target >= 0.50)  {verdict(ratio1, 0.5)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
