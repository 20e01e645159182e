"""Huge pages for XLA's step buffers on the host (Linux with glibc, CPU runs).

XLA's CPU runtime allocates each step's buffers (the temporaries of a whole training
step come as blocks of hundreds of MB) and frees them at its end.  glibc maps blocks
above 32 MB, and those its per-thread arenas cannot hold, from the kernel and unmaps
them when freed, so every step faults its memory in again, one 4 KB page at a time:
CIANNA's SDC1 network at 256x256, batch 8, took 166,000 minor page faults and 0.67 s
of system time per training step on a 2-core machine, a fifth of the step.  glibc's
tunable ``glibc.malloc.hugetlb=1`` (glibc >= 2.35) makes malloc ask for transparent
huge pages (2 MB) on the memory it maps: 9,000 faults and 0.17 s per step, the same
peak memory (benchmarks/README.md).

glibc reads ``GLIBC_TUNABLES`` once, when a process starts.  So:

* :func:`with_hugepages` gives an environment with the tunable added (for a child);
* :func:`restart_with_hugepages` starts the running command again with it (the
  ``cianna-jax`` command and ``benchmarks/run_all.py`` do, first thing);
* :func:`cianna_jax.xla_cpu.tune` exports it to child processes;
* a script of yours gets it from its shell:
  ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1 python train.py``.

``CIANNA_JAX_KEEP_MALLOC`` set to anything but ``""`` or ``"0"`` leaves the allocator
alone; a ``hugetlb`` setting already in ``GLIBC_TUNABLES`` is kept as it is.  Nothing
changes on other systems or C libraries, nor when the kernel's transparent huge pages
are off (``/sys/kernel/mm/transparent_hugepage/enabled`` "never").
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping, Sequence

__all__ = ["TUNABLE", "OPT_OUT_ENV", "applies", "with_hugepages", "started_with_hugepages",
           "restart_with_hugepages"]

#: the glibc tunable (``GLIBC_TUNABLES``, entries separated by ":")
TUNABLE = "glibc.malloc.hugetlb=1"
#: set this environment variable to anything but "" or "0" to keep glibc's settings
OPT_OUT_ENV = "CIANNA_JAX_KEEP_MALLOC"
_KEY = TUNABLE.split("=")[0]
_RESTARTED = "CIANNA_JAX_RESTARTED_WITH_HUGEPAGES"  # set in the restarted process
#: ``GLIBC_TUNABLES`` as this module was first imported (glibc rewrites the process's
#: own copy at start, so ``/proc/self/environ`` cannot tell; Python's copy can)
_AT_START = os.environ.get("GLIBC_TUNABLES", "")


def applies(env: Mapping[str, str] | None = None) -> bool:
    """Whether the tunable is for this system (Linux, glibc >= 2.35) and not opted out
    in ``env`` (default: this process's environment)."""
    env = os.environ if env is None else env
    if env.get(OPT_OUT_ENV, "") not in ("", "0") or not sys.platform.startswith("linux"):
        return False
    name, version = platform.libc_ver()
    try:
        return name == "glibc" and tuple(int(v) for v in version.split(".")[:2]) >= (2, 35)
    except ValueError:
        return False


def with_hugepages(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` whose ``GLIBC_TUNABLES`` has :data:`TUNABLE` (unchanged when
    it has a ``hugetlb`` setting already, or when :func:`applies` says no)."""
    out = dict(env)
    tunables = out.get("GLIBC_TUNABLES", "")
    if applies(out) and _setting(tunables) is None:
        out["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}" if tunables else TUNABLE
    return out


def _setting(tunables: str) -> str | None:
    """The ``hugetlb`` value in a ``GLIBC_TUNABLES`` string, or None."""
    for item in tunables.split(":"):
        key, _, value = item.partition("=")
        if key == _KEY:
            return value
    return None


def started_with_hugepages() -> bool:
    """Whether this process started with huge pages asked of glibc's malloc (a non-zero
    ``hugetlb`` value in ``GLIBC_TUNABLES`` when this module was first imported: glibc
    reads the variable only at start)."""
    return _setting(_AT_START) not in (None, "0")


def restart_with_hugepages(argv: Sequence[str]) -> None:
    """Replace this process by ``python argv...`` with :data:`TUNABLE` in its
    environment, unless it started with a ``hugetlb`` setting or :func:`applies` says
    no (then return; a ``hugetlb`` value of the user's, even 0, is kept).  For
    command-line entry points only, before any work: the process is replaced, nothing
    after the call runs."""
    if not sys.executable or os.environ.get(_RESTARTED):
        return
    env = with_hugepages(os.environ)
    if env.get("GLIBC_TUNABLES") == os.environ.get("GLIBC_TUNABLES"):
        return  # not for this system, opted out, or a hugetlb setting of the user's
    env[_RESTARTED] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *argv], env)
    except OSError:  # the interpreter cannot be started again: go on as it is
        return
