"""Registers the search tools as the Celery task `toolfabric.search.call`."""

from __future__ import annotations

from celery import Celery, Task

from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.common.tools import ToolContext, ToolResult
from toolfabric_server.common.worker import Handler, register_service
from toolfabric_server.tools.search import runtime
from toolfabric_server.tools.search.settings import SearchSettings
from toolfabric_server.tools.search.spec import TOOLS, ImageSearchArgs, TextSearchArgs


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
