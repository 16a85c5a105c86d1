"""The LLM judge: a BrowseComp-style grading prompt, a reply parsed as `correct: yes|no`, every call cached.

Backends: a model on Triton (the vLLM tensor contract, through the fabric's own Triton client and chat
template) or any OpenAI-compatible `/chat/completions` endpoint. The cache is a JSONL file in the run
directory keyed by (backend, model, prompt): a rerun in replay mode asks no judge at all and fails on
a miss. A reply without a parseable verdict is returned as such, never guessed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from toolfabric_server.evals.errors import JudgeCacheMiss, JudgeError

# The grader template of BrowseComp (R1V4's benchmark scripts use the same protocol).
PROMPT = """Judge whether the following [response] to [question] is correct or not based on the precise and \
unambiguous [correct_answer] below.

[question]: {question}

[response]: {response}

Your judgement must be in the format and criteria specified below:

extracted_final_answer: The final exact answer extracted from the [response]. Put the extracted answer as 'None' \
if there is no exact, final answer to extract from the response.

[correct_answer]: {correct_answer}

reasoning: Explain why the extracted_final_answer is correct or incorrect based on [correct_answer], focusing only \
on if there are meaningful differences between [correct_answer] and the extracted_final_answer. Do not comment on \
any background to the problem, do not attempt to solve the problem, do not argue for any answer different than \
[correct_answer], focus only on whether the answers match.

correct: Answer 'yes' if extracted_final_answer matches the [correct_answer] given above, or is within a small \
margin of error for numerical problems. Answer 'no' otherwise, i.e. if there is any inconsistency, ambiguity, \
non-equivalency, or if the extracted answer is incorrect.

confidence: The extracted answer confidence score between 0% and 100% from [response]. Put 100 if there is no \
confidence score available."""

_VERDICT = re.compile(r"^\W*correct\W*:\W*(yes|no)\b", re.IGNORECASE | re.MULTILINE)


def judge_prompt(question: str, response: str, answers: list[str]) -> str:
    correct = answers[0] + (f" (also accepted: {'; '.join(answers[1:])})" if len(answers) > 1 else "")
    return PROMPT.format(question=question, response=response, correct_answer=correct)


def parse_verdict(reply: str) -> bool | None:
    """True / False from the last `correct: yes|no` line; None when there is none."""
    found = _VERDICT.findall(reply)
    return found[-1].lower() == "yes" if found else None


@dataclass
class Verdict:
    correct: bool | None  # None: the reply had no parseable verdict
    reply: str
    cached: bool


class JudgeBackend(Protocol):
    name: str

    async def complete(self, prompt: str) -> str: ...

    async def close(self) -> None: ...


class TritonJudge:
    """A judge model on Triton: the prompt rendered with the fabric's chat template, streamed and joined."""

    def __init__(self, url: str, model: str, max_tokens: int, timeout_s: float) -> None:
        from toolfabric_server.model.chat_template import Message, Qwen3VLTemplate
        from toolfabric_server.model.triton_client import TritonModel

        self.name, self._model = f"triton:{model}", model
        self._backend = TritonModel(url, timeout_s)
        self._render = lambda prompt: Qwen3VLTemplate().render([Message("user", [prompt])])
        self._sampling = {"temperature": 0.0, "max_tokens": max_tokens}

    async def complete(self, prompt: str) -> str:
        from toolfabric_server.model.backend import ModelUnavailable

        try:
            parts = [chunk.text async for chunk in self._backend.stream(
                self._model, self._render(prompt), [], self._sampling, f"judge-{uuid.uuid4()}")]
        except ModelUnavailable as exc:
            raise JudgeError(f"judge model {self._model!r} on Triton: {exc}") from None
        return "".join(parts)

    async def close(self) -> None:
        await self._backend.close()


class OpenAIJudge:
    """Any OpenAI-compatible endpoint (`POST {base}/chat/completions`)."""

    def __init__(self, base_url: str, model: str, api_key: str, max_tokens: int, timeout_s: float) -> None:
        import httpx

        self.name, self._model, self._max_tokens = f"openai:{model}", model, max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    async def complete(self, prompt: str) -> str:
        import httpx

        body = {"model": self._model, "messages": [{"role": "user", "content": prompt}], "temperature": 0.0,
                "max_tokens": self._max_tokens}
        try:
            response = await self._http.post("/chat/completions", json=body)
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"] or "")
        except httpx.HTTPStatusError as exc:
            raise JudgeError(f"judge endpoint answered HTTP {exc.response.status_code}: "
                             f"{exc.response.text[:200]}") from None
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            raise JudgeError(f"judge endpoint {self._http.base_url}: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        await self._http.aclose()


class Judge:
    """Grades through a backend, with a replayable cache; `replay=True` never calls the backend."""

    def __init__(self, backend: JudgeBackend | None, cache_file: Path, *, replay: bool = False,
                 name: str = "", replies: dict[str, str] | None = None) -> None:
        """`replies`: judge key → reply known beforehand (a frozen eval's bundle)."""
        self._backend, self._file, self._replay = backend, cache_file, replay
        self.name = backend.name if backend else name
        self._cache: dict[str, str] = dict(replies or {})
        if cache_file.exists():
            for line in cache_file.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self._cache[entry["key"]] = entry["reply"]
        self._lock = asyncio.Lock()

    def _key(self, prompt: str) -> str:
        return hashlib.sha256(f"{self.name}\n{prompt}".encode()).hexdigest()

    async def grade(self, question: str, response: str, answers: list[str]) -> Verdict:
        prompt = judge_prompt(question, response, answers)
        key = self._key(prompt)
        if key in self._cache:
            reply = self._cache[key]
            return Verdict(parse_verdict(reply), reply, cached=True)
        if self._replay or self._backend is None:
            raise JudgeCacheMiss(f"judge call not in the cache {self._file} (replay mode)")
        reply = await self._backend.complete(prompt)
        async with self._lock:
            self._cache[key] = reply
            with self._file.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"key": key, "judge": self.name, "prompt": prompt, "reply": reply},
                                     ensure_ascii=False) + "\n")
        return Verdict(parse_verdict(reply), reply, cached=False)

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.close()
