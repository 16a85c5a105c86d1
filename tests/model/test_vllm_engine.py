"""The tiny Qwen3 on a real vLLM engine behind Triton, driven through the real gateway, workers and Redis.

Random weights emit garbage: the loop must turn it into error observations within its budgets, the
engine must honour stop strings and max_tokens, batch concurrent trajectories, and stop generating
for a cancelled trajectory (its own count of unfinished requests drops to 0).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.model.cancelling import cancel_mid_generation
from tests.model.engine_probe import generate, unfinished_requests
from toolfabric import Client
from toolfabric_server.devstack.stack import EmbeddedStack

MODEL = "tiny_qwen3"
PROMPT = "<|im_start|>user\nWho flew STS-93?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with EmbeddedStack(tmp_path_factory.mktemp("vllm-stack"), demo_site=False, model="tiny-qwen3") as running:
        yield running


@pytest.fixture
def client(stack: EmbeddedStack) -> Iterator[Client]:
    with Client(stack.target, timeout_s=300) as c:
        yield c


def test_garbage_becomes_error_observations_within_the_budgets(client: Client) -> None:
    result = client.ask("Who commanded STS-93?", max_steps=3, max_tokens=48, seed=1)
    # Every step is garbage, read back as an error observation, until the step budget ends the trajectory.
    assert result.status == "STATUS_BUDGET_EXHAUSTED", result.reason
    steps = {e.step for e in result.events if e.WhichOneof("event") == "text"}
    assert steps == {1, 2, 3}
    errors = [o for o in result.observations if o.is_error]
    assert errors, "random weights wrote a well-formed step?"
    assert {o.error_kind for o in errors} <= {"model_output", "unknown_tool", "invalid_argument", "budget_exhausted"}
    assert result.usage.output_tokens > 0


def test_max_tokens_and_stop_strings_are_honoured(stack: EmbeddedStack) -> None:
    url = stack.triton.grpc_url
    free = generate(url, MODEL, PROMPT, {"max_tokens": 16, "seed": 7, "temperature": 1.0, "logprobs": 0})
    assert free.finish_reason == "length" and len(free.output_ids) == 16 == free.output_counts
    assert len(free.logprobs) == 16 and all(lp <= 0 for lp in free.logprobs)
    assert free.prompt_ids and free.responses >= 2  # streamed
    # The same seed again, now stopping at a piece of what it wrote: the text ends before it, reason "stop".
    cut = free.text[len(free.text) // 2:][:3]
    stopped = generate(url, MODEL, PROMPT, {"max_tokens": 16, "seed": 7, "temperature": 1.0, "stop": [cut]})
    assert stopped.finish_reason == "stop"
    assert cut not in stopped.text and free.text.startswith(stopped.text)
    # Token in: the prompt's own ids instead of its text give the same generation.
    token_in = generate(url, MODEL, "", {"max_tokens": 16, "seed": 7, "temperature": 1.0}, input_ids=free.prompt_ids)
    assert token_in.prompt_ids == free.prompt_ids and token_in.output_ids == free.output_ids


def test_concurrent_trajectories_share_one_engine_batch(stack: EmbeddedStack, client: Client) -> None:
    port = stack.triton.metrics_port
    peak = 0.0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, unfinished_requests(port, MODEL))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda i: client.ask(f"question {i}", max_steps=2, max_tokens=400, seed=i),
                                    range(8)))
    finally:
        stop.set()
        watcher.join()
    assert all(r.status in ("STATUS_BUDGET_EXHAUSTED", "STATUS_COMPLETED") for r in results), [
        r.reason for r in results]
    assert peak >= 2, f"the engine never held more than {peak} requests at once"


def test_cancel_aborts_the_engine_request(stack: EmbeddedStack, client: Client) -> None:
    port = stack.triton.metrics_port
    cancel_mid_generation(client, lambda: unfinished_requests(port, MODEL), stop_within_s=5)
    log = Path(stack.triton._child.log).read_text()  # type: ignore[union-attr]
    assert "aborted in the engine" in log
