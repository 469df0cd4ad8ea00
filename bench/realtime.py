"""Real-time lane throughput against a plain `asyncio.gather` of SDK calls, in one run.

Both send the same N chat completions to the simulator (each call takes `--latency`
seconds there) through the official OpenAI async SDK, `--concurrency` at a time:

(a) the lane: one engine tick over N `critical` requests: lane choice, the durable
    claim of each request before its call, the `sent` mark, the call, the stored
    answer and its rollup (everything exactly-once costs);
(b) plain: `asyncio.gather` of `client.chat.completions.create` under a semaphore of
    the same size, storing nothing.

Each runs `--rounds` times, interleaved; the best of each is compared (a shared
machine's load only ever adds time).

Target: the lane's requests per second at least 0.8x plain's.

    python bench/realtime.py [--requests 400] [--concurrency 16] [--latency 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import verdict  # noqa: E402

from batchtop.config import Config, EngineConfig, RealtimeConfig  # noqa: E402
from batchtop.engine.tick import Engine  # noqa: E402
from batchtop.intake.client import Client  # noqa: E402
from batchtop.providers.clients import fixed_factory  # noqa: E402
from batchtop.sim import SimConfig, Simulator  # noqa: E402
from batchtop.store import Store  # noqa: E402


def _lines(n: int, prefix: str) -> list[dict]:
    return [
        {"custom_id": f"{prefix}{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": f"question {i}"}]}}
        for i in range(n)
    ]


def lane(sim: Simulator, tmp: Path, n: int, concurrency: int) -> float:
    """Seconds for one engine tick to send n critical requests real time (after a warm-up)."""
    config = Config(engine=EngineConfig(poll_interval=1.0), realtime=RealtimeConfig(concurrency=concurrency))
    factory = fixed_factory({"openai": sim.openai_base_url, "anthropic": sim.anthropic_base_url}, "sk-bench")
    with Store(tmp / "lane") as store:
        engine = Engine(store, config, adapter_factory=factory)

        async def main() -> float:
            try:
                with Client(tmp / "lane") as bt:
                    bt.enqueue_many(_lines(concurrency, "warm"), tier="critical")
                await engine.tick()  # imports, the client, its connections: as plain's warm-up
                with Client(tmp / "lane") as bt:
                    bt.enqueue_many(_lines(n, "r"), tier="critical")
                start = time.perf_counter()
                report = await engine.tick()
                elapsed = time.perf_counter() - start
                assert report.lanes.succeeded == n, report.lanes
                return elapsed
            finally:
                await engine.close()

        elapsed = asyncio.run(main())
        engine.lease.release()
    return elapsed


def plain(sim: Simulator, n: int, concurrency: int) -> float:
    """Seconds for asyncio.gather of n SDK calls, `concurrency` at a time (after a warm-up)."""
    import openai

    async def main() -> float:
        client = openai.AsyncOpenAI(api_key="sk-bench", base_url=sim.openai_base_url, max_retries=0)
        pool = asyncio.Semaphore(concurrency)

        async def one(line: dict) -> None:
            async with pool:
                await client.chat.completions.create(**line["body"])

        try:
            await asyncio.gather(*(one(line) for line in _lines(concurrency, "warm")))
            start = time.perf_counter()
            await asyncio.gather(*(one(line) for line in _lines(n, "p")))
            return time.perf_counter() - start
        finally:
            await client.close()

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds each simulated call takes")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each; the best of each is compared")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.pop("OPENAI_BASE_URL", None)
    lanes, plains = [], []
    with Simulator(SimConfig(realtime_latency_s=args.latency)) as sim, tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):  # interleaved: the machine's load drifts, and only ever adds time
            plains.append(plain(sim, args.requests, args.concurrency))
            lanes.append(lane(sim, Path(tmp) / str(i), args.requests, args.concurrency))
    plain_best, lane_s = min(plains), min(lanes)
    ratio = plain_best / lane_s
    figures = {
        "requests": args.requests, "concurrency": args.concurrency, "latency_s": args.latency,
        "lane_rps": round(args.requests / lane_s, 1), "plain_rps": round(args.requests / plain_best, 1),
        "ratio": round(ratio, 3), "floor_rps": round(args.concurrency / args.latency, 1),
    }
    if args.json:
        print(json.dumps(figures))
        return
    print(f"real-time lane: {figures['lane_rps']:>7} req/s  ({args.requests} calls, {args.concurrency} at a time,"
          f" {args.latency * 1000:g} ms each at the simulator)")
    print(f"plain gather:   {figures['plain_rps']:>7} req/s  (best of {args.rounds}, interleaved with the lane's)")
    print(f"lane / plain:   {ratio:.2f}x  (target >= 0.8x): {verdict(ratio, 0.8)}")


if __name__ == "__main__":
    main()
