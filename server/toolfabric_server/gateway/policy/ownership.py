"""Whose is an id: trajectory ids namespaced by tenant, and the one ownership check of every read path.

With auth on, every trajectory id a tenant names is read and written as ``<tenant>/<id>`` (`scoped`):
Run ids (the gateway's uuids, handed out already scoped), step-API and MCP ids a trainer or a session
chooses (``rollout-7`` of two tenants are two trajectories), conversation ids and parents. Tenant names
never contain "/" (common/api_keys.TENANT), so one tenant cannot name into another's space;
an id that already carries the caller's prefix is taken as it is, so ids the gateway handed out work
when sent back. With auth off (tenant "") ids are used unchanged: the open default's stored data
keeps working.

On top of the namespace, every read path checks the record's owner the same way (Redis record, the
durable store's copy, images by hash, Watch): another tenant's id is `NotYours`, which every door
reports as "not found" — never "forbidden", so a response never says that an id exists.
"""

from __future__ import annotations

import redis.asyncio as aredis

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.blobs import tenant_images_key
from toolfabric_server.gateway import recorder
from toolfabric_server.gateway.archive import TENANT_LABEL
from toolfabric_server.gateway.exceptions import NotYours
from toolfabric_server.gateway.policy.authentication import Principal

SEPARATOR = "/"


def scoped(principal: Principal, trajectory_id: str) -> str:
    """The stored id of `trajectory_id` as `principal` names it."""
    if not principal.tenant or not trajectory_id:
        return trajectory_id
    prefix = principal.tenant + SEPARATOR
    return trajectory_id if trajectory_id.startswith(prefix) else prefix + trajectory_id


def unscoped(principal: Principal, stored_id: str) -> str:
    """The id as the caller chose it (the step API answers with the trainer's own ids)."""
    prefix = principal.tenant + SEPARATOR
    return stored_id[len(prefix):] if principal.tenant and stored_id.startswith(prefix) else stored_id


class Ownership:
    def __init__(self, redis_client: aredis.Redis, required: bool, image_ttl_s: int) -> None:
        self._redis, self.required, self._image_ttl = redis_client, required, image_ttl_s

    async def check_trajectory(self, principal: Principal, stored_id: str) -> None:
        """NotYours unless the Redis record of `stored_id` is the caller's (no record passes: the caller
        then finds nothing, or starts it)."""
        if not self.required:
            return
        owner = await recorder.tenant_of(self._redis, stored_id)
        if owner is not None and owner != principal.tenant:
            raise NotYours(f"no trajectory {unscoped(principal, stored_id)!r}")

    def check_record(self, principal: Principal, found: pb.Trajectory) -> None:
        """The same check on a trajectory read from the durable store (Redis no longer holds it)."""
        owner = found.tenant or found.labels.get(TENANT_LABEL, "")
        if self.required and owner != principal.tenant:
            raise NotYours(f"no trajectory {unscoped(principal, found.trajectory_id)!r}")

    async def check_image(self, principal: Principal, blob: str) -> None:
        """NotYours unless one of the caller's trajectories saw or made the image (images are stored once
        by content hash; who may read them is kept per tenant)."""
        if self.required and not await self._redis.sismember(tenant_images_key(principal.tenant), blob):
            raise NotYours(f"no image {blob!r}")

    async def remember_images(self, principal: Principal, refs: list[str]) -> None:
        if not refs or not self.required:
            return
        key = tenant_images_key(principal.tenant)
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(key, *refs)
        pipe.expire(key, self._image_ttl)
        await pipe.execute()

    async def observe(self, principal: Principal, event: pb.RunEvent) -> None:
        """Remembers the images a trajectory of `principal` saw or made."""
        kind = event.WhichOneof("event")
        refs = [i.blob for i in event.started.images] if kind == "started" else \
            [i.blob for i in event.observation.images] if kind == "observation" else []
        await self.remember_images(principal, refs)
