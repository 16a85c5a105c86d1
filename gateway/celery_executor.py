"""Tool calls as Celery tasks, awaited without blocking the event loop.

Celery's Redis result backend stores each result under `celery-task-meta-<id>` and publishes it on
the channel of the same name. The executor keeps one pub/sub connection, subscribes to a call's
channel before publishing the task, and resolves the call's future when the result arrives — no
thread per call and no polling on the hot path. A GET of the key covers the rare case of a result
stored before the subscription took effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

import redis.asyncio as aredis
from celery import Celery

from gateway.interfaces import ToolDispatchError, ToolInvocation
from services.common.tools import ToolResult, task_name

log = logging.getLogger(__name__)
_META = "celery-task-meta-"
_READY = {"SUCCESS", "FAILURE", "REVOKED"}
# Subscribed for the executor's whole life, so the reader's pub/sub connection always has a channel.
_KEEPALIVE = "toolfabric:gateway:keepalive"


class CeleryToolExecutor:
    def __init__(self, app: Celery, redis_client: aredis.Redis) -> None:
        self._app = app
        self._redis = redis_client
        self._pubsub = redis_client.pubsub()
        self._waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._pubsub.subscribe(_KEEPALIVE)
        self._reader = asyncio.create_task(self._read(), name="celery-results")

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()

    async def _read(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # a dropped connection: redis-py reconnects on the next call
                log.exception("result subscription failed; retrying")
                await asyncio.sleep(0.5)
                continue
            if not message or message.get("type") != "message":
                continue
            channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
            future = self._waiters.get(channel[len(_META):])
            if future is not None and not future.done():
                meta = json.loads(message["data"])
                if meta.get("status") in _READY:
                    future.set_result(meta)

    async def call(self, invocation: ToolInvocation) -> ToolResult:
        task_id = str(uuid.uuid4())
        channel = _META + task_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[task_id] = future
        try:
            await self._pubsub.subscribe(channel)
            try:
                # Publishing is one short Redis write; doing it inline keeps the caller's trace context
                # current, so Celery's instrumentation carries it in the task headers.
                self._app.send_task(
                    task_name(invocation.service),
                    args=[invocation.tool, invocation.arguments, invocation.context.model_dump(mode="json")],
                    task_id=task_id, queue=invocation.service, headers=invocation.headers or None,
                )
            except Exception as exc:
                raise ToolDispatchError("unavailable", f"could not queue {invocation.tool} on "
                                                       f"'{invocation.service}': {exc}") from exc
            meta = await self._wait(task_id, future, invocation)
        except asyncio.CancelledError:
            await self.revoke(task_id)
            raise
        finally:
            self._waiters.pop(task_id, None)
            with contextlib.suppress(Exception):
                await self._pubsub.unsubscribe(channel)
        return _to_result(invocation.tool, meta)

    async def _wait(self, task_id: str, future: asyncio.Future[dict[str, Any]],
                    invocation: ToolInvocation) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + invocation.timeout_s
        poll = 1.0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                await self.revoke(task_id)
                raise ToolDispatchError("timeout", f"{invocation.tool} gave no result within "
                                                   f"{invocation.timeout_s:g}s (TOOLFABRIC_GATEWAY_TOOL_TIMEOUT_S)")
            try:
                # asyncio.timeout, not wait_for, so a cancellation arriving with the result is never lost.
                async with asyncio.timeout(min(poll, remaining)):
                    return await asyncio.shield(future)
            except TimeoutError:
                stored = await self._redis.get(_META + task_id)
                if stored:
                    meta = json.loads(stored)
                    if meta.get("status") in _READY:
                        return meta
                poll = min(poll * 2, 5.0)

    async def revoke(self, task_id: str) -> None:
        """Stop a queued or running task (the control broadcast blocks, so it runs in a thread)."""
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
