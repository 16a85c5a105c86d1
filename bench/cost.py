"""The fabric's own CPU cost: CPU milliseconds per demo trajectory for every component, read from /proc.

Starts the embedded stack as `toolfabric up` runs it (tracing on, spans to the JSON-lines file), runs the demo
(deep research: ~10 tool calls over the three services and ~5 model steps on the baseline policy) N times at
concurrency C, and reads the CPU time (user + system, children included) of every process tree — the gateway,
each worker (Celery parent and its pool), Triton, redis-server, the demo web site the fetch tool reads, and
the client (this process, the SDK) — before and after. CPU time hardly depends on how loaded the machine is
(wall-clock rates do), so CPU ms per trajectory is the main figure; rates are printed as ratios within the run.

References measured in the same run, on the same Redis and the same fetch worker:
  raw Celery   no-op tasks (`ping`) fanned out with `send_task(...)`, then `.get()`: calls/s and CPU ms per call
               (worker + Redis + the publishing process) — what Celery itself costs per call
  Redis        p50 of a PING round trip from this process

  python bench/cost.py --quick          # 12 trajectories at concurrency 4, under 60 s; gateway figure last
  python bench/cost.py --n 40 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import SETTINGS  # noqa: E402  (equal settings with the load benchmark)

_TICK = os.sysconf("SC_CLK_TCK")


def session_cpu_s() -> dict[int, float]:
    """CPU seconds (user + system, reaped children included) summed per session id, over every process.

    Each component the stack starts is its own session (toolfabric_server.devstack.processes.Child), so a session id is
    a component's whole process tree: Celery's pool children, Triton's Python stubs."""
    out: dict[int, float] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read()
        except OSError:  # gone meanwhile: its CPU shows in its parent's cutime once reaped
            continue
        fields = raw[raw.rindex(b")") + 2:].split()  # after "pid (comm) "
        session = int(fields[3])
        ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        out[session] = out.get(session, 0.0) + ticks / _TICK
    return out


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of a live process's threads: its main thread (the gateway's event loop) and the others by name
    (gRPC's own threads name themselves; Python's threads show as the process's name)."""
    out: dict[str, float] = {}
    for entry in os.scandir(f"/proc/{pid}/task"):
        try:
            with open(f"{entry.path}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        name = "main thread" if entry.name == str(pid) else \
            raw[raw.index(b"(") + 1:raw.rindex(b")")].decode(errors="replace").rstrip("0123456789_-")
        fields = raw[raw.rindex(b")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / _TICK
    return out


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds per named component between two readings."""

    def __init__(self, components: dict[str, int]) -> None:
        self.components = components  # name -> session id (the component's root pid)
        self._start: dict[str, float] = {}

    def read(self) -> dict[str, float]:
        sessions = session_cpu_s()
        out = {name: sessions.get(sid, 0.0) for name, sid in self.components.items()}
        out["client (SDK, this process)"] = self_cpu_s()
        return out

    def start(self) -> None:
        self._start = self.read()

    def stop(self) -> dict[str, float]:
        end = self.read()
        return {name: end[name] - self._start.get(name, 0.0) for name in end}


async def _demo(target: str, n: int, concurrency: int, question: str, images: list[bytes],
                options: dict[str, str]) -> tuple[float, list[float], int, list[str], list[int]]:
    from toolfabric import AsyncClient, ToolfabricError

    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    failed: list[str] = []
    events: list[int] = []  # events each trajectory's client received
    calls = 0
    clients = [AsyncClient(target, timeout_s=600) for _ in range(max(1, (concurrency + 24) // 25))]

    async def one(i: int) -> None:
        nonlocal calls
        async with gate:
            t0 = time.monotonic()
            try:
                result = await clients[i % len(clients)].ask(question, images=images, **options)
            except ToolfabricError as exc:
                failed.append(str(exc)[:160])
                return
            if result.status != "STATUS_COMPLETED":
                failed.append(f"{result.status}: {result.reason}"[:160])
                return
            latencies.append(time.monotonic() - t0)
            calls += len(result.tool_calls)
            events.append(len(result.events))

    t0 = time.monotonic()
    try:
        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        for client in clients:
            await client.close()
    return time.monotonic() - t0, latencies, calls, failed, events


def _raw_celery_probe(service: str, total: int) -> int:
    """In a child with the stack's environment: fan out `total` no-op tasks (after a warm-up) through plain Celery
    when told to on stdin; print calls/s and this process's CPU seconds for them as JSON."""
    from toolfabric_server.common import settings
    from toolfabric_server.common.celery_app import make_celery
    from toolfabric_server.common.tools import ToolContext, task_name

    app = make_celery(settings.common(), settings.worker())
    payload = ["ping", {}, ToolContext(trajectory_id="bench", call_id="c", question="bench").model_dump(mode="json")]

    def batch(count: int) -> None:
        pending = [app.send_task(task_name(service), args=payload, queue=service) for _ in range(count)]
        for result in pending:
            result.get(timeout=60)

    batch(20)  # warm: connections, the worker's pool
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0, t0 = self_cpu_s(), time.perf_counter()
    batch(total)
    print(json.dumps({"rate": total / (time.perf_counter() - t0), "cpu_s": self_cpu_s() - cpu0}), flush=True)
    return 0


def _raw_celery(env: dict[str, str], service: str, total: int, meter: CpuMeter) -> tuple[float, dict[str, float]]:
    """No-op tasks fanned out through plain Celery (the reference): calls/s and CPU seconds per component."""
    import subprocess

    probe = subprocess.Popen([sys.executable, __file__, "--raw-celery-probe", str(total), "--service", service],
                             env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert probe.stdin is not None and probe.stdout is not None
    try:
        if probe.stdout.readline().strip() != "ready":
            raise RuntimeError("the raw Celery probe failed to start")
        meter.start()
        probe.stdin.write("go\n")
        probe.stdin.flush()
        out = json.loads(probe.stdout.readline())
        cpu = meter.stop()
    finally:
        probe.stdin.close()
        probe.wait(30)
    cpu = {k: v for k, v in cpu.items() if k in (f"{service} worker", "redis-server")}
    cpu["publisher (Celery client)"] = out["cpu_s"]
    return out["rate"], cpu


def _redis_rtt(redis_url: str, count: int = 2000) -> float:
    import redis

    client = redis.Redis.from_url(redis_url)
    client.ping()
    samples = []
    for _ in range(count):
        t0 = time.perf_counter()
        client.ping()
        samples.append(time.perf_counter() - t0)
    client.close()
    return statistics.median(samples)


def redis_commands(redis_url: str) -> dict[str, int]:
    """Redis commands served so far, per command (INFO commandstats)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return {name.removeprefix("cmdstat_"): int(stat["calls"]) for name, stat in client.info("commandstats").items()}
    finally:
        client.close()


def _spans(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for _ in f)


def _table(title: str, cpu: dict[str, float], per: int, unit: str, last: str | None = None) -> None:
    print(f"{title}")
    order = sorted((k for k in cpu if k != last), key=lambda k: -cpu[k]) + ([last] if last in cpu else [])
    total = sum(cpu.values())
    for name in order:
        print(f"  {name:34s} {cpu[name] * 1e3 / per:8.1f} ms/{unit}")
    print(f"  {'total':34s} {total * 1e3 / per:8.1f} ms/{unit}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="12 trajectories at concurrency 4; under 60 s")
    parser.add_argument("--n", type=int, default=40, help="demo trajectories measured (default 40)")
    parser.add_argument("--concurrency", type=int, default=8, help="trajectories running at once (default 8)")
    parser.add_argument("--raw-calls", type=int, default=2000, help="no-op tasks of the raw Celery reference")
    parser.add_argument("--profile-gateway", metavar="FILE",
                        help="sample the gateway with py-spy (on PATH) during the measured run; collapsed stacks here")
    parser.add_argument("--no-tracing", action="store_true",
                        help="every process with OTEL_TRACES_EXPORTER=none: tracing's share, by difference")
    parser.add_argument("--all-threads", action="store_true",
                        help="with --profile-gateway: every thread's samples by thread, not only the GIL holder's")
    parser.add_argument("--native", action="store_true",
                        help="with --profile-gateway: native frames too (gRPC's Cython core, uvloop, C extensions)")
    parser.add_argument("--service", default="fetch", help="worker queue of the raw Celery reference")
    parser.add_argument("--raw-celery-probe", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help="keep the stack's logs and spans here (default: a temporary folder)")
    args = parser.parse_args()
    if args.raw_celery_probe:
        return _raw_celery_probe(args.service, args.raw_celery_probe)
    n, concurrency, raw_calls = (12, 4, 200) if args.quick else (args.n, args.concurrency, args.raw_calls)

    from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION
    from toolfabric_server.devstack.stack import EmbeddedStack

    question, images, options = DEMO_QUESTION, [DEMO_IMAGE.read_bytes()], {"mode": "deep_research"}
    with tempfile.TemporaryDirectory(prefix="toolfabric-cost-") as scratch:
        tmp = Path(args.workdir or scratch)
        spans_file = tmp / "traces.jsonl"
        # As `toolfabric up` runs it: every process's spans to the JSON-lines file.
        env = {**SETTINGS, "OTEL_TRACES_EXPORTER": "none" if args.no_tracing else "file",
               "TOOLFABRIC_TELEMETRY_TRACES_FILE": str(spans_file)}
        t0 = time.monotonic()
        stack = EmbeddedStack(tmp, extra_env=env).start()
        try:
            components: dict[str, int] = {"gateway": stack.children["gateway"].proc.pid}
            for name, child in stack.children.items():
                if name.startswith("worker-"):
                    components[f"{name[len('worker-'):]} worker"] = child.proc.pid
            components["Triton"] = stack.triton.pid or -1
            components["redis-server"] = stack.redis.pid or -1
            if stack.cache_redis is not None:
                components["redis-server (cache)"] = stack.cache_redis.pid or -1
            if "demo-site" in stack.children:
                components["demo web site (not the fabric)"] = stack.children["demo-site"].proc.pid
            meter = CpuMeter(components)
            print(f"stack up in {time.monotonic() - t0:.0f}s on {os.cpu_count()} cores", flush=True)

            warm = asyncio.run(_demo(stack.target, 2, 2, question, images, options))  # lazy set-up out of the figure
            if warm[3] or not warm[1]:
                print(f"the warm-up trajectories failed: {warm[3]}")
                return 1
            spans_before = _spans(spans_file)
            load_before = os.getloadavg()
            profiler = None
            if args.profile_gateway:
                import subprocess

                # --gil: only samples holding the GIL, i.e. the gateway's own Python work, not its idle threads.
                # --all-threads: every thread's active samples, named, GIL or not (gRPC's poller, the store writer).
                profiler = subprocess.Popen(["py-spy", "record", *(["-t"] if args.all_threads else ["--gil"]),
                                             "--format", "raw",
                                             *(["--native"] if args.native else ["--nonblocking"]),
                                             "--rate", "200", "-o", args.profile_gateway,
                                             "-p", str(components["gateway"])],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                time.sleep(1.0)
            commands_before = redis_commands(stack.redis.url)
            threads_before = thread_cpu_s(components["gateway"])
            meter.start()
            seconds, latencies, calls, failed, events = asyncio.run(
                _demo(stack.target, n, concurrency, question, images, options))
            cpu = meter.stop()
            threads = thread_cpu_s(components["gateway"])
            commands_after = redis_commands(stack.redis.url)
            if profiler is not None:
                profiler.send_signal(2)  # SIGINT: py-spy writes its file and exits
                profiler.wait(30)
            load_after = os.getloadavg()
            time.sleep(1.5)  # the batch span processors export every second or so
            spans = _spans(spans_file) - spans_before
            done = len(latencies)
            if not done:
                print(f"no trajectory completed: {failed[:3]}")
                return 1

            rtt = _redis_rtt(stack.redis.url)
            raw_rate, raw_used = _raw_celery(stack.env(), args.service, raw_calls, meter)

            ordered = sorted(latencies)
            p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
            print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
                  f"({os.cpu_count()} cores); {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
            print(f"demo: {done}/{n} completed at concurrency {concurrency} in {seconds:.1f}s "
                  f"({done / seconds:.2f} trajectories/s, {calls / seconds:.0f} tool calls/s, "
                  f"p50 {statistics.median(ordered):.2f}s, p99 {p99:.2f}s); "
                  f"{calls / done:.1f} tool calls, {sum(events) / done:.0f} events to the client and "
                  f"{spans / done:.0f} spans per trajectory")
            commands = {k: (v - commands_before.get(k, 0)) / done for k, v in commands_after.items()}
            top = sorted(commands.items(), key=lambda kv: -kv[1])[:12]
            print(f"Redis commands per trajectory (every client): {sum(commands.values()):.0f}: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in top if v >= 0.5))
            for reason in failed[:5]:
                print(f"  failed: {reason}")
            print(f"references, same run: Redis PING round trip p50 {rtt * 1e6:.0f} us; raw Celery no-op "
                  f"fan-out {raw_rate:,.0f} calls/s")
            _table(f"raw Celery, CPU per no-op call ({raw_calls} calls):", raw_used, raw_calls, "call")
            gateway = cpu["gateway"] * 1e3 / done
            share = sum(v for k, v in cpu.items() if k in ("gateway", "redis-server")) / max(sum(cpu.values()), 1e-9)
            _table(f"CPU per demo trajectory ({done} trajectories):", cpu, done, "trajectory", last="gateway")
            threads = {k: v - threads_before.get(k, 0.0) for k, v in threads.items()}
            print("gateway CPU per trajectory by thread: " + ", ".join(
                f"{k} {v * 1e3 / done:.1f} ms" for k, v in sorted(threads.items(), key=lambda kv: -kv[1])
                if v * 1e3 / done >= 0.5))
            print(f"gateway + redis share of the stack's CPU: {share:.0%}")
            print(f"GATEWAY CPU PER TRAJECTORY: {gateway:.1f} ms")
            return 1 if failed else 0
        finally:
            stack.stop()


if __name__ == "__main__":
    sys.exit(main())
