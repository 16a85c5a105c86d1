"""The door test (issue 21): a real gateway with TOOLFABRIC_AUTH_REQUIRED=true and TLS, every door open, is
asked which doors it serves (the list it publishes, and the sockets its process listens on), and each door
is tried for what the policy promises: no key and a revoked key refused, another tenant's ids "not found"
(never "forbidden"), limits applied, TLS on. A door added later is in the list (policy/listeners.py registers
every listener) and so goes through the same checks, or fails `test_the_gateway_listens_on_its_doors_only`.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx2
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from tests.integration.http_support import api_gateway, script, tenant_keys, user
from tests.integration.test_tls import Pki, make_pki
from toolfabric import Client, NotFound, ResourceExhausted
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.blob_urls import signed_url
from toolfabric_server.devstack.processes import free_port, port_open, wait_until
from toolfabric_server.devstack.stack import EmbeddedStack
from toolfabric_server.gateway.policy import doors as door_list

pytestmark = pytest.mark.integration
SECRET = "door-test-" + "x" * 40
SLOW = {"text": "<think>" + "thinking " * 2000 + "</think><answer>too late</answer>", "chunk_delay_s": 0.05}
# A tenant of its own: limit counters live in the Redis every test gateway shares.
LIMITS = {"capped": {"max_concurrent_trajectories": 1, "tool_calls_per_minute": 2}}
CODE = '<tool_call>{"name": "code", "arguments": {"code": "print(6 * 7)"}}</tool_call>'
SEARCH = '<tool_call>{"name": "text_search", "arguments": {"queries": ["Eileen Collins"]}}</tool_call>'
CROP = '<tool_call>{"name": "crop", "arguments": {"image": "<image 1>", "bbox": [0, 0, 20, 20]}}</tool_call>'
SMALL_TIFF = Path(__file__).resolve().parents[1] / "fuzz" / "corpus" / "images" / \
    "b54328fc5585367c0437dad0898300d8666e6ce4"


@dataclass
class Locked:
    doors: dict[str, door_list.Door]
    pki: Pki
    keys: dict[str, str]  # tenant → key
    revoked: str
    env: dict[str, str]  # what the gateway runs with
    grpc_target: str

    def url(self, name: str) -> str:
        return self.doors[name].address

    def client(self, tenant: str | None) -> Client:
        return Client(self.grpc_target, timeout_s=60, api_key=self.keys[tenant] if tenant else "",
                      root_certificates=self.pki.ca.read_bytes())

    def headers(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}


@pytest.fixture(scope="module")
def locked(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Locked]:
    workdir = tmp_path_factory.mktemp("doors")
    url, store, keys = tenant_keys(workdir, "acme", "globex", "capped")
    revoked, record = store.create("acme", "revoked at once")
    store.revoke(record.key_id)
    pki = make_pki(workdir)
    doors_file = workdir / "doors.json"
    env = {"TOOLFABRIC_STORE_URL": url, "TOOLFABRIC_AUTH_REQUIRED": "true", "TOOLFABRIC_AUTH_CACHE_TTL_S": "0",
           "TOOLFABRIC_BLOB_URL_SECRET": SECRET, "TOOLFABRIC_AUTH_TENANT_LIMITS": json.dumps(LIMITS),
           "TOOLFABRIC_TLS_CERT_FILE": str(pki.cert), "TOOLFABRIC_TLS_KEY_FILE": str(pki.key),
           "TOOLFABRIC_TLS_HEALTH_PORT": str(free_port()), "TOOLFABRIC_STEP_HTTP_PORT": str(free_port()),
           "TOOLFABRIC_MCP_HTTP_PORT": str(free_port()), "TOOLFABRIC_GATEWAY_BLOB_HTTP_PORT": str(free_port()),
           "TOOLFABRIC_GATEWAY_DOORS_FILE": str(doors_file),
           "TOOLFABRIC_GATEWAY_METRICS_PORT": str(free_port()), "TOOLFABRIC_GATEWAY_DECODE_TIMEOUT_S": "2"}
    with api_gateway(stack, workdir, **env) as api:
        wait_until(doors_file.exists, 30, "the gateway's list of doors")
        yield Locked({d.name: d for d in door_list.read(doors_file)}, pki, keys, revoked, stack.env() | env,
                     api.target)
    store.close()


def png(color: str = "teal", size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def listening_ports(pid: int) -> set[int]:
    """TCP ports `pid` listens on, from /proc (its socket inodes matched against the kernel's tables)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def pid_listening_on(port: int) -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if port in listening_ports(int(entry.name)):
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError(f"no process listens on {port}")


def grpc_call(target: str, ca: bytes, method: str, key: str | None) -> grpc.StatusCode:
    """`method` of the Fabric service with an empty request: the status it ends with."""
    name = method.rsplit("/", 1)[1]
    described = pb.DESCRIPTOR.services_by_name["Fabric"].methods_by_name[name]
    request_type = getattr(pb, described.input_type.name)
    metadata = (("authorization", f"Bearer {key}"),) if key else ()
    with grpc.secure_channel(target, grpc.ssl_channel_credentials(ca)) as channel:
        try:
            if described.server_streaming:
                for _ in channel.unary_stream(method, request_type.SerializeToString, lambda b: b)(
                        request_type(), metadata=metadata, timeout=30):
                    pass
            else:
                channel.unary_unary(method, request_type.SerializeToString, lambda b: b)(
                    request_type(), metadata=metadata, timeout=30)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_the_gateway_lists_every_door_it_serves(locked: Locked) -> None:
    assert set(locked.doors) == {"fabric", "health", "chat", "step", "mcp", "blobs", "metrics"}
    for door in locked.doors.values():
        # Probes and Prometheus are the plaintext, keyless doors; they serve no tenant's data.
        assert door.tls == (door.name not in ("health", "metrics")), door
        assert door.guard == {"health": "none", "metrics": "none", "blobs": "signed_url"}.get(door.name, "api_key")


def test_the_gateway_listens_on_its_doors_only(locked: Locked) -> None:
    pid = pid_listening_on(locked.doors["fabric"].port)
    assert listening_ports(pid) == {d.port for d in locked.doors.values()}


def test_no_key_and_a_revoked_key_are_refused_on_every_door(locked: Locked) -> None:
    ca = locked.pki.ca.read_bytes()
    for door in locked.doors.values():
        guarded = [r for r in door.routes if r not in door.open_routes]
        if door.guard == "none":
            assert not guarded, f"door {door.name} serves {guarded} to anyone"
            continue
        if door.guard == "signed_url":
            continue  # the blob port: test_the_blob_port_serves_only_urls_signed_with_the_secret
        for route in guarded:
            for key in (None, locked.revoked):
                if door.protocol == "grpc":
                    assert grpc_call(locked.grpc_target, ca, route, key) == grpc.StatusCode.UNAUTHENTICATED, \
                        (door.name, route, key)
                    continue
                headers = {"Authorization": f"Bearer {key}"} if key else {}
                for method in ("GET", "POST"):
                    response = requests.request(method, door.address + route, headers=headers, json={},
                                                 verify=str(locked.pki.ca), timeout=30)
                    assert response.status_code == 401, (door.name, route, method, key, response.text)
                    assert response.headers["WWW-Authenticate"] == "Bearer"
                    assert ("revoked" if key else "missing API key") in response.text
        for route in door.open_routes:  # probes answer without a key
            if door.protocol == "http":
                assert requests.get(door.address + route, verify=str(locked.pki.ca), timeout=30).status_code in \
                    (200, 503), (door.name, route)


def test_every_grpc_service_the_gateway_serves_is_on_its_door_list(locked: Locked) -> None:
    """Asked through reflection, the running gateway names its services; every method of each is a listed route,
    and every one that is not an open probe or description refuses a call without a key."""
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

    ca = locked.pki.ca.read_bytes()
    door = locked.doors["fabric"]
    with grpc.secure_channel(locked.grpc_target, grpc.ssl_channel_credentials(ca)) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = DescriptorPool(database)
        served = [f"/{name}/{m.name}" for name in database.get_services()
                  for m in pool.FindServiceByName(name).methods]
    assert served and set(served) <= set(door.routes), set(served) - set(door.routes)
    for method in served:
        if method not in door.open_routes:
            assert grpc_call(locked.grpc_target, ca, method, None) == grpc.StatusCode.UNAUTHENTICATED, method


def test_a_path_no_route_serves_asks_for_a_key_too(locked: Locked) -> None:
    """The policy runs before routing: an unknown path says nothing about what exists."""
    for door in locked.doors.values():
        if door.protocol == "http" and door.guard == "api_key":
            response = requests.post(door.address + "/no/such/route", json={}, verify=str(locked.pki.ca), timeout=30)
            assert response.status_code == 401, (door.name, response.text)


def test_the_health_port_serves_health_and_nothing_else(locked: Locked) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{locked.doors['health'].port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        for method in locked.doors["fabric"].routes:
            if method.startswith("/toolfabric."):
                with pytest.raises(grpc.RpcError) as info:
                    channel.unary_unary(method)(b"", timeout=10)
                assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED, method


def test_tls_is_on_for_every_door_but_the_probes_port(locked: Locked) -> None:
    context = ssl.create_default_context(cafile=str(locked.pki.ca))
    for door in locked.doors.values():
        if not door.tls:
            continue
        with socket.create_connection(("127.0.0.1", door.port), timeout=10) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as wrapped:
            assert wrapped.version() in ("TLSv1.2", "TLSv1.3"), door.name
        if door.protocol == "http":  # and no plaintext HTTP on the same port
            with pytest.raises(requests.exceptions.ConnectionError):
                requests.get(door.address.replace("https://", "http://") + "/", timeout=10)


def test_the_blob_port_serves_only_urls_signed_with_the_secret(locked: Locked) -> None:
    with locked.client("acme") as acme:
        result = acme.ask(script("<answer>ok</answer>"), images=[png("olive")], model="toolfabric_scripted")
    ref = result.events[0].started.images[0].blob
    base = locked.url("blobs")
    ca = str(locked.pki.ca)
    good = signed_url(ref, ttl_s=60, base_url=base, secret=SECRET, tenant="acme")
    assert requests.get(good, verify=ca, timeout=10).content == png("olive")
    # Signed with the old default secret.
    forged = signed_url(ref, ttl_s=60, base_url=base, secret="change-me-in-production", tenant="acme")
    assert requests.get(forged, verify=ca, timeout=10).status_code == 403
    assert requests.get(good.split("?")[0], verify=ca, timeout=10).status_code == 403
    # A URL is bound to its tenant: signed for globex (or for no tenant), acme's image is not there.
    for other in (signed_url(ref, ttl_s=60, base_url=base, secret=SECRET, tenant="globex"),
                  signed_url(ref, ttl_s=60, base_url=base, secret=SECRET)):
        refused = requests.get(other, verify=ca, timeout=10)
        assert refused.status_code == 404 and "forbidden" not in refused.text.lower()


def test_another_tenants_ids_are_not_found_on_every_door(locked: Locked) -> None:
    ca = str(locked.pki.ca)
    step = locked.url("step") + "/get_observation"
    with locked.client("acme") as acme, locked.client("globex") as globex:
        run = acme.ask(script("<answer>mine</answer>"), images=[png("navy")], model="toolfabric_scripted")
        blob = run.events[0].started.images[0].blob
        # acme's step trajectory with a trainer-chosen id and an image.
        first = requests.post(step, headers=locked.headers("acme"), verify=ca, timeout=60, json={
            "trajectory_ids": ["rollout-7"], "actions": [CROP],
            "extra_fields": [{"images": [data_url(png("maroon", (64, 64)))]}]}).json()
        assert first["valids"] == [True], first
        # gRPC: every read of acme's ids from globex is NOT_FOUND, and says nothing more.
        calls = {"GetTrajectory": globex.trajectory, "Cancel": globex.cancel, "Watch": lambda t: list(globex.watch(t))}
        for name, call in calls.items():
            said = []
            for tid in (run.trajectory_id, "rollout-7", "never-existed"):
                with pytest.raises(NotFound) as info:
                    call(tid)
                said.append(str(info.value).replace(tid, "ID"))
            # No oracle: another tenant's id is answered exactly like an id that never existed.
            assert said[0] == said[1] == said[2] and "forbidden" not in said[0].lower(), (name, said)
        with pytest.raises(NotFound):
            globex.image(blob)
        # acme reads its own step trajectory by the id it chose.
        assert acme.trajectory("rollout-7").tenant == "acme"
        # globex's "rollout-7" is another trajectory: acme's <image 1> is not there to crop.
        theirs = requests.post(step, headers=locked.headers("globex"), verify=ca, timeout=60,
                               json={"trajectory_ids": ["rollout-7"], "actions": [CROP]}).json()
        assert "image" not in json.dumps(theirs["observations"][0]) or "maroon" not in str(theirs)
        assert "<image 1>" in json.dumps(theirs["observations"]) and theirs["valids"] == [True]
        assert "error" in json.dumps(theirs["observations"]).lower()
        # A step naming acme's Run id writes into globex's namespace, never into acme's record.
        requests.post(step, headers=locked.headers("globex"), verify=ca, timeout=60,
                      json={"trajectory_ids": [run.trajectory_id], "actions": [CODE]})
        assert acme.trajectory(run.trajectory_id).answer == "mine"
        # acme itself cannot turn its Run into a step trajectory either.
        own = requests.post(step, headers=locked.headers("acme"), verify=ca, timeout=60,
                            json={"trajectory_ids": [run.trajectory_id], "actions": [CODE]}).json()
        assert own["valids"] == [False] and "not started by the step API" in own["observations"][0]
        # HTTP chat: continuing acme's conversation from globex finds nothing.
        response = requests.post(locked.url("chat") + "/v1/chat/completions", headers=locked.headers("globex"),
                                 verify=ca, timeout=60, json={
                                     "model": "test/scripted", "messages": [user(script("<answer>x</answer>"))],
                                     "toolfabric": {"parent_trajectory_id": run.trajectory_id}})
        assert response.status_code in (400, 404) and "forbidden" not in response.text.lower()


def test_the_store_fallback_checks_the_owner_too(locked: Locked) -> None:
    import redis

    with locked.client("acme") as acme, locked.client("globex") as globex:
        run = acme.ask(script("<answer>kept</answer>"), model="toolfabric_scripted")
        wait_until(lambda: bool(acme.list_trajectories(question="kept").trajectories), 30, "the store's copy")
        client = redis.Redis.from_url(locked.env["TOOLFABRIC_REDIS_URL"])
        client.delete(f"toolfabric:trajectory:{run.trajectory_id}", f"toolfabric:trajectory:{run.trajectory_id}:events")
        client.close()
        assert acme.trajectory(run.trajectory_id).answer == "kept"  # from the store
        with pytest.raises(NotFound):
            globex.trajectory(run.trajectory_id)


def test_delete_means_gone_from_every_tier(locked: Locked) -> None:
    import redis

    with locked.client("acme") as acme:
        run = acme.ask(script(SEARCH, "<answer>to delete</answer>"), images=[png("purple", (33, 21))],
                       model="toolfabric_scripted")
        blob = run.events[0].started.images[0].blob
        client = redis.Redis.from_url(locked.env["TOOLFABRIC_REDIS_URL"])
        used = f"toolfabric:cache:used:{run.trajectory_id}"
        cached = [k.decode() for k in client.smembers(used)]
        assert cached, "the search's cache entry is remembered under the trajectory"
        assert client.exists(*(f"toolfabric:cache:v:{k}" for k in cached))
        wait_until(lambda: bool(acme.list_trajectories(question="to delete").trajectories), 30, "the store's copy")
        deleted = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "store", "delete", run.trajectory_id],
                                 env=locked.env, capture_output=True, text=True, timeout=120)
        assert deleted.returncode == 0, deleted.stderr
        assert "deleted 1 trajectories (1 from the store, 1 from Redis) and 1 images" in deleted.stdout
        with pytest.raises(NotFound):
            acme.trajectory(run.trajectory_id)
        with pytest.raises(NotFound):
            acme.image(blob)
        # The tool results its calls used are gone from the cache too (hot tier here; tests/store the persistent).
        assert "tool-result cache entries" in deleted.stdout, deleted.stdout
        assert not client.exists(used, *(f"toolfabric:cache:v:{k}" for k in cached))
        client.close()


