"""The tiny Qwen3-VL on the transformers engine behind Triton: images through its real processor and vision tower,
driven directly on the contract and through the real gateway."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.model.engine_probe import generate, unfinished_requests
from toolfabric import Client
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.neural_models import checkpoint
from toolfabric_server.devstack.stack import EmbeddedStack
from toolfabric_server.model.engine_venv import engine_venv, run_in_engine_venv
from toolfabric_server.model.settings import ModelSettings

MODEL = "tiny_qwen3vl"
IMAGE = Path(__file__).resolve().parents[2] / "toolfabric" / "demo" / "question.jpg"
PROMPT = ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Who is this?<|im_end|>\n"
          "<|im_start|>assistant\n")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    with EmbeddedStack(tmp_path_factory.mktemp("hf-stack"), demo_site=False, model="tiny-qwen3vl") as running:
        yield running


def pad_id() -> int:
    added = json.loads((checkpoint("qwen3vl", ModelSettings()) / "tokenizer.json").read_text())["added_tokens"]
    return next(t["id"] for t in added if t["content"] == "<|image_pad|>")


def test_an_image_becomes_its_processor_grid_of_tokens(stack: EmbeddedStack) -> None:
    out = generate(stack.triton.grpc_url, MODEL, PROMPT, {"max_tokens": 12, "temperature": 1.0, "logprobs": 0},
                   images=[IMAGE.read_bytes()])
    # question.jpg is 640x480 → resized to a multiple of 32 within 256 merged patches: a few hundred pads at most.
    assert 0 < out.image_tokens <= 256
    assert out.prompt_ids.count(pad_id()) == out.image_tokens
    assert out.finish_reason in ("length", "stop") and 1 <= len(out.output_ids) <= 12
    assert len(out.logprobs) == len(out.output_ids) and out.responses >= 2
    # Token in, placeholders already expanded: the same prompt ids are accepted as they are…
    again = generate(stack.triton.grpc_url, MODEL, "", {"max_tokens": 4}, input_ids=out.prompt_ids,
                     images=[IMAGE.read_bytes()])
    assert again.prompt_ids == out.prompt_ids and again.image_tokens == out.image_tokens
    # …and a count that does not match the processor's is refused, saying so.
    short = [t for i, t in enumerate(out.prompt_ids) if not (t == pad_id() and i % 2)]
    with pytest.raises(RuntimeError, match="image placeholder runs"):
        generate(stack.triton.grpc_url, MODEL, "", {"max_tokens": 4}, input_ids=short, images=[IMAGE.read_bytes()])


def test_greedy_tokens_are_what_the_training_forward_pass_scores(stack: EmbeddedStack) -> None:
    """The served model reads a prompt with an image as TRL's forward pass does (the same 3D rope positions), so a
    trained checkpoint is served as it was trained. The engine's logprobs of its own greedy tokens against one
    forward pass over the processor's ids and `mm_token_type_ids` (tests/model/teacher_forcing.py): bf16 noise is
    ~0.01 nats; the engine without `mm_token_type_ids` (1D positions for the image and all after it) was 0.2 off."""
    out = generate(stack.triton.grpc_url, MODEL, PROMPT, {"max_tokens": 16, "temperature": 0, "logprobs": 0},
                   images=[IMAGE.read_bytes()])
    assert len(out.output_ids) == len(out.logprobs) == 16
    request = {"prompt": PROMPT, "images": [str(IMAGE)], "output_ids": out.output_ids}
    done = run_in_engine_venv("tests.model.teacher_forcing", [str(checkpoint("qwen3vl", ModelSettings()))],
                              engine_venv(ModelSettings()), stdin=json.dumps(request).encode())
    reference = json.loads(done.stdout)
    assert reference["prompt_ids"] == out.prompt_ids  # the engine expands the image as the processor does
    gaps = [abs(a - b) for a, b in zip(out.logprobs, reference["logprobs"], strict=True)]
    assert max(gaps) < 0.05, gaps


def test_a_trajectory_with_an_image_runs_to_its_budget(stack: EmbeddedStack) -> None:
    with Client(stack.target, timeout_s=300) as client:
        result = client.ask("Who is the person in the image?", [str(IMAGE)], max_steps=2, max_tokens=32, seed=1)
    assert result.status == "STATUS_BUDGET_EXHAUSTED", result.reason
    assert {e.step for e in result.events if e.WhichOneof("event") == "text"} == {1, 2}
    assert any(o.is_error for o in result.observations)
    assert result.usage.output_tokens > 0


def test_cancel_stops_the_generation(stack: EmbeddedStack) -> None:
    port = stack.triton.metrics_port
    with Client(stack.target, timeout_s=300) as client:
        seen = 0
        for event in client.events("Describe it all.", [str(IMAGE)], max_steps=1, max_tokens=3000, seed=2):
            if event.WhichOneof("event") == "text":
                seen += 1
                if seen == 5:
                    client.cancel(event.trajectory_id)
            if event.WhichOneof("event") == "finished":
                assert event.finished.status == pb.STATUS_CANCELLED
    deadline = time.monotonic() + 5
    while unfinished_requests(port, MODEL) > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert unfinished_requests(port, MODEL) == 0
