"""No-op tool calls per second: the fabric against raw Celery and Ray, all in one run (issue 24, target 2).

For each configuration — `shipped` (the settings the fabric ships with), `tuned` (TUNED below, the worker settings
the same for both paths, so the raw baseline is never handicapped) and `batched` (the tuned worker, and the
gateway sending the calls that wait for the same publish several to a message: common/batches.py; raw Celery has no
batching, so its tuned figure is its best) — one worker answers `ping` and, on the same Redis, are measured:
  fabric      the gateway's dispatcher (gateway/celery_executor.py: Celery publish, the worker, the result back
              on the executor's reply list) with T concurrent trajectories of K calls each, and one call at a time
  raw Celery  `send_task` fan-out of the same number of calls, then `.get()` on each (Celery's own result path,
              per-task pub/sub), and one `send_task(...).get()` at a time
Then Ray (a bench-only extra: `pip install -e '.[bench]'`): the same number of no-op remote tasks fanned out,
and one `ray.get(noop.remote())` at a time, on a local Ray with as many CPUs as the machine. Last, the yardstick
for one call's round trip: four Redis PINGs from the same event loop. The load average is printed beside each
phase: on a shared machine only the ratios of one run mean anything, so `--trials` alternates the configurations
(shipped, tuned, shipped, ...) and reports the median of each figure over the trials.
Targets (issue 24): fabric >= 2,000 calls/s (Ray's level on this machine) and p50 <= 3x four Redis round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SERVICE = "fetch"  # every service answers `ping` through the same task path
# The worker settings the tuned configuration changes (environment of the worker and of this process alike).
TUNED = {
    # Each pool process holds a few tasks ahead instead of one: the worker's main process does not wait for a
    # broker round trip between tasks. Still acks late, so a dead worker's reserved tasks go back to the queue.
    "TOOLFABRIC_WORKER_PREFETCH_MULTIPLIER": "16",
}
# `batched`: the tuned worker, and the gateway sends the calls waiting for the same publish in one message
# (common/batches.py). Raw Celery has no batching of its own: its tuned figure is the baseline.
BATCHED = TUNED | {"TOOLFABRIC_GATEWAY_CALLS_PER_MESSAGE": json.dumps({SERVICE: 64})}
CONFIGS = {"shipped": {}, "tuned": TUNED, "batched": BATCHED}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer calls; well under a minute on an idle machine")
    parser.add_argument("--no-ray", action="store_true", help="skip Ray even when it is installed")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--trials", type=int, default=1, help="alternate the configurations this many times")
    args = parser.parse_args()
    trajectories, per_trajectory, single = (32, 10, 100) if args.quick else (64, 40, 400)
    total = trajectories * per_trajectory

    from toolfabric_server.devstack.processes import Child
    from toolfabric_server.devstack.redis_server import RedisServer

    trials: dict[str, list[dict[str, float]]] = {config: [] for config in args.configs}
    with tempfile.TemporaryDirectory(prefix="toolfabric-throughput-") as tmp, \
            RedisServer(Path(tmp) / "redis") as redis_server:
        base_env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("OTEL_", "TOOLFABRIC_WORKER_", "TOOLFABRIC_GATEWAY_"))}
        base_env |= {"TOOLFABRIC_REDIS_URL": redis_server.url, "OTEL_TRACES_EXPORTER": "none"}
        for trial in range(args.trials):
            for config in args.configs:
                env = base_env | CONFIGS[config]
                os.environ.clear()
                os.environ.update(env)
                worker = Child(f"worker-{config}-{trial}", [sys.executable, "-m", "toolfabric.cli.main", "worker",
                                                            SERVICE], Path(tmp), env=env)
                try:
                    # Settings are read once per process: each configuration measures in a process of its own.
                    trials[config].append(_in_child(env, redis_server.url, trajectories, per_trajectory, single))
                finally:
                    worker.stop()
                r = trials[config][-1]
                print(f"trial {trial + 1} {config}: fabric {r['fabric_rate']:,.0f} calls/s, raw Celery "
                      f"{r['raw_rate']:,.0f} calls/s ({r['fabric_rate'] / r['raw_rate']:.2f}x), p50 "
                      f"{r['fabric_p50'] * 1e3:.2f} vs {r['raw_p50'] * 1e3:.2f} ms; load average {r['load']:.1f}",
                      flush=True)
        results = {config: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
                   for config, runs in trials.items() if runs}
        if not args.no_ray:
            results["ray"] = _ray(total, single)
    _report(results, total, trajectories, args.trials)
    return 0


def _in_child(env: dict[str, str], redis_url: str, trajectories: int, per_trajectory: int,
              single: int) -> dict[str, float]:
    import subprocess

    argv = [sys.executable, "-c", f"import sys, json, asyncio; sys.path.insert(0, {str(ROOT)!r}); "
            "from bench.throughput import _celery; "
            f"print(json.dumps(asyncio.run(_celery({redis_url!r}, {trajectories}, {per_trajectory}, {single}))))"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise RuntimeError(f"measurement failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


async def _celery(redis_url: str, trajectories: int, per_trajectory: int, single: int) -> dict[str, float]:
    import redis.asyncio as aredis

    from toolfabric_server.common import settings
    from toolfabric_server.common.celery_app import make_celery
    from toolfabric_server.common.tools import ToolContext, task_name
    from toolfabric_server.engine.ports import ToolInvocation
    from toolfabric_server.gateway.celery_executor import CeleryToolExecutor
    from toolfabric_server.gateway.settings import GatewaySettings

    app = make_celery(settings.common(), settings.worker())
    context = ToolContext(trajectory_id="bench", call_id="c")
    payload = ["ping", {}, context.model_dump(mode="json")]
    client = aredis.Redis.from_url(redis_url)
    gateway = GatewaySettings()
    executor = CeleryToolExecutor(app, client, calls_per_message=gateway.calls_per_message,
                                  messages_in_flight=gateway.batched_messages_in_flight)
    await executor.start()

    def raw_call() -> None:
        app.send_task(task_name(SERVICE), args=payload, queue=SERVICE).get(timeout=60)

    async def fabric_call() -> None:
        result = await executor.call(ToolInvocation(SERVICE, "ping", {}, context, 60))
        if not result.ok:
            raise RuntimeError(result.text)

    deadline = time.monotonic() + 90  # the worker starts
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

    # One call at a time, blocks alternated so drift on a shared machine hits every path alike.
    raw: list[float] = []
    fabric: list[float] = []
    pings: list[float] = []
    for _ in range(max(1, single // 25)):
        for _ in range(25):
            t0 = time.perf_counter()
            await asyncio.to_thread(raw_call)
            raw.append(time.perf_counter() - t0)
        for _ in range(25):
            t0 = time.perf_counter()
            await fabric_call()
            fabric.append(time.perf_counter() - t0)
        for _ in range(25):
            t0 = time.perf_counter()
            for _ in range(4):
                await client.ping()
            pings.append(time.perf_counter() - t0)
    hop = []
    for _ in range(200):  # the raw path pays a thread hop the others do not: take it out
        t0 = time.perf_counter()
        await asyncio.to_thread(lambda: None)
        hop.append(time.perf_counter() - t0)
    raw = [max(r - statistics.median(hop), 0.0) for r in raw]

    total = trajectories * per_trajectory

    async def trajectory() -> None:
        for _ in range(per_trajectory):
            await fabric_call()

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    await asyncio.gather(*(trajectory() for _ in range(trajectories)))
    fabric_rate = total / (time.perf_counter() - t0)

    def raw_fanout() -> float:
        start = time.perf_counter()
        pending = [app.send_task(task_name(SERVICE), args=payload, queue=SERVICE) for _ in range(total)]
        for result in pending:
            result.get(timeout=120)
        return total / (time.perf_counter() - start)

    raw_rate = await asyncio.to_thread(raw_fanout)
    await executor.close()
    await client.aclose()
    return {"fabric_rate": fabric_rate, "raw_rate": raw_rate, "load": (load_before + os.getloadavg()[0]) / 2,
            "fabric_p50": statistics.median(fabric), "fabric_p99": percentile(fabric, 0.99),
            "raw_p50": statistics.median(raw), "raw_p99": percentile(raw, 0.99),
            "ping4_p50": statistics.median(pings)}


def _ray(total: int, single: int) -> dict[str, float]:
    try:
        import ray
    except ImportError:
        print("Ray is not installed: no Ray figures (a bench-only dependency: `.venv/bin/pip install -e '.[bench]'`, "
              "or run with --no-ray)", file=sys.stderr)
        return {}
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        @ray.remote
        def noop() -> None:
            return None

        ray.get([noop.remote() for _ in range(200)])  # workers up
        latencies = []
        for _ in range(single):
            t0 = time.perf_counter()
            ray.get(noop.remote())
            latencies.append(time.perf_counter() - t0)
        load_before = os.getloadavg()[0]
        t0 = time.perf_counter()
        ray.get([noop.remote() for _ in range(total)])
        rate = total / (time.perf_counter() - t0)
        return {"rate": rate, "p50": statistics.median(latencies), "p99": percentile(latencies, 0.99),
                "load": (load_before + os.getloadavg()[0]) / 2}
    finally:
        ray.shutdown()


def _report(results: dict[str, dict[str, float]], total: int, trajectories: int, trials: int) -> None:
    print(f"\nmedians over {trials} trial(s); no-op tool calls, {total} per path ({SERVICE} worker `ping`, "
          f"one Redis; fabric over {trajectories} "
          f"concurrent trajectories, raw Celery and Ray fanned out); now {load()}")
    ray = results.get("ray") or {}
    for config in CONFIGS:
        r = results.get(config)
        if not r:
            continue
        settings = "the shipped settings" if config == "shipped" else \
            f"{config}: " + ", ".join(f"{k}={v}" for k, v in CONFIGS[config].items())
        print(f"  {config} ({settings}; load average {r['load']:.1f}):")
        print(f"    fabric      {r['fabric_rate']:7,.0f} calls/s   one at a time p50 {r['fabric_p50'] * 1e3:6.2f} ms  "
              f"p99 {r['fabric_p99'] * 1e3:6.2f} ms")
        print(f"    raw Celery  {r['raw_rate']:7,.0f} calls/s   one at a time p50 {r['raw_p50'] * 1e3:6.2f} ms  "
              f"p99 {r['raw_p99'] * 1e3:6.2f} ms")
        print(f"    fabric / raw Celery throughput {r['fabric_rate'] / r['raw_rate']:.2f}x; fabric p50 "
              f"{r['fabric_p50'] / r['ping4_p50']:.2f}x four Redis round trips ({r['ping4_p50'] * 1e3:.2f} ms) "
              f"(target <= 3x)")
        if ray:
            print(f"    fabric / Ray throughput {r['fabric_rate'] / ray['rate']:.2f}x")
    if ray:
        print(f"  Ray         {ray['rate']:7,.0f} tasks/s   one at a time p50 {ray['p50'] * 1e3:6.2f} ms  "
              f"p99 {ray['p99'] * 1e3:6.2f} ms (load average {ray['load']:.1f})")
    if "shipped" in results and "tuned" in results:
        s, t = results["shipped"], results["tuned"]
        print(f"  tuning moved the ceiling: fabric {t['fabric_rate'] / s['fabric_rate']:.2f}x, raw Celery "
              f"{t['raw_rate'] / s['raw_rate']:.2f}x")
    if "batched" in results:
        b = results["batched"]
        versus_ray = f", {b['fabric_rate'] / ray['rate']:.2f}x Ray" if ray else ""
        print(f"  batched: fabric {b['fabric_rate']:,.0f} calls/s = {b['fabric_rate'] / b['raw_rate']:.2f}x raw Celery "
              f"on the same worker settings{versus_ray} (target >= 2,000/s); one call p50 "
              f"{b['fabric_p50'] / b['ping4_p50']:.2f}x four Redis round trips (target <= 3x)")


if __name__ == "__main__":
    sys.exit(main())
