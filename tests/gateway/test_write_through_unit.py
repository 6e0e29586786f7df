"""Unit tests of writing a frame at once, during the dispatch that hands it over.

A real ``Connection`` on one end of a socket pair, the test reading the other
end; around it, the ``Shared`` object and a recorder of the connection's
events. Whether a frame is written at once or by a loop callback is visible
from the other end: bytes that are already readable before the test yields to
the event loop were written during ``send()``.
"""

import select
import socket
import types

import gevent
import gevent.socket
import pytest

from pushy.gateway import frames
from pushy.gateway.connection import Connection, State
from pushy.gateway.hub import Hub
from pushy.gateway.server import Gateway
from pushy.gateway.shared import Shared
from pushy.gateway.stats import Stats
from tests.gateway.fake_io import LIMITS, client_frame


class Events:
    """The connection's events, into a real hub; records the ended connections."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.gone: list[Connection] = []

    def joined(self, connection: Connection) -> None:
        self.hub.add(connection)

    def message(self, connection: Connection, payload: bytes) -> None:
        if payload == b"boom":
            raise RuntimeError("a bug in handling a message")

    def leaving(self, connection: Connection) -> None:
        pass

    def unsubscribe(self, connection: Connection) -> None:
        self.hub.remove(connection)

    def ended(self, connection: Connection) -> None:
        self.hub.remove(connection)
        self.gone.append(connection)


class FakeGateway(Shared):
    """The shared state, with the hub and the events the test looks at."""

    def __init__(self) -> None:
        super().__init__(LIMITS, Stats(), gevent.get_hub().loop)
        self.hub = Hub(self.stats)
        self.events = Events(self.hub)

    @property
    def ended(self) -> list[Connection]:
        return self.events.gone


@pytest.fixture
def pair():
    """(gateway, connection, the client's socket); closes both sockets."""
    server_end, plain_end = socket.socketpair()
    server_end.setblocking(False)
    # The test's end yields to the loop while it waits, as a remote client would.
    client_end = gevent.socket.socket(fileno=plain_end.detach())
    client_end.settimeout(5)
    gateway = FakeGateway()
    connection = Connection(gateway, gateway.events, server_end, visitor=None)
    yield gateway, connection, client_end
    client_end.close()
    server_end.close()


def readable_now(sock: socket.socket) -> bytes:
    """What ``sock`` holds already, without waiting and without yielding."""
    if not select.select([sock], [], [], 0)[0]:  # the stdlib's: never yields
        return b""
    return sock.recv(1 << 20)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "the gateway's end closed early"
        data += chunk
    return data


def test_a_frame_handed_over_while_writing_through_is_written_at_once(pair):
    gateway, connection, client = pair
    frame = frames.message_frame({"type": "update", "n": 1})
    gateway.write_through = True
    connection.send(frame)
    assert readable_now(client) == frame  # before the loop had a turn
    assert connection.writer is None and not connection.queue
    assert gateway.stats.frames_out == 1


def test_otherwise_a_frame_waits_for_the_loop_callback(pair):
    gateway, connection, client = pair
    frame = frames.message_frame({"type": "update", "n": 1})
    connection.send(frame)
    assert readable_now(client) == b""
    gevent.sleep(0)  # the writer callback runs
    assert read_exactly(client, len(frame)) == frame


def test_writing_through_never_overtakes_a_queued_frame(pair):
    gateway, connection, client = pair
    first = frames.message_frame({"type": "update", "n": 1})
    second = frames.message_frame({"type": "update", "n": 2})
    connection.send(first)  # queued, its writer not run yet
    gateway.write_through = True
    connection.send(second)
    assert readable_now(client) == b""
    gevent.sleep(0)
    # Both went out in order, in one write behind the first.
    assert read_exactly(client, len(first) + len(second)) == first + second


def test_what_the_kernel_refuses_is_left_to_a_write_wait(pair):
    gateway, connection, client = pair
    connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    frame = frames.message_frame({"type": "update", "data": "x" * 500_000})
    gateway.write_through = True
    connection.send(frame)
    assert connection.write_wait is not None  # part written, the rest waits
    assert connection.backlogged
    reader = gevent.spawn(read_exactly, client, len(frame))
    assert reader.get(timeout=10) == frame
    gevent.sleep(0)
    assert connection.write_wait is None and connection.writer is None
    assert gateway.stats.frames_out == 1


def test_a_client_gone_mid_dispatch_is_ended_after_it_not_during(pair):
    gateway, connection, client = pair
    gateway.hub.add(connection)
    gateway.hub.subscribe(connection, "/things/1/")
    # An RST instead of a FIN: the gateway's next write fails with EPIPE/ECONNRESET.
    client.shutdown(socket.SHUT_RDWR)
    client.close()
    gateway.write_through = True
    # The dispatch walks hub.by_url: ending the connection inside send() would
    # change that set under it.
    for subscriber in gateway.hub.by_url["/things/1/"]:
        subscriber.send(frames.message_frame({"type": "update"}))
    assert gateway.ended == []
    with gevent.Timeout(5):
        while not gateway.ended:
            gevent.sleep(0.01)
    assert gateway.ended == [connection]
    assert "/things/1/" not in gateway.hub.by_url


def wait_until_closed(connection: Connection) -> None:
    with gevent.Timeout(5):
        while connection.state is not State.CLOSED:
            gevent.sleep(0.01)


def test_a_closing_handshake_goes_open_closing_closed(pair):
    gateway, connection, client = pair
    connection.start()
    assert connection.state is State.OPEN
    connection.close(frames.CLOSE_GOING_AWAY, "bye")
    assert connection.state is State.CLOSING and connection.closing
    connection.send(frames.message_frame({"type": "late"}))  # nothing after a close
    close = frames.close_frame(frames.CLOSE_GOING_AWAY, "bye")
    assert read_exactly(client, len(close)) == close
    client.sendall(client_frame(frames.OP_CLOSE, (1001).to_bytes(2, "big")))
    wait_until_closed(connection)
    assert gateway.ended == [connection] and connection.finished
    assert client.recv(100) == b""  # the socket closed, the late frame unsent


def test_a_client_that_leaves_ends_its_connection(pair):
    gateway, connection, client = pair
    connection.start()
    client.close()
    wait_until_closed(connection)
    assert gateway.ended == [connection]


def test_an_unexpected_error_closes_with_1011(pair):
    gateway, connection, client = pair
    connection.start()
    client.sendall(client_frame(frames.OP_TEXT, b"boom"))
    close = frames.close_frame(frames.CLOSE_INTERNAL_ERROR, "internal error")
    assert read_exactly(client, len(close)) == close
    # Reading stopped at the error: no answer is awaited, the close ends it.
    wait_until_closed(connection)
    assert gateway.ended == [connection]


class RecordingHub:
    """Records, for each dispatch, whether the gateway was writing through."""

    def __init__(self, shared: types.SimpleNamespace) -> None:
        self.shared = shared
        self.seen: list[bool] = []

    def dispatch(self, update: object) -> int:
        self.seen.append(self.shared.write_through)
        return 0


def test_only_an_update_the_listener_waited_for_is_written_through():
    shared = types.SimpleNamespace(write_through=False)
    gateway = types.SimpleNamespace(
        versions=types.SimpleNamespace(saw=lambda version: None),
        stats=Stats(),
        shared=shared,
        _listener_idle=False,
    )
    gateway.hub = RecordingHub(shared)
    update = types.SimpleNamespace(version=None, published=None)

    def dispatch() -> None:
        Gateway.dispatch(gateway, update)

    Gateway.listener_idle(gateway)
    dispatch()  # it came alone
    dispatch()  # a burst, read behind it
    dispatch()
    Gateway.listener_idle(gateway)
    dispatch()
    assert gateway.hub.seen == [True, False, False, True]
    assert shared.write_through is False
