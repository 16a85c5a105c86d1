"""Per-tenant limits.

Limits (settings: `TOOLFABRIC_AUTH_DEFAULT_LIMITS`, `TOOLFABRIC_AUTH_TENANT_LIMITS`), kept in Redis so
every gateway replica shares them:
- concurrent trajectories: a sorted set of running trajectory ids, each expiring at its deadline (a
  crashed replica's entries age out instead of leaking);
- tool calls per minute: a counter per minute window; a turn is refused when the window is used up
  and otherwise gets at most the calls left in it as its tool-call budget;
- provider cost units per day (UTC): summed from each turn's usage, checked when a turn starts;
- max budgets: a turn's steps, tool calls and deadline are capped at the tenant's maxima.
Over a limit is `LimitExceeded` with a retry hint, counted per tenant in the metrics. A limit a tenant does not
have costs no Redis round trip (no slot kept, no counter kept): the step API pays these per request. The step API's
calls pass the same limits (`calls_left`, `take_slot`) as a Run's turns; a call counts once it was sent
(its observation's `attempts` > 0), never when it was refused.
"""

from __future__ import annotations

import datetime as dt
import time

import redis.asyncio as aredis

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.telemetry import metrics
from toolfabric_server.engine.spec import RunSpec
from toolfabric_server.gateway.exceptions import LimitExceeded
from toolfabric_server.gateway.policy.authentication import Principal
from toolfabric_server.gateway.settings import AuthSettings

_PREFIX = "toolfabric:tenant:"
# Atomically: drop expired entries, refuse if at the limit, else add this trajectory.
_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local limit = tonumber(ARGV[3])
if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def _key(tenant: str, *parts: str) -> str:
    return _PREFIX + ":".join((tenant or "-", *parts))


def _minute(now: float) -> str:
    return str(int(now // 60))


def _day(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%d")


class Limits:
    def __init__(self, redis_client: aredis.Redis, settings: AuthSettings) -> None:
        self._redis, self._settings = redis_client, settings
        self._admit = redis_client.register_script(_ADMIT)

    # -- limits
    async def admit(self, principal: Principal, spec: RunSpec) -> None:
        """Caps the turn's budgets at the tenant's limits and takes a concurrency slot, or LimitExceeded."""
        limits = self._settings.limits(principal.tenant)
        tenant, now = principal.tenant, time.time()
        if limits.max_steps:
            spec.max_steps = min(spec.max_steps, limits.max_steps)
        if limits.max_tool_calls:
            spec.max_tool_calls = min(spec.max_tool_calls, limits.max_tool_calls)
        if limits.max_deadline_s:
            spec.deadline_s = min(spec.deadline_s, limits.max_deadline_s)
        if limits.cost_units_per_day:
            spent = float(await self._redis.get(_key(tenant, "cost", _day(now))) or 0)
            if spent >= limits.cost_units_per_day:
                midnight = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
                retry = (midnight + dt.timedelta(days=1)).timestamp() - now
                self._refuse(tenant, "cost_units_per_day", retry,
                             f"tenant {tenant!r} has spent {spent:g} of its {limits.cost_units_per_day:g} provider "
                             "cost units today (UTC)")
        left = await self.calls_left(principal)
        if left is not None:
            spec.max_tool_calls = min(spec.max_tool_calls, left)
        await self.take_slot(principal, spec.trajectory_id, spec.deadline_s + 60)
        metrics.tenant_trajectory(tenant)

    async def count_calls(self, principal: Principal, n: int) -> None:
        tenant = principal.tenant
        if self._settings.limits(tenant).tool_calls_per_minute:  # the counter is read only to enforce that limit
            key = _key(tenant, "tool_calls", _minute(time.time()))
            pipe = self._redis.pipeline(transaction=False)
            pipe.incrby(key, n)
            pipe.expire(key, 120)
            await pipe.execute()
        for _ in range(n):
            metrics.tenant_tool_call(tenant)

    async def calls_left(self, principal: Principal) -> int | None:
        """Tool calls the tenant may still make this minute (None: no such limit), or LimitExceeded at 0."""
        limit, now = self._settings.limits(principal.tenant).tool_calls_per_minute, time.time()
        if not limit:
            return None
        used = int(await self._redis.get(_key(principal.tenant, "tool_calls", _minute(now))) or 0)
        if used >= limit:
            self._refuse(principal.tenant, "tool_calls_per_minute", 60 - now % 60,
                         f"tenant {principal.tenant!r} has made {used} tool calls this minute, its limit is {limit}")
        return limit - used

    async def take_slot(self, principal: Principal, slot_id: str, hold_s: float) -> None:
        """A concurrency slot for `slot_id` (a trajectory, or one step request) for at most `hold_s`, or
        LimitExceeded when the tenant already runs its `max_concurrent_trajectories`."""
        limit, now = self._settings.limits(principal.tenant).max_concurrent_trajectories, time.time()
        if not limit:  # nothing to enforce: no Redis round trip (and none to release it)
            return
        admitted = await self._admit(keys=[_key(principal.tenant, "running")],
                                     args=[now, now + hold_s, limit, slot_id, int(hold_s) + 60])
        if not admitted:
            self._refuse(principal.tenant, "max_concurrent_trajectories", 5.0,
                         f"tenant {principal.tenant!r} already runs {limit} trajectories, its limit")

    def _refuse(self, tenant: str, limit: str, retry_after_s: float, message: str) -> None:
        metrics.tenant_limited(tenant, limit)
        retry = max(1, int(retry_after_s + 0.999))
        raise LimitExceeded(f"{message}; retry in {retry}s", retry, limit)

    async def release(self, principal: Principal, trajectory_id: str) -> None:
        if not self._settings.limits(principal.tenant).max_concurrent_trajectories:
            return  # take_slot kept nothing
        await self._redis.zrem(_key(principal.tenant, "running"), trajectory_id)

    async def observe(self, principal: Principal, event: pb.RunEvent) -> None:
        """Counts what a running turn (or a step) uses."""
        kind = event.WhichOneof("event")
        tenant, now = principal.tenant, time.time()
        if kind == "observation" and event.observation.attempts > 0:
            # Only calls that were sent count: one refused (budget, bad arguments, no worker) never ran.
            await self.count_calls(principal, 1)
        elif kind == "usage" and event.usage.counters.get("cost_units"):
            cost = event.usage.counters["cost_units"]
            key = _key(tenant, "cost", _day(now))
            pipe = self._redis.pipeline(transaction=False)
            pipe.incrbyfloat(key, cost)
            pipe.expire(key, 2 * 86400)
            await pipe.execute()
            metrics.tenant_cost(tenant, cost)
