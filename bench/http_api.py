"""What the HTTP door costs next to gRPC, for the same one-step turn on the same stack, in one run.

A scripted model step that answers at once (so the fabric's own path dominates), the doors taken in turn:
  grpc         Client.ask through the gRPC door (the baseline)
  http         POST /v1/chat/completions, stream false (JSON in, whole message out)
  http-stream  the same with stream true, read the way R1V4's scripts read it (iter_lines, `data: `)
  http-auth    stream false on a second gateway with API keys required (key verified, cached)
Prints p50/p90 per door and the ratio of each to gRPC's p50.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUESTION = json.dumps({"script": ["<think>ok</think><answer>42</answer>"]})
MODELS = {"bench/scripted": {"mode": "general", "triton_model": "toolfabric_scripted"}}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def interleaved(calls: dict[str, Callable[[], None]], n: int) -> dict[str, list[float]]:
    """Round-robin over the doors, so the shared machine's load swings hit every door alike."""
    for call in calls.values():
        call()  # warm-up: connections, the model-ready cache
    out: dict[str, list[float]] = {door: [] for door in calls}
    for _ in range(n):
        for door, call in calls.items():
            t0 = time.perf_counter()
            call()
            out[door].append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer turns; well under 60 s")
    args = parser.parse_args()
    n = 25 if args.quick else 200

    import requests

    from toolfabric import Client
    from toolfabric_server.common.api_keys import ApiKeyStore
    from toolfabric_server.devstack.processes import Child, free_port, port_open, wait_until
    from toolfabric_server.devstack.stack import EmbeddedStack

    with tempfile.TemporaryDirectory(prefix="toolfabric-bench-http-") as tmp:
        workdir = Path(tmp)
        env = {"TOOLFABRIC_HTTP_MODELS": json.dumps(MODELS)}
        with EmbeddedStack(workdir / "stack", demo_site=False, extra_env=env) as stack:
            store_url = f"sqlite:///{workdir / 'store.sqlite3'}"
            keys = ApiKeyStore(store_url)
            key, _ = keys.create("bench")
            keys.close()
            grpc_port, http_port = free_port(), free_port()
            secured = Child("gateway-auth", [sys.executable, "-m", "toolfabric.cli.main", "gateway"], workdir,
                            env=stack.env() | {"TOOLFABRIC_GATEWAY_PORT": str(grpc_port),
                                               "TOOLFABRIC_GATEWAY_BLOB_HTTP_PORT": "0",
                                               "TOOLFABRIC_HTTP_PORT": str(http_port),
                                               "TOOLFABRIC_AUTH_REQUIRED": "true", "TOOLFABRIC_STORE_URL": store_url,
                                               "TOOLFABRIC_BLOB_URL_SECRET": "bench-" + "s" * 32})
            try:
                wait_until(lambda: port_open(http_port), 30, "gateway with auth", secured.proc, secured.log)
                body: dict[str, Any] = {"model": "bench/scripted", "messages": [{"role": "user", "content": QUESTION}]}
                session = requests.Session()

                def http(url: str, headers: dict[str, str] | None = None) -> Callable[[], None]:
                    def call() -> None:
                        reply = session.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=60)
                        assert reply.json()["toolfabric"]["answer"] == "42", reply.text
                    return call

                def http_stream() -> None:
                    reply = session.post(f"{stack.http_url}/v1/chat/completions", json=body | {"stream": True},
                                         stream=True, timeout=60)
                    lines = [str(line) for line in reply.iter_lines(decode_unicode=True)]
                    text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                                   for line in lines if line.startswith("data: {") and '"choices": [{' in line)
                    assert text.endswith("<answer>42</answer>"), text

                with Client(stack.target, timeout_s=60) as client:
                    def grpc_call() -> None:
                        assert client.ask(QUESTION, model="toolfabric_scripted", mode="general").answer == "42"

                    results = interleaved({
                        "grpc": grpc_call, "http": http(stack.http_url), "http-stream": http_stream,
                        "http-auth": http(f"http://127.0.0.1:{http_port}", {"Authorization": f"Bearer {key}"}),
                    }, n)
            finally:
                secured.stop()
    base = statistics.median(results["grpc"])
    print(f"one-step turn, {n} sequential turns per door (ms)")
    for door, values in results.items():
        p50 = statistics.median(values)
        print(f"  {door:<12} p50 {p50:7.2f}  p90 {percentile(values, 0.9):7.2f}  vs gRPC p50 {p50 / base:5.2f}x")
    print(f"HTTP door / gRPC door, p50: {statistics.median(results['http']) / base:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
