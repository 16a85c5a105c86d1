"""Several tool calls of one service in one Celery message (issue 24: Celery's per-message cost, not the calls').

A Celery message costs a few milliseconds of broker and worker bookkeeping (publish, BRPOP, `unacked`, the pool's
IPC, the ack) whatever the task does; a no-op call is far cheaper than that. So the gateway's executor sends every
call that is waiting for the same queue at the moment it publishes in one message of the service's batch task,
never waiting for more (a lone call goes at once, as a plain task: latency does not grow). Each call keeps its own
id, result and trace context:

- the worker marks every call of the batch STARTED (with its hostname) when it takes the batch, skips a call
  already finished (a batch delivered again after its worker died runs only the unfinished ones), checks each
  call's revocation before running it, and pushes each result onto the sender's reply list as it finishes;
- the message's `BATCH_HEADER` lists the calls' ids, so a call's message is found in the broker's `unacked` set
  (common/unacked.py) by the call's id like a plain task's;
- cancelling one call of a batch still running revokes the whole batch message (its pool process is killed if it
  runs): the sender then sends the batch's unfinished other calls again (gateway/celery_executor.py).
"""

from __future__ import annotations

from typing import Any, TypedDict

# The message header listing the ids of the calls a batch carries.
BATCH_HEADER = "toolfabric_calls"


class BatchedCall(TypedDict):
    """One call in a batch message: its id (its result's key), the task's arguments and its trace context."""

    id: str
    tool: str
    arguments: dict[str, Any]
    context: dict[str, Any]
    trace: dict[str, str]


def batch_task_name(service: str) -> str:
    """Celery task name of a service's batch entry point (beside `tools.task_name`'s single one)."""
    return f"toolfabric.{service}.batch"
