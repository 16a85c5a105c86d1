"""Load: N concurrent demo trajectories (10 tool calls each, all three services) through the embedded stack.

Everything runs on this machine: redis-server, Triton with the baseline policy, one worker per service, the
gateway(s) and the clients (one process, asyncio, one channel per 25 runs so SO_REUSEPORT spreads them over
gateway processes). The baseline, measured in the same run at equal settings, is one trajectory alone.
For each N it prints completed / failed / hung, trajectories/s, p50 / p99 latency, tool calls/s, and ratios
to the baseline (latency: how much slower under load; throughput: how much more work per second).

  python bench/load.py --quick          # N = 10 (under 60 s with start-up)
  python bench/load.py                  # N = 50, 200, 500
  python bench/load.py --gateways 2     # each N with one gateway process, then with two sharing every port

With --gateways G > 1 every N runs twice in the same run at equal settings: first on the stack's one gateway
process, then with G-1 more started on the same ports (TOOLFABRIC_GATEWAY_REUSE_PORT: the kernel spreads the
connections), and the throughput of G processes is printed as a ratio to the one.
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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Equal settings for every N: budgets generous enough that only a fault or a hang can fail a run.
SETTINGS = {
    "TOOLFABRIC_GATEWAY_DEFAULT_DEADLINE_S": "1800",
    "TOOLFABRIC_GATEWAY_TOOL_TIMEOUT_S": "900",
    "TOOLFABRIC_GATEWAY_MAX_RUNNING": "600",
    "TOOLFABRIC_GATEWAY_ADMISSION_WAIT_S": "60",
    # Set for one gateway too, so G processes and one differ in nothing else.
    "TOOLFABRIC_GATEWAY_REUSE_PORT": "true",
}
HUNG_S = 1200.0
# --gateway-bound: one model step of ~600 words streamed in many small chunks, no tool call (tests/model_repository).
GATEWAY_BOUND = json.dumps({"script": [{"text": "<think>" + "step " * 600 + "</think><answer>done</answer>",
                                        "chunk_delay_s": 0}]})  # a run with no end after this long counts as hung


@dataclass
class Round:
    n: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    tool_calls: int = 0
    failed: list[str] = field(default_factory=list)
    hung: int = 0

    @property
    def completed(self) -> int:
        return len(self.latencies)

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _one(client: object, question: str, images: list[bytes], options: dict[str, str], into: Round) -> None:
    from toolfabric import ToolfabricError

    started = time.monotonic()
    try:
        async with asyncio.timeout(HUNG_S):
            result = await client.ask(question, images=images, **options)  # type: ignore[attr-defined]
    except TimeoutError:
        into.hung += 1
        return
    except ToolfabricError as exc:
        into.failed.append(f"{type(exc).__name__} ({exc.code.name}) after {time.monotonic() - started:.0f}s: "
                           f"{exc}"[:200])
        return
    if result.status != "STATUS_COMPLETED":
        into.failed.append(f"{result.status}: {result.reason}"[:160])
        return
    into.latencies.append(time.monotonic() - started)
    into.tool_calls += len(result.tool_calls)


async def _round(target: str, n: int, question: str, images: list[bytes], options: dict[str, str]) -> Round:
    from toolfabric import AsyncClient

    result = Round(n)
    clients = [AsyncClient(target, timeout_s=HUNG_S + 60) for _ in range(max(1, (n + 24) // 25))]
    started = time.monotonic()
    try:
        await asyncio.gather(*[_one(clients[i % len(clients)], question, images, options, result) for i in range(n)])
    finally:
        for client in clients:
            await client.close()
    result.seconds = time.monotonic() - started
    return result


def _report(r: Round, base: Round) -> None:
    rate = r.completed / r.seconds
    base_rate = base.completed / base.seconds
    print(f"N={r.n:4d}  completed {r.completed:4d}  failed {len(r.failed):3d}  hung {r.hung:3d}  "
          f"{rate:6.2f} trajectories/s  p50 {r.pct(0.5):6.1f}s  p99 {r.pct(0.99):6.1f}s  "
          f"{r.tool_calls / r.seconds:7.1f} tool calls/s  |  p50 {r.pct(0.5) / base.pct(0.5):5.1f}x alone, "
          f"throughput {rate / base_rate:5.1f}x alone", flush=True)
    for reason in r.failed[:8]:
        print(f"          failed: {reason}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 10 only; under 60 s including start-up")
    parser.add_argument("--n", type=int, nargs="*", help="concurrency levels (default 50 200 500)")
    parser.add_argument("--gateways", type=int, default=1, help="gateway processes sharing the port")
    parser.add_argument("--gateway-bound", action="store_true",
                        help="runs that stream a long model step and call no tool (the scripted test model): the "
                             "gateway's own work per event is what is measured, not the workers'")
    parser.add_argument("--workdir", help="keep the stack's logs here (default: a temporary folder)")
    args = parser.parse_args()
    levels = [10] if args.quick else (args.n or [50, 200, 500])

    from services.devstack.processes import Child, wait_until
    from services.devstack.stack import EmbeddedStack
    from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION

    if args.gateway_bound:
        question, images, options = GATEWAY_BOUND, [], {"model": "toolfabric_scripted"}
    else:
        question, images, options = DEMO_QUESTION, [DEMO_IMAGE.read_bytes()], {"mode": "deep_research"}
    with tempfile.TemporaryDirectory(prefix="toolfabric-load-") as scratch:
        tmp = args.workdir or scratch
        t0 = time.monotonic()
        triton = None
        if args.gateway_bound:
            from tests.model_repository import triton_with_test_models

            triton = triton_with_test_models(Path(tmp))
        stack = EmbeddedStack(Path(tmp), extra_env=SETTINGS, triton=triton, demo_site=not args.gateway_bound).start()
        extra: list[Child] = []

        def more_gateways() -> None:  # same ports: the kernel spreads connections (SO_REUSEPORT)
            for i in range(args.gateways - 1):
                doors = Path(tmp) / f"doors-{i + 2}.json"  # written once every door listens
                extra.append(Child(f"gateway-{i + 2}", [sys.executable, "-m", "toolfabric.cli.main", "gateway"],
                                   Path(tmp) / "logs", env=stack.env() | {"TOOLFABRIC_GATEWAY_DOORS_FILE": str(doors)}))
                wait_until(doors.exists, 90, "extra gateway", extra[-1].proc, extra[-1].log)
            time.sleep(1.0)

        try:
            print(f"stack up in {time.monotonic() - t0:.0f}s on {os.cpu_count()} cores; worker concurrency "
                  f"{stack.worker_concurrency} per service", flush=True)
            base = asyncio.run(_round(stack.target, 1, question, images, options))
            if not base.completed:
                print(f"the baseline trajectory failed: {base.failed or 'hung'}")
                return 1
            print(f"baseline: one trajectory alone {base.pct(0.5):.1f}s, {base.tool_calls} tool calls", flush=True)
            worst = 0
            one: dict[int, Round] = {}
            if args.gateways > 1:
                print("-- 1 gateway process", flush=True)
                for n in levels:
                    one[n] = asyncio.run(_round(stack.target, n, question, images, options))
                    _report(one[n], base)
                    worst = max(worst, len(one[n].failed) + one[n].hung)
                more_gateways()
                print(f"-- {args.gateways} gateway processes on the same ports", flush=True)
            for n in levels:
                result = asyncio.run(_round(stack.target, n, question, images, options))
                _report(result, base)
                worst = max(worst, len(result.failed) + result.hung)
                if n in one and one[n].completed and result.seconds:
                    ratio = (result.completed / result.seconds) / (one[n].completed / one[n].seconds)
                    print(f"N={n:4d}  {args.gateways} gateway processes: throughput {ratio:4.2f}x one process",
                          flush=True)
            print(f"total {time.monotonic() - t0:.0f}s; median baseline check "
                  f"{statistics.median(base.latencies):.1f}s")
            return 1 if worst else 0
        finally:
            for child in extra:
                child.stop()
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
