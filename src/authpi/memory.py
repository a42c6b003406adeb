"""Keep worker memory flat under password-hashing load.

argon2id allocates 19 MiB per hash in worker threads. glibc raises its mmap threshold after such a
block is freed, so later blocks come from per-thread arenas that are rarely returned to the system:
RSS ratchets up by tens of MB per hashing thread. A fixed threshold keeps big blocks mmapped (returned
on free), and a small arena cap bounds fragmentation. No-op where glibc is absent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_allocator() -> bool:
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_THRESHOLD, 1024 * 1024) == 1
    return bool(mallopt(_M_ARENA_MAX, 2) == 1 and ok)


def freeze_startup_objects() -> None:
    """Move everything allocated at start-up (modules, routes, keys) out of the collector's view,
    so full collections stay short and do not show up as tail latency."""
    gc.collect()
    gc.freeze()
