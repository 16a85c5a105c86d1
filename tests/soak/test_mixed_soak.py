"""The long soak (`make soak`; TOOLFABRIC_SOAK_MINUTES, default 30): mixed runs, reads, steps and cancels on an
embedded stack of its own, with a spare gateway for handovers and every fault on a schedule — vision worker
SIGKILL, Redis restart, gateway SIGTERM, Triton SIGKILL, in turn every ~5 minutes (tests/soak/mixed.py). Every
stream is accounted for; the gateway's memory and open files stay flat. The short version is in the fault suite
(tests/faults/test_soak.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.conftest import FAST
from tests.model_repository import triton_with_test_models
from tests.soak.mixed import FAULTS, Soak, schedule_for
from toolfabric_server.devstack.processes import Child, free_port, port_open, wait_until
from toolfabric_server.devstack.stack import EmbeddedStack

MINUTES = float(os.environ.get("TOOLFABRIC_SOAK_MINUTES", "30"))
# The whole soak plus time to start and stop its stack, over the suite's per-test limit.
pytestmark = [pytest.mark.soak, pytest.mark.integration, pytest.mark.timeout(MINUTES * 60 + 900)]


@pytest.fixture(scope="module")
def soak_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    workdir = tmp_path_factory.mktemp("soak-stack")
    with EmbeddedStack(workdir, demo_site=False, extra_env=FAST, worker_concurrency=2,
                       triton=triton_with_test_models(workdir)) as stack:
        # The spare gateway takes over the runs of the one a SIGTERM drains (its own port, gRPC only).
        port = free_port()
        spare = Child("gateway-spare", [sys.executable, "-m", "toolfabric.cli.main", "gateway"], workdir / "logs",
                      env=stack.env() | {"TOOLFABRIC_GATEWAY_PORT": str(port), "TOOLFABRIC_HTTP_PORT": "0",
                                         "TOOLFABRIC_GATEWAY_BLOB_HTTP_PORT": "0",
                                         "TOOLFABRIC_GATEWAY_DOORS_FILE": str(Path(workdir) / "doors-spare.json")})
        try:
            wait_until(lambda: port_open(port), 60, "spare gateway", spare.proc, spare.log)
            yield stack
        finally:
            spare.stop()


def test_long_mixed_soak_with_every_fault_on_a_schedule_accounts_for_every_stream(soak_stack: EmbeddedStack) -> None:
    duration = MINUTES * 60
    schedule = schedule_for(duration, FAULTS)
    print(f"\n[soak] {MINUTES:g} min, 6 clients, faults at {[(f'{at:.0f}s', name) for at, name in schedule]}")
    tally = Soak(soak_stack, duration, schedule, clients=6).run()
    print(f"[soak] {tally.summary()}")
    print(f"[soak] the gateway over time: {tally.series()}")
    assert tally.accounted == tally.streams
    assert tally.silent == 0 and tally.hung == 0
    assert [name for _, name, _ in tally.faults] == [name for _, name in schedule]
    _, fds, rss = tally.growth()
    assert fds <= 25, f"the gateway's open files grew by {fds}"
    assert rss <= 1.3, f"the gateway's memory grew {rss:.2f} times"
