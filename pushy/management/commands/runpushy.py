import os
import sys
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from pushy import conf


class Command(BaseCommand):
    help = (
        "Run the pushy WebSocket gateway: listens to Redis and pushes updates to "
        "browsers. Host and port default to PUSHY_SETTINGS['SOCKET_SERVER']."
    )
    # The checks run in this process, before the gateway starts (the default).

    def add_arguments(self, parser):
        parser.add_argument("--host", help="interface to listen on")
        parser.add_argument("--port", type=int, help="TCP port to listen on")
        parser.add_argument("--unix", metavar="PATH", help="listen on a Unix socket")
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="gateway processes sharing the port, supervised by this one",
        )

    def handle(self, *args, host, port, unix, workers, **options):
        if workers < 1:
            raise CommandError("--workers must be at least 1")
        default = urlsplit(conf.get("SOCKET_SERVER"))
        host = host or default.hostname or "localhost"
        port = port or default.port or _scheme_port(default.scheme)
        if workers == 1:
            argv = ["--host", host, "--port", str(port)]
            self._exec_gateway(argv + (["--unix", unix] if unix else []))
        else:
            sys.exit(self._supervise(host, port, unix, workers))

    def _exec_gateway(self, argv):
        # gevent must patch before socket and threading are imported, which in
        # this process already happened: the gateway runs in a fresh interpreter
        # that replaces this one (same pid, so signals reach the gateway).
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, _gateway_command(argv), _gateway_env())

    def _supervise(self, host, port, unix, workers):
        from pushy.console import show_info
        from pushy.gateway.workers import Supervisor, listening_sockets
        from pushy.proctitle import listening_on, set_title

        show_info("pushy")

        try:
            sockets = listening_sockets(host, port, unix, workers)
        except OSError as e:
            raise CommandError(
                f"cannot listen on {unix or f'{host}:{port}'}: {e}"
            ) from e
        set_title(
            f"runpushy supervisor of {workers} workers {listening_on(host, port, unix)}"
        )
        env = _gateway_env()
        supervisor = Supervisor(
            command=lambda fd, number: _gateway_command(
                ["--fd", str(fd), "--worker", str(number)]
            ),
            env=env,
            sockets=sockets,
            count=workers,
            shutdown_timeout=conf.get("SHUTDOWN_TIMEOUT"),
        )
        return supervisor.run()


def _gateway_command(argv):
    from pushy.gateway.main import BOOTSTRAP

    return [sys.executable, "-c", BOOTSTRAP, *argv]


def _gateway_env():
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = settings.SETTINGS_MODULE
    path = [p for p in (sys.path[0], env.get("PYTHONPATH")) if p]
    env["PYTHONPATH"] = os.pathsep.join(path)
    return env


def _scheme_port(scheme):
    return 443 if scheme == "https" else 80
