"""Opt-in: glibc's allocator keeps freed memory for XLA's next step (Linux, CPU runs).

XLA's CPU runtime allocates each step's buffers (the temporaries of a whole training
step come as one block of hundreds of MB) and frees them at its end.  With glibc's
default settings, blocks above 32 MB, and blocks the XLA threads' own arenas cannot
hold, are mapped from the kernel and unmapped when freed, so every step page-faults
its memory in again: CIANNA's SDC1 network at 256x256, batch 8, took 166,000 minor
page faults and 0.67 s of system time per training step on a 2-core machine (a fifth
of the step), its weights' inference layout 110 ms instead of 54 (benchmarks/README.md).

:func:`keep_freed_memory` sets three documented ``mallopt(3)`` parameters: one arena
for all threads (``M_ARENA_MAX`` = 1: XLA's threads then allocate where the other two
settings apply), no ``mmap`` for large blocks (``M_MMAP_MAX`` = 0) and no trimming of
the heap's free top (``M_TRIM_THRESHOLD`` = -1).  Freed blocks then serve the next
step without page faults.  The cost: the process keeps its peak heap, and its peak
resident memory grows (SDC1 at 256x256 training: 1.4 -> 1.8-2.6 GB; at 128x128:
1.06 -> 1.12 GB).  :func:`cianna_jax.xla_cpu.tune` calls it (the ``cianna-jax``
command and the imperative ``init`` do); ``CIANNA_JAX_KEEP_MALLOC`` set to anything but
``""`` or ``"0"`` leaves the allocator alone.  Nothing changes on other C libraries
(macOS, musl) or other systems.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

__all__ = ["keep_freed_memory", "OPT_OUT_ENV"]

#: set this environment variable to anything but "" or "0" to keep glibc's settings
OPT_OUT_ENV = "CIANNA_JAX_KEEP_MALLOC"

# mallopt(3) parameter numbers (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def keep_freed_memory() -> bool:
    """Set glibc's allocator to keep freed memory for reuse (see the module docstring).

    Call it before JAX starts its threads (before any JAX computation: the arena
    setting only affects threads that have not allocated yet).  Returns True when the
    settings were made, False on a system without glibc, when opted out
    (``CIANNA_JAX_KEEP_MALLOC``) or when ``mallopt`` refused one of them.
    """
    if os.environ.get(OPT_OUT_ENV, "") not in ("", "0"):
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    settings = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
    return all(mallopt(param, value) == 1 for param, value in settings)
