"""Fetch benchmark: extraction quality and speed against a hand-made gold set, and cache-hit latency.

Prints, in one run:
- per extractor (the fabric's, trafilatura's default, readability-lxml): macro precision/recall/F1
  of extracted words against the gold text of 22 real documentation pages of five generators
  (bench/data/fetch_gold/manifest.json), and pages per second; markdown link targets the fabric
  keeps for the model are not counted as words;
- extraction time of a 2.5 MB documentation page (headings, paragraphs, lists, tables, code): the
  fabric's one-pass reader for very large pages against trafilatura on the same page;
- web_visit latency through the tool path (Celery entry function → guard → fetch → extract →
  passages, with the Redis hot cache), for a miss (real local HTTP server) and for a hot hit.

`--quick` keeps it under 45 s; the last line is the headline ratio.

    .venv/bin/python bench/fetch.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GOLD = ROOT / "bench" / "data" / "fetch_gold"
_WORD = re.compile(r"\w+", re.UNICODE)
# Markdown link targets `](https://…)`: kept for the model, but not words of the page.
_LINK_TARGET = re.compile(r"\]\((?:[^()\s]|\([^()\s]*\))*\)")


def words(text: str) -> Counter[str]:
    return Counter(w.lower() for w in _WORD.findall(text))


def prf(extracted: str, gold: str) -> tuple[float, float, float]:
    """Bag-of-words precision, recall, F1 (the usual measure of main-content extraction)."""
    got, want = words(_LINK_TARGET.sub("]", extracted)), words(gold)
    common = sum((got & want).values())
    if not common:
        return 0.0, 0.0, 0.0
    p, r = common / sum(got.values()), common / sum(want.values())
    return p, r, 2 * p * r / (p + r)


def fabric(html: str, url: str) -> str:
    from toolfabric_server.web.extract import extract_html

    return extract_html(html, url).content


def trafilatura_default(html: str, url: str) -> str:
    import trafilatura

    return trafilatura.extract(html, url=url) or ""


def readability(html: str, url: str) -> str:
    import lxml.html
    from readability import Document

    summary = Document(html, url=url).summary(html_partial=True)
    return lxml.html.fromstring(summary).text_content()


EXTRACTORS: dict[str, Callable[[str, str], str]] = {
    "fabric": fabric,
    "trafilatura-default": trafilatura_default,
    "readability-lxml": readability,
}


def gold_pages() -> list[tuple[str, str, str]]:
    manifest = json.loads((GOLD / "manifest.json").read_text())
    out = []
    for item in manifest:
        html = (GOLD / "pages" / item["page"]).read_bytes().decode("utf-8", "replace")
        out.append((item["page"], html, (GOLD / "pages" / item["gold"]).read_text()))
    return out


def bench_extraction(rounds: int, verbose: bool) -> dict[str, tuple[float, float, float, float]]:
    pages = gold_pages()
    results = {}
    for name, fn in EXTRACTORS.items():
        scores = []
        for page, html, gold in pages:
            s = prf(fn(html, f"http://docs.example/{page}"), gold)
            scores.append(s)
            if verbose:
                print(f"  {name:20s} {page:50s} P={s[0]:.3f} R={s[1]:.3f} F1={s[2]:.3f}")
        started = time.perf_counter()
        for _ in range(rounds):
            for page, html, _gold in pages:
                fn(html, f"http://docs.example/{page}")
        rate = rounds * len(pages) / (time.perf_counter() - started)
        p, r, f = (statistics.mean(s[i] for s in scores) for i in range(3))
        results[name] = (p, r, f, rate)
        print(f"{name:20s} precision {p:.3f}  recall {r:.3f}  F1 {f:.3f}  {rate:6.1f} pages/s  ({len(pages)} pages)")
    return results


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def bench_cache(calls: int) -> tuple[float, float]:
    """p50 ms of a web_visit miss and of a hot-cache hit, through the Celery task's entry function."""
    from toolfabric_server.common.bridge import close_all
    from toolfabric_server.devstack.redis_server import RedisServer

    tmp = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(GOLD / "pages")))
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    redis_server = RedisServer(tmp / "redis").start()
    os.environ.update({
        "TOOLFABRIC_REDIS_URL": redis_server.url,
        "TOOLFABRIC_DATA_DIR": str(tmp / "data"),
        "TOOLFABRIC_FETCH_ALLOWED_PORTS": f"[80, 443, {port}]",
        "TOOLFABRIC_FETCH_PRIVATE_HOST_ALLOWLIST": f'["127.0.0.1:{port}"]',
        "TOOLFABRIC_FETCH_PER_HOST_RATE_PER_S": "10000",
        "TOOLFABRIC_FETCH_PER_HOST_BURST": "1000",
        "TOOLFABRIC_FETCH_INDEX_FETCHED_PAGES": "false",
    })
    try:
        from pydantic import BaseModel

        from toolfabric_server.common.settings import CommonSettings
        from toolfabric_server.common.worker import Handler, run_tool
        from toolfabric_server.tools.fetch import tasks
        from toolfabric_server.tools.fetch.spec import WebVisitArgs
        from toolfabric_server.web.settings import FetchSettings

        # As a worker builds them at its start, from the environment set above.
        handlers = tasks.handlers(CommonSettings(), FetchSettings(), "")
        by_name: dict[str, tuple[type[BaseModel], Handler]] = {"web_visit": (WebVisitArgs, handlers["web_visit"])}
        names = [item["page"] for item in json.loads((GOLD / "manifest.json").read_text())]
        miss, hit = [], []
        for i in range(calls):
            url = f"http://127.0.0.1:{port}/{names[i % len(names)]}?v={i}"
            args = {"urls": [url], "goal": "how to install"}
            started = time.perf_counter()
            first = run_tool(by_name, "web_visit", args, {"question": "q"})
            miss.append(time.perf_counter() - started)
            started = time.perf_counter()
            second = run_tool(by_name, "web_visit", args, {"question": "q"})
            hit.append(time.perf_counter() - started)
            if first.usage.get("cache_miss") != 1 or second.usage.get("cache_hit_hot") != 1:
                raise RuntimeError(f"cache did not behave: {first.usage} then {second.usage}")
        return statistics.median(miss) * 1000, statistics.median(hit) * 1000
    finally:
        close_all()  # the handlers' bridge (its loop, Redis client)
        redis_server.stop()
        server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
        server.server_close()


