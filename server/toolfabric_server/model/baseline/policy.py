"""The baseline policy: a fixed research plan that reads the observations it is given.

It exists so that every tool and every path of the agent loop runs for real on a machine with
no GPU. It is deterministic: the same prompt always gives the same step. Plan (deep research):
  0  inspect the image with `code` (crop the upper centre, enlarge it)
  1  in parallel: image_search the input and the crop, text_search the question
  2  name the subject from the best image match; text_search it twice; enhance the crop with `code`
  3  web_visit the two best pages with the question as goal; image_search the enhanced crop
  4  answer with the sentence of the visited pages that best matches the question
Every step falls back sensibly when an earlier tool failed or found nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from toolfabric.v1.names import DEFAULT_MODE, GENERAL, PLAN
from toolfabric_server.model.baseline.observations import DIALECT, SeenObservation, observations_in
from toolfabric_server.model.chat_template import Message, Qwen3VLTemplate
from toolfabric_server.model.dialects.instructions import read_mode

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
_STOP = {
    "a", "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from", "her", "his", "how",
    "in", "is", "it", "its", "of", "on", "or", "she", "he", "that", "the", "their", "this", "to", "was", "what",
    "when", "where", "which", "who", "whom", "with", "photo", "image", "picture", "shown", "person",
}
_SENTENCE = re.compile(r"(?<=[.!?])\s+")

INSPECT_CODE = """h, w = image.shape[:2]
crop = image[: max(1, h // 2), w // 4 : max(w // 4 + 1, 3 * w // 4)]  # never empty, even for 1x1
save(cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))
print(f"input {w}x{h}, mean brightness {image.mean():.1f}")"""

ENHANCE_CODE = """src = images["{name}"]
lab = cv2.cvtColor(src, cv2.COLOR_BGR2LAB)
lab[:, :, 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(lab[:, :, 0])
save(cv2.cvtColor(lab, cv2.COLOR_LAB2BGR))
print("contrast-enhanced", src.shape[1], "x", src.shape[0])"""


def keywords(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP]


@dataclass
class Situation:
    """What the policy can read from the prompt."""

    mode: str
    question: str
    input_images: int
    steps_done: int
    observations: list[SeenObservation] = field(default_factory=list)
    earlier: list[tuple[str, str]] = field(default_factory=list)  # (role, text) of earlier conversation turns
    plan: list[dict[str, Any]] = field(default_factory=list)  # the plan this turn made (plan mode)
    plan_step: int = 0  # the plan step the fabric asks for ("Plan step N of M", engine/plans.py), 0 = none

    def of_tool(self, tool: str) -> list[SeenObservation]:
        return [o for o in self.observations if o.tool == tool and not o.is_error]


_PLAN_STEP = re.compile(r"^Plan step (\d+) of \d+", re.MULTILINE)
_PLAN = re.compile(r"<plan>(.*?)</plan>", re.DOTALL)


def read_situation(prompt: str) -> Situation:
    messages: list[Message] = Qwen3VLTemplate().parse(prompt)
    system = next((m.text() for m in messages if m.role == "system"), "")
    # The turn being answered starts at the last user message that is a question, not observations
    # (earlier turns of a conversation come before it as question/answer pairs).
    opening = DIALECT.observation_tags[0]
    questions = [i for i, m in enumerate(messages)
                 if m.role == "user" and not m.text().lstrip().startswith((opening, "Plan step"))]
    start = questions[-1] if questions else len(messages)
    first = messages[start] if questions else Message("user")
    turn = messages[start + 1:]
    observations = [o for m in turn if m.role == "user" for o in observations_in(m.text())]
    said = [m.text() for m in turn if m.role == "assistant"]
    plan = _PLAN.search(said[0]) if said else None
    asked = [m.text() for m in turn if m.role == "user"]
    plan_step = _PLAN_STEP.findall(asked[-1]) if asked else []
    return Situation(
        mode=read_mode(system) or DEFAULT_MODE,
        question=first.text().strip(),
        input_images=len(first.image_names()),
        steps_done=sum(1 for m in turn if m.role == "assistant"),
        observations=observations,
        earlier=[(m.role, m.text()) for m in messages[:start] if m.role != "system"],
        plan=_json_list(plan.group(1)) if plan else [],
        plan_step=int(plan_step[-1]) if plan_step else 0,
    )


def _json_list(raw: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def next_step(prompt: str) -> str:
    """The full text of the next model step for this prompt."""
    s = read_situation(prompt)
    if s.mode == PLAN:
        return _plan(s)
    if s.mode == GENERAL:
        return _general(s)
    return _deep_research(s)


def _call(name: str, arguments: dict[str, Any]) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + "\n</tool_call>\n"


def _step(think: str, *calls: str) -> str:
    return f"<think>\n{think}\n</think>\n" + "".join(calls)


def _answer(think: str, answer: str) -> str:
    return f"<think>\n{think}\n</think>\n<answer>{answer}</answer>"


def _first_crop(s: Situation) -> str | None:
    for obs in s.of_tool("code"):
        names = obs.new_images()
        if names:
            return names[0]
    return None


def _subject(s: Situation) -> str:
    """The title of the best reverse-image match, cut to its subject ("Eileen Collins")."""
    for obs in s.of_tool("image_search"):
        for entry in obs.json() or []:
            for hit in entry.get("results", []) if isinstance(entry, dict) else []:
                title = str(hit.get("title", "")).strip()
                if title:
                    return re.split(r",| - | \u2013 | \| |: ", title)[0].strip()
    return ""


def _result_urls(s: Situation) -> list[str]:
    urls: list[str] = []
    for obs in s.of_tool("text_search"):
        for entry in obs.json() or []:
            for hit in entry.get("results", []) if isinstance(entry, dict) else []:
                url = hit.get("url")
                if isinstance(url, str) and url not in urls:
                    urls.append(url)
    # Pages found by image search are good candidates too.
    for obs in s.of_tool("image_search"):
        for entry in obs.json() or []:
            for hit in entry.get("results", []) if isinstance(entry, dict) else []:
                url = hit.get("source")
                if isinstance(url, str) and url not in urls:
                    urls.append(url)
    return urls


def _ranked_urls(s: Situation) -> list[str]:
    """Search results ordered by how many searches returned them (then by first appearance)."""
    counts: dict[str, int] = {}
    for url in _result_urls(s):
        counts[url] = counts.get(url, 0)
    for obs in s.of_tool("text_search"):
        for entry in obs.json() or []:
            for rank, hit in enumerate(entry.get("results", []) if isinstance(entry, dict) else []):
                url = hit.get("url")
                if isinstance(url, str):
                    counts[url] += max(1, 5 - rank)
    return sorted(counts, key=lambda u: -counts[u])


def _deep_research(s: Situation) -> str:
    k = s.steps_done
    if k == 0 and s.input_images:
        return _step(
            "I should look at the image closely first: crop the upper centre, where the subject usually is, "
            "and enlarge it.",
            _call("code", {"code": INSPECT_CODE}),
        )
    if k <= 1:
        calls = []
        if s.input_images:
            calls.append(_call("image_search", {"image_paths": ["<image 1>"]}))
            crop = _first_crop(s)
            if crop:
                calls.append(_call("image_search", {"image_paths": [crop]}))
        calls.append(_call("text_search", {"queries": [s.question]}))
        return _step(
            "Search for the image and its enlarged crop to find where it appears, and search the question itself.",
            *calls,
        )
    subject = _subject(s)
    if k == 2:
        topic = " ".join(keywords(s.question)[:6])
        queries = [subject, f"{subject} {topic}".strip()] if subject else [topic or s.question]
        calls = [_call("text_search", {"queries": [q]}) for q in queries]
        crop = _first_crop(s)
        if crop:
            calls.append(_call("code", {"code": ENHANCE_CODE.format(name=crop)}))
        who = f"The image matches pages about {subject}." if subject else "The image search found no clear match."
        return _step(f"{who} Search for more on the subject and enhance the crop for another look.", *calls)
    if k == 3:
        urls = _ranked_urls(s)[:2]
        calls = [_call("web_visit", {"urls": [u], "goal": s.question}) for u in urls]
        codes = s.of_tool("code")
        enhanced = codes[-1].new_images() if len(codes) > 1 else []
        if enhanced:
            calls.append(_call("image_search", {"image_paths": [enhanced[0]]}))
        if calls:
            return _step("Read the most promising pages and double-check the enhanced crop.", *calls)
    return _final_answer(s, subject)


def _final_answer(s: Situation, subject: str) -> str:
    """The sentence that best answers the question: it shares the question's words and adds new ones."""
    best, best_score, source = "", 0.0, ""
    asked = set(keywords(s.question))
    known = asked | set(keywords(subject))
    for obs in s.of_tool("web_visit"):
        for page in obs.json() or []:
            if not isinstance(page, dict) or "content" not in page:
                continue
            for sentence in _SENTENCE.split(str(page["content"]).replace("\n", " ")):
                words = set(keywords(sentence))
                overlap = len(words & asked)
                novelty = min(len(words - known), 10) / 10  # a tie-break: an answer says something new
                score = overlap + novelty if overlap else 0.0
                if score > best_score:
                    best, best_score, source = sentence.strip(), score, str(page.get("final_url") or page["url"])
    if best:
        lead = f"{subject}. " if subject and subject.lower() not in best.lower() else ""
        return _answer(
            f"The pages I read answer the question; the best matching passage is from {source}.",
            f"{lead}{best} (source: {source})",
        )
    if subject:
        return _answer("I could not read a page that answers the question; the image match is my best evidence.",
                       f"The image appears to show {subject}.")
    return _answer("The tools found nothing that answers the question.", "I could not find an answer with the tools.")


def _general(s: Situation) -> str:
    if s.steps_done == 0 and s.input_images:
        return _step("Inspect the image with code.", _call("code", {"code": INSPECT_CODE}))
    codes = s.of_tool("code")
    seen = codes[0].text.split("\n")[0] if codes else "no image"
    return _answer("I inspected the image.", f"Inspection result: {seen}")


def _plan(s: Situation) -> str:
    if s.steps_done and s.plan:
        return _plan_step(s)
    steps: list[dict[str, Any]] = []
    if s.input_images:
        steps.append({"description": "Find where the image appears online", "tool_name": "image_search",
                      "parameters": {"image_path": "<image 1>"}})
        steps.append({"description": "Search the question about the identified subject", "tool_name": "text_search",
                      "parameters": {"query": f"[Subject from Step 1] {' '.join(keywords(s.question)[:6])}"}})
    else:
        steps.append({"description": "Search the question", "tool_name": "text_search",
                      "parameters": {"query": s.question}})
    steps.append({"description": "Read the best result", "tool_name": "web_visit",
                  "parameters": {"url": f"[Best URL from Step {len(steps)}]"}})
    steps.append({"description": "Verify the answer against what was read", "tool_name": "none", "parameters": {}})
    return f"<think>\nPlan the search.\n</think>\n<plan>{json.dumps(steps, ensure_ascii=False)}</plan>"


_PLACEHOLDER = re.compile(r"\[[^\[\]]*\bstep\s*\d+[^\[\]]*\]", re.IGNORECASE)
_PLAN_ARGUMENTS = {"text_search": ("query", "queries"), "image_search": ("image_path", "image_paths"),
                   "web_visit": ("url", "urls")}


def _plan_step(s: Situation) -> str:
    """Executing its plan: a step's placeholders filled from the results so far ("[Best URL …]" with the best
    page found, any other with the subject the image search named), or the answer at the verification step."""
    step: dict[str, Any] = s.plan[s.plan_step - 1] if 0 < s.plan_step <= len(s.plan) else {"tool_name": "none"}
    tool = step.get("tool_name")
    subject = _subject(s)
    if tool not in _PLAN_ARGUMENTS:
        return _final_answer(s, subject)
    urls = _ranked_urls(s)

    def fill(match: re.Match[str]) -> str:
        if "url" in match.group(0).lower():
            return urls[0] if urls else match.group(0)
        return subject or _first_title(s)

    single, listed = _PLAN_ARGUMENTS[str(tool)]
    parameters = step.get("parameters")
    raw = parameters.get(single, "") if isinstance(parameters, dict) else ""
    value = _PLACEHOLDER.sub(fill, str(raw)).strip()
    return _step(f"Plan step {s.plan_step}: {step.get('description', '')}. Filling in what the earlier steps found.",
                 _call(str(tool), {listed: [value]}))


def _first_title(s: Situation) -> str:
    for obs in s.of_tool("text_search"):
        for entry in obs.json() or []:
            for hit in entry.get("results", []) if isinstance(entry, dict) else []:
                if hit.get("title"):
                    return str(hit["title"])
    return ""
