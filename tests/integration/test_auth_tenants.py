"""API keys, tenants, limits and isolation through a real gateway with auth on: every RPC and endpoint
with missing, wrong, revoked and malformed keys, across tenants, and over each tenant limit."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from tests.integration.http_support import Api, api_gateway, script, tenant_keys, user
from toolfabric import Client, NotFound, ResourceExhausted, Unauthenticated
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.common.api_keys import ApiKeyStore
from toolfabric_server.devstack.processes import free_port
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration
SLOW = {"text": "<think>" + "thinking " * 2000 + "</think><answer>too late</answer>", "chunk_delay_s": 0.01}
LIMITS = {"limited": {"max_concurrent_trajectories": 1, "tool_calls_per_minute": 2, "max_steps": 2}}
SEARCH = '<tool_call>{"name": "text_search", "arguments": {"queries": ["Eileen Collins"]}}</tool_call>'


@dataclass
class Secured:
    api: Api
    env: dict[str, str]  # what the gateway runs with (for the CLI)
    store: ApiKeyStore
    metrics_url: str
    keys: dict[str, str]  # tenant → key


@pytest.fixture(scope="module")
def secured(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    workdir = tmp_path_factory.mktemp("auth")
    url, store, keys = tenant_keys(workdir, "acme", "globex", "limited")
    metrics_port = free_port()
    env = {"TOOLFABRIC_STORE_URL": url, "TOOLFABRIC_AUTH_REQUIRED": "true", "TOOLFABRIC_AUTH_CACHE_TTL_S": "0",
           "TOOLFABRIC_BLOB_URL_SECRET": "s" * 32,
           "TOOLFABRIC_AUTH_TENANT_LIMITS": json.dumps(LIMITS),
           "TOOLFABRIC_GATEWAY_METRICS_PORT": str(metrics_port)}
    with api_gateway(stack, workdir, **env) as api:
        yield Secured(api, stack.env() | env, store, f"http://127.0.0.1:{metrics_port}/metrics", keys)
    store.close()


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "teal").save(buf, format="PNG")
    return buf.getvalue()


def client(secured: Secured, key: str | None) -> Client:
    return Client(secured.api.target, timeout_s=60, api_key=key or "")


def every_rpc(c: Client) -> dict[str, object]:
    """Each Fabric RPC once; what it raised (or returned)."""
    calls = {
        "Run": lambda: c.ask("hi", model="toolfabric_scripted"),
        "Cancel": lambda: c.cancel("x"),
        "GetTrajectory": lambda: c.trajectory("x"),
        "ListTools": lambda: c.tools(),
        "GetImage": lambda: c.image("sha256:" + "0" * 64),
    }
    out: dict[str, object] = {}
    for name, call in calls.items():
        try:
            out[name] = call()
        except Exception as exc:
            out[name] = exc
    return out


def test_every_rpc_refuses_missing_wrong_revoked_and_malformed_keys(secured: Secured) -> None:
    revoked, record = secured.store.create("acme", "to revoke")
    assert secured.store.revoke(record.key_id)
    cases = {None: "missing API key", "tfk_000000000000_" + "w" * 43: "invalid API key",
             secured.keys["acme"][:-1] + "X": "invalid API key", revoked: "has been revoked",
             "not-a-key": "malformed API key"}
    for key, message in cases.items():
        with client(secured, key) as c:
            for rpc, outcome in every_rpc(c).items():
                assert isinstance(outcome, Unauthenticated), (key, rpc, outcome)
                assert message in str(outcome), (rpc, outcome)
    # Not a Bearer value at all, as raw metadata.
    with grpc.insecure_channel(secured.api.target) as channel:
        from toolfabric.v1 import fabric_pb2_grpc as pb_grpc

        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.FabricStub(channel).ListTools(pb.ListToolsRequest(), metadata=(("authorization", "Basic Zm9v"),))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED and "Bearer" in (info.value.details() or "")
        # Health stays open for probes.
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize(("authorization", "message"), [
    (None, "missing API key"), ("Bearer tfk_000000000000_" + "w" * 43, "invalid API key"),
    ("Bearer nonsense", "malformed API key"), ("Token abc", "expected 'Bearer <key>'"),
])
def test_every_http_endpoint_refuses_bad_keys_with_401(secured: Secured, authorization: str | None,
                                                      message: str) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for method, path, body in (("POST", "/v1/chat/completions", {"model": "test/scripted", "messages": [user("hi")]}),
                               ("POST", "/api/v1/chat/completions", {"model": "x", "messages": []}),
                               ("GET", "/v1/models", None)):
        response = requests.request(method, f"{secured.api.url}{path}", json=body, headers=headers, timeout=30)
        assert response.status_code == 401, (path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        error = response.json()["error"]
        assert error["code"] == "invalid_api_key" and message in error["message"]
    assert requests.get(f"{secured.api.url}/healthz", timeout=10).status_code == 200  # probes need no key


def test_a_tenant_sees_only_its_own_trajectories_and_images(secured: Secured) -> None:
    with client(secured, secured.keys["acme"]) as acme, client(secured, secured.keys["globex"]) as globex:
        result = acme.ask(script("<answer>mine</answer>"), images=[png()], model="toolfabric_scripted")
        tid = result.trajectory_id
        blob = result.events[0].started.images[0].blob
        # The owner gets everything, and the record names its tenant.
        assert acme.trajectory(tid).tenant == "acme"
        assert acme.image(blob).width == 40
        assert acme.cancel(tid).cancelled is False  # finished already, but it is acme's to ask about
        # Another tenant: not found, exactly as if it did not exist.
        for call in (lambda: globex.trajectory(tid), lambda: globex.cancel(tid), lambda: globex.image(blob),
                     lambda: globex.ask("go on", parent_trajectory_id=tid, model="toolfabric_scripted")):
            with pytest.raises(NotFound) as info:
                call()
            assert "no trajectory" in str(info.value) or "no image" in str(info.value)
        response = requests.post(f"{secured.api.url}/v1/chat/completions", timeout=30,
                                 headers={"Authorization": f"Bearer {secured.keys['globex']}"},
                                 json={"model": "test/scripted", "messages": [user("go on")],
                                       "toolfabric": {"parent_trajectory_id": tid}})
        assert response.status_code == 404 and "no trajectory" in response.json()["error"]["message"]
        # globex's own turn is globex's.
        own = globex.ask(script("<answer>ours</answer>"), model="toolfabric_scripted")
        assert globex.trajectory(own.trajectory_id).tenant == "globex"
        with pytest.raises(NotFound):
            acme.trajectory(own.trajectory_id)


def test_over_the_concurrency_limit_is_resource_exhausted_and_429_with_a_retry_hint(secured: Secured) -> None:
    with client(secured, secured.keys["limited"]) as limited:
        events = limited.events(script(SLOW), model="toolfabric_scripted")
        first = next(iter(events))
        with pytest.raises(ResourceExhausted) as info:
            limited.ask(script("<answer>second</answer>"), model="toolfabric_scripted")
        assert "already runs 1 trajectories" in str(info.value) and info.value.retry_after_s >= 1
        response = requests.post(f"{secured.api.url}/v1/chat/completions", timeout=30,
                                 headers={"Authorization": f"Bearer {secured.keys['limited']}"},
                                 json={"model": "test/scripted", "messages": [user(script("<answer>x</answer>"))]})
        assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"]["type"] == "rate_limit_error"
        # Another tenant is not affected.
        with client(secured, secured.keys["acme"]) as acme:
            assert acme.ask(script("<answer>free</answer>"), model="toolfabric_scripted").answer == "free"
        limited.cancel(first.trajectory_id)
        events.close()
    scraped = requests.get(secured.metrics_url, timeout=10).text
    assert 'toolfabric_tenant_limited_total{limit="max_concurrent_trajectories",tenant="limited"} 2.0' in scraped
    assert 'toolfabric_http_requests_total{route="/v1/chat/completions",status="429"} 1.0' in scraped


def test_tool_calls_per_minute_and_max_budgets_are_capped_per_tenant(secured: Secured) -> None:
    if time.time() % 60 > 50:  # both turns must fall in one minute window
        time.sleep(61 - time.time() % 60)
    with client(secured, secured.keys["limited"]) as limited:
        wait_admitted(limited)
        result = limited.ask(script(SEARCH + SEARCH + SEARCH, "<answer>done</answer>"), model="toolfabric_scripted",
                             max_steps=10)
        started = result.events[0].started
        assert started.budgets.max_steps == 2 and started.budgets.max_tool_calls == 2
        assert [o.error_kind for o in result.observations] == ["", "", "budget_exhausted"]
        with pytest.raises(ResourceExhausted) as info:  # 2 calls ran this minute (the refused 3rd never ran)
            limited.ask(script("<answer>x</answer>"), model="toolfabric_scripted")
        assert "tool calls this minute" in str(info.value) and 1 <= info.value.retry_after_s <= 60


def wait_admitted(c: Client, timeout_s: float = 10) -> None:
    """Until the tenant's earlier (cancelled) turn has released its slot."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            c.ask(script("<answer>ok</answer>"), model="toolfabric_scripted", max_tool_calls=1)
            return
        except ResourceExhausted:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_keys_cli_creates_lists_and_revokes(secured: Secured, tmp_path: Path) -> None:
    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "keys", *args], env=secured.env,
                              capture_output=True, text=True, timeout=60, check=False)

    created = keys("create", "initech", "--name", "ci")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    key_id = key.split("_")[1]
    listing = keys("list", "--tenant", "initech").stdout
    assert key_id in listing and "active" in listing and key not in listing  # the secret is never listed
    with client(secured, key) as c:
        assert c.tools()
    assert keys("revoke", key_id).returncode == 0
    assert "revoked" in keys("list", "--tenant", "initech").stdout
    with client(secured, key) as c, pytest.raises(Unauthenticated):
        c.tools()
    assert keys("revoke", key_id).returncode == 1
    bad = keys("create", "Not A Tenant!")
    assert bad.returncode == 2 and "tenant" in bad.stderr


@pytest.mark.parametrize("command", [["tools"], ["trajectory", "some-id"], ["trajectories"],
                                     ["trajectories", "--json"]])
def test_a_client_command_without_a_key_says_so_in_one_line(secured: Secured, command: list[str]) -> None:
    env = {k: v for k, v in secured.env.items() if k != "TOOLFABRIC_API_KEY"}
    out = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", *command, "--target", secured.api.target],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"toolfabric {command[0]}: Unauthenticated: ") and "API key" in line, line
