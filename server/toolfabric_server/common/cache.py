"""The shared two-tier cache of provider results (search, fetch): Redis hot tier in front of a
persistent tier, with single flight across every worker process, record/replay modes and
usage accounting.

    lookup(key) ── hot (Redis, TTL) ── persistent (SQLite / Elasticsearch, expires_at) ── provider
                                                                   single flight ┘

Modes (`TOOLFABRIC_CACHE_MODE`):
  live    read-through: hot, then persistent, then one provider call for all concurrent askers
  record  always call the provider (still one call per concurrent group) and store the result
  replay  cache only; a miss is a `CacheMiss` error (deterministic offline evaluation, RL rollouts)
  off     no cache, every request calls the provider

Single flight: the first asker of a missing key takes a Redis lock holding a fresh token and
calls the provider; everyone else reads the token and waits for `done:<token>`, where the
winner leaves its result or its error, so N identical concurrent requests anywhere in the
fleet make exactly one provider call. The lock is a lease of `lease_s` (1 s by default) the winner
renews while it calls (common/renewal.py): a winner that fails or is cancelled releases it at
once, one that is killed (a revoked task) frees it by expiry within `lease_s`, and the waiters race again.

Keys are `<namespace>:<sha256 of the normalized parts>`: strings are NFKC-normalized,
case-folded and whitespace-collapsed, so "Eileen  Collins" and "eileen collins" share an entry.
Images belong in keys by content hash, never by URL.

Every lookup made for a trajectory (`owner`) is remembered under it (`used_key`), so deleting the
trajectory erases the entries its calls read or wrote — its queries' results, its images' OCR and
reverse searches — from both tiers (gateway/erasure.py). Another trajectory that used an erased entry
simply fetches it again.

Frozen evals: a lookup may also name its request key (what was asked, without the provider's scope,
see toolfabric_server.common.bundle) and a trail (the trajectory id, for eval runs only). Each answer's (request
key, key) is then appended to the trail's list in Redis (kept a day; about 200 bytes an answer), from
which `toolfabric eval run --freeze` writes a bundle; a cache given a bundle answers from it first (in
replay mode only from it: a miss is a `CacheMiss`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import time
import unicodedata
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import redis.asyncio as aredis

from toolfabric_server.common.bundle import Bundle
from toolfabric_server.common.cache_store import PersistentStore
from toolfabric_server.common.errors import CacheMiss, ToolError, ToolTimeout
from toolfabric_server.common.renewal import renewed
from toolfabric_server.common.telemetry import observe

log = logging.getLogger(__name__)

CacheMode = Literal["off", "live", "record", "replay"]
# Where a result came from: a tier, a provider call, or an identical in-flight call (shared).
Source = Literal["hot", "persistent", "provider", "shared"]

_PREFIX = "toolfabric:cache:"
_USED = _PREFIX + "used:"
TRAIL_PREFIX = _PREFIX + "trail:"
# A trail is read right after its run (eval --freeze); a day covers the longest eval.
TRAIL_TTL_S = 24 * 3600
# How long a finished flight's outcome stays readable for its waiters.
_DONE_TTL_MS = 30_000
_POLL_START_S, _POLL_MAX_S = 0.001, 0.02


_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""


def hot_key(key: str) -> str:
    """The Redis key of a cache entry's hot copy."""
    return _PREFIX + "v:" + key


def used_key(trajectory_id: str) -> str:
    """The Redis set of the cache keys a trajectory's tool calls read or wrote."""
    return _USED + trajectory_id


