"""A streaming model's responses per window (model/response_window.py): the first at once, then one per window."""

from __future__ import annotations

import pytest

from toolfabric_server.model.response_window import ResponseWindow, window_s


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_goes_at_once_then_one_per_window() -> None:
    clock = Clock()
    window = ResponseWindow(0.02, clock)
    said = []
    for _ in range(10):  # a token every 6 ms for 54 ms
        said.append(window.due())
        clock.now += 0.006
    # sent at 0, 24 and 48 ms; the tokens between are held for the next response
    assert said == [True, False, False, False, True, False, False, False, True, False]


def test_tokens_further_apart_than_the_window_each_go_at_once() -> None:
    clock = Clock()
    window = ResponseWindow(0.02, clock)
    for _ in range(5):
        assert window.due()
        clock.now += 0.05


def test_a_zero_window_sends_every_token() -> None:
    window = ResponseWindow(0.0, Clock())
    assert all(window.due() for _ in range(5))


def test_the_window_comes_from_the_model_config() -> None:
    assert window_s({}) == 0.02  # the gateway's default text window
    assert window_s({"parameters": {"response_window_ms": {"string_value": "50"}}}) == 0.05
    assert window_s({"parameters": {"response_window_ms": {"string_value": "0"}}}) == 0.0
    with pytest.raises(ValueError, match="response_window_ms"):
        window_s({"parameters": {"response_window_ms": {"string_value": "-1"}}})
