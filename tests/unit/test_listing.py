"""ListTrajectories requests from the SDK's friendly filters, and Run requests carrying labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from toolfabric.listing import list_request
from toolfabric.requests import run_request
from toolfabric.v1 import fabric_pb2 as pb


def test_friendly_filters_become_the_request() -> None:
    since = datetime(2026, 11, 1, tzinfo=timezone(timedelta(hours=2)))
    request = list_request(status=["completed", "STATUS_FAILED", "Budget_Exhausted"], mode="general",
                           labels={"suite": "demo"}, eval_run="r1", since=since, until=1_800_000_000.5,
                           question="astronaut", page_size=10, page_token="t")
    assert list(request.statuses) == [pb.STATUS_COMPLETED, pb.STATUS_FAILED, pb.STATUS_BUDGET_EXHAUSTED]
    assert request.mode == pb.MODE_GENERAL and dict(request.labels) == {"suite": "demo"}
    assert request.created_after.ToDatetime(UTC) == since
    assert request.created_before.ToNanoseconds() == 1_800_000_000_500_000_000
    assert (request.eval_run, request.question_contains, request.page_size, request.page_token) == (
        "r1", "astronaut", 10, "t")


def test_a_naive_datetime_is_utc_and_unset_times_stay_unset() -> None:
    request = list_request(since=datetime(2026, 1, 1))
    assert request.created_after.ToDatetime() == datetime(2026, 1, 1)
    assert not request.HasField("created_before") and request.mode == pb.MODE_UNSPECIFIED


def test_unknown_status_or_mode_says_what_is_accepted() -> None:
    with pytest.raises(ValueError, match=r"status must be one of \['running', 'completed'"):
        list_request(status=["done"])
    with pytest.raises(ValueError, match="mode must be one of"):
        list_request(mode="fast")


def test_run_requests_carry_labels_and_the_eval_run() -> None:
    request = run_request("q", labels={"eval_item": "7"}, eval_run="bench")
    assert dict(request.labels) == {"eval_item": "7"} and request.eval_run == "bench"
