"""pushy.gateway.frames on its own: pure functions, no server."""

import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def parser_with(data: bytes, max_message: int = 10) -> frames.FrameParser:
    parser = frames.FrameParser(max_message)
    parser.feed(data)
    return parser


def test_parser_reassembles_fragments_around_a_control_frame():
    parser = parser_with(
        frame(frames.OP_TEXT, b"he", fin=False)
        + frame(frames.OP_PING, b"p")
        + frame(frames.OP_CONTINUATION, b"llo")
    )
    assert parser.next_message() == (frames.OP_PING, b"p")
    assert parser.next_message() == (frames.OP_TEXT, b"hello")
    assert parser.next_message() is None
    assert parser.buffered == 0


def test_parser_refuses_as_soon_as_the_header_announces_too_much():
    header = frame(frames.OP_TEXT, b"", length=11)[:2]  # no mask, no payload yet
    with pytest.raises(frames.ProtocolError) as info:
        parser_with(header).next_message()
    assert info.value.code == frames.CLOSE_TOO_BIG


def test_parser_counts_the_fragments_of_one_message_together():
    parser = parser_with(
        frame(frames.OP_TEXT, b"123456", fin=False)
        + frame(frames.OP_CONTINUATION, b"12345")[:2]
    )
    with pytest.raises(frames.ProtocolError) as info:
        parser.next_message()
    assert info.value.code == frames.CLOSE_TOO_BIG


def test_empty_fragments_hold_nothing_and_are_capped():
    """Issue 21: each empty fragment kept an 8-byte list entry, without end."""
    parser = frames.FrameParser(max_message=10)
    parser.feed(frame(frames.OP_TEXT, b"a", fin=False))
    parser.feed(
        frame(frames.OP_CONTINUATION, b"", fin=False) * (frames.MAX_FRAGMENTS - 1)
    )
    assert parser.next_message() is None
    assert parser.buffered == 1  # the one payload byte; no per-fragment entry
    parser.feed(frame(frames.OP_CONTINUATION, b"", fin=False))
    with pytest.raises(frames.ProtocolError) as info:
        parser.next_message()
    assert (info.value.code, info.value.reason) == (
        frames.CLOSE_TOO_BIG,
        "too many fragments",
    )


def test_a_message_of_max_fragments_is_accepted_and_its_frames_counted():
    parser = frames.FrameParser(max_message=10)
    parser.feed(frame(frames.OP_TEXT, b"a", fin=False))
    parser.feed(
        frame(frames.OP_CONTINUATION, b"", fin=False) * (frames.MAX_FRAGMENTS - 2)
    )
    parser.feed(frame(frames.OP_PING, b"p"))
    parser.feed(frame(frames.OP_CONTINUATION, b"b"))
    assert parser.next_message() == (frames.OP_PING, b"p")
    assert parser.next_message() == (frames.OP_TEXT, b"ab")
    # Every frame beyond one per message, for the rate limit.
    assert parser.extra_frames == frames.MAX_FRAGMENTS - 1
    assert parser.buffered == 0
    # The count starts again with the next message.
    parser.feed(
        frame(frames.OP_TEXT, b"c", fin=False) + frame(frames.OP_CONTINUATION, b"d")
    )
    assert parser.next_message() == (frames.OP_TEXT, b"cd")
    assert parser.extra_frames == frames.MAX_FRAGMENTS


def test_a_single_frame_message_counts_no_extra_frame():
    parser = parser_with(frame(frames.OP_TEXT, b"x") + frame(frames.OP_PING, b""))
    assert parser.next_message() == (frames.OP_TEXT, b"x")
    assert parser.next_message() == (frames.OP_PING, b"")
    assert parser.extra_frames == 0


def test_parser_waits_for_a_frame_cut_anywhere():
    data = frame(frames.OP_TEXT, b"x" * 300) + frame(frames.OP_TEXT, "é".encode())
    parser = frames.FrameParser(max_message=1000)
    messages = []
    for i in range(len(data)):  # one byte at a time: every cut is tried
        parser.feed(data[i : i + 1])
        while (message := parser.next_message()) is not None:
            messages.append(message)
    assert messages == [
        (frames.OP_TEXT, b"x" * 300),
        (frames.OP_TEXT, "é".encode()),
    ]
    assert parser.buffered == 0


def test_parser_takes_many_frames_from_one_read():
    data = b"".join(frame(frames.OP_TEXT, b"%d" % i) for i in range(1000))
    parser = parser_with(data)
    got = []
    while (message := parser.next_message()) is not None:
        got.append(message[1])
    assert got == [b"%d" % i for i in range(1000)]


def test_parser_refuses_text_that_is_not_utf8():
    with pytest.raises(frames.ProtocolError) as info:
        parser_with(frame(frames.OP_TEXT, b"\xff")).next_message()
    assert info.value.code == frames.CLOSE_INVALID_DATA


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


def _messages_of(data: bytes, cuts: list[int]) -> list:
    """Feed ``data`` cut at ``cuts``; the messages, or the error that ended them."""
    parser = frames.FrameParser(max_message=1000)
    got: list = []
    start = 0
    for end in [*sorted(cuts), len(data)]:
        parser.feed(data[start:end])
        start = max(start, end)
        try:
            while (message := parser.next_message()) is not None:
                got.append(message)
        except frames.ProtocolError as e:
            return [*got, ("error", e.code)]
    return got


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA, 0x3]),
            st.binary(max_size=300),
            st.booleans(),
        ),
        max_size=8,
    ),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=20),
)
def test_how_bytes_arrive_never_changes_what_is_parsed(parts, cuts):
    data = b"".join(frame(op, payload, fin=fin) for op, payload, fin in parts)
    cuts = [c for c in cuts if c <= len(data)]
    assert _messages_of(data, cuts) == _messages_of(data, [])
