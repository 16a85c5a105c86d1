"""The fabric's own overhead per tool call, against raw Celery on the same Redis and worker.

Measured in one run (these machines are noisy; only ratios within a run mean anything):
  latency     a no-op tool call through the gateway's dispatcher (ToolContext with image references,
              Celery publish, worker, result back to the asyncio loop) vs `send_task(...).get()`
  throughput  calls/s with many concurrent trajectories through the fabric vs raw Celery fan-out
  messages    the largest broker message published: image-carrying calls move references only
Targets (issue 2): fabric p50 <= 1.3x raw Celery; throughput >= 0.8x raw Celery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples; finishes in well under 45 s")
    parser.add_argument("--service", default="fetch", help="worker queue to ping (every service answers ping)")
    parser.add_argument("--tracing-calls", type=int,
                        help="no-op calls per side of the tracing on/off comparison (default: the latency sample's); "
                             "its spread is printed: take enough calls for it to be under the effect")
    parser.add_argument("--tracing-only", action="store_true", help="only the tracing on/off comparison")
    parser.add_argument("--tracing-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tracing_probe:  # a child of _tracing_overhead: one phase's measurement
        return asyncio.run(_tracing_probe(os.environ["TOOLFABRIC_REDIS_URL"], args.service))
    calls = 150 if args.quick else 1000
    trajectories, per_trajectory = (16, 10) if args.quick else (64, 20)

    from toolfabric_server.devstack.processes import Child
    from toolfabric_server.devstack.redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="toolfabric-bench-") as tmp, \
            RedisServer(Path(tmp) / "redis") as redis_server:
        workdir = Path(tmp)
        os.environ["TOOLFABRIC_REDIS_URL"] = redis_server.url
        # its own workers, stopped before the comparison below
        _tracing_overhead(args.service, args.tracing_calls or calls, workdir)
        if args.tracing_only:
            return 0
        env = dict(os.environ)
        argv = [sys.executable, "-m", "toolfabric.cli.main", "worker", args.service]
        worker = Child("worker", argv, workdir, env=env)
        try:
            return asyncio.run(_measure(redis_server.url, args.service, calls, trajectories, per_trajectory))
        finally:
            worker.stop()


async def _measure(redis_url: str, service: str, calls: int, trajectories: int, per_trajectory: int) -> int:
    import numpy as np
    import redis
    import redis.asyncio as aredis
    from celery import signals

    from toolfabric_server.common import settings
    from toolfabric_server.common.blobs import BlobStore
    from toolfabric_server.common.celery_app import make_celery
    from toolfabric_server.common.images import encode_png
    from toolfabric_server.common.tools import ToolContext, task_name
    from toolfabric_server.engine.ports import ToolInvocation
    from toolfabric_server.gateway.celery_executor import CeleryToolExecutor

    app = make_celery(settings.common(), settings.worker())
    largest = {"bytes": 0}

    @signals.before_task_publish.connect(weak=False)
    def _size(body: object = None, headers: dict | None = None, **_: object) -> None:
        size = len(json.dumps(body, default=str)) + len(json.dumps(headers or {}, default=str))
        largest["bytes"] = max(largest["bytes"], size)

    # A trajectory that has seen a 4000x3000 photo and two tool-made images: the context carries refs only.
    blobs = BlobStore(redis.Redis.from_url(redis_url), 3600)
    photo = encode_png(np.random.default_rng(0).integers(0, 255, (3000, 4000, 3), dtype=np.uint8))
    refs = {"<image 1>": blobs.put(photo), "<sub-image 1>": blobs.put(photo[:1000]),
            "<sub-image 2>": blobs.put(photo[:2000])}
    context = ToolContext(trajectory_id="bench", call_id="c", question="bench", images=refs)
    payload = ["ping", {}, context.model_dump(mode="json")]

    async_redis = aredis.Redis.from_url(redis_url)
    executor = CeleryToolExecutor(app, async_redis)
    await executor.start()

    def raw_call() -> None:
        app.send_task(task_name(service), args=payload, queue=service).get(timeout=30)

    async def fabric_call() -> None:
        result = await executor.call(ToolInvocation(service, "ping", {}, context, 30))
        if not result.ok:
            raise RuntimeError(result.text)

    # Warm both paths (worker pool, connections), wait for the worker.
    deadline = time.monotonic() + 60
    while True:
        try:
            await asyncio.to_thread(raw_call)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
    for _ in range(20):
        await asyncio.to_thread(raw_call)
        await fabric_call()

    raw: list[float] = []
    fabric: list[float] = []
    block = 25  # alternate blocks so drift on a noisy machine hits both paths alike
    for _ in range(calls // block):
        for _ in range(block):
            t0 = time.perf_counter()
            await asyncio.to_thread(raw_call)
            raw.append(time.perf_counter() - t0)
        for _ in range(block):
            t0 = time.perf_counter()
            await fabric_call()
            fabric.append(time.perf_counter() - t0)
    # asyncio.to_thread adds a thread hop to the raw path; measure it and take it out.
    hop: list[float] = []
    for _ in range(200):
        t0 = time.perf_counter()
        await asyncio.to_thread(lambda: None)
        hop.append(time.perf_counter() - t0)
    hop_p50 = statistics.median(hop)
    raw = [max(r - hop_p50, 0.0) for r in raw]

    total = trajectories * per_trajectory

    async def trajectory() -> None:
        for _ in range(per_trajectory):
            await fabric_call()

    t0 = time.perf_counter()
    await asyncio.gather(*(trajectory() for _ in range(trajectories)))
    fabric_rate = total / (time.perf_counter() - t0)

    def raw_fanout() -> float:
        start = time.perf_counter()
        pending = [app.send_task(task_name(service), args=payload, queue=service) for _ in range(total)]
        for result in pending:
            result.get(timeout=60)
        return total / (time.perf_counter() - start)

    raw_rate = await asyncio.to_thread(raw_fanout)
    await executor.close()
    await async_redis.aclose()

    p50_ratio = statistics.median(fabric) / statistics.median(raw)
    print(f"no-op tool call round trip, {len(raw)} calls each ({service} worker, same Redis):")
    print(f"  raw Celery  p50 {statistics.median(raw) * 1e3:7.2f} ms   p99 {percentile(raw, 0.99) * 1e3:7.2f} ms")
    print(f"  fabric      p50 {statistics.median(fabric) * 1e3:7.2f} ms   p99 {percentile(fabric, 0.99) * 1e3:7.2f} ms")
    print(f"  p99 ratio {percentile(fabric, 0.99) / percentile(raw, 0.99):.2f}x")
    print(f"throughput, {total} calls: fabric {fabric_rate:,.0f} calls/s over {trajectories} concurrent trajectories; "
          f"raw Celery fan-out {raw_rate:,.0f} calls/s; ratio {fabric_rate / raw_rate:.2f}x (target >= 0.8)")
    print(f"largest broker message: {largest['bytes']:,} bytes (the trajectory holds {len(photo):,}-byte images)")
    print(f"fabric/raw Celery p50 latency ratio: {p50_ratio:.2f}x (target <= 1.3)")
    return 0


def _tracing_overhead(service: str, calls: int, workdir: Path) -> None:
    """No-op call p50 through the dispatcher, tracing off against tracing on, blocks interleaved.

    Tracing is set up once per process, so each side has its own worker, measuring process and Redis, alive
    together, and otherwise the same: "off" with OTEL_TRACES_EXPORTER=none, "on" with the embedded default
    (both processes' spans to the JSON-lines file exporter). The same service on both sides (a service per side
    showed a few % between two untraced sides).
    """
    import contextlib
    import subprocess

    from bench.cost import session_cpu_s
    from toolfabric_server.devstack.processes import Child
    from toolfabric_server.devstack.redis_server import RedisServer

    base = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    exporters = {"off": {"OTEL_TRACES_EXPORTER": "none"},
                 "on": {"OTEL_TRACES_EXPORTER": "file",
                        "TOOLFABRIC_TELEMETRY_TRACES_FILE": str(workdir / "traces.jsonl")}}
    workers, probes = [], {}
    with contextlib.ExitStack() as stack:
        try:
            for side, exporter in exporters.items():
                redis_server = stack.enter_context(RedisServer(workdir / f"redis-{side}"))
                env = {**base, **exporter, "TOOLFABRIC_REDIS_URL": redis_server.url}
                workers.append(Child(f"worker-tracing-{side}", [sys.executable, "-m", "toolfabric.cli.main",
                                                                 "worker", service], workdir, env=env))
                probes[side] = subprocess.Popen([sys.executable, __file__, "--tracing-probe", "--service", service],
                                                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                                start_new_session=True)  # its own session: its CPU read apart
            samples: dict[str, list[float]] = {"off": [], "on": []}
            # CPU seconds per side and process (the caller; the worker with its pool), over the measured blocks
            sessions = {side: {"caller": probes[side].pid, "worker": workers[i].proc.pid}
                        for i, side in enumerate(exporters)}
            cpu: dict[str, dict[str, float]] = {side: {} for side in exporters}

            def block(side: str, n: int) -> list[float]:
                probe = probes[side]
                assert probe.stdin is not None and probe.stdout is not None
                probe.stdin.write(f"{n}\n")
                probe.stdin.flush()
                return list(json.loads(probe.stdout.readline()))

            for side in probes:
                block(side, 20)  # waits for its worker, then warms up
            size = 25
            ratios = []  # per pair of adjacent blocks: on p50 / off p50 (drift of the machine's load cancels out)
            before = session_cpu_s()
            for i in range(max(1, calls // size)):
                pair = {}
                for side in (("off", "on") if i % 2 == 0 else ("on", "off")):  # alternate who goes first
                    pair[side] = block(side, size)
                    samples[side] += pair[side]
                ratios.append(statistics.median(pair["on"]) / statistics.median(pair["off"]))
            after = session_cpu_s()
            for side, pids in sessions.items():
                for role, sid in pids.items():
                    cpu[side][role] = after.get(sid, 0.0) - before.get(sid, 0.0)
        finally:
            for probe in probes.values():
                if probe.stdin:
                    probe.stdin.close()
                probe.wait(30)
            for worker in workers:
                worker.stop()
    off, on = statistics.median(samples["off"]), statistics.median(samples["on"])
    spans = sum(1 for _ in (workdir / "traces.jsonl").open())
    print(f"tracing off/on, no-op call inside an execute_tool span, {len(samples['on'])} calls each "
          f"({spans:,} spans written): p50 off {off * 1e3:.2f} ms, on {on * 1e3:.2f} ms")
    per_call = {side: {role: seconds / len(samples[side]) * 1e6 for role, seconds in roles.items()}
                for side, roles in cpu.items()}
    print("  CPU per call (µs, from /proc): " + "; ".join(
        f"{side} caller {per_call[side]['caller']:.0f} + worker {per_call[side]['worker']:.0f}" for side in per_call)
        + f"; tracing adds {sum(per_call['on'].values()) - sum(per_call['off'].values()):.0f} µs")
    if len(ratios) >= 4:
        q = statistics.quantiles(ratios, n=4)
        # The spread of the ratio: of the pairs of blocks, and of the overall ratio resampled (its noise).
        boot = sorted(_resampled_ratio(samples["on"], samples["off"], seed) for seed in range(200))
        print(f"  per pair of {size}-call blocks ({len(ratios)} pairs): median {statistics.median(ratios):.3f}x, "
              f"quartiles {q[0]:.3f}-{q[2]:.3f}x; overall ratio resampled: 90 % within "
              f"{boot[10]:.3f}-{boot[189]:.3f}x")
    print(f"tracing-on/off p50 latency ratio: {on / off:.3f}x (target <= 1.05)")


def _resampled_ratio(on: list[float], off: list[float], seed: int) -> float:
    import random

    pick = random.Random(seed)
    return statistics.median(pick.choices(on, k=len(on))) / statistics.median(pick.choices(off, k=len(off)))


async def _tracing_probe(redis_url: str, service: str) -> int:
    """Reads a call count per line on stdin, answers each with a JSON list of round-trip seconds."""
    import redis.asyncio as aredis
    from opentelemetry import trace

    from toolfabric_server.common import settings
    from toolfabric_server.common.celery_app import make_celery
    from toolfabric_server.common.telemetry import setup as telemetry
    from toolfabric_server.common.tools import ToolContext
    from toolfabric_server.engine.ports import ToolInvocation
    from toolfabric_server.gateway.celery_executor import CeleryToolExecutor

    # On or off, as OTEL_TRACES_EXPORTER says.
    telemetry.setup_telemetry("toolfabric-bench", telemetry.traces_file(settings.common(), settings.telemetry()))
    tracer = trace.get_tracer("toolfabric.bench")
    async_redis = aredis.Redis.from_url(redis_url)
    executor = CeleryToolExecutor(make_celery(settings.common(), settings.worker()), async_redis)
    await executor.start()
    context = ToolContext(trajectory_id="bench", call_id="c", question="bench")

    async def call() -> float:
        t0 = time.perf_counter()
        with tracer.start_as_current_span("execute_tool ping"):  # what the loop wraps every call in
            result = await executor.call(ToolInvocation(service, "ping", {}, context, 60))
        if not result.ok:
            raise RuntimeError(result.text)
        return time.perf_counter() - t0

    for line in sys.stdin:
        print(json.dumps([await call() for _ in range(int(line))]), flush=True)
    await executor.close()
    await async_redis.aclose()
    telemetry.shutdown_telemetry()
    return 0


if __name__ == "__main__":
    sys.exit(main())
