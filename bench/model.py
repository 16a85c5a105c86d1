"""A real engine through the fabric vs the same engine called directly, in the same run at equal settings.

The tiny Qwen3 (random weights) on the vLLM engine behind Triton (`toolfabric up --model tiny-qwen3`):
  throughput  B trajectories at once, one model step each (max_steps=1, max_tokens M, seeds 0..B-1),
              output tokens / wall time; against B requests sent straight to Triton at once with the very
              prompt ids the fabric sent (from its token records), the same seeds and sampling (the gateway's
              temperature, the dialect's stop strings, max_tokens): the same work, token for token.
              Target: fabric >= 0.9x direct.
  latency     one request at a time: time to the first token (gateway Run -> first text event vs Triton
              request -> first response) and the whole step; the difference is the fabric's added latency.
  cancel      a trajectory generating up to 3900 tokens is cancelled after 5 text events; the engine's own
              count of unfinished requests 1 s later (target 0) and how long it took to reach 0.
Prints the load average: this machine is shared. `--quick`: batch 4, 64 tokens, one round, 3 latency samples.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.model.engine_probe import generate, unfinished_requests  # noqa: E402
from toolfabric import Client  # noqa: E402
from toolfabric_server.devstack.stack import EmbeddedStack  # noqa: E402
from toolfabric_server.model import settings as model_settings  # noqa: E402
from toolfabric_server.model.dialects import dialect_for  # noqa: E402

MODEL = "tiny_qwen3"
TEMPERATURE = model_settings.model().temperature  # the gateway's default, which the fabric's steps use
STOP = list(dialect_for(MODEL, {MODEL: "qwen3vl"}, "qwen3vl").stop)  # what the gateway sends with every step


@dataclass
class Step:
    output_tokens: int
    prompt_ids: list[int]  # what the fabric sent the engine (its token record)
    first_token_s: float
    whole_s: float


def fabric_step(client: Client, seed: int, max_tokens: int) -> Step:
    """One one-step trajectory through the gateway."""
    t0 = time.perf_counter()
    first = None
    out_tokens, prompt_ids = 0, []
    for event in client.events(f"question {seed}", max_steps=1, max_tokens=max_tokens, seed=seed):
        kind = event.WhichOneof("event")
        if kind == "text" and first is None:
            first = time.perf_counter() - t0
        if kind == "tokens":
            prompt_ids = list(event.tokens.prompt_token_ids)  # step 1: the whole prompt (nothing reused)
        if kind == "usage":
            out_tokens = event.usage.output_tokens
    return Step(out_tokens, prompt_ids, first or 0.0, time.perf_counter() - t0)


def direct_step(url: str, prompt_ids: list[int], seed: int, max_tokens: int) -> Step:
    """The same step straight to Triton: the fabric's prompt ids, seed and sampling."""
    t0 = time.perf_counter()
    first: list[float] = []
    # logprobs 0: the gateway asks for the sampled tokens' logprobs too (the engine declares output_logprobs).
    sampling = {"max_tokens": max_tokens, "seed": seed, "temperature": TEMPERATURE, "stop": STOP, "logprobs": 0}
    out = generate(url, MODEL, "", sampling, input_ids=prompt_ids,
                   on_first=lambda: first.append(time.perf_counter() - t0))
    return Step(len(out.output_ids), prompt_ids, first[0] if first else 0.0, time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=5, help="latency samples (one request at a time)")
    parser.add_argument("--quick", action="store_true", help="batch 4, 64 tokens, 1 round, 3 latency samples")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.max_tokens, args.rounds, args.samples = 4, 64, 1, 3
    with tempfile.TemporaryDirectory() as tmp, EmbeddedStack(Path(tmp), demo_site=False, model="tiny-qwen3") as stack, \
            Client(stack.target, timeout_s=600) as client:
        url = stack.triton.grpc_url
        warm = fabric_step(client, 99, 8)  # warm both paths
        direct_step(url, warm.prompt_ids, 99, 8)
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average at start: "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")
        ratios = []
        for r in range(args.rounds):
            seeds = range(r * args.batch, (r + 1) * args.batch)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.batch) as pool:
                fab = list(pool.map(lambda s: fabric_step(client, s, args.max_tokens), seeds))
            fab_wall = time.perf_counter() - t0
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.batch) as pool:
                direct = list(pool.map(lambda f, s: direct_step(url, f.prompt_ids, s, args.max_tokens), fab, seeds))
            direct_wall = time.perf_counter() - t0
            fab_tokens, dir_tokens = sum(f.output_tokens for f in fab), sum(d.output_tokens for d in direct)
            fab_tps, dir_tps = fab_tokens / fab_wall, dir_tokens / direct_wall
            ratios.append(fab_tps / dir_tps)
            print(f"round {r}: batch {args.batch}, prompts {min(len(f.prompt_ids) for f in fab)}-"
                  f"{max(len(f.prompt_ids) for f in fab)} tokens, max_tokens {args.max_tokens}: fabric {fab_tps:.0f} "
                  f"tok/s ({fab_tokens} tokens in {fab_wall:.2f} s), direct {dir_tps:.0f} tok/s ({dir_tokens} tokens "
                  f"in {direct_wall:.2f} s), ratio {fab_tps / dir_tps:.2f}x")
        print(f"throughput ratio fabric/direct, median of {args.rounds}: {statistics.median(ratios):.2f}x "
              "(target >= 0.9)")
        ttft_f, ttft_d, step_f, step_d = [], [], [], []
        for s in range(args.samples):
            f = fabric_step(client, 100 + s, 32)
            d = direct_step(url, f.prompt_ids, 100 + s, 32)
            ttft_f.append(f.first_token_s)
            step_f.append(f.whole_s)
            ttft_d.append(d.first_token_s)
            step_d.append(d.whole_s)
        mf, md = statistics.median(ttft_f), statistics.median(ttft_d)
        print(f"time to first token, median of {args.samples}: gateway {mf * 1000:.0f} ms, engine {md * 1000:.0f} ms "
              f"(+{(mf - md) * 1000:.0f} ms)")
        sf, sd = statistics.median(step_f), statistics.median(step_d)
        print(f"one model step of up to 32 tokens, median of {args.samples}: fabric {sf * 1000:.0f} ms (a whole "
              f"one-step trajectory), engine {sd * 1000:.0f} ms: added per step {(sf - sd) * 1000:.0f} ms")
        for seed in range(5, 11):  # random weights may end early: a seed still generating at its 5th text event
            seen, cancelled = 0, None
            for event in client.events("Tell me everything.", max_steps=1, max_tokens=3900, seed=seed):
                if event.WhichOneof("event") == "text":
                    seen += 1
                    if seen == 5 and unfinished_requests(stack.triton.metrics_port, MODEL) >= 1:
                        client.cancel(event.trajectory_id)
                        cancelled = time.perf_counter()
            if cancelled is not None:
                break
        if cancelled is None:
            print("cancel: no generation of seeds 5-10 was still running at its 5th text event")
        else:
            zero = None
            while time.perf_counter() - cancelled < 10:
                if unfinished_requests(stack.triton.metrics_port, MODEL) == 0:
                    zero = time.perf_counter() - cancelled
                    break
                time.sleep(0.01)
            time.sleep(max(0.0, 1 - (time.perf_counter() - cancelled)))
            print(f"engine requests still unfinished 1 s after a cancel: "
                  f"{unfinished_requests(stack.triton.metrics_port, MODEL):.0f} (target 0); 0 reached "
                  + (f"{zero * 1000:.0f} ms after the Cancel returned" if zero is not None else "never within 10 s"))
        print(f"load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
