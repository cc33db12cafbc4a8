"""How the process gives memory back to the system.

glibc raises its mmap threshold each time a large block is freed, so after a burst of
big pages (many export streams at once) later pages come from the heap, whose freed
space stays in the process: RSS stayed 100 MB up after 200 stalled streams ended.
A fixed threshold keeps blocks of a page's size in mappings of their own, given back
when freed (measured: +24 MB after the same streams, as on a fresh process).

Pages smaller than the threshold (64 comments of 1 KB: 70 KB) still come from the heap,
and glibc gives back only the free space at its top: +45 to 65 MB stayed after 200
stalled followers of such pages ended. So every TRIM_SECONDS a background round asks
how much of the heap is free (`mallinfo2`) and, past TRIM_FREE_BYTES, hands it back
(`malloc_trim`), on a thread: both walk the allocator's arenas, which the event loop
must not wait for."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from typing import Any

from corrigo.server.ops import background

log = logging.getLogger("corrigo.server")

# mallopt's parameter number for the mmap threshold (malloc.h), and the value: glibc's
# own default, made fixed.
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024
TRIM_SECONDS = 10.0
TRIM_FREE_BYTES = 16 * 1024 * 1024


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (malloc.h, glibc 2.33 and later)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    return None if name is None else ctypes.CDLL(name)


def give_back_large_blocks() -> None:
    """Fix glibc's mmap threshold; nothing on other C libraries."""
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or not mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES):
        log.debug("the C library keeps its own mmap threshold")


def start_trimming() -> None:
    """Hand the heap's free space back every TRIM_SECONDS once it passes TRIM_FREE_BYTES;
    nothing on C libraries without `mallinfo2` and `malloc_trim`."""
    libc = _libc()
    info = getattr(libc, "mallinfo2", None)
    trim = getattr(libc, "malloc_trim", None)
    if info is None or trim is None:
        log.debug("the C library cannot trim its heap")
        return
    info.restype = _MallInfo2
    trim.argtypes = [ctypes.c_size_t]

    def round_() -> None:
        if info().fordblks > TRIM_FREE_BYTES:
            trim(0)

    async def step() -> None:
        await asyncio.to_thread(round_)

    background.current().every(TRIM_SECONDS, step, "memory-trim")