def normalize_text(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _normalize(value: Any) -> Any:
    if isinstance(value, str):
        return normalize_text(value)
    if isinstance(value, list | tuple):
        return [_normalize(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _normalize(v) for k, v in value.items()}
    return value


def cache_key(namespace: str, **parts: Any) -> str:
    """`namespace:<sha256>` of the normalized parts (provider, query, k, locale, content hash, …)."""
    if not namespace or ":" in namespace:
        raise ValueError(f"cache namespace must be non-empty and contain no ':' (got {namespace!r})")
    canonical = json.dumps(_normalize(parts), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return f"{namespace}:{hashlib.sha256(canonical.encode()).hexdigest()}"


@dataclass(frozen=True)
class CacheEntry:
    """A cached value with its provenance."""

    value: Any
    provider: str
    fetched_at: float
    cost_units: float = 0.0

    @classmethod
    def now(cls, value: Any, provider: str, cost_units: float = 0.0) -> CacheEntry:
        return cls(value, provider, time.time(), cost_units)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheEntry:
        return cls(data["value"], str(data["provider"]), float(data["fetched_at"]), float(data.get("cost_units", 0)))


@dataclass(frozen=True)
class Lookup:
    entry: CacheEntry
    source: Source


@dataclass
class Usage:
    """Counters reported per tool call (and summed per trajectory by the gateway)."""

    provider_calls: int = 0
    cache_hit_hot: int = 0
    cache_hit_persistent: int = 0
    cache_miss: int = 0
    cost_units: float = 0.0
    # Requests answered by an identical in-flight call instead of their own provider call.
    single_flight_shared: int = 0

    def count(self, lookup: Lookup) -> None:
        if lookup.source == "hot":
            self.cache_hit_hot += 1
        elif lookup.source == "persistent":
            self.cache_hit_persistent += 1
        elif lookup.source == "shared":
            self.cache_miss += 1
            self.single_flight_shared += 1
        else:
            self.cache_miss += 1
            self.provider_calls += 1
            self.cost_units += lookup.entry.cost_units

    def count_failed_call(self) -> None:
        """A provider call that failed still happened (and may have cost quota)."""
        self.provider_calls += 1

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _rebuild_error(data: dict[str, Any]) -> ToolError:
    """The winner's error, raised again in each waiter with the same kind."""
    from toolfabric_server.common import errors

    cls = getattr(errors, str(data.get("class", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, ToolError)):
        cls = ToolError
    exc = cls.__new__(cls)
    Exception.__init__(exc, str(data.get("message", "")))
    if data.get("kind"):
        exc.kind = str(data["kind"])  # type: ignore[misc]
    return exc


def _error_class(exc: ToolError) -> str:
    """The nearest toolfabric_server.common.errors class (service-specific subclasses travel as their base)."""
    from toolfabric_server.common import errors

    for cls in type(exc).__mro__:
        if getattr(errors, cls.__name__, None) is cls:
            return cls.__name__
    return "ToolError"


class Cache:
    """Asyncio cache; one per process and event loop."""

    def __init__(self, redis: aredis.Redis, store: PersistentStore | None, mode: CacheMode = "live",
                 hot_ttl_s: int = 3600, persistent_ttl_s: int = 7 * 24 * 3600, wait_s: float = 60.0,
                 lease_s: float = 1.0, bundle: Bundle | None = None) -> None:
        if mode not in ("off", "live", "record", "replay"):
            raise ValueError(f"unknown cache mode {mode!r}; use off, live, record or replay")
        self.redis, self.store, self.mode, self.bundle = redis, store, mode, bundle
        self.hot_ttl_s, self.persistent_ttl_s, self.wait_s = hot_ttl_s, persistent_ttl_s, wait_s
        self.lease_s = lease_s
        self._release = redis.register_script(_RELEASE)
        self._renew = redis.register_script(_RENEW)

    async def get_or_fetch(self, key: str, fetch: Callable[[], Awaitable[CacheEntry]], *, describe: str = "",
                           lock_s: float | None = None, request_key: str | None = None,
                           trail: str = "", owner: str = "") -> Lookup:
        """The cached entry for `key`, or `fetch()`'s (called once across all concurrent askers).

        `describe` names the request in errors ("text_search 'q' via serper"); `lock_s` bounds how
        long a live flight may hold the key before others may try (default: the wait limit); a dead
        one holds it at most `lease_s`. `request_key` (default `key`) is what a bundle knows the request by;
        `trail` (a trajectory id) records the answer's keys for freezing. `owner`: the trajectory asking (its
        deletion erases the entry).
        """
        # The cache's own Redis traffic is bookkeeping (hits and misses are span events of the tool's span): no
        # spans for it; the provider fetch keeps its spans.
        fetch = observe.traced_as_now(fetch)
        with observe.untraced():
            return await self._get_or_fetch(key, fetch, describe, lock_s, request_key, trail, owner)

    async def _get_or_fetch(self, key: str, fetch: Callable[[], Awaitable[CacheEntry]], describe: str,
                            lock_s: float | None, request_key: str | None, trail: str, owner: str) -> Lookup:
        if owner and self.mode != "off":
            # Remembered before the lookup: an entry written by a call that then fails is still found.
            pipe = self.redis.pipeline(transaction=False)
            pipe.sadd(used_key(owner), key)
            pipe.expire(used_key(owner), max(self.hot_ttl_s, self.persistent_ttl_s if self.store else 0))
            await pipe.execute()
        lookup = await self._lookup(key, fetch, describe, lock_s, request_key or key)
        if trail:
            await self._follow(trail, request_key or key, key, describe)
        return lookup

    async def trail(self, trajectory_id: str) -> list[tuple[str, str, str]]:
        """(request key, key, description) of every answer a trajectory's tools got, in order."""
        raw = await self.redis.lrange(TRAIL_PREFIX + trajectory_id, 0, -1)
        return [tuple(json.loads(item)) for item in raw]  # type: ignore[misc]

    async def recorded(self, key: str) -> dict[str, Any] | None:
        """The entry stored under `key` in either tier, expired or not (None if neither has it)."""
        found = await self._read(key, include_expired=True)
        return None if found is None else asdict(found.entry)

    async def _follow(self, trail: str, request_key: str, key: str, describe: str) -> None:
        name = TRAIL_PREFIX + trail
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.rpush(name, json.dumps([request_key, key, describe], ensure_ascii=False))
            pipe.expire(name, TRAIL_TTL_S)
            await pipe.execute()

    async def _lookup(self, key: str, fetch: Callable[[], Awaitable[CacheEntry]], describe: str,
                      lock_s: float | None, request_key: str) -> Lookup:
        namespace = key.split(":", 1)[0]
        if self.bundle is not None:
            frozen = self.bundle.get(request_key)
            if frozen is not None:
                observe.cache_outcome(namespace, "persistent", True)
                return Lookup(CacheEntry.from_dict(frozen), "persistent")
            if self.mode == "replay":
                observe.cache_outcome(namespace, "replay_miss", True)
                raise CacheMiss(f"replay mode: {describe or key} is not in the bundle {self.bundle.path} "
                                f"({self.bundle.hash})")
        if self.mode == "off":
            return Lookup(await fetch(), "provider")
        if self.mode in ("live", "replay"):
            found = await self._read(key, include_expired=self.mode == "replay")
            if found is not None:
                observe.cache_outcome(namespace, found.source, self.store is not None)
                return found
            if self.mode == "replay":
                observe.cache_outcome(namespace, "replay_miss", self.store is not None)
                raise CacheMiss(f"replay mode: nothing recorded for {describe or key}; record it first "
                                "(TOOLFABRIC_CACHE_MODE=record or live)")
        lookup = await self._single_flight(key, fetch, lock_s or self.wait_s)
        observe.cache_outcome(namespace, lookup.source, self.store is not None)
        return lookup

    async def _read(self, key: str, include_expired: bool) -> Lookup | None:
        raw = await self.redis.get(hot_key(key))
        if raw is not None:
            return Lookup(CacheEntry.from_dict(json.loads(raw)), "hot")
        if self.store is None:
            return None
        stored = await asyncio.to_thread(self.store.get, key, include_expired)
        if stored is None:
            return None
        entry = CacheEntry.from_dict(stored)
        await self.redis.set(hot_key(key), json.dumps(stored, ensure_ascii=False), ex=self.hot_ttl_s)
        return Lookup(entry, "persistent")

    async def _write(self, key: str, entry: CacheEntry) -> None:
        data = asdict(entry)
        await self.redis.set(hot_key(key), json.dumps(data, ensure_ascii=False), ex=self.hot_ttl_s)
        if self.store is not None:
            await asyncio.to_thread(self.store.put, key, data, time.time() + self.persistent_ttl_s)

    async def _single_flight(self, key: str, fetch: Callable[[], Awaitable[CacheEntry]], lock_s: float) -> Lookup:
        lock = _PREFIX + "lock:" + key
        deadline = time.monotonic() + self.wait_s
        while True:
            token = uuid.uuid4().hex
            if await self.redis.set(lock, token, nx=True, px=int(self.lease_s * 1000)):
                renew = functools.partial(self._renew, keys=[lock], args=[token, int(self.lease_s * 1000)])
                async with renewed(renew, self.lease_s, max_hold_s=lock_s):
                    return await self._fly(key, lock, token, fetch)
            holder = await self.redis.get(lock)
            if holder is None:
                continue  # released between our SET and GET: race for it again
            outcome = await self._await_flight(_text(holder), lock, deadline)
            if outcome is not None:
                if "error" in outcome:
                    raise _rebuild_error(outcome["error"])
                return Lookup(CacheEntry.from_dict(outcome["ok"]), "shared")
            if time.monotonic() >= deadline:
                raise ToolTimeout(f"waited {self.wait_s:.0f}s for an identical request in flight")

    async def _fly(self, key: str, lock: str, token: str, fetch: Callable[[], Awaitable[CacheEntry]]) -> Lookup:
        done = _PREFIX + "done:" + token
        try:
            if self.mode == "live":  # it may have landed between our miss and our lock
                raw = await self.redis.get(hot_key(key))
                if raw is not None:
                    await self.redis.set(done, json.dumps({"ok": json.loads(raw)}), px=_DONE_TTL_MS)
                    return Lookup(CacheEntry.from_dict(json.loads(raw)), "hot")
            try:
                entry = await fetch()
            except ToolError as exc:
                error = {"class": _error_class(exc), "kind": exc.kind, "message": str(exc)}
                await self.redis.set(done, json.dumps({"error": error}), px=_DONE_TTL_MS)
                raise
            await self._write(key, entry)
            await self.redis.set(done, json.dumps({"ok": asdict(entry)}, ensure_ascii=False), px=_DONE_TTL_MS)
            return Lookup(entry, "provider")
        finally:
            await self._release(keys=[lock], args=[token])

    async def _await_flight(self, token: str, lock: str, deadline: float) -> dict[str, Any] | None:
        """The outcome of flight `token`, or None if its holder vanished without one."""
        done = _PREFIX + "done:" + token
        delay = _POLL_START_S
        while time.monotonic() < deadline:
            raw = await self.redis.get(done)
            if raw is not None:
                return dict(json.loads(raw))
            holder = await self.redis.get(lock)
            if holder is None or _text(holder) != token:
                raw = await self.redis.get(done)  # finished just now, or died
                return None if raw is None else dict(json.loads(raw))
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, _POLL_MAX_S)
        return None
