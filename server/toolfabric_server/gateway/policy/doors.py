"""Every port the gateway serves, as a list: what it is, where, whether it speaks TLS and what it asks.

A listener exists only through policy/listeners.py, which registers it here when it binds: a door
that does not register cannot be served. The gateway writes the list (JSON) to
`TOOLFABRIC_GATEWAY_DOORS_FILE` once every door listens, logs it, and `toolfabric up` prints it.
The door test (tests/integration/test_doors.py) reads the list and proves each door refuses missing
and revoked keys, answers another tenant's ids with "not found", applies limits and speaks TLS when
configured — and that the process listens on no port the list does not name.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger(__name__)
Protocol = Literal["grpc", "http"]
# What a door asks of a caller: an API key (the policy), a signed URL (the blob port), or nothing (probes).
Guard = Literal["api_key", "signed_url", "none"]


@dataclass(frozen=True)
class Door:
    name: str  # "fabric", "health", "chat", "step", "mcp", "blobs"
    protocol: Protocol
    host: str
    port: int
    tls: bool
    guard: Guard
    routes: tuple[str, ...] = field(default=())  # HTTP paths or gRPC methods the door serves
    open_routes: tuple[str, ...] = field(default=())  # of those, the ones served without a key (probes)

    @property
    def address(self) -> str:
        scheme = {"grpc": "grpcs" if self.tls else "grpc", "http": "https" if self.tls else "http"}[self.protocol]
        return f"{scheme}://{self.host}:{self.port}"


class Doors:
    def __init__(self) -> None:
        self._doors: list[Door] = []

    def register(self, door: Door) -> Door:
        self._doors.append(door)
        log.info("door %s: %s (%s)", door.name, door.address, _policy_words(door))
        return door

    def __iter__(self) -> Iterator[Door]:
        return iter(list(self._doors))

    def as_json(self) -> str:
        return json.dumps({"doors": [asdict(d) | {"address": d.address} for d in self._doors]}, indent=1)

    def publish(self, path: str) -> None:
        """Writes the list to `path` atomically (a reader never sees half of it)."""
        if not path:
            return
        target = Path(path)
        temporary = target.with_suffix(target.suffix + f".{os.getpid()}.tmp")
        temporary.write_text(self.as_json())
        temporary.replace(target)


def read(path: str | Path) -> list[Door]:
    """The doors a gateway published."""
    raw: list[dict[str, Any]] = json.loads(Path(path).read_text())["doors"]
    return [Door(d["name"], d["protocol"], d["host"], d["port"], d["tls"], d["guard"], tuple(d["routes"]),
                 tuple(d["open_routes"])) for d in raw]


def _policy_words(door: Door) -> str:
    guard = {"api_key": "API key required", "signed_url": "signed URLs only", "none": "open"}[door.guard]
    return f"{'TLS' if door.tls else 'plaintext'}, {guard}"
