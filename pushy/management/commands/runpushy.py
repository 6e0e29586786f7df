import os
import sys
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand

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

    def handle(self, *args, host, port, unix, **options):
        default = urlsplit(conf.get("SOCKET_SERVER"))
        argv = ["--host", host or default.hostname or "localhost"]
        argv += ["--port", str(port or default.port or _scheme_port(default.scheme))]
        if unix:
            argv += ["--unix", unix]
        self._exec_gateway(argv)

    def _exec_gateway(self, argv):
        # gevent must patch before socket and threading are imported, which in
        # this process already happened: the gateway runs in a fresh interpreter
        # that replaces this one (same pid, so signals reach the gateway).
        from pushy.gateway.main import BOOTSTRAP

        env = dict(os.environ)
        env["DJANGO_SETTINGS_MODULE"] = settings.SETTINGS_MODULE
        path = [p for p in (sys.path[0], env.get("PYTHONPATH")) if p]
        env["PYTHONPATH"] = os.pathsep.join(path)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-c", BOOTSTRAP, *argv], env)


def _scheme_port(scheme):
    return 443 if scheme == "https" else 80