def test_limits_apply_on_every_door(locked: Locked) -> None:
    ca, headers = str(locked.pki.ca), locked.headers("capped")
    with locked.client("capped") as limited:
        events = limited.events(script(SLOW), model="toolfabric_scripted")
        first = next(iter(events))  # the tenant's one concurrent trajectory
        try:
            with pytest.raises(ResourceExhausted, match="already runs 1"):
                limited.step(["s-1"], [CODE])
            step = requests.post(locked.url("step") + "/get_observation", headers=headers, verify=ca, timeout=60,
                                 json={"trajectory_ids": ["s-1"], "actions": [CODE]})
            assert step.status_code == 429 and "already runs 1" in step.text and int(step.headers["Retry-After"]) >= 1
            chat = requests.post(locked.url("chat") + "/v1/chat/completions", headers=headers, verify=ca, timeout=60,
                                 json={"model": "test/scripted", "messages": [user(script("<answer>x</answer>"))]})
            assert chat.status_code == 429
            assert "already runs 1" in asyncio.run(mcp_call(locked, "capped", "code", {"code": "print(1)"}))
        finally:
            limited.cancel(first.trajectory_id)
            events.close()
    # Tool calls per minute: the step API's calls count, and stop at the limit (2) like a Run's.
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)

    def step(tid: str, action: str) -> requests.Response:
        deadline = time.monotonic() + 10
        while True:  # the cancelled trajectory's slot is released a moment after Cancel answers
            response = requests.post(locked.url("step") + "/get_observation", headers=headers, verify=ca,
                                     timeout=60, json={"trajectory_ids": [tid], "actions": [action]})
            if "already runs" not in response.text or time.monotonic() > deadline:
                return response
            time.sleep(0.2)

    # A call refused before it is sent (bad arguments) never ran: it does not count against the minute's calls.
    bad = step(f"refused-{time.time_ns()}", '<tool_call>{"name": "code", "arguments": {"nope": 1}}</tool_call>')
    assert "invalid arguments for code" in json.dumps(bad.json()["observations"]), bad.text
    ran, refused = 0, 0
    for n in range(5):
        response = step(f"calls-{n}-{time.time_ns()}", CODE)
        if response.status_code == 429:
            assert "tool calls this minute" in response.text
            refused += 1
        elif "42" in json.dumps(response.json()["observations"]):
            ran += 1
    assert ran == 2 and refused == 3