def large_page(target_bytes: int = 2_500_000) -> str:
    section = ("<h2>Function {i}</h2><p>Function {i} returns the value {i} and raises ValueError when the "
               "argument is negative; see the table below for the defaults of each option.</p>"
               "<ul><li>option_{i}_a: enabled</li><li>option_{i}_b: disabled</li></ul>"
               "<table><tr><th>Option</th><th>Default</th></tr><tr><td>limit_{i}</td><td>{i}</td></tr></table>"
               "<pre>result = function_{i}(limit={i})</pre>")
    parts, size, i = [], 0, 0
    while size < target_bytes:
        parts.append(section.format(i=i))
        size += len(parts[-1])
        i += 1
    return (f"<html><head><title>API reference</title></head><body><nav><a href='/'>Home</a></nav><main>"
            f"<h1>API reference</h1>{''.join(parts)}<p>The last function is number {i - 1}.</p></main></body></html>")


def bench_large_page() -> dict[str, float]:
    from toolfabric_server.web import extract as extract_module

    html = large_page()
    url = "https://docs.test/api.html"
    started = time.perf_counter()
    fast = extract_module.extract_html(html, url).content
    fast_s = time.perf_counter() - started
    threshold = extract_module.LARGE_PAGE_CHARS
    extract_module.LARGE_PAGE_CHARS = 10**12  # the baseline: the main extractor on the whole page
    try:
        started = time.perf_counter()
        slow = extract_module.extract_html(html, url).content
        slow_s = time.perf_counter() - started
    finally:
        extract_module.LARGE_PAGE_CHARS = threshold
    last = html.rsplit("<p>", 1)[1].split("</p>")[0]
    return {"mb": len(html) / 1e6, "fast_s": fast_s, "slow_s": slow_s, "fast_kept": float(last in fast),
            "slow_kept": float(last in slow)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (under 45 s)")
    parser.add_argument("--verbose", action="store_true", help="scores per page")
    args = parser.parse_args()
    started = time.monotonic()
    print("== extraction against the gold set")
    results = bench_extraction(rounds=1 if args.quick else 3, verbose=args.verbose)
    print("== a very large page")
    big = bench_large_page()
    print(f"{big['mb']:.1f} MB page: one-pass reader {big['fast_s']:.2f} s, trafilatura {big['slow_s']:.2f} s "
          f"({big['slow_s'] / big['fast_s']:.1f}x); last sentence kept: {bool(big['fast_kept'])} / "
          f"{bool(big['slow_kept'])}")
    print("== web_visit through the tool path (local server, Redis hot cache)")
    miss_ms, hit_ms = bench_cache(calls=10 if args.quick else 40)
    print(f"miss (fetch + extract + passages) p50 {miss_ms:.1f} ms; hot-cache hit p50 {hit_ms:.2f} ms; "
          f"hit is {miss_ms / hit_ms:.1f}x faster")
    print(f"(ran {time.monotonic() - started:.1f}s)")
    fab, traf = results["fabric"][2], results["trafilatura-default"][2]
    print(f"headline: fabric extractor F1 {fab:.3f} vs trafilatura default {traf:.3f} = {fab / traf:.2f}x; "
          f"cache hit {miss_ms / hit_ms:.1f}x faster than a fetch; 2.5 MB page read "
          f"{big['slow_s'] / big['fast_s']:.1f}x faster than with trafilatura")


if __name__ == "__main__":
    main()
