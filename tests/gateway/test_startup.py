"""runpushy start-up: fresh patched interpreter, checks first, one start-up line."""

import os
import subprocess
import sys
import tempfile

import pytest

from tests.conftest import ROOT
from tests.gateway.clients import Client, publish, shot_update
from tests.support.gateway import READY_MARKER, Gateway
from tests.support.servers import free_port, stop_process, wait_for_output

pytestmark = pytest.mark.timeout(60)


def test_startup_line_names_url_redis_and_models(gateway, pushy_redis):
    line = next(
        text for text in gateway.startup_output.splitlines() if READY_MARKER in text
    )
    assert gateway.ws_url in line
    assert f"127.0.0.1:{pushy_redis.port}" in line
    assert "(subscribed)" in line
    assert "testapp.note, testapp.post, testapp.session, testapp.shot" in line


def test_no_monkeypatch_warning_and_greenlet_friendly_runtime(gateway):
    assert "MonkeyPatchWarning" not in gateway.output()
    assert "Traceback" not in gateway.output()
    # The gateway answers HTTP while it holds a WebSocket: nothing blocks the loop.
    client = Client(gateway.ws_url)
    try:
        assert gateway.get("/health")[0] == 200
        assert client.request(action="ping") == {"type": "pong"}
    finally:
        client.close()


def test_host_and_port_default_to_socket_server(pushy_redis):
    port = free_port()
    gw = Gateway(
        pushy_redis.url,
        port=port,
        pushy_settings={"SOCKET_SERVER": f"http://127.0.0.1:{port}/pushy/"},
    )
    env = gw._env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "runpushy"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for_output(proc, READY_MARKER, 30)
        # The configured path (SOCKET_SERVER + "ws") works as well as /ws.
        client = Client(f"ws://127.0.0.1:{port}/pushy/ws")
        assert client.request(action="ping") == {"type": "pong"}
        client.close()
    finally:
        stop_process(proc)
        gw.proc = None
        gw.stop()


def test_misconfiguration_stops_it_with_the_check_message(pushy_redis):
    gw = Gateway(pushy_redis.url, pushy_settings={"MAX_SUBSCRIPTIONS": 0})
    with pytest.raises(RuntimeError) as info:
        gw.start()
    assert "pushy.E010" in str(info.value)
    assert "MAX_SUBSCRIPTIONS" in str(info.value)
    assert gw.proc.returncode not in (None, 0)


def test_unix_socket(pushy_redis):
    path = os.path.join(tempfile.mkdtemp(prefix="pushy-unix-"), "gw.sock")
    with Gateway(pushy_redis.url, unix_socket=path) as gw:
        assert f"unix:{path}" in gw.startup_output
        client = Client("ws://localhost/ws", socket=_unix(path))
        try:
            client.subscribe("/api/shot/5/")
            publish(pushy_redis.url, shot_update(5))
            assert client.recv()["pk"] == 5
        finally:
            client.close()
    assert "Traceback" not in gw.output()


def _unix(path):
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock
