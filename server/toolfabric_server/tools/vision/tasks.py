"""The vision service's Celery task: `toolfabric.vision.call`, dispatching to every vision tool.

Registered by `run_worker("vision")`. Each worker process starts its own sandbox zygote when it
starts (so the first `code` call is warm) and stops it when it exits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery, Task
from celery.signals import worker_init, worker_process_init, worker_process_shutdown

from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.common.tools import ToolContext, ToolResult
from toolfabric_server.common.worker import Handler, register_service
from toolfabric_server.tools.vision import code_tool, handlers
from toolfabric_server.tools.vision.sandbox.confine import hide_process_from_same_uid
from toolfabric_server.tools.vision.settings import VisionSettings
from toolfabric_server.tools.vision.spec import TOOLS
from toolfabric_server.tools.vision.store import Vision

# Each takes (arguments, context, vision): the worker's settings and image store.
HANDLERS: dict[str, Callable[[Any, ToolContext, Vision], ToolResult]] = {
    "code": code_tool.code,
    "crop": handlers.crop,
    "zoom_in": handlers.zoom_in,
    "image_zoom_in_tool": handlers.qwen_zoom_in,
    "resize": handlers.resize,
    "rotate": handlers.rotate,
    "flip": handlers.flip,
    "adjust": handlers.adjust,
    "equalize": handlers.equalize,
    "sharpen": handlers.sharpen,
    "denoise": handlers.denoise,
    "grayscale": handlers.grayscale,
    "threshold": handlers.threshold,
    "edges": handlers.edges,
    "draw": handlers.draw_marks,
}


def bound(vision: Vision) -> dict[str, Handler]:
    """The handlers as a worker calls them, (arguments, context), on `vision`."""

    def bind(handler: Callable[[Any, ToolContext, Vision], ToolResult]) -> Handler:
        return lambda args, ctx: handler(args, ctx, vision)

    return {name: bind(handler) for name, handler in HANDLERS.items()}


def register(app: Celery, common: CommonSettings) -> Task:
    """`toolfabric.vision.call` on the worker's app, and the sandbox's life with the worker's processes; the
    vision settings are read here, at the worker's start."""
    worker_init.connect(_hide_worker, weak=False)
    worker_process_init.connect(_start_sandbox, weak=False)
    worker_process_shutdown.connect(_stop_sandbox, weak=False)
    return register_service(app, "vision", TOOLS, bound(Vision(common, VisionSettings())), common)


def _hide_worker(**_: Any) -> None:
    hide_process_from_same_uid()  # inherited by the pool processes it forks


def _start_sandbox(**_: Any) -> None:
    code_tool.SANDBOX.start()


def _stop_sandbox(**_: Any) -> None:
    code_tool.SANDBOX.close()
