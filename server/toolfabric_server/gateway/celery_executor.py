"""Tool calls as Celery tasks, awaited without blocking the event loop.

Celery's Redis result backend stores each result under `celery-task-meta-<id>`; every task this executor
sends names the executor's own reply list (common/reply_lists.py), onto which the worker pushes the
finished result in the same pipeline. One reader pops that list (a blocking pop, then every result already
there in one round trip) and resolves each call's future — no subscription per call, no thread per call and
no polling on the hot path. A GET of the stored result covers a push the reader missed (Redis restarted).

Faults are found within seconds, not at the call's timeout: a service with no live worker (see
`toolfabric_server.common.consumers`) gets an `unavailable` result after `no_consumer_wait_s`; a task whose worker
died (its STARTED record names a worker that stopped beating) is sent again under a new id, up to
`tool_retries` times, and the result says how many attempts it took (the old message leaves the broker's
`unacked` set at once, common/unacked.py). Every task expires with its call's
timeout, so a worker never runs a call nobody waits for (Celery discards an expired task on receipt),
and a call abandoned for any reason is revoked.

A service named in `calls_per_message` (TOOLFABRIC_GATEWAY_CALLS_PER_MESSAGE) gets its calls sent several to a
message (common/batches.py): one publish at a time per queue, each taking every call that waited meanwhile (up to
the limit), so a lone call still goes at once; with `messages_in_flight` messages of the queue not over, the next
waits for one of them (the calls meanwhile go together, not one message each). A batch that loses one of its
unfinished calls (cancelled, timed out, its worker dead) is revoked whole and its other unfinished calls are sent
again, each alone or batched anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import redis.asyncio as aredis
from celery import Celery

from toolfabric_server.common import revocations, unacked
from toolfabric_server.common.batches import BATCH_HEADER, BatchedCall, batch_task_name
from toolfabric_server.common.consumers import LiveConsumers
from toolfabric_server.common.reply_lists import REPLY_HEADER, sending_to_reply_list
from toolfabric_server.common.telemetry import observe
from toolfabric_server.common.telemetry.celery import publish_carrier
from toolfabric_server.common.tools import ToolResult, task_name
from toolfabric_server.engine.ports import ToolDispatchError, ToolInvocation

log = logging.getLogger(__name__)
_META = "celery-task-meta-"
_READY = {"SUCCESS", "FAILURE", "REVOKED"}
# Results already waiting are taken this many per round trip.
_POP_BATCH = 256
# At shutdown, each Redis command gets this long.
_CLOSE_COMMAND_S = 1.0


class _WorkerLost(Exception):
    """The worker running a task stopped beating: the task will not finish."""


class _BatchRevoked(Exception):
    """Another call of the task's batch was given up, so the batch was revoked: send this call again."""


