"""A plugin service on the running fabric: the gateway lists the ocr tool, and a trajectory driven
through the step API reads a sign with it on the ocr worker."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.integration.conftest import extra_gateway
from tests.support.plugin_dist import declared_plugins, env_with, write_dist
from toolfabric import Client
from toolfabric_server.devstack.processes import Child
from toolfabric_server.devstack.stack import EmbeddedStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ocr_gateway(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway and an ocr worker on the stack, both with the repository's plugins installed."""
    work = tmp_path_factory.mktemp("ocr")
    site = write_dist(work / "site", "toolfabric_declared", declared_plugins())
    env = env_with(site, stack.env())
    worker = Child("worker-ocr", [sys.executable, "-m", "toolfabric.cli.main", "worker", "ocr"], work, env=env)
    try:
        with extra_gateway(stack, work, PYTHONPATH=env["PYTHONPATH"]) as target:
            yield target
    finally:
        worker.stop()


def sign_jpeg(tmp_path: Path) -> Path:
    img = np.full((300, 800, 3), (30, 100, 20), np.uint8)
    cv2.putText(img, "HARBOUR ROAD", (40, 170), cv2.FONT_HERSHEY_SIMPLEX, 2.2, (255, 255, 255), 6)
    path = tmp_path / "sign.jpg"
    cv2.imwrite(str(path), img)
    return path


def test_the_gateway_lists_the_plugin_tool_for_the_modes_it_names(ocr_gateway: str) -> None:
    with Client(ocr_gateway, timeout_s=60) as client:
        ocr = {t.name: t for t in client.tools()}["ocr"]
        assert ocr.service == "ocr" and list(ocr.aliases) == ["read_text"]
        assert '"image"' in ocr.parameters_json_schema
        assert "ocr" in {t.name for t in client.tools("general")}
        assert "ocr" not in {t.name for t in client.tools("plan")}


def test_a_stepped_trajectory_reads_a_sign_with_the_ocr_plugin(ocr_gateway: str, tmp_path: Path) -> None:
    with Client(ocr_gateway, timeout_s=120) as client:
        [read] = client.step(["ocr-1"], ['<tool_call>{"name": "ocr", "arguments": {"image": "<image 1>"}}</tool_call>'],
                             images=[[sign_jpeg(tmp_path)]])
        assert read.valid and "HARBOUR ROAD" in read.text, read.text
        kinds = [e.WhichOneof("event") for e in client.trajectory("ocr-1").events]
        assert kinds[:2] == ["started", "text"] and "observation" in kinds
