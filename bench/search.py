"""Search service benchmark: cache-hit latency per tier through the whole tool path, single-flight
savings, local-index query latency on real documentation pages (every HTML page Debian's doc
packages installed under /usr/share/doc, up to 1,000) and on page-sized synthetic documents
(~19 KB each) at 10k and 100k, the repeated-pass cache hit rate, all with snippets.

    .venv/bin/python bench/search.py [--quick]

Baselines measured in the same run: the previous query shape (FTS5's snippet() computed in the
ranking query) on the same index, and a cache pass after pages were re-read (what web_visit does).

Starts its own redis-server and a local Serper-speaking HTTP server on loopback, uses a temp
data directory, and stops everything at the end. The headline is on the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(fn: Callable[[], Any], n: int, before: Callable[[], Any] | None = None) -> list[float]:
    out = []
    for _ in range(n):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


@contextmanager
def slow_serper(delay_s: float) -> Iterator[tuple[str, list[int]]]:
    """A loopback server answering Serper's /search format after `delay_s` (a provider's latency)."""
    calls = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            with lock:
                calls[0] += 1
            time.sleep(delay_s)
            payload = json.dumps({"searchParameters": {"q": body["q"]}, "credits": 1, "organic": [
                {"title": f"r{i}", "link": f"https://example.org/{i}", "snippet": "s"} for i in range(5)]}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", calls
    finally:
        server.shutdown()
        server.server_close()


def bench_tool_path(n_hot: int, n_cold: int, demo: Path) -> dict[str, float]:
    """p50 of text_search/image_search as a worker runs them (the Celery task body), per cache tier."""
    import redis

    from tests.support.tasks import task_of
    from toolfabric_server.common import settings
    from toolfabric_server.common.blobs import BlobStore
    from toolfabric_server.index import open_index
    from toolfabric_server.index.indexer import IndexingSettings, index_paths

    task: Any = task_of("search")
    indexing = IndexingSettings.read()
    with contextlib.closing(open_index(indexing.common)) as index:
        index_paths([str(demo / "site")], base_url="http://demo.test/", progress=False, index=index, settings=indexing)
    client = redis.Redis.from_url(settings.common().redis_url)
    ctx = {"images": {"<image 1>": BlobStore(client, 3600).put((demo / "question.jpg").read_bytes())}}
    args = {"queries": ["Eileen Collins first Space Shuttle mission commanded"]}

    def text() -> None:
        task.run("text_search", args, ctx)

    def drop_hot() -> None:
        for key in client.scan_iter("toolfabric:cache:v:*"):
            client.delete(key)

    text()  # warm: loop thread, connections, first (miss) call
    hot = timed(text, n_hot)
    persistent = timed(text, n_cold, before=drop_hot)
    counter = iter(range(10**9))
    miss = timed(lambda: task.run("text_search", {"queries": [f"Collins mission {next(counter)}"]}, ctx), n_cold)
    image = {"image_paths": ["<image 1>"]}
    task.run("image_search", image, ctx)
    image_hot = timed(lambda: task.run("image_search", image, ctx), n_hot)
    image_persistent = timed(lambda: task.run("image_search", image, ctx), max(10, n_cold // 4), before=drop_hot)
    client.close()
    return {"text_hot": p50_ms(hot), "text_persistent": p50_ms(persistent), "text_miss_local": p50_ms(miss),
            "image_hot": p50_ms(image_hot), "image_persistent": p50_ms(image_persistent)}


def bench_fabric_path(n: int, workdir: Path) -> dict[str, float]:
    """p50 of a hot text_search hit through the whole tool path — the gateway's dispatcher, Celery, a
    search worker process, back to the loop — next to a no-op call on the same path (same run)."""
    import asyncio
    import sys

    import redis.asyncio as aredis

    from toolfabric_server.common import settings
    from toolfabric_server.common.celery_app import make_celery
    from toolfabric_server.common.tools import ToolContext
    from toolfabric_server.devstack.processes import Child
    from toolfabric_server.engine.ports import ToolInvocation
    from toolfabric_server.gateway.celery_executor import CeleryToolExecutor

    worker = Child("bench-search-worker", [sys.executable, "-m", "toolfabric.cli.main", "worker", "search"], workdir,
                   env=dict(os.environ))

    async def measure() -> dict[str, float]:
        client = aredis.Redis.from_url(settings.common().redis_url)
        executor = CeleryToolExecutor(make_celery(settings.common(), settings.worker()), client)
        await executor.start()
        ctx = ToolContext(trajectory_id="bench", call_id="c", question="q")
        search = ToolInvocation("search", "text_search", {"queries": ["Eileen Collins first Space Shuttle mission"]},
                                ctx, 60)
        noop = ToolInvocation("search", "ping", {}, ctx, 60)
        for _ in range(20):  # the worker starts; the first search fills the cache
            await executor.call(noop)
            await executor.call(search)
        hits: list[float] = []
        noops: list[float] = []
        for _ in range(n // 25):
            for invocation, out in ((search, hits), (noop, noops)):
                for _ in range(25):
                    t0 = time.perf_counter()
                    result = await executor.call(invocation)
                    out.append(time.perf_counter() - t0)
                    if not result.ok:
                        raise RuntimeError(result.text)
        await executor.close()
        await client.aclose()
        return {"hit": p50_ms(hits), "noop": p50_ms(noops)}

    try:
        return asyncio.run(measure())
    finally:
        worker.stop()


def bench_single_flight(n: int, delay_s: float) -> dict[str, int]:
    """Provider calls for n concurrent identical requests, with the cache and without it."""
    from toolfabric_server.common import settings
    from toolfabric_server.common.tools import ToolContext
    from toolfabric_server.tools.search.runtime import build_service
    from toolfabric_server.tools.search.settings import SearchSettings
    from toolfabric_server.tools.search.spec import TextSearchArgs

    out = {}
    with slow_serper(delay_s) as (url, calls):
        for mode in ("live", "off"):
            common = settings.common().model_copy(update={"cache_mode": mode})
            config = SearchSettings().model_copy(update={
                "providers": ["serper"], "serper_base_url": url, "serper_api_key": SecretStr("bench"),
                "provider_rate_per_s": 10_000.0, "provider_burst": 10_000})

            async def burst(common: Any, config: Any, query: str) -> None:
                service, close = await build_service(common, config)
                args = TextSearchArgs(queries=[query])
                await asyncio.gather(*(service.text_search(args, ToolContext()) for _ in range(n)))
                await close()

            before = calls[0]
            asyncio.run(burst(common, config, f"single flight {mode}"))
            out[mode] = calls[0] - before
    return out


def synthetic_pages(rng: np.random.Generator, vocab: list[str], p: np.ndarray, start: int, n: int,
                    words: int) -> list[Any]:
    from toolfabric_server.index.documents import Page

    ids = rng.choice(len(vocab), size=(n, words), p=p)
    return [Page(f"https://bench.test/{start + i}", " ".join(vocab[j] for j in row[:6]),
                 " ".join(vocab[j] for j in row), "text") for i, row in enumerate(ids)]


def real_pages(limit: int) -> list[Any]:
    """HTML pages of the documentation packages installed on this machine (each parsed as the indexer does)."""
    from toolfabric_server.index.documents import parse_html
    from toolfabric_server.index.selection import Selection
    from toolfabric_server.index.settings import IndexSettings

    selection = Selection(exclude=list(IndexSettings().index_exclude))
    files = sorted(p for p in Path("/usr/share/doc").rglob("*.html") if p.is_file()
                   if not selection.excluded_by(p.relative_to("/usr/share/doc").as_posix()))
    step = max(1, len(files) // limit)  # spread over every package when capped
    return [parse_html(f"https://docs.test/{f.relative_to('/usr/share/doc').as_posix()}", f.read_bytes())
            for f in files[::step][:limit]]


OLD_QUERY = ("SELECT p.url, p.title, snippet(pages_fts, 2, '', '', '…', 40), p.body FROM pages_fts "
             "JOIN pages p ON p.id = pages_fts.rowid WHERE pages_fts MATCH ? ORDER BY bm25(pages_fts, 5.0, 1.0, 1.0) "
             "LIMIT ?")


def bench_real_pages(limit: int, n_sampled: int, workdir: Path, redis_url: str) -> dict[str, Any]:
    """Query p50 with snippets on real pages, against the old query shape, and the cache's repeated pass."""
    from tests.search.conftest import settings_for
    from toolfabric_server.common.tools import ToolContext
    from toolfabric_server.index import terms
    from toolfabric_server.index.documents import Page
    from toolfabric_server.index.sqlite import SQLiteIndex
    from toolfabric_server.tools.search.runtime import build_service
    from toolfabric_server.tools.search.spec import TextSearchArgs

    pages = real_pages(limit)
    index = SQLiteIndex(workdir / "real-pages.sqlite3")
    index.upsert_pages(pages)
    questions = json.loads((ROOT / "bench" / "data" / "sphinx_questions.json").read_text())["questions"]
    rng = np.random.default_rng(3)
    # The hand-written questions plus one query per sampled page: three words of one of its headings.
    queries = [q["q"] for q in questions]
    for page in rng.choice(len(pages), size=min(len(pages), n_sampled), replace=False):
        words = [w for w in pages[int(page)].headings.replace("|", " ").split() if len(w) > 3][:3]
        queries.append(" ".join(words) or pages[int(page)].title)
    for q in queries[:20]:
        index.search_text(q, 5)  # warm the page cache
    with_snippets = timed_each(lambda q: index.search_text(q, 5), queries)
    real_snippet = terms.snippet
    terms.snippet = lambda text, query, limit=terms.SNIPPET_CHARS: ""  # type: ignore[assignment]
    try:
        without = timed_each(lambda q: index.search_text(q, 5), queries)
    finally:
        terms.snippet = real_snippet
    from toolfabric_server.index.sqlite import fts_query

    con = index._cons.get()
    old = timed_each(lambda q: con.execute(OLD_QUERY, (fts_query(q) or '""', 5)).fetchall(), queries)
    out: dict[str, Any] = {"pages": len(pages), "kb_per_page": sum(len(p.text) for p in pages) / len(pages) / 1024,
                           "queries": len(queries), "p50": p50_ms(with_snippets), "p50_no_snippet": p50_ms(without),
                           "p50_old": p50_ms(old), "max": max(with_snippets) * 1000}

    async def passes() -> dict[str, float]:
        common, config = settings_for(redis_url, workdir / "cache-data", providers=["local"])
        service, close = await build_service(common, config, index=index)
        try:
            async def hit_rate() -> float:
                hits = 0
                for q in queries:
                    r = await service.text_search(TextSearchArgs(queries=[q]), ToolContext())
                    hits += r.usage["cache_hit_hot"] + r.usage["cache_hit_persistent"] > 0
                return hits / len(queries)

            first = await hit_rate()
            for page in pages[:200]:  # web_visit re-reads pages it saw before: same bytes, same text
                index.upsert_pages([page])
            reread = await hit_rate()
            page = pages[int(rng.integers(len(pages)))]
            index.upsert_pages([Page(page.url, page.title, page.text + " A closing sentence was added.", page.kind,
                                     headings=page.headings)])
            after_change = await hit_rate()
            return {"first": first, "reread": reread, "after_change": after_change}
        finally:
            await close()

    out.update(asyncio.run(passes()))
    index.close()
    return out


