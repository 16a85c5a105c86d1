"""Celery results handed back on the sender's own Redis list instead of per-task pub/sub.

Celery's Redis result backend stores a result under `celery-task-meta-<id>` and PUBLISHes it on a channel of the
same name, so a sender subscribes and unsubscribes once per task on one shared pub/sub connection. A task sent
with the `REPLY_HEADER` header naming a list gets its finished result (SUCCESS, FAILURE, REVOKED) pushed onto
that list in the same pipeline as the stored copy: the gateway keeps one blocking pop per process on its own list
(issue 24: fewer Redis commands per call, no subscription bookkeeping). The stored copy stays: a sender that
missed the push (Redis restarted between the push and the pop) still finds the result with a GET, and a SUCCESS
already stored is never overwritten (Celery's own guard against a lost worker's late duplicate). Tasks sent
without the header (raw Celery clients, `AsyncResult.get()`) are published exactly as before.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from celery import states
from celery.backends.redis import RedisBackend
from kombu.utils.encoding import bytes_to_str
from redis.exceptions import NoScriptError

# The message header naming the Redis list a task's result is pushed onto (its value: the list's key).
REPLY_HEADER = "toolfabric_reply_to"


# Set around the send of a task whose result the sender takes from its reply list (see `sending_to_reply_list`).
_FROM_REPLY_LIST: contextvars.ContextVar[bool] = contextvars.ContextVar("toolfabric_reply_list_send", default=False)


@contextlib.contextmanager
def sending_to_reply_list() -> Iterator[None]:
    """Around `send_task` of a task sent with `REPLY_HEADER`: Celery would SUBSCRIBE its sender to the task's
    pub/sub channel at the send and UNSUBSCRIBE when the returned AsyncResult is collected — two commands per call
    on a channel nothing is published to (issue 24). Inside, the send does not subscribe."""
    token = _FROM_REPLY_LIST.set(True)
    try:
        yield
    finally:
        _FROM_REPLY_LIST.reset(token)


def backend_url(redis_url: str) -> str:
    """Celery's `result_backend` for `redis_url`, with this module's backend class."""
    return f"{ReplyListBackend.__module__}:{ReplyListBackend.__qualname__}+{redis_url}"


# Store a result unless a SUCCESS is already stored (Celery's guard against a lost worker's late duplicate), and
# push a finished one onto the sender's list, in one round trip (Celery's own store is a GET, then a SET). KEYS: the
# result's key, the list to push onto ('' for none), a revocation mark ('' for none: when it exists, nothing is
# stored). Returns 1 stored, 0 a SUCCESS was there, 2 revoked. (Several keys of one call: one Redis, not a cluster.)
_STORE = """
if KEYS[3] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then return 0 end
end
if tonumber(ARGV[2]) > 0 then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else redis.call('SET', KEYS[1], ARGV[1]) end
if KEYS[2] ~= '' then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return 1
"""


class ReplyListBackend(RedisBackend):
    """RedisBackend that pushes a finished result onto the list its task's `REPLY_HEADER` names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._store_sha: str | None = None

    def on_task_call(self, producer: Any, task_id: str) -> None:
        if not _FROM_REPLY_LIST.get():  # a raw Celery sender waits by pub/sub as before
            super().on_task_call(producer, task_id)

    def _store_result(self, task_id: str, result: Any, state: str, traceback: Any = None, request: Any = None,
                      **kwargs: Any) -> Any:
        reply_to = getattr(request, REPLY_HEADER, None) if request is not None else None
        if not reply_to:
            return super()._store_result(task_id, result, state, traceback, request=request, **kwargs)
        meta = self._get_result_meta(result=result, state=state, traceback=traceback, request=request)
        meta["task_id"] = bytes_to_str(task_id)
        self.store_meta(task_id, meta, reply_to)
        return result

    def store_meta(self, task_id: str, meta: dict[str, Any], reply_to: str | None) -> None:
        """Store `meta` (Celery's result format) as `task_id`'s result unless a SUCCESS is stored already, and
        push it onto `reply_to` when it is a finished state (STARTED is only stored: the sender reads it when it
        checks on a slow task). One round trip, retried like every backend write."""
        self.store_metas([meta], reply_to)

    def store_metas(self, metas: list[dict[str, Any]], reply_to: str | None,
                    revoked_keys: list[str] | None = None) -> list[int]:
        """`store_meta` for several results (each `meta` names its `task_id`) in one round trip; for each, 1 stored,
        0 a SUCCESS was there already (left as it was), 2 its key in `revoked_keys` exists (nothing stored)."""
        writes = []
        for i, meta in enumerate(metas):
            state = meta.get("status")
            expires = self.failure_expires if state == states.FAILURE else self.expires
            push = reply_to if reply_to and state in states.READY_STATES else ""
            writes.append((self.get_key_for_task(meta["task_id"]), push, revoked_keys[i] if revoked_keys else "",
                           self.encode(meta), expires))
        return list(self.ensure(self._store_and_push, (writes,)))

    def start_calls(self, task_ids: list[str], worker: dict[str, Any], revoked_keys: list[str]) -> dict[str, str]:
        """Mark `task_ids` STARTED on `worker` (`{"hostname": ..., "pid": ...}`, as Celery's own STARTED record) in
        one round trip, each unless its revocation mark (in `revoked_keys`) exists or it finished already (a
        SUCCESS stored: a message delivered again). For each: "started", "revoked" or "finished"."""
        metas = []
        for task_id in task_ids:
            meta = self._get_result_meta(result=worker, state=states.STARTED, traceback=None, request=None)
            meta["task_id"] = task_id
            metas.append(meta)
        outcome = {0: "finished", 1: "started", 2: "revoked"}
        stored = self.store_metas(metas, None, revoked_keys)
        return {task_id: outcome[code] for task_id, code in zip(task_ids, stored, strict=True)}

    def _store_and_push(self, writes: list[tuple[str, str, str, str, int | None]]) -> list[int]:
        try:
            return self._run_store(writes)
        except NoScriptError:  # Redis restarted since the script was loaded
            self._store_sha = None
            return self._run_store(writes)

    def _run_store(self, writes: list[tuple[str, str, str, str, int | None]]) -> list[int]:
        # EVALSHA in a plain pipeline: redis-py's Script objects would ask SCRIPT EXISTS before every pipeline.
        if self._store_sha is None:
            self._store_sha = str(self.client.script_load(_STORE))
        with self.client.pipeline(transaction=False) as pipe:
            for key, reply_to, revoked_key, value, expires in writes:
                # A list whose reader has gone (its gateway stopped) disappears with the results it held.
                pipe.evalsha(self._store_sha, 3, key, reply_to, revoked_key, value, int(expires or 0),
                             int(expires or self.expires or 86400))
            return [int(code) for code in pipe.execute()]
