"""Listening sockets for the gateway, made with the plain socket module.

No gevent here: the ``runpushy --workers`` supervisor opens the sockets in an
unpatched process and its workers inherit them; a single gateway opens its own.
"""

from __future__ import annotations

import os
import socket

BACKLOG = 2048


def listen_tcp(
    host: str | None, port: int | None, reuse_port: bool = False
) -> socket.socket:
    """A listening TCP socket; ``reuse_port`` lets several bind the same port."""
    family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host or "", port or 0))
    sock.listen(BACKLOG)
    return sock


def listen_unix(path: str) -> socket.socket:
    """A listening Unix socket at ``path``, replacing a stale one."""
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(BACKLOG)
    return sock


def listen(host: str | None, port: int | None, unix_path: str | None) -> socket.socket:
    """TCP on host:port, or a Unix socket at ``unix_path`` when given."""
    return listen_unix(unix_path) if unix_path else listen_tcp(host, port)


def supports_reuse_port() -> bool:
    return hasattr(socket, "SO_REUSEPORT")
