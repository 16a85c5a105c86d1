"""The gateway's hook into the durable store: a writer thread mirrors every recorded event.

The recorder hands each event (text deltas already merged per step) to `Archive.event`, which only
puts it on a queue: the event loop never waits for the database. The writer thread drains the queue
in batches — one transaction per batch, images copied from Redis into the content-addressed
directory first — and applies the retention. Reads (GetTrajectory, GetImage, ListTrajectories once
Redis has expired a record) run in worker threads too.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import sqlalchemy as sa

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common import redis_clients
from toolfabric_server.common.blobs import BlobStore
from toolfabric_server.common.errors import BlobNotFound
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.engine.spec import RunSpec
from toolfabric_server.gateway.exceptions import InvalidRequest
from toolfabric_server.store import TrajectoryFilter, TrajectoryNotInStore, TrajectoryStore
from toolfabric_server.store.errors import ImageNotInStore, StoreUnavailable
from toolfabric_server.store.settings import StoreSettings
from toolfabric_server.store.trajectories import NewTrajectory, StoredImage, image_refs

log = logging.getLogger(__name__)
MAX_LABELS, MAX_KEY, MAX_VALUE = 32, 200, 1000
# Set by the gateway from the caller's API key, never by the caller: ListTrajectories filters on it so a
# tenant lists only its own trajectories.
TENANT_LABEL = "toolfabric.tenant"
_BATCH = 2000
# After the first item of a batch the writer waits this long for more: a transaction per event (what a lightly loaded
# gateway did) was most of the writer's CPU; the store is a mirror of the Redis record, a tenth of a second behind it.
_GATHER_S = 0.1
_STOP = object()


def check_labels(request: pb.RunRequest) -> None:
    """Labels and the eval run are kept and filtered on: bounded, non-empty keys."""
    if len(request.labels) > MAX_LABELS:
        raise InvalidRequest(f"{len(request.labels)} labels, over the limit of {MAX_LABELS}")
    for key, value in request.labels.items():
        if key == TENANT_LABEL:
            raise InvalidRequest(f"label {TENANT_LABEL!r} is set by the gateway from the API key")
        if not key.strip() or len(key) > MAX_KEY:
            raise InvalidRequest(f"label key {key[:40]!r} must be 1-{MAX_KEY} characters")
        if len(value) > MAX_VALUE:
            raise InvalidRequest(f"label {key!r} has a value of {len(value)} characters, over {MAX_VALUE}")
    if len(request.eval_run) > MAX_KEY:
        raise InvalidRequest(f"eval_run is {len(request.eval_run)} characters, over {MAX_KEY}")


Purge = Callable[[float, TrajectoryStore, "redis.Redis", "redis.Redis"], Any]


class Archive:
    def __init__(self, store: TrajectoryStore, common: CommonSettings, settings: StoreSettings,
                 purge: Purge | None = None) -> None:
        # `purge`: retention across every tier (gateway/erasure.py); without it, the store's rows only.
        # The image blobs may live in a Redis of their own (redis_clients.py).
        self.store, self._settings, self._purge = store, settings, purge
        self._redis = redis_clients.sync_client("state", common)
        split = common.cache_url != common.redis_url
        self._cache = redis_clients.sync_client("cache", common) if split else self._redis
        self._blobs = BlobStore(self._cache, common.blob_ttl_s)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stored_images: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._last_purge = 0.0

    def start(self) -> Archive:
        self._thread.start()
        return self

    async def close(self) -> None:
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join, 60)
        self._redis.close()
        if self._cache is not self._redis:
            self._cache.close()
        self.store.close()

    # -- called on the event loop: enqueue only ------------------------------------------------------

    def begin(self, spec: RunSpec, mode: pb.Mode) -> None:
        self._queue.put(NewTrajectory(
            trajectory_id=spec.trajectory_id, question=spec.question, mode=mode or pb.MODE_DEEP_RESEARCH,
            model=spec.model, created_at=time.time(), labels=dict(spec.labels), eval_run=spec.eval_run,
            budgets={"max_steps": spec.max_steps, "max_tool_calls": spec.max_tool_calls,
                     "deadline_s": spec.deadline_s},
            sampling=dict(spec.sampling)))

    def event(self, event: pb.RunEvent) -> None:
        self._queue.put(event)

    # -- reads, off the event loop ---------------------------------------------------------------------

    async def trajectory(self, trajectory_id: str) -> pb.Trajectory | None:
        try:
            return await asyncio.to_thread(self.store.get, trajectory_id)
        except TrajectoryNotInStore:
            return None
        except sa.exc.SQLAlchemyError:
            log.warning("store: reading trajectory %s failed", trajectory_id, exc_info=True)
            return None

    async def add_stored_fields(self, found: pb.Trajectory) -> None:
        """Labels, eval run, budgets and end time, which only the store keeps, onto a trajectory from Redis."""
        try:
            stored = await asyncio.to_thread(self.store.get, found.trajectory_id, with_events=False)
        except TrajectoryNotInStore:
            return  # not written yet
        except sa.exc.SQLAlchemyError:
            log.warning("store: reading trajectory %s failed", found.trajectory_id, exc_info=True)
            return
        found.labels.update(stored.labels)
        found.eval_run = stored.eval_run
        found.budgets.CopyFrom(stored.budgets)
        if stored.HasField("finished_at"):
            found.finished_at.CopyFrom(stored.finished_at)

    async def image(self, ref: str) -> pb.Image | None:
        try:
            data, mime, width, height = await asyncio.to_thread(self.store.image, ref)
        except ImageNotInStore:
            return None
        except sa.exc.SQLAlchemyError:
            log.warning("store: reading image %s failed", ref, exc_info=True)
            return None
        return pb.Image(blob=ref, data=data, mime_type=mime, width=width, height=height)

    async def list_page(self, request: pb.ListTrajectoriesRequest) -> pb.ListTrajectoriesResponse:
        if request.page_size < 0:
            raise InvalidRequest(f"page_size is {request.page_size}; it must be positive (0 = default)")
        where = TrajectoryFilter(
            statuses=list(request.statuses), model=request.model, mode=request.mode, labels=dict(request.labels),
            eval_run=request.eval_run, question_contains=request.question_contains,
            created_after=request.created_after.ToNanoseconds() / 1e9 if request.HasField("created_after") else None,
            created_before=request.created_before.ToNanoseconds() / 1e9 if request.HasField("created_before") else None)
        try:
            page = await asyncio.to_thread(self.store.page, where, request.page_size, request.page_token)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreUnavailable(f"the trajectory store is unavailable: {type(exc).__name__}") from exc
        return pb.ListTrajectoriesResponse(trajectories=page.trajectories, next_page_token=page.next_token)

    # -- the writer thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=min(self._settings.purge_interval_s, 5.0))
            except queue.Empty:
                self._maybe_purge()
                continue
            if first is not _STOP:
                time.sleep(_GATHER_S)
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = any(item is _STOP for item in batch)
            self._write([item for item in batch if item is not _STOP], stopping)
            self._maybe_purge()

    def _write(self, batch: list[Any], stopping: bool) -> None:
        """Writes the batch. While the database (or Redis) is unreachable it retries with backoff, the events
        waiting in memory: none is dropped. A batch the database refuses (a data error) is logged and dropped
        after three tries, so it cannot block every later write; so is one still failing at shutdown."""
        begun = [item for item in batch if isinstance(item, NewTrajectory)]
        events = [item for item in batch if isinstance(item, pb.RunEvent)]
        attempt = 0
        while True:
            try:
                images = self._images(events)
                self.store.write(begun, events, images)
                break
            except Exception as exc:
                attempt += 1
                unreachable = isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, redis.ConnectionError))
                if attempt >= 3 and (stopping or not unreachable):
                    log.exception("store: dropping %d events of trajectories %s after %d attempts", len(events),
                                  sorted({e.trajectory_id for e in events}), attempt)
                    return
                if attempt == 1 or attempt % 10 == 0:
                    log.warning("store: write failed (attempt %d), retrying: %s", attempt, exc)
                time.sleep(min(30.0, 0.25 * 2 ** attempt))
        for ref in images:
            self._remember(ref)

    def _images(self, events: list[pb.RunEvent]) -> dict[str, StoredImage]:
        out: dict[str, StoredImage] = {}
        for event in events:
            for ref in image_refs(event):
                if not ref.blob or ref.blob in out:
                    continue
                if ref.blob in self._stored_images and self.store.files.exists(ref.blob):
                    continue
                if self.store.has_image(ref.blob):
                    self._remember(ref.blob)
                    continue
                try:
                    data = self._blobs.get(ref.blob)
                except BlobNotFound:
                    log.warning("store: image %s of trajectory %s expired from Redis before it was stored",
                                ref.blob, event.trajectory_id)
                    continue
                out[ref.blob] = StoredImage(data, ref.mime_type, ref.width, ref.height)
        return out

    def _remember(self, ref: str) -> None:
        self._stored_images[ref] = None
        if len(self._stored_images) > 100_000:
            self._stored_images.popitem(last=False)

    def _maybe_purge(self) -> None:
        days = self._settings.retention_days
        now = time.time()
        if not days or now - self._last_purge < self._settings.purge_interval_s:
            return
        self._last_purge = now
        try:
            if self._purge is not None:
                erased = self._purge(now - days * 86400, self.store, self._redis, self._cache)
                trajectories, images = erased.trajectories, erased.images
            else:
                trajectories, images = self.store.purge(now - days * 86400)
        except Exception:
            log.exception("store: retention purge failed")
            return
        if trajectories:
            log.info("store: retention deleted %d trajectories and %d images", trajectories, images)
