"""Gives the memory freed after a large request back to the operating system (glibc's malloc_trim).

glibc raises its mmap threshold each time a large block is freed, so after the first few decoded pictures
the next ones come from the heap of the thread's arena; freed, they stay in the process (a burst of 64
encoded faces left an embedder 800 MiB larger for good). malloc_trim returns every free page of every
arena. Elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _find_trim() -> Callable[[int], int] | None:
    try:
        # The symbols already loaded in this process: glibc's, on Linux; no subprocess to find the library.
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    found: Callable[[int], int] = trim
    return found


_TRIM = _find_trim()


def release_free_memory() -> bool:
    """Returns the process's free heap pages to the OS; True when anything was released. Takes
    about a millisecond per arena: call it after a large request, not after every one."""
    if _TRIM is None:
        return False
    return bool(_TRIM(0))
