"""The vision service's Celery task: `toolfabric.vision.call`, dispatching to every vision tool.

Imported by `run_worker("vision")`. Each worker process starts its own sandbox zygote when it
starts (so the first `code` call is warm) and stops it when it exits.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init, worker_process_init, worker_process_shutdown

from services.common.worker import Handler, register_service
from services.vision import code_tool, handlers
from services.vision.sandbox.confine import hide_process_from_same_uid
from services.vision.spec import TOOLS

HANDLERS: dict[str, Handler] = {
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

call = register_service("vision", TOOLS, HANDLERS)


@worker_init.connect
def _hide_worker(**_: Any) -> None:
    hide_process_from_same_uid()  # inherited by the pool processes it forks


@worker_process_init.connect
def _start_sandbox(**_: Any) -> None:
    code_tool.SANDBOX.start()


@worker_process_shutdown.connect
def _stop_sandbox(**_: Any) -> None:
    code_tool.SANDBOX.close()
