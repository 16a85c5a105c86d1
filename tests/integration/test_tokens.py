"""Token ids through the real stack: a gateway configured with the model's checkpoint sends `input_ids` to a Triton
model that declares the token extensions (tests/model_repository/toolfabric_scripted_tokens), records what it
returns, keeps it in the store, and `toolfabric export --format rl` gives the exact sequence back.

The engines that generate for real (vLLM, transformers) are tested through Triton in tests/model (`make test-model`);
this test is the gateway's side of the contract on every `make test`: capabilities read from the model's config,
INT64/FP32 tensors both ways, the baseline left on text."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.integration.conftest import extra_gateway
from tests.support.test_models import loaded
from tests.support.tokenizer import make_checkpoint
from toolfabric import Client
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.devstack.stack import EmbeddedStack
from toolfabric_server.export.tokens import segments
from toolfabric_server.model.tokenizer import ModelTokenizer

pytestmark = pytest.mark.integration
MODEL = "toolfabric_scripted_tokens"
OFFICIAL = "toolfabric_scripted_logprobs"  # says of tokens only what Triton's official vLLM backend says
ZOOM = '<think>closer</think><tool_call>{"name": "zoom_in", "arguments": {"image": "<image 1>", ' \
       '"bbox": [0, 0, 160, 128], "factor": 1}}</tool_call>'
ANSWER = "<think>seen</think><answer>a purple square</answer>"


@pytest.fixture(scope="module")
def tokens_gateway(stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    checkpoint = make_checkpoint(tmp_path_factory.mktemp("checkpoint") / "tiny")
    parameters = {"tokenizer": str(checkpoint / "tokenizer.json")}
    checkpoints = json.dumps({MODEL: str(checkpoint), OFFICIAL: str(checkpoint)})
    with loaded(stack.triton.grpc_url, MODEL, parameters), loaded(stack.triton.grpc_url, OFFICIAL, parameters), \
            extra_gateway(stack, tmp_path_factory.mktemp("gateway"),
                          TOOLFABRIC_MODEL_CHECKPOINTS=checkpoints) as target:
        yield target, checkpoint


def photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 256), (120, 40, 200)).save(out, "PNG")
    return out.getvalue()


def test_token_ids_go_in_come_back_and_are_kept(tokens_gateway: tuple[str, Path], tmp_path: Path) -> None:
    target, checkpoint = tokens_gateway
    tokenizer = ModelTokenizer.load(checkpoint)
    with Client(target, timeout_s=180) as client:
        result = client.ask(json.dumps({"script": [ZOOM, ANSWER]}), images=[photo()], model=MODEL, mode="general",
                            labels={"suite": "tokens"})
        assert result.status == "STATUS_COMPLETED" and result.answer == "a purple square"
        records = [e.tokens for e in result.events if e.HasField("tokens")]
        assert len(records) == 2 and all(r.token_in for r in records)
        found, mismatch = segments(pb.Trajectory(events=result.events))
        assert mismatch is None and found[0].steps == [1, 2]
        # The photo (320x256) and the zoom's output: each its grid's placeholders, as the engine counted them.
        observation = next(o for o in result.observations if o.images)
        zoomed = observation.images[0]
        assert list(records[1].image_tokens) == [tokenizer.grid.tokens(320, 256),
                                                 tokenizer.grid.tokens(zoomed.width, zoomed.height)]
        assert records[1].engine_image_tokens == sum(records[1].image_tokens)
        assert all(v == pytest.approx(-0.5) for r in records for v in r.completion_logprobs)
        assert result.usage is not None and result.usage.token_unit == "tokens"
        assert result.usage.input_tokens == sum(r.prompt_reused + len(r.prompt_token_ids) for r in records)
        assert result.usage.output_tokens == sum(len(r.completion_token_ids) for r in records)
        assert result.usage.image_tokens == sum(sum(r.image_tokens) for r in records)
        for _ in range(300):  # the store's writer is asynchronous
            if [s for s in client.iter_trajectories(labels={"suite": "tokens"}) if s.status != pb.STATUS_RUNNING]:
                break
            time.sleep(0.1)

    done = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "export", str(tmp_path), "--target", target,
                           "--label", "suite=tokens", "--format", "rl", "--no-progress"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    [sample] = [json.loads(line) for line in (tmp_path / "rl_tokens.jsonl").read_text().splitlines()]
    assert sample["input_ids"] == found[0].input_ids and sample["prefix_property"]
    masked = [t for t, m in zip(sample["input_ids"], sample["loss_mask"], strict=True) if m]
    assert masked == [t for r in records for t in r.completion_token_ids]
    assert len(sample["images"]) == 2 and all((tmp_path / p).exists() for p in sample["images"])


def test_the_baseline_still_gets_text_and_records_no_ids(tokens_gateway: tuple[str, Path]) -> None:
    target, _ = tokens_gateway
    with Client(target, timeout_s=180) as client:
        result = client.ask(json.dumps({"script": [ANSWER]}), model="toolfabric_scripted")
    assert result.status == "STATUS_COMPLETED"
    assert not [e for e in result.events if e.HasField("tokens")]
    assert result.usage is not None and result.usage.token_unit == "words"


def test_an_engine_that_takes_text_has_its_sampled_ids_recorded(tokens_gateway: tuple[str, Path]) -> None:
    # Triton's official vLLM backend takes no ids and returns none, but its `logprobs` output (asked for with
    # logprobs 0) names each sampled token; the prompt ids are the checkpoint tokenizer's reading of the text sent.
    target, checkpoint = tokens_gateway
    tokenizer = ModelTokenizer.load(checkpoint)
    with Client(target, timeout_s=180) as client:
        result = client.ask(json.dumps({"script": [ZOOM, ANSWER]}), images=[photo()], model=OFFICIAL, mode="general")
    assert result.status == "STATUS_COMPLETED"
    records = [e.tokens for e in result.events if e.HasField("tokens")]
    assert len(records) == 2 and not any(r.token_in for r in records)
    end = tokenizer.token_id("<|im_end|>")
    assert list(records[0].completion_token_ids) == [*tokenizer.encode(ZOOM), end]
    assert all(v == pytest.approx(-0.5) for r in records for v in r.completion_logprobs)
    assert list(records[0].image_tokens) == [tokenizer.grid.tokens(320, 256)]
    found, mismatch = segments(pb.Trajectory(events=result.events))
    assert mismatch is None and found[0].steps == [1, 2]  # canonical ids: re-reading the text gives them back
