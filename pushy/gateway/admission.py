"""Who may open a WebSocket: connection limits per process and per client address.

``MAX_CONNECTIONS`` bounds the WebSockets one gateway process holds. Unset, it
is derived from the open-file limit so that descriptors stay in reserve: at
the limit, a further handshake still gets its socket, is read and answered
``503`` with ``Retry-After``, and ``/health`` and ``/metrics`` keep answering.
``MAX_CONNECTIONS_PER_CLIENT`` bounds what one client address holds, so one
host cannot take the whole process. The address is the TCP peer's, or, when
the peer is one of ``TRUSTED_PROXIES``, the one its forwarding headers give.
Connections whose request head is still arriving are bounded per peer
address by the same number (``hold_head``), so half-sent heads cannot pile up
from one host; a trusted proxy's are not counted (its clients count once their
heads are in).

The rules and the formula are documented in docs/settings.md and
docs/decisions.md.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from pushy import conf
from pushy.gateway.handshake import Refusal
from pushy.logs import Throttled

try:
    import resource
except ImportError:  # Not on Windows: no open-file limit to derive from.
    resource = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Descriptors MAX_CONNECTIONS leaves free by default: a fixed part for the
# process itself (a gateway serves with 7 open: stdio, epoll, listening
# socket, Redis; then one database connection per DB_POOL_SIZE thread) and a
# share of the limit for sockets that are not WebSockets yet or any more
# (handshakes being read or refused, /health, /metrics, closing connections).
RESERVE_FIXED = 100
RESERVE_DIVISOR = 10
# Seconds a refused client is asked to wait before trying again.
RETRY_AFTER = 10
# The TRUSTED_PROXIES entry that trusts peers on a Unix socket (they have no IP).
UNIX_PEER = "unix"
# Soft limits tried under an unlimited hard one (10,240 is macOS's OPEN_MAX).
UNLIMITED_TARGETS = (65536, 10240)
# IPv6 clients count per /64: one host usually holds a whole /64.
IPV6_CLIENT_PREFIX = 64


# Open-file limit ------------------------------------------------------------


def raise_open_file_limit() -> int | None:
    """Raise the soft open-file limit to the hard one; the soft limit after.

    systemd and most shells start processes with a soft limit of 1,024 (kept
    low for programs that use select()) under a far higher hard limit, and
    systemd advises programs that need more to raise it themselves. The
    gateway waits with epoll, so it takes the hard limit. An unlimited hard
    limit (macOS, the BSDs; Linux has none) caps the soft one at a
    kernel-specific maximum, so the usual ones are tried. None: no finite limit.
    """
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    finite = hard != resource.RLIM_INFINITY
    for target in (hard,) if finite else UNLIMITED_TARGETS:
        if soft != resource.RLIM_INFINITY and target <= soft:
            break
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as e:  # above the kernel's maximum
            logger.info("could not raise the open-file limit to %d: %s", target, e)
            continue
        soft = target
        break
    return None if soft == resource.RLIM_INFINITY else soft


def reserve(limit: int) -> int:
    """Descriptors kept out of MAX_CONNECTIONS' default for an open-file limit."""
    return RESERVE_FIXED + limit // RESERVE_DIVISOR


