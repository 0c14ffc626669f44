"""Result codes -> HTTP statuses, and the one error shape: {"error": {"code", "message"}}.

Errors are values at the boundary (STYLE.md practice 8): inside the gateway a refusal
is an `ApiError` exception; `error_response` turns it into the JSON body every client
sees. The codes are the matcher's (matcher/protocol.py `Code`) plus the gateway's own
(`unauthorized`, `rate_limited`, `request_too_large`, `matcher_unavailable`,
`matcher_timeout`, `not_found`, `method_not_allowed`).

Three codes answer 503 (docs/api.md): `matcher_timeout` and `deadline_exceeded` (an
order request was not executed) and `matcher_unavailable` (its outcome is unknown).
"""

from __future__ import annotations

import json

from starlette.responses import Response

from matcher.protocol import Code

NOT_FOUND = "not_found"  # no such path (Starlette's routing)
METHOD_NOT_ALLOWED = "method_not_allowed"

HTTP_STATUS: dict[str, int] = {
    Code.INVALID_REQUEST: 400,
    Code.INVALID_FIELD: 400,
    Code.INVALID_PRICE: 400,
    Code.INVALID_QUANTITY: 400,
    Code.UNKNOWN_OP: 400,
    Code.WOULD_TRIGGER_IMMEDIATELY: 400,
    Code.STOP_NOT_AMENDABLE: 400,
    Code.POST_ONLY_WOULD_TAKE: 400,
    Code.UNAUTHORIZED: 401,
    Code.UNKNOWN_SYMBOL: 404,
    Code.UNKNOWN_ORDER: 404,
    NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    Code.DUPLICATE_CLIENT_ORDER_ID: 409,
    Code.ORDER_NOT_OPEN: 409,
    Code.TOO_LARGE: 413,
    Code.RATE_LIMITED: 429,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.TIMEOUT: 503,
    Code.DEADLINE_EXCEEDED: 503,
    Code.JOURNAL_UNAVAILABLE: 503,
}


def status_for(code: str) -> int:
    """The HTTP status of a result code; a code nobody mapped is a server-side fault (500)."""
    return HTTP_STATUS.get(code, 500)


class ApiError(Exception):
    """A request the gateway (or the matcher behind it) refuses, with its code."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status if status is not None else status_for(code)
        self.headers = headers


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode()


def error_response(error: ApiError) -> Response:
    return Response(
        error_body(error.code, error.message),
        error.status,
        error.headers,
        media_type="application/json",
    )


def invalid_field(message: str) -> ApiError:
    return ApiError(Code.INVALID_FIELD, message)
