"""Delete means gone from every tier: the store's rows and files, Redis's record, step state and blobs,
and the tenants' readable-image sets — with images another stored trajectory uses kept."""

from __future__ import annotations

from pathlib import Path

import redis

from tests.store.events import new, png, run, stored
from toolfabric_server.common.blobs import BlobStore
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.gateway import erasure, recorder
from toolfabric_server.gateway.stepping import state
from toolfabric_server.store import ImageFiles, TrajectoryStore
from toolfabric_server.store.settings import StoreSettings
from toolfabric_server.store.trajectories import make_engine


def test_erase_leaves_nothing_behind_but_what_others_still_use(tmp_path: Path, redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    store = TrajectoryStore(make_engine("", tmp_path, StoreSettings()), ImageFiles(tmp_path / "images"))
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

    erased = erasure.erase(["acme/gone", "acme/rollout-7"], store, client, common=CommonSettings())

    assert (erased.stored, erased.hot, erased.images) == (1, 2, 2)
    for tid in ("acme/gone", "acme/rollout-7"):
        assert not client.exists(recorder.meta_key(tid), recorder.events_key(tid), *state.keys(tid))
    assert not client.exists(f"toolfabric:blob:{own[0][7:]}", f"toolfabric:blob:{step_only[0][7:]}")
    assert blobs.get(shared[0]) == shared[1].data  # "acme/kept" still shows it
    assert client.smembers("toolfabric:tenant:acme:images") == {shared[0].encode()}
    assert not store.files.exists(own[0]) and store.files.exists(shared[0])
    store.close()
    client.close()


async def test_erase_removes_the_cache_entries_its_calls_used_and_workers_forget_its_pixels(
        tmp_path: Path, redis_server: RedisServer) -> None:
    import asyncio
    import threading

    import redis.asyncio as aredis

    from toolfabric_server.common.blobs import follow_erasures
    from toolfabric_server.common.cache import Cache, CacheEntry, cache_key, hot_key
    from toolfabric_server.common.cache_store import SQLiteCacheStore

    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    store = TrajectoryStore(make_engine("", tmp_path, StoreSettings()), ImageFiles(tmp_path / "images"))
    persistent = SQLiteCacheStore(tmp_path / "cache.sqlite3")
    image = stored(png((10, 20, 30)))
    BlobStore(client, 600).put(image[1].data)
    store.write([new("acme/gone")], run("acme/gone", inputs=[image[0]]), dict([image]))
    forgotten: list[str] = []
    heard = threading.Event()
    follow_erasures(redis_server.url, lambda ref: (forgotten.append(ref), heard.set()))
    # The trajectory's calls: an OCR of its image and a search; another trajectory's search is not its own.
    async_client = aredis.Redis.from_url(redis_server.url)
    cache = Cache(async_client, persistent, "live")
    keys = {"ocr": cache_key("ocr", image=image[0]), "mine": cache_key("search.web", query="acme secret"),
            "other": cache_key("search.web", query="weather")}

    async def fetch() -> CacheEntry:
        return CacheEntry.now(["result"], "test")

    await cache.get_or_fetch(keys["ocr"], fetch, owner="acme/gone")
    await cache.get_or_fetch(keys["mine"], fetch, owner="acme/gone")
    await cache.get_or_fetch(keys["other"], fetch, owner="acme/kept")
    await async_client.aclose()
    await asyncio.sleep(0.2)  # the listener has subscribed

    erased = erasure.erase(["acme/gone"], store, client, cache_store=persistent, common=CommonSettings())

    assert erased.cached == 2 and erased.images == 1
    for name in ("ocr", "mine"):
        assert not client.exists(hot_key(keys[name])) and persistent.get(keys[name]) is None, name
    assert client.exists(hot_key(keys["other"])) and persistent.get(keys["other"]) is not None
    assert await asyncio.to_thread(heard.wait, 10) and forgotten == [image[0]]
    store.close()
    persistent.close()
    client.close()


def test_a_vision_worker_forgets_the_decoded_pixels_of_an_erased_image() -> None:
    from toolfabric_server.tools.vision.store import _LRU

    cache = _LRU(10_000)
    cache.put(("bgr", "sha256:a"), "pixels", 100)
    cache.put(("png", "sha256:a"), "png", 50)
    cache.put(("bgr", "sha256:b"), "other", 100)
    cache.drop("sha256:a")
    assert cache.get(("bgr", "sha256:a")) is None and cache.get(("png", "sha256:a")) is None
    assert cache.get(("bgr", "sha256:b")) == "other"
