"""The durable store on SQLite and on a real PostgreSQL server: what GetTrajectory, GetImage and
ListTrajectories serve once Redis has forgotten a trajectory."""

from __future__ import annotations

import pytest

from tests.store.events import new, png, run, stored
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.store import TrajectoryFilter, TrajectoryNotInStore, TrajectoryStore
from toolfabric_server.store.errors import BadPageToken, ImageNotInStore


def test_a_written_trajectory_reads_back_whole(store: TrajectoryStore) -> None:
    photo, crop = stored(png((200, 0, 0))), stored(png((0, 200, 0)))
    events = run("t1", inputs=[photo[0]], outputs=[crop[0]])
    store.write([new("t1", labels={"suite": "demo"}, eval_run="run-1")], events, dict([photo, crop]))

    got = store.get("t1")
    assert [e.seq for e in got.events] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert got.events == events
    assert got.status == pb.STATUS_COMPLETED and got.answer == "Eileen Collins"
    assert got.trace_id == "ab" * 16 and got.usage.tool_calls["crop"] == 1
    assert dict(got.labels) == {"suite": "demo"} and got.eval_run == "run-1"
    assert got.budgets.max_tool_calls == 20 and got.created_at.seconds == 1_700_000_000
    assert got.finished_at.seconds == 1_700_000_011
    data, mime, width, height = store.image(crop[0])
    assert data == crop[1].data and (mime, width, height) == ("image/png", 8, 6)


def test_a_running_trajectory_is_visible_and_updated_step_by_step(store: TrajectoryStore) -> None:
    events = run("t1")
    store.write([new("t1")], events[:3])
    assert store.get("t1").status == pb.STATUS_RUNNING
    assert len(store.get("t1").events) == 3
    store.write((), events[3:])
    assert store.get("t1").status == pb.STATUS_COMPLETED
    assert len(store.get("t1").events) == 8


def test_an_event_written_twice_is_stored_once(store: TrajectoryStore) -> None:
    events = run("t1")
    store.write([new("t1")], events)
    store.write([new("t1")], events[2:4])
    assert [e.seq for e in store.get("t1").events] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_unknown_trajectory_and_image_are_reported_as_missing(store: TrajectoryStore) -> None:
    with pytest.raises(TrajectoryNotInStore):
        store.get("nope")
    with pytest.raises(ImageNotInStore):
        store.image("sha256:" + "0" * 64)


def _ids(store: TrajectoryStore, **where: object) -> list[str]:
    return [s.trajectory_id for s in store.page(TrajectoryFilter(**where), page_size=100).trajectories]  # type: ignore[arg-type]


def test_list_filters_by_every_field(store: TrajectoryStore) -> None:
    store.write([
        new("a", "Who is the ASTRONAUT here?", created_at=100.0, labels={"suite": "demo", "split": "dev"},
            eval_run="r1"),
        new("b", "What cat is this? 100% sure", created_at=200.0, model="other", mode=pb.MODE_GENERAL,
            labels={"suite": "demo"}),
        new("c", "Which rocket?", created_at=300.0, eval_run="r1"),
    ], run("a") + run("b", status=pb.STATUS_FAILED) + run("c")[:2])
    assert _ids(store) == ["c", "b", "a"]  # newest first
    assert _ids(store, statuses=[pb.STATUS_COMPLETED]) == ["a"]
    assert _ids(store, statuses=[pb.STATUS_FAILED, pb.STATUS_RUNNING]) == ["c", "b"]
    assert _ids(store, model="other") == ["b"]
    assert _ids(store, mode=pb.MODE_GENERAL) == ["b"]
    assert _ids(store, labels={"suite": "demo"}) == ["b", "a"]
    assert _ids(store, labels={"suite": "demo", "split": "dev"}) == ["a"]
    assert _ids(store, eval_run="r1") == ["c", "a"]
    assert _ids(store, created_after=200.0) == ["c", "b"]
    assert _ids(store, created_after=100.0, created_before=300.0) == ["b", "a"]
    assert _ids(store, question_contains="astronaut") == ["a"]
    assert _ids(store, question_contains="100%") == ["b"]  # a literal %, not a wildcard
    assert _ids(store, question_contains="0%") == ["b"]
    assert _ids(store, question_contains="_") == []


def test_pages_cover_every_trajectory_once(store: TrajectoryStore) -> None:
    # Equal creation times too: the id breaks the tie, so no page repeats or skips one.
    store.write([new(f"t{i}", created_at=float(i // 2)) for i in range(7)])
    seen, token, pages = [], "", 0
    while True:
        page = store.page(TrajectoryFilter(), page_size=3, page_token=token)
        seen += [s.trajectory_id for s in page.trajectories]
        pages += 1
        token = page.next_token
        if not token:
            break
    assert pages == 3
    assert sorted(seen) == [f"t{i}" for i in range(7)] and len(seen) == 7


def test_a_page_token_from_elsewhere_is_refused(store: TrajectoryStore) -> None:
    with pytest.raises(BadPageToken, match="not issued"):
        store.page(TrajectoryFilter(), page_token="garbage!")


def test_deleting_keeps_images_another_trajectory_still_uses(store: TrajectoryStore) -> None:
    shared, own = stored(png((1, 2, 3))), stored(png((4, 5, 6)))
    store.write([new("t1"), new("t2")], run("t1", inputs=[shared[0]], outputs=[own[0]]) + run("t2", inputs=[shared[0]]),
                dict([shared, own]))
    assert store.delete(["t1"]) == (1, 1)
    assert not store.files.exists(own[0]) and store.files.exists(shared[0])
    with pytest.raises(ImageNotInStore):
        store.image(own[0])
    with pytest.raises(TrajectoryNotInStore):
        store.get("t1")
    assert store.image(shared[0])[0] == shared[1].data
    assert store.delete(["t2"]) == (1, 1)
    assert not store.files.exists(shared[0])


def test_retention_deletes_only_what_is_older(store: TrajectoryStore) -> None:
    store.write([new("old", created_at=100.0), new("new", created_at=1000.0)],
                run("old", at=150.0) + run("new", at=1050.0))
    assert store.purge(older_than=500.0) == (1, 0)
    assert _ids(store) == ["new"]


def test_creating_the_tables_again_is_harmless(store: TrajectoryStore) -> None:
    store.write([new("t1")], run("t1"))
    again = TrajectoryStore(store.engine, store.files)
    assert again.get("t1").answer == "Eileen Collins"


def test_token_records_and_the_usage_unit_read_back_exactly(store: TrajectoryStore) -> None:
    # A step's ids as the gateway records them (reuse + tail), long as a real multi-turn prompt with images.
    events = run("t1")
    tokens = pb.ModelTokens(prompt_reused=0, prompt_token_ids=[(i * 7919) % 151_000 for i in range(40_000)],
                            completion_token_ids=[151_645, 0, 2**40], completion_logprobs=[-0.125, -3.5, 0.0],
                            image_tokens=[1024, 80], token_in=True, engine_image_tokens=1104)
    events.insert(2, pb.RunEvent(trajectory_id="t1", seq=99, step=1, tokens=tokens))
    usage = next(e for e in events if e.HasField("usage"))
    usage.usage.token_unit, usage.usage.image_tokens = "tokens", 1104
    store.write([new("t1")], events)
    got = store.get("t1")
    [recorded] = [e.tokens for e in got.events if e.HasField("tokens")]
    assert recorded == tokens
    assert got.usage.token_unit == "tokens" and got.usage.image_tokens == 1104
