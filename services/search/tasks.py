"""Registers the search tools as the Celery task `toolfabric.search.call`."""

from __future__ import annotations

from celery import Celery, Task

from services.common.settings import CommonSettings
from services.common.tools import ToolContext, ToolResult
from services.common.worker import Handler, register_service
from services.search import runtime
from services.search.settings import SearchSettings
from services.search.spec import TOOLS, ImageSearchArgs, TextSearchArgs


def handlers(common: CommonSettings, config: SearchSettings) -> dict[str, Handler]:
    service = runtime.bridge(common, config)

    def text_search(args: TextSearchArgs, ctx: ToolContext) -> ToolResult:
        return service.run(lambda search: search.text_search(args, ctx))

    def image_search(args: ImageSearchArgs, ctx: ToolContext) -> ToolResult:
        return service.run(lambda search: search.image_search(args, ctx))

    return {"text_search": text_search, "image_search": image_search}


def register(app: Celery, common: CommonSettings) -> Task:
    """`toolfabric.search.call` on the worker's app; the search settings are read here, at the worker's start."""
    return register_service(app, "search", TOOLS, handlers(common, SearchSettings()), common)
