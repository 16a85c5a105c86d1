"""`toolfabric up` starts the stack and Ctrl-C stops every process it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import alive, descendants

pytestmark = pytest.mark.integration


def lines_until_running(proc: subprocess.Popen[str], timeout_s: float) -> list[str]:
    """What `toolfabric up` said on stderr until it runs (or exits, or `timeout_s` passes)."""
    lines = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        lines.append(line)
        if "Ctrl-C stops everything" in line or proc.poll() is not None:
            break
    return lines


def test_up_serves_the_users_index_says_so_and_ctrl_c_stops_every_process(tmp_path: Path, demo_dir: Path) -> None:
    data = tmp_path / "my-data"
    env = {**os.environ, "TOOLFABRIC_DATA_DIR": str(data)}
    subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "index", str(demo_dir / "site"), "--base-url",
                    "https://mine.test/", "--no-progress"], env=env, check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "toolfabric.cli.main", "up", "--port", "0", "--workdir",
                             str(tmp_path / "work"), "--no-demo-site", "--judge", "local"], stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        lines = lines_until_running(proc, 120)
        assert any("ready in" in x for x in lines), "".join(lines)
        _the_printed_judge_grades("".join(lines))
        assert any("authentication is OFF" in x for x in lines)  # the open embedded default says so loudly
        assert any("HTTP API" in x and "/v1" in x for x in lines)
        text = "".join(lines)
        assert f"search index: {data / 'search-index.sqlite3'}: 8 pages, 4 images" in text
        assert f"durable store: SQLite at {data.resolve() / 'store.sqlite3'}" in text  # `store delete` acts on it
        assert "for `toolfabric eval run --freeze`: TOOLFABRIC_REDIS_URL=redis://127.0.0.1:" in text
        assert f"TOOLFABRIC_DATA_DIR={data.resolve()}" in text
        assert "toolfabric run --target" in text and "astronaut" not in text  # no demo site, no demo question
        started = descendants(proc.pid)
        assert len(started) >= 6  # redis, triton (+ stubs), three workers (+ pool children), gateway
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(p) for p in started):
            time.sleep(0.2)
        assert [p for p in started if alive(p)] == []
    finally:
        if proc.poll() is None:
            proc.kill()


def _the_printed_judge_grades(said: str) -> None:
    """`up --judge local` prints the judge's address and the eval flags; the judge there answers them."""
    import asyncio
    import re

    from toolfabric_server.evals.judge import Judge, TritonJudge

    found = re.search(r"eval judge: toolfabric_judge .* on Triton at (\S+); grade with: toolfabric eval run DATASET "
                      r"--judge triton --judge-model toolfabric_judge --judge-url (\S+)", said)
    assert found and found.group(1) == found.group(2), said

    async def grade() -> bool | None:
        judge = Judge(TritonJudge(found.group(1), "toolfabric_judge", 256, 30), Path(os.devnull))
        try:
            return (await judge.grade("Who commanded STS-93?", "Eileen Collins did.", ["Eileen Collins"])).correct
        finally:
            await judge.close()

    assert asyncio.run(grade()) is True


def test_the_demo_site_is_added_to_the_users_fetch_allowlist_and_ports(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from toolfabric_server.devstack.stack import EmbeddedStack

    monkeypatch.setenv("TOOLFABRIC_FETCH_PRIVATE_HOST_ALLOWLIST", '["intranet.example:8443"]')
    monkeypatch.setenv("TOOLFABRIC_FETCH_ALLOWED_PORTS", "[80, 443, 8443]")
    stack = EmbeddedStack(tmp_path, demo_site=True)  # env() only: nothing is started
    env = stack.env()
    assert json.loads(env["TOOLFABRIC_FETCH_PRIVATE_HOST_ALLOWLIST"]) == ["intranet.example:8443",
                                                                         f"127.0.0.1:{stack.site_port}"]
    assert json.loads(env["TOOLFABRIC_FETCH_ALLOWED_PORTS"]) == [80, 443, 8443, stack.site_port]
    assert env["TOOLFABRIC_DATA_DIR"] == str(tmp_path.resolve() / "data")
    mine = EmbeddedStack(tmp_path, demo_site=False, data_dir=tmp_path / "mine").env()
    assert mine["TOOLFABRIC_DATA_DIR"] == str((tmp_path / "mine").resolve())
    assert json.loads(mine["TOOLFABRIC_FETCH_PRIVATE_HOST_ALLOWLIST"]) == ["intranet.example:8443"]


def test_up_serves_the_step_and_mcp_doors_when_asked_and_leaves_a_broken_plugin_out(tmp_path: Path) -> None:
    import httpx

    from tests.support.plugin_dist import env_with, write_dist

    site = write_dist(tmp_path / "site", "sample_fragile", {"fragile": "tests.support.sample_plugins.fragile:PLUGIN"})
    proc = subprocess.Popen([sys.executable, "-m", "toolfabric.cli.main", "up", "--port", "0", "--workdir",
                             str(tmp_path / "work"), "--no-demo-site", "--step-port", "0", "--mcp-port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env_with(site))
    try:
        lines = lines_until_running(proc, 180)
        text = "".join(lines)
        assert "plugin fragile left out" in text and "a_module_that_is_not_installed" in text, text
        doors = {line.split()[3]: line for line in lines if line.startswith("[toolfabric up] door ")}
        assert {"fabric", "chat", "step", "mcp", "blobs"} <= set(doors), text
        assert "/get_observation" in doors["step"] and "/mcp" in doors["mcp"]
        assert all("plaintext, no key asked" in doors[d] for d in ("fabric", "chat", "step", "mcp")), doors
        step_url = doors["step"].split()[4]
        reply = httpx.post(step_url, timeout=60, json={
            "trajectory_ids": ["up-1"], "actions": ['<tool_call>{"name": "code", "arguments": {"code": '
                                                    '"print(6 * 7)"}}</tool_call>']}).json()
        assert reply["valids"] == [True] and "42" in json.dumps(reply["observations"])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
