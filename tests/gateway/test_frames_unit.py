"""pushy.gateway.frames on its own: pure functions, no server."""

import io
import os
import struct

import pytest

from pushy.gateway import frames
from tests.gateway.clients import frame


def naive_unmask(payload: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 125, 126, 127, 65535, 65536, 70001])
def test_unmask_matches_the_definition(size):
    payload, mask = os.urandom(size), os.urandom(4)
    assert frames.unmask(payload, mask) == naive_unmask(payload, mask)


@pytest.mark.parametrize(
    "size, header_length", [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)]
)
def test_build_frame_uses_the_shortest_length_encoding(size, header_length):
    built = frames.build_frame(frames.OP_TEXT, b"a" * size)
    assert len(built) == header_length + size
    assert built[0] == 0x81  # FIN + text
    assert not built[1] & 0x80  # servers never mask


def test_close_frame_reason_is_capped_to_a_control_frame():
    built = frames.close_frame(1000, "é" * 200)
    assert len(built) - 2 <= 125
    assert frames.close_frame(None) == b"\x88\x00"


def test_reader_reassembles_fragments_around_a_control_frame():
    stream = io.BytesIO(
        frame(frames.OP_TEXT, b"he", fin=False)
        + frame(frames.OP_PING, b"p")
        + frame(frames.OP_CONTINUATION, b"llo")
    )
    reader = frames.FrameReader(stream, max_message=10)
    assert reader.read_message() == (frames.OP_PING, b"p")
    assert reader.read_message() == (frames.OP_TEXT, b"hello")
    with pytest.raises(frames.ConnectionClosed):
        reader.read_message()


def test_reader_refuses_before_reading_the_payload():
    header = frame(frames.OP_TEXT, b"", length=11)[:6]  # header and mask only
    stream = io.BytesIO(header)
    with pytest.raises(frames.ProtocolError) as info:
        frames.FrameReader(stream, max_message=10).read_message()
    assert info.value.code == frames.CLOSE_TOO_BIG
    assert stream.tell() == 2  # the mask was not even read


def test_reader_reports_a_stream_that_ends_inside_a_frame():
    stream = io.BytesIO(frame(frames.OP_TEXT, b"hello")[:-2])
    with pytest.raises(frames.ConnectionClosed):
        frames.FrameReader(stream, max_message=10).read_message()


@pytest.mark.parametrize(
    "payload, expected",
    [
        (b"", (None, "")),
        (struct.pack("!H", 1000), (1000, "")),
        (struct.pack("!H", 4999) + "ok ☃".encode(), (4999, "ok ☃")),
    ],
)
def test_parse_close(payload, expected):
    assert frames.parse_close(payload) == expected


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 2999, 5000])
def test_parse_close_refuses_codes_a_peer_may_not_send(code):
    with pytest.raises(frames.ProtocolError) as info:
        frames.parse_close(struct.pack("!H", code))
    assert info.value.code == frames.CLOSE_PROTOCOL_ERROR
