"""Delete means gone: a trajectory leaves every tier at once — the durable store (rows and image files),
Redis (its record and events, step-API state, blobs of its images), every tenant's list of readable
images, the tool-result cache entries its calls read or wrote (hot and persistent tiers: its queries'
results, its images' OCR and reverse searches, its pages) and the decoded pixels workers keep of its images
(announced on the erased-images channel) — so nothing can serve it, from any door, after
`toolfabric store delete` or retention. Blocking (redis-py, SQLAlchemy): the CLI calls it, and the
archive's writer thread for retention.

An image is dropped when no trajectory left in the store references it. Blobs are stored once per
content hash, so a trajectory that lives only in Redis and holds byte-identical bytes loses its copy too
(its client sends the image again); that is the price of not keeping a deleted trajectory's pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common import cache
from toolfabric_server.common import cache_store as cache_stores
from toolfabric_server.common.blobs import TENANT_IMAGES_PATTERN, BlobStore
from toolfabric_server.common.cache_store import PersistentStore
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.gateway import recorder
from toolfabric_server.gateway.stepping import state
from toolfabric_server.store import TrajectoryStore
from toolfabric_server.store.trajectories import image_refs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Erased:
    stored: int  # trajectories deleted from the store
    hot: int  # trajectories deleted from Redis
    images: int  # images deleted (store files and Redis blobs, counted once)
    cached: int = 0  # tool-result cache entries their calls used (each key once, whichever tiers held it)

    @property
    def trajectories(self) -> int:
        return max(self.stored, self.hot)


def erase(ids: Iterable[str], store: TrajectoryStore, client: redis.Redis, blobs: redis.Redis | None = None,
          cache_store: PersistentStore | None = None, *, common: CommonSettings) -> Erased:
    """`client`: the state Redis; `blobs`: the Redis of the image blobs and the hot cache when it is another one;
    `cache_store`: the persistent cache tier (default: the one `common` names, opened if needed)."""
    ids = list(dict.fromkeys(ids))
    cached = _erase_cache_entries(blobs or client, ids, cache_store, common)
    hot_refs = _image_refs(client, ids)
    stored, orphans = store.erase(ids)
    gone = sorted((hot_refs - store.referenced(hot_refs)) | set(orphans))
    pipe = client.pipeline(transaction=False)
    for tid in ids:
        pipe.delete(recorder.meta_key(tid), recorder.events_key(tid), recorder.open_key(tid), *state.keys(tid))
    hot = sum(1 for n in pipe.execute() if n)
    BlobStore(blobs or client, 60).delete(gone)
    if gone:
        pipe = client.pipeline(transaction=False)
        for key in client.scan_iter(match=TENANT_IMAGES_PATTERN, count=1000):
            pipe.srem(key, *gone)
        pipe.execute()
    return Erased(stored, hot, len(gone), cached)


def _erase_cache_entries(client: redis.Redis, ids: list[str], cache_store: PersistentStore | None,
                         common: CommonSettings) -> int:
    """Deletes the cache entries the trajectories' tool calls read or wrote (common/cache.py
    remembers them per trajectory, in the cache Redis `client`); how many keys."""
    pipe = client.pipeline(transaction=False)
    for tid in ids:
        pipe.smembers(cache.used_key(tid))
    keys = sorted({k.decode() if isinstance(k, bytes) else k for found in pipe.execute() for k in found})
    if keys:
        client.delete(*(cache.hot_key(k) for k in keys))
        if cache_store is not None:
            cache_store.delete(keys)
        else:
            opened = cache_stores.open_store(common.elasticsearch_url, common.data_dir, common.elasticsearch_prefix)
            try:
                opened.delete(keys)
            finally:
                opened.close()
    # The lists themselves too: which entries a trajectory used, and an eval's trail of them (for freezing).
    client.delete(*(cache.used_key(tid) for tid in ids), *(cache.TRAIL_PREFIX + tid for tid in ids))
    return len(keys)


def _image_refs(client: redis.Redis, ids: list[str]) -> set[str]:
    """The images Redis's records of `ids` name (a step trajectory is only in Redis)."""
    pipe = client.pipeline(transaction=False)
    for tid in ids:
        pipe.lrange(recorder.events_key(tid), 0, -1)
    refs: set[str] = set()
    for raw_events in pipe.execute():
        for raw in raw_events:
            refs.update(r.blob for r in image_refs(pb.RunEvent.FromString(raw)))
    return refs


def purge(older_than: float, store: TrajectoryStore, client: redis.Redis, blobs: redis.Redis | None = None, *,
          common: CommonSettings) -> Erased:
    """Retention: everything that finished before `older_than` (epoch seconds), from every tier."""
    ids = store.expired(older_than)
    total = Erased(0, 0, 0)
    for start in range(0, len(ids), 500):
        done = erase(ids[start:start + 500], store, client, blobs, common=common)
        total = Erased(total.stored + done.stored, total.hot + done.hot, total.images + done.images,
                       total.cached + done.cached)
    return total
