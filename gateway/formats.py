"""The bytes of REST bodies: request JSON in, response JSON and trade CSV out.

Decimals in requests may be JSON numbers. Python's json would turn `0.1` into the
float 0.1000000000000000055..., so numbers are never converted here: the decoder
keeps each number's original text as a `JsonNumber` (a `str` subclass), which is
forwarded to the matcher exactly as the client wrote it ("0.1" stays "0.1", "30000"
stays "30000", an integer with 30 digits stays text instead of overflowing msgpack's
64-bit integers). Being a distinct type, a number can still be told apart from a JSON
string where only strings are allowed (names, client_order_id). NaN and Infinity, which
Python's json accepts by default, are refused, and so is an object with a repeated key.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import orjson
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Receive

from gateway.errors import ApiError
from matcher.protocol import TRADE_FIELDS, Code
from matcher.quoting import shown

MAX_BODY_BYTES = 64 * 1024
TRADE_CSV_FIELDS = TRADE_FIELDS  # the CSV header is the trade's own field list


class JsonNumber(str):
    """A JSON number literal, kept as the text the client sent."""

    __slots__ = ()


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a repeated key: json (and orjson) would keep the last value,
    so {"side": "buy", "side": "sell"} would be a sell. Cost: one C dict build and one
    Python call per object, ~0.2 us per body (docs/api.md, "Strict input")."""
    mapping = dict(pairs)
    if len(mapping) != len(pairs):
        key = _first_repeated(pairs)
        raise ApiError(Code.INVALID_REQUEST, f"repeated key {shown(key)} in a JSON object")
    return mapping


def _first_repeated(pairs: list[tuple[str, Any]]) -> str | None:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            return key
        seen.add(key)
    return None


_decode = json.JSONDecoder(
    parse_float=JsonNumber,
    parse_int=JsonNumber,
    parse_constant=_refuse_constant,
    object_pairs_hook=_object,
).decode
# One encoder reused: json.dumps with non-default arguments builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


async def read_body(receive: Receive, content_length: bytes | None) -> bytes:
    """The request body, refusing more than MAX_BODY_BYTES (before reading it when the
    Content-Length header, `content_length`, says so, else while reading a chunked body).

    Reads the ASGI messages itself: one `receive()` for the usual one-message body,
    without the async generator of `Request.body()`.
    """
    if content_length is not None:
        if not content_length.isdigit():
            raise ApiError(Code.INVALID_REQUEST, "Content-Length must be a number of bytes")
        if int(content_length) > MAX_BODY_BYTES:
            raise ApiError(Code.TOO_LARGE, f"the body exceeds {MAX_BODY_BYTES} bytes")
    message = await receive()
    if message["type"] != "http.request":
        raise ClientDisconnect()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        # A chunked body can arrive whole in one message (uvicorn buffers up to ~100 KB
        # of a fast sender before it pauses reading): count it too.
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(Code.TOO_LARGE, f"the body exceeds {MAX_BODY_BYTES} bytes")
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(Code.TOO_LARGE, f"the body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_object(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body, or ApiError(invalid_request) saying what is wrong."""
    try:
        value = _decode(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(Code.INVALID_REQUEST, "the body is not UTF-8 text") from None
    except ValueError as exc:  # json.JSONDecodeError, NaN/Infinity, recursion too deep
        raise ApiError(Code.INVALID_REQUEST, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(Code.INVALID_REQUEST, "the body nests too deeply") from None
    if type(value) is not dict:
        raise ApiError(Code.INVALID_REQUEST, "the body must be a JSON object")
    return value


def encode(value: Any) -> bytes:
    return _encode(value).encode()


def encode_result(result: Any) -> bytes:
    """A matcher's result as compact JSON: orjson, 5-8x faster than `encode` on an order.

    Only for matcher results, which hold maps with string keys, strings, integers
    (within 64 bits: msgpack), booleans, null and lists, never a float, so orjson's
    writing NaN as null never applies; it writes non-ASCII text as UTF-8 rather than
    \\u escapes (the same JSON to any parser). Anything else (a non-string key, a type
    it does not know) raises.
    """
    return orjson.dumps(result)


def json_response(value: Any, status: int = 200) -> Response:
    return Response(encode(value), status, media_type="application/json")


def trades_csv(trades: list[dict[str, Any]]) -> str:
    """Trades as CSV with a header row, in the order given (newest first)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(TRADE_CSV_FIELDS)
    for trade in trades:
        writer.writerow([trade.get(name) for name in TRADE_CSV_FIELDS])
    return out.getvalue()
