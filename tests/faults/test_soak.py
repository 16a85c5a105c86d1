"""The short soak (issue 22, item 7; the 30-minute one is `make soak`, tests/soak/test_mixed_soak.py): two minutes of
mixed runs, reads, steps and cancels on the fault stack, with the vision worker SIGKILLed (and restarted) and
Redis restarted on the way. Every stream is accounted for — it ends with `finished` or an error status naming
why, never silently, never not at all — and the gateway's open files and memory stay flat."""

from __future__ import annotations

import pytest

from tests.soak.mixed import Soak
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]  # 2 minutes of soak, plus the stack
DURATION_S = 120.0


def test_two_minutes_of_mixed_load_with_a_worker_kill_and_a_redis_restart_account_for_every_stream(
        fault_stack: EmbeddedStack) -> None:
    tally = Soak(fault_stack, DURATION_S, [(40.0, "worker-kill"), (80.0, "redis-restart")], clients=4).run()
    print(f"\n[faults] soak {DURATION_S:.0f}s: {tally.summary()}")
    assert tally.streams > 20 and tally.reads and tally.steps and tally.cancels
    assert tally.accounted == tally.streams
    assert tally.silent == 0 and tally.hung == 0
    assert [name for _, name, _ in tally.faults] == ["worker-kill", "redis-restart"]
    assert tally.finished["STATUS_COMPLETED"] > tally.streams // 2
    _, fds, rss = tally.growth()
    assert len(tally.samples) >= 20
    assert fds <= 25, f"the gateway's open files grew by {fds}"
    assert rss <= 1.3, f"the gateway's memory grew {rss:.2f} times"
