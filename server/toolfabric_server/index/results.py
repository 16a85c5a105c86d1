"""Result records and the observation text the model reads (a fixed JSON shape).

text_search  → [{"query": q, "results": [{"title", "url", "snippet"}, …]} | {"query": q, "error": msg}, …]
image_search → [{"image": name, "results": [{"title", "source", "link"}, …]} | {"image": name, "error": msg}]

`source` is the page showing the image, `link` the image itself (the R1V4 convention).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class WebResult:
    title: str
    url: str
    snippet: str


@dataclass(frozen=True)
class ImageResult:
    title: str
    source: str  # page URL
    link: str  # image URL


def web_results_from(items: list[dict[str, Any]]) -> list[WebResult]:
    return [WebResult(str(i["title"]), str(i["url"]), str(i["snippet"])) for i in items]


def image_results_from(items: list[dict[str, Any]]) -> list[ImageResult]:
    return [ImageResult(str(i["title"]), str(i["source"]), str(i["link"])) for i in items]


def as_dicts(results: list[WebResult] | list[ImageResult]) -> list[dict[str, str]]:
    return [asdict(r) for r in results]


def observation_text(entries: list[dict[str, Any]]) -> str:
    return json.dumps(entries, ensure_ascii=False)
