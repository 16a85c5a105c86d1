"""Fixtures for the fetch tests: a local web server and settings that allow exactly it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from toolfabric_server.web.settings import FetchSettings

from .servers import Server, serve, static_dir


class HostsResolver:
    """A hosts-file style resolver: name → answers; a list of lists answers differently per lookup."""

    def __init__(self, table: dict[str, list[str] | list[list[str]]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        from toolfabric_server.web.errors import HostNotFound

        self.lookups.append(host)
        answers = self.table.get(host)
        if answers is None:
            raise HostNotFound(f"cannot resolve host {host!r}")
        if answers and isinstance(answers[0], list):
            seen = self.lookups.count(host) - 1
            return list(answers[min(seen, len(answers) - 1)])  # type: ignore[arg-type]
        return list(answers)  # type: ignore[arg-type]


def settings_for(*servers: Server, **overrides: object) -> FetchSettings:
    """Settings allowing only these loopback servers; short timeouts so fault tests stay quick."""
    values: dict[str, object] = {
        "allowed_ports": [80, 443, *(s.port for s in servers)],
        "private_host_allowlist": [f"127.0.0.1:{s.port}" for s in servers],
        "connect_timeout_s": 2.0,
        "read_timeout_s": 1.0,
        "total_timeout_s": 3.0,
        "max_body_bytes": 1024 * 1024,
    }
    values.update(overrides)
    return FetchSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def web() -> Iterator[Server]:
    with serve() as server:
        yield server


@pytest.fixture
def demo_site(demo_dir: Path) -> Iterator[Server]:
    """The demo encyclopedia served on loopback, as `toolfabric up` does."""
    site = demo_dir / "site"
    with serve() as server:
        for f in site.iterdir():
            kind = "text/html; charset=utf-8" if f.suffix == ".html" else "image/jpeg"
            server.routes["/" + f.name] = static_dir(site, f.name, kind)
        yield server
