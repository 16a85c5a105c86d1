"""Search and reading quality on a real documentation site, against an independent BM25 (bm25s).

    .venv/bin/python bench/quality.py [--site DIR] [--questions FILE]

Site: the Sphinx 5.3.0 documentation that Debian's `sphinx-doc` package installs under
/usr/share/doc/sphinx-doc/html (137 HTML pages, their `_sources/` reST twins, images).
Questions: bench/data/sphinx_questions.json, 55 questions, each with the page(s) holding the
answer and a short answer string checked by hand against those pages.

The fabric indexes the folder the way the README says (`toolfabric index DIR --base-url URL`,
default excludes). bm25s (Okapi BM25, English stopwords and Porter-English stemming) ranks the
same pages, read with trafilatura as plain text. Per system: recall@1, recall@5, MRR@10, and the
answer-kept rate: the answer string is in the observation web_visit would return for the system's
top result (extraction + passage selection for the question). Indexing speed: pages per second from
files on disk to a searchable index, the fabric's (parsing, near-duplicate check, images, SQLite FTS5)
beside bm25s's (trafilatura reading, tokenising, its index) over the same pages. Rows for ablations of the fabric
(no default excludes; plain BM25 without field weights or boosts) show what each part adds.
Also reported: how often passage selection keeps the answer when the page's full text has it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SITE = Path("/usr/share/doc/sphinx-doc/html")
QUESTIONS = ROOT / "bench" / "data" / "sphinx_questions.json"
BASE = "http://docs.test/"
K = 10


@dataclass
class Scores:
    name: str
    r1: float = 0.0
    r5: float = 0.0
    mrr: float = 0.0
    kept: float = 0.0
    p50_ms: float = 0.0

    def row(self) -> str:
        return (f"{self.name:<34} {self.r1:>9.3f} {self.r5:>9.3f} {self.mrr:>7.3f} {self.kept:>12.3f} "
                f"{self.p50_ms:>9.2f}")


def _norm(text: str) -> str:
    """Case, spacing and inline-code backticks do not matter when looking for an answer in a text."""
    return " ".join(text.replace("`", "").lower().split())


class Reader:
    """What web_visit returns for a page: extraction, then passages chosen for the question."""

    def __init__(self, site: Path) -> None:
        from toolfabric_server.web import settings as web_settings

        self.site = site
        self.budget = web_settings.fetch().max_output_tokens
        self._pages: dict[str, str] = {}

    def full(self, url: str) -> str:
        from toolfabric_server.web.extract import extract

        if url not in self._pages:
            path = self.site / url.removeprefix(BASE)
            self._pages[url] = extract(url, "text/html", path.read_bytes(), None).content if path.exists() else ""
        return self._pages[url]

    def observation(self, url: str, question: str) -> str:
        from toolfabric_server.web.passages import select

        return select(self.full(url), question, self.budget).content


def evaluate(name: str, questions: list[dict], search, reader: Reader) -> Scores:  # type: ignore[no-untyped-def]
    import statistics

    s = Scores(name)
    times = []
    for q in questions:
        gold = {BASE + g for g in q["gold"]}
        t = time.perf_counter()
        urls = search(q["q"])[:K]
        times.append(time.perf_counter() - t)
        rank = next((i for i, u in enumerate(urls, 1) if u in gold), None)
        s.r1 += rank == 1
        s.r5 += rank is not None and rank <= 5
        s.mrr += 1 / rank if rank else 0.0
        if urls:
            s.kept += _norm(q["answer"]) in _norm(reader.observation(urls[0], q["q"]))
    n = len(questions)
    s.r1, s.r5, s.mrr, s.kept = s.r1 / n, s.r5 / n, s.mrr / n, s.kept / n
    s.p50_ms = statistics.median(times) * 1000
    return s


def fabric_index(site: Path, workdir: Path, name: str, exclude: list[str] | None = None):  # type: ignore[no-untyped-def]
    from toolfabric_server.index.indexer import IndexingSettings, index_paths
    from toolfabric_server.index.selection import Selection
    from toolfabric_server.index.sqlite import SQLiteIndex

    index = SQLiteIndex(workdir / f"{name}.sqlite3")
    selection = None if exclude is None else Selection(exclude=exclude)
    started = time.perf_counter()
    report = index_paths([str(site)], base_url=BASE, progress=False, index=index, selection=selection,
                         settings=IndexingSettings.read())
    seconds = time.perf_counter() - started
    pages = report.pages + len(report.duplicates)  # every page read, parsed and checked
    print(f"  fabric ({name}): {report.summary()}; {pages / seconds:.1f} pages/s")
    return index, pages / seconds


def bm25s_search(urls: list[str], reader: Reader):  # type: ignore[no-untyped-def]
    """bm25s over the pages (and its indexing speed in pages/s)."""
    import bm25s
    import Stemmer
    import trafilatura

    started = time.perf_counter()
    stemmer = Stemmer.Stemmer("english")
    texts = []
    for url in urls:
        html = (reader.site / url.removeprefix(BASE)).read_text("utf-8", "replace")
        meta = trafilatura.extract_metadata(html)
        title = meta.title if meta is not None and meta.title else ""
        texts.append(title + "\n" + (trafilatura.extract(html, include_tables=True, favor_recall=True) or ""))
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False),
                    show_progress=False)
    rate = len(urls) / (time.perf_counter() - started)
    print(f"  bm25s: {len(urls)} pages; {rate:.1f} pages/s")

    def search(question: str) -> list[str]:
        tokens = bm25s.tokenize([question], stopwords="en", stemmer=stemmer, show_progress=False)
        docs, _ = retriever.retrieve(tokens, k=min(K, len(urls)), show_progress=False)
        return [urls[int(i)] for i in docs[0]]

    return search, rate


def passage_keep_rate(questions: list[dict], reader: Reader) -> tuple[int, int]:
    """(kept, total) over gold pages whose full extracted text holds the answer."""
    kept = total = 0
    for q in questions:
        for g in q["gold"]:
            full = reader.full(BASE + g)
            if _norm(q["answer"]) in _norm(full):
                total += 1
                kept += _norm(q["answer"]) in _norm(reader.observation(BASE + g, q["q"]))
    return kept, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--site", type=Path, default=SITE)
    parser.add_argument("--questions", type=Path, default=QUESTIONS)
    args = parser.parse_args()
    if not args.site.is_dir():
        print(f"{args.site} is missing: apt-get install sphinx-doc", file=sys.stderr)
        return 2
    data = json.loads(args.questions.read_text())
    questions = data["questions"]
    print(f"site: {data['site']}; {len(questions)} questions")
    reader = Reader(args.site)
    from toolfabric_server.index import ranking as engine

    with tempfile.TemporaryDirectory(prefix="tf-quality-") as tmp:
        work = Path(tmp)
        fabric, fabric_rate = fabric_index(args.site, work, "default")
        everything, _ = fabric_index(args.site, work, "no-excludes", exclude=[])
        urls = [u for (u,) in fabric._cons.get().execute("SELECT url FROM pages ORDER BY url")]

        def ranked(index):  # type: ignore[no-untyped-def]
            return lambda q: [r.url for r in index.search_text(q, K)]

        rows = [evaluate("fabric", questions, ranked(fabric), reader)]
        tuned = (engine.WEIGHTS, engine.PHRASE_BOOST, engine.NEAR_BOOST)
        engine.WEIGHTS, engine.PHRASE_BOOST, engine.NEAR_BOOST = (1.0, 1.0, 1.0), 0.0, 0.0
        rows.append(evaluate("fabric, plain BM25 (equal fields)", questions, ranked(fabric), reader))
        engine.WEIGHTS, engine.PHRASE_BOOST, engine.NEAR_BOOST = tuned
        rows.append(evaluate("fabric, no default excludes", questions, ranked(everything), reader))
        bm25s, bm25s_rate = bm25s_search(urls, reader)
        rows.append(evaluate("bm25s (trafilatura text)", questions, bm25s, reader))
        fabric.close()
        everything.close()
    print(f"\n{'system':<34} {'recall@1':>9} {'recall@5':>9} {'MRR':>7} {'answer kept':>12} {'p50 ms':>9}")
    for r in rows:
        print(r.row())
    kept, total = passage_keep_rate(questions, reader)
    print(f"\npassage selection keeps the answer on {kept}/{total} gold pages whose full text has it "
          f"({kept / max(total, 1):.3f})")
    fab, ref = rows[0], rows[-1]
    print(f"fabric vs bm25s: recall@1 {fab.r1:.3f} vs {ref.r1:.3f} ({fab.r1 / max(ref.r1, 1e-9):.2f}x), "
          f"MRR {fab.mrr:.3f} vs {ref.mrr:.3f} ({fab.mrr / max(ref.mrr, 1e-9):.2f}x)")
    print(f"indexing: fabric {fabric_rate:.1f} pages/s vs bm25s {bm25s_rate:.1f} pages/s "
          f"({fabric_rate / bm25s_rate:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
