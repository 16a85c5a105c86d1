"""Fetch tools as the gateway advertises them (arguments and descriptions only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from toolfabric_server.common.tools import ALL_MODES, ToolSpec


class WebVisitArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    urls: list[str] = Field(min_length=1, description="http(s) URLs of pages to read")
    goal: str | None = Field(default=None, description="What to look for on the pages")
    with_images: bool = Field(
        default=False, description="Also load the main images of each page as new images you can look at"
    )


TOOLS = [
    ToolSpec(
        "web_visit",
        "fetch",
        "Read web pages. Returns the main content of each page, the passages most relevant to the goal "
        "when one is given, with links and image URLs.",
        WebVisitArgs,
        modes=ALL_MODES,
    ),
]