def timed_each(fn: Callable[[str], Any], queries: list[str]) -> list[float]:
    out = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        out.append(time.perf_counter() - t)
    return out


def bench_local_index(sizes: list[int], words: int, n_queries: int, workdir: Path) -> dict[str, Any]:
    """BM25 query p50 on a Zipf-distributed synthetic corpus as it grows."""
    from toolfabric_server.index.sqlite import SQLiteIndex

    rng = np.random.default_rng(7)
    vocab_size = 50_000
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = list(dict.fromkeys("".join(rng.choice(letters, size=int(rng.integers(4, 10))))
                               for _ in range(vocab_size)))
    p = 1.0 / np.arange(1, len(vocab) + 1) ** 1.05
    p /= p.sum()
    index = SQLiteIndex(workdir / "bench-index.sqlite3")
    # Content-word queries (ranks 50..20k: stop-word-like top ranks are what query parsing drops),
    # and queries that also carry one frequent word (rank 5..50), the expensive case.
    content = [" ".join(vocab[j] for j in rng.integers(50, 20_000, size=3)) for _ in range(n_queries)]
    frequent = [f"{vocab[int(rng.integers(5, 50))]} {q}" for q in content]
    out: dict[str, Any] = {}
    have = 0
    for size in sizes:
        started = time.perf_counter()
        while have < size:
            step = min(5000, size - have)
            index.upsert_pages(synthetic_pages(rng, vocab, p, have, step, words))
            have += step
        out[f"insert_s_{size}"] = time.perf_counter() - started
        for name, queries in (("content", content), ("frequent", frequent)):
            samples = []
            for q in queries:
                t = time.perf_counter()
                index.search_text(q, 5)
                samples.append(time.perf_counter() - t)
            out[f"{name}_p50_{size}"] = p50_ms(samples)
    index.close()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and documents (< 60 s)")
    parser.add_argument("--sizes", default="10000,100000",
                        help="page-sized synthetic corpus sizes, comma-separated (full mode; 100k takes a while)")
    args = parser.parse_args()
    started = time.perf_counter()
    # Page-sized synthetic documents: 2,500 words is about 19 KB of text, a typical documentation page.
    n_hot, n_cold, words, n_queries = (200, 40, 2500, 40) if args.quick else (2000, 300, 2500, 300)

    from tests.conftest import clear_settings_cache
    from toolfabric_server.devstack.redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp, RedisServer(Path(tmp) / "redis") as redis_srv:
        os.environ.update({"TOOLFABRIC_REDIS_URL": redis_srv.url, "TOOLFABRIC_DATA_DIR": str(Path(tmp) / "data"),
                           "TOOLFABRIC_CACHE_MODE": "live", "TOOLFABRIC_ELASTICSEARCH_URL": ""})
        clear_settings_cache()
        from toolfabric_server.common.bridge import close_all

        try:
            tool = bench_tool_path(n_hot, n_cold, ROOT / "toolfabric" / "demo")
        finally:
            close_all()
        print("tool path p50, text_search via the Celery task body (local provider, demo corpus):")
        print(f"  hot tier (Redis) hit        {tool['text_hot']:7.2f} ms   (target <= 2 ms)")
        print(f"  persistent tier hit         {tool['text_persistent']:7.2f} ms")
        print(f"  miss -> local BM25 query    {tool['text_miss_local']:7.2f} ms")
        print(f"  image_search hot / persist. {tool['image_hot']:7.2f} / {tool['image_persistent']:.2f} ms")

        fabric = bench_fabric_path(n_hot, Path(tmp))
        print("whole tool path p50 (gateway dispatcher -> Celery -> search worker -> loop):")
        print(f"  text_search hot hit         {fabric['hit']:7.2f} ms   no-op call {fabric['noop']:.2f} ms   "
              f"cache hit costs {fabric['hit'] - fabric['noop']:+.2f} ms over the no-op")

        n = 50
        flight = bench_single_flight(n, delay_s=0.2)
        print(f"single flight, {n} concurrent identical text_search requests, provider latency 200 ms:")
        print(f"  provider calls with cache   {flight['live']:4d}   without (cache_mode=off) {flight['off']:4d}")

        real = bench_real_pages(*((120, 45) if args.quick else (1000, 245)), Path(tmp), redis_srv.url)
        print(f"local index on {real['pages']} real documentation pages ({real['kb_per_page']:.1f} KB of text each "
              f"on average), {real['queries']} queries, top 5:")
        print(f"  query p50 with snippets     {real['p50']:7.2f} ms   (target <= 5 ms; max {real['max']:.1f} ms)")
        print(f"  without snippets            {real['p50_no_snippet']:7.2f} ms   (snippets cost "
              f"{real['p50'] - real['p50_no_snippet']:+.2f} ms)")
        print(f"  old query shape (FTS5 snippet() in the ranking query) {real['p50_old']:7.2f} ms "
              f"({real['p50_old'] / real['p50']:.1f}x slower)")
        print(f"  cache hit rate, first pass {real['first']:.2f}; repeated after 200 unchanged pages were re-read "
              f"{real['reread']:.2f} (a global generation bump: 0.00); after one page gained a sentence "
              f"{real['after_change']:.2f}")

        sizes = [1_000] if args.quick else [int(x) for x in args.sizes.split(",")]
        local = bench_local_index(sizes, words, n_queries, Path(tmp))
        print(f"local index (SQLite FTS5 BM25, Zipf corpus, {words} words/page, top 5 with snippets):")
        for size in sizes:
            print(f"  {size:>7} docs: content query p50 {local[f'content_p50_{size}']:6.2f} ms, with a frequent "
                  f"word {local[f'frequent_p50_{size}']:6.2f} ms (built in {local[f'insert_s_{size}']:.1f} s)")
    largest = sizes[-1]
    print(f"total {time.perf_counter() - started:.1f} s")
    print(f"headline: single flight {flight['live']}/{n} provider calls per request ({flight['live'] / n:.2f}, "
          f"vs {flight['off']}/{n} uncached); hot hit p50 {tool['text_hot']:.2f} ms in the worker, "
          f"{fabric['hit']:.2f} ms through the whole path (no-op {fabric['noop']:.2f} ms); "
          f"real pages p50 {real['p50']:.2f} ms ({real['p50_old'] / real['p50']:.1f}x faster than the old query), "
          f"repeated-pass hit rate {real['reread']:.2f}; {largest} page-sized docs p50 "
          f"{local[f'content_p50_{largest}']:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
