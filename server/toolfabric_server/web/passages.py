"""What of a page goes back to the model: all of it, or the passages most relevant to the goal.

A page that fits the token budget is returned whole (`method="full"`). A longer page is split
into passages (paragraph groups carrying their section heading) ranked by BM25 against the
goal plus the trajectory's question; the best ones that fit the budget are returned in page
order (`method="passages"`). With no goal and no question the head of the page is returned,
marked truncated.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

CHARS_PER_TOKEN = 4
PASSAGE_CHARS = 700
GAP = "\n\n[…]\n\n"

_TOKEN = re.compile(r"\w+", re.UNICODE)
# Words that carry no information for ranking (English; other languages rank on all words).
_STOP = frozenset(
    "a an and are as at be but by for from has have how i in is it its of on or that the this to was "
    "were what when where which who why will with you your does did do about into than then there".split()
)


def tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class Selection:
    content: str
    method: str  # full | passages
    truncated: bool


def split_passages(text: str, size: int = PASSAGE_CHARS) -> list[str]:
    """Group paragraphs into passages of about `size` characters; each starts with its heading."""
    passages: list[str] = []
    heading = ""
    current: list[str] = []

    def flush() -> None:
        if current:
            body = "\n\n".join(current)
            passages.append(f"{heading}\n\n{body}" if heading and not body.startswith(heading) else body)
            current.clear()

    for block in (b.strip() for b in text.split("\n\n")):
        if not block:
            continue
        if block.startswith("#") or block.startswith("[page "):
            flush()
            heading = block.splitlines()[0][:200]
            rest = block[len(heading) :].strip()
            current.append(heading if not rest else block)
            continue
        while len(block) > size * 2:  # a huge paragraph is cut at a sentence end near `size`
            cut = block.rfind(". ", 0, size * 2)
            cut = cut + 1 if cut > size // 2 else size * 2
            current.append(block[:cut].strip())
            flush()
            block = block[cut:].strip()
        if current and sum(len(c) for c in current) + len(block) > size:
            flush()
        current.append(block)
    flush()
    return passages


def bm25_scores(passages: list[str], query: str, k1: float = 1.2, b: float = 0.75) -> list[float]:
    docs = [tokens(p) for p in passages]
    terms = set(tokens(query))
    if not docs or not terms:
        return [0.0] * len(passages)
    avg = sum(len(d) for d in docs) / len(docs) or 1.0
    df = Counter(t for d in docs for t in set(d) if t in terms)
    n = len(docs)
    scores = []
    for d in docs:
        tf = Counter(t for t in d if t in terms)
        score = 0.0
        for term, f in tf.items():
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            score += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(d) / avg))
        scores.append(score)
    return scores


def select(text: str, query: str, budget_tokens: int) -> Selection:
    """The page within `budget_tokens`: whole, best passages for `query`, or its head."""
    budget = budget_tokens * CHARS_PER_TOKEN
    if len(text) <= budget:
        return Selection(text, "full", False)
    passages = split_passages(text)
    if not tokens(query):
        return Selection(_head(passages, budget), "full", True)
    scores = bm25_scores(passages, query)
    if not any(scores):
        return Selection(_head(passages, budget), "full", True)
    chosen: list[int] = []
    used = 0
    for i in sorted(range(len(passages)), key=lambda i: (-scores[i], i)):
        if scores[i] <= 0:
            break
        cost = len(passages[i]) + len(GAP)
        if used + cost > budget:
            continue
        chosen.append(i)
        used += cost
    if not chosen:  # the best passage alone is over budget: return its beginning
        best = max(range(len(passages)), key=lambda i: scores[i])
        return Selection(passages[best][:budget].rstrip() + " …", "passages", True)
    chosen.sort()
    return Selection(GAP.join(passages[i] for i in chosen), "passages", True)


def _head(passages: list[str], budget: int) -> str:
    out: list[str] = []
    used = 0
    for p in passages:
        if used + len(p) + 2 > budget:
            if not out:
                out.append(p[:budget].rstrip() + " …")
            break
        out.append(p)
        used += len(p) + 2
    return "\n\n".join(out)
