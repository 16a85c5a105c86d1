"""API keys in a real SQLite store, the authenticator in front of it, and tenant limits on a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aredis
import sqlalchemy as sa

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.api_keys import ApiKeyStore, KeyRejected
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.engine.spec import RunSpec
from toolfabric_server.gateway.exceptions import LimitExceeded, NotYours, Unauthenticated
from toolfabric_server.gateway.policy.authentication import Authenticator, Principal
from toolfabric_server.gateway.policy.limits import Limits
from toolfabric_server.gateway.policy.ownership import Ownership, scoped, unscoped
from toolfabric_server.gateway.settings import AuthSettings, TenantLimits


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ApiKeyStore]:
    keys = ApiKeyStore(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    yield keys
    keys.close()


def test_keys_are_stored_hashed_and_verify_to_their_tenant(store: ApiKeyStore, tmp_path: Path) -> None:
    key, record = store.create("acme", "ci")
    assert store.verify(key).tenant == "acme"
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    with engine.connect() as con:
        stored = con.execute(sa.text("select * from api_keys")).mappings().one()
    engine.dispose()
    assert key not in str(dict(stored)) and key.split("_", 2)[2] not in str(dict(stored))  # the secret may hold "_"
    assert stored["key_id"] == record.key_id and len(stored["key_hash"]) == 64


def test_the_table_is_created_once_beside_other_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    engine = sa.create_engine(url)
    with engine.begin() as con:
        con.execute(sa.text("create table trajectories (id text primary key)"))
    engine.dispose()
    first = ApiKeyStore(url)
    key, _ = first.create("acme")
    first.close()
    again = ApiKeyStore(url)  # idempotent: the existing table and its keys stay
    assert again.verify(key).tenant == "acme"
    again.close()


@pytest.mark.parametrize(("mangle", "message"), [
    (lambda k: "sk-" + k, "malformed"), (lambda k: k[:-2] + "zz", "invalid API key"),
    (lambda k: "tfk_000000000000_" + k.split("_", 2)[2], "invalid API key"),
])
def test_malformed_and_wrong_keys_are_rejected(store: ApiKeyStore, mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    key, _ = store.create("acme")
    with pytest.raises(KeyRejected, match=message):
        store.verify(mangle(key))


def test_revoked_keys_are_rejected_and_listed_as_revoked(store: ApiKeyStore) -> None:
    key, record = store.create("acme")
    other, _ = store.create("globex")
    assert store.revoke(key)  # the whole key works as well as its id
    assert not store.revoke(record.key_id)
    with pytest.raises(KeyRejected, match="revoked"):
        store.verify(key)
    assert store.verify(other).tenant == "globex"
    assert [k.revoked_at is not None for k in store.list("acme")] == [True]


def test_tenant_names_are_checked(store: ApiKeyStore) -> None:
    with pytest.raises(ValueError, match="tenant"):
        store.create("Bad Tenant")


async def test_authenticator_caches_for_its_ttl_and_then_sees_revocation(store: ApiKeyStore) -> None:
    key, record = store.create("acme")
    auth = Authenticator(AuthSettings(required=True, cache_ttl_s=1.0), store)
    assert await auth.authenticate(f"Bearer {key}") == Principal("acme", record.key_id)
    store.revoke(record.key_id)
    assert (await auth.authenticate(f"bearer {key}")).tenant == "acme"  # cached
    await asyncio.sleep(1.05)  # the cache lifetime passes
    with pytest.raises(Unauthenticated, match="revoked"):
        await auth.authenticate(f"Bearer {key}")
    for bad, message in ((None, "missing"), ("Basic abc", "Bearer"), ("Bearer ", "Bearer")):
        with pytest.raises(Unauthenticated, match=message):
            await auth.authenticate(bad)


async def test_authenticator_off_trusts_everyone_as_one_tenant() -> None:
    assert await Authenticator(AuthSettings(required=False), None).authenticate(None) == Principal("")


def spec(tid: str = "t1", **budgets: float) -> RunSpec:
    return RunSpec(trajectory_id=tid, question="q", mode="general", model="m", max_steps=int(budgets.get("steps", 16)),
                   max_tool_calls=int(budgets.get("calls", 48)), deadline_s=budgets.get("deadline", 300.0),
                   sampling={})


@pytest.fixture
async def redis_async(redis_server: RedisServer) -> aredis.Redis:
    client = aredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


async def test_cost_units_per_day_refuse_until_utc_midnight(redis_async: aredis.Redis) -> None:
    limits = AuthSettings(required=True, tenant_limits={"acme": TenantLimits(cost_units_per_day=3)})
    tenants = Limits(redis_async, limits)
    acme = Principal("acme")
    await tenants.admit(acme, spec("t1"))
    await tenants.observe(acme, pb.RunEvent(usage=pb.Usage(counters={"cost_units": 3.5})))
    await tenants.release(acme, "t1")
    with pytest.raises(LimitExceeded) as info:
        await tenants.admit(acme, spec("t2"))
    assert info.value.limit == "cost_units_per_day" and "3.5 of its 3" in str(info.value)
    assert 1 <= info.value.retry_after_s <= 86400
    assert info.value.retry_after_s == pytest.approx(86400 - time.time() % 86400, abs=5)
    await tenants.admit(Principal("globex"), spec("t3"))  # other tenants have their own budget


async def test_budgets_are_capped_at_the_tenants_maxima(redis_async: aredis.Redis) -> None:
    limits = AuthSettings(default_limits=TenantLimits(max_steps=4, max_tool_calls=5, max_deadline_s=30))
    asked = spec(steps=10, calls=3, deadline=600)
    await Limits(redis_async, limits).admit(Principal("acme"), asked)
    assert (asked.max_steps, asked.max_tool_calls, asked.deadline_s) == (4, 3, 30)


async def test_concurrency_slots_are_released_and_expire(redis_async: aredis.Redis) -> None:
    tenants = Limits(redis_async, AuthSettings(default_limits=TenantLimits(max_concurrent_trajectories=1)))
    acme = Principal("acme")
    await tenants.admit(acme, spec("t1", deadline=0.5))
    with pytest.raises(LimitExceeded, match="already runs 1"):
        await tenants.admit(acme, spec("t2"))
    await tenants.release(acme, "t1")
    await tenants.admit(acme, spec("t2"))
    # A slot whose holder vanished without releasing frees itself after its deadline (+60 s of slack).
    await redis_async.zadd("toolfabric:tenant:acme:running", {"t2": time.time() - 1})
    await tenants.admit(acme, spec("t3"))


async def test_isolation_follows_the_recorded_tenant_and_the_images_seen(redis_async: aredis.Redis) -> None:
    from toolfabric_server.gateway.recorder import TrajectoryRecorder

    owners = Ownership(redis_async, True, 60)
    await TrajectoryRecorder(redis_async, "t1", 60).begin("q", pb.MODE_GENERAL, "m", tenant="acme")
    await owners.observe(Principal("acme"), pb.RunEvent(started=pb.TrajectoryStarted(
        images=[pb.ImageRef(name="<image 1>", blob="sha256:aa")])))
    await owners.check_trajectory(Principal("acme"), "t1")
    await owners.check_image(Principal("acme"), "sha256:aa")
    with pytest.raises(NotYours):
        await owners.check_trajectory(Principal("globex"), "t1")
    with pytest.raises(NotYours):
        await owners.check_image(Principal("globex"), "sha256:aa")
    await owners.check_trajectory(Principal("globex"), "unknown")  # not found is the caller's to report


def test_ids_are_namespaced_by_tenant_and_come_back_as_the_caller_named_them() -> None:
    acme, globex, anyone = Principal("acme"), Principal("globex"), Principal("")
    assert scoped(acme, "rollout-7") == "acme/rollout-7" != scoped(globex, "rollout-7") == "globex/rollout-7"
    assert scoped(acme, "acme/rollout-7") == "acme/rollout-7"  # an id handed out already scoped is kept
    assert scoped(globex, "acme/rollout-7") == "globex/acme/rollout-7"  # never into another tenant's space
    assert scoped(anyone, "rollout-7") == "rollout-7"  # the open default: stored data keeps its ids
    assert unscoped(acme, scoped(acme, "rollout-7")) == "rollout-7"


async def test_a_stored_record_passes_the_same_owner_check(redis_async: aredis.Redis) -> None:
    owners = Ownership(redis_async, True, 60)
    mine = pb.Trajectory(trajectory_id="acme/t", tenant="acme")
    owners.check_record(Principal("acme"), mine)
    with pytest.raises(NotYours, match="no trajectory"):
        owners.check_record(Principal("globex"), mine)
    labelled = pb.Trajectory(trajectory_id="t", labels={"toolfabric.tenant": "acme"})  # older rows: the label
    with pytest.raises(NotYours):
        owners.check_record(Principal("globex"), labelled)
