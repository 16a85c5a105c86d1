"""A real engine through the fabric vs the same engine called directly, in the same run at equal settings.

The tiny Qwen3 (random weights) on the vLLM engine behind Triton (`toolfabric up --model tiny-qwen3`):
  throughput  B trajectories at once, one model step each (max_steps=1, max_tokens M, seeds 0..B-1),
              output tokens / wall time; against B requests sent straight to Triton with the same prompt
              length (token-in: `input_ids` of the length the fabric's prompt had), the same max_tokens,
              seeds and sampling, at once. Target: fabric >= 0.9x direct.
  latency     one request at a time: time to the first token (gateway Run -> first text event vs Triton
              request -> first response) and the whole step; the difference is the fabric's added latency.
  cancel      a trajectory generating up to 3900 tokens is cancelled after 5 text events; the engine's own
              count of unfinished requests 1 s later (target 0).
Prints the load average: this machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.devstack.stack import EmbeddedStack  # noqa: E402
from tests.model.engine_probe import generate, unfinished_requests  # noqa: E402
from toolfabric import Client  # noqa: E402

MODEL = "tiny_qwen3"


def fabric_step(client: Client, seed: int, max_tokens: int) -> tuple[int, int, float, float]:
    """(output tokens, prompt tokens, time to first text, whole step) of one one-step trajectory."""
    t0 = time.perf_counter()
    first = None
    out_tokens = in_tokens = 0
    for event in client.events(f"question {seed}", max_steps=1, max_tokens=max_tokens, seed=seed):
        kind = event.WhichOneof("event")
        if kind == "text" and first is None:
            first = time.perf_counter() - t0
        if kind == "usage":
            out_tokens, in_tokens = event.usage.output_tokens, event.usage.input_tokens
    return out_tokens, in_tokens, first or 0.0, time.perf_counter() - t0


def direct_step(url: str, prompt_len: int, seed: int, max_tokens: int) -> tuple[int, float, float]:
    t0 = time.perf_counter()
    first: list[float] = []
    # Same length as the fabric's prompt, ids from the tokenizer's ordinary range.
    ids = [100 + (i % 1500) for i in range(prompt_len)]
    out = generate(url, MODEL, "", {"max_tokens": max_tokens, "seed": seed, "temperature": 0.2}, input_ids=ids,
                   on_first=lambda: first.append(time.perf_counter() - t0))
    return len(out.output_ids), first[0] if first else 0.0, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, EmbeddedStack(Path(tmp), demo_site=False, model="tiny-qwen3") as stack, \
            Client(stack.target, timeout_s=600) as client:
        url = stack.triton.grpc_url
        fabric_step(client, 99, 8)  # warm both paths
        print(f"load average at start: {os.getloadavg()}")
        ratios = []
        for r in range(args.rounds):
            seeds = range(r * args.batch, (r + 1) * args.batch)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.batch) as pool:
                fab = list(pool.map(lambda s: fabric_step(client, s, args.max_tokens), seeds))
            fab_wall = time.perf_counter() - t0
            prompt_len = max(f[1] for f in fab)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.batch) as pool:
                direct = list(pool.map(direct_step, [url] * args.batch, [prompt_len] * args.batch, seeds,
                                       [args.max_tokens] * args.batch))
            direct_wall = time.perf_counter() - t0
            fab_tps = sum(f[0] for f in fab) / fab_wall
            dir_tps = sum(d[0] for d in direct) / direct_wall
            ratios.append(fab_tps / dir_tps)
            print(f"round {r}: batch {args.batch}, prompt {prompt_len} tokens, max_tokens {args.max_tokens}: "
                  f"fabric {fab_tps:.0f} tok/s ({sum(f[0] for f in fab)} tokens), direct {dir_tps:.0f} tok/s "
                  f"({sum(d[0] for d in direct)} tokens), ratio {fab_tps / dir_tps:.2f}x")
        print(f"throughput ratio fabric/direct, median of {args.rounds}: {statistics.median(ratios):.2f}x "
              "(target >= 0.9)")
        ttft_f, ttft_d, step_f, step_d = [], [], [], []
        for s in range(5):
            _, prompt_len, first, whole = fabric_step(client, 100 + s, 32)
            ttft_f.append(first)
            step_f.append(whole)
            _, d_first, d_whole = direct_step(url, prompt_len, 100 + s, 32)
            ttft_d.append(d_first)
            step_d.append(d_whole)
        mf, md = statistics.median(ttft_f), statistics.median(ttft_d)
        print(f"time to first token, median of 5: fabric {mf * 1000:.0f} ms, direct {md * 1000:.0f} ms "
              f"(+{(mf - md) * 1000:.0f} ms)")
        print(f"one model step of 32 tokens, median of 5: fabric {statistics.median(step_f) * 1000:.0f} ms, direct "
              f"{statistics.median(step_d) * 1000:.0f} ms: added per step "
              f"{(statistics.median(step_f) - statistics.median(step_d)) * 1000:.0f} ms")
        seen = 0
        for event in client.events("Tell me everything.", max_steps=1, max_tokens=3900, seed=5):
            if event.WhichOneof("event") == "text":
                seen += 1
                if seen == 5:
                    client.cancel(event.trajectory_id)
        time.sleep(1)
        print(f"engine requests still unfinished 1 s after a cancel: "
              f"{unfinished_requests(stack.triton.metrics_port, MODEL):.0f} (target 0)")
        print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
