"""Process-wide CPU allocation settings for large batches: huge pages, and freed memory kept for reuse.

A CPU forward at batch 32-64 allocates and frees activations of tens of MB in every layer. With the
defaults each of them comes from fresh 4 KB pages that the kernel faults in and zeroes one by one
(0.2-1M page faults per IResNet forward; on a VM a fault costs microseconds). Two settings remove that:

- ``THP_MEM_ALLOC_ENABLE=1``: torch backs tensors >= 2 MB with transparent huge pages (512x fewer faults);
- glibc keeps freed memory (no mmap for large blocks, no trimming), so the next batch reuses it.

Both are process-wide, so a library must not impose them: ``facerun`` applies them at start (the user's
own settings win), and scripts may call :func:`use_fast_cpu_allocation` first thing.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3

#: Blocks up to this size come from the heap, where a freed block is reused instead of unmapped.
MMAP_THRESHOLD = 1 << 30
#: Free memory at the top of the heap kept, not returned to the kernel (mallopt takes an int).
TRIM_THRESHOLD = 2**31 - 1

#: Environment variables through which a user already chose glibc's malloc behaviour.
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def _glibc_function(name: str, argtypes: list, restype):
    """A function of glibc, the C library this process runs on, or None on other C libraries (musl and
    others have no, or a no-op, ``mallopt``)."""
    try:
        process = ctypes.CDLL(None)  # the symbols already loaded
        if not hasattr(process, "gnu_get_libc_version"):
            return None
        fn = getattr(process, name)
    except (OSError, AttributeError, TypeError):
        return None
    fn.argtypes, fn.restype = argtypes, restype
    return fn


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse (large blocks from the heap, no trimming).
    Returns whether it was applied: not where the user set malloc's environment variables (theirs wins),
    not on other C libraries. The process's resident memory then stays at its peak."""
    if any(k in os.environ for k in _MALLOC_ENV):
        return False
    mallopt = _glibc_function("mallopt", [ctypes.c_int, ctypes.c_int], ctypes.c_int)
    return (mallopt is not None and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
            and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)))


def release_freed_memory() -> bool:
    """Hand the memory that malloc keeps back to the kernel now (glibc ``malloc_trim``), e.g. after a large
    job, or before measuring how much memory the next step needs. Returns whether anything was released."""
    trim = _glibc_function("malloc_trim", [ctypes.c_size_t], ctypes.c_int)
    return trim is not None and bool(trim(0))


def env_without_allocation_settings(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` less every allocation setting (huge pages, glibc malloc variables): the environment for a
    child process that starts from the defaults, or chooses its own."""
    return {k: v for k, v in env.items()
            if k not in ("THP_MEM_ALLOC_ENABLE", "GLIBC_TUNABLES") and not k.startswith("MALLOC_")}


def use_fast_cpu_allocation() -> dict[str, bool]:
    """Huge pages for torch's CPU tensors (unless ``THP_MEM_ALLOC_ENABLE`` is already set; torch reads it at
    its first large allocation, so call this before the first batch) and :func:`keep_freed_memory`.
    Returns which of the two are on."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    return {"huge_pages": os.environ["THP_MEM_ALLOC_ENABLE"] == "1", "keep_freed_memory": keep_freed_memory()}
