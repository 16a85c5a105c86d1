"""The durable store behind the real gateway: trajectories and images outlive their Redis copies,
and ListTrajectories (SDK, asyncio SDK, CLI) finds them by label, eval run, status and question."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import redis

from tests.integration.conftest import extra_gateway
from toolfabric import AsyncClient, Client
from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION
from toolfabric.exceptions import ToolfabricError, Unavailable
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration


def wait_stored(client: Client, trajectory_id: str, timeout_s: float = 30) -> pb.TrajectorySummary:
    """The writer thread stores asynchronously: wait until the store has the trajectory's end."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for summary in client.list_trajectories(eval_run="store-test", page_size=100).trajectories:
            if summary.trajectory_id == trajectory_id and summary.status != pb.STATUS_RUNNING:
                return summary
        time.sleep(0.1)
    raise AssertionError(f"trajectory {trajectory_id} did not reach the store within {timeout_s}s")


@pytest.fixture(scope="module")
def stored_run(stack: EmbeddedStack):  # type: ignore[no-untyped-def]
    with Client(stack.target, timeout_s=180) as client:
        result = client.ask(DEMO_QUESTION, images=[DEMO_IMAGE], labels={"suite": "store", "split": "a"},
                            eval_run="store-test")
        quick = client.ask("Answer briefly: what is 2+2?", mode="general", max_steps=1,
                           labels={"suite": "store", "split": "b"}, eval_run="store-test")
        wait_stored(client, result.trajectory_id)
        wait_stored(client, quick.trajectory_id)
    return result, quick


def _forget_in_redis(stack: EmbeddedStack, trajectory_id: str, blobs: list[str]) -> None:
    """What Redis's TTLs do after 7 days (records) and 6 hours (images)."""
    r = redis.Redis.from_url(stack.redis.url)
    removed = r.delete(f"toolfabric:trajectory:{trajectory_id}", f"toolfabric:trajectory:{trajectory_id}:events",
                       *[f"toolfabric:blob:{b.removeprefix('sha256:')}" for b in blobs])
    r.close()
    assert removed >= 2


def test_trajectory_and_its_images_are_served_after_redis_forgot_them(stack: EmbeddedStack, stored_run) -> None:  # type: ignore[no-untyped-def]
    result, _ = stored_run
    with Client(stack.target, timeout_s=60) as client:
        live = client.trajectory(result.trajectory_id)
        assert dict(live.labels) == {"suite": "store", "split": "a"} and live.eval_run == "store-test"
        made = [i for o in result.observations for i in o.images]
        assert made, "the baseline crops the photo"
        blobs = [result.events[0].started.images[0].blob, made[0].blob]
        before = [client.image(b).data for b in blobs]
        _forget_in_redis(stack, result.trajectory_id, blobs)

        archived = client.trajectory(result.trajectory_id)
        assert archived.status == pb.STATUS_COMPLETED and archived.answer == result.answer
        assert list(archived.events) == list(live.events)
        assert archived.usage == result.usage and archived.trace_id == result.trace_id
        assert dict(archived.labels) == {"suite": "store", "split": "a"}
        assert archived.budgets.max_steps > 0 and archived.finished_at.seconds >= archived.created_at.seconds
        after = [client.image(b) for b in blobs]
        assert [a.data for a in after] == before
        assert (after[1].width, after[1].height) == (made[0].width, made[0].height)


