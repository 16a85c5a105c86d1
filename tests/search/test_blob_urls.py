"""Signed, expiring blob URLs and the endpoint that serves them."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import httpx
import pytest
import redis

from toolfabric_server.common.blob_urls import (
    BadSignature,
    Grant,
    grant,
    signed_url,
    start_blob_server,
    url_signer,
    verify,
)
from toolfabric_server.common.blobs import BlobStore, tenant_images_key
from toolfabric_server.common.errors import BlobNotFound
from toolfabric_server.common.settings import CommonSettings

REF = "sha256:" + "ab" * 32


def _split(url: str) -> tuple[str, str]:
    parts = httpx.URL(url)
    return parts.path, parts.query.decode()


def test_a_signed_url_lives_under_the_public_base_and_verifies_to_its_blob() -> None:
    url = signed_url(REF, ttl_s=60, base_url="https://fabric.example.com/", secret="s3cret")
    assert url.startswith("https://fabric.example.com/blobs/" + "ab" * 32 + "?exp=")
    assert verify(*_split(url), secret="s3cret") == REF


@pytest.mark.parametrize("tamper", ["other blob", "longer life", "other secret"])
def test_altered_or_foreign_urls_are_refused(tamper: str) -> None:
    url = signed_url(REF, ttl_s=60, base_url="https://f.example", secret="s3cret")
    path, query = _split(url)
    secret = "s3cret"
    if tamper == "other blob":
        path = path.replace("ab", "cd", 1)
    elif tamper == "longer life":
        exp = query.split("exp=")[1].split("&")[0]
        query = query.replace(exp, str(int(exp) + 3600))
    else:
        secret = "another"
    with pytest.raises(BadSignature, match="signature does not match"):
        verify(path, query, secret=secret)


def test_expired_urls_are_refused() -> None:
    url = signed_url(REF, ttl_s=60, base_url="https://f.example", secret="s", now=time.time() - 120)
    with pytest.raises(BadSignature, match="expired"):
        verify(*_split(url), secret="s")


def test_only_blob_references_can_be_signed() -> None:
    with pytest.raises(BlobNotFound):
        signed_url("https://evil.example/x.jpg", ttl_s=60, base_url="https://f.example", secret="s")


async def test_the_endpoint_serves_the_blob_at_its_signed_url_and_nothing_else(
    redis_server, redis_client: redis.Redis, demo_dir: Path
) -> None:
    data = (demo_dir / "question.jpg").read_bytes()
    ref = BlobStore(redis_client, 3600).put(data)
    common = CommonSettings()
    server = await start_blob_server("127.0.0.1", 0, common)
    sign = functools.partial(url_signer(common), base_url=server.url)
    try:
        url = sign(ref)
        async with httpx.AsyncClient() as client:
            ok = await client.get(url)
            forged = await client.get(url.replace("sig=", "sig=0"))
            unsigned = await client.get(url.split("?")[0])
            gone = await client.get(sign("sha256:" + "0" * 64))
    finally:
        await server.stop()
    assert ok.status_code == 200 and ok.content == data and ok.headers["content-type"] == "image/jpeg"
    assert forged.status_code == 403 and unsigned.status_code == 403
    assert gone.status_code == 404


def test_a_url_is_bound_to_its_tenant() -> None:
    url = signed_url(REF, ttl_s=60, base_url="https://f.example", secret="s3cret", tenant="acme")
    path, query = _split(url)
    assert grant(path, query, secret="s3cret") == Grant(REF, "acme")
    with pytest.raises(BadSignature, match="signature does not match"):  # re-addressed to another tenant
        grant(path, query.replace("t=acme", "t=globex"), secret="s3cret")
    with pytest.raises(BadSignature, match="signature does not match"):  # or to none
        grant(path, query.replace("&t=acme", ""), secret="s3cret")


async def test_a_locked_endpoint_serves_a_url_only_while_its_tenant_holds_the_image(
    redis_server, redis_client: redis.Redis, demo_dir: Path
) -> None:
    data = (demo_dir / "question.jpg").read_bytes()
    blobs = BlobStore(redis_client, 3600)
    ref = blobs.put(data)
    redis_client.sadd(tenant_images_key("acme"), ref)
    # The gateway passes TOOLFABRIC_AUTH_REQUIRED down (gateway/policy/listeners.py).
    common = CommonSettings()
    server = await start_blob_server("127.0.0.1", 0, common, auth_required=True)
    sign = functools.partial(url_signer(common), base_url=server.url)
    try:
        async with httpx.AsyncClient() as client:
            acme = await client.get(sign(ref, tenant="acme"))
            globex = await client.get(sign(ref, tenant="globex"))
            unbound = await client.get(sign(ref))
            never = await client.get(sign("sha256:" + "0" * 64, tenant="acme"))
            blobs.delete([ref])  # erased (gateway/erasure.py also empties the tenants' sets)
            redis_client.srem(tenant_images_key("acme"), ref)
            erased = await client.get(sign(ref, tenant="acme"))
    finally:
        await server.stop()
    assert acme.status_code == 200 and acme.content == data
    # Another tenant's image, an unbound URL, an image never stored and an erased one: the same answer.
    assert {r.status_code for r in (globex, unbound, never, erased)} == {404}
    assert globex.text == never.text == erased.text


def test_a_signature_with_non_ascii_characters_is_refused_not_an_error() -> None:
    # Found by the doors fuzz target: hmac.compare_digest raised TypeError on such a str (a 500 on the blob port).
    url = signed_url(REF, ttl_s=60, base_url="https://f.example", secret="s3cret")
    path, query = _split(url)
    with pytest.raises(BadSignature, match="signature does not match"):
        verify(path, query[:-3] + "\u00e9ab", secret="s3cret")
