"""keep_freed_memory: keep the memory a training step frees for the next step, instead of
handing it back to the kernel and faulting it in again.

PyTorch takes CPU tensors from malloc. glibc serves a block above its mmap threshold (32 MiB at
most, however it adapts) with a fresh mmap and unmaps it on free, and it trims the heap's top
once the free space there passes a threshold. A training step frees and reallocates the same
activations every step, so every step the kernel maps fresh pages and zero-fills each on its
first touch: page faults inside ReLU, BN and pooling. On the start net at 3x32x32, batch 128,
that cost 1.2-1.3x per CPU step (experiments/bench_train.py, its nash-glibc column).
Turning mmap and trimming off keeps freed blocks in the heap, where the next step reuses them.

The price: the process's resident memory stays at its peak instead of dropping between steps.
It is process-wide, so the CLI and the Ray workers call this once at start (as PyTorch's own CPU
launcher, torch.backends.xeon.run_cpu, preloads jemalloc or tcmalloc for the same reason); a
library user calls it, or not, at theirs. It does nothing where it would not apply or was not
wanted: not glibc, another malloc preloaded, malloc settings already in the environment, or
NASH_KEEP_FREED_MEMORY=0.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

OPT_OUT = "NASH_KEEP_FREED_MEMORY"
_applied: bool | None = None


def why_not() -> str | None:
    """Why keep_freed_memory would leave malloc alone here, or None if it applies."""
    if os.environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"{OPT_OUT} is off"
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "not glibc"
    preload = os.environ.get("LD_PRELOAD", "")
    if any(m in preload for m in ("jemalloc", "tcmalloc", "mimalloc")):
        return "another malloc is preloaded"
    if any(k.startswith("MALLOC_") for k in os.environ) or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return "malloc is already tuned by the environment"
    return None


def kept() -> bool:
    """Whether keep_freed_memory took effect in this process (Ray workers follow their driver)."""
    return bool(_applied)


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process (see the module notes); True if it does now.
    Idempotent."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if why_not() is None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            # every block from the heap, none by mmap; and never trim the heap's top
            _applied = bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
        except (OSError, AttributeError):  # no loadable libc, or one without mallopt
            pass
    return _applied
