"""Start-up of `batchtop --once --no-refresh` against importing the provider SDKs, in one run.

A cron job or a shell prompt may run `--once --no-refresh` often, so it must cost far
less than merely importing `openai` and `anthropic` (which it never needs). Both are
timed as fresh subprocesses of the same interpreter, best of N, on a data dir with
work in it (queued requests, ended batches with results, savings) made through the
simulator. Target: ratio < 0.25.

    python bench/startup.py [--runs 7] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, openai_line  # noqa: E402

from batchtop.sim import SimConfig, Simulator  # noqa: E402

TARGET = 0.25


def _batchtop(data_dir: Path, *args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), *args], check=True,
                   stdout=subprocess.DEVNULL, env=env)


def make_data(data_dir: Path, tmp: Path, requests: int) -> None:
    """Ended batches with results and some failures, plus requests still queued."""
    with Simulator(SimConfig(first_try_failure_rate=0.1)) as sim:
        env = {**os.environ, "OPENAI_API_KEY": "sk-bench", "ANTHROPIC_API_KEY": "sk-bench",
               "OPENAI_BASE_URL": sim.openai_base_url, "ANTHROPIC_BASE_URL": sim.anthropic_base_url,
               "NO_PROXY": "127.0.0.1,localhost"}
        work = tmp / "work.jsonl"
        lines = [openai_line(i) for i in range(requests)]
        lines += [json.dumps({"custom_id": f"c-{i}", "params": {"model": "claude-sonnet-4-20250514", "max_tokens": 64,
                                                                "messages": [{"role": "user", "content": "hi"}]}})
                  for i in range(requests)]
        work.write_text("\n".join(lines) + "\n")
        _batchtop(data_dir, "enqueue", str(work), env=env)
        for _ in range(2):
            _batchtop(data_dir, "flush", "--all", env=env)
            _batchtop(data_dir, "tick", env=env)
            time.sleep(0.5)
            _batchtop(data_dir, "tick", env=env)
        later = tmp / "later.jsonl"
        later.write_text("\n".join(json.dumps({**json.loads(openai_line(i)), "custom_id": f"later-{i}"})
                                   for i in range(requests)) + "\n")
        _batchtop(data_dir, "enqueue", str(later), env=env)


def timed_run(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="best of this many runs of each")
    parser.add_argument("--requests", type=int, default=200, help="requests per provider in the data dir")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data_dir = tmp / "data"
        make_data(data_dir, tmp, args.requests)
        once = [sys.executable, "-m", "batchtop", "--data-dir", str(data_dir), "--once", "--no-refresh"]
        sdks = [sys.executable, "-c", "import openai, anthropic"]
        timed_run(once)  # warm the page cache for both before measuring
        timed_run(sdks)
        once_s = best_of(args.runs, lambda: timed_run(once))
        sdks_s = best_of(args.runs, lambda: timed_run(sdks))
    ratio = once_s / sdks_s
    print(f"start-up, best of {args.runs} (data dir: {2 * args.requests} requests run, {args.requests} queued)")
    print(f"    batchtop --once --no-refresh:        {once_s * 1000:8.1f} ms")
    print(f"    python -c 'import openai, anthropic': {sdks_s * 1000:8.1f} ms")
    print(f"    ratio {ratio:.3f} (target < {TARGET})  {'PASS' if ratio < TARGET else 'MISS'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
