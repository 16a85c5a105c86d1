"""The guarded HTTP fetch: every hop checked and pinned, timeouts, a streamed size cap.

One `Fetcher` per tool call (or per gateway download); it owns one httpx client whose
transport connects only to pinned addresses. Redirects are followed here, hop by hop, so each
new location goes through the guard before anything connects to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import dataclass
from types import TracebackType

import httpx

from toolfabric_server.web.decoding import ACCEPT_ENCODING, BoundedDecoder, is_vague, media_type, sniff
from toolfabric_server.web.errors import (
    BodyTooLarge,
    ConnectFailed,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    InvalidURL,
    TooManyRedirects,
    UnsupportedContentType,
)
from toolfabric_server.web.guard import Guard, Resolver
from toolfabric_server.web.settings import FetchSettings
from toolfabric_server.web.transport import PinnedNetworkBackend, PinnedTransport

REDIRECTS = frozenset({301, 302, 303, 307, 308})
ACCEPT = "text/html,application/xhtml+xml,text/plain;q=0.9,application/pdf;q=0.8,image/*;q=0.7,*/*;q=0.1"


@dataclass(frozen=True)
class Fetched:
    """A successful response, fully read and decompressed."""

    url: str  # as requested
    final_url: str  # after redirects
    status: int
    media_type: str
    charset: str | None
    body: bytes
    wire_bytes: int  # bytes received on the wire (compressed)
    redirects: int


class Fetcher:
    def __init__(
        self,
        settings: FetchSettings,
        resolver: Resolver | None = None,
        network: PinnedNetworkBackend | None = None,
    ) -> None:
        self.settings = settings
        self.guard = Guard(settings, resolver)
        self._network = network or PinnedNetworkBackend()
        self._client = httpx.AsyncClient(
            transport=PinnedTransport(self._network),
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(
                connect=settings.connect_timeout_s,
                read=settings.read_timeout_s,
                write=settings.read_timeout_s,
                pool=settings.connect_timeout_s,
            ),
            headers={"User-Agent": settings.user_agent, "Accept": ACCEPT, "Accept-Encoding": ACCEPT_ENCODING},
        )

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str, accept: Collection[str], max_bytes: int | None = None) -> Fetched:
        """GET `url` following redirects; only media types in `accept`; body at most `max_bytes`."""
        limit = max_bytes or self.settings.max_body_bytes
        total = self.settings.total_timeout_s
        try:
            async with asyncio.timeout(total):
                return await self._follow(url, accept, limit)
        except TimeoutError:
            raise FetchTimeout(f"fetching {url} took longer than the total limit of {total:g}s") from None

    async def _follow(self, url: str, accept: Collection[str], limit: int) -> Fetched:
        current: str | httpx.URL = url
        seen: set[str] = set()
        for hop in range(self.settings.max_redirects + 1):
            target = await self.guard.check(current)
            seen.add(str(target.url))
            self._network.pin(target)
            try:
                response = await self._client.send(self._client.build_request("GET", target.url), stream=True)
            except httpx.TimeoutException as exc:
                raise FetchTimeout(f"{target.url}: {_timeout_kind(exc)} timed out") from None
            except httpx.InvalidURL as exc:
                raise InvalidURL(f"{target.url}: {exc}") from None
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc or 'connection failed'}"
                raise ConnectFailed(f"could not get {target.url}: {reason}") from None
            try:
                if response.status_code in REDIRECTS and "location" in response.headers:
                    location = response.headers["location"]
                    try:
                        current = target.url.join(location)
                    except httpx.InvalidURL as exc:
                        raise InvalidURL(
                            f"{target.url} redirects to an invalid URL {location[:200]!r}: {exc}"
                        ) from None
                    if str(current.copy_with(fragment=None)) in seen:
                        raise TooManyRedirects(f"{url} redirects in a loop (back to {current})")
                    continue
                if response.status_code >= 400:
                    raise HTTPStatusError(
                        f"HTTP {response.status_code} {response.reason_phrase} from {target.url}", response.status_code
                    )
                return await self._read(url, target.url, response, accept, limit, hop)
            finally:
                await response.aclose()
        raise TooManyRedirects(f"{url} redirected more than {self.settings.max_redirects} times")

    async def _read(self, url: str, final: httpx.URL, response: httpx.Response, accept: Collection[str],
                    limit: int, redirects: int) -> Fetched:
        mtype, charset = media_type(response.headers.get("content-type"))
        if not is_vague(mtype) and mtype not in accept:
            raise UnsupportedContentType(
                f"{final} is {mtype}, which web_visit does not read (accepted: {', '.join(sorted(accept))})"
            )
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(f"{final} is {int(declared)} bytes, over the limit of {limit} bytes")
        decoder = BoundedDecoder(response.headers.get("content-encoding", ""), limit)
        parts: list[bytes] = []
        wire = 0
        try:
            async for chunk in response.aiter_raw():
                wire += len(chunk)
                if wire > limit:
                    raise BodyTooLarge(f"{final} sent more than {limit} bytes; cut off")
                parts.append(decoder.feed(chunk))
        except httpx.TimeoutException:
            idle = self.settings.read_timeout_s
            raise FetchTimeout(f"{final}: reading the body timed out (no data for {idle:g}s)") from None
        except httpx.HTTPError as exc:
            raise ConnectFailed(f"{final}: connection broke while reading the body: {exc}") from None
        body = b"".join(parts)
        if is_vague(mtype):
            mtype = sniff(body)
            if mtype not in accept:
                raise UnsupportedContentType(f"{final} serves {mtype} data, which web_visit does not read")
        return Fetched(url, str(final), response.status_code, mtype, charset, body, wire, redirects)


def _timeout_kind(exc: httpx.TimeoutException) -> str:
    return {
        httpx.ConnectTimeout: "connecting",
        httpx.ReadTimeout: "waiting for the server's answer",
        httpx.WriteTimeout: "sending the request",
        httpx.PoolTimeout: "waiting for a connection",
    }.get(type(exc), "the request")


__all__ = ["FetchError", "Fetched", "Fetcher"]
