"""Signed, expiring public URLs for image blobs, and the small HTTP endpoint that serves them.

A reverse image search provider (Google Lens through Serper) must fetch the image itself,
so the fabric hands it `{public_base_url}/blobs/<sha256>?exp=<unix>&t=<tenant>&sig=<hmac>`. The
signature is HMAC-SHA256 over the blob hash, the expiry and the tenant with `TOOLFABRIC_BLOB_URL_SECRET`:
a URL cannot be altered to reach another blob, another tenant or a longer life, and it stops working at
`exp`. A URL is bound to the tenant whose trajectory asked for it: with auth on, the endpoint serves it
only while the image is in that tenant's readable set (gateway/policy/ownership.py), so a URL signed for
tenant A never serves an image only B holds, and a deleted image stops being served at once.
Run the endpoint with `start_blob_server(host, port, common)` (the gateway does) behind the public base URL.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, quote

import redis.asyncio as aredis
from aiohttp import web

from toolfabric_server.common import redis_clients
from toolfabric_server.common.blobs import PREFIX, AsyncBlobStore, tenant_images_key
from toolfabric_server.common.errors import BlobNotFound, InvalidImage
from toolfabric_server.common.images import inspect
from toolfabric_server.common.settings import CommonSettings

ROUTE = "/blobs/"


class BadSignature(Exception):
    """A blob URL that was altered, signed with another secret, or has expired."""


def _signature(secret: bytes, digest: str, expires_at: int, tenant: str) -> str:
    # Without a tenant (auth off) the signed text is the one URLs had before tenants were bound into them.
    signed = f"{digest}:{expires_at}" + (f":{tenant}" if tenant else "")
    return hmac.new(secret, signed.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Grant:
    """What a verified URL grants: one blob, to one tenant's holders ("" = auth off)."""

    ref: str
    tenant: str


def _digest(ref: str) -> str:
    digest = ref[len(PREFIX):] if ref.startswith(PREFIX) else ""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise BlobNotFound(f"{ref!r} is not a blob reference (expected sha256:<64 hex>)")
    return digest


def signed_url(ref: str, *, ttl_s: int, base_url: str, secret: str, now: float | None = None,
               tenant: str = "") -> str:
    """A public URL at which the blob `ref` can be fetched until `ttl_s` from now, for `tenant`'s image."""
    expires_at = int((now or time.time()) + ttl_s)
    key = secret.encode()
    digest = _digest(ref)
    base = base_url.rstrip("/")
    bound = f"&t={quote(tenant, safe='')}" if tenant else ""
    return f"{base}{ROUTE}{digest}?exp={expires_at}{bound}&sig={_signature(key, digest, expires_at, tenant)}"


def url_signer(common: CommonSettings) -> Callable[..., str]:
    """`signed_url` with the deployment's base URL, lifetime and secret: `sign(ref, tenant=…)`."""
    return functools.partial(signed_url, ttl_s=common.blob_url_ttl_s, base_url=common.public_base_url,
                             secret=common.blob_url_secret.get_secret_value())


def grant(path: str, query: str, secret: str, now: float | None = None) -> Grant:
    """The blob and tenant a signed URL (path + query string) grants, or BadSignature."""
    if not path.startswith(ROUTE):
        raise BadSignature("not a blob URL")
    digest = path[len(ROUTE):]
    params = parse_qs(query)
    try:
        expires_at = int(params["exp"][0])
        sig = params["sig"][0]
        tenant = params.get("t", [""])[0]
    except (KeyError, IndexError, ValueError):
        raise BadSignature("the URL lacks exp/sig") from None
    key = secret.encode()
    # As bytes: compare_digest refuses str with non-ASCII characters (TypeError, a 500 on the blob port).
    if not hmac.compare_digest(sig.encode(), _signature(key, digest, expires_at, tenant).encode()):
        raise BadSignature("signature does not match")
    if expires_at < (now or time.time()):
        raise BadSignature("the URL has expired")
    return Grant(PREFIX + digest, tenant)


def verify(path: str, query: str, secret: str, now: float | None = None) -> str:
    """The blob reference a signed URL (path + query string) grants, or BadSignature."""
    return grant(path, query, secret, now).ref


@dataclass
class BlobServer:
    """A running blob endpoint: `url` is where it listens; `await stop()` shuts it down."""

    runner: web.AppRunner
    redis: aredis.Redis
    host: str
    port: int
    owners: aredis.Redis | None = None  # the state Redis (auth on: whose images are whose)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.redis.aclose()  # type: ignore[attr-defined]  # types-redis predates aclose
        if self.owners is not None:
            await self.owners.aclose()  # type: ignore[attr-defined]


async def start_blob_server(host: str, port: int, common: CommonSettings, ssl_context: ssl.SSLContext | None = None,
                            reuse_port: bool = False, auth_required: bool = False) -> BlobServer:
    """Serve blobs at signed URLs on host:port (port 0 = any free port), from the Redis blob store; TLS with
    `ssl_context`; `reuse_port`: shared with other processes on the host (SO_REUSEPORT); `auth_required`
    (TOOLFABRIC_AUTH_REQUIRED): a blob is served only to the tenants holding it."""
    locked, secret = auth_required, common.blob_url_secret.get_secret_value()
    client = redis_clients.async_client("cache", common)
    # Who holds which image is the policy's (gateway/policy/ownership.py), kept in the state Redis.
    owners = redis_clients.async_client("state", common) if locked else None
    store = AsyncBlobStore(client, common.blob_ttl_s)

    async def serve(request: web.Request) -> web.StreamResponse:
        try:
            granted = grant(request.path, request.query_string, secret)
            ref = granted.ref
            # With auth on, a URL serves only an image its tenant holds (one without a tenant: none); the
            # answer is the one for a missing blob, so a URL says nothing about other tenants' images.
            if owners is not None and not await owners.sismember(tenant_images_key(granted.tenant), ref):  # type: ignore[misc]
                raise BlobNotFound(ref)
            data = await store.get(ref)
            mime = inspect(data, common.max_image_pixels, common.max_image_pixels_per_byte).mime_type
        except BadSignature as exc:
            return web.Response(status=403, text=f"forbidden: {exc}\n")
        except BlobNotFound:
            return web.Response(status=404, text="blob not found (expired or never stored)\n")
        except InvalidImage as exc:
            return web.Response(status=415, text=f"not a servable image: {exc}\n")
        return web.Response(body=data, content_type=mime,
                            headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"})

    app = web.Application()
    app.router.add_route("GET", ROUTE + "{digest}", serve)  # aiohttp answers HEAD for GET routes
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_port=reuse_port or None)
    await site.start()
    bound = int(runner.addresses[0][1]) if runner.addresses else port  # the real port when port=0
    return BlobServer(runner, client, host, bound, owners)
