"""``make demo``: the live photo-session page, with everything it needs, in one go.

Uses the Redis at ``PUSHY_REDIS_URL`` (default redis://localhost:6379/0) if one
answers there, else starts a private one exactly as the tests do; migrates and
loads the seed data; starts the Django site (runserver) and the gateway
(runpushy); prints the URL to open; and on Ctrl-C (or when either server dies)
stops everything it started, by process id.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.servers import (  # noqa: E402
    RedisServer,
    free_port,
    stop_process,
)

MANAGE = ROOT / "sample_site" / "manage.py"
DEFAULT_REDIS = "redis://localhost:6379/0"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="interface for both")
    parser.add_argument("--port", type=int, default=8000, help="the Django site")
    parser.add_argument("--gateway-port", type=int, default=8888, help="runpushy")
    return parser.parse_args()


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def port_or_free(host: str, port: int) -> int:
    """``port`` if nothing listens there, else one the OS hands out."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            other = free_port()
            say(f"port {port} is taken; using {other}")
            return other
    return port


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Poll ``url`` (with a deadline) until it answers; fail if ``proc`` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[2]} exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # It answers; the status does not matter here.
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class Demo:
    """The processes of the demo, started in order and stopped in reverse."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.redis: RedisServer | None = None
        self.procs: list[subprocess.Popen] = []
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")

    def manage(self, *args: str, background: bool = False) -> subprocess.Popen:
        command = [sys.executable, str(MANAGE), *args]
        # Own session: the terminal's Ctrl-C reaches only us; we stop them in order.
        proc = subprocess.Popen(command, env=self.env, start_new_session=background)
        if background:
            self.procs.append(proc)
        elif proc.wait():
            raise RuntimeError(f"manage.py {args[0]} failed")
        return proc

    def start(self) -> None:
        host = self.args.host
        site_port = port_or_free(host, self.args.port)
        gateway_port = port_or_free(host, self.args.gateway_port)
        self.env.update(
            DJANGO_SETTINGS_MODULE="sample_site.settings",
            PUSHY_REDIS_URL=self.redis_url(),
            PUSHY_SOCKET_SERVER=f"http://{host}:{gateway_port}/",
        )
        self.manage("migrate", "--no-input", "-v", "0")
        self.manage("loaddata", "demo", "-v", "0")
        gateway = self.manage("runpushy", "--host", host, "--port", str(gateway_port),
                              background=True)  # fmt: skip
        site = self.manage("runserver", "--noreload", f"{host}:{site_port}",
                           background=True)  # fmt: skip
        wait_for_http(f"http://{host}:{gateway_port}/health", gateway)
        wait_for_http(f"http://{host}:{site_port}/", site)
        say("")
        say(f"open http://{host}:{site_port}/ and edit shots in")
        say(f"     http://{host}:{site_port}/admin/ (user demo, password pushy-demo)")
        say("Ctrl-C stops everything.")

    def redis_url(self) -> str:
        url = os.environ.get("PUSHY_REDIS_URL", DEFAULT_REDIS)
        if redis_answers(url):
            say(f"using the Redis at {url}")
            return url
        self.redis = RedisServer().start()
        say(f"no Redis at {url}: started a private one at {self.redis.url}")
        return self.redis.url

    def wait(self) -> None:
        """Until Ctrl-C, SIGTERM, or a server exiting by itself."""
        while all(proc.poll() is None for proc in self.procs):
            time.sleep(0.5)
        dead = [proc for proc in self.procs if proc.poll() is not None]
        say(f"{dead[0].args[2]} exited (code {dead[0].returncode}); stopping")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        self.procs.clear()
        if self.redis is not None:
            self.redis.stop()
            self.redis = None
        say("stopped")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # Explicitly: a shell that starts us in the background ignores SIGINT for us.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    demo = Demo(parse_args())
    try:
        demo.start()
        demo.wait()
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError) as e:
        say(f"failed: {e}")
        return 1
    finally:
        demo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
