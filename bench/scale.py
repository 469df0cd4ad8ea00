"""Scale run: N requests through the whole system, then an exactly-once audit.

Half of the requests are enqueued from JSONL files (`batchtop enqueue`, one
subprocess per file, one after another) and half by concurrent Python-API writer
processes (`Client.enqueue_many` in chunks, plus some single `Client.enqueue`
calls), while `batchtop run` works against `batchtop sim` (its own process). Small
flushes (--batch-size) and slow simulated work (--per-request-s) keep hundreds of
batches in flight. A share of first tries fail (--first-try-failure-rate) and a few
requests always fail (`failalways` ids), so retries and dead letters are exercised.

When everything has settled the script audits the store and the simulator (through
its read-only GET /_sim/submissions):
  - the store holds exactly the N requests enqueued, each once;
  - every request has exactly one successful result, or is a dead letter;
  - no request was submitted to a provider more often than the attempts recorded
    for it, and no request we never enqueued reached a provider.
It prints throughput, the engine's peak RSS, the database size and the wall time;
exit status 1 if the audit fails.

    python bench/scale.py [--requests 1000000] [--writers 4] [--batch-size 2500]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

SINGLE_CALLS = 200  # each writer starts with this many durable single-request calls
CHUNK = 1000  # then enqueue_many in chunks of this many
DEAD_EVERY = 5_000  # one request in this many always fails (ends a dead letter)

_WRITER = r"""
import sys
from batchtop import Client

data_dir, tag, start, count, single, chunk, dead_every = sys.argv[1:8]
start, count, single, chunk, dead_every = int(start), int(count), int(single), int(chunk), int(dead_every)
sys.path.insert(0, sys.argv[8])
from scale import request

with Client(data_dir) as bt:
    i = start
    end = start + count
    while i < end and i < start + single:
        bt.enqueue(request(i, tag, dead_every))
        i += 1
    while i < end:
        n = min(chunk, end - i)
        bt.enqueue_many([request(j, tag, dead_every) for j in range(i, i + n)])
        i += n
