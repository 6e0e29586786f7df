"""What the kernel says about sockets and memory: /proc/net/sockstat, netstat, meminfo.

bench.scale reads these before and after opening its connections: a socket's
kernel memory is not in any process's RSS, and a listen queue that overflows
drops SYNs without any process noticing.
"""

from __future__ import annotations

import resource

PAGE_SIZE = resource.getpagesize()


def sockstat() -> dict[str, int]:
    """The TCP line of /proc/net/sockstat: inuse, orphan, tw, alloc, mem (pages)."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                words = line.split()[1:]
                return {k: int(v) for k, v in zip(words[::2], words[1::2], strict=True)}
    return {}


def netstat(names: tuple[str, ...] = ("ListenOverflows", "ListenDrops")) -> dict:
    """Counters from /proc/net/netstat's TcpExt lines (a header line, a value line)."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    if len(lines) < 2:
        return {}
    values = dict(zip(lines[0][1:], lines[1][1:], strict=True))
    return {name: int(values[name]) for name in names if name in values}


def meminfo(names: tuple[str, ...] = ("MemAvailable", "Slab", "SUnreclaim")) -> dict:
    """Fields of /proc/meminfo, in KiB."""
    found = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in names:
                found[key] = int(rest.split()[0])
    return found


def slabinfo() -> dict[str, int]:
    """Bytes in use per slab cache (active objects x object size); {} if unreadable.

    /proc/slabinfo is root's only on most systems. Where it can be read, the
    caches that grow with the sockets (TCP, sock_inode_cache, filp, dentry,
    eventpoll_epi, ...) say what one idle socket costs the kernel.
    """
    try:
        with open("/proc/slabinfo") as f:
            lines = f.readlines()[2:]
    except OSError:
        return {}
    caches = {}
    for line in lines:
        name, active, _total, size = line.split()[:4]
        caches[name] = int(active) * int(size)
    return caches


def snapshot() -> dict:
    return {
        "sockstat": sockstat(),
        "netstat": netstat(),
        "meminfo": meminfo(),
        "slab": slabinfo(),
    }


# Slab caches that moved less than this between two snapshots are left out.
SLAB_NOISE = 1 << 20


def delta(before: dict, after: dict) -> dict:
    """after - before for every counter of two snapshots (slab: the caches that
    moved by a MiB or more)."""
    moved = {
        group: {k: after[group][k] - v for k, v in values.items() if k in after[group]}
        for group, values in before.items()
    }
    moved["slab"] = {
        name: grown for name, grown in moved["slab"].items() if abs(grown) >= SLAB_NOISE
    }
    return moved


def read_int(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def limits() -> dict:
    """The system limits a scale test runs into, as this machine has them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        low = high = 0
    return {
        "nofile_soft": soft,
        "nofile_hard": hard,
        "fs_nr_open": read_int("/proc/sys/fs/nr_open"),
        "fs_file_max": read_int("/proc/sys/fs/file-max"),
        "somaxconn": read_int("/proc/sys/net/core/somaxconn"),
        "tcp_max_syn_backlog": read_int("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
        "ephemeral_ports": high - low + 1 if high else None,
        "ip_local_port_range": f"{low}-{high}",
        "tcp_max_tw_buckets": read_int("/proc/sys/net/ipv4/tcp_max_tw_buckets"),
        "tcp_mem_pages": read_text("/proc/sys/net/ipv4/tcp_mem"),
    }


def read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None
