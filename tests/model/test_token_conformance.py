"""Token conformance for RL, on tiny Qwen3-VL and DeepEyes (Qwen2.5-VL) models generating for real.

The agent loop runs whole trajectories against a transformers engine in the engine venv
(tests/model/transformers_worker.py) on `toolfabric model make-tiny`'s checkpoints: the model's real vision
tower and image processor, random weights, so every step is garbage the loop answers with a model_output
observation. For each dialect it proves on the recorded `ModelTokens`:
(a) each step's prompt ids begin with the previous step's prompt + completion ids (the first mismatch is named);
(b) the separators at the assistant -> observation -> assistant boundaries survive: the appended ids are the
    tokenizer's own ids of "<|im_end|>\\n<|im_start|>user\\n…" (the model's <|im_end|> kept, the "\\n" after it);
(c) each image's placeholder count equals the processor's grid, the step-1 prompt equals what a Qwen processor
    makes of the rendered text (each <|image_pad|> repeated grid_t*grid_h*grid_w/merge² times), and the model
    accepts the ids with the pixel values (transformers refuses a count that does not match the features).
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aredis
from PIL import Image
from tokenizers import Tokenizer

from tests.fakes.agents import RecordingTools
from tests.model.transformers_engine import WorkerEngine
from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.catalog import catalog
from toolfabric_server.common.blobs import AsyncBlobStore
from toolfabric_server.devstack.redis_server import RedisServer
from toolfabric_server.engine.images import RegisteredImage
from toolfabric_server.engine.loop import AgentLoop
from toolfabric_server.engine.prompting import system_message, user_message
from toolfabric_server.engine.spec import InputImage, RunSpec
from toolfabric_server.export.tokens import segments
from toolfabric_server.gateway.channels import ChannelTracker
from toolfabric_server.gateway.settings import GatewaySettings
from toolfabric_server.model.dialects import dialect_named
from toolfabric_server.model.tokenizer import ModelTokenizer

SIZES = [(320, 256), (150, 410)]
QUESTION = "Who is on the left?"


@pytest.fixture
async def blobs(redis_server: RedisServer) -> AsyncIterator[AsyncBlobStore]:
    client = aredis.Redis.from_url(redis_server.url)
    yield AsyncBlobStore(client, 600)
    await client.aclose()


def png(size: tuple[int, int], seed: int) -> bytes:
    out = io.BytesIO()
    Image.effect_noise(size, 40 + seed).convert("RGB").save(out, "PNG")
    return out.getvalue()


def make_tiny(family: str, out: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "toolfabric.cli.main", "model", "make-tiny", "--family", family,
                           str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.mark.parametrize("family", ["qwen3vl", "deepeyes"])
async def test_prefix_separators_and_image_counts_hold_for_a_real_model(family: str, blobs: AsyncBlobStore,
                                                                       tiny_models: Path) -> None:
    root = make_tiny(family, tiny_models / family)
    tokenizer = ModelTokenizer.load(root)
    end = tokenizer.token_id("<|im_end|>")
    assert end is not None
    engine = await WorkerEngine.start(root, end)
    try:
        events = await run(family, engine, tokenizer, blobs)
    finally:
        await engine.close()
    check(family, events, engine, tokenizer, Tokenizer.from_file(str(root / "tokenizer.json")))


async def run(family: str, engine: WorkerEngine, tokenizer: ModelTokenizer,
              blobs: AsyncBlobStore) -> list[pb.RunEvent]:
    loop = AgentLoop(engine, RecordingTools(), blobs, catalog(), lambda _: dialect_named(family), GatewaySettings(),
                     lambda _: tokenizer, channels=ChannelTracker)
    inputs = []
    for i, size in enumerate(SIZES):
        data = png(size, i)
        inputs.append(InputImage(await blobs.put(data), *size, "image/png", data))
    events: list[pb.RunEvent] = []

    async def emit(event: pb.RunEvent) -> None:
        events.append(event)

    spec = RunSpec(trajectory_id=f"conf-{family}", question=QUESTION, mode="general", model="tiny",
                   max_steps=3, max_tool_calls=4, deadline_s=120, sampling={"max_tokens": 12}, inputs=inputs)
    status, reason = await loop.run(spec, emit)
    assert status == pb.STATUS_BUDGET_EXHAUSTED, reason  # garbage never answers: three steps, each observed
    return events


def check(family: str, events: list[pb.RunEvent], engine: WorkerEngine, tokenizer: ModelTokenizer,
          hf: Tokenizer) -> None:
    """The three properties, on the records, the way a trainer would check them."""
    records = [e.tokens for e in events if e.HasField("tokens")]
    assert len(records) == 3 and all(r.token_in for r in records)

    # (a) the prefix property, checked the way a trainer checks it, on the ids the engine used.
    found, mismatch = segments(pb.Trajectory(events=events))
    assert mismatch is None, f"step {mismatch.step}: first mismatch at token {mismatch.position}"
    [whole] = found
    assert whole.steps == [1, 2, 3]
    previous: list[int] = []
    for r in records:
        assert r.prompt_reused == len(previous)
        previous = [*previous, *r.prompt_token_ids, *r.completion_token_ids]
    assert whole.input_ids == previous

    # (b) separators: what the fabric appended after each completion is the tokenizer's own ids of the turn
    # markup, starting right after the model's <|im_end|> (or with one, when max_tokens cut the model short).
    end = tokenizer.token_id("<|im_end|>")
    encode = lambda text: hf.encode(text, add_special_tokens=False).ids  # noqa: E731 - the tokenizer, read plainly
    assert [r.completion_token_ids[-1] == end for r in records[:2]] == [True, False]  # both kinds of boundary
    for (start, stop), (_, last, _) in zip(whole.observation_spans, whole.completion_spans, strict=False):
        assert start == last
        appended = whole.input_ids[start:stop]
        ended = whole.input_ids[start - 1] == end
        opening = ("" if ended else "<|im_end|>") + "\n<|im_start|>user\n"
        assert appended[:len(encode(opening))] == encode(opening)
        assert tokenizer.decode(appended).endswith("<|im_end|>\n<|im_start|>assistant\n")
        assert encode("\n")[0] in appended[:2]  # the newline after <|im_end|> is there, as its own token

    # (c) image placeholders: per image, the processor's grid, in every step's prompt.
    assert [list(r.image_tokens) for r in records] == engine.grids
    assert all(r.engine_image_tokens == sum(r.image_tokens) for r in records)
    # The step-1 prompt is the template's rendering of the conversation, each single <|image_pad|> repeated as a
    # Qwen processor repeats it (grid_t * grid_h * grid_w / merge²), read by the tokenizer itself.
    dialect = dialect_named(family)
    started = next(e.started for e in events if e.HasField("started"))
    rendered = dialect.template.render([
        system_message("general", catalog().visible("general"), dialect),
        user_message(QUESTION, [RegisteredImage.from_ref(i) for i in started.images])])
    pieces = rendered.split(pad := "<|image_pad|>")
    assert len(pieces) == len(SIZES) + 1
    reference = pieces[0] + "".join(pad * n + rest for n, rest in zip(engine.grids[0], pieces[1:], strict=True))
    assert encode(reference) == list(records[0].prompt_token_ids)
