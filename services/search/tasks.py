"""Registers the search tools as the Celery task `toolfabric.search.call`."""

from __future__ import annotations

from celery import Celery, Task

from services.common.tools import ToolContext, ToolResult
from services.common.worker import Handler, register_service
from services.search import runtime
from services.search.spec import TOOLS, ImageSearchArgs, TextSearchArgs


def text_search(args: TextSearchArgs, ctx: ToolContext) -> ToolResult:
    return runtime.run(lambda service: service.text_search(args, ctx))


def image_search(args: ImageSearchArgs, ctx: ToolContext) -> ToolResult:
    return runtime.run(lambda service: service.image_search(args, ctx))


HANDLERS: dict[str, Handler] = {"text_search": text_search, "image_search": image_search}

def register(app: Celery) -> Task:
    """`toolfabric.search.call` on the worker's app."""
    return register_service(app, "search", TOOLS, HANDLERS)
