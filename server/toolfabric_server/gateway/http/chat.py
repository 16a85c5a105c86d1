"""A chat-completions request, checked and turned into the fabric's RunRequest.

The new turn is the user message(s) after the last assistant message: its text parts are the
question and its `image_url` parts the images (data URLs, or http(s) URLs the gateway downloads
through the SSRF guard). Earlier user/assistant messages are the conversation so far: they become
prior context, never rerun. System messages are ignored (the fabric writes the model's system
prompt for the mode); `tool` messages are refused (the fabric runs the tools itself).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric.v1.names import mode_value
from toolfabric_server.engine.spec import PriorTurn
from toolfabric_server.gateway.http.errors import ApiError
from toolfabric_server.gateway.http.settings import ModelRoute
from toolfabric_server.model.dialects import DEFAULT_DIALECT

_INT32 = 2**31 - 1
_ECHO = 100  # characters of a client's value quoted back in an error message
# RunRequest fields → the chat body's parameter they come from (sampling, budgets and images: ChatTurn.param).
_PARAMS = {"question": "messages", "images": "messages", "mode": "model", "model": "model",
           "execute_plan": "toolfabric.execute_plan", "conversation_id": "toolfabric.conversation_id",
           "parent_trajectory_id": "toolfabric.parent_trajectory_id"}


class _ImageURL(BaseModel):
    url: str
    detail: str | None = None


class _TextPart(BaseModel):
    type: Literal["text"]
    text: str


class _ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: _ImageURL | str


_Part = Annotated[_TextPart | _ImagePart, Field(discriminator="type")]


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[_Part] | None = None


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class _Extension(BaseModel):
    """toolfabric's own request fields, under `toolfabric` so OpenAI clients send them as extra_body."""

    model_config = ConfigDict(extra="forbid")
    max_steps: int = Field(default=0, ge=0, le=_INT32)
    max_tool_calls: int = Field(default=0, ge=0, le=_INT32)
    deadline_s: float = 0.0
    conversation_id: str = ""
    parent_trajectory_id: str = ""
    execute_plan: bool = False  # a planner model: run its plan and answer (engine/plans.py)


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI parameters the fabric does not use are accepted
    model: str
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    stream_options: _StreamOptions | None = None
    enable_search: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = Field(default=None, ge=-1, le=_INT32)
    max_tokens: int | None = Field(default=None, ge=1, le=_INT32)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=_INT32)
    seed: int | None = Field(default=None, ge=0, le=2**64 - 1)
    n: Literal[1] | None = None
    toolfabric: _Extension = Field(default_factory=_Extension)


@dataclass
class ChatTurn:
    model: str  # the public model name, echoed in responses
    request: pb.RunRequest
    stream: bool
    include_usage: bool
    history: list[PriorTurn] = field(default_factory=list)
    image_params: list[str] = field(default_factory=list)  # where each of request.images came from
    max_tokens_param: str = "max_tokens"  # the name the client gave it (or max_completion_tokens)

    def param(self, run_field: str) -> str | None:
        """The body parameter a RunRequest field came from (for OpenAI's `param`), None if none did."""
        if run_field.startswith("images["):
            index = int(run_field[len("images["):-1])
            return self.image_params[index] if index < len(self.image_params) else "messages"
        if run_field == "sampling.max_tokens":
            return self.max_tokens_param
        if run_field.startswith("sampling."):
            return run_field.removeprefix("sampling.")
        if run_field.startswith("budgets."):
            return "toolfabric." + run_field.removeprefix("budgets.")
        return _PARAMS.get(run_field)


def read_json(raw: bytes | bytearray) -> Any:
    """A request body decoded, or ApiError 400. pydantic's parser, not `json`: it refuses lone surrogates (text no
    protobuf string can hold) and nesting past 200 levels, where `json.loads` raised RecursionError."""
    try:
        return pydantic_core.from_json(raw)
    except ValueError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None


def parse_chat(body: Any, routes: dict[str, ModelRoute]) -> ChatTurn:
    """The turn a decoded JSON body asks for, or ApiError (400, or 404 for an unknown model)."""
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {type(body).__name__}")
    try:
        chat = _Body.model_validate(body)
    except ValidationError as exc:
        # Of a union's branch errors, the deepest is the one about what the client meant to send.
        err = max(exc.errors(), key=lambda e: len(e["loc"]))
        where = _param(err["loc"])[:_ECHO]
        msg = err["msg"][:2 * _ECHO]  # pydantic quotes some input (a union tag) in it
        raise ApiError(400, f"{where}: {msg}" if where else msg, param=where or None) from None
    route = routes.get(chat.model)
    if route is None:
        raise ApiError(404, f"the model {chat.model[:_ECHO]!r} does not exist; available: "
                            f"{', '.join(sorted(routes))}", code="model_not_found", param="model")
    turn_start = _new_turn_start(chat.messages)
    texts: list[str] = []
    # Earlier turns' images come first: they are <image 1>, <image 2>, … of the conversation.
    history, images, image_params = (([], [], []) if chat.toolfabric.parent_trajectory_id
                                     else _history(chat.messages[:turn_start]))
    for index in range(turn_start, len(chat.messages)):
        text, found, found_at = _content(chat.messages[index], index)
        texts.append(text)
        images += found
        image_params += found_at
    request = pb.RunRequest(
        question="\n".join(t for t in texts if t), images=images, mode=mode_value(route.mode),
        model=route.triton_model,
        budgets=pb.Budgets(max_steps=chat.toolfabric.max_steps, max_tool_calls=chat.toolfabric.max_tool_calls,
                           deadline_s=chat.toolfabric.deadline_s),
        sampling=_sampling(chat),
        conversation_id=chat.toolfabric.conversation_id, parent_trajectory_id=chat.toolfabric.parent_trajectory_id,
        execute_plan=chat.toolfabric.execute_plan,
    )
    if chat.enable_search is not None:
        request.enable_search = chat.enable_search
    include_usage = bool(chat.stream_options and chat.stream_options.include_usage)
    return ChatTurn(chat.model, request, chat.stream, include_usage, history, image_params,
                    "max_completion_tokens" if chat.max_completion_tokens is not None else "max_tokens")


