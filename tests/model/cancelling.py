"""Cancelling a trajectory while a real engine generates, and seeing the engine stop: shared by the engine tests,
each passing its own probe of the engine's unfinished requests."""

from __future__ import annotations

import time
from collections.abc import Callable

from toolfabric import Client
from toolfabric.v1 import fabric_pb2 as pb


def cancel_mid_generation(client: Client, running: Callable[[], float], stop_within_s: float) -> None:
    """Cancels a long one-step turn at its 5th text event while `running()` (the engine's own count of unfinished
    requests) says it generates; the turn must end CANCELLED and the count drop to 0 within `stop_within_s`.
    Random weights may write EOS or a stop string early, so seeds are tried until a cancel lands mid-generation."""
    cancelled = False
    for seed in range(3, 9):
        seen = 0
        for event in client.events("Tell me everything.", max_steps=1, max_tokens=3900, seed=seed):
            if event.WhichOneof("event") == "text":
                seen += 1
                if seen == 5 and running() >= 1:
                    client.cancel(event.trajectory_id)
                    cancelled = True
            if event.WhichOneof("event") == "finished" and cancelled:
                assert event.finished.status == pb.STATUS_CANCELLED
        if cancelled:
            break
    assert cancelled, "no generation of seeds 3-8 was still running at its 5th text event"
    deadline = time.monotonic() + stop_within_s
    while running() > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert running() == 0
