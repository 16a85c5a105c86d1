"""The gateway side of tests/model/transformers_worker.py: a `ModelBackend` that hands each model step to the
worker process in the engine venv and reports the token extensions of the Triton contract (token-in)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolfabric_server.model.backend import ModelChunk, ModelUnavailable
from toolfabric_server.model.engine_venv import PROJECT_ROOT, engine_python, engine_venv
from toolfabric_server.model.settings import ModelSettings


@dataclass
class WorkerEngine:
    process: asyncio.subprocess.Process
    end_turn_id: int
    max_new_tokens: int = 12
    grids: list[list[int]] = field(default_factory=list)  # the processor's tokens per image, per step

    @classmethod
    async def start(cls, checkpoint: Path, end_turn_id: int) -> WorkerEngine:
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        python = engine_python(engine_venv(ModelSettings()))
        process = await asyncio.create_subprocess_exec(
            str(python), "-m", "tests.model.transformers_worker", str(checkpoint), env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 24)
        return cls(process, end_turn_id)

    async def close(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    async def stream(self, model: str, prompt: str, images: list[bytes], sampling: dict[str, Any], request_id: str,
                     input_ids: list[int] | None = None) -> AsyncIterator[ModelChunk]:
        if input_ids is None:
            raise ModelUnavailable("the conformance test runs token-in: the gateway sent no input_ids")
        assert self.process.stdin is not None and self.process.stdout is not None
        step = len(self.grids) + 1
        request = {"input_ids": input_ids, "images": [base64.b64encode(b).decode() for b in images],
                   "max_new_tokens": self.max_new_tokens, "end_turn": step % 2 == 1}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        await self.process.stdin.drain()
        reply = json.loads(await self.process.stdout.readline() or b'{"error": "the engine worker exited"}')
        if "error" in reply:
            raise ModelUnavailable(f"engine: {reply['error']}")
        self.grids.append(reply["grids"])
        completion = reply["completion"]
        yield ModelChunk(text=reply["text"], prompt_token_ids=list(input_ids), output_token_ids=completion,
                         output_logprobs=reply["logprobs"], token_in=True)
        yield ModelChunk(finish_reason="stop" if completion and completion[-1] == self.end_turn_id else "length",
                         input_tokens=len(input_ids), output_tokens=len(completion),
                         num_image_tokens=sum(reply["grids"]), token_in=True)