def test_list_filters_by_label_status_mode_and_question(stack: EmbeddedStack, stored_run) -> None:  # type: ignore[no-untyped-def]
    result, quick = stored_run
    with Client(stack.target, timeout_s=60) as client:
        ids = lambda **f: [s.trajectory_id for s in client.iter_trajectories(eval_run="store-test", **f)]  # noqa: E731
        assert ids() == [quick.trajectory_id, result.trajectory_id]
        assert ids(labels={"split": "a"}) == [result.trajectory_id]
        assert ids(mode="general") == [quick.trajectory_id]
        assert ids(question="ASTRONAUT") == [result.trajectory_id]
        completed = [r.trajectory_id for r in (quick, result) if r.status == "STATUS_COMPLETED"]
        assert result.trajectory_id in completed
        assert ids(status=["completed"]) == completed
        assert ids(status=["running"]) == []
        assert ids(since=time.time() + 60) == []
        assert ids(page_size=1) == [quick.trajectory_id, result.trajectory_id]  # two pages of one
        first = client.list_trajectories(eval_run="store-test", page_size=1)
        assert len(first.trajectories) == 1 and first.next_page_token


async def test_async_client_lists_the_same_pages(stack: EmbeddedStack, stored_run) -> None:  # type: ignore[no-untyped-def]
    async with AsyncClient(stack.target, timeout_s=60) as client:
        found = [s.trajectory_id async for s in client.iter_trajectories(labels={"suite": "store"}, page_size=1)]
    assert found == [stored_run[1].trajectory_id, stored_run[0].trajectory_id]


def test_bad_list_requests_say_what_is_wrong(stack: EmbeddedStack, client: Client) -> None:
    with pytest.raises(ToolfabricError, match="not issued"):
        client.list_trajectories(page_token="bogus")
    with pytest.raises(ValueError, match="status must be one of"):
        client.list_trajectories(status=["finished-ish"])


def test_labels_past_the_limits_are_refused(stack: EmbeddedStack, client: Client) -> None:
    with pytest.raises(ToolfabricError, match="label key"):
        client.ask("hi", labels={"": "x"})
    with pytest.raises(ToolfabricError, match="over the limit"):
        client.ask("hi", labels={f"k{i}": "v" for i in range(40)})


def test_cli_lists_trajectories_as_json_lines(stack: EmbeddedStack, stored_run) -> None:  # type: ignore[no-untyped-def]
    out = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "trajectories", "--target", stack.target,
                          "--label", "suite=store", "--label", "split=a", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["trajectoryId"] for r in rows] == [stored_run[0].trajectory_id]
    assert rows[0]["evalRun"] == "store-test" and rows[0]["labels"] == {"suite": "store", "split": "a"}
    table = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "trajectories", "--target", stack.target,
                            "--eval-run", "store-test"], capture_output=True, text=True, timeout=60)
    assert table.returncode == 0 and "2 trajectories" in table.stdout
    bad = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "trajectories", "--target", stack.target,
                          "--label", "nokey"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "KEY=VALUE" in bad.stderr


def test_a_database_outage_fails_no_run_and_loses_no_trajectory(stack: EmbeddedStack, postgres_server,  # type: ignore[no-untyped-def]
                                                                tmp_path) -> None:
    env = {"TOOLFABRIC_STORE_URL": postgres_server.url, "TOOLFABRIC_DATA_DIR": str(tmp_path / "data")}
    with extra_gateway(stack, tmp_path, **env) as target, Client(target, timeout_s=60) as client:
        postgres_server.halt()
        try:
            result = client.ask("Answer briefly: what is 2+2?", mode="general", labels={"suite": "outage"})
            assert result.status == "STATUS_COMPLETED"  # the run never waits for the database
            # While Redis has the record, reading it never touches the store: labels and budgets come along.
            live = client.trajectory(result.trajectory_id)
            assert dict(live.labels) == {"suite": "outage"} and live.budgets.max_steps > 0
            assert live.finished_at.seconds >= live.created_at.seconds > 0
            with pytest.raises(Unavailable, match="trajectory store is unavailable"):
                client.list_trajectories(labels={"suite": "outage"})
        finally:
            postgres_server.start()
        # The writer thread kept the events and retries until the database is back.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = list(client.iter_trajectories(labels={"suite": "outage"}))
            if found and found[0].status == pb.STATUS_COMPLETED:
                break
            time.sleep(0.2)
        assert [s.trajectory_id for s in found] == [result.trajectory_id]
        assert found[0].answer == result.answer
