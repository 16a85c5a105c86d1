"""Messages of dead workers leave the broker's `unacked` set when the gateway gives up on them.

Kombu's Redis transport keeps every delivered, not yet acknowledged message in the hash `unacked` (delivery tag →
message) and its delivery time in the sorted set `unacked_index` until the worker acks it (late acks: after the
task ran). A worker killed whole never acks; kombu would hand the message back to a queue only once the
visibility timeout passed, long after the gateway sent the call again under a new id. So when the gateway finds
a task's worker dead and re-sends the call, it deletes the old message from both at once (one Lua script,
atomic with kombu's own restore): nothing runs it a second time later, and `unacked` does not grow with every
killed worker. A message a worker took but never started (it died between the two) is found the same way: still
in `unacked`, not STARTED, after `TOOLFABRIC_GATEWAY_UNSTARTED_TIMEOUT_S`; it is deleted and the call sent again.

The worker side (`RestoreUnstarted`): a worker that loses its broker connection drops the messages it had taken
but not started and kombu pushes them back to their queues ("Restoring N unacknowledged message(s)"). When Redis
itself is what went away (a restart), that push fails and kombu forgets the messages: they stay in `unacked`
until the visibility timeout, while the worker lives on and beats, so the gateway's check above never fires and
each caught call waits out its tool timeout. The worker now remembers the delivery tags it could not restore and
restores them as soon as its consumer is connected again: those of tasks not started go back to the front of
their queue (same task id: the waiting gateway gets its result, nothing is sent twice), those already finished
leave `unacked`, and those still running stay (their pool process may yet finish them; a late redelivery of one
is discarded on receipt, since every task expires with its call).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import redis
import redis.asyncio as aredis
from celery import bootsteps
from kombu.transport import redis as kombu_redis

from toolfabric_server.common.batches import BATCH_HEADER

log = logging.getLogger(__name__)

UNACKED, UNACKED_INDEX = "unacked", "unacked_index"  # kombu.transport.redis's default key names

# Fields are delivery tags; a message's headers carry its task id or its calls' ids (unique: uuid4s).
_FORGET = """
local removed = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if string.find(all[i + 1], ARGV[1], 1, true) then
    redis.call('HDEL', KEYS[1], all[i])
    redis.call('ZREM', KEYS[2], all[i])
    removed = removed + 1
  end
end
return removed
"""


_HOLDS = """
local all = redis.call('HVALS', KEYS[1])
for i = 1, #all do
  if string.find(all[i], ARGV[1], 1, true) then return 1 end
end
return 0
"""


async def holds(client: aredis.Redis, task_id: str) -> bool:
    """Whether a worker took `task_id` from its queue and has not acknowledged it yet."""
    return bool(await client.eval(_HOLDS, 1, UNACKED, _needle(task_id)))


def _needle(task_id: str) -> str:
    # A plain task's id is in its headers' "id"; a batched call's in the batch's list of ids (common/batches.py).
    return f'"{task_id}"'


async def forget(client: aredis.Redis, task_id: str) -> int:
    """Delete the unacknowledged message(s) of `task_id`; how many there were."""
    return int(await client.eval(_FORGET, 2, UNACKED, UNACKED_INDEX, _needle(task_id)))


# Delivery tags a worker took, could not restore when its connection broke, and restores once it is back.
_unrestored: set[str] = set()
_unrestored_lock = threading.Lock()
_original_restore_unacked = kombu_redis.QoS.restore_unacked


def _restore_unacked_or_remember(self: kombu_redis.QoS, client: Any = None) -> None:
    tags = list(self._delivered)
    try:
        _original_restore_unacked(self, client)
    except Exception as exc:  # Redis unreachable: without this the messages stay in `unacked` for the timeout
        with _unrestored_lock:
            _unrestored.update(str(tag) for tag in tags)
        self._delivered.clear()
        log.warning("could not give back %d unacknowledged message(s) while the broker is away (%s): "
                    "they are restored when it is back", len(tags), exc)


def install_restore_retry() -> None:
    """Make this process remember what kombu fails to restore on a broken connection (workers call it)."""
    kombu_redis.QoS.restore_unacked = _restore_unacked_or_remember  # type: ignore[method-assign]


def restore_unrestored(qos: kombu_redis.QoS, client: redis.Redis) -> tuple[int, int]:
    """Restore the remembered tags on a live channel; returns (given back to their queue, dropped as done)."""
    with _unrestored_lock:
        tags = list(_unrestored)
    restored = dropped = 0
    for tag in tags:
        payload = client.hget(qos.unacked_key, tag)
        if payload is None:  # the gateway forgot it (sent the call again) or it was restored meanwhile
            state = "gone"
        else:
            state = _task_state(client, payload)
        if state == "unstarted":
            qos.restore_by_tag(tag, client=client, leftmost=True)  # it waited already: the front of the queue
            restored += 1
        elif state == "ready":
            pipe = client.pipeline()
            pipe.zrem(qos.unacked_index_key, tag)
            pipe.hdel(qos.unacked_key, tag)
            pipe.execute()
            dropped += 1
        with _unrestored_lock:
            _unrestored.discard(tag)
    return restored, dropped


def _task_state(client: redis.Redis, payload: bytes | str) -> str:
    try:
        headers = json.loads(payload)[0]["headers"]
        # A batch (common/batches.py) is as far as its calls: they are all STARTED when a worker starts it.
        task_ids = list(headers.get(BATCH_HEADER) or [headers["id"]])
    except (ValueError, KeyError, IndexError, TypeError):
        return "unstarted"  # not a task message we can read: give it back as kombu would have
    metas = client.mget([f"celery-task-meta-{task_id}" for task_id in task_ids])
    if all(meta is None for meta in metas):
        return "unstarted"
    done = all(meta is not None and json.loads(meta).get("status") in ("SUCCESS", "FAILURE", "REVOKED")
               for meta in metas)
    return "ready" if done else "running"


class RestoreUnstarted(bootsteps.StartStopStep):
    """Consumer step: once connected (again), restore what a broken connection kept kombu from restoring."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def start(self, parent: Any) -> None:
        if not _unrestored or parent.task_consumer is None:
            return
        channel = parent.task_consumer.channel
        try:
            with channel.conn_or_acquire() as client:
                restored, dropped = restore_unrestored(channel.qos, client)
        except Exception as exc:  # the connection broke again: the next start tries again
            log.warning("could not restore unacknowledged messages yet: %s", exc)
            return
        log.info("restored %d unstarted message(s) to their queues after the broker came back (%d finished "
                 "ones dropped)", restored, dropped)
