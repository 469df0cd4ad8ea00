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

With `--store postgresql://...` (a role that may create databases) the run goes to a
fresh PostgreSQL database instead, as a team's would: 8 writer processes by default
(--writers), and TWO engines at all times, the active one (the lease's holder)
SIGKILLed every --kill-every seconds (jittered) until everything has settled; a killed
engine is started again at once, as the new standby. The engines are `batchtop
--store URL run --standby` when the CLI has both; `batchtop --store URL run` restarted
whenever it exits busy when it has no `--standby` yet; until the CLI takes `--store`
at all, a small runner doing what `batchtop run` does (`entrypoints.run`'s driver on
`Store(url=...)`), retrying every half second while another engine holds the lease.
Writers use `Client` on the URL's store (its store swapped for `Store(url=)` until
`Client` takes a store URL); file enqueues use `batchtop --store URL enqueue` or, before
the CLI takes `--store`, `enqueue_files` on `Store(url=)`. The audit is the same.

    python bench/scale.py --store postgresql://user:pass@host/postgres --requests 200000
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import random
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
import inspect
import sys
from pathlib import Path
from batchtop import Client

data_dir, tag, start, count, single, chunk, dead_every = sys.argv[1:8]
start, count, single, chunk, dead_every = int(start), int(count), int(single), int(chunk), int(dead_every)
sys.path.insert(0, sys.argv[8])
url = sys.argv[9] if len(sys.argv) > 9 else None
from scale import request


def client():
    if url is None:
        return Client(data_dir)
    params = inspect.signature(Client).parameters
    for name in ("store", "url"):
        if name in params:
            return Client(data_dir, **{name: url})
    from batchtop.store import Store

    bt = Client(data_dir)  # this Client has no store URL yet: the same calls on the URL's store
    bt._store.close()
    bt._store = Store(Path(data_dir), url=url)
    return bt


with client() as bt:
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


_ENQUEUE_FILE = r"""
import sys
from pathlib import Path
from batchtop.intake.files import enqueue_files
from batchtop.store import Store

data_dir, url, path = sys.argv[1:4]
with Store(Path(data_dir), url=url) as store:
    enqueue_files(store, [path])
"""

_ENGINE = r"""
import logging, signal, sys, time
from pathlib import Path
from batchtop.config import load_config
from batchtop.engine import entrypoints
from batchtop.engine.driver import EngineDriver
from batchtop.store import Store, lease

data_dir, config_path, url = sys.argv[1:4]
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
config = load_config(Path(config_path), required=True)
while True:  # a standby: wait while another engine holds the lease, then run as `batchtop run` does
    with Store(Path(data_dir), url=url) as store:
        with EngineDriver(store, config, on_tick=lambda f: f.add_done_callback(entrypoints._log_tick)) as driver:
            try:
                driver.engine.lease.acquire()
            except lease.EngineBusy:
                driver.close(release=False)
            else:
                logging.info("engine running (took the lease)")
                driver.serve(signals=(signal.SIGINT, signal.SIGTERM))
                driver.close()
                break
    time.sleep(0.5)
"""


def cli_has(args: list[str], flag: str, env: dict[str, str]) -> bool:
    """Whether `batchtop ARGS --help` lists `flag`."""
    out = subprocess.run([sys.executable, "-m", "batchtop", *args, "--help"], capture_output=True, text=True, env=env)
    return flag in out.stdout


