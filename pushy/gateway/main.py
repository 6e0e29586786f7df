"""The gateway's entry point, in the fresh interpreter ``runpushy`` starts.

``BOOTSTRAP`` is the whole program that interpreter is given: it monkey-patches
first, before anything has imported socket or threading, then makes the locks
the loop shares with the pool threads cooperative (locks.py) and sockets
waitable from any thread (shared_sockets.py), and only then imports this
module, which sets Django up with the same settings module.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys

from pushy.console import show_info
from pushy.proctitle import listening_on, set_title

# track_greenlet_tree off: gevent would otherwise walk and keep the spawning
# stack of every greenlet (a cost on each spawn, and thousands of frame
# records for the garbage collector to scan).
BOOTSTRAP = (
    "import gevent; gevent.config.track_greenlet_tree = False; "
    "from gevent import monkey; monkey.patch_all(); "
    "from pushy.gateway import locks, shared_sockets; "
    "locks.install(); shared_sockets.install(); "
    "from pushy.gateway.main import run; run()"
)

logger = logging.getLogger(__name__)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="runpushy")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--unix")
    parser.add_argument("--fd", type=int, help="serve this inherited listening socket")
    parser.add_argument("--worker", type=int, help="this worker's number (--workers)")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    set_title(_title(args))
    # kill -USR1 <pid>: every thread's stack to stderr (a pool thread stuck in
    # a view or an import, a loop that stopped), and the gateway serves on.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    import django

    django.setup()
    show_info("pushy")

    from pushy.gateway.server import Gateway, bind, inherited

    try:
        sock = (
            inherited(args.fd)
            if args.fd is not None
            else bind(args.host, args.port, args.unix)
        )
    except OSError as e:
        where = args.unix or f"{args.host}:{args.port}"
        logger.error("pushy gateway cannot listen on %s: %s", where, e)
        sys.exit(1)
    sys.exit(Gateway(sock).serve())


def _title(args: argparse.Namespace) -> str:
    if args.worker is not None:
        return f"runpushy worker {args.worker}"
    return f"runpushy {listening_on(args.host, args.port, args.unix)}"
