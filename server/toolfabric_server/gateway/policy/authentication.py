"""Who is calling: API keys (Bearer on HTTP, `authorization` metadata on gRPC) resolved to a tenant.

With `TOOLFABRIC_AUTH_REQUIRED=false` (the embedded default only) every caller is the anonymous
tenant "" and nothing is checked. Otherwise every door needs a valid key: the gRPC interceptor
(policy/grpc.py) and the HTTP middleware (policy/http.py) refuse the rest before a handler runs and
hand the handler the resolved principal. Verified keys are cached for `cache_ttl_s`; a revoked key
stops working within that time (0 = verified on every call).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from toolfabric_server.common.api_keys import ApiKeyStore, KeyRejected
from toolfabric_server.gateway.exceptions import Unauthenticated
from toolfabric_server.gateway.settings import AuthSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Principal:
    tenant: str  # "" = anonymous (auth off)
    key_id: str = ""


ANONYMOUS = Principal("")


class Authenticator:
    def __init__(self, settings: AuthSettings, keys: ApiKeyStore | None) -> None:
        self.required = settings.required
        self._keys, self._ttl = keys, settings.cache_ttl_s
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        """The caller of an `Authorization` value, or Unauthenticated saying what is wrong."""
        if not self.required:
            return ANONYMOUS
        if not authorization:
            raise Unauthenticated("missing API key: send the header 'Authorization: Bearer <key>'")
        scheme, _, key = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthenticated("malformed Authorization: expected 'Bearer <key>'")
        key = key.strip()
        cached = self._cache.get(key)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        if self._keys is None:
            raise Unauthenticated("no API key store is configured")
        try:
            record = await asyncio.to_thread(self._keys.verify, key)
        except KeyRejected as exc:
            self._cache.pop(key, None)
            raise Unauthenticated(str(exc)) from None
        principal = Principal(record.tenant, record.key_id)
        if self._ttl:
            if len(self._cache) > 10_000:  # bounded: forget everything rather than grow without end
                self._cache.clear()
            self._cache[key] = (time.monotonic() + self._ttl, principal)
        return principal

    async def principal_of(self, metadata: Iterable[tuple[str, Any]] | None) -> Principal:
        """The caller of a gRPC call, from its `authorization` metadata."""
        value = next((v for k, v in metadata or () if k == "authorization" and isinstance(v, str)), None)
        return await self.authenticate(value)


def make_authenticator(settings: AuthSettings, store_url: str) -> Authenticator:
    """`store_url`: the SQLAlchemy URL of the store holding the keys (toolfabric_server.common.api_keys.store_url)."""
    return Authenticator(settings, ApiKeyStore(store_url) if settings.required else None)


def announce(settings: AuthSettings) -> None:
    """Says at start-up, loudly, when the gateway trusts every caller."""
    if not settings.required:
        log.warning("=" * 78)
        log.warning("AUTHENTICATION IS OFF: every caller is trusted and all callers share one tenant.")
        log.warning("Fine for `toolfabric up` on loopback; set TOOLFABRIC_AUTH_REQUIRED=true anywhere else.")
        log.warning("=" * 78)
