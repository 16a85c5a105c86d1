"""The policy every door passes through, built once per gateway process.

A door translates its protocol and asks the policy: who is calling (`authenticate`, or the gRPC
interceptor / HTTP middleware that do it for a whole door), which stored id a name means for that
caller (`scoped`), whether the caller owns what it names (`ownership`), whether its tenant may start
more work (`limits`, `step_request`), whether the gateway has room (`admission`), and where to listen
(policy/listeners.py, which reads the TLS settings). No door decides any of these itself.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import redis.asyncio as aredis
from starlette.types import ASGIApp

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.api_keys import store_url
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.gateway.admission import Admission, AdmissionRefused
from toolfabric_server.gateway.exceptions import LimitExceeded
from toolfabric_server.gateway.policy import secrets
from toolfabric_server.gateway.policy.authentication import Authenticator, Principal, make_authenticator
from toolfabric_server.gateway.policy.doors import Doors, Guard
from toolfabric_server.gateway.policy.grpc import PolicyInterceptor
from toolfabric_server.gateway.policy.http import ErrorBody, RequireKey, plain_error
from toolfabric_server.gateway.policy.limits import Limits
from toolfabric_server.gateway.policy.ownership import Ownership, scoped
from toolfabric_server.gateway.settings import AuthSettings, GatewaySettings
from toolfabric_server.store.settings import StoreSettings


class Policy:
    def __init__(self, authenticator: Authenticator, limits: Limits, ownership: Ownership, admission: Admission,
                 step_hold_s: float) -> None:
        self.authenticator, self.limits, self.ownership, self.admission = authenticator, limits, ownership, admission
        self.doors = Doors()
        self._step_hold_s = step_hold_s

    @property
    def required(self) -> bool:
        return self.authenticator.required

    @property
    def guard(self) -> Guard:
        return "api_key" if self.required else "none"

    async def authenticate(self, authorization: str | None) -> Principal:
        return await self.authenticator.authenticate(authorization)

    def interceptor(self) -> PolicyInterceptor:
        return PolicyInterceptor(self.authenticator)

    def http(self, app: ASGIApp, open_paths: tuple[str, ...] = (), error_body: ErrorBody = plain_error) -> RequireKey:
        """`app` behind the policy: every path but `open_paths` needs a valid key."""
        return RequireKey(app, self.authenticator, open_paths, error_body)

    scoped = staticmethod(scoped)

    async def observe(self, principal: Principal, event: pb.RunEvent) -> None:
        """What a running trajectory (Run or step) uses and sees: counted, and its images made the tenant's."""
        if event.HasField("text"):  # most events, and nothing in them to count or own
            return
        await self.limits.observe(principal, event)
        await self.ownership.observe(principal, event)

    @contextlib.asynccontextmanager
    async def step_request(self, principal: Principal) -> AsyncIterator[int | None]:
        """One step-API request (HTTP, gRPC or MCP) of `principal`: it holds one of the tenant's concurrency
        slots and one of the gateway's admission slots (the queue gRPC Run and chat wait in) while it runs,
        and yields the tool calls the tenant may still make this minute (None: no limit). LimitExceeded when
        a limit is reached or the gateway is full."""
        left = await self.limits.calls_left(principal)
        slot = f"step:{uuid.uuid4()}"
        await self.limits.take_slot(principal, slot, self._step_hold_s)
        try:
            async with contextlib.AsyncExitStack() as admitted:
                try:
                    await admitted.enter_async_context(self.admission.slot())
                except AdmissionRefused as exc:  # every step door already answers LimitExceeded (429, …)
                    raise LimitExceeded(str(exc), exc.retry_after_s, "gateway_admission") from None
                yield left
        finally:
            await self.limits.release(principal, slot)


def make_policy(redis_client: aredis.Redis, auth: AuthSettings, common: CommonSettings, gw: GatewaySettings,
                store: StoreSettings) -> Policy:
    """The gateway's policy from its settings; ConfigurationError (one line) for settings it refuses."""
    secrets.check(auth, common)
    keys = store_url(store.url.get_secret_value(), common.data_dir)
    return Policy(make_authenticator(auth, keys), Limits(redis_client, auth),
                  Ownership(redis_client, auth.required, max(common.blob_ttl_s, gw.trajectory_ttl_s)),
                  Admission(gw.max_running, gw.admission_queue, gw.admission_wait_s, gw.admission_max_lag_s,
                            gw.admission_min_running),
                  gw.tool_timeout_s * 2 + 60)
