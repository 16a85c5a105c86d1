"""Errors of the HTTP API, in OpenAI's error JSON: `{"error": {"message", "type", "param", "code"}}`.

An `ApiError` carries its HTTP status; the app turns it into the JSON response (or, once a stream
has begun, into an `error` event before `[DONE]`).
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

# HTTP status → OpenAI's error type for it.
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 413: "invalid_request_error",
          415: "invalid_request_error", 429: "rate_limit_error", 500: "server_error", 503: "service_unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": _TYPES.get(self.status, "invalid_request_error"),
                          "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)
