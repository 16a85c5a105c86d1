"""RL rollouts through the step API: many trajectories stepping at once, against raw Celery in the same run.

A trainer (verl, SkyRL, rLLM) steps every trajectory of a batch, then every one again. Here:
  rollout     N concurrent trajectories x S steps through verl-tool's POST /get_observation on a real
              gateway process (each step: parse the action, run one `noop` tool call on its own worker
              queue, record the events, keep the state in Redis), batches of 128 actions per request;
              against raw Celery doing the same N x S no-op tasks (`send_task` of the whole step, then
              collect) on the same Redis and the same worker
  per call    one trajectory at a time: a step through the step API vs one raw Celery call, for the
              `noop` tool and for a `code` call (the vision worker's sandbox): the difference is the
              fabric's overhead per call
Targets (issue 14): overhead well below the ~66 ms verl-tool reports for one python call — under 6.6 ms
for a no-op, under 20 ms p50 for a `code` call.
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
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.cost import redis_commands  # noqa: E402  (the same INFO commandstats reading)

NOOP = '<think>check</think><tool_call>{"name": "noop", "arguments": {}}</tool_call>'
CODE = '<tool_call>{"name": "code", "arguments": {"code": "1 + 1"}}</tool_call>'
CHUNK = 128
JSON = {"content-type": "application/json"}
COUNTED = 100


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1e3:8.2f} ms   p99 {percentile(values, 0.99) * 1e3:8.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps and samples; well under 60 s")
    parser.add_argument("--trajectories", type=int, default=1024, help="0: the per-call comparison only")
    parser.add_argument("--samples", type=int, help="per-call samples of each kind (default 40 with --quick, else 200)")
    args = parser.parse_args()
    steps, samples = (2, 40) if args.quick else (6, 200)
    samples = args.samples or samples

    from toolfabric_server.devstack.plugin_dist import env_with, write_dist
    from toolfabric_server.devstack.processes import Child, free_port, port_open, wait_until
    from toolfabric_server.devstack.redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="toolfabric-rollout-") as tmp, \
            RedisServer(Path(tmp) / "redis") as redis_server:
        workdir = Path(tmp)
        site = write_dist(workdir / "site", "toolfabric_bench", {"noop": "bench.noop_plugin:PLUGIN"})
        grpc_port, http_port = free_port(), free_port()
        env = env_with(site) | {
            "TOOLFABRIC_REDIS_URL": redis_server.url, "TOOLFABRIC_DATA_DIR": str(workdir / "data"),
            "TOOLFABRIC_GATEWAY_PORT": str(grpc_port), "TOOLFABRIC_STEP_HTTP_PORT": str(http_port),
            "TOOLFABRIC_MODEL_TRITON_URL": f"127.0.0.1:{free_port()}",  # no model: the trainer writes the actions
            "TOOLFABRIC_WORKER_CONCURRENCY": "2", "OTEL_TRACES_EXPORTER": "none",
        }
        os.environ.update({"TOOLFABRIC_REDIS_URL": redis_server.url, "PYTHONPATH": env["PYTHONPATH"]})
        sys.path.insert(0, str(site))
        children = [Child(f"worker-{s}", [sys.executable, "-m", "toolfabric.cli.main", "worker", s], workdir, env=env)
                    for s in ("noop", "vision")]
        children.append(Child("gateway", [sys.executable, "-m", "toolfabric.cli.main", "gateway"], workdir, env=env))
        try:
            wait_until(lambda: port_open(http_port), 60, "step API", children[-1].proc, children[-1].log)
            return asyncio.run(_measure(redis_server.url, f"http://127.0.0.1:{http_port}/get_observation",
                                        args.trajectories, steps, samples, children[-1].proc.pid))
        except BaseException:
            print(f"gateway log (last lines):\n{children[-1].log.read_text()[-3000:]}", file=sys.stderr)
            raise
        finally:
            for child in children:
                child.stop()


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` so far, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(redis_url: str, url: str, trajectories: int, steps: int, samples: int, gateway_pid: int) -> int:
    import aiohttp
    from tqdm import tqdm

    from toolfabric_server.common import settings
    from toolfabric_server.common.celery_app import make_celery
    from toolfabric_server.common.tools import ToolContext, task_name

    app = make_celery(settings.common(), settings.worker())
    context = ToolContext(trajectory_id="bench", call_id="c").model_dump(mode="json")

    def raw(service: str, tool: str, arguments: dict[str, str]) -> None:
        app.send_task(task_name(service), args=[tool, arguments, context], queue=service).get(timeout=120)

    # aiohttp, not httpx: httpx spends ~0.7 ms of the client's own CPU per request here (aiohttp ~0.13 ms), which
    # would count against the step API in the per-call comparison (the raw path's client is Celery's).
    connector = aiohttp.TCPConnector(limit=trajectories // CHUNK + 4)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=300),
                                     raise_for_status=True) as session:
        async def post(body: dict[str, Any]) -> dict[str, Any]:
            async with session.post(url, data=json.dumps(body), headers=JSON) as reply:
                return cast(dict[str, Any], json.loads(await reply.read()))

        async def step(ids: list[str], actions: list[str], **extra: object) -> dict:
            body = await post({"trajectory_ids": ids, "actions": actions, **extra})
            if not all(body["valids"]):
                bad = [o for o, v in zip(body["observations"], body["valids"], strict=True) if not v]
                raise RuntimeError(f"{len(bad)} invalid steps, e.g. {bad[:3]}")
            return body

        # Warm up: workers answer, the gateway's executor is subscribed, the sandbox is up.
        deadline = time.monotonic() + 60
        while True:
            try:
                await asyncio.to_thread(raw, "noop", "noop", {})
                await asyncio.to_thread(raw, "vision", "code", {"code": "1"})
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
        for i in range(10):
            await step([f"warm-{i}"], [NOOP], finish=[False])
            await step([f"warm-code-{i}"], [CODE])

        # Per call: one trajectory stepping alone, blocks alternated so drift hits both paths alike.
        # Besides: an empty request (the HTTP door and the policy, no Redis) and a step whose action makes no call
        # (state read, parse, records, state write): where the step's added latency goes.
        per_call: dict[str, list[float]] = {k: [] for k in ("raw noop", "step noop", "raw code", "step code",
                                                            "empty request", "step, no call", "redis ping")}
        import redis.asyncio as aredis

        pinger = aredis.Redis.from_url(redis_url)
        with tqdm(total=samples, desc="per call", unit="call", file=sys.stderr) as bar:
            for block in range(samples // 20):
                for _ in range(20):
                    t0 = time.perf_counter()
                    await post({"trajectory_ids": [], "actions": []})
                    per_call["empty request"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    await post({"trajectory_ids": [f"nocall-{block}"], "actions": ["<think>no call</think>"]})
                    per_call["step, no call"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    await pinger.ping()
                    per_call["redis ping"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    await asyncio.to_thread(raw, "noop", "noop", {})
                    per_call["raw noop"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    await step([f"single-{block}"], [NOOP])
                    per_call["step noop"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    await asyncio.to_thread(raw, "vision", "code", {"code": "1 + 1"})
                    per_call["raw code"].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    await step([f"single-code-{block}"], [CODE])
                    per_call["step code"].append(time.perf_counter() - t0)
                    bar.update()
        await pinger.aclose()
        hop = []
        for _ in range(200):
            t0 = time.perf_counter()
            await asyncio.to_thread(lambda: None)
            hop.append(time.perf_counter() - t0)
        for key in ("raw noop", "raw code"):  # the raw path pays a thread hop the step path does not
            per_call[key] = [max(v - statistics.median(hop), 0.0) for v in per_call[key]]

        # Redis commands per call on each path (INFO commandstats, every client of this Redis), and the gateway's
        # CPU per step call (from /proc: hardly depends on the machine's load, unlike the latencies).
        commands: dict[str, dict[str, float]] = {}
        gateway_cpu_ms = 0.0
        for key in ("step noop", "raw noop"):
            before = await asyncio.to_thread(redis_commands, redis_url)
            cpu_before = _cpu_s(gateway_pid)
            for _ in range(COUNTED):
                if key == "step noop":
                    await step(["counted"], [NOOP])
                else:
                    await asyncio.to_thread(raw, "noop", "noop", {})
            if key == "step noop":
                gateway_cpu_ms = (_cpu_s(gateway_pid) - cpu_before) * 1e3 / COUNTED
            after = await asyncio.to_thread(redis_commands, redis_url)
            commands[key] = {name: (after[name] - before.get(name, 0)) / COUNTED for name in after
                             if after[name] - before.get(name, 0) - (name == "info") > 0}

        rollout = await _rollout(app, context, step, trajectories, steps) if trajectories else None

    print(f"\nRedis commands per call, one trajectory at a time ({COUNTED} calls each; INFO commandstats):")
    for key, per in commands.items():
        listed = ", ".join(f"{name} {n:g}" for name, n in sorted(per.items(), key=lambda kv: -kv[1]) if name != "info")
        print(f"  {key:10s}  {sum(n for name, n in per.items() if name != 'info'):5.1f}: {listed}")
    print(f"  the gateway's CPU per step call: {gateway_cpu_ms:.2f} ms")
    print(f"\nper call, one trajectory at a time ({samples} samples each, same Redis and workers):")
    for key, values in per_call.items():
        print(f"  {key:10s}  {ms(values)}")
    noop_over = statistics.median(per_call["step noop"]) - statistics.median(per_call["raw noop"])
    code_over = statistics.median(per_call["step code"]) - statistics.median(per_call["raw code"])
    print(f"  fabric overhead p50: no-op {noop_over * 1e3:.2f} ms (target < 6.6 ms), "
          f"code {code_over * 1e3:.2f} ms (target < 20 ms); a whole code step p50 "
          f"{statistics.median(per_call['step code']) * 1e3:.2f} ms")
    p50 = {key: statistics.median(values) * 1e3 for key, values in per_call.items()}
    print("  where a no-op step's added latency goes (p50 differences, ms):")
    print(f"    HTTP door + policy (an empty request)                        {p50['empty request']:6.2f}")
    print(f"    state read, parse, records, state write (no-call step - empty) "
          f"{p50['step, no call'] - p50['empty request']:6.2f}")
    print(f"    the call through the executor vs raw Celery (step - no-call step - raw) "
          f"{p50['step noop'] - p50['step, no call'] - p50['raw noop']:6.2f}")
    print(f"    (one Redis round trip from asyncio: {p50['redis ping']:.2f})")
    numbers = {"gateway_cpu_ms_per_step": round(gateway_cpu_ms, 2), "noop_overhead_ms": round(noop_over * 1e3, 2),
               "code_overhead_ms": round(code_over * 1e3, 2)}
    if rollout is not None:
        fabric_steps, fabric_item, fabric_total, raw_steps, raw_item, raw_total = rollout
        total = trajectories * steps
        print(f"\nrollout: {trajectories} concurrent trajectories x {steps} steps = {total} tool calls "
              f"(requests of {CHUNK} actions):")
        print(f"  step API    {total / fabric_total:8,.0f} steps/s   per step batch {ms(fabric_steps)}")
        print(f"              per trajectory step {ms(fabric_item)}")
        print(f"  raw Celery  {total / raw_total:8,.0f} calls/s   per step batch {ms(raw_steps)}")
        print(f"              per call            {ms(raw_item)}")
        print(f"  throughput ratio step API / raw Celery: {raw_total / fabric_total:.2f}x; "
              f"fabric time per call in the rollout: {(fabric_total - raw_total) / total * 1e3:.2f} ms")
        numbers |= {"steps_per_s": round(total / fabric_total), "raw_calls_per_s": round(total / raw_total),
                    "ratio": round(raw_total / fabric_total, 2)}
    print(f"load average {os.getloadavg()[0]:.1f}; added latency of a step over a raw Celery call, p50: "
          f"{noop_over * 1e3:.2f} ms (issue 24 target: <= 1 ms)")
    print(json.dumps(numbers))
    return 0


async def _rollout(app: Any, context: dict[str, Any], step: Any, trajectories: int,
                   steps: int) -> tuple[list[float], list[float], float, list[float], list[float], float]:
    """Every trajectory takes a step, in requests of CHUNK actions sent at once; then raw Celery does the same calls
    on the same worker; then the next step. The two paths alternate step by step, so a change in the machine's
    load (it swung the ratio 0.3-1.1x between runs when each path ran all its steps in one go) hits both alike."""
    from tqdm import tqdm

    from toolfabric_server.common.tools import task_name

    ids = [f"rollout-{i}" for i in range(trajectories)]
    fabric_steps: list[float] = []
    fabric_item: list[float] = []
    raw_steps: list[float] = []
    raw_item: list[float] = []

    def raw_step() -> None:
        t0 = time.perf_counter()
        pending = [app.send_task(task_name("noop"), args=["noop", {}, context], queue="noop")
                   for _ in range(trajectories)]
        for result in pending:
            result.get(timeout=300)
            raw_item.append(time.perf_counter() - t0)
        raw_steps.append(time.perf_counter() - t0)

    for s in tqdm(range(steps), desc=f"rollout: {trajectories} trajectories", unit="step", file=sys.stderr):
        t0 = time.perf_counter()

        async def chunk(part: list[str], last: bool, started: float = t0) -> None:
            await step(part, [NOOP] * len(part), is_last_step=[last] * len(part))
            fabric_item.extend([time.perf_counter() - started] * len(part))

        await asyncio.gather(*(chunk(ids[i:i + CHUNK], s == steps - 1) for i in range(0, trajectories, CHUNK)))
        fabric_steps.append(time.perf_counter() - t0)
        await asyncio.to_thread(raw_step)
    return fabric_steps, fabric_item, sum(fabric_steps), raw_steps, raw_item, sum(raw_steps)

if __name__ == "__main__":
    raise SystemExit(main())
