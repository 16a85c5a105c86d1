"""Evaluation throughput through the fabric, and what the durable store costs per step.

Measured in one run, on the demo benchmark (bench/data/eval_demo, cycled) with the baseline policy:
  throughput   questions per minute at concurrency 1, 8 and 32, as ratios to concurrency 1
  fabric share per question, the part of the client's wall time that is neither the model generating
               (phase `model`) nor tool calls running (phase `tools`, which includes the Celery round trip):
               the gateway loop, recording, validation and the gRPC stream
  store        writing the recorded trajectories into the durable store one step per transaction
               (SQLite, the embedded default; images included), vs the Redis recorder's writes of the same
               events (the hot path it sits beside). Target: < 2 ms p50 per step. In the gateway these
               writes run on the store's writer thread, never on the event loop, batched across
               trajectories, so a step there costs at most this.

    .venv/bin/python bench/eval.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATASET = ROOT / "bench" / "data" / "eval_demo" / "demo.jsonl"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _questions(target: str, items: list, concurrency: int, count: int, run: str) -> dict:
    from toolfabric import AsyncClient
    from toolfabric_server.evals.dataset import image_input

    semaphore = asyncio.Semaphore(concurrency)
    walls, shares, fabric, ids = [], [], [], []

    async with AsyncClient(target, timeout_s=600) as client:
        async def one(index: int) -> None:
            item = items[index % len(items)]
            async with semaphore:
                started = time.perf_counter()
                result = await client.ask(item.question, images=[image_input(i) for i in item.images],
                                          eval_run=run, max_tokens=8192, temperature=0.2)
                wall = time.perf_counter() - started
            phases = result.usage.phase_seconds if result.usage else {}
            walls.append(wall)
            own = max(0.0, wall - phases.get("model", 0.0) - phases.get("tools", 0.0))
            shares.append(own / wall)
            fabric.append(own)
            ids.append(result.trajectory_id)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        elapsed = time.perf_counter() - started
    return {"per_minute": 60 * count / elapsed, "wall_p50": statistics.median(walls),
            "share_p50": statistics.median(shares), "share_mean": statistics.mean(shares),
            "fabric_ms_p50": 1000 * statistics.median(fabric), "ids": ids}


def _store_costs(target: str, redis_url: str, ids: list[str]) -> tuple[list[float], list[float]]:
    """(store ms per step, Redis recorder ms per step) writing the same recorded events."""
    from toolfabric import Client
    from toolfabric.v1 import fabric_pb2 as pb
    from toolfabric_server.common.blobs import ref_for
    from toolfabric_server.gateway.recorder import TrajectoryRecorder
    from toolfabric_server.store import ImageFiles, TrajectoryStore
    from toolfabric_server.store.settings import StoreSettings
    from toolfabric_server.store.trajectories import NewTrajectory, StoredImage, image_refs, make_engine

    with Client(target, timeout_s=60) as client:
        trajectories = [client.trajectory(i) for i in ids]
        blobs = {r.blob: client.image(r.blob).data for t in trajectories for e in t.events for r in image_refs(e)}
    store_ms, redis_ms = [], []
    with tempfile.TemporaryDirectory(prefix="toolfabric-bench-store-") as tmp:
        store = TrajectoryStore(make_engine("", Path(tmp), StoreSettings()), ImageFiles(Path(tmp) / "images"))
        for t in trajectories:
            steps: dict[int, list[pb.RunEvent]] = defaultdict(list)
            for event in t.events:
                steps[event.step].append(event)
            begun = [NewTrajectory(t.trajectory_id, t.question, t.mode, t.model, time.time())]
            for number in sorted(steps):
                events = steps[number]
                images = {r.blob: StoredImage(blobs[r.blob], r.mime_type, r.width, r.height)
                          for e in events for r in image_refs(e) if ref_for(blobs[r.blob]) == r.blob}
                started = time.perf_counter()
                store.write(begun, events, images)
                store_ms.append(1000 * (time.perf_counter() - started))
                begun = []
        store.close()

    async def redis_side() -> None:
        import redis.asyncio as aredis

        client = aredis.Redis.from_url(redis_url)
        for t in trajectories:
            recorder = TrajectoryRecorder(client, "bench-" + t.trajectory_id, 3600)
            await recorder.begin(t.question, t.mode, t.model)
            steps: dict[int, list[pb.RunEvent]] = defaultdict(list)
            for event in t.events:
                steps[event.step].append(event)
            for number in sorted(steps):
                started = time.perf_counter()
                for event in steps[number]:
                    await recorder.record(event)
                redis_ms.append(1000 * (time.perf_counter() - started))
        await client.aclose()

    asyncio.run(redis_side())
    return store_ms, redis_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer questions (about a minute)")
    args = parser.parse_args()
    from toolfabric_server.devstack.stack import EmbeddedStack
    from toolfabric_server.evals.dataset import load_items

    items = load_items(DATASET)
    plan = [(1, 6), (8, 16), (32, 32)] if args.quick else [(1, 22), (8, 44), (32, 88)]
    with tempfile.TemporaryDirectory(prefix="toolfabric-bench-eval-") as tmp, \
            EmbeddedStack(Path(tmp), worker_concurrency=4) as stack:
        results = {}
        for concurrency, count in plan:
            results[concurrency] = asyncio.run(_questions(stack.target, items, concurrency, count,
                                                          f"bench-c{concurrency}"))
        store_ms, redis_ms = _store_costs(stack.target, stack.redis.url, results[8]["ids"])
        gc.collect()  # the stack's readiness checks left Celery results that unsubscribe on collection
    print(f"demo benchmark, baseline policy, {sum(c for _, c in plan)} questions")
    base = results[1]["per_minute"]
    for concurrency, r in results.items():
        print(f"  concurrency {concurrency:>2}: {r['per_minute']:6.1f} questions/min ({r['per_minute'] / base:.2f}x "
              f"concurrency 1), wall p50 {r['wall_p50']:.2f} s, fabric share of wall p50 {r['share_p50']:.1%} "
              f"(mean {r['share_mean']:.1%}; {r['fabric_ms_p50']:.0f} ms)")
    s50, r50 = statistics.median(store_ms), statistics.median(redis_ms)
    print(f"store write per step (SQLite, one transaction, images included): p50 {s50:.2f} ms, p99 "
          f"{percentile(store_ms, 0.99):.2f} ms over {len(store_ms)} steps; Redis recorder p50 {r50:.2f} ms: "
          f"{s50 / r50:.2f}x  (target < 2 ms p50: {'met' if s50 < 2 else 'NOT met'})")
    print(f"throughput at concurrency 32 vs 1: {results[32]['per_minute'] / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
