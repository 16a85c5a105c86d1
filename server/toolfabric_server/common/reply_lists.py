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

from typing import Any

from celery import states
from celery.backends.redis import RedisBackend
from kombu.utils.encoding import bytes_to_str

# The message header naming the Redis list a task's result is pushed onto (its value: the list's key).
REPLY_HEADER = "toolfabric_reply_to"


def backend_url(redis_url: str) -> str:
    """Celery's `result_backend` for `redis_url`, with this module's backend class."""
    return f"{ReplyListBackend.__module__}:{ReplyListBackend.__qualname__}+{redis_url}"


class ReplyListBackend(RedisBackend):
    """RedisBackend that pushes a finished result onto the list its task's `REPLY_HEADER` names."""

    def _store_result(self, task_id: str, result: Any, state: str, traceback: Any = None, request: Any = None,
                      **kwargs: Any) -> Any:
        reply_to = getattr(request, REPLY_HEADER, None) if request is not None else None
        if not reply_to:
            return super()._store_result(task_id, result, state, traceback, request=request, **kwargs)
        meta = self._get_result_meta(result=result, state=state, traceback=traceback, request=request)
        meta["task_id"] = bytes_to_str(task_id)
        if self._get_task_meta_for(task_id)["status"] == states.SUCCESS:
            return result  # a lost worker's late duplicate must not replace the result (as Celery's own)
        expires = self.failure_expires if state == states.FAILURE else self.expires
        self.ensure(self._store_and_push, (self.get_key_for_task(task_id), self.encode(meta), expires,
                                           reply_to if state in states.READY_STATES else None))
        return result

    def _store_and_push(self, key: str, value: str, expires: int | None, reply_to: str | None) -> None:
        with self.client.pipeline() as pipe:
            if expires:
                pipe.setex(key, expires, value)
            else:
                pipe.set(key, value)
            if reply_to:  # STARTED is only stored: the sender reads it when it checks on a slow task
                pipe.rpush(reply_to, value)
                # A list whose reader has gone (its gateway stopped) disappears with the results it held.
                pipe.expire(reply_to, expires or self.expires or 86400)
            pipe.execute()
