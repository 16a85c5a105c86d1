"""The three export formats.

SFT follows the Qwen3-VL chat `messages` format that `processor.apply_chat_template` and Qwen's own
fine-tuning scripts take: roles system / user / assistant, each content a list of parts
`{"type": "text", "text": …}` and `{"type": "image", "image": "images/….png"}` (files beside the
JSONL), observations as user turns holding `<observation>` blocks exactly as the fabric feeds them
back. It does not use a `<image>` tag (ms-swift, LLaMA-Factory ShareGPT): the fabric's tool schemas
contain the literal text `<image>` (R1V4's name for the first input), which a tag-based loader would
take for an image. `images` lists the same files in order, for loaders that want them apart.

TRL (`trl.jsonl`): the same conversation as TRL's SFTTrainer loads vision data with its own collator
(DataCollatorForVisionLanguageModeling): `messages` whose image parts are bare `{"type": "image"}`
placeholders, in order, and `images` listing the files (relative to the folder) that fill them. Every
content part has the same two keys (`type`, `text`), because `datasets` gives all parts of a column one
schema: a part that some other part's `image` key leaked into would read as an image to Qwen's templates.

R1V4 rounds: per trajectory the rounds (think, tool_call, observation; one call each) and the final (think,
answer), written by the HTTP API's own round writer (gateway/http/rounds.py).

RL view (text): per step the prompt the model was given (the chat template's rendering) and its
completion, with character spans of the prompt that are observation text (mask them from the loss)
and spans that are earlier model output. Character spans cannot mark the model's own `<|im_end|>` (not in
the text); the token-exact samples (export/tokens.py, rl_tokens.jsonl) can.
"""

from __future__ import annotations

from typing import Any

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.export.conversation import Conversation
from toolfabric_server.gateway.http.rounds import RoundWriter
from toolfabric_server.model.chat_template import ChatTemplate, ImagePart, Message


def _content(message: Message, image_path: dict[str, str]) -> list[dict[str, str]]:
    return [{"type": "image", "image": image_path[p.name]} if isinstance(p, ImagePart) else {"type": "text", "text": p}
            for p in message.parts if not isinstance(p, str) or p]


def image_names(conv: Conversation) -> list[str]:
    """The images in the order they appear in the conversation."""
    return [p.name for m in conv.messages for p in m.parts if isinstance(p, ImagePart)]


def sft_record(conv: Conversation, image_path: dict[str, str]) -> dict[str, Any]:
    t = conv.trajectory
    return {
        "id": t.trajectory_id,
        "messages": [{"role": m.role, "content": _content(m, image_path)} for m in conv.messages],
        "images": [image_path[name] for name in image_names(conv)],
        "meta": {"question": t.question, "mode": conv.mode, "model": t.model, "labels": dict(t.labels),
                 "eval_run": t.eval_run, "trace_id": t.trace_id},
    }


def trl_record(conv: Conversation, image_path: dict[str, str]) -> dict[str, Any]:
    messages = [{"role": m.role, "content": [{"type": "image", "text": None} if isinstance(p, ImagePart)
                                             else {"type": "text", "text": p}
                                             for p in m.parts if not isinstance(p, str) or p]}
                for m in conv.messages]
    return {"id": conv.trajectory.trajectory_id, "messages": messages,
            "images": [image_path[name] for name in image_names(conv)]}


def messages_from_sft(record: dict[str, Any]) -> list[Message]:
    """The inverse of sft_record's messages (images named by their file)."""
    return [Message(m["role"], [ImagePart(p["image"]) if p["type"] == "image" else p["text"] for p in m["content"]])
            for m in record["messages"]]


def rounds_record(conv: Conversation, image_path: dict[str, str]) -> dict[str, Any]:
    """R1V4's rounds, one tool call each (what R1V4's parse_utils reads from the HTTP API's stream of the same
    trajectory), with the paths of the images each observation made."""
    writer = RoundWriter()
    for event in conv.trajectory.events:
        writer.feed(event)
    writer.feed(pb.RunEvent(finished=pb.TrajectoryFinished()))
    rounds = [r.record(n) | {"images": [image_path[i.name] for i in r.images if i.name in image_path]}
              for n, r in enumerate(writer.rounds, start=1)]
    final = {"think": writer.final_think, "answer": writer.answer or conv.answer}
    if writer.plan:
        final["plan"] = writer.plan
    t = conv.trajectory
    inputs = [image_path[i.name] for i in conv.images if i.step == 0]
    return {"id": t.trajectory_id, "question": t.question, "images": inputs, "rounds": rounds, "final": final}


def _spans(template: ChatTemplate, messages: list[Message]) -> tuple[list[list[int]], list[list[int]]]:
    """(observation spans, assistant spans) in template.render(messages), by rendering growing prefixes."""
    opening = len(template.render([]))  # the open assistant turn every rendering ends with
    observations, assistant = [], []
    for i, message in enumerate(messages):
        start = len(template.render(messages[:i])) - opening
        end = len(template.render(messages[: i + 1])) - opening
        turn = template.render(messages[: i + 1])[start:end]
        if message.role == "assistant":
            body = turn.find(message.text())
            assistant.append([start + body, start + body + len(message.text())])
        elif message.role == "user" and "<observation>" in turn:
            first, last = turn.find("<observation>"), turn.rfind("</observation>") + len("</observation>")
            observations.append([start + first, start + last])
    return observations, assistant


def rl_records(conv: Conversation, template: ChatTemplate, image_path: dict[str, str]) -> list[dict[str, Any]]:
    out = []
    turns = [i for i, m in enumerate(conv.messages) if m.role == "assistant"]
    for step, index in zip([s for s in conv.steps if not s.by_fabric], turns, strict=True):
        context = conv.messages[:index]
        prompt = template.render(context)
        observations, assistant = _spans(template, context)
        names = [p.name for m in context for p in m.parts if isinstance(p, ImagePart)]
        out.append({"trajectory_id": conv.trajectory.trajectory_id, "step": step.number, "prompt": prompt,
                    "completion": step.text, "images": [image_path[n] for n in names],
                    "observation_spans": observations, "assistant_spans": assistant})
    return out
