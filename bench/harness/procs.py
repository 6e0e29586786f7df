"""Process accounting from /proc: CPU seconds and resident memory of a process tree.

The servers may fork (runpushy starts a fresh interpreter for the gateway), so
every figure covers the process and all its descendants.
"""

from __future__ import annotations

import os
import resource

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # The command name may hold spaces and parentheses: split after its last ')'.
    return text[text.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if int(_stat_fields(int(entry))[1]) == pid:
                found.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue  # the process ended while we looked
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        todo.extend(_children(current))
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by ``pid``'s tree (live processes only)."""
    total = 0
    for each in tree(pid):
        try:
            fields = _stat_fields(each)
        except OSError:
            continue
        # utime and stime are fields 14 and 15 of stat (1-based), 12 and 13 here.
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid``'s tree."""
    total = 0
    for each in tree(pid):
        try:
            with open(f"/proc/{each}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_SIZE
        except OSError:
            continue
    return total


def raise_open_files(wanted: int) -> int:
    """Raise this process's soft limit on open files towards ``wanted``; the new one.

    10,000 connections need more descriptors than the usual soft limit of 1,024;
    children inherit the raised limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def load_average() -> float:
    """The 1-minute load average (/proc/loadavg), what other sessions add included."""
    return os.getloadavg()[0]
