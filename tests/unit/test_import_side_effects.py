"""Importing any module does nothing: no socket, no thread, no file, no setting read.

Every module of toolfabric (the SDK) and toolfabric_server is imported in a fresh interpreter with an
empty environment (no Redis, no Triton, no MCP server anywhere), from an empty working directory.
Settings are read when a server or worker starts, the Celery app is built then, metrics are created on
first use, MCP servers are listed when the mcp worker registers its task.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import importlib, json, os, pkgutil, socket, sys, threading
sys.path[:0] = sys.argv[1:]
# Third-party modules that probe the host when imported (urllib3 opens an IPv6 socket to learn HAS_IPV6):
# theirs, not ours, so imported before the recording starts.
import urllib3
opened = []
_init = socket.socket.__init__

def recording_init(self, *args, **kwargs):
    opened.append(repr(args))
    _init(self, *args, **kwargs)

socket.socket.__init__ = recording_init
threads_before = {t.ident for t in threading.enumerate()}
fds_before = set(os.listdir("/proc/self/fd"))
# Only the Triton python backend's own modules need Triton's runtime to import at all.
OUTSIDE_TRITON = "triton_python_backend_utils"
imported, failed = [], []
for top in ("toolfabric", "toolfabric_server"):
    package = importlib.import_module(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        if ".repository." in info.name:  # Triton model repository files, loaded by Triton only
            continue
        try:
            importlib.import_module(info.name)
            imported.append(info.name)
        except ModuleNotFoundError as exc:
            if exc.name != OUTSIDE_TRITON:
                failed.append(f"{info.name}: {exc!r}")
        except Exception as exc:
            failed.append(f"{info.name}: {exc!r}")
threads = [t.name for t in threading.enumerate() if t.ident not in threads_before]
fds = sorted(set(os.listdir("/proc/self/fd")) - fds_before)
targets = []
for fd in fds:
    try:
        targets.append(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        pass
print(json.dumps({"imported": imported, "failed": failed, "sockets": opened, "threads": threads, "fds": targets}))
"""


def run_probe(tmp_path: Path, env: dict[str, str]) -> dict:  # type: ignore[type-arg]
    work = tmp_path / "cwd"
    work.mkdir()
    done = subprocess.run([sys.executable, "-c", PROBE, str(ROOT), str(ROOT / "server")], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["written"] = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p != work)
    return result


def test_importing_every_module_with_an_empty_environment_has_no_side_effect(tmp_path: Path) -> None:
    result = run_probe(tmp_path, {"PYTHONDONTWRITEBYTECODE": "1"})
    assert result["failed"] == []
    assert len(result["imported"]) > 250  # the walk saw the whole tree
    assert {"toolfabric_server.common.celery_app", "toolfabric_server.common.telemetry.metrics",
            "toolfabric_server.tools.mcp.tasks", "toolfabric_server.tools.fetch.tasks",
            "toolfabric_server.tools.ocr.handlers", "toolfabric_server.gateway.server"} <= set(result["imported"])
    assert result["sockets"] == []
    assert result["threads"] == []
    assert result["written"] == []  # nothing in the working directory (./.toolfabric is the default data dir)


def test_no_setting_is_read_at_import(tmp_path: Path) -> None:
    """Settings that would fail validation, an MCP server that cannot start, a metrics directory that does not
    exist: importing still succeeds and touches none of them (they matter only when a process starts)."""
    prom = tmp_path / "prom"
    marker = tmp_path / "mcp-started"
    env = {
        "PYTHONDONTWRITEBYTECODE": "1",
        "TOOLFABRIC_REDIS_RETRIES": "not-a-number",
        "TOOLFABRIC_WORKER_CONCURRENCY": "0",
        "TOOLFABRIC_GATEWAY_PORT": "-1",
        "TOOLFABRIC_MCP_CLIENT_SERVERS": json.dumps(
            {"probe": {"command": [sys.executable, "-c", f"open({str(marker)!r}, 'w')"]}}),
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
    }
    result = run_probe(tmp_path, env)
    assert result["failed"] == []
    assert not prom.exists(), "metrics created their multiprocess directory at import"
    assert not marker.exists(), "an MCP server was started at import"
    assert result["sockets"] == [] and result["threads"] == []
