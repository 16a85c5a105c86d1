"""Helpers for the HTTP API tests: a gateway with the API on, and R1V4's own way of reading the stream."""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.integration.conftest import extra_gateway
from tests.support.r1v4_reader import read_rounds
from toolfabric import Client
from toolfabric_server.common.api_keys import ApiKeyStore
from toolfabric_server.devstack.processes import free_port, port_open, wait_until
from toolfabric_server.devstack.stack import EmbeddedStack

# Public names the test gateways serve: R1V4's defaults plus the scripted model (general mode, search on).
MODELS = {
    "skywork/r1v4-lite": {"mode": "deep_research"},
    "skywork/r1v4-vl-planner-lite": {"mode": "plan"},
    "test/scripted": {"mode": "deep_research", "triton_model": "toolfabric_scripted"},
    "test/not-served": {"mode": "general", "triton_model": "no_such_triton_model"},
}


@dataclass
class Api:
    url: str     # http://127.0.0.1:PORT
    target: str  # the same gateway's gRPC address


@contextlib.contextmanager
def api_gateway(stack: EmbeddedStack, workdir: Path, **settings: str) -> Iterator[Api]:
    port = free_port()
    env = {"TOOLFABRIC_HTTP_PORT": str(port), "TOOLFABRIC_HTTP_MODELS": json.dumps(MODELS)} | settings
    with extra_gateway(stack, workdir, **env) as target:
        wait_until(lambda: port_open(port), 30, "HTTP API")
        yield Api(f"http://127.0.0.1:{port}", target)


def tenant_keys(workdir: Path, *tenants: str) -> tuple[str, ApiKeyStore, dict[str, str]]:
    """A key store in `workdir` (the store URL a gateway is given, the store) and one key per tenant."""
    url = f"sqlite:///{workdir / 'store.sqlite3'}"
    store = ApiKeyStore(url)
    return url, store, {tenant: store.create(tenant, "tests")[0] for tenant in tenants}


def script(*steps: object) -> str:
    return json.dumps({"script": list(steps)})


def data_url(data: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def user(text: str, *images: bytes) -> dict[str, Any]:
    """A user message the way R1V4's scripts build it: images first, then the text."""
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": data_url(i)}} for i in images]
    return {"role": "user", "content": [*parts, {"type": "text", "text": text}]}


def read_stream_like_r1v4(response: requests.Response) -> tuple[str, list[dict[str, Any]]]:
    """What r1v4/batch_stream.py does with the stream: iter_lines, `data: ` prefix, stop at `[DONE]`."""
    full, events = "", []
    for raw in response.iter_lines(decode_unicode=True):
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw  # as the script does
        if not line:
            continue
        assert line.startswith("data: "), line
        if line == "data: [DONE]":
            events.append({"done": True})
            continue
        event = json.loads(line[6:])
        events.append(event)
        if event.get("choices"):
            full += event["choices"][0].get("delta", {}).get("content") or ""
    return full, events


def streamed(url: str, model: str, message: dict[str, Any], **extra: Any) -> tuple[str, str]:
    """(the stream's content, the trajectory id), read as R1V4's batch_stream.py reads it; `extra`: more body."""
    response = requests.post(f"{url}/api/v1/chat/completions", json={"messages": [message], "model": model,
                             "stream": True} | extra, headers={"Authorization": "Bearer x"}, stream=True, timeout=300)
    assert response.status_code == 200, response.text
    full, events = read_stream_like_r1v4(response)
    assert events[-2]["toolfabric"]["status"] == "completed", events[-2]
    return full, events[0]["toolfabric"]["trajectory_id"]


def exported_rounds(stack: EmbeddedStack, out: Path, since: float, trajectory_id: str) -> dict[str, Any]:
    """`toolfabric export --format rounds`'s record of the trajectory."""
    with Client(stack.target, timeout_s=60) as client:  # the store's writer is asynchronous
        for _ in range(300):
            if client.trajectory(trajectory_id).status != 1:
                break
            time.sleep(0.1)
    done = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "export", str(out), "--target", stack.target,
                           "--format", "rounds", "--since", str(since), "--no-progress"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (record,) = [r for r in json.loads((out / "rounds.json").read_text()) if r["id"] == trajectory_id]
    return record


def same_rounds(full: str, record: dict[str, Any]) -> dict[str, Any]:
    """R1V4's reading of the stream, checked equal to the export's record round by round."""
    parsed = read_rounds(full)
    assert parsed["rounds"] == [{k: r[k] for k in ("round_num", "think", "tool_call", "observation")}
                                for r in record["rounds"]]
    assert parsed["final_round"] == {"think": record["final"]["think"], "answer": record["final"]["answer"]}
    return parsed
