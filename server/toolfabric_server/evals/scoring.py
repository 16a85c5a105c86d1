"""Scoring an answer against the references: the text inside <answer>, exact and sub-exact match after
normalisation, and token F1 (MMSearch's official metric)."""

from __future__ import annotations

import re
import string
from collections import Counter

from toolfabric_server.model.dialects import DEFAULT_DIALECT, Dialect

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation + "\u2018\u2019\u201c\u201d")  # and typographic quotes


def extract_answer(text: str | None, dialect: Dialect = DEFAULT_DIALECT) -> str:
    """The dialect's answer in `text` (the last <answer>; an unclosed one runs to the end); empty if there is none.

    The fabric's answer event already holds the answer channel only: a bare answer without the dialect's tags
    counts as itself; a step's text with tags but no answer has none."""
    if not text:
        return ""
    found = dialect.answer_in(text)
    if found:
        return found.text
    return "" if dialect.has_markup(text) else text.strip()


def normalize(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD-style)."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, answers: list[str]) -> bool:
    pred = normalize(prediction)
    return bool(pred) and any(pred == normalize(a) for a in answers)


def sub_exact_match(prediction: str, answers: list[str]) -> bool:
    """A reference inside the prediction or the prediction inside a reference (both normalised, non-empty)."""
    pred = normalize(prediction)
    if not pred:
        return False
    for answer in answers:
        ref = normalize(answer)
        if ref and (f" {ref} " in f" {pred} " or f" {pred} " in f" {ref} "):
            return True
    return False


def token_f1(prediction: str, answers: list[str]) -> float:
    """The best token-level F1 against any reference."""
    pred = normalize(prediction).split()
    best = 0.0
    for answer in answers:
        ref = normalize(answer).split()
        common = sum((Counter(pred) & Counter(ref)).values())
        if not pred or not ref or not common:
            continue
        precision, recall = common / len(pred), common / len(ref)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best
