"""Tokens end to end inside the gateway: the ledger, the loop's ModelTokens records, the token-exact export.

A tokenizer trained in the test (tests/support/tokenizer.py) and an in-process engine with the token
contract (tests/fakes/token_engine.py); the real engines' conformance is tests/model/test_token_conformance.py.
"""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aredis
from PIL import Image

from tests.fakes.agents import RecordingTools
from tests.fakes.token_engine import TokenEngine
from tests.support.tokenizer import make_checkpoint
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.catalog import catalog
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.common.tools import NewImage, ToolResult
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.engine.loop import AgentLoop
from toolfabric_server.engine.ports import ToolInvocation
from toolfabric_server.engine.resume import Checkpoint
from toolfabric_server.engine.spec import InputImage, RunSpec
from toolfabric_server.engine.tokens import StepTokens, TokenLedger
from toolfabric_server.export.conversation import rebuild
from toolfabric_server.export.tokens import rl_token_records, segments
from toolfabric_server.gateway.channels import ChannelTracker
from toolfabric_server.gateway.checkpoints import checkpoint
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.model.dialects import dialect_named
from toolfabric_server.model.errors import TokenizerUnavailable
from toolfabric_server.model.settings import ModelSettings
from toolfabric_server.model.tokenizer import ImageGrid, ModelTokenizer, load_tokenizers
from toolfabric_server.model.triton_client import sampled_tokens

ZOOM = '<think>look closer</think><tool_call>{"name": "zoom_in", "arguments": {"image": "<image 1>", ' \
       '"bbox": [0, 0, 500, 500]}}</tool_call>'
ANSWER = "<think>done</think><answer>Eileen Collins</answer>"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> ModelTokenizer:
    return ModelTokenizer.load(make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny"))


@pytest.fixture
async def blobs(redis_server: RedisServer) -> AsyncIterator[AsyncBlobStore]:
    client = aredis.Redis.from_url(redis_server.url)
    yield AsyncBlobStore(client, 600)
    await client.aclose()


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (120, 40, 200)).save(out, "PNG")
    return out.getvalue()


async def run_loop(blobs: AsyncBlobStore, engine: TokenEngine, tokenizer: ModelTokenizer | None,
                   dialect: str = "qwen3vl", steps: int = 6, resume: Checkpoint | None = None) -> list[pb.RunEvent]:
    """One trajectory (a 320x256 photo in; zoom_in answers with a 96x64 image); with `resume`, from a checkpoint."""
    zoomed = await blobs.put(png(96, 64))

    async def zoom(invocation: ToolInvocation) -> ToolResult:
        return ToolResult(text="zoomed", images=[NewImage(ref=zoomed, width=96, height=64, origin="zoom")])

    loop = AgentLoop(engine, RecordingTools({"zoom_in": zoom}), blobs, catalog(), lambda _: dialect_named(dialect),
                     GatewaySettings(), lambda _: tokenizer, channels=ChannelTracker)
    photo = png(320, 256)
    ref = await blobs.put(photo)
    events: list[pb.RunEvent] = []

    async def emit(event: pb.RunEvent) -> None:
        events.append(event)

    spec = RunSpec(trajectory_id="t1", question="Who is this?", mode="general", model="tiny", max_steps=steps,
                   max_tool_calls=8, deadline_s=30, sampling={},
                   inputs=[InputImage(ref, 320, 256, "image/png", photo)])
    await loop.run(spec, emit, resume)
    return events


def trajectory(events: list[pb.RunEvent]) -> pb.Trajectory:
    return pb.Trajectory(trajectory_id="t1", model="tiny", question="Who is this?", mode=pb.MODE_GENERAL,
                         status=pb.STATUS_COMPLETED, events=events)


