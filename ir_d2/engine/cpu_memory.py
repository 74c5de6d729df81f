"""
glibc's malloc told to keep the memory a process frees, for CPU training (pure Python: ctypes).

torch allocates CPU tensors with the C library's ``malloc``, which has no cache of its own for
large blocks: glibc serves each block above its mmap threshold (128 kB, raised at most to 32 MB)
with a fresh ``mmap`` and returns it on ``free``, so every large activation and gradient of every
step is new memory, and each of its 4 kB pages costs a page fault on its first write. Measured
on the project's 2-core CPU (DNANet, batch 4, 256x256 crops; ``benchmarks/bench_cpu_memory.py``):
287,000-303,000 page faults an iteration, and 0.82x the time per iteration without them. With
``M_MMAP_MAX`` 0 (no block is mmapped, so none is unmapped on free) and a trim threshold of
2 GiB (freed memory stays in the heap unless 2 GiB lie free at its top), the blocks of one step
are reused by the next: no page fault after the first steps, the same values (only where the
memory comes from changes).
"""

import ctypes
import logging
import sys

__all__ = ["keep_freed_memory"]

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # mallopt parameters, glibc's malloc.h
_M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int: the largest, about 2 GiB


def keep_freed_memory() -> bool:
    """
    Set glibc's ``mallopt(M_MMAP_MAX, 0)`` and ``mallopt(M_TRIM_THRESHOLD, 2**31 - 1)`` for this
    process and the processes it forks afterwards (the data loader's workers): freed memory is
    kept for the next allocations instead of going back to the system. The peak memory stays
    about the same (measured in the training above: 3677-3727 MiB resident against 3487-3542
    MiB, +5%), and a process that frees more than 2 GiB at once still returns it.

    Returns:
        True where applied (Linux with glibc); False elsewhere (macOS, Windows, musl), where it
        does nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None)  # the symbols already loaded into this process, the C library's too
    # glibc's alone has gnu_get_libc_version: musl's mallopt is a stub that does nothing
    if not (hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version")):
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if applied:
        logger.info(
            "glibc malloc keeps freed memory for reuse (IR_CPU_KEEP_FREED_MEMORY): no page faults "
            "on each step's new tensors"
        )
    return applied
