"""Delete means gone: a trajectory leaves every tier at once — the durable store (rows and image files),
Redis (its record and events, step-API state, blobs of its images) and every tenant's list of readable
images — so the gateway can no longer serve it, from any door, after `toolfabric store delete` or
retention. Blocking (redis-py, SQLAlchemy): the CLI calls it, and the archive's writer thread for retention.

An image is dropped when no trajectory left in the store references it. Blobs are stored once per
content hash, so a trajectory that lives only in Redis and holds byte-identical bytes loses its copy too
(its client sends the image again); that is the price of not keeping a deleted trajectory's pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import redis

from gateway import recorder
from gateway.step import state
from services.common.blobs import BlobStore
from services.store import TrajectoryStore
from services.store.trajectories import image_refs
from toolfabric.v1 import fabric_pb2 as pb

log = logging.getLogger(__name__)
_TENANT_IMAGES = "toolfabric:tenant:*:images"  # gateway/policy/ownership.py's readable-image sets


@dataclass(frozen=True)
class Erased:
    stored: int  # trajectories deleted from the store
    hot: int  # trajectories deleted from Redis
    images: int  # images deleted (store files and Redis blobs, counted once)

    @property
    def trajectories(self) -> int:
        return max(self.stored, self.hot)


def erase(ids: Iterable[str], store: TrajectoryStore, client: redis.Redis, blobs: redis.Redis | None = None) -> Erased:
    """`client`: the state Redis; `blobs`: the Redis of the image blobs when it is another one."""
    ids = list(dict.fromkeys(ids))
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
        for key in client.scan_iter(match=_TENANT_IMAGES, count=1000):
            pipe.srem(key, *gone)
        pipe.execute()
    return Erased(stored, hot, len(gone))


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


def purge(older_than: float, store: TrajectoryStore, client: redis.Redis, blobs: redis.Redis | None = None) -> Erased:
    """Retention: everything that finished before `older_than` (epoch seconds), from every tier."""
    ids = store.expired(older_than)
    total = Erased(0, 0, 0)
    for start in range(0, len(ids), 500):
        done = erase(ids[start:start + 500], store, client, blobs)
        total = Erased(total.stored + done.stored, total.hot + done.hot, total.images + done.images)
    return total
