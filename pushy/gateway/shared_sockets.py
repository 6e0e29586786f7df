"""Sockets that any of the gateway's threads can wait on, whichever made them.

After ``monkey.patch_all()`` a socket is gevent's, and it waits (for data to
read, for room to write) on the event loop of the thread that made it. The
gateway's pool threads run the site's views (questions.py), and a view may use a
connection that a client library keeps for the whole process: a module-level
``redis.Redis``, django-redis's pools, a ``requests.Session``. Such a
connection, opened in one pool thread and reused by another, made the second
wait on the first one's loop, and gevent refused: "Cannot switch to a different
thread". The view answered 500 and its subscribe was refused.

``install()``, run right after monkey-patching, makes a socket that waits in a
thread other than its maker's wait on that thread's own loop, with a watcher
made for the wait: a pool thread blocks as it would on a socket of its own, and
a greenlet of the loop lets the others run meanwhile. A socket used where it was
made waits as before (the same watcher, the same cost).
"""

from __future__ import annotations

from typing import Any

from gevent import get_hub
from gevent._hub_primitives import wait_on_watcher
from gevent._socketcommon import SocketMixin
from gevent._util import _NONE

# What gevent's sockets wait with: kept for the sockets' own threads.
_own_wait = SocketMixin._wait
# libev's readiness bits: an io watcher's ``events`` also holds internal flags.
_READ_WRITE = 3


def _wait_anywhere(sock: Any, watcher: Any, timeout_exc: Any = None) -> None:
    """``sock._wait``: until ``watcher``'s readiness, on the caller's loop."""
    hub = get_hub()
    if sock.hub is hub or watcher is None:
        _own_wait(sock, watcher, timeout_exc)
        return
    here = hub.loop.io(sock.fileno(), watcher.events & _READ_WRITE)
    try:
        wait_on_watcher(
            here, sock.timeout, _NONE if timeout_exc is None else timeout_exc, hub
        )
    finally:
        here.close()


def install() -> None:
    """Let every gevent socket be waited on from any thread (see above)."""
    SocketMixin._wait = _wait_anywhere