def full_prompts(events: list[pb.RunEvent]) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, completion ids) per step, rebuilt from the records."""
    out: list[tuple[list[int], list[int]]] = []
    previous: list[int] = []
    for e in events:
        if e.HasField("tokens"):
            prompt = previous[:e.tokens.prompt_reused] + list(e.tokens.prompt_token_ids)
            out.append((prompt, list(e.tokens.completion_token_ids)))
            previous = prompt + list(e.tokens.completion_token_ids)
    return out


def test_image_tokens_follow_the_processors_grid() -> None:
    qwen3 = ImageGrid(patch_size=16, merge_size=2, min_pixels=32 * 32, max_pixels=512 * 512)
    assert qwen3.tokens(320, 256) == 80  # 10 x 8 merged patches of 32 px (the note's measurement)
    assert qwen3.resized(256, 320) == (256, 320)
    assert qwen3.tokens(1000, 1000) == 256  # over the pixel budget: scaled down to 512 x 512
    assert qwen3.tokens(10, 10) == 1  # under it: scaled up to one merged patch
    qwen25 = ImageGrid()  # Qwen2.5-VL's defaults: 14 px patches, 28 px after merging
    assert qwen25.tokens(640, 480) == 23 * 17
    with pytest.raises(ValueError, match="aspect ratio"):
        qwen3.tokens(4000, 10)


def test_a_checkpoint_without_a_tokenizer_is_named_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(TokenizerUnavailable, match=r"TOOLFABRIC_MODEL_CHECKPOINTS\['tiny'\].*tokenizer"):
        load_tokenizers({"tiny": str(tmp_path)})


def test_the_ledger_appends_only_the_new_turn_keeping_the_separator(tokenizer: ModelTokenizer) -> None:
    template = dialect_named("qwen3vl").template
    ledger = TokenLedger(tokenizer, template.turn_end)
    first = "<|im_start|>user\nWho?<|im_end|>\n<|im_start|>assistant\n"
    sent = ledger.prompt_for(first, [])
    assert sent == tokenizer.encode(first)
    im_end = tokenizer.token_id("<|im_end|>")
    assert im_end is not None
    completion = [*tokenizer.encode("<answer>x</answer>"), im_end]
    ledger.record(first, "<answer>x</answer>", [], sent, StepTokens(completion_ids=completion, token_in=True))
    second = first + "<answer>x</answer><|im_end|>\n<|im_start|>user\n<observation>ok</observation><|im_end|>\n" \
                     "<|im_start|>assistant\n"
    ids = ledger.prompt_for(second, [])
    assert ids is not None and ids[:len(sent) + len(completion)] == sent + completion
    # The model's own <|im_end|> is not written twice, and the newline after it survives as its own token.
    newline = tokenizer.encode("\n")
    assert ids[len(sent) + len(completion):][:len(newline)] == newline


async def test_token_in_records_every_step_with_the_prefix_property(blobs: AsyncBlobStore,
                                                                    tokenizer: ModelTokenizer) -> None:
    engine = TokenEngine(tokenizer, [ZOOM, "garbage <tool_call>{broken", ANSWER])
    events = await run_loop(blobs, engine, tokenizer)
    records = [e.tokens for e in events if e.HasField("tokens")]
    assert len(records) == 3 and all(r.token_in for r in records)
    steps = full_prompts(events)
    # What the engine used as each prompt is what the records say, and each extends the one before.
    assert [p for p, _ in steps] == engine.prompts
    for (prompt, completion), (following, _) in itertools.pairwise(steps):
        assert following[:len(prompt) + len(completion)] == prompt + completion
    assert records[1].prompt_reused == len(steps[0][0]) + len(steps[0][1])
    # The input photo (320x256) and the zoom's output (96x64) each have their grid's placeholder count.
    assert list(records[0].image_tokens) == [80]
    assert list(records[1].image_tokens) == [80, ImageGrid(16, 2, 32 * 32, 512 * 512).tokens(96, 64)]
    assert records[1].engine_image_tokens == sum(records[1].image_tokens)
    assert list(records[0].completion_logprobs)[-1] == pytest.approx(-0.25)
    usage = next(e.usage for e in events if e.HasField("usage"))
    assert usage.token_unit == "tokens"
    assert usage.input_tokens == sum(len(p) for p, _ in steps)
    assert usage.output_tokens == sum(len(c) for _, c in steps)
    assert usage.image_tokens == sum(sum(r.image_tokens) for r in records)
    # Each record comes after its step's text and before its tool calls.
    kinds = [e.WhichOneof("event") for e in events if e.step == 1]
    assert kinds.index("tokens") > kinds.index("text") and kinds.index("tokens") < kinds.index("tool_call")


async def test_the_rl_export_is_the_exact_token_sequence_with_a_mask_on_the_models_tokens(
        blobs: AsyncBlobStore, tokenizer: ModelTokenizer) -> None:
    engine = TokenEngine(tokenizer, [ZOOM, ANSWER])
    events = await run_loop(blobs, engine, tokenizer)
    conv = rebuild(trajectory(events), ModelSettings(), catalog())
    [sample] = rl_token_records(conv, {"<image 1>": "images/a.png", "<sub-image 1>": "images/b.png"})
    last_prompt, last_completion = full_prompts(events)[-1]
    assert sample["input_ids"] == last_prompt + last_completion
    assert sample["prefix_property"] and sample["first_mismatch"] is None
    masked = [t for t, m in zip(sample["input_ids"], sample["loss_mask"], strict=True) if m]
    assert masked == [t for _, c in full_prompts(events) for t in c]  # exactly the model's own tokens
    [(start, end)] = sample["observation_spans"]
    first_end = sample["completion_spans"][0][1]
    assert start == first_end and end == sample["completion_spans"][1][0]
    observation = tokenizer.decode(sample["input_ids"][start:end])
    assert observation.startswith("\n<|im_start|>user\n<observation>") and "zoomed" in observation
    assert sample["images"] == ["images/a.png", "images/b.png"] and len(sample["image_tokens"]) == 2
    assert json.loads(json.dumps(sample)) == sample


async def test_an_engine_that_retokenises_text_breaks_the_prefix_and_the_export_says_where(
        blobs: AsyncBlobStore, tokenizer: ModelTokenizer) -> None:
    # Triton's official vLLM backend takes text only: the model's own (non-canonical) tokens come back as the
    # tokenizer's reading of their text in the next prompt.
    engine = TokenEngine(tokenizer, [ZOOM, ANSWER], takes_ids=False, spelled=True)
    events = await run_loop(blobs, engine, tokenizer)
    records = [e.tokens for e in events if e.HasField("tokens")]
    assert [r.token_in for r in records] == [False, False]
    steps = full_prompts(events)
    assert steps[1][0] == engine.prompts[1]  # the engine's ids are recorded as they were
    found, mismatch = segments(trajectory(events))
    assert mismatch is not None and mismatch.step == 2
    assert mismatch.position == len(steps[0][0])  # the first token the model wrote in step 1
    assert mismatch.expected == steps[0][1][0] and mismatch.found == steps[1][0][mismatch.position]
    assert [s.steps for s in found] == [[1], [2]]
    assert found[1].input_ids == steps[1][0] + steps[1][1]


async def test_without_a_tokenizer_the_engines_own_ids_are_recorded(blobs: AsyncBlobStore,
                                                                    tokenizer: ModelTokenizer) -> None:
    engine = TokenEngine(tokenizer, [ANSWER], takes_ids=True)
    events = await run_loop(blobs, engine, None)
    assert engine.given == [None]  # nothing to send: no tokenizer configured for the model
    [record] = [e.tokens for e in events if e.HasField("tokens")]
    assert not record.token_in and list(record.prompt_token_ids) == engine.prompts[0]
    assert list(record.image_tokens) == []  # unknown without the tokenizer: the engine's count is kept
    assert record.engine_image_tokens == 80


async def test_deepeyes_prompts_extend_too(blobs: AsyncBlobStore, tokenizer: ModelTokenizer) -> None:
    zoom = '<think>zoom</think><tool_call>{"name": "image_zoom_in_tool", "arguments": {"bbox_2d": [0, 0, 50, 50]}}' \
           '</tool_call>'
    engine = TokenEngine(tokenizer, [zoom, ANSWER])
    events = await run_loop(blobs, engine, tokenizer, dialect="deepeyes")
    found, mismatch = segments(trajectory(events))
    assert mismatch is None and len(found) == 1 and found[0].steps == [1, 2]
    assert "<tool_response>" in tokenizer.decode(found[0].input_ids)


async def test_a_resumed_trajectory_goes_on_extending_the_recorded_ids(blobs: AsyncBlobStore,
                                                                       tokenizer: ModelTokenizer) -> None:
    engine = TokenEngine(tokenizer, [ZOOM, ZOOM, ANSWER])
    events = await run_loop(blobs, engine, tokenizer)
    cut = next(i for i, e in enumerate(events) if e.step == 2)  # the gateway was lost after step 1
    record = trajectory(events[:cut])
    point = checkpoint(record, now_s=0)
    assert point.steps[0].tokens is not None

    again = TokenEngine(tokenizer, [ZOOM, ANSWER])
    resumed = await run_loop(blobs, again, tokenizer, resume=point)
    step2 = next(e.tokens for e in resumed if e.HasField("tokens"))
    first_prompt, first_completion = full_prompts(events[:cut])[0]
    assert step2.prompt_reused == len(first_prompt) + len(first_completion)
    assert again.given[0] is not None and again.given[0][:step2.prompt_reused] == first_prompt + first_completion



def test_the_official_backends_logprobs_name_the_sampled_tokens() -> None:
    one = json.dumps([{"151645": {"logprob": -0.25, "rank": 1, "decoded_token": "<|im_end|>"}},
                      {"13": {"logprob": -1.5, "rank": 3, "decoded_token": "."}}])
    assert sampled_tokens(one) == ([151645, 13], [-0.25, -1.5])
    several = json.dumps([{"1": {"logprob": -0.1}, "2": {"logprob": -2.0}}])  # top-2: which was sampled is not said
    assert sampled_tokens(several) is None
    assert sampled_tokens("null") is None and sampled_tokens("") is None and sampled_tokens("{") is None
