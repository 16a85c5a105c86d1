"""Content-addressed image blobs in Redis: key = sha256 of the bytes, with a TTL.

Tool messages carry only references (`sha256:<hex>`), never image bytes, so a Celery message
stays a few hundred bytes whatever the image size. Writing the same bytes twice stores them
once and refreshes the TTL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable

import redis
import redis.asyncio as aredis

from toolfabric_server.common.errors import BlobNotFound

log = logging.getLogger(__name__)

PREFIX = "sha256:"
_KEY = "toolfabric:blob:"


def tenant_images_key(tenant: str) -> str:
    """The Redis set of the images `tenant` may read (its trajectories saw or made them): kept by the gateway's
    policy (gateway/policy/ownership.py), read by the blob port, emptied of erased images by gateway/erasure.py."""
    return f"toolfabric:tenant:{tenant or '-'}:images"


TENANT_IMAGES_PATTERN = tenant_images_key("*")


# Erased images are announced here, so a process that keeps decoded pixels in memory forgets them at once.
ERASED_CHANNEL = "toolfabric:blobs:erased"


def follow_erasures(redis_url: str, forget: Callable[[str], None]) -> threading.Thread:
    """A daemon thread calling `forget(ref)` for every image erased from now on (this process's caches)."""

    def listen() -> None:
        while True:
            client = redis.Redis.from_url(redis_url)
            try:
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(ERASED_CHANNEL)
                for message in pubsub.listen():
                    if message.get("type") == "message":
                        for ref in json.loads(message["data"]):
                            forget(str(ref))
            except Exception as exc:  # Redis restarting: subscribe again (anything erased meanwhile ages out)
                log.warning("erased-images channel: %s; subscribing again", exc)
                time.sleep(1.0)
            finally:
                client.close()

    thread = threading.Thread(target=listen, name="follow-erasures", daemon=True)
    thread.start()
    return thread


def ref_for(data: bytes) -> str:
    return PREFIX + hashlib.sha256(data).hexdigest()


def _key(ref: str) -> str:
    if not ref.startswith(PREFIX) or len(ref) != len(PREFIX) + 64:
        raise BlobNotFound(f"{ref!r} is not a blob reference (expected sha256:<64 hex>)")
    return _KEY + ref[len(PREFIX) :]


class BlobStore:
    """Blocking store, for Celery workers."""

    def __init__(self, client: redis.Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s

    def put(self, data: bytes) -> str:
        ref = ref_for(data)
        key = _key(ref)
        # SET NX avoids rewriting identical bytes; EXPIRE refreshes the lifetime either way.
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(key, data, ex=self._ttl_s, nx=True)
        pipe.expire(key, self._ttl_s)
        pipe.execute()
        return ref

    def delete(self, refs: list[str]) -> int:
        """Drops blobs (a deleted trajectory's images), and tells every worker to drop what it keeps of them
        in memory (`follow_erasures`); how many were there."""
        if not refs:
            return 0
        pipe = self._redis.pipeline(transaction=False)
        pipe.delete(*(_key(r) for r in refs))
        pipe.publish(ERASED_CHANNEL, json.dumps(refs))
        return int(pipe.execute()[0])

    def get(self, ref: str) -> bytes:
        data = self._redis.get(_key(ref))
        if data is None:
            raise BlobNotFound(f"image {ref} is not in the blob store (expired or never stored)")
        return data if isinstance(data, bytes) else str(data).encode()


class AsyncBlobStore:
    """Asyncio store, for the gateway."""

    def __init__(self, client: aredis.Redis, ttl_s: int) -> None:
        self._redis = client
        self._ttl_s = ttl_s

    async def put(self, data: bytes) -> str:
        ref = ref_for(data)
        key = _key(ref)
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(key, data, ex=self._ttl_s, nx=True)
        pipe.expire(key, self._ttl_s)
        await pipe.execute()
        return ref

    async def keep(self, refs: list[str]) -> list[str]:
        """Gives these blobs a full lifetime again (a conversation still uses them); returns those already gone."""
        pipe = self._redis.pipeline(transaction=False)
        for ref in refs:
            pipe.expire(_key(ref), self._ttl_s)
        alive = await pipe.execute()
        return [ref for ref, ok in zip(refs, alive, strict=True) if not ok]

    async def get(self, ref: str) -> bytes:
        data = await self._redis.get(_key(ref))
        if data is None:
            raise BlobNotFound(f"image {ref} is not in the blob store (expired or never stored)")
        return data if isinstance(data, bytes) else str(data).encode()
