"""One observation shape for every tool: a call to each service and plugin — vision (with and without images),
search, fetch, the ocr plugin, a test plugin, an MCP server's tools — on real workers, through the step API, and
each recorded observation written as JSON the way the HTTP API and the rounds export write it."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import extra_gateway
from tests.support.plugin_dist import declared_plugins, env_with, write_dist
from toolfabric import Client
from toolfabric_server.devstack.processes import Child
from toolfabric_server.devstack.stack import DEMO_DIR, EmbeddedStack
from toolfabric_server.gateway.http.render import observation_json

pytestmark = pytest.mark.integration

CALC = str(Path(__file__).resolve().parents[1] / "support" / "mcp_servers" / "calc.py")
PHOTO = DEMO_DIR / "question.jpg"


@pytest.fixture(scope="module")
def every_service(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stack's vision, search and fetch workers, plus an ocr worker, a worker of the `echo` test plugin and an
    `mcp` worker reaching a real MCP server, and a gateway whose catalog holds them all."""
    work = tmp_path_factory.mktemp("every-service")
    plugins = {**declared_plugins(), "echo": "tests.support.sample_plugins.echo:PLUGIN"}
    env = env_with(write_dist(work / "site", "toolfabric_every", plugins), stack.env())
    env["TOOLFABRIC_MCP_CLIENT_SERVERS"] = json.dumps({"calc": {"command": [sys.executable, CALC], "timeout_s": 30}})
    workers = [Child(f"worker-{service}", [sys.executable, "-m", "toolfabric.cli.main", "worker", service], work,
                     env=env) for service in ("ocr", "echo", "mcp")]
    try:
        with extra_gateway(stack, work, ready_s=120, PYTHONPATH=env["PYTHONPATH"],
                           TOOLFABRIC_MCP_CLIENT_SERVERS=env["TOOLFABRIC_MCP_CLIENT_SERVERS"]) as target:
            yield target
    finally:
        for worker in workers:
            worker.stop()


def call(name: str, arguments: dict[str, object]) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


# (service, mode, action, what the result is, images made)
CALLS = [
    ("vision", "", call("crop", {"image": "<image 1>", "bbox": [0, 0, 64, 48]}), str, 1),
    ("vision", "", call("code", {"code": "print(6 * 7)"}), str, 0),
    ("vision", "", call("code", {"code": "save(image[:24, :32])\nprint('saved')"}), str, 1),
    ("search", "", call("text_search", {"queries": ["STS-93 commander"]}), list, 0),
    ("search", "", call("image_search", {"image_paths": ["<image 1>"]}), list, 0),
    ("fetch", "", call("web_visit", {"urls": ["{site}eileen-collins.html"]}), list, 0),
    ("ocr", "general", call("ocr", {"image": "<image 1>"}), str, 0),
    ("echo", "general", call("shout", {"text": "hello"}), str, 0),
    ("mcp", "", call("calc.add", {"a": 2, "b": 3}), str, 0),
    ("mcp", "", call("calc.picture", {}), str, 1),
]


def test_every_tool_of_every_service_and_plugin_answers_in_one_shape(every_service: str,
                                                                     stack: EmbeddedStack) -> None:
    ids = [f"shape-{i}" for i in range(len(CALLS))]
    with Client(every_service, timeout_s=240) as client:
        for tid, (_, mode, action, _, _) in zip(ids, CALLS, strict=True):
            [step] = client.step([tid], [action.replace("{site}", stack.site_url)], images=[[PHOTO]], mode=mode,
                                 questions=["Who is the astronaut in this photo?"])
            assert step.valid, (action, step.text)
        client.step(["shape-error"], [call("crop", {"image": "<image 9>", "bbox": [0, 0, 8, 8]})], images=[[PHOTO]])
        recorded = {tid: [e.observation for e in client.trajectory(tid).events
                          if e.WhichOneof("event") == "observation"] for tid in [*ids, "shape-error"]}

    for tid, (service, _, action, result_type, made) in zip(ids, CALLS, strict=True):
        [observation] = recorded[tid]
        record = json.loads(observation_json(observation))
        assert list(record) == ["result", "images", "tool"], (service, action, record)
        assert not observation.is_error, (service, action, observation.text)
        assert isinstance(record["result"], result_type), (service, action, record)
        assert record["tool"] == observation.name == json.loads(action[11:-12])["name"]
        assert record["images"] == [f"<sub-image {n}>" for n in range(1, made + 1)], (service, action, record)
    [error] = recorded["shape-error"]
    record = json.loads(observation_json(error))
    assert list(record) == ["error", "message", "images", "tool"] and record["images"] == []
    assert record["error"] == error.error_kind and "<image 9>" in record["message"] and record["tool"] == "crop"
