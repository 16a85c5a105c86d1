"""The asyncio SDK, the CLI's streamed output, image URLs in requests, general mode, and signed blob URLs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import extra_gateway
from toolfabric import AsyncClient, Client, InvalidArgument
from toolfabric.cli.main import DEMO_IMAGE
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration


async def test_async_client_streams_and_fetches_the_record(stack: EmbeddedStack) -> None:
    async with AsyncClient(stack.target, timeout_s=120) as client:
        kinds = [e.WhichOneof("event") async for e in client.events("Describe the photo.", [DEMO_IMAGE],
                                                                      mode="general")]
        assert kinds[0] == "started" and kinds[-1] == "finished"
        result = await client.ask("Describe the photo.", [DEMO_IMAGE], mode="general")
        assert result.status == "STATUS_COMPLETED"
        assert "input 400x400" in result.answer  # what the `code` inspection printed
        recorded = await client.trajectory(result.trajectory_id)
        assert recorded.answer == result.answer
        assert {t.name for t in await client.tools("general")} >= {"code"}


def test_image_url_is_downloaded_through_the_fetch_guard(stack: EmbeddedStack, client: Client) -> None:
    # The demo site is the one private address the embedded stack allows.
    result = client.ask("Describe the photo.", images=[stack.site_url + "astronaut.jpg"], mode="general")
    assert result.status == "STATUS_COMPLETED"
    assert result.events[0].started.images[0].width == 512


def test_image_url_to_a_private_address_is_refused(stack: EmbeddedStack, client: Client) -> None:
    redis_port = stack.redis.port  # loopback, not allowlisted
    with pytest.raises(InvalidArgument, match=r"image 1: could not download"):
        client.ask("Describe the photo.", images=[f"http://127.0.0.1:{redis_port}/x.png"])
    with pytest.raises(InvalidArgument, match=r"image 1: could not download"):
        client.ask("Describe the photo.", images=["http://169.254.169.254/latest/meta-data/"])


def test_cli_run_streams_a_readable_trajectory_and_saves_images_by_step(stack: EmbeddedStack, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "toolfabric.cli.main", "run", "Describe the photo.", "--image", str(DEMO_IMAGE),
         "--target", stack.target, "--mode", "general", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "→ tool call s1c1: code" in out.stdout
    assert "← observation s1c1: code" in out.stdout
    assert "STATUS_COMPLETED" in out.stdout
    saved = sorted(p.name for p in tmp_path.rglob("*.*"))
    assert saved == ["step00-image-1.jpg", "step01-sub-image-1.png"]


def test_cli_tools_lists_schemas(stack: EmbeddedStack) -> None:
    out = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "tools", "--target", stack.target],
                         capture_output=True, text=True, timeout=60, check=True)
    assert "text_search" in out.stdout and '"queries"' in out.stdout


@pytest.mark.parametrize("command", [["tools"], ["trajectories", "--json"], ["trajectories"]])
def test_a_reader_that_stops_early_ends_the_command_quietly(stack: EmbeddedStack, client: Client,
                                                            command: list[str]) -> None:
    client.ask(json.dumps({"script": ["<answer>listed</answer>"]}), model="toolfabric_scripted")  # one to list
    # `… | head -1`, made certain: the reading end is closed before the command writes anything.
    proc = subprocess.Popen([sys.executable, "-m", "toolfabric.cli.main", *command, "--target", stack.target],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(60) == 1 and err == "", err  # no traceback, no "Exception ignored … BrokenPipeError"


def test_blob_images_are_served_at_signed_urls_only(stack: EmbeddedStack, client: Client) -> None:
    from toolfabric_server.common import blob_urls

    result = client.ask("Describe the photo.", images=[DEMO_IMAGE], mode="general")
    blob = result.events[0].started.images[0].blob
    url = blob_urls.signed_url(blob, ttl_s=60, base_url=f"http://127.0.0.1:{stack.blob_port}",
                               secret=stack.env()["TOOLFABRIC_BLOB_URL_SECRET"])
    ok = httpx.get(url, timeout=5)
    assert ok.status_code == 200 and ok.content == DEMO_IMAGE.read_bytes()
    forged = httpx.get(url.replace("sig=", "sig=0"), timeout=5)
    assert forged.status_code == 403
    default = blob_urls.signed_url(blob, ttl_s=60, base_url=f"http://127.0.0.1:{stack.blob_port}",
                                   secret="change-me-in-production")
    assert httpx.get(default, timeout=5).status_code == 403  # the stack signs with a secret of its own


def test_health_and_reflection_are_served(stack: EmbeddedStack) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(stack.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "toolfabric.v1.Fabric"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
        names = {s.name for s in reply.list_services_response.service}
        assert {"toolfabric.v1.Fabric", "grpc.health.v1.Health"} <= names


def test_gateway_is_not_ready_while_the_model_service_is_unreachable(stack: EmbeddedStack, tmp_path: Path) -> None:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from toolfabric_server.devstack.processes import free_port, wait_until

    no_triton = {"TOOLFABRIC_MODEL_TRITON_URL": f"127.0.0.1:{free_port()}",
                 "TOOLFABRIC_GATEWAY_READINESS_INTERVAL_S": "0.2"}
    with extra_gateway(stack, tmp_path, **no_triton) as target, grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        def status(service: str) -> int:
            return health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status

        wait_until(lambda: status("toolfabric.v1.Fabric") == health_pb2.HealthCheckResponse.NOT_SERVING, 10,
                   "NOT_SERVING")
        assert status("") == health_pb2.HealthCheckResponse.SERVING  # alive, just not ready
