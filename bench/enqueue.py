"""Enqueue throughput against raw sqlite3 on the same schema, measured in one run.

(a) `batchtop enqueue` of a 100,000-line file (a real subprocess: parse, validate,
    one transaction) vs a raw `executemany` of the same, already-built rows in one
    transaction into a fresh batchtop database. Target: >= 0.5 of raw.
(b) single-request `Client.enqueue`, each call durable on return, vs raw single-row
    autocommit inserts with the same pragmas (WAL, synchronous=FULL). Target: >= 0.5.

    python bench/enqueue.py [--lines 100000] [--single 2000]

With `--store postgresql://...` (a role that may create databases), (a) is measured on
PostgreSQL instead, each run into a fresh database copied from a migrated template:
ours is `batchtop --store URL enqueue FILE` (a subprocess, as above) once the CLI has
`--store`, until then `enqueue_files` into `Store(url=...)` in-process (the path the CLI
takes; it says which); raw is reading the file, `json.loads` of each line, then ONE
psycopg `COPY` of the rows (the requests' columns: provider, custom_id, buffer_id, line,
bytes, enqueued_at, deadline, tier) in one transaction into a scratch table made
`LIKE requests INCLUDING ALL` (the same columns, defaults and indexes; no triggers).
Target: >= 0.5 of raw, i.e. ours takes at most twice raw's time.

    python bench/enqueue.py --store postgresql://user:pass@host:5432/postgres
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
from _common import PgDatabases, best_of, openai_line, verdict, write_lines  # noqa: E402

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


# -- PostgreSQL (--store) ----------------------------------------------------------------

_PG_COLUMNS = "provider, custom_id, buffer_id, line, bytes, enqueued_at, deadline, tier"
def cli_has_store() -> bool:
    """Whether this batchtop's CLI takes the global `--store URL` yet."""
    out = subprocess.run([sys.executable, "-m", "batchtop", "--help"], capture_output=True, text=True).stdout
    return "--store" in out


def pg_ours(tmp: Path, path: Path, url: str, via_cli: bool, tag: str) -> float:
    if via_cli:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "batchtop", "--data-dir", str(tmp / f"pgcli-{tag}"), "--store", url,
             "enqueue", str(path)],
            check=True, stdout=subprocess.DEVNULL,
        )
        return time.perf_counter() - start
    from batchtop.intake.files import enqueue_files

    store = Store(tmp / f"pgapi-{tag}", url=url)  # a migrated store: opening it is not part of the enqueue
    try:
        start = time.perf_counter()
        enqueue_files(store, [str(path)])
        elapsed = time.perf_counter() - start
        (n,) = store.db.execute("SELECT count(*) FROM requests").fetchone()
    finally:
        store.close()
    assert n > 0
    return elapsed


def pg_raw(path: Path, url: str) -> float:
    """json.loads of each line, then one COPY of the rows in one transaction."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET search_path TO batchtop")
        conn.execute("CREATE TABLE raw_requests (LIKE requests INCLUDING ALL)")
        (buffer_id,) = conn.execute(
            "INSERT INTO buffers (provider, endpoint, model) VALUES ('openai', '/v1/chat/completions', 'gpt-4o-mini')"
            " RETURNING id"
        ).fetchone()
        start = time.perf_counter()
        now = time.time()
        with path.open() as f:
            objs = [(json.loads(line), line.rstrip("\n")) for line in f]
        with conn.transaction(), conn.cursor().copy(f"COPY raw_requests ({_PG_COLUMNS}) FROM STDIN") as copy:
            for obj, line in objs:
                copy.write_row(("openai", obj["custom_id"], buffer_id, line, len(line) + 1, now, None, None))
        elapsed = time.perf_counter() - start
        (n,) = conn.execute("SELECT count(*) FROM raw_requests").fetchone()
    assert n == len(objs)
    return elapsed


def pg_main(args: argparse.Namespace) -> int:
    from batchtop.store.postgres import display_url

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        path = write_lines(tmp / "in.jsonl", args.lines)
        via_cli = cli_has_store()
        databases = PgDatabases(args.store, tmp, "enqueue")
        try:
            counter = iter(range(10_000))
            raw = best_of(args.runs, lambda: pg_raw(path, databases.fresh()))
            ours = best_of(args.runs, lambda: pg_ours(tmp, path, databases.fresh(), via_cli, str(next(counter))))
        finally:
            databases.close()
        ratio = raw / ours
        what = "batchtop --store URL enqueue (CLI, subprocess)" if via_cli else "enqueue_files into Store(url=) (in-process)"
        print(f"(a) bulk enqueue of {args.lines:,} lines into PostgreSQL ({display_url(args.store)})")
        print(f"    {what}: {ours:.3f} s  {args.lines / ours:>10,.0f} lines/s")
        print(f"    raw json.loads + one COPY, one transaction: {raw:.3f} s  {args.lines / raw:>10,.0f} lines/s")
        print(f"    ratio {ratio:.2f} of raw (target >= 0.50: at most 2x raw's time)  {verdict(ratio, 0.5)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store", metavar="URL", help="measure (a) on this PostgreSQL server instead (postgresql://...)")
    args = parser.parse_args()
    if args.store:
        return pg_main(args)
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