print(count)
"""


def request(i: int, tag: str, dead_every: int) -> dict:
    """Request i of a source: OpenAI for even i, Anthropic for odd; ~250 bytes each."""
    fail = "failalways" if dead_every and i % dead_every == dead_every - 1 else ""
    prompt = f"Summarize item {i} of {tag} in one line. " + "lorem ipsum " * 8
    if i % 2 == 0:
        return {"custom_id": f"{tag}-{fail}{i}", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "max_tokens": 64, "messages": [{"role": "user", "content": prompt}]}}
    return {"custom_id": f"{tag}_{fail}{i}",
            "params": {"model": "claude-sonnet-4-20250514", "max_tokens": 64,
                       "messages": [{"role": "user", "content": prompt}]}}


def write_file(path: Path, tag: str, n: int) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps(request(i, tag, DEAD_EVERY), separators=(",", ":")) + "\n")
    return path


def start_sim(args: argparse.Namespace, env: dict[str, str]) -> tuple[subprocess.Popen[str], dict[str, str]]:
    sim = subprocess.Popen(
        [sys.executable, "-m", "batchtop", "sim", "--port", "0", "--per-request-s", str(args.per_request_s),
         "--first-try-failure-rate", str(args.first_try_failure_rate)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**env, "PYTHONUNBUFFERED": "1"},
    )
    urls = {}
    assert sim.stdout is not None
    while len(urls) < 2:
        line = sim.stdout.readline()
        if not line:
            raise SystemExit(f"batchtop sim exited early ({sim.wait()})")
        name, _, value = line.strip().partition("=")
        urls[name] = value
    return sim, urls


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """Peak (VmHWM) or current (VmRSS) resident set of a live process, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Probe:
    """Cheap progress figures from the store, on a read-only connection."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.db: sqlite3.Connection | None = None

    def sample(self) -> dict[str, int] | None:
        if self.db is None:
            if not self.db_path.exists():
                return None
            self.db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=60)
        try:
            (enqueued,) = self.db.execute("SELECT coalesce(max(id), 0) FROM requests").fetchone()
            in_flight, batches = self.db.execute(
                "SELECT count(*) FILTER (WHERE ingested_at IS NULL AND provider_batch_id IS NOT NULL),"
                " count(*) FILTER (WHERE provider_batch_id IS NOT NULL) FROM batches"
            ).fetchone()
            (succeeded,) = self.db.execute(
                "SELECT coalesce(sum(attempts), 0) FROM usage_rollup WHERE succeeded = 1"
            ).fetchone()
            (dead,) = self.db.execute("SELECT count(*) FROM requests WHERE state = 'dead'").fetchone()
            (queued,) = self.db.execute("SELECT coalesce(sum(queued), 0) FROM buffers").fetchone()
        except sqlite3.OperationalError:  # schema not there yet
            return None
        return {"enqueued": enqueued, "in_flight": in_flight, "batches": batches, "succeeded": succeeded,
                "dead": dead, "queued": queued}

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def submissions(base_url: str) -> dict[tuple[str, str], int]:
    with urllib.request.urlopen(base_url + "/_sim/submissions", timeout=300) as response:
        body = json.loads(response.read())
    return {(p, cid): n for p, ids in body["submissions"].items() for cid, n in ids.items()}


def audit(db_path: Path, expected: int, sent: dict[tuple[str, str], int]) -> list[str]:
    """Everything that is wrong, as sentences; empty when the run was exactly once."""
    problems = []
    db = sqlite3.connect(db_path)
    try:
        (n, distinct) = db.execute("SELECT count(*), count(DISTINCT provider || ' ' || custom_id) FROM requests").fetchone()
        if n != expected or distinct != expected:
            problems.append(f"{n} requests ({distinct} distinct) in the store, {expected} enqueued")
        states = dict(db.execute("SELECT state, count(*) FROM requests GROUP BY state").fetchall())
        if set(states) - {"succeeded", "dead"}:
            problems.append(f"requests not settled: {states}")
        doubles = db.execute(
            "SELECT count(*) FROM (SELECT request_id FROM attempts WHERE outcome = 'succeeded'"
            " GROUP BY request_id HAVING count(*) > 1)"
        ).fetchone()[0]
        if doubles:
            problems.append(f"{doubles} requests have more than one successful result")
        with_result = db.execute(
            "SELECT count(DISTINCT a.request_id) FROM attempts a JOIN requests r ON r.id = a.request_id"
            " WHERE a.outcome = 'succeeded' AND a.response IS NOT NULL AND r.state = 'succeeded'"
        ).fetchone()[0]
        if with_result != states.get("succeeded", 0):
            problems.append(f"{states.get('succeeded', 0)} requests succeeded but {with_result} have a stored result")
        dead_with_success = db.execute(
            "SELECT count(*) FROM requests r WHERE r.state = 'dead'"
            " AND EXISTS (SELECT 1 FROM attempts a WHERE a.request_id = r.id AND a.outcome = 'succeeded')"
        ).fetchone()[0]
        if dead_with_success:
            problems.append(f"{dead_with_success} dead letters have a successful result")
        over = 0
        examples = []
        known = 0
        never = 0
        for provider, cid, attempts in db.execute("SELECT provider, custom_id, attempts FROM requests"):
            times = sent.get((provider, cid), 0)
            known += times > 0
            if times > attempts:
                over += 1
                if len(examples) < 5:
                    examples.append((provider, cid, attempts, times))
            never += times == 0
        if never:
            problems.append(f"{never} requests never reached a provider")
        if over:
            problems.append(f"{over} requests submitted more often than their recorded attempts, e.g. {examples}")
        strangers = len(sent) - known
        if strangers:
            problems.append(f"{strangers} custom_ids reached a provider that the store does not hold")
        rolled = db.execute("SELECT sum(attempts), sum(input_tokens), sum(output_tokens) FROM usage_rollup").fetchone()
        raw = db.execute("SELECT count(*), sum(input_tokens), sum(output_tokens) FROM attempts").fetchone()
        if rolled != raw:
            problems.append(f"usage rollup {rolled} != attempts {raw}")
    finally:
        db.close()
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000, help="total requests (default 1,000,000)")
    parser.add_argument("--writers", type=int, default=4, help="concurrent Python-API writer processes")
    parser.add_argument("--files", type=int, default=4, help="input files for `batchtop enqueue`")
    parser.add_argument("--file-share", type=float, default=0.5, help="share of the requests that come from files")
    parser.add_argument("--batch-size", type=int, default=2500, help="flush max_requests: small, for many batches")
    parser.add_argument("--per-request-s", type=float, default=0.02, help="simulated work per request")
    parser.add_argument("--first-try-failure-rate", type=float, default=0.01)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="give up after this many seconds")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and leave it (default: a temp dir)")
    args = parser.parse_args()

    n = args.requests
    from_files = int(n * args.file_share) // args.files * args.files
    per_file = from_files // args.files
    from_writers = n - from_files
    per_writer = [from_writers // args.writers + (w < from_writers % args.writers) for w in range(args.writers)]

    tmp_ctx = tempfile.TemporaryDirectory() if args.keep is None else None
    tmp = Path(tmp_ctx.name if tmp_ctx else args.keep)
    tmp.mkdir(parents=True, exist_ok=True)
    data_dir = tmp / "data"
    db_path = data_dir / "batchtop.sqlite3"
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "OPENAI_API_KEY": "sk-bench", "ANTHROPIC_API_KEY": "sk-bench"}

    print(f"scale run: {n:,} requests ({from_files:,} from {args.files} files, {from_writers:,} from "
          f"{args.writers} writer processes), batches of {args.batch_size:,}, {os.cpu_count()} CPUs")
    t = time.perf_counter()
    files = [write_file(tmp / f"in{k}.jsonl", f"f{k}", per_file) for k in range(args.files)]
    print(f"  wrote input files in {time.perf_counter() - t:.1f} s "
          f"({sum(f.stat().st_size for f in files) / 1e6:.0f} MB)")
    (tmp / "writer.py").write_text(_WRITER)
    config = tmp / "config.toml"
    config.write_text(
        f"[engine]\npoll_interval = {args.poll_interval}\nlease_ttl = 120\nmax_attempts = 3\n\n"
        f"[flush]\nmax_age = 0\nmax_requests = {args.batch_size}\n"
    )

    sim, urls = start_sim(args, env)
    env.update(urls)
    engine_log = (tmp / "engine.log").open("wb")
    probe = Probe(db_path)
    engine = None
    try:
        start = time.perf_counter()
        engine = subprocess.Popen(
            [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "--config", str(config), "run"],
            stdout=subprocess.DEVNULL, stderr=engine_log, env=env,
        )
        writers = [
            subprocess.Popen(
                [sys.executable, str(tmp / "writer.py"), str(data_dir), f"w{w}", "0", str(per_writer[w]),
                 str(SINGLE_CALLS), str(CHUNK), str(DEAD_EVERY), str(Path(__file__).parent)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            )
            for w in range(args.writers)
        ]
        file_results: queue.Queue[tuple[str, int, bytes, float]] = queue.Queue()

        def enqueue_files() -> None:
            for f in files:
                proc = subprocess.run(
                    [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "enqueue", str(f)],
                    capture_output=True, env=env,
                )
                file_results.put((f.name, proc.returncode, proc.stderr, time.perf_counter()))

        feeder = threading.Thread(target=enqueue_files, daemon=True)
        feeder.start()

        enqueue_done: float | None = None
        peak_in_flight = 0
        sim_rss = 0.0
        last_print = 0.0
        writer_errors: list[str] = []
        while True:
            time.sleep(1.0)
            now = time.perf_counter() - start
            sample = probe.sample()
            sim_rss = max(sim_rss, rss_mb(sim.pid, "VmRSS"))
            if engine.poll() is not None:
                raise SystemExit(f"the engine exited ({engine.returncode}); see {tmp / 'engine.log'}")
            if enqueue_done is None and not feeder.is_alive() and all(w.poll() is not None for w in writers):
                enqueue_done = now
                for w in writers:
                    out, err = w.communicate()
                    if w.returncode or err:
                        writer_errors.append(f"writer exited {w.returncode}: {err.decode(errors='replace')[-500:]}")
                while not file_results.empty():
                    name, code, err, _ = file_results.get()
                    if code or err:
                        writer_errors.append(f"batchtop enqueue {name} exited {code}: {err.decode(errors='replace')[-500:]}")
                if writer_errors:
                    raise SystemExit("enqueue failed:\n" + "\n".join(writer_errors))
                print(f"  [{now:7.1f}s] all {n:,} enqueued ({n / now:,.0f} req/s while the engine ran)")
            if sample is None:
                continue
            peak_in_flight = max(peak_in_flight, sample["in_flight"])
            if now - last_print >= 15:
                last_print = now
                print(f"  [{now:7.1f}s] enqueued {sample['enqueued']:>9,}  queued {sample['queued']:>9,}  "
                      f"batches {sample['batches']:>5,} ({sample['in_flight']:>4} in flight)  "
                      f"succeeded {sample['succeeded']:>9,}  dead {sample['dead']:>4}  "
                      f"engine RSS {rss_mb(engine.pid, 'VmRSS'):6.0f} MB", flush=True)
            if enqueue_done is not None and sample["succeeded"] + sample["dead"] >= n:
                break
            if now > args.timeout:
                raise SystemExit(f"not settled after {args.timeout:.0f} s: {sample}")
        settled = time.perf_counter() - start
        engine_peak = rss_mb(engine.pid, "VmHWM")
        engine.send_signal(signal.SIGTERM)
        _, status, usage = os.wait4(engine.pid, 0)
        engine.returncode = os.waitstatus_to_exitcode(status)
        engine_peak = max(engine_peak, usage.ru_maxrss / 1024)
        wall = time.perf_counter() - start

        probe.close()
        t = time.perf_counter()
        sent = submissions(urls["ANTHROPIC_BASE_URL"])
        problems = audit(db_path, n, sent)
        audit_s = time.perf_counter() - t
        if engine.returncode != 0:
            problems.append(f"the engine exited {engine.returncode} on SIGTERM")
        log = (tmp / "engine.log").read_bytes()
        if b"Traceback" in log:
            problems.append(f"the engine logged a traceback; see {tmp / 'engine.log'}")

        db = sqlite3.connect(db_path)
        states = dict(db.execute("SELECT state, count(*) FROM requests GROUP BY state").fetchall())
        (batches,) = db.execute("SELECT count(*) FROM batches WHERE provider_batch_id IS NOT NULL").fetchone()
        retried = db.execute("SELECT count(*) FROM requests WHERE attempts > 1").fetchone()[0]
        db.close()
        size = sum(p.stat().st_size for p in data_dir.iterdir() if p.name.startswith("batchtop.sqlite3"))

        print()
        print(f"requests           {n:,}: {states.get('succeeded', 0):,} succeeded, {states.get('dead', 0):,} dead letters,"
              f" {retried:,} needed more than one attempt")
        print(f"batches            {batches:,} submitted, peak {peak_in_flight:,} in flight at once")
        print(f"enqueue            {enqueue_done:.1f} s for all {n:,} ({n / enqueue_done:,.0f} req/s, concurrent with the engine)")
        print(f"end to end         {settled:.1f} s from the first enqueue to the last result stored ({n / settled:,.0f} req/s)")
        print(f"wall time          {wall:.1f} s (audit {audit_s:.1f} s more)")
        print(f"engine peak RSS    {engine_peak:,.0f} MB   (simulator peak RSS seen: {sim_rss:,.0f} MB)")
        print(f"database size      {size / 1e6:,.0f} MB ({size / n:,.0f} bytes per request, WAL included)")
        print(f"submissions        {sum(sent.values()):,} request submissions seen by the simulator for "
              f"{len(sent):,} custom_ids")
        if problems:
            print("AUDIT FAILED:")
            for p in problems[:30]:
                print("  -", p)
            return 1
        print("audit              OK: every request has exactly one successful result or is a dead letter;"
              " none submitted more often than its recorded attempts")
        return 0
    finally:
        if engine is not None and engine.poll() is None and engine.returncode is None:
            engine.kill()
            engine.wait()
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(timeout=60)
        except subprocess.TimeoutExpired:
            sim.kill()
        engine_log.close()
        if tmp_ctx is not None:
            tmp_ctx.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
