"""The bytes on the wire and in the journal: the only module that calls msgpack.

Frames (docs/protocol.md has the full contract):
- request / reply: one frame, a msgpack map;
- PUB message: topic bytes, one 0x00 byte, msgpack map (one frame: 5x faster than two);
- journal record body: the command tuple as a msgpack array (matcher/protocol.py);
- snapshot body: the engine's exported state as a msgpack map.
"""

from __future__ import annotations

from typing import Any

import msgpack

from matcher.quoting import shown

MAX_REQUEST_BYTES = 64 * 1024
TOPIC_END = b"\x00"

# One Packer reused: creating one per call costs more than the packing itself.
_packer = msgpack.Packer(use_bin_type=True)
pack = _packer.pack


def map_header(size: int) -> bytes:
    """The msgpack header of a map of `size` entries (for pre-packed messages)."""
    return bytes((0x80 | size,)) if size < 16 else b"\xde" + size.to_bytes(2, "big")


def array_header(size: int) -> bytes:
    """The msgpack header of an array of `size` items (for pre-packed messages)."""
    if size < 16:
        return _SMALL_ARRAYS[size]
    return (
        b"\xdc" + size.to_bytes(2, "big") if size < 0x10000 else b"\xdd" + size.to_bytes(4, "big")
    )


_SMALL_ARRAYS = [bytes((0x90 | size,)) for size in range(16)]


def decode_request(data: bytes) -> dict[str, Any]:
    """A request map, or ValueError saying what is wrong with the frame.

    A map with a repeated key is refused, naming the key: msgpack keeps the last value,
    so {"side": "buy", "side": "sell"} would otherwise be a sell. Cost: the map's entry
    count from its header (fixmap 0x80-0x8f, map16 0xde, map32 0xdf) compared with the
    dict's size, ~50 ns; only a mismatch decodes the frame again to name the key. Only
    the top level is counted: no request field takes a map (order ops refuse one as the
    wrong type, query ops ignore fields they do not use), so a repeated key inside a
    nested map cannot change what a request does.
    """
    if len(data) > MAX_REQUEST_BYTES:
        raise ValueError(f"request of {len(data)} bytes exceeds {MAX_REQUEST_BYTES}")
    try:
        message = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise ValueError(f"not msgpack: {type(exc).__name__}") from None
    if not isinstance(message, dict):
        raise ValueError("a request must be a msgpack map")
    first = data[0]  # a map's header: 0x80-0x8f, 0xde or 0xdf
    if first < 0xDE:
        entries = first & 0x0F
    else:
        entries = int.from_bytes(data[1:3] if first == 0xDE else data[1:5], "big")
    if entries != len(message):
        key = _repeated_key(data)
        # The refusal still carries the request's id, so a pipelining client can match it.
        req_id = message.get("req_id") if key != "req_id" else None
        raise BadRequest(f"repeated key {shown(key)} in the request map", req_id)
    return message


class BadRequest(ValueError):
    """A request map refused as a whole; `req_id` is its id when it could be read."""

    def __init__(self, message: str, req_id: Any = None) -> None:
        super().__init__(message)
        self.req_id = (
            req_id if isinstance(req_id, (int, str)) and not isinstance(req_id, bool) else None
        )


class _RepeatedKey(Exception):
    pass


def _unique_pairs(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    for key, value in pairs:
        if key in mapping:
            raise _RepeatedKey(key)
        mapping[key] = value
    return mapping


def _repeated_key(data: bytes) -> Any:
    """The first repeated key of a request that has one (the slow path of decode_request)."""
    try:
        msgpack.unpackb(data, raw=False, strict_map_key=False, object_pairs_hook=_unique_pairs)
    except _RepeatedKey as repeated:
        return repeated.args[0]
    return None  # not reached: the caller saw fewer entries than the header counts


def encode_reply(req_id: Any, result: Any) -> bytes:
    return pack({"req_id": req_id, "ok": True, "result": result})


def encode_error(req_id: Any, code: str, message: str) -> bytes:
    return pack({"req_id": req_id, "ok": False, "error": {"code": code, "message": message}})


def encode_request(request: dict[str, Any]) -> bytes:
    return pack(request)


def decode_reply(data: bytes) -> dict[str, Any]:
    reply = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(reply, dict):
        raise ValueError("a reply must be a msgpack map")
    return reply


def encode_pub(topic: bytes, body: Any) -> bytes:
    return topic + TOPIC_END + pack(body)


def decode_pub(frame: bytes) -> tuple[str, Any]:
    """(topic, body) of one PUB frame."""
    end = frame.index(TOPIC_END)
    return frame[:end].decode(), msgpack.unpackb(frame[end + 1 :], raw=False)


def encode_command(command: tuple) -> bytes:
    return pack(command)


def decode_command(data: bytes) -> tuple:
    command = msgpack.unpackb(data, raw=False, use_list=False)  # arrays come as tuples
    if type(command) is not tuple:
        raise ValueError(f"a journal record must be an array, not {type(command).__name__}")
    return command


def encode_state(state: dict[str, Any]) -> bytes:
    return msgpack.packb(state, use_bin_type=True)


def decode_state(data: bytes) -> dict[str, Any]:
    return msgpack.unpackb(data, raw=False, use_list=False, strict_map_key=False)
