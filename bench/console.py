"""The console and `--once` on big stores, beside a small-store baseline, in one run.

What a refresh costs must not grow with what the store has done. Three stores are
built straight in SQL (after the store's own code creates the schema), so a million
requests take seconds, not the hour the engine would need:

  small   1,000 processed requests (50 ended batches: as many as the status lists);
  done    100,000 processed requests (2,000 ended batches);
  big     1,000,000 requests: 10,000 ended batches (500,000 processed), 400 batches in
          flight (200,000 requests) and 300,000 queued.
Each has a dead letter per 5,000 processed requests and an anomaly per five batches.

For each it prints:
  - `batchtop --once --json --no-refresh`, a fresh process, best of N wall and CPU
    time, the stores taken in turn (target: `done` within 1.5x of `small`);
  - `status.collect` in-process, best of N (the console's worker thread does this);
  - the rows formatted from it, median of N refreshes (the worker does this too, reusing
    the rows of batches that read as in the refresh before);
  - work on the UI thread per refresh: the console's `apply` of a snapshot, in Textual's
    headless `run_test` at 160x48, median of N (target <= 16 ms);
  - a real `batchtop` console process in a pseudo-terminal (engine on, no API keys, so
    it has nothing to send): its CPU share over --idle-s seconds after start-up, and
    its resident set (targets: < 5% of a core, < 300 MB).

    python bench/console.py [--runs 5] [--idle-s 10] [--only small,big]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pty
import resource
import select
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, timed, verdict  # noqa: E402

from batchtop.config import Config  # noqa: E402
from batchtop.store import Store  # noqa: E402

ONCE_RATIO_TARGET = 1.5
UI_MS_TARGET = 16.0
IDLE_CPU_TARGET = 0.05
RSS_MB_TARGET = 300.0
PER_ENDED = 50
UI_SIZE = (160, 48)


@dataclass(frozen=True)
class Shape:
    name: str
    ended: int  # ended batches, `per_ended` requests each, all processed
    in_flight: int  # batches in flight
    per_in_flight: int
    queued: int
    per_ended: int = PER_ENDED

    @property
    def requests(self) -> int:
        return self.ended * self.per_ended + self.in_flight * self.per_in_flight + self.queued


SHAPES = {
    "small": Shape("small", ended=50, in_flight=0, per_in_flight=0, queued=0, per_ended=20),
    "done": Shape("done", ended=2_000, in_flight=0, per_in_flight=0, queued=0),
    "big": Shape("big", ended=10_000, in_flight=400, per_in_flight=500, queued=300_000),
}

_SERIES = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "


def build(data_dir: Path, shape: Shape, now: float) -> float:
    """The store of `shape`, in seconds. Odd batches and requests are OpenAI's, even
    ones Anthropic's; every processed request succeeded on its first attempt except
    one in 5,000, a dead letter; one anomaly per five batches."""
    start = time.perf_counter()
    with Store(data_dir) as store, store.transaction() as db:  # the store's own schema and migrations
        db.execute("INSERT INTO buffers (id, provider, endpoint, model) VALUES"
                   " (1, 'openai', '/v1/chat/completions', 'gpt-4o-mini'),"
                   " (2, 'anthropic', '/v1/messages', 'claude-sonnet-4-20250514')")
        buf = "(2 - i % 2)"
        prov = "CASE i % 2 WHEN 1 THEN 'openai' ELSE 'anthropic' END"
        model = "CASE i % 2 WHEN 1 THEN 'gpt-4o-mini' ELSE 'claude-sonnet-4-20250514' END"
        endpoint = "CASE i % 2 WHEN 1 THEN '/v1/chat/completions' ELSE '/v1/messages' END"
        batches = shape.ended + shape.in_flight
        db.execute(
            _SERIES + "INSERT INTO batches (id, submission_uid, provider, buffer_id, endpoint, model, provider_batch_id,"
            " status, total, succeeded, failed, bytes, created_at, submitted_at, ended_at, ingested_at, polled_at)"
            f" SELECT i, 'uid-' || i, {prov}, {buf}, {endpoint}, {model},"
            " CASE i % 2 WHEN 1 THEN 'batch_' ELSE 'msgbatch_' END || printf('%08d', i),"
            " CASE WHEN i <= :ended THEN 'completed' ELSE 'in_progress' END,"
            " CASE WHEN i <= :ended THEN :per ELSE :per_flight END,"
            " CASE WHEN i <= :ended THEN :per ELSE 0 END, 0, 120 * :per,"
            " :now - 86400 * 20 + i * 60, :now - 86400 * 20 + i * 60,"
            " CASE WHEN i <= :ended THEN :now - 86400 * 20 + i * 60 + 3600 END,"
            " CASE WHEN i <= :ended THEN :now - 86400 * 20 + i * 60 + 3700 END, :now - 30"
            " FROM n",
            {"count": batches, "ended": shape.ended, "per": shape.per_ended, "per_flight": shape.per_in_flight,
             "now": now},
        )
        processed = shape.ended * shape.per_ended
        flying = shape.in_flight * shape.per_in_flight

        def batch_of(i: str) -> str:
            """Request i: processed ones in batch (i-1)/per_ended + 1, then those in flight."""
            return (f"CASE WHEN {i} <= {processed} THEN ({i} - 1) / {shape.per_ended} + 1"
                    f" ELSE {shape.ended} + ({i} - {processed} - 1) / {max(shape.per_in_flight, 1)} + 1 END")

        db.execute(
            _SERIES + "INSERT INTO requests (id, provider, custom_id, buffer_id, line, bytes, enqueued_at, state, attempts,"
            " last_error)"
            f" SELECT i, b.provider, 'req-' || i, b.buffer_id,"
            " '{\"custom_id\":\"req-' || i || '\",\"body\":{\"model\":\"' || b.model || '\",\"messages\":[]}}', 120,"
            " b.created_at - 60,"
            f" CASE WHEN i % 5000 = 0 AND i <= {processed} THEN 'dead' WHEN i <= {processed} THEN 'succeeded'"
            " ELSE 'in_flight' END, 1,"
            f" CASE WHEN i % 5000 = 0 AND i <= {processed} THEN 'server_error: simulated' END"
            f" FROM n JOIN batches b ON b.id = {batch_of('i')}",
            {"count": processed + flying},
        )
        if shape.queued:
            db.execute(
                _SERIES + "INSERT INTO requests (id, provider, custom_id, buffer_id, line, bytes, enqueued_at)"
                f" SELECT {processed + flying} + i, {prov}, 'req-' || ({processed + flying} + i), {buf},"
                " '{\"custom_id\":\"q\",\"body\":{\"messages\":[]}}', 120, :now - 600 + i * 0.001 FROM n",
                {"count": shape.queued, "now": now},
            )
        db.execute(
            "INSERT INTO attempts (request_id, batch_id, number, outcome, ended_at, response, error, input_tokens,"
            " output_tokens)"
            f" SELECT r.id, {batch_of('r.id')}, 1,"
            " CASE r.state WHEN 'succeeded' THEN 'succeeded' WHEN 'dead' THEN 'failed' END,"
            " CASE WHEN r.state != 'in_flight' THEN r.enqueued_at + 3700 END,"
            " CASE r.state WHEN 'succeeded' THEN '{\"custom_id\":\"' || r.custom_id || '\",\"response\":{\"ok\":1}}' END,"
            " r.last_error, 100, 40 FROM requests r WHERE r.state != 'queued'"
        )
        db.execute(
            "INSERT INTO usage_rollup (provider, model, first_attempt, succeeded, attempts, input_tokens, output_tokens)"
            " SELECT r.provider, b.model, 1, a.outcome = 'succeeded', count(*), sum(a.input_tokens), sum(a.output_tokens)"
            " FROM attempts a JOIN requests r ON r.id = a.request_id JOIN batches b ON b.id = a.batch_id"
            " WHERE a.outcome IS NOT NULL GROUP BY 1, 2, 4"
        )
        db.execute(
            "INSERT INTO outcome_hourly (hour, attempts, failed) SELECT CAST(ended_at / 3600 AS INTEGER),"
            " count(*), sum(outcome != 'succeeded') FROM attempts WHERE outcome IS NOT NULL GROUP BY 1"
        )
        db.execute("UPDATE buffers SET queued = (SELECT count(*) FROM requests r WHERE r.buffer_id = buffers.id"
                   " AND r.state = 'queued'), queued_bytes = (SELECT coalesce(sum(bytes), 0) FROM requests r"
                   " WHERE r.buffer_id = buffers.id AND r.state = 'queued')")
        db.execute(_SERIES + "INSERT INTO anomalies (batch_id, kind, detail, created_at)"
                   " SELECT (i - 1) % :batches + 1, 'unmatched_result', 'custom_id x' || i, :now FROM n",
                   {"count": max(batches // 5, 1), "batches": batches, "now": now})
    with Store(data_dir) as store:
        store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.db.execute("ANALYZE")
    return time.perf_counter() - start


# -- measurements ------------------------------------------------------------------------


def once_runs(dirs: dict[str, Path], env: dict[str, str], runs: int) -> dict[str, tuple[float, float]]:
    """Best (wall, CPU) seconds of `--once --json --no-refresh` per store, the stores
    taken in turn in each round so that load from elsewhere on the machine falls on
    all of them alike. CPU is the child's user + system time."""
    best: dict[str, tuple[float, float]] = {name: (float("inf"), float("inf")) for name in dirs}
    for round_ in range(runs + 1):
        for name, data_dir in dirs.items():
            argv = [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "--once", "--json", "--no-refresh"]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            wall, _ = timed(lambda argv=argv: subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if round_:  # the first round warms the page cache
                best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best


def collect_seconds(data_dir: Path, runs: int) -> float:
    from batchtop.views import status

    config = Config()

    def one() -> float:
        with Store(data_dir, create=False) as store:
            return timed(lambda: status.collect(store.db, config, time.time()))[0]

    one()
    return best_of(runs, one)


def format_ms(data_dir: Path, runs: int) -> float:
    """Median ms of formatting a snapshot's rows in the worker, refresh after refresh
    (the first one, with nothing to reuse, left out as in `ui_ms`)."""
    from batchtop.tui import rows, snapshot

    config = Config()
    memo = rows.BatchRowMemo()
    times = []
    for _ in range(runs + 1):
        snap = snapshot.load(data_dir, config, time.time())
        times.append(timed(lambda snap=snap: snapshot.formatted(snap, rows.id_width(UI_SIZE[0]), memo))[0])
    return statistics.median(times[1:]) * 1000


def ui_ms(data_dir: Path, runs: int) -> float:
    """Median ms of the main screen's `apply` of a fresh snapshot (the UI loop's part of
    a refresh), in Textual's headless `run_test`; the store is read and its rows
    formatted beforehand, as the console's worker thread does."""
    from batchtop.tui import rows, snapshot
    from batchtop.tui.app import BatchtopApp

    config = Config()
    memo = rows.BatchRowMemo()
    snaps = [snapshot.formatted(snapshot.load(data_dir, config, time.time()), rows.id_width(UI_SIZE[0]), memo)
             for _ in range(runs + 1)]

    async def go() -> list[float]:
        app = BatchtopApp(data_dir, config, engine=False, refresh_every=None)
        times = []
        async with app.run_test(size=UI_SIZE) as pilot:
            await pilot.pause()
            for snap in snaps:
                start = time.perf_counter()
                app.main.apply(snap, app.engine_line)
                times.append(time.perf_counter() - start)
                await pilot.pause()
        return times[1:]  # the first fills empty tables

    return statistics.median(asyncio.run(go())) * 1000


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def console_idle(data_dir: Path, env: dict[str, str], idle_s: float, warmup_s: float = 4.0) -> tuple[float, float]:
    """(CPU share of one core, RSS MB) of a real console in a 160x48 pseudo-terminal,
    measured over `idle_s` after `warmup_s` of start-up; the terminal's output is read
    all along, as a terminal would."""
    leader, follower = pty.openpty()
    import fcntl
    import struct
    import termios

    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "batchtop", "--data-dir", str(data_dir)], stdin=follower,
                            stdout=follower, stderr=follower, env={**env, "TERM": "xterm-256color"},
                            start_new_session=True)
    os.close(follower)

    def drain(seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            ready, _, _ = select.select([leader], [], [], left)
            if ready:
                try:
                    os.read(leader, 65536)
                except OSError:
                    return

    try:
        drain(warmup_s)
        if proc.poll() is not None:
            raise SystemExit(f"the console exited early ({proc.returncode})")
        cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
        drain(idle_s)
        cpu1, t1 = _cpu_seconds(proc.pid), time.monotonic()
        rss = _rss_mb(proc.pid)
    finally:
        os.write(leader, b"q")
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(leader)
    return (cpu1 - cpu0) / (t1 - t0), rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--only", default=",".join(SHAPES), help="comma-separated store names")
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        home = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.endswith("_BASE_URL")}
        env.update({"BATCHTOP_CONFIG": str(home / "absent.toml"), "NO_COLOR": "1"})
        results: dict[str, dict[str, float]] = {}
        dirs: dict[str, Path] = {}
        for name in names:
            shape = SHAPES[name]
            dirs[name] = data_dir = home / name
            built = build(data_dir, shape, time.time())
            size = (data_dir / "batchtop.sqlite3").stat().st_size / 1e6
            print(f"{name:>5}: {shape.requests:>9,} requests, {shape.ended:,} ended + {shape.in_flight} in-flight batches,"
                  f" {shape.queued:,} queued; built in {built:.1f} s ({size:,.0f} MB)", flush=True)
        once = once_runs(dirs, env, args.runs)
        print()
        for name, data_dir in dirs.items():
            r = results[name] = {"once": once[name][0], "once_cpu": once[name][1]}
            r["collect"] = collect_seconds(data_dir, args.runs)
            r["rows"] = format_ms(data_dir, args.runs)
            r["ui"] = ui_ms(data_dir, args.runs)
            r["cpu"], r["rss"] = console_idle(data_dir, env, args.idle_s)
            print(f"{name:>5}: --once --json --no-refresh {r['once'] * 1000:6.1f} ms ({r['once_cpu'] * 1000:.0f} ms CPU)"
                  f"  status.collect {r['collect'] * 1000:5.1f} ms  rows {r['rows']:5.1f} ms  UI apply {r['ui']:5.1f} ms"
                  f"  console idle CPU {r['cpu']:5.1%}  RSS {r['rss']:4.0f} MB", flush=True)
        print()
        if "small" in results:
            base = results["small"]
            for name in names:
                if name == "small":
                    continue
                ratio = results[name]["once"] / base["once"]
                cpu_ratio = results[name]["once_cpu"] / base["once_cpu"]
                target = f"; target <= {ONCE_RATIO_TARGET}x: {verdict(ratio, ONCE_RATIO_TARGET, False)}" if name == "done" else ""
                print(f"--once --json --no-refresh, {name} / small: {ratio:.2f}x wall, {cpu_ratio:.2f}x CPU{target}")
        for name in names:
            r = results[name]
            print(f"{name:>5}: UI apply {r['ui']:.1f} ms {verdict(r['ui'], UI_MS_TARGET, False)};"
                  f" idle CPU {r['cpu']:.1%} {verdict(r['cpu'], IDLE_CPU_TARGET, False)};"
                  f" RSS {r['rss']:.0f} MB {verdict(r['rss'], RSS_MB_TARGET, False)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