async def mcp_call(locked: Locked, tenant: str, tool: str, arguments: dict[str, Any]) -> str:
    context = ssl.create_default_context(cafile=str(locked.pki.ca))
    async with httpx2.AsyncClient(headers=locked.headers(tenant), verify=context, timeout=60) as http, \
            streamable_http_client(locked.url("mcp") + "/mcp", http_client=http) as (read, write, *_), \
            ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool(tool, arguments)
    return "\n".join(getattr(c, "text", "") for c in result.content)


def test_mcp_sessions_belong_to_their_tenant(locked: Locked) -> None:
    assert "42" in asyncio.run(mcp_call(locked, "acme", "code", {"code": "print(6 * 7)"}))
    no_key = requests.post(locked.url("mcp") + "/mcp", verify=str(locked.pki.ca), timeout=30,
                           json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}})
    assert no_key.status_code == 401
    # acme opens a session; globex presenting its id is answered like an id that never existed.
    ca, url = str(locked.pki.ca), locked.url("mcp") + "/mcp"
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    opened = requests.post(url, headers=locked.headers("acme") | accept, verify=ca, timeout=30, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    session = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    answers = {}
    for who, sid in (("globex", session), ("globex", "0" * len(session))):
        answers[sid == session] = requests.post(url, headers=locked.headers(who) | accept | {
            "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18"}, verify=ca, timeout=30, json=listing)
    assert answers[True].status_code == answers[False].status_code == 404
    assert answers[True].text == answers[False].text
    # globex cannot end acme's session either; acme's session still answers acme.
    requests.delete(url, headers=locked.headers("globex") | {"mcp-session-id": session}, verify=ca, timeout=30)
    mine = requests.post(url, headers=locked.headers("acme") | accept | {
        "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}, verify=ca, timeout=30, json=listing)
    assert mine.status_code == 200 and "add_image" in mine.text, mine.text


def test_health_stays_fast_while_hostile_images_are_refused(locked: Locked) -> None:
    tiff = SMALL_TIFF.read_bytes()
    ca, stop, refusals = str(locked.pki.ca), threading.Event(), []

    def hostile(door: str) -> None:
        while not stop.is_set():
            if door == "step":
                reply = requests.post(locked.url("step") + "/get_observation", headers=locked.headers("acme"),
                                      verify=ca, timeout=60, json={
                                          "trajectory_ids": [f"tiff-{time.monotonic_ns()}"], "actions": [CODE],
                                          "extra_fields": [{"images": [base64.b64encode(tiff).decode()]}]}).json()
                refusals.append("TOOLFABRIC_MAX_IMAGE_PIXELS_PER_BYTE" in reply["observations"][0])
            else:
                reply = requests.post(locked.url("chat") + "/v1/chat/completions", headers=locked.headers("acme"),
                                      verify=ca, timeout=60, json={"model": "test/scripted", "messages": [
                                          user("what is this?", tiff)]})
                refusals.append(reply.status_code == 400 and "TOOLFABRIC_MAX_IMAGE_PIXELS_PER_BYTE" in reply.text)

    def health_latencies(n: int) -> list[float]:
        with grpc.insecure_channel(f"127.0.0.1:{locked.doors['health'].port}") as channel:
            check = health_pb2_grpc.HealthStub(channel).Check
            check(health_pb2.HealthCheckRequest(), timeout=10)
            out = []
            for _ in range(n):
                started = time.perf_counter()
                check(health_pb2.HealthCheckRequest(), timeout=10)
                out.append(time.perf_counter() - started)
                time.sleep(0.05)
            return out

    quiet = health_latencies(20)  # the baseline, in the same run: what the machine's load alone costs
    threads = [threading.Thread(target=hostile, args=(d,)) for d in ("step", "chat", "step", "chat")]
    for t in threads:
        t.start()
    try:
        latencies = health_latencies(40)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert refusals and all(refusals), refusals
    print(f"health p50 {statistics.median(latencies) * 1000:.1f} ms (quiet: {statistics.median(quiet) * 1000:.1f} ms),"
          f" p90 {sorted(latencies)[int(0.9 * len(latencies))] * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms, "
          f"{len(refusals)} hostile images refused, load {os.getloadavg()[0]:.1f}")
    assert statistics.median(latencies) < 0.1 and sorted(latencies)[int(0.9 * len(latencies))] < 0.1


def test_a_locked_gateway_refuses_to_start_with_the_default_blob_secret(locked: Locked) -> None:
    env = locked.env | {"TOOLFABRIC_BLOB_URL_SECRET": "change-me-in-production",
                        "TOOLFABRIC_GATEWAY_PORT": str(free_port())}
    started = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "gateway"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert started.returncode != 0
    lines = [line for line in started.stderr.strip().splitlines() if line.strip()]
    assert "TOOLFABRIC_BLOB_URL_SECRET is the shipped default" in lines[-1] and "Traceback" not in started.stderr
    short = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "gateway"], capture_output=True, text=True,
                           env=env | {"TOOLFABRIC_BLOB_URL_SECRET": "short"}, timeout=120)
    assert short.returncode != 0 and "TOOLFABRIC_BLOB_URL_SECRET is only 5 characters" in short.stderr


def test_the_chat_and_step_doors_wait_in_the_gateways_admission_queue_like_run(stack: EmbeddedStack,
                                                                              tmp_path: Path) -> None:
    """One queue for the gateway, whichever door work comes through: a full gateway refuses chat and step requests
    with 429 and a retry hint as it refuses Run with RESOURCE_EXHAUSTED, and a chat turn holds its slot until it
    ends."""
    step_port = free_port()
    busy = {"TOOLFABRIC_GATEWAY_MAX_RUNNING": "1", "TOOLFABRIC_GATEWAY_ADMISSION_QUEUE": "0",
            "TOOLFABRIC_GATEWAY_ADMISSION_WAIT_S": "1", "TOOLFABRIC_STEP_HTTP_PORT": str(step_port)}
    chat = {"model": "test/scripted", "messages": [user(script("<answer>x</answer>"))]}
    with api_gateway(stack, tmp_path, **busy) as api, Client(api.target, timeout_s=60) as client:
        wait_until(lambda: port_open(step_port), 30, "the step door")
        events = client.events(script(SLOW), model="toolfabric_scripted")
        first = next(iter(events))  # the gateway's one slot
        try:
            refused = requests.post(api.url + "/v1/chat/completions", json=chat, timeout=60)
            assert refused.status_code == 429 and "gateway busy" in refused.text, refused.text
            assert int(refused.headers["Retry-After"]) >= 1
            step = requests.post(f"http://127.0.0.1:{step_port}/get_observation", timeout=60,
                                 json={"trajectory_ids": ["busy-1"], "actions": [CODE]})
            assert step.status_code == 429 and "gateway busy" in step.text, step.text
            assert int(step.headers["Retry-After"]) >= 1
        finally:
            client.cancel(first.trajectory_id)
            events.close()
        deadline = time.monotonic() + 10
        while (answered := requests.post(api.url + "/v1/chat/completions", json=chat, timeout=60)).status_code == 429:
            assert time.monotonic() < deadline, "the cancelled Run's slot was never released"
            time.sleep(0.2)
        assert answered.status_code == 200
        # A streamed chat turn holds the slot while it streams: Run is refused meanwhile, and admitted after.
        with requests.post(api.url + "/v1/chat/completions", stream=True, timeout=60,
                           json={"model": "test/scripted", "stream": True,
                                 "messages": [user(script(SLOW))]}) as streaming:
            assert streaming.status_code == 200
            lines = streaming.iter_lines()  # kept: closing this generator would close the connection
            assert b"thinking" in b"".join(line for _, line in zip(range(6), lines))
            with pytest.raises(ResourceExhausted, match="gateway busy"):
                client.ask(script("<answer>x</answer>"), model="toolfabric_scripted")
        deadline = time.monotonic() + 10
        while True:  # the client went away: its trajectory is cancelled and the slot released
            try:
                assert client.ask(script("<answer>x</answer>"), model="toolfabric_scripted").answer == "x"
                break
            except ResourceExhausted:
                assert time.monotonic() < deadline, "the streamed chat turn kept its slot"
                time.sleep(0.2)


def test_no_secret_reaches_a_log_line(locked: Locked, stack: EmbeddedStack, tmp_path: Path) -> None:
    """A locked gateway logging at DEBUG is called with keys, a revoked key, signed URLs and a tool call whose URL
    carries credentials: no key, secret or credential appears in any log line of it or of the stack's workers."""
    step_port, blob_port = free_port(), free_port()
    env = {name: locked.env[name] for name in ("TOOLFABRIC_STORE_URL", "TOOLFABRIC_AUTH_REQUIRED",
                                               "TOOLFABRIC_AUTH_CACHE_TTL_S", "TOOLFABRIC_BLOB_URL_SECRET")}
    env |= {"TOOLFABRIC_LOG_LEVEL": "DEBUG", "TOOLFABRIC_STEP_HTTP_PORT": str(step_port),
            "TOOLFABRIC_GATEWAY_BLOB_HTTP_PORT": str(blob_port)}
    visit = ('<tool_call>{"name": "web_visit", "arguments": {"urls": ['
             '"https://door-user:pw-in-url@example.invalid/x?token=tok-in-url&sig=sig-in-url"]}}</tool_call>')
    with api_gateway(stack, tmp_path, **env) as api:
        wait_until(lambda: port_open(step_port), 30, "the step door")
        step = f"http://127.0.0.1:{step_port}/get_observation"
        reply = requests.post(step, headers=locked.headers("acme"), timeout=120, json={
            "trajectory_ids": [f"creds-{time.time_ns()}"], "actions": [visit],
            "extra_fields": [{"images": [data_url(png("gold"))]}]})
        assert reply.status_code == 200, reply.text
        for key in (locked.revoked, "tfk_000000000000_" + "x" * 43):
            assert requests.post(step, headers={"Authorization": f"Bearer {key}"}, json={},
                                 timeout=30).status_code == 401
        assert requests.get(api.url + "/v1/models", headers=locked.headers("globex"), timeout=30).status_code == 200
        with Client(api.target, timeout_s=60, api_key=locked.keys["acme"]) as acme:
            run = acme.ask(script("<answer>ok</answer>"), images=[png("lime")], model="toolfabric_scripted")
        url = signed_url(run.events[0].started.images[0].blob, ttl_s=60, base_url=f"http://127.0.0.1:{blob_port}",
                         secret=SECRET, tenant="acme")
        assert requests.get(url, timeout=30).status_code == 200
        assert requests.get(url.replace("t=acme", "t=globex"), timeout=30).status_code == 403
        time.sleep(1)  # the last lines are written
    logs = [*tmp_path.glob("gateway-*.log"), *(stack.workdir / "logs").glob("*.log")]
    assert logs[0].name.startswith("gateway-") and "DEBUG" in logs[0].read_text(), logs
    secrets = [SECRET, locked.revoked, *locked.keys.values(), "pw-in-url", "tok-in-url", "sig-in-url",
               url.rsplit("sig=", 1)[1]]
    # The secret part of a key (after its public id) must not appear even alone.
    secrets += [key.rsplit("_", 1)[-1] for key in (locked.revoked, *locked.keys.values())]
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"{path.name} holds a secret ({secret[:6]}…)"
