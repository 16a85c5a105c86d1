"""`toolfabric eval import-cache vdr CACHE.sqlite BUNDLE`: a published search cache as a bundle.

Vision-DeepResearch (rllm/eval/tools.py) caches its tools in SQLite tables, one row per request:
    text_search(query_hash, query, result, created_at, …)   result: the text its search tool returned,
                                                            "Search for 'q' returned N results:" then
                                                            "1. [title](url)", an optional "Date published:"
                                                            line and the snippet, per result
    text_visit(url_hash, url, result, created_at, …)        result: JSON {"content", "description", "meta"}
    image_search(image_url_hash, image_url, result, …)      result: JSON [{"title", "image_url", "link",
                                                            "source", "thumbnail_url"}]
    image_visit(url_hash, url, result, …)
Searches and pages become the bundle's request keys, so an eval with `--bundle` reads exactly the results
the paper's runs saw. Image searches and image visits are kept under their own namespaces but are not
served: the cache names an image by the URL it was uploaded to, the fabric by its content.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolfabric_server.common.bundle import BundleWriter
from toolfabric_server.common.cache import cache_key
from toolfabric_server.evals.errors import DatasetError

if TYPE_CHECKING:
    from toolfabric_server.web.guard import Guard
    from toolfabric_server.web.settings import FetchSettings

PROVIDER = "vision-deepresearch-cache"
TABLES = ("text_search", "text_visit", "image_search", "image_visit")
_RESULT = re.compile(r"^\d+\. \[(?P<title>.*?)\]\((?P<url>[^)\s]*)\)[ \t]*\n?(?P<rest>.*?)(?=^\d+\. \[|\Z)",
                     re.DOTALL | re.MULTILINE)


def search_results(text: str) -> list[dict[str, str]]:
    """The {title, url, snippet} list of one text_search result text."""
    out = []
    for found in _RESULT.finditer(text):
        lines = [ln.strip() for ln in found.group("rest").splitlines() if ln.strip()]
        lines = [ln for ln in lines if not ln.startswith("=======")]
        out.append({"title": found.group("title").strip(), "url": found.group("url").strip(),
                    "snippet": " ".join(lines)})
    return out


def _url_key(url: str, guard: Guard) -> str:
    """web_visit's cache key for `url` (its guard's normal form, as toolfabric_server.tools.fetch.visit keys it)."""
    normal = str(guard.parse(url))
    return cache_key("web_visit", url_sha256=hashlib.sha256(normal.encode()).hexdigest())


def _entry(value: Any, created_at: Any) -> dict[str, Any]:
    return {"value": value, "provider": PROVIDER, "fetched_at": float(created_at or 0.0), "cost_units": 0.0}


def import_vdr_cache(source: Path, out: Path, fetch: FetchSettings) -> tuple[str, dict[str, int]]:
    """Write the bundle; returns its hash and how many rows of each table went in (and were skipped). `fetch`: the
    settings of the guard web_visit normalises URLs with (its cache keys)."""
    from toolfabric_server.web.guard import Guard

    guard = Guard(fetch)
    if not source.is_file():
        raise DatasetError(f"{source}: no such file")
    try:
        con = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise DatasetError(f"{source}: not a SQLite database ({exc})") from None
    if not tables & set(TABLES):
        raise DatasetError(f"{source}: none of the tables {', '.join(TABLES)}; is it Vision-DeepResearch's cache?")
    writer = BundleWriter(out, {"imported_from": "Vision-DeepResearch SQLite cache", "file": source.name})
    counts = dict.fromkeys((*TABLES, "skipped"), 0)
    if "text_search" in tables:
        for query, result, created in con.execute("SELECT query, result, created_at FROM text_search ORDER BY 1"):
            text = " ".join(str(query).split())
            if not text:
                counts["skipped"] += 1
                continue
            writer.add(cache_key("search.web", query=text), _entry(search_results(str(result)), created),
                       f"text_search {text!r}")
            counts["text_search"] += 1
    for table, column, namespace in (("text_visit", "url", "web_visit"), ("image_search", "image_url", ""),
                                     ("image_visit", "url", "")):
        if table not in tables:
            continue
        for url, result, created in con.execute(
                f"SELECT {column}, result, created_at FROM {table} ORDER BY 1"):  # noqa: S608 - fixed names
            try:
                value = json.loads(result)
            except ValueError:
                value = result
            if namespace:  # a page: web_visit's entry, an extracted page
                try:
                    key = _url_key(str(url), guard)
                except Exception:  # a URL the fabric would refuse to visit: never asked for
                    counts["skipped"] += 1
                    continue
                doc: dict[str, Any] = value if isinstance(value, dict) else {"content": str(value)}
                meta: dict[str, Any] = doc["meta"] if isinstance(doc.get("meta"), dict) else {}
                title = str(meta.get("title") or doc.get("description") or "")
                page: dict[str, Any] = {"url": str(url), "title": title, "content": str(doc.get("content") or ""),
                                        "kind": "html", "images": [], "encoding": None}
                writer.add(key, _entry(page, created), f"web_visit {url}")
            else:  # kept as published, keyed by URL
                writer.add(cache_key(f"vdr.{table}", url=str(url)), _entry(value, created), f"{table} {url}")
            counts[table] += 1
    con.close()
    return writer.finish(), counts
