"""gateway/errors.py: every error code has its HTTP status and the one error shape."""

from __future__ import annotations

import json

from gateway.errors import ApiError, error_response, status_for
from matcher.protocol import Code

# docs/protocol.md's error codes and the gateway's own (docs/api.md).
ERROR_CODES = (
    "invalid_request",
    "invalid_field",
    "invalid_price",
    "invalid_quantity",
    "unknown_op",
    "unknown_symbol",
    "unknown_order",
    "order_not_open",
    "duplicate_client_order_id",
    "would_trigger_immediately",
    "stop_not_amendable",
    "post_only_would_take",
    "matcher_unavailable",
    "matcher_timeout",
    "deadline_exceeded",
    "rate_limited",
    "request_too_large",
    "unauthorized",
    "internal_error",
)


def test_statuses_of_design_section_4() -> None:
    assert status_for(Code.INVALID_FIELD) == 400
    assert status_for(Code.WOULD_TRIGGER_IMMEDIATELY) == 400
    assert status_for(Code.UNAUTHORIZED) == 401
    assert status_for(Code.UNKNOWN_SYMBOL) == status_for(Code.UNKNOWN_ORDER) == 404
    assert status_for(Code.DUPLICATE_CLIENT_ORDER_ID) == status_for(Code.ORDER_NOT_OPEN) == 409
    assert status_for(Code.TOO_LARGE) == 413
    assert status_for(Code.RATE_LIMITED) == 429
    assert status_for(Code.UNAVAILABLE) == 503
    assert status_for(Code.TIMEOUT) == status_for(Code.DEADLINE_EXCEEDED) == 503
    assert status_for("something_new") == 500


def test_every_error_code_is_mapped_explicitly() -> None:
    from gateway.errors import HTTP_STATUS

    assert [code for code in ERROR_CODES if code not in HTTP_STATUS] == []


def test_error_response_shape() -> None:
    response = error_response(
        ApiError(Code.RATE_LIMITED, "slow down", headers={"Retry-After": "2"})
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "2"
    assert json.loads(bytes(response.body)) == {
        "error": {"code": "rate_limited", "message": "slow down"}
    }
