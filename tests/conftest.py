"""Fixtures shared by every test: real servers on free loopback ports, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.settings_modules import clear_settings_cache
from tests.support.postgres import PostgresServer
from toolfabric_server.devstack.redis_server import RedisServer


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, their children, …), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped does not count)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Fails the run if any test left a server or worker running after it finished."""
    yield
    deadline = time.monotonic() + 10
    left = {p for p in descendants(os.getpid()) if alive(p)}
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = {p for p in left if alive(p)}
    if left:
        names = {p: (Path("/proc") / str(p) / "cmdline").read_bytes().replace(b"\0", b" ")[:120] for p in left}
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        pytest.fail(f"tests left processes running: {names}")




@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the whole session; its URL is exported as TOOLFABRIC_REDIS_URL."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    previous = os.environ.get("TOOLFABRIC_REDIS_URL")
    os.environ["TOOLFABRIC_REDIS_URL"] = server.url
    clear_settings_cache()
    yield server
    server.stop()
    if previous is None:
        os.environ.pop("TOOLFABRIC_REDIS_URL", None)
    else:
        os.environ["TOOLFABRIC_REDIS_URL"] = previous
    clear_settings_cache()


@pytest.fixture
def redis_client(redis_server: RedisServer):  # type: ignore[no-untyped-def]
    """A client on a flushed database."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "toolfabric" / "demo"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL cluster (Debian's server package) on a free port, removed at the end."""
    if not PostgresServer.available():
        pytest.fail("PostgreSQL is not installed (Debian's postgresql package; scripts/setup.sh installs it)")
    server = PostgresServer().start()
    yield server
    server.stop()
