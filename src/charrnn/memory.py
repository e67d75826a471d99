"""Keep freed memory for reuse instead of handing it back to the operating system at every step.

glibc's malloc serves each large block (from 128 KiB, adaptively up to 32 MiB) with its own mmap and
unmaps it when freed; the next training step asks for the same activation and gradient buffers again
and the kernel faults them back in page by page. For the default 2x512 bf16 training on a 2-core
Xeon that was 58,000 minor page faults and 16 % system time per step; with large blocks taken from
the heap and the heap never trimmed, 900 faults and 0.5 %, 26 % more chars/s, the same losses (the
arithmetic is untouched), at the cost of keeping the peak in use (bench/README.md). So the processes
that compute in bulk and end set it: the stages (dvc_exp.stage), `charrnn doctor` (its burst of
training is timed as the train stage runs) and the benches. Servers do not (`charrnn serve`, `play`,
`ui`, a model under `mlflow models serve`): they run for days, and a 400 MB request body kept 1.66 GB
in use after it was answered.
"""

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt's parameters, from glibc's malloc.h
KEEP_BYTES = 2**31 - 1  # trim the heap only when this much is free at its top (the most mallopt takes)


def keep_freed_memory():
    """Tell glibc's malloc to serve large blocks from the heap and never trim it; True if it took.
    Elsewhere (another C library or OS) nothing changes."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_BYTES))
