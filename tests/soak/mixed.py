"""Mixed load with faults on a schedule, and the accounts it must balance (issue 22, item 7).

Client threads loop until the time is up, each picking at random: a run (the scripted model, one or two `code`
calls), reads (ListTrajectories, GetTrajectory of an earlier run), a step (the Step API: one action, its
observation) or a run cancelled at its tool call. Meanwhile faults fire on a schedule: `worker-kill` (the vision
worker SIGKILLed whole, restarted after a second, as `toolfabric up` or Kubernetes would), `redis-restart`,
`gateway-sigterm` (the stack's gateway drains, hands its runs to the spare gateway, and is started again) and
`triton-kill` (the server SIGKILLed, started again).

Every stream is accounted for: it ends with `finished`, or with an error status naming why (UNAVAILABLE while a
gateway restarts, a handover hint). A stream that ends silently, or not at all, is a failure. The gateway's memory
(RSS) and open files are sampled every few seconds and must stay flat (compared within one process's life).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from toolfabric import Client, ToolfabricError
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack

FAULTS = ("worker-kill", "redis-restart", "gateway-sigterm", "triton-kill")
MODEL = "toolfabric_scripted"


def _code(source: str) -> str:
    return "<tool_call>" + json.dumps({"name": "code", "arguments": {"code": source}}) + "</tool_call>"


def _script(*steps: str) -> str:
    return json.dumps({"script": list(steps)})


@dataclass
class Sample:
    at_s: float
    pid: int
    rss_kb: int
    fds: int


@dataclass
class Tally:
    streams: int = 0  # Run streams opened
    finished: collections.Counter[str] = field(default_factory=collections.Counter)  # by final status
    named_errors: collections.Counter[str] = field(default_factory=collections.Counter)  # by error class
    silent: int = 0  # ended without `finished` and without an error status
    hung: int = 0  # no end within the client's deadline
    error_observations: collections.Counter[str] = field(default_factory=collections.Counter)  # by error_kind
    reads: int = 0
    read_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    steps: int = 0
    step_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    cancels: int = 0
    faults: list[tuple[float, str, float]] = field(default_factory=list)  # (at, fault, seconds it took)
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def accounted(self) -> int:
        return sum(self.finished.values()) + sum(self.named_errors.values()) + self.silent + self.hung

    def growth(self) -> tuple[int, int, float]:
        """(pid, fds, RSS ratio): the first fifth of the longest-lived gateway's samples against its last fifth."""
        by_pid: dict[int, list[Sample]] = collections.defaultdict(list)
        for sample in self.samples:
            by_pid[sample.pid].append(sample)
        pid, samples = max(by_pid.items(), key=lambda item: len(item[1]))
        fifth = max(1, len(samples) // 5)
        first, last = samples[:fifth], samples[-fifth:]
        fds = max(s.fds for s in last) - max(s.fds for s in first)
        rss = sorted(s.rss_kb for s in last)[len(last) // 2] / sorted(s.rss_kb for s in first)[len(first) // 2]
        return pid, fds, rss

    def series(self, points: int = 11) -> str:
        """The longest-lived gateway's RSS and open files over time, at `points` evenly spaced samples."""
        if not self.samples:
            return ""
        pid, _, _ = self.growth()
        own = [sample for sample in self.samples if sample.pid == pid]
        picked = [own[round(i * (len(own) - 1) / (points - 1))] for i in range(points)] if len(own) > 1 else own
        return "; ".join(f"{s.at_s:.0f}s {s.rss_kb / 1024:.0f} MB {s.fds} fds" for s in picked)

    def summary(self) -> str:
        pid, fds, rss = self.growth() if self.samples else (0, 0, 1.0)
        own = sum(1 for sample in self.samples if sample.pid == pid)
        return (f"streams {self.streams}: finished {dict(self.finished)}, named errors {dict(self.named_errors)}, "
                f"silent {self.silent}, hung {self.hung}; error observations {dict(self.error_observations)}; "
                f"reads {self.reads} (errors {dict(self.read_errors)}); steps {self.steps} "
                f"(errors {dict(self.step_errors)}); cancels {self.cancels}; faults "
                f"{[(f'{at:.0f}s', name, f'{took:.1f}s') for at, name, took in self.faults]}; gateway {pid}: open "
                f"files {fds:+d}, RSS x{rss:.2f} over its {own} samples (of {len(self.samples)})")


class Soak:
    def __init__(self, stack: EmbeddedStack, duration_s: float, schedule: list[tuple[float, str]],
                 clients: int = 6, seed: int = 22, stream_timeout_s: float = 240.0) -> None:
        unknown = {name for _, name in schedule} - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {', '.join(FAULTS)}")
        self.stack, self.duration_s, self.schedule = stack, duration_s, sorted(schedule)
        self.clients, self.stream_timeout_s = clients, stream_timeout_s
        self.random = random.Random(seed)
        self.tally = Tally()
        self._done: list[str] = []  # trajectory ids of finished runs, for the reads

    def run(self) -> Tally:
        started = time.monotonic()
        stop = threading.Event()
        threads = [threading.Thread(target=self._client, args=(stop, started, random.Random(self.random.random())),
                                    name=f"soak-client-{i}") for i in range(self.clients)]
        sampler = threading.Thread(target=self._sample, args=(stop, started), name="soak-sampler")
        for thread in [*threads, sampler]:
            thread.start()
        try:
            for at_s, name in self.schedule:
                while time.monotonic() - started < at_s and not stop.is_set():
                    time.sleep(0.2)
                fired = time.monotonic()
                getattr(self, "_" + name.replace("-", "_"))()
                self.tally.faults.append((fired - started, name, time.monotonic() - fired))
            while time.monotonic() - started < self.duration_s:
                time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(self.stream_timeout_s + 60)
            sampler.join(10)
        return self.tally

    # --- the load ---------------------------------------------------------------------------------------------

    def _client(self, stop: threading.Event, started: float, rnd: random.Random) -> None:
        with Client(self.stack.target, timeout_s=self.stream_timeout_s) as client:
            while not stop.is_set() and time.monotonic() - started < self.duration_s:
                pick = rnd.random()
                if pick < 0.5:
                    refused = self._run(client, rnd)
                elif pick < 0.7:
                    refused = self._read(client, rnd)
                elif pick < 0.85:
                    refused = self._step(client)
                else:
                    refused = self._run(client, rnd, cancel=True)
                if refused:  # as a client would: while the gateway restarts, try again a second later
                    stop.wait(1.0)

    def _run(self, client: Client, rnd: random.Random, cancel: bool = False) -> bool:
        """One Run stream, accounted for; True if the gateway refused it as unavailable."""
        if cancel:
            steps = [_code("import time\ntime.sleep(5)\nprint('late')"), "<answer>not reached</answer>"]
        else:
            steps = [_code(f"print({rnd.randrange(1000)} * 7)") for _ in range(rnd.randint(1, 2))]
            steps.append("<answer>done</answer>")
        with self.tally.lock:
            self.tally.streams += 1
            if cancel:
                self.tally.cancels += 1
        outcome: str | None = None
        try:
            for event in client.events(_script(*steps), model=MODEL):
                if cancel and event.HasField("tool_call"):
                    with contextlib.suppress(ToolfabricError):
                        client.cancel(event.trajectory_id)
                if event.HasField("observation") and event.observation.is_error:
                    with self.tally.lock:
                        self.tally.error_observations[event.observation.error_kind or "error"] += 1
                if event.HasField("finished"):
                    outcome = pb.Status.Name(event.finished.status)
                    if event.finished.status == pb.STATUS_COMPLETED:
                        with self.tally.lock:
                            self._done.append(event.trajectory_id)
        except ToolfabricError as exc:
            with self.tally.lock:
                if exc.code.name == "DEADLINE_EXCEEDED":
                    self.tally.hung += 1
                else:
                    self.tally.named_errors[type(exc).__name__] += 1
            return exc.code.name == "UNAVAILABLE"
        with self.tally.lock:
            if outcome is None:
                self.tally.silent += 1
            else:
                self.tally.finished[outcome] += 1
        return False

    def _read(self, client: Client, rnd: random.Random) -> bool:
        with self.tally.lock:
            self.tally.reads += 1
            done = list(self._done[-200:])
        try:
            client.list_trajectories(page_size=20)
            if done:
                client.trajectory(rnd.choice(done))
        except ToolfabricError as exc:
            with self.tally.lock:
                self.tally.read_errors[type(exc).__name__] += 1
            return exc.code.name == "UNAVAILABLE"
        return False

    def _step(self, client: Client) -> bool:
        with self.tally.lock:
            self.tally.steps += 1
        try:
            [observation] = client.step([f"soak-{uuid.uuid4().hex[:12]}"], [_code("print(6 * 7)")],
                                        is_last_step=[True])
            if not observation.valid:
                with self.tally.lock:
                    self.tally.step_errors["invalid: " + observation.error[:60]] += 1
        except ToolfabricError as exc:
            with self.tally.lock:
                self.tally.step_errors[type(exc).__name__] += 1
            return exc.code.name == "UNAVAILABLE"
        return False

    def _sample(self, stop: threading.Event, started: float) -> None:
        while not stop.wait(3.0):
            child = self.stack.children.get("gateway")
            if child is None or not child.alive():
                continue
            pid = child.proc.pid
            with contextlib.suppress(OSError, ValueError, IndexError):
                status = Path(f"/proc/{pid}/status").read_text()
                rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
                self.tally.samples.append(Sample(time.monotonic() - started, pid, rss,
                                                 len(os.listdir(f"/proc/{pid}/fd"))))

    # --- the faults -------------------------------------------------------------------------------------------

    def _worker_kill(self) -> None:
        child = self.stack.children["worker-vision"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, signal.SIGKILL)
        time.sleep(1.0)
        self.stack.restart_worker("vision")

    def _redis_restart(self) -> None:
        self.stack.redis.stop()
        self.stack.redis.start()

    def _gateway_sigterm(self) -> None:
        child = self.stack.children["gateway"]
        child.proc.send_signal(signal.SIGTERM)
        child.proc.wait(120)
        child.respawn()

    def _triton_kill(self) -> None:
        server = self.stack.triton.server_pid
        if server is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server, signal.SIGKILL)
        self.stack.triton.stop()
        self.stack.triton.start()


def schedule_for(duration_s: float, faults: tuple[str, ...]) -> list[tuple[float, str]]:
    """The faults spread evenly over the middle of the run, repeated in turn (every ~5 minutes in a long soak),
    the last at least a minute before the end so its effects are measured too."""
    if not faults:
        return []
    count = max(len(faults), int(duration_s // 300))
    span = max(duration_s - 60.0, duration_s * 0.6)
    return [(span * (i + 1) / (count + 1), faults[i % len(faults)]) for i in range(count)]
