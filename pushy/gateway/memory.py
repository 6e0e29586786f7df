"""Give memory back to the OS after many connections have gone.

glibc's malloc keeps what Python frees (a connection's socket buffers, its
subscription strings and sets) in its own free lists and hands it back to the
kernel only from the top of the heap; after thousands of connections come and
go the process keeps its peak RSS. ``malloc_trim(0)`` returns every free page,
wherever it is. Elsewhere (musl, macOS) there is no such function and ``trim()``
does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none.

    Looked up among the symbols the process has loaded already (the C library's
    among them): ``ctypes.util.find_library`` would run ``ldconfig`` in a child
    process, a fork of a gateway holding thousands of descriptors.
    """
    try:
        libc = ctypes.CDLL(None)
        function = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    return function


def trim() -> bool:
    """Return freed heap memory to the OS; False where that is not possible."""
    function = _malloc_trim()
    if function is None:
        return False
    started = time.perf_counter()
    function(0)
    logger.debug("malloc_trim took %.1f ms", (time.perf_counter() - started) * 1e3)
    return True


class Trimmer:
    """Counts closed connections; ``tick()``, called every TRIM_INTERVAL by one
    greenlet of the gateway, trims when any closed since the last tick.

    So a wave of closes (clients restarting, a network blip) is trimmed once,
    after it, never per connection; an idle or steady gateway never trims.
    """

    def __init__(self) -> None:
        self.closed = 0
        self.trims = 0

    def connection_closed(self) -> None:
        self.closed += 1

    def tick(self) -> None:
        if self.closed and trim():
            self.trims += 1
        self.closed = 0


def freeze_startup_objects() -> int:
    """Exempt every object alive now from the cyclic garbage collector; how many.

    What start-up loaded (Django, the URLconf, the models, redis-py: several
    hundred thousand objects) lives as long as the process, yet each full
    collection walked all of it: 30 to 60 ms during which no update went out,
    several times a minute under load (the latency tail of bench/results/PROFILE.md,
    section 5). Frozen, they are never scanned; what connections create later
    still is.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
