"""Summaries of long pages through the model service (TOOLFABRIC_FETCH_SUMMARIZER_MODEL on Triton).

R1V4 had a 32B LLM summarise long pages for the goal; here any model served on Triton with the
fabric's contract can. The page is first cut to the passages most relevant to the goal that
fit the summariser's input budget, so an enormous page never overflows its context. A failure
is a `SummarizerUnavailable`, and web_visit falls back to extractive passages (and says so).
"""

from __future__ import annotations

import asyncio
import re
import uuid

from toolfabric_server.web.errors import FetchError
from toolfabric_server.web.extract import Page
from toolfabric_server.web.passages import select

INPUT_TOKENS = 12_000
SYSTEM = (
    "You summarise one web page for a research assistant. Keep every fact, number, name and date "
    "relevant to the goal, quote key sentences exactly, and say plainly when the page does not "
    "answer the goal. Write plain text, no preamble."
)
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)


class SummarizerUnavailable(FetchError):
    kind = "unavailable"


class ModelSummarizer:
    def __init__(self, model: str, triton_url: str, timeout_s: float) -> None:
        self.model, self.triton_url, self.timeout_s = model, triton_url, timeout_s

    def prompt(self, page: Page, query: str) -> str:
        from toolfabric_server.model.chat_template import Message, Qwen3VLTemplate

        excerpt = select(page.content, query, INPUT_TOKENS).content
        user = f"Goal: {query or 'what this page says'}\n\nPage title: {page.title}\nURL: {page.url}\n\n{excerpt}"
        return Qwen3VLTemplate().render([Message("system", [SYSTEM]), Message("user", [user])])

    async def summarize(self, page: Page, query: str, budget_tokens: int) -> str:
        import grpc
        from tritonclient.utils import InferenceServerException

        from toolfabric_server.model.errors import ModelUnavailable
        from toolfabric_server.model.triton_client import TritonModel

        client = TritonModel(self.triton_url, self.timeout_s)
        sampling = {"temperature": 0.2, "max_tokens": budget_tokens}
        parts: list[str] = []
        try:
            async with asyncio.timeout(self.timeout_s):
                async for chunk in client.stream(self.model, self.prompt(page, query), [], sampling, uuid.uuid4().hex):
                    parts.append(chunk.text)
        except (ModelUnavailable, TimeoutError, grpc.RpcError, InferenceServerException) as exc:
            reason = exc.details() if isinstance(exc, grpc.aio.AioRpcError) else str(exc) or "timed out"
            raise SummarizerUnavailable(f"summariser {self.model} at {self.triton_url} failed: {reason}") from None
        finally:
            await client.close()
        text = _THINK.sub("", "".join(parts)).strip()
        if not text:
            raise SummarizerUnavailable(f"summariser {self.model} returned nothing")
        return text