def _new_turn_start(messages: list[_Message]) -> int:
    """Index of the first message of the new user turn (after the last assistant message)."""
    for index, message in enumerate(messages):
        if message.role == "tool":
            raise ApiError(400, f"messages[{index}]: 'tool' messages are not accepted; the fabric runs the tools "
                                "itself", param=f"messages[{index}].role")
    if not any(m.role == "user" for m in messages):
        raise ApiError(400, "messages has no user turn: send at least one message with role 'user'",
                       param="messages")
    last = messages[-1]
    if last.role != "user":
        raise ApiError(400, f"the last message must be the user's turn to answer, not {last.role!r}",
                       param=f"messages[{len(messages) - 1}].role")
    start = len(messages)
    while start > 0 and messages[start - 1].role in ("user", "system", "developer"):
        start -= 1
    return start


def _history(messages: list[_Message]) -> tuple[list[PriorTurn], list[pb.ImageInput], list[str]]:
    """Earlier exchanges the client sent back (context, never rerun), their images in order, and where each was."""
    turns: list[PriorTurn] = []
    images: list[pb.ImageInput] = []
    params: list[str] = []
    question: list[str] = []
    names: list[str] = []
    for index, message in enumerate(messages):
        text, found, where = _content(message, index)
        if message.role == "user":
            question.append(text)
            names += [f"<image {len(images) + n}>" for n in range(1, len(found) + 1)]
            images += found
            params += where
        elif message.role == "assistant":
            # An R1V4 trajectory sent back whole: its answer is the context (a plan reply, or a plain one: all).
            answer = DEFAULT_DIALECT.answer_in(text)
            turns.append(PriorTurn("\n".join(q for q in question if q), answer.text if answer else text.strip(),
                                   names))
            question, names = [], []
    return turns, images, params


def _content(message: _Message, index: int) -> tuple[str, list[pb.ImageInput], list[str]]:
    """A message's text, its images, and the parameter each image is (`messages[0].content[1].image_url`)."""
    if message.role in ("system", "developer") or message.content is None:
        return "", [], []
    if isinstance(message.content, str):
        return message.content, [], []
    texts: list[str] = []
    images: list[pb.ImageInput] = []
    where: list[str] = []
    for j, part in enumerate(message.content):
        if isinstance(part, _TextPart):
            texts.append(part.text)
            continue
        url = part.image_url if isinstance(part.image_url, str) else part.image_url.url
        where.append(f"messages[{index}].content[{j}].image_url")
        images.append(_image(url, where[-1]))
    return "\n".join(texts), images, where


def _image(url: str, where: str) -> pb.ImageInput:
    if url.startswith("data:"):
        header, comma, payload = url.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ApiError(400, f"{where}: a data URL must be base64-encoded (data:image/png;base64,…)",
                           param=where)
        try:
            return pb.ImageInput(data=base64.b64decode(payload, validate=True))
        except (binascii.Error, ValueError):
            raise ApiError(400, f"{where}: the data URL's base64 payload is invalid", param=where) from None
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError as exc:  # an unclosed IPv6 bracket
        raise ApiError(400, f"{where}: not a valid URL ({exc})", param=where) from None
    if scheme not in ("http", "https"):
        raise ApiError(400, f"{where}: an image must be a data: URL or an http(s) URL, not {scheme or url[:20]!r}",
                       param=where)
    return pb.ImageInput(url=url)


def _sampling(chat: _Body) -> pb.SamplingParameters:
    sampling = pb.SamplingParameters()
    max_tokens = chat.max_completion_tokens if chat.max_completion_tokens is not None else chat.max_tokens
    for name, value in (("temperature", chat.temperature), ("top_p", chat.top_p), ("top_k", chat.top_k),
                        ("max_tokens", max_tokens), ("seed", chat.seed)):
        if value is not None:
            setattr(sampling, name, value)
    return sampling


def _param(loc: tuple[int | str, ...]) -> str:
    """`messages[0].content[1].image_url` from a pydantic error location (union branch tags left out)."""
    out, last = "", None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier() and part not in ("str", "_ImageURL") and part != last:
            out += f".{part}" if out else part
        last = part
    return out
