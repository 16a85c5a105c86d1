"""Serving the HTTP API with uvicorn inside the gateway's own event loop (beside the gRPC server)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The gateway owns SIGTERM/SIGINT (it drains gRPC and HTTP together); uvicorn must not take them.
        yield


class HttpServer:
    def __init__(self, app: Starlette, host: str, port: int, grace_s: float,
                 certfile: str | None = None, keyfile: str | None = None) -> None:
        config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="warning", access_log=False,
                                timeout_graceful_shutdown=max(1, int(grace_s)) if grace_s else None,
                                ssl_certfile=certfile, ssl_keyfile=keyfile)
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when asked for port 0)."""
        return int(self._server.servers[0].sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(), name="http-api")
        while not self._server.started:
            if self._task.done():  # could not bind: raise its error here
                await self._task
                raise RuntimeError("the HTTP API server stopped while starting")
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
