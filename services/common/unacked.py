"""Messages of dead workers leave the broker's `unacked` set when the gateway gives up on them.

Kombu's Redis transport keeps every delivered, not yet acknowledged message in the hash `unacked` (delivery tag →
message) and its delivery time in the sorted set `unacked_index` until the worker acks it (late acks: after the
task ran). A worker killed whole never acks; kombu would hand the message back to a queue only once the
visibility timeout passed, long after the gateway sent the call again under a new id. So when the gateway finds
a task's worker dead and re-sends the call, it deletes the old message from both at once (one Lua script,
atomic with kombu's own restore): nothing runs it a second time later, and `unacked` does not grow with every
killed worker. A message a worker took but never started (it died between the two) is found the same way: still
in `unacked`, not STARTED, after `TOOLFABRIC_GATEWAY_UNSTARTED_TIMEOUT_S`; it is deleted and the call sent again.
"""

from __future__ import annotations

import redis.asyncio as aredis

UNACKED, UNACKED_INDEX = "unacked", "unacked_index"  # kombu.transport.redis's default key names

# Fields are delivery tags; a message's headers carry its task id (unique: a uuid4).
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
    return f'"id": "{task_id}"'


async def forget(client: aredis.Redis, task_id: str) -> int:
    """Delete the unacknowledged message(s) of `task_id`; how many there were."""
    return int(await client.eval(_FORGET, 2, UNACKED, UNACKED_INDEX, _needle(task_id)))
