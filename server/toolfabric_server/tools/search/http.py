"""The one HTTP client every search provider goes through.

Per request: the provider's shared token bucket (Redis) first, then the call with the
client's timeouts; 429 and 5xx replies and connection failures are retried with jittered
exponential backoff (a 429's Retry-After is honoured up to the backoff cap); everything else
becomes an error named for what happened. Timeouts are not retried: the trajectory's clock
is running and the next provider in order is the better bet.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx

from toolfabric_server.common.ratelimit import RateLimitExceeded, TokenBucket
from toolfabric_server.common.telemetry import observe
from toolfabric_server.tools.search.errors import (
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _reply_message(resp: httpx.Response) -> str:
    """The provider's own words from an error reply: JSON `message`/`error`, else the text."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for field in ("message", "error", "detail"):
            if isinstance(body.get(field), str):
                return str(body[field])[:200]
    return resp.text.strip()[:200]


class ProviderHTTP:
    """Shared by all providers of a process; owns no event loop of its own."""

    def __init__(self, client: httpx.AsyncClient, retries: int, backoff_s: float, backoff_max_s: float,
                 rate_wait_s: float) -> None:
        self.client = client
        self.retries, self.backoff_s, self.backoff_max_s = retries, backoff_s, backoff_max_s
        self.rate_wait_s = rate_wait_s

    def _delay(self, attempt: int, resp: httpx.Response | None) -> float:
        if resp is not None and resp.status_code == 429:
            try:
                return min(float(resp.headers.get("retry-after", "")), self.backoff_max_s)
            except ValueError:
                pass
        # Full jitter: concurrent workers that failed together do not retry together.
        return random.uniform(0, min(self.backoff_max_s, self.backoff_s * 2**attempt))

    async def request_json(self, provider: str, bucket: TokenBucket, method: str, url: str, *,
                           auth_statuses: frozenset[int] = frozenset({401}),
                           hints: dict[int, str] | None = None, **kwargs: Any) -> Any:
        """Send with rate limit, retries and backoff; the parsed JSON body of a 2xx reply."""
        last = ""
        for attempt in range(self.retries + 1):
            try:
                await bucket.acquire(max_wait_s=self.rate_wait_s)
            except RateLimitExceeded as exc:
                raise ProviderRateLimited(provider, str(exc)) from None
            resp: httpx.Response | None = None
            try:
                resp = await self.client.request(method, url, **kwargs)
            except httpx.TimeoutException:
                raise ProviderTimeout(provider, f"no answer within {self._timeout_s():g}s") from None
            except httpx.TransportError as exc:
                last = f"unreachable ({type(exc).__name__}: {exc})"
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    return self._parse(provider, resp)
                words = _reply_message(resp)
                hint = (hints or {}).get(status, "")
                if status in auth_statuses:
                    raise ProviderAuthError(provider, f"HTTP {status}, credentials rejected: {words}{hint}")
                if status not in RETRY_STATUSES:
                    raise ProviderError(provider, f"HTTP {status}: {words}{hint}")
                last = f"HTTP {status}: {words}"
            if attempt < self.retries:
                observe.retry(provider, attempt + 1, last)
                await asyncio.sleep(self._delay(attempt, resp))
        tries = f"after {self.retries + 1} attempts"
        if last.startswith("HTTP 429"):
            raise ProviderRateLimited(provider, f"rate limited {tries} ({last})")
        raise ProviderError(provider, f"{last} {tries}")

    def _timeout_s(self) -> float:
        t = self.client.timeout
        return float(t.read or t.connect or 0)

    @staticmethod
    def _parse(provider: str, resp: httpx.Response) -> Any:
        try:
            return json.loads(resp.content)
        except ValueError:
            snippet = resp.text[:80].replace("\n", " ")
            raise ProviderBadResponse(provider, f"reply is not JSON (starts with {snippet!r})") from None
