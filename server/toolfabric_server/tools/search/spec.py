"""Search tools as the gateway advertises them (arguments and descriptions only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from toolfabric.v1.names import DEEP_RESEARCH, PLAN
from toolfabric_server.common.tools import ToolSpec

# Research modes only: MODE_GENERAL is thinking with images (image tools plus web_visit, see the proto).
SEARCH_MODES = frozenset({DEEP_RESEARCH, PLAN})


class TextSearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    queries: list[str] = Field(min_length=1, description="Search queries, each answered separately")


class ImageSearchArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_paths: list[str] = Field(
        min_length=1, description="Image names to look up, e.g. '<image>' or '<sub-image 1>'"
    )


TOOLS = [
    ToolSpec(
        "text_search",
        "search",
        "Web search. Returns, per query, a list of results with title, url and snippet.",
        TextSearchArgs,
        modes=SEARCH_MODES,
    ),
    ToolSpec(
        "image_search",
        "search",
        "Reverse image search: find web pages showing this image. Returns, per image, results with "
        "title, source (page URL) and link (image URL).",
        ImageSearchArgs,
        modes=SEARCH_MODES,
    ),
]
