"""Client input: arbitrary bytes as a chat-completions request body, through the HTTP API's parser.

The path `POST /v1/chat/completions` takes: the body decoded as the app decodes it (`read_json`),
`parse_chat` against the default model routes, then the RunRequest it makes through the gateway's
request validator (real image decoding, real SSRF guard resolving nothing, real Redis: run_request's).
Promises checked: only `ApiError` (400, or 404 for an unknown model) or the validator's
`InvalidRequest` (which the app answers 400) — never another exception — with a message and a param
short enough for an error response (the input is never echoed back whole); a parsed turn names a
configured model and a question.
"""

from __future__ import annotations

from tests.fuzz.targets.run_request import LOOP, MAX_MESSAGE_CHARS, VALIDATOR
from toolfabric_server.gateway.exceptions import InvalidRequest
from toolfabric_server.gateway.http.chat import parse_chat, read_json
from toolfabric_server.gateway.http.errors import ApiError
from toolfabric_server.gateway.http.settings import HttpSettings

INSTRUMENT = ("toolfabric_server.gateway.http.chat", "toolfabric_server.gateway.validation",
              "toolfabric_server.web.guard",
              "toolfabric_server.common.images")
ROUTES = HttpSettings().models


def fuzz_one(data: bytes) -> None:
    try:
        turn = parse_chat(read_json(data), ROUTES)
    except ApiError as exc:
        assert exc.status in (400, 404), f"status {exc.status}"
        assert exc.message and len(exc.message) <= MAX_MESSAGE_CHARS, f"message of {len(exc.message)} characters"
        assert len(exc.param or "") <= MAX_MESSAGE_CHARS, f"param of {len(exc.param or '')} characters"
        return
    assert turn.model in ROUTES
    try:
        LOOP.run_until_complete(VALIDATOR.validate(turn.request))
    except InvalidRequest as exc:
        assert str(exc) and len(str(exc)) <= MAX_MESSAGE_CHARS, f"message of {len(str(exc))} characters"