@dataclass
class _Outgoing:
    """A call waiting for its queue's next publish."""

    task_id: str
    invocation: ToolInvocation
    expires_s: float
    context: contextvars.Context  # the caller's: its trace context goes into the message
    sent: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class CeleryToolExecutor:
    def __init__(self, app: Celery, redis_client: aredis.Redis, consumers: LiveConsumers | None = None,
                 no_consumer_wait_s: float = 3.0, retries: int = 1, retry_consumer_wait_s: float = 30.0,
                 unstarted_timeout_s: float = 15.0, calls_per_message: dict[str, int] | None = None,
                 messages_in_flight: int = 4) -> None:
        self._app = app
        self._redis = redis_client
        self._consumers = consumers
        self._no_consumer_wait_s, self._retries = no_consumer_wait_s, retries
        self._retry_consumer_wait_s = retry_consumer_wait_s
        self._unstarted_timeout_s = unstarted_timeout_s
        # This executor's own list: a gateway that stops leaves it to expire (reply_lists pushes with a TTL).
        self._replies = f"toolfabric:replies:{uuid.uuid4().hex}"
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._calls_per_message = {k: v for k, v in (calls_per_message or {}).items() if v > 1}
        self._outbox: dict[str, list[_Outgoing]] = {}  # per queue, the calls waiting for its next publish
        self._publishers: dict[str, asyncio.Task[None]] = {}  # per queue, its publish under way
        # Messages of those queues sent and not over, and the calls of each not over yet: beyond
        # `messages_in_flight` per queue, calls wait in the outbox and go together in the next message.
        self._messages_in_flight = messages_in_flight
        self._message_of: dict[str, str] = {}  # call id -> its message (a batch's id, or the call's own)
        self._open: dict[str, tuple[str, set[str]]] = {}  # message id -> (queue, its calls not over)
        self._in_flight: dict[str, int] = {}
        self._slot_freed: dict[str, asyncio.Event] = {}

    async def start(self) -> None:
        # Reading results is bookkeeping: not even a dropped span per read.
        self._reader = asyncio.create_task(self._read(), name="celery-results", context=observe.untraced_context())

    async def close(self) -> None:
        self._closing = True
        for publisher in list(self._publishers.values()):
            publisher.cancel()
        # Each Redis command is bounded: with Redis gone (e.g. `up` killed, its Redis first), a command retries
        # for ~10 s (common/redis_clients.py), and the gateway's exit must not wait that out twice. The wake-up
        # only saves the pop's 1 s timeout; a list left behind expires with its TTL.
        if self._reader:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_COMMAND_S):
                    await self._redis.rpush(self._replies, "{}")  # wakes the blocking pop at once
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 2.0)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_COMMAND_S):
                await self._redis.delete(self._replies)

    async def _read(self) -> None:
        # The flag too, not only the cancellation: redis-py can swallow a cancellation that lands in a blocking pop.
        while not self._closing:
            try:
                # Everything already there in one round trip; block only when the list is empty.
                values = cast("list[Any]", await self._redis.lpop(self._replies, _POP_BATCH) or [])
                if not values:
                    popped = await self._redis.blpop([self._replies], timeout=1)
                    values = [popped[1]] if popped else []
            except asyncio.CancelledError:
                raise
            except Exception:  # a dropped connection: redis-py reconnects on the next call
                log.exception("reading the result list failed; retrying")
                await asyncio.sleep(0.5)
                continue
            for value in values:
                try:
                    meta = json.loads(value)
                    if not isinstance(meta, dict):
                        raise ValueError("not an object")
                except ValueError:
                    log.warning("ignored a malformed result on %s: %.80r", self._replies, value)
                    continue
                future = self._waiters.get(meta.get("task_id", ""))
                if future is not None and not future.done() and meta.get("status") in _READY:
                    future.set_result(meta)

    async def call(self, invocation: ToolInvocation) -> ToolResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + invocation.timeout_s
        attempt = 0
        while True:
            attempt += 1
            # A resent call waits longer for a worker: the one that died is usually being replaced.
            await self._await_consumer(invocation, self._no_consumer_wait_s if attempt == 1
                                       else min(self._retry_consumer_wait_s, max(deadline - loop.time(), 0)))
            try:
                meta = await self._attempt(invocation, deadline)
            except _BatchRevoked:
                attempt -= 1  # not this call's fault: it was never given up on
                continue
            except _WorkerLost as lost:
                if attempt > self._retries or loop.time() >= deadline:
                    result = ToolResult.failure("worker_failure", f"{invocation.tool}: {lost} (sent {attempt} times)")
                    result.attempts = attempt
                    return result
                log.warning("%s: %s; sending it again (attempt %d)", invocation.tool, lost, attempt + 1)
                continue
            result = _to_result(invocation.tool, meta)
            result.attempts += attempt - 1  # the worker counts a redelivery of the same task; we count resends
            return result

    async def _await_consumer(self, invocation: ToolInvocation, wait_s: float) -> None:
        """Return once the service's queue has a live consumer; `unavailable` if none comes in time."""
        if self._consumers is None:
            return
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait_s
        try:
            while not await self._consumers.count(invocation.service):
                if loop.time() >= give_up:
                    raise ToolDispatchError(
                        "unavailable", f"no live '{invocation.service}' worker: none has sent a heartbeat "
                                       f"recently, so {invocation.tool} cannot run now")
                await asyncio.sleep(0.25)
        except aredis.RedisError as exc:
            raise ToolDispatchError("unavailable", f"Redis is unreachable, {invocation.tool} was not queued: "
                                                   f"{exc}") from exc

    async def _attempt(self, invocation: ToolInvocation, deadline: float) -> dict[str, Any]:
        task_id = str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[task_id] = future
        finished = False
        try:
            try:
                # The task expires with the call: a worker that receives it later discards it.
                remaining = max(deadline - asyncio.get_running_loop().time(), 1.0)
                if invocation.service in self._calls_per_message:
                    await self._send_batched(task_id, invocation, remaining)
                else:
                    await asyncio.to_thread(self._send_alone, task_id, invocation, remaining)
            except Exception as exc:
                raise ToolDispatchError("unavailable", f"could not queue {invocation.tool} on "
                                                       f"'{invocation.service}': {exc}") from exc
            try:
                meta = await self._wait(task_id, future, invocation, deadline)
            except _BatchRevoked:
                # It may have finished just before its batch was revoked: then it is not run again.
                stored = None
                with contextlib.suppress(aredis.RedisError):
                    stored = await self._redis.get(_META + task_id)
                meta = json.loads(stored) if stored else {}
                if meta.get("status") != "SUCCESS":
                    raise
            except _WorkerLost:
                with contextlib.suppress(Exception):  # it will be sent again: its old message must not run later
                    await unacked.forget(self._redis, task_id)
                raise
            finished = True
            return meta
        finally:
            self._waiters.pop(task_id, None)
            message = self._message_of.pop(task_id, None)
            batch_id = message if message is not None and message != task_id else None
            if message is not None:
                self._leave(message, task_id)
            if not finished:  # cancelled, timed out, or its worker died: nobody will read its result
                await self.revoke(task_id, invocation.timeout_s)
                if batch_id is not None:
                    await self._revoke_batch(batch_id)

    def _leave(self, message: str, task_id: str) -> None:
        """`task_id` is over: its message is over with its last call."""
        opened = self._open.get(message)
        if opened is not None:
            opened[1].discard(task_id)
            if not opened[1]:
                self._close(message)

    def _close(self, message: str) -> None:
        service, _ = self._open.pop(message)
        self._in_flight[service] -= 1
        self._slot_freed.setdefault(service, asyncio.Event()).set()

    def _send_alone(self, task_id: str, invocation: ToolInvocation, expires_s: float) -> None:
        # Publishing is a blocking broker write: it runs in a thread (asyncio.to_thread copies the context, so
        # the publish hook, common/telemetry/celery.py, still carries the trace in the task headers).
        with sending_to_reply_list():
            self._app.send_task(
                task_name(invocation.service),
                args=[invocation.tool, invocation.arguments, invocation.context.model_dump(mode="json")],
                task_id=task_id, queue=invocation.service,
                headers={**(invocation.headers or {}), REPLY_HEADER: self._replies}, expires=expires_s,
            )

    async def _send_batched(self, task_id: str, invocation: ToolInvocation, expires_s: float) -> None:
        """Queue the call for its queue's next publish (started now if none is under way) and wait until sent."""
        outgoing = _Outgoing(task_id, invocation, expires_s, contextvars.copy_context())
        service = invocation.service
        self._outbox.setdefault(service, []).append(outgoing)
        if service not in self._publishers:
            # Not in this caller's context: the batch message's own publish is no event of this call's span (each
            # call's publish event and trace context are added per call, publish_carrier).
            self._publishers[service] = asyncio.create_task(self._publish(service), name=f"publish-{service}",
                                                            context=observe.untraced_context())
        try:
            await asyncio.shield(outgoing.sent)
        except asyncio.CancelledError:
            outgoing.sent.cancel()  # not sent yet: it is left out (sent: it is revoked)
            raise

    async def _publish(self, service: str) -> None:
        """Send the queue's waiting calls, as many per message as allowed, until none waits; with
        `messages_in_flight` messages of the queue not over, wait for one to be over first."""
        limit = self._calls_per_message[service]
        freed = self._slot_freed.setdefault(service, asyncio.Event())
        try:
            while self._outbox.get(service):
                while self._in_flight.get(service, 0) >= self._messages_in_flight:
                    freed.clear()
                    await freed.wait()
                pending = self._outbox.get(service, [])
                calls, self._outbox[service] = pending[:limit], pending[limit:]
                calls = [c for c in calls if not c.sent.done()]
                if not calls:
                    continue
                try:
                    if len(calls) == 1:
                        one = calls[0]
                        await asyncio.to_thread(one.context.run, self._send_alone, one.task_id, one.invocation,
                                                one.expires_s)
                        message = one.task_id
                    else:
                        message = await asyncio.to_thread(self._send_batch, service, calls)
                except Exception as exc:
                    for c in calls:
                        if not c.sent.done():
                            c.sent.set_exception(exc)
                    continue
                # Calls given up on meanwhile are revoked already: the message is over with the others.
                waiting = {c.task_id for c in calls if not c.sent.done()}
                if waiting:
                    self._open[message] = (service, waiting)
                    self._in_flight[service] = self._in_flight.get(service, 0) + 1
                    for c in calls:
                        if not c.sent.done():
                            self._message_of[c.task_id] = message
                            c.sent.set_result(None)
        finally:
            self._publishers.pop(service, None)

    def _send_batch(self, service: str, calls: list[_Outgoing]) -> str:
        batch_id = str(uuid.uuid4())
        name = task_name(service)
        entries: list[BatchedCall] = [{
            "id": c.task_id, "tool": c.invocation.tool, "arguments": c.invocation.arguments,
            "context": c.invocation.context.model_dump(mode="json"),
            "trace": c.context.run(publish_carrier, name, service, c.task_id),
        } for c in calls]
        with sending_to_reply_list():
            self._app.send_task(batch_task_name(service), args=[entries], task_id=batch_id, queue=service,
                                headers={REPLY_HEADER: self._replies, BATCH_HEADER: [c.task_id for c in calls]},
                                expires=max(c.expires_s for c in calls))
        return batch_id

    async def _revoke_batch(self, batch_id: str) -> None:
        """Revoke a batch one of whose calls was given up on (its pool process is killed if it runs it) and send
        its other unfinished calls again: each is revoked too, so a worker that gets the batch later skips it."""
        members = self._open[batch_id][1] if batch_id in self._open else set()
        if batch_id in self._open:
            self._close(batch_id)
        for member in members:
            self._message_of.pop(member, None)
            waiter = self._waiters.get(member)
            if waiter is not None and not waiter.done():
                waiter.set_exception(_BatchRevoked())
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._app.control.revoke, batch_id, terminate=True, signal="SIGKILL")

    async def _wait(self, task_id: str, future: asyncio.Future[dict[str, Any]],
                    invocation: ToolInvocation, deadline: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        poll, unconsumed_since = 0.5, None
        holders: tuple[float, set[str]] | None = None  # since when it is held unstarted, by which live workers
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise ToolDispatchError("timeout", f"{invocation.tool} gave no result within "
                                                   f"{invocation.timeout_s:g}s (TOOLFABRIC_GATEWAY_TOOL_TIMEOUT_S)",
                                        may_have_run=True)
            try:
                # asyncio.timeout, not wait_for, so a cancellation arriving with the result is never lost.
                async with asyncio.timeout(min(poll, remaining)):
                    return await asyncio.shield(future)
            except TimeoutError:
                poll = min(poll * 2, 2.0)
                try:
                    stored = await self._redis.get(_META + task_id)
                except aredis.RedisError:
                    continue  # Redis away for a moment: keep waiting until the deadline
                meta = json.loads(stored) if stored else {}
                if meta.get("status") in _READY:
                    return meta
                await self._check_worker(invocation.service, meta)
                if not meta and self._consumers is not None:
                    # Taken from the queue (in `unacked`) but not started: if a worker that was alive when it was
                    # taken has died since and it is still not started, that worker took it with it.
                    held = False
                    with contextlib.suppress(aredis.RedisError):
                        held = await unacked.holds(self._redis, task_id)
                    if not held:
                        holders = None
                    elif holders is None:
                        holders = (loop.time(), await self._consumers.live(invocation.service))
                    elif loop.time() - holders[0] >= self._unstarted_timeout_s and \
                            holders[1] - await self._consumers.live(invocation.service):
                        raise _WorkerLost(f"a worker took it and died before starting it (not started after "
                                          f"{self._unstarted_timeout_s:g}s)") from None
                if not meta and self._consumers is not None:
                    # Still queued: if every worker of the service has gone meanwhile, say so now.
                    if await self._consumers.count(invocation.service):
                        unconsumed_since = None
                    elif unconsumed_since is None:
                        unconsumed_since = loop.time()
                    elif loop.time() - unconsumed_since >= self._no_consumer_wait_s:
                        raise ToolDispatchError("unavailable", f"no live '{invocation.service}' worker is left "
                                                               f"to run {invocation.tool}") from None

    async def _check_worker(self, service: str, meta: dict[str, Any]) -> None:
        """Raise _WorkerLost if the task is STARTED on a worker that no longer beats."""
        if self._consumers is None or meta.get("status") != "STARTED":
            return
        hostname = (meta.get("result") or {}).get("hostname") if isinstance(meta.get("result"), dict) else None
        if hostname and not await self._consumers.alive(service, hostname):
            raise _WorkerLost(f"worker {hostname} died while running it")

    async def revoke(self, task_id: str, ttl_s: float = 3600.0) -> None:
        """Stop a queued or running task (the control broadcast blocks, so it runs in a thread), and remember
        the revocation in Redis for workers that start later."""
        with contextlib.suppress(Exception):
            await revocations.mark(self._redis, task_id, ttl_s)
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self._app.control.revoke, task_id, terminate=True, signal="SIGKILL")


def _to_result(tool: str, meta: dict[str, Any]) -> ToolResult:
    status = meta.get("status")
    if status == "SUCCESS":
        return ToolResult.model_validate(meta.get("result") or {})
    if status == "REVOKED":
        return ToolResult.failure("cancelled", f"{tool} was cancelled")
    result = meta.get("result") or {}
    exc_type = result.get("exc_type", "error") if isinstance(result, dict) else "error"
    message = result.get("exc_message", result) if isinstance(result, dict) else result
    if exc_type == "TimeLimitExceeded":
        return ToolResult.failure("timeout", f"{tool} was killed at the worker's hard time limit")
    return ToolResult.failure("worker_failure", f"{tool} failed in the worker ({exc_type}): {message}")
