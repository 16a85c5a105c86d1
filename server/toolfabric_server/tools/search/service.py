"""text_search and image_search: input checks, providers in fallback order, the shared cache, usage.

Each query (or image) is answered on its own: a bad one becomes an error entry in the
observation while the others still get results. For each, providers are tried in the
configured order; a provider that is down, times out, rejects our key or answers garbage
hands over to the next one, and the error entry names every provider's failure when all fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.cache import Cache, CacheEntry, Usage, cache_key
from toolfabric_server.common.errors import BlobNotFound, CacheMiss, ToolError, UnknownImage
from toolfabric_server.common.telemetry import observe
from toolfabric_server.common.tools import ToolContext, ToolResult, canonical_image_name, resolve_image
from toolfabric_server.index.results import as_dicts, image_results_from, observation_text, web_results_from
from toolfabric_server.tools.search.errors import (
    AllProvidersFailed,
    ProviderFailure,
    ProviderUnsupported,
    QueryRejected,
)
from toolfabric_server.tools.search.providers.base import Answer, ImageQuery, Provider
from toolfabric_server.tools.search.settings import SearchSettings
from toolfabric_server.tools.search.spec import ImageSearchArgs, TextSearchArgs

# One provider call may hold a cache key this long before identical requests stop waiting on it.
_FLIGHT_MARGIN_S = 5.0


class SearchService:
    def __init__(self, providers: list[Provider], cache: Cache, blobs: AsyncBlobStore, config: SearchSettings,
                 public_url: Callable[..., str]) -> None:
        if not providers:
            raise ValueError("at least one search provider is needed")
        self.providers, self.cache, self.blobs, self.config = providers, cache, blobs, config
        self.public_url = public_url
        attempts = config.provider_retries + 1
        self._flight_s = attempts * (config.provider_timeout_s + config.provider_backoff_max_s) + _FLIGHT_MARGIN_S

    # --- text_search --------------------------------------------------------------------------
    async def text_search(self, args: TextSearchArgs, ctx: ToolContext) -> ToolResult:
        limit = self.config.max_queries_per_call
        if len(args.queries) > limit:
            raise QueryRejected(f"{len(args.queries)} queries in one call; at most {limit} are answered per "
                                "call, so split them over several calls")
        usage = Usage()
        entries = await asyncio.gather(*(self._one_query(q, usage, ctx.trail, ctx.trajectory_id)
                                         for q in args.queries))
        return self._result(list(entries), usage)

    def _check_query(self, query: str) -> str:
        text = " ".join(query.split())
        if not text:
            raise QueryRejected("empty query; give some words to search for")
        if len(text) > self.config.max_query_chars:
            raise QueryRejected(f"query is {len(text)} characters, over the limit of {self.config.max_query_chars}; "
                                "shorten it to the key terms")
        return text

    async def _one_query(self, query: str, usage: Usage, trail: str, owner: str) -> dict[str, Any]:
        try:
            text = self._check_query(query)
            k = self.config.results_per_query
            results = await self._first_answer(
                usage, f"text_search {text!r}", text, lambda p: p.web(text, k),
                lambda scope: cache_key("search.web", provider=scope, query=text, k=k),
                # A bundle knows a search by its query alone (whoever answered it, e.g. a paper's cache).
                cache_key("search.web", query=text), trail, owner,
            )
            return {"query": query, "results": as_dicts(web_results_from(results[:k]))}
        except ToolError as exc:
            return {"query": query, "error": str(exc), "kind": exc.kind}

    # --- image_search -------------------------------------------------------------------------
    async def image_search(self, args: ImageSearchArgs, ctx: ToolContext) -> ToolResult:
        limit = self.config.max_images_per_call
        if len(args.image_paths) > limit:
            raise QueryRejected(f"{len(args.image_paths)} images in one call; at most {limit} per call")
        usage = Usage()
        entries = await asyncio.gather(*(self._one_image(name, ctx, usage) for name in args.image_paths))
        return self._result(list(entries), usage)

    async def _one_image(self, name: str, ctx: ToolContext, usage: Usage) -> dict[str, Any]:
        try:
            shown = canonical_image_name(name)
        except UnknownImage:
            shown = name
        try:
            ref = resolve_image(name, ctx.images)
            data = await self.blobs.get(ref)  # fails early, before any provider, if the image expired
            k = self.config.results_per_query

            async def load() -> bytes:
                return data

            # The URL is bound to the caller's tenant: the blob port serves it only while the image is theirs.
            image = ImageQuery(ref, load, lambda: self.public_url(ref, tenant=ctx.tenant))
            results = await self._first_answer(
                usage, f"image_search {shown}", None, lambda p: p.reverse_image(image, k),
                # Images are keyed by content (the blob reference is the sha256 of the bytes).
                lambda scope: cache_key("search.image", provider=scope, image=ref, k=k),
                cache_key("search.image", image=ref), ctx.trail, ctx.trajectory_id,
            )
            return {"image": shown, "results": as_dicts(image_results_from(results[:k]))}
        except BlobNotFound:
            return {"image": shown, "error": f"{shown} is no longer available (its image data expired)",
                    "kind": "unknown_image"}
        except ToolError as exc:
            return {"image": shown, "error": str(exc), "kind": exc.kind}

    # --- shared -------------------------------------------------------------------------------
    async def _first_answer(self, usage: Usage, describe: str, query: str | None,
                            ask: Callable[[Provider], Awaitable[Answer]],
                            key_for: Callable[[str], str], request_key: str, trail: str,
                            owner: str) -> list[dict[str, Any]]:
        """Results from the first provider in order that answers (cached or live); `owner`: the trajectory."""
        failures: list[str] = []
        replay_misses = 0
        for provider in self.providers:
            called = False

            async def fetch(provider: Provider = provider) -> CacheEntry:
                nonlocal called
                called = True
                answer = await ask(provider)
                observe.provider_call(provider.name, "ok", answer.cost_units)
                return CacheEntry.now(as_dicts(answer.results), provider.name, answer.cost_units)

            try:
                key = key_for(await provider.scope(query))
                lookup = await self.cache.get_or_fetch(key, fetch, describe=f"{describe} via {provider.name}",
                                                       lock_s=self._flight_s, request_key=request_key, trail=trail,
                                                       owner=owner)
            except ProviderUnsupported as exc:
                failures.append(str(exc))
                continue
            except CacheMiss as exc:
                replay_misses += 1
                failures.append(f"{provider.name}: {exc}")
                continue
            except ProviderFailure as exc:
                if called:
                    usage.count_failed_call()
                    observe.provider_call(provider.name, getattr(exc, "kind", "error"))
                failures.append(str(exc) if str(exc).startswith(provider.name) else f"{provider.name}: {exc}")
                continue
            usage.count(lookup)
            return list(lookup.entry.value)
        if replay_misses == len(self.providers):
            bundle = self.cache.bundle
            if bundle is not None:
                raise CacheMiss(f"replay mode: {describe} is not in the bundle {bundle.path} ({bundle.hash})")
            raise CacheMiss(f"replay mode: nothing recorded for {describe} (providers: "
                            f"{', '.join(p.name for p in self.providers)})")
        raise AllProvidersFailed("no provider could answer: " + "; ".join(failures))

    @staticmethod
    def _result(entries: list[dict[str, Any]], usage: Usage) -> ToolResult:
        """The observation; `kind` is kept out of it (the model reads only the message)."""
        kinds = [str(e.pop("kind")) for e in entries if "kind" in e]
        ok = len(kinds) < len(entries)  # a call fails only when every query/image failed
        return ToolResult(ok=ok, text=observation_text(entries), data=entries, usage=usage.as_dict(),
                          error_kind=None if ok else kinds[0])
