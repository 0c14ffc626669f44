"""feedhub/wire.py: the hub's own text frames, read back by the websockets library's parser.

The two send paths (direct.FeedProtocol, wire.AsgiLink) are exercised by every end-to-end
test of the hub (test_hub.py, test_server.py: the direct path by default, the ASGI one with
MATCHWIRE_HUB_DIRECT=0, as CI runs them too) and by test_send_paths.py.
"""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from feedhub.wire import frame_text, text_frame


def parse(data: bytes) -> tuple[Frame, bool]:
    """One server frame as a client reads it, and whether it used all of `data`."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        return done.value, reader.at_eof()
    raise AssertionError("the frame is incomplete")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "x" * 125,  # the largest 7-bit length
        "x" * 126,  # 16-bit length from here
        "é" * 70,  # 70 characters, 140 bytes: the length counts bytes
        "x" * 65535,  # the largest 16-bit length
        "x" * 65536,  # 64-bit length from here
    ],
)
def test_a_text_frame_reads_back_as_one_final_unmasked_text_frame(text: str) -> None:
    frame, whole = parse(text_frame(text))
    assert whole
    assert frame.opcode is Opcode.TEXT and frame.fin
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    assert frame.data.decode() == text
    assert frame_text(text_frame(text)) == text  # what the ASGI path sends for it
