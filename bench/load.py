"""Load: N concurrent demo trajectories (10 tool calls each, all three services) through the embedded stack.

Everything runs on this machine: redis-server, Triton with the baseline policy, one worker per service, the
gateway(s) and the clients (one process, asyncio, one connection per 5 runs so SO_REUSEPORT spreads them over
gateway processes). The baseline, measured in the same run at equal settings, is one trajectory alone.
For each N it prints completed / failed / hung, trajectories/s, p50 / p99 latency, tool calls/s, and ratios
to the baseline (latency: how much slower under load; throughput: how much more work per second).

  python bench/load.py --quick          # N = 10 (under 60 s with start-up)
  python bench/load.py                  # N = 50, 200, 500
  python bench/load.py --gateways 2     # each N with one gateway process, then with two sharing every port

With --gateways G > 1 every N runs on one gateway process and on G sharing every port (TOOLFABRIC_GATEWAY_REUSE_PORT:
the kernel spreads the connections) in the same run at equal settings, alternating `--trials` times (1, G, 1, G,
...: the G-1 extra processes are started before and stopped after each G trial), so a change in the machine's
load hits both alike; the throughput of G processes is printed as a ratio to the one, per trial and over all.
Every round also prints the CPU time per trajectory from /proc (the gateway processes', and the whole stack's
with the client's): load from other work barely changes it, so it shows where the time goes when throughput
does not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Equal settings for every N: budgets generous enough that only a fault or a hang can fail a run. Admission is the
# gateway's own (TOOLFABRIC_GATEWAY_MAX_RUNNING etc., `--max-running` to set it): a Run beyond what it admits waits in
# its FIFO queue or is refused RESOURCE_EXHAUSTED with a retry hint, and the client retries after the hint, as an RL
# trainer's rollout would; its latency counts from its first attempt.
SETTINGS = {
    "TOOLFABRIC_GATEWAY_DEFAULT_DEADLINE_S": "1800",
    "TOOLFABRIC_GATEWAY_TOOL_TIMEOUT_S": "900",
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
    refusals: int = 0  # RESOURCE_EXHAUSTED answers, each retried after its hint
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds the round used: "gateway", "stack"

    @property
    def completed(self) -> int:
        return len(self.latencies)

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _one(client: object, question: str, images: list[bytes], options: dict[str, str], into: Round) -> None:
    from toolfabric import ToolfabricError
    from toolfabric.exceptions import ResourceExhausted

    started = time.monotonic()
    try:
        async with asyncio.timeout(HUNG_S):
            while True:
                try:
                    result = await client.ask(question, images=images, **options)  # type: ignore[attr-defined]
                    break
                except ResourceExhausted as exc:  # the gateway is full: try again when it says
                    into.refusals += 1
                    await asyncio.sleep(max(exc.retry_after_s, 0.5) * random.uniform(1.0, 1.2))
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
    clients = [AsyncClient(target, timeout_s=HUNG_S + 60) for _ in range(max(1, (n + 4) // 5))]
    started = time.monotonic()
    try:
        await asyncio.gather(*[_one(clients[i % len(clients)], question, images, options, result) for i in range(n)])
    finally:
        for client in clients:
            await client.close()
    result.seconds = time.monotonic() - started
    return result


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_by_pid() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds: user + system, its own) of every process on the machine."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            found[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    return found


def _tree(procs: dict[int, tuple[int, float]], roots: set[int]) -> set[int]:
    members, grew = set(roots) & set(procs), True
    while grew:
        more = {pid for pid, (ppid, _) in procs.items() if ppid in members} - members
        members |= more
        grew = bool(more)
    return members


class CpuMeter:
    """CPU seconds used between `start()` and `stop()` by the gateway processes (and their children), the model
    server (Triton and its backend stubs), this process (the clients) and the whole stack (everything this process
    started) plus the clients."""

    def __init__(self, gateway_pids: list[int], model_pid: int | None) -> None:
        self._gateways, self._model = set(gateway_pids), {model_pid} if model_pid else set()

    def _sample(self) -> dict[str, dict[int, float]]:
        procs = _cpu_by_pid()
        stack = _tree(procs, {os.getpid()}) - {os.getpid()}
        gateways, model = _tree(procs, self._gateways), _tree(procs, self._model)
        found: dict[str, dict[int, float]] = {}
        own = resource.getrusage(resource.RUSAGE_SELF)
        for root in self._gateways:  # each gateway process's own share ("gateway <pid>")
            found[f"gateway {root}"] = {pid: procs[pid][1] for pid in _tree(procs, {root})}
        return found | {"gateway": {pid: procs[pid][1] for pid in gateways},
                        "model": {pid: procs[pid][1] for pid in model},
                        "client": {-1: own.ru_utime + own.ru_stime},
                        "stack": {pid: procs[pid][1] for pid in stack} | {-1: own.ru_utime + own.ru_stime}}

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> dict[str, float]:
        after = self._sample()
        # A process that started during the round counts from zero; one that ended is not counted.
        return {key: sum(cpu - self._before.get(key, {}).get(pid, 0.0) for pid, cpu in after[key].items())
                for key in after}


def _report(r: Round, base: Round) -> None:
    rate = r.completed / r.seconds
    base_rate = base.completed / base.seconds
    print(f"N={r.n:4d}  completed {r.completed:4d}  failed {len(r.failed):3d}  hung {r.hung:3d}  "
          f"refused+retried {r.refusals:4d}  "
          f"{rate:6.2f} trajectories/s  p50 {r.pct(0.5):6.1f}s  p99 {r.pct(0.99):6.1f}s  "
          f"{r.tool_calls / r.seconds:7.1f} tool calls/s  |  p50 {r.pct(0.5) / base.pct(0.5):5.1f}x alone, "
          f"throughput {rate / base_rate:5.1f}x alone", flush=True)
    if r.cpu_s and r.completed:
        per = {key: 1000 * cpu / r.completed for key, cpu in r.cpu_s.items()}
        print(f"          CPU per trajectory: gateway process(es) {per['gateway']:4.0f} ms, model server "
              f"{per['model']:4.0f} ms, clients {per['client']:4.0f} ms, whole stack + clients {per['stack']:4.0f} ms "
              f"(it got {r.cpu_s['stack'] / r.seconds:.2f} cores of {os.cpu_count()}); machine load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        shares = [cpu for key, cpu in r.cpu_s.items() if key.startswith("gateway ")]
        if len(shares) > 1 and sum(shares) > 0:
            print(f"          the gateway processes' shares of that CPU: "
                  f"{', '.join(f'{100 * cpu / sum(shares):.0f} %' for cpu in shares)}", flush=True)
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
    parser.add_argument("--trials", type=int, default=1,
                        help="with --gateways G > 1: alternate one and G processes this many times each")
    parser.add_argument("--max-running", type=int,
                        help="TOOLFABRIC_GATEWAY_MAX_RUNNING for every N (default: the gateway's own)")
    parser.add_argument("--workdir", help="keep the stack's logs here (default: a temporary folder)")
    args = parser.parse_args()
    levels = [10] if args.quick else (args.n or [50, 200, 500])

    from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION
    from toolfabric_server.devstack.processes import Child, wait_until
    from toolfabric_server.devstack.stack import EmbeddedStack

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
        settings = SETTINGS | ({"TOOLFABRIC_GATEWAY_MAX_RUNNING": str(args.max_running)} if args.max_running else {})
        stack = EmbeddedStack(Path(tmp), extra_env=settings, triton=triton, demo_site=not args.gateway_bound).start()
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

            def measured(n: int) -> Round:
                meter = CpuMeter([stack.children["gateway"].proc.pid, *(c.proc.pid for c in extra if c.alive())],
                                 stack.triton.pid)
                meter.start()
                result = asyncio.run(_round(stack.target, n, question, images, options))
                result.cpu_s = meter.stop()
                _report(result, base)
                return result

            if args.gateways > 1:
                totals: dict[str, dict[int, list[Round]]] = {"1": {n: [] for n in levels},
                                                             "G": {n: [] for n in levels}}
                for trial in range(1, args.trials + 1):
                    print(f"-- trial {trial}: 1 gateway process", flush=True)
                    for n in levels:
                        totals["1"][n].append(measured(n))
                    more_gateways()
                    print(f"-- trial {trial}: {args.gateways} gateway processes on the same ports", flush=True)
                    for n in levels:
                        result = measured(n)
                        totals["G"][n].append(result)
                        single = totals["1"][n][-1]
                        if single.completed and result.completed:
                            ratio = (result.completed / result.seconds) / (single.completed / single.seconds)
                            print(f"N={n:4d}  {args.gateways} gateway processes: throughput {ratio:4.2f}x one "
                                  f"process (trial {trial})", flush=True)
                    for child in extra:
                        child.stop()  # SIGTERM: it drains (no run is in flight between rounds)
                    extra.clear()
                    time.sleep(1.0)
                for n in levels:
                    rounds = {k: totals[k][n] for k in totals}
                    worst = max(worst, *(len(r.failed) + r.hung for rs in rounds.values() for r in rs))
                    rate = {k: sum(r.completed for r in rs) / sum(r.seconds for r in rs) for k, rs in rounds.items()}
                    cpu = {k: 1000 * sum(r.cpu_s["gateway"] for r in rs) / max(1, sum(r.completed for r in rs))
                           for k, rs in rounds.items()}
                    print(f"N={n:4d}  over {args.trials} trial(s): 1 process {rate['1']:.2f}/s, {args.gateways} "
                          f"processes {rate['G']:.2f}/s: {rate['G'] / rate['1']:4.2f}x; gateway CPU per "
                          f"trajectory {cpu['1']:.0f} ms vs {cpu['G']:.0f} ms", flush=True)
            else:
                for n in levels:
                    result = measured(n)
                    worst = max(worst, len(result.failed) + result.hung)
            print(f"total {time.monotonic() - t0:.0f}s; median baseline check "
                  f"{statistics.median(base.latencies):.1f}s")
            return 1 if worst else 0
        finally:
            for child in extra:
                child.stop()
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
