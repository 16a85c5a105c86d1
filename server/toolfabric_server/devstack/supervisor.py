"""Keeping the embedded stack running: whatever crashes is restarted, with backoff, and a log line says so.

`toolfabric up` calls `check()` about once a second. A process that died is restarted after 1 s, then 2, 4,
… up to 30 s if it keeps dying; one that has stayed up for a minute starts again from 1 s. redis-server and
Triton are restarted on their own ports (Redis from its append-only file), so clients need no new address.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from toolfabric_server.devstack.stack import EmbeddedStack


class Supervisor:
    def __init__(self, stack: EmbeddedStack, say: Callable[[str], None], base_s: float = 1.0,
                 max_s: float = 30.0, stable_s: float = 60.0) -> None:
        self._stack, self._say = stack, say
        self._base, self._max, self._stable = base_s, max_s, stable_s
        self._failures: dict[str, int] = {}
        self._due: dict[str, float] = {}
        self._up_since: dict[str, float] = {}

    def check(self) -> None:
        units: dict[str, tuple[Callable[[], bool], Callable[[], None], Callable[[], object]]] = {
            "redis-server": (self._stack.redis.alive, self._restart_redis, lambda: "see its log"),
            "triton": (self._stack.triton.alive, self._restart_triton, lambda: "see its log"),
        }
        cache = self._stack.cache_redis
        if cache is not None:
            units["redis-cache"] = (cache.alive, self._restart_cache_redis, lambda: "see its log")
        for name, child in self._stack.children.items():
            units[name] = (child.alive, child.respawn, lambda c=child: f"exit code {c.proc.returncode}")  # type: ignore[misc]
        now = time.monotonic()
        for name, (alive, restart, why) in units.items():
            if alive():
                if now - self._up_since.setdefault(name, now) > self._stable:
                    self._failures[name] = 0
                continue
            if name not in self._due:
                delay = min(self._max, self._base * 2 ** self._failures.get(name, 0))
                self._due[name] = now + delay
                self._say(f"{name} died ({why()}); restarting it in {delay:g}s")
            elif now >= self._due[name]:
                del self._due[name]
                self._failures[name] = self._failures.get(name, 0) + 1
                self._up_since[name] = time.monotonic()
                try:
                    restart()
                    self._say(f"{name} restarted (restart {self._failures[name]})")
                except Exception as exc:  # it will be tried again, later
                    self._say(f"{name} failed to restart: {exc}")

    def _restart_redis(self) -> None:
        self._stack.redis.stop()
        self._stack.redis.start()

    def _restart_cache_redis(self) -> None:
        if self._stack.cache_redis is not None:
            self._stack.cache_redis.stop()
            self._stack.cache_redis.start()

    def _restart_triton(self) -> None:
        self._stack.triton.stop()
        self._stack.triton.start()