class Engines:
    """Two engine processes on one PostgreSQL store at all times: whichever exits (killed,
    or a busy `batchtop run` without --standby) is started again."""

    def __init__(self, tmp: Path, data_dir: Path, config: Path, url: str, env: dict[str, str]) -> None:
        self.tmp, self.data_dir, self.config, self.url, self.env = tmp, data_dir, config, url, env
        self.has_store = cli_has([], "--store", env)
        self.has_standby = self.has_store and cli_has(["run"], "--standby", env)
        (tmp / "engine.py").write_text(_ENGINE)
        self.procs: list[subprocess.Popen[bytes] | None] = [None, None]
        self.started = 0
        self.restarts_busy = 0
        self.exits: list[int] = []
        self.logs: list[Path] = []

    @property
    def kind(self) -> str:
        if self.has_standby:
            return "`batchtop --store URL run --standby`"
        if self.has_store:
            return "`batchtop --store URL run`, restarted when it exits busy (no --standby in this CLI)"
        return "a runner of entrypoints.run's driver on Store(url=), retrying while busy (no --store in this CLI)"

    def _command(self) -> list[str]:
        if self.has_store:
            return [sys.executable, "-m", "batchtop", "--data-dir", str(self.data_dir), "--store", self.url,
                    "--config", str(self.config), "run", *(["--standby"] if self.has_standby else [])]
        return [sys.executable, str(self.tmp / "engine.py"), str(self.data_dir), str(self.config), self.url]

    def keep_two(self) -> None:
        for slot, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is None:
                continue
            if proc is not None:
                self.exits.append(proc.returncode)
                self.restarts_busy += proc.returncode == 1
            log = self.tmp / f"engine-{self.started}.log"
            self.logs.append(log)
            with log.open("wb") as f:
                self.procs[slot] = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL, stderr=f, env=self.env)
            self.started += 1

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None and p.poll() is None]

    def kill(self, pid: int) -> bool:
        for proc in self.procs:
            if proc is not None and proc.pid == pid and proc.poll() is None:
                proc.kill()
                proc.wait()
                return True
        return False

    def stop(self) -> list[int]:
        """SIGTERM both; their exit codes, the lease holder's first when one holds it
        (a standby killed while it was still starting or waiting exits -15)."""
        holder = None
        deadline = time.monotonic() + 60
        while holder is None and time.monotonic() < deadline:  # the last kill's successor may still be starting
            self.keep_two()
            holder = active_engine(self.url, self.tmp / "probe")
            if holder is None:
                time.sleep(0.5)
        self.procs.sort(key=lambda p: p is None or p.pid != holder)
        codes = []
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            if proc is not None:
                try:
                    codes.append(proc.wait(timeout=60))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    codes.append(proc.wait())
        return codes


def active_engine(url: str, data_dir: Path) -> int | None:
    """The pid holding the store's lease, if a live engine does."""
    from batchtop.store import Store, lease

    with Store(data_dir, url=url) as store:
        held = lease.holder(store, time.time())
    return held.pid if held is not None else None


def connect(db_path: Path, url: str | None, *, read_only: bool = False):
    """The store's database for the probe and the audit: the SQLite file, or the
    PostgreSQL database (its `batchtop` schema)."""
    if url is None:
        return sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=60) if read_only else sqlite3.connect(db_path)
    import psycopg

    db = psycopg.connect(url, autocommit=True)
    db.execute("SET search_path TO batchtop")
    return db


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

    def __init__(self, db_path: Path, url: str | None = None) -> None:
        self.db_path = db_path
        self.url = url
        self.db = None

    def sample(self) -> dict[str, int] | None:
        if self.db is None:
            if self.url is None and not self.db_path.exists():
                return None
            self.db = connect(self.db_path, self.url, read_only=True)
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


