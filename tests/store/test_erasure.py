"""Delete means gone from every tier: the store's rows and files, Redis's record, step state and blobs,
and the tenants' readable-image sets — with images another stored trajectory uses kept."""

from __future__ import annotations

from pathlib import Path

import redis

from gateway import erasure, recorder
from gateway.step import state
from services.common.blobs import BlobStore
from services.devstack.redis_server import RedisServer
from services.store import ImageFiles, TrajectoryStore
from services.store.trajectories import make_engine
from tests.store.events import new, png, run, stored


def test_erase_leaves_nothing_behind_but_what_others_still_use(tmp_path: Path, redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    store = TrajectoryStore(make_engine("", tmp_path), ImageFiles(tmp_path / "images"))
    blobs = BlobStore(client, 600)
    own, shared, step_only = stored(png((1, 2, 3))), stored(png((4, 5, 6))), stored(png((7, 8, 9)))
    for image in (own, shared, step_only):
        blobs.put(image[1].data)
    store.write([new("acme/gone"), new("acme/kept")],
                run("acme/gone", inputs=[own[0], shared[0]]) + run("acme/kept", inputs=[shared[0]]),
                dict([own, shared]))
    # Redis's hot copies: the Run's record, and a step trajectory that only Redis holds.
    for tid, events in (("acme/gone", run("acme/gone", inputs=[own[0], shared[0]])),
                        ("acme/rollout-7", run("acme/rollout-7", inputs=[step_only[0]]))):
        client.hset(recorder.meta_key(tid), "tenant", "acme")
        client.rpush(recorder.events_key(tid), *(e.SerializeToString() for e in events))
    client.set(state.keys("acme/rollout-7")[0], "{}")
    client.sadd("toolfabric:tenant:acme:images", own[0], shared[0], step_only[0])

    erased = erasure.erase(["acme/gone", "acme/rollout-7"], store, client)

    assert (erased.stored, erased.hot, erased.images) == (1, 2, 2)
    for tid in ("acme/gone", "acme/rollout-7"):
        assert not client.exists(recorder.meta_key(tid), recorder.events_key(tid), *state.keys(tid))
    assert not client.exists(f"toolfabric:blob:{own[0][7:]}", f"toolfabric:blob:{step_only[0][7:]}")
    assert blobs.get(shared[0]) == shared[1].data  # "acme/kept" still shows it
    assert client.smembers("toolfabric:tenant:acme:images") == {shared[0].encode()}
    assert not store.files.exists(own[0]) and store.files.exists(shared[0])
    store.close()
    client.close()
