"""The gateway's writer thread (gateway/archive.py) against a real Redis and the SQLite store: events and
images land in the store off the caller's thread, a locked database delays writes without losing them,
and the retention runs on its own."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import redis

from tests.store.events import new, png, run
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.blobs import BlobStore
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.engine.spec import RunSpec
from toolfabric_server.gateway.archive import Archive
from toolfabric_server.store import ImageFiles, TrajectoryNotInStore, TrajectoryStore
from toolfabric_server.store.settings import StoreSettings
from toolfabric_server.store.trajectories import make_engine


def spec(trajectory_id: str, labels: dict[str, str] | None = None, eval_run: str = "") -> RunSpec:
    return RunSpec(trajectory_id=trajectory_id, question="Who is this?", mode="deep_research",
                   model="toolfabric_baseline", max_steps=8, max_tool_calls=20, deadline_s=60.0,
                   sampling={"temperature": 0.2}, labels=labels or {}, eval_run=eval_run)


def wait_for(check, timeout_s: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except TrajectoryNotInStore:
            pass
        time.sleep(0.05)
    raise AssertionError("not stored in time")


def open_archive(tmp_path: Path, redis_url: str, **settings: float) -> tuple[Archive, TrajectoryStore]:
    store = TrajectoryStore(make_engine("", tmp_path, StoreSettings()), ImageFiles(tmp_path / "images"))
    return Archive(store, CommonSettings(redis_url=redis_url, cache_redis_url="", blob_ttl_s=3600),
                   StoreSettings(**settings)).start(), store


def test_events_and_their_images_reach_the_store_off_the_callers_thread(tmp_path: Path, redis_server) -> None:  # type: ignore[no-untyped-def]
    photo, crop = png((10, 20, 30)), png((40, 50, 60))
    blobs = BlobStore(redis.Redis.from_url(redis_server.url), 3600)
    refs = [blobs.put(photo), blobs.put(crop)]
    archive, store = open_archive(tmp_path, redis_server.url)
    # Another connection holds the database's write lock: the writer has to wait (and retry), the caller never.
    blocker = sqlite3.connect(tmp_path / "store.sqlite3", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    started = time.perf_counter()
    archive.begin(spec("t1", {"suite": "archive"}, "e1"), pb.MODE_DEEP_RESEARCH)
    for event in run("t1", inputs=[refs[0]], outputs=[refs[1]]):
        archive.event(event)
    assert time.perf_counter() - started < 0.05  # nine events queued while the database is locked
    time.sleep(0.5)
    blocker.execute("ROLLBACK")
    blocker.close()
    wait_for(lambda: store.get("t1").status == pb.STATUS_COMPLETED)
    got = store.get("t1")
    assert len(got.events) == 8 and dict(got.labels) == {"suite": "archive"} and got.eval_run == "e1"
    assert got.budgets.max_steps == 8
    assert store.image(refs[1])[0] == crop and store.image(refs[0])[0] == photo
    asyncio.run(archive.close())


def test_retention_deletes_old_trajectories_in_the_background(tmp_path: Path, redis_server) -> None:  # type: ignore[no-untyped-def]
    seed = TrajectoryStore(make_engine("", tmp_path, StoreSettings()), ImageFiles(tmp_path / "images"))
    seed.write([new("ancient", created_at=1000.0)], run("ancient", at=1010.0))
    seed.close()
    archive, store = open_archive(tmp_path, redis_server.url, retention_days=1, purge_interval_s=0.1)
    archive.begin(spec("fresh"), pb.MODE_DEEP_RESEARCH)
    wait_for(lambda: store.get("fresh") is not None)

    def ancient_gone() -> bool:
        try:
            store.get("ancient")
        except TrajectoryNotInStore:
            return True
        return False

    wait_for(ancient_gone)
    assert store.get("fresh").status == pb.STATUS_RUNNING
    asyncio.run(archive.close())
