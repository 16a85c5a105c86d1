"""`eval run --bundle B` without --target: a stack of its own, started offline, answering from the bundle.

The embedded stack (the CPU baseline model, the tool workers, Redis, Triton) runs with no demo site and the
cache in replay mode over the bundle: every search and page comes from it, and one that is not there is an
error observation, never a network request. The URL checks web_visit makes before any cache lookup see
the ports of the bundle's own pages (a recording against a local site used a loopback port).
"""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from toolfabric_server.common.bundle import Bundle


def _page_ports(bundle: Bundle) -> list[int]:
    ports = set()
    for what in bundle.described("web_visit"):
        url = what.removeprefix("web_visit ").strip()
        try:
            port = urlsplit(url).port
        except ValueError:
            continue
        if port:
            ports.add(port)
    return sorted(ports)


@contextlib.contextmanager
def offline_stack(bundle: Bundle) -> Iterator[str]:
    """The gateway address of a stack answering from `bundle` only; stopped on exit."""
    from toolfabric_server.devstack.stack import EmbeddedStack

    env = {"TOOLFABRIC_CACHE_MODE": "replay", "TOOLFABRIC_CACHE_BUNDLE": str(bundle.path.resolve()),
           "TOOLFABRIC_FETCH_INDEX_FETCHED_PAGES": "false",
           "TOOLFABRIC_FETCH_ALLOWED_PORTS": json.dumps([80, 443, *_page_ports(bundle)])}
    with tempfile.TemporaryDirectory(prefix="toolfabric-offline-") as workdir:
        print(f"toolfabric eval: starting an offline stack answering from {bundle.path} ({bundle.hash}); logs in "
              f"{workdir}/logs", file=sys.stderr)
        with EmbeddedStack(Path(workdir), demo_site=False, extra_env=env) as stack:
            yield stack.target