def default_max_connections(limit: int | None) -> int | None:
    """MAX_CONNECTIONS when unset: ``limit - (100 + limit // 10)``, at least half.

    1,024 descriptors give 822 connections, 65,536 give 58,883. None (no finite
    limit) means no limit.
    """
    if limit is None:
        return None
    return max(limit - reserve(limit), limit // 2, 1)


# Client addresses -----------------------------------------------------------


def parse_address(text: str) -> IPAddress | None:
    """An IP from a peer address or forwarding-header entry; None if it is none.

    Accepts ``1.2.3.4``, ``1.2.3.4:5678``, ``::1`` and ``[::1]:5678``; an
    IPv4-mapped IPv6 address is its IPv4 address.
    """
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The peers whose forwarding headers are believed (TRUSTED_PROXIES)."""

    def __init__(self, entries: Iterable[str]) -> None:
        entries = list(entries)
        self.unix = UNIX_PEER in entries
        self.networks = [
            ipaddress.ip_network(entry, strict=False)
            for entry in entries
            if entry != UNIX_PEER
        ]

    def __bool__(self) -> bool:
        return self.unix or bool(self.networks)

    def trusts(self, address: IPAddress | None) -> bool:
        if address is None:
            return False
        return any(address in network for network in self.networks)

    def client(self, environ: dict) -> IPAddress | None:
        """The client's address for a request; None for an unknown Unix-socket peer.

        From an untrusted peer, the peer itself. From a trusted one, the
        right-most address in X-Forwarded-For that is not a trusted proxy (each
        proxy appends the address it saw, so what lies to its left may be the
        client's invention), else X-Real-IP, else the peer.
        """
        remote = environ.get("REMOTE_ADDR")
        peer = parse_address(remote) if remote else None
        from_proxy = self.trusts(peer) if remote else self.unix
        if not from_proxy:
            return peer
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        hops = [hop for hop in forwarded.split(",") if hop.strip()]
        if hops:
            return self._right_most_untrusted(hops, peer)
        real_ip = environ.get("HTTP_X_REAL_IP")
        return (parse_address(real_ip) if real_ip else None) or peer

    def _right_most_untrusted(
        self, hops: list[str], peer: IPAddress | None
    ) -> IPAddress | None:
        addresses = [parse_address(hop) for hop in hops]
        for address in reversed(addresses):
            if address is None:
                # A trusted proxy should have written an address here: count
                # the request against the proxy rather than believe anything.
                return peer
            if not self.trusts(address):
                return address
        return addresses[0]  # Every hop is a proxy of ours: the first is the client.


def client_key(address: IPAddress | None) -> str | None:
    """What MAX_CONNECTIONS_PER_CLIENT counts: the address, an IPv6 /64, or None."""
    if address is None:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        network = ipaddress.ip_network((address, IPV6_CLIENT_PREFIX), strict=False)
        return str(network)
    return str(address)


# Admission ------------------------------------------------------------------


def over_limit(message: str) -> Refusal:
    """The handshake answer past a limit: 503, never a 4xx, with Retry-After."""
    # Logged by Admission itself, once a minute: a flood must not fill the log.
    return Refusal(
        "503 Service Unavailable",
        message,
        [("Retry-After", str(RETRY_AFTER))],
        logged=True,
    )


class Admission:
    """Counts open WebSockets, in total and per client, and refuses past the limits.

    ``admit()`` and ``release()`` run in the event loop with no switch between
    the check and the count, so concurrent handshakes never overshoot.
    """

    def __init__(
        self,
        stats: Any,
        max_connections: int | None,
        per_client: int | None,
        trusted: TrustedProxies,
    ) -> None:
        self.stats = stats
        self.max_connections = max_connections
        self.per_client = per_client
        self.trusted = trusted
        self.open = 0
        self.by_client: dict[str, int] = {}
        self.heads_by_client: dict[str, int] = {}
        self._log_full = Throttled(logger)
        self._log_client = Throttled(logger)

    @classmethod
    def from_settings(cls, stats: Any) -> Admission:
        """Limits from PUSHY_SETTINGS; raises the open-file limit first."""
        limit = raise_open_file_limit()
        configured = conf.get("MAX_CONNECTIONS")
        max_connections = configured or default_max_connections(limit)
        if configured and limit is not None and configured > limit - reserve(limit):
            logger.warning(
                "MAX_CONNECTIONS %d leaves fewer than %d of the %d open files in "
                "reserve: at that many connections /health may stop answering",
                configured,
                reserve(limit),
                limit,
            )
        return cls(
            stats,
            max_connections,
            conf.get("MAX_CONNECTIONS_PER_CLIENT"),
            TrustedProxies(conf.get("TRUSTED_PROXIES")),
        )

    def admit(self, environ: dict) -> str | None:
        """Count a new WebSocket and return its client key; Refusal past a limit."""
        key = client_key(self.trusted.client(environ))
        if self.max_connections is not None and self.open >= self.max_connections:
            self.stats.refused_max_connections += 1
            self._log_full.log(
                logging.WARNING,
                "refusing WebSocket handshakes (503): %d connections open, "
                "MAX_CONNECTIONS is %d",
                self.open,
                self.max_connections,
            )
            raise over_limit("the gateway is at its connection limit")
        if key is not None and self.per_client is not None:
            self._count_client(
                self.by_client, key, "WebSocket handshakes", "it holds %d connections"
            )
        self.open += 1
        return key

    def _count_client(self, counts: dict, key: str, what: str, held_as: str) -> None:
        """Count one more for ``key`` in ``counts``, or refuse (503) at the
        per-client limit, logged (``what`` is refused; ``held_as`` says what
        the address holds, with a %d)."""
        held = counts.get(key, 0)
        if held >= self.per_client:
            self.stats.refused_per_client += 1
            self._log_client.log(
                logging.WARNING,
                f"refusing {what} (503) from %s: {held_as}, "
                "MAX_CONNECTIONS_PER_CLIENT is %d",
                key,
                held,
                self.per_client,
            )
            raise over_limit("too many connections from your address")
        counts[key] = held + 1

    def release(self, key: str | None) -> None:
        """Uncount a WebSocket that ``admit()`` returned ``key`` for."""
        self.open -= 1
        if key is None or self.per_client is None:
            return
        _uncount(self.by_client, key)

    def hold_head(self, remote_addr: str) -> str | None:
        """Count a connection whose request head is still arriving, by its
        peer's address; the key to give ``release_head()``, or Refusal (503)
        when that address has ``MAX_CONNECTIONS_PER_CLIENT`` heads being read.

        Heads count apart from WebSockets: any request (a ``/health`` too) may
        be accepted before its first bytes arrive, and must not be refused
        because its address holds its WebSockets. None (not counted): no
        per-client limit, a peer with no IP (a Unix socket), or a trusted
        proxy, whose clients are only known from their heads.
        """
        if self.per_client is None:
            return None
        peer = parse_address(remote_addr) if remote_addr else None
        if peer is None or self.trusted.trusts(peer):
            return None
        key = client_key(peer)
        self._count_client(
            self.heads_by_client,
            key,
            "requests",
            "%d of its request heads are being read",
        )
        return key

    def release_head(self, key: str | None) -> None:
        """Uncount a head that ``hold_head()`` returned ``key`` for (it is in,
        or its connection ended)."""
        if key is not None:
            _uncount(self.heads_by_client, key)


def _uncount(counts: dict[str, int], key: str) -> None:
    held = counts.pop(key) - 1
    if held:
        counts[key] = held