def audit(db_path: Path, expected: int, sent: dict[tuple[str, str], int], url: str | None = None) -> list[str]:
    """Everything that is wrong, as sentences; empty when the run was exactly once."""
    problems = []
    db = connect(db_path, url)
    try:
        (n, distinct) = db.execute("SELECT count(*), count(DISTINCT provider || ' ' || custom_id) FROM requests").fetchone()
        if n != expected or distinct != expected:
            problems.append(f"{n} requests ({distinct} distinct) in the store, {expected} enqueued")
        states = dict(db.execute("SELECT state, count(*) FROM requests GROUP BY state").fetchall())
        if set(states) - {"succeeded", "dead"}:
            problems.append(f"requests not settled: {states}")
        doubles = db.execute(
            "SELECT count(*) FROM (SELECT request_id FROM attempts WHERE outcome = 'succeeded'"
            " GROUP BY request_id HAVING count(*) > 1) AS doubled"
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
        rolled = tuple(db.execute("SELECT sum(attempts), sum(input_tokens), sum(output_tokens) FROM usage_rollup").fetchone())
        raw = tuple(db.execute("SELECT count(*), sum(input_tokens), sum(output_tokens) FROM attempts").fetchone())
        if rolled != raw:
            problems.append(f"usage rollup {rolled} != attempts {raw}")
    finally:
        db.close()
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000, help="total requests (default 1,000,000)")
    parser.add_argument("--writers", type=int, default=None,
                        help="concurrent Python-API writer processes (default 4; 8 with --store)")
    parser.add_argument("--files", type=int, default=4, help="input files for `batchtop enqueue`")
    parser.add_argument("--file-share", type=float, default=0.5, help="share of the requests that come from files")
    parser.add_argument("--batch-size", type=int, default=2500, help="flush max_requests: small, for many batches")
    parser.add_argument("--per-request-s", type=float, default=0.02, help="simulated work per request")
    parser.add_argument("--first-try-failure-rate", type=float, default=0.01)
    parser.add_argument("--poll-interval", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=3 * 3600, help="give up after this many seconds")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and leave it (default: a temp dir)")
    parser.add_argument("--store", metavar="URL",
                        help="run on a fresh database of this PostgreSQL server, two engines, the active one killed")
    parser.add_argument("--kill-every", type=float, default=20.0,
                        help="with --store: SIGKILL the active engine about this often (seconds, jittered)")
    parser.add_argument("--lease-ttl", type=float, default=None,
                        help="the engines' lease_ttl (default 120; 10 with --store)")
    args = parser.parse_args()
    if args.writers is None:
        args.writers = 8 if args.store else 4
    if args.lease_ttl is None:
        args.lease_ttl = 10.0 if args.store else 120.0

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
    databases = None
    url: str | None = None
    if args.store:
        sys.path.insert(0, str(Path(__file__).parent))
        from _common import PgDatabases

        from batchtop.store.postgres import display_url

        databases = PgDatabases(args.store, tmp, "scale")
        url = databases.fresh()

    print(f"scale run: {n:,} requests ({from_files:,} from {args.files} files, {from_writers:,} from "
          f"{args.writers} writer processes), batches of {args.batch_size:,}, {os.cpu_count()} CPUs")
    if url is not None:
        print(f"  store: PostgreSQL {display_url(url)}")
    t = time.perf_counter()
    files = [write_file(tmp / f"in{k}.jsonl", f"f{k}", per_file) for k in range(args.files)]
    print(f"  wrote input files in {time.perf_counter() - t:.1f} s "
          f"({sum(f.stat().st_size for f in files) / 1e6:.0f} MB)")
    (tmp / "writer.py").write_text(_WRITER)
    config = tmp / "config.toml"
    config.write_text(
        f"[engine]\npoll_interval = {args.poll_interval}\nlease_ttl = {args.lease_ttl:g}\nmax_attempts = 3\n\n"
        f"[flush]\nmax_age = 0\nmax_requests = {args.batch_size}\n"
    )

    sim, urls = start_sim(args, env)
    env.update(urls)
    engine_log = (tmp / "engine.log").open("wb")
    probe = Probe(db_path, url)
    engine = None
    engines = Engines(tmp, data_dir, config, url, env) if url is not None else None
    kills = 0
    next_kill = 0.0

    def live_engines() -> list[int]:
        if engines is not None:
            return engines.pids() or [0]
        return [engine.pid] if engine is not None else [0]
    if engines is not None:
        print(f"  engines: two, {engines.kind}; the active one SIGKILLed about every {args.kill_every:g} s,"
              f" lease_ttl {args.lease_ttl:g} s")
        (tmp / "enqueue_file.py").write_text(_ENQUEUE_FILE)
    try:
        start = time.perf_counter()
        if engines is None:
            engine = subprocess.Popen(
                [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "--config", str(config), "run"],
                stdout=subprocess.DEVNULL, stderr=engine_log, env=env,
            )
        else:
            engines.keep_two()
            next_kill = args.kill_every * random.uniform(0.5, 1.5)
        writers = [
            subprocess.Popen(
                [sys.executable, str(tmp / "writer.py"), str(data_dir if url is None else tmp / f"writer{w}"), f"w{w}",
                 "0", str(per_writer[w]), str(SINGLE_CALLS), str(CHUNK), str(DEAD_EVERY), str(Path(__file__).parent),
                 *([url] if url is not None else [])],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            )
            for w in range(args.writers)
        ]
        file_results: queue.Queue[tuple[str, int, bytes, float]] = queue.Queue()

        def file_command(f: Path) -> list[str]:
            if url is None:
                return [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "enqueue", str(f)]
            assert engines is not None
            if engines.has_store:
                return [sys.executable, "-m", "batchtop", "--data-dir", str(tmp / "files"), "--store", url,
                        "enqueue", str(f)]
            return [sys.executable, str(tmp / "enqueue_file.py"), str(tmp / "files"), url, str(f)]

        def enqueue_files() -> None:
            for f in files:
                proc = subprocess.run(file_command(f), capture_output=True, env=env)
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
            if engine is not None and engine.poll() is not None:
                raise SystemExit(f"the engine exited ({engine.returncode}); see {tmp / 'engine.log'}")
            if engines is not None:
                engines.keep_two()
                if now >= next_kill:
                    next_kill = now + args.kill_every * random.uniform(0.5, 1.5)
                    pid = active_engine(url, tmp / "probe") if url is not None else None
                    if pid is not None and engines.kill(pid):
                        kills += 1
                        engines.keep_two()
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
                      f"engine RSS {max(rss_mb(p, 'VmRSS') for p in live_engines()):6.0f} MB"
                      + (f"  kills {kills}" if engines is not None else ""), flush=True)
            if enqueue_done is not None and sample["succeeded"] + sample["dead"] >= n:
                break
            if now > args.timeout:
                raise SystemExit(f"not settled after {args.timeout:.0f} s: {sample}")
        settled = time.perf_counter() - start
        engine_peak = max(rss_mb(p, "VmHWM") for p in live_engines())
        stop_codes: list[int] = []
        if engine is not None:
            engine.send_signal(signal.SIGTERM)
            _, status, usage = os.wait4(engine.pid, 0)
            engine.returncode = os.waitstatus_to_exitcode(status)
            engine_peak = max(engine_peak, usage.ru_maxrss / 1024)
        else:
            assert engines is not None
            stop_codes = engines.stop()
        wall = time.perf_counter() - start

        probe.close()
        t = time.perf_counter()
        sent = submissions(urls["ANTHROPIC_BASE_URL"])
        problems = audit(db_path, n, sent, url)
        audit_s = time.perf_counter() - t
        if engine is not None and engine.returncode != 0:
            problems.append(f"the engine exited {engine.returncode} on SIGTERM")
        if engines is not None and stop_codes[:1] != [0]:
            problems.append(f"the active engine did not exit 0 on SIGTERM (exit codes, the active one's first: {stop_codes})")
        for log_path in [tmp / "engine.log", *(engines.logs if engines is not None else [])]:
            if b"Traceback" in log_path.read_bytes():
                problems.append(f"an engine logged a traceback; see {log_path}")

        db = connect(db_path, url)
        states = dict(db.execute("SELECT state, count(*) FROM requests GROUP BY state").fetchall())
        (batches,) = db.execute("SELECT count(*) FROM batches WHERE provider_batch_id IS NOT NULL").fetchone()
        retried = db.execute("SELECT count(*) FROM requests WHERE attempts > 1").fetchone()[0]
        if url is not None:
            (size,) = db.execute("SELECT pg_database_size(current_database())").fetchone()
        db.close()
        if url is None:
            size = sum(p.stat().st_size for p in data_dir.iterdir() if p.name.startswith("batchtop.sqlite3"))

        print()
        print(f"requests           {n:,}: {states.get('succeeded', 0):,} succeeded, {states.get('dead', 0):,} dead letters,"
              f" {retried:,} needed more than one attempt")
        print(f"batches            {batches:,} submitted, peak {peak_in_flight:,} in flight at once")
        print(f"enqueue            {enqueue_done:.1f} s for all {n:,} ({n / enqueue_done:,.0f} req/s, concurrent with the engine)")
        print(f"end to end         {settled:.1f} s from the first enqueue to the last result stored ({n / settled:,.0f} req/s)")
        print(f"wall time          {wall:.1f} s (audit {audit_s:.1f} s more)")
        print(f"engine peak RSS    {engine_peak:,.0f} MB   (simulator peak RSS seen: {sim_rss:,.0f} MB)")
        print(f"database size      {size / 1e6:,.0f} MB ({size / n:,.0f} bytes per request, "
              f"{'WAL included' if url is None else 'pg_database_size'})")
        if engines is not None:
            print(f"engines            {kills} SIGKILLs of the active engine; {engines.started} engine processes started"
                  f" in all, {engines.restarts_busy} of them exited busy (1) and were started again")
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
        if engines is not None:
            for proc in engines.procs:
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait()
        sim.send_signal(signal.SIGTERM)
        try:
            sim.wait(timeout=60)
        except subprocess.TimeoutExpired:
            sim.kill()
        engine_log.close()
        if databases is not None:
            databases.close()
        if tmp_ctx is not None:
            tmp_ctx.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
