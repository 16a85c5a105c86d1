"""Scoring answers: the <answer> text, normalisation, exact / sub-exact match and token F1."""

from __future__ import annotations

import pytest

from toolfabric_server.evals.scoring import exact_match, extract_answer, normalize, sub_exact_match, token_f1


@pytest.mark.parametrize(("text", "expected"), [
    ("<think>hmm</think><answer>STS-93</answer>", "STS-93"),
    ("<answer>first</answer> then <answer> second </answer>", "second"),
    ("<think>x</think><answer>cut off", "cut off"),
    ("<think>I never answered</think>", ""),
    ('<tool_call>{"name": "code"}</tool_call>', ""),
    ("Eileen Collins", "Eileen Collins"),
    # The dialect's reading (issue 23): tags are the model's tokens, so "<ANSWER>" is text, not a tag
    # (scoring alone used to ignore case) …
    ("<ANSWER>x</ANSWER>", "<ANSWER>x</ANSWER>"),
    # … and any tag the step syntax has (R1V4's tag-form calls too) means a step without an answer.
    ("<code>print(1)</code>", ""),
    ("", ""),
    (None, ""),
])
def test_the_answer_is_the_text_inside_the_last_answer_tag(text: str | None, expected: str) -> None:
    assert extract_answer(text) == expected


def test_normalisation_drops_case_punctuation_articles_and_spacing() -> None:
    assert normalize("  The  Chandra X-ray   Observatory! ") == "chandra xray observatory"
    assert normalize("\u201cAn\u201d apple\u2019s") == "apples"


def test_exact_match_needs_the_whole_answer() -> None:
    assert exact_match("the Columbia.", ["Columbia"])
    assert not exact_match("Columbia orbiter", ["Columbia"])
    assert not exact_match("", ["Columbia"])


def test_sub_exact_match_finds_whole_words_either_way() -> None:
    assert sub_exact_match("It was flown by Columbia in 1999", ["Columbia"])
    assert sub_exact_match("Collins", ["Eileen Collins"])
    assert not sub_exact_match("Columbian coffee", ["Columbia"])  # not a word of the answer
    assert not sub_exact_match("", ["x"])


def test_token_f1_is_the_best_over_references() -> None:
    assert token_f1("Eileen Collins", ["Eileen Marie Collins", "Sally Ride"]) == pytest.approx(0.8)
    assert token_f1("nothing shared", ["Columbia"]) == 0.0
    assert token_f1("Columbia", ["Columbia"]) == 1.0
