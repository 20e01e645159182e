"""Opt-in tuning of XLA's CPU compiler for CIANNA-sized networks.

``import cianna_jax`` changes no process state.  :func:`tune` is the one place that
touches ``XLA_FLAGS``; the ``cianna-jax`` command and the imperative ``init`` call it,
and functional-core users may call it themselves, first thing::

    import cianna_jax.xla_cpu
    cianna_jax.xla_cpu.tune()      # before any JAX computation
    import jax, cianna_jax as cj

What it does: append ``--xla_cpu_experimental_ynn_fusion_type=`` (XLA's YNNPACK
fusions off, measured slower for these small convolutions and dense layers on CPU,
see the README) to ``XLA_FLAGS``.  XLA reads ``XLA_FLAGS`` once, when the first JAX
backend starts, and the variable is inherited by child processes.  It also turns on
the persistent compilation cache when the environment asks for it
(``CIANNA_JAX_COMPILE_CACHE``, see :mod:`cianna_jax.compile_cache`), and exports
glibc's huge-page tunable to child processes (``GLIBC_TUNABLES``, see
:mod:`cianna_jax.host_memory`: glibc reads it when a process starts, so this process
keeps its allocator; its own opt-out, ``CIANNA_JAX_KEEP_MALLOC``); nothing else.

:func:`classic_emitters_flag` and :func:`with_classic_emitters` only answer a question
for the test suite and the benchmarks' smoke runs (which flag makes short programs compile
faster with the installed jaxlib); they set nothing.
"""

from __future__ import annotations

import os
import re
import sys
import warnings

__all__ = ["tune", "FLAG", "OPT_OUT_ENV", "backend_started", "use_cpu_devices",
           "CLASSIC_EMITTERS", "classic_emitters_flag", "with_classic_emitters"]

#: the XLA flag :func:`tune` adds (empty value: no YNN fusion type enabled)
FLAG = "--xla_cpu_experimental_ynn_fusion_type="
#: set this environment variable to anything but "" or "0" to keep ``XLA_FLAGS`` as it is
OPT_OUT_ENV = "CIANNA_JAX_KEEP_XLA_FLAGS"
#: XLA's classic CPU fusion emitters: the same fused programs compiled 2-3x faster than
#: with the newer emitters (what the tests and the benchmarks' smoke runs want); XLA
#: dropped the flag after jaxlib 0.11.0
CLASSIC_EMITTERS = "--xla_cpu_use_fusion_emitters=false"
#: the last jaxlib whose XLA knows :data:`CLASSIC_EMITTERS` (0.11.1 and 0.11.2 abort on it)
_LAST_WITH_CLASSIC_EMITTERS = (0, 11, 0)


def backend_started() -> bool:
    """Whether a JAX backend (CPU, GPU, ...) has been initialised in this process.

    JAX has no public query for this (``jax.extend.backend`` only offers functions that
    start the backends; ``backends_are_initialized`` lives in the private
    ``jax._src.xla_bridge``).  The public, documented handle used instead is the
    ``jax_num_cpu_devices`` option, which "must be set before JAX is initialized":
    JAX's validator refuses to change it once a backend exists.  The probe sets it to a
    different value and back; before initialisation both updates succeed and the
    option ends as it was.  Without ``jax`` imported no backend can exist.
    """
    if "jax" not in sys.modules:
        return False
    import jax

    try:
        current = jax.config.jax_num_cpu_devices
    except AttributeError:  # option gone in a future jax: cannot tell, assume not started
        return False
    try:
        jax.config.update("jax_num_cpu_devices", current + 1)
    except RuntimeError:  # "... should be updated before backends are initialized"
        return True
    jax.config.update("jax_num_cpu_devices", current)
    return False


def use_cpu_devices(n: int, name: str = "cpu_devices") -> None:
    """Give this process ``n`` JAX CPU devices (``jax_num_cpu_devices``; 1 sets nothing),
    e.g. one per core for prediction split over them (:func:`cianna_jax.parallel.cpu_mesh`).
    Before any JAX computation: RuntimeError once a backend started, ValueError for ``n``
    below 1; both messages begin with ``name`` (the caller's option)."""
    if n < 1:
        raise ValueError(f"{name}: expected at least 1, received {n}")
    if n == 1:
        return
    if backend_started():
        raise RuntimeError(f"{name}: JAX already started in this process; run the command "
                           "in a process of its own")
    import jax

    jax.config.update("jax_num_cpu_devices", n)


def _jaxlib_version() -> tuple[int, ...] | None:
    """The installed jaxlib's version as integers (``(0, 11, 2)``), without importing it;
    None when it is not installed or its version does not start with numbers."""
    from importlib import metadata

    try:
        text = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return None
    parts = re.match(r"(\d+(?:\.\d+)*)", text)
    return tuple(int(p) for p in parts.group(1).split(".")) if parts else None


def classic_emitters_flag() -> str:
    """:data:`CLASSIC_EMITTERS` when the installed jaxlib's XLA knows that flag (up to
    0.11.0), else ``""``.  XLA aborts the whole process, as its backend starts, on a
    flag in ``XLA_FLAGS`` that it does not know ("Unknown flag in XLA_FLAGS"), so the
    flag must never be added blindly."""
    version = _jaxlib_version()
    return CLASSIC_EMITTERS if version is not None and version <= _LAST_WITH_CLASSIC_EMITTERS \
        else ""


def with_classic_emitters(flags: str) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) with :func:`classic_emitters_flag` added, unless
    the installed XLA lacks that flag or ``flags`` already choose the fusion emitters.
    Returns the new value and sets nothing (the tests and ``run_all.py --quick`` set it)."""
    classic = classic_emitters_flag()
    if not classic or "--xla_cpu_use_fusion_emitters" in flags:
        return flags
    return f"{flags} {classic}".strip()


def tune(*, force: bool = False, warn: bool = True) -> bool:
    """Turn XLA's YNNPACK CPU fusions off for this process (and its children).

    Appends :data:`FLAG` to the ``XLA_FLAGS`` environment variable unless

    * the user already set ``--xla_cpu_experimental_ynn_fusion_type`` (their value wins,
      always, and so does an earlier call of this function);
    * the environment variable ``CIANNA_JAX_KEEP_XLA_FLAGS`` is set to anything but
      ``""`` or ``"0"`` (opt-out), unless ``force=True``;
    * a JAX backend already started (XLA has read its flags: changing them would only
      affect child processes); then a ``RuntimeWarning`` says so, unless ``warn=False``.

    Returns True when it changed ``XLA_FLAGS``, False otherwise.  Call it before any
    JAX computation (``import jax`` alone starts no backend).  GPU runs are unaffected.
    ``CIANNA_JAX_COMPILE_CACHE`` set (see :mod:`cianna_jax.compile_cache`) also enables
    the persistent compilation cache, whatever the flags, and ``GLIBC_TUNABLES`` gets
    :data:`cianna_jax.host_memory.TUNABLE` for child processes (whatever the flags;
    ``CIANNA_JAX_KEEP_MALLOC`` opts out of that part).
    """
    from . import compile_cache, host_memory

    compile_cache.enable_from_env()
    tunables = host_memory.with_hugepages(os.environ).get("GLIBC_TUNABLES")
    if tunables:
        os.environ["GLIBC_TUNABLES"] = tunables
    flags = os.environ.get("XLA_FLAGS", "")
    if FLAG.split("=")[0] in flags:
        return False
    if not force and os.environ.get(OPT_OUT_ENV, "") not in ("", "0"):
        return False
    if backend_started():
        if warn:
            warnings.warn(
                "cianna_jax.xla_cpu.tune(): a JAX backend has already started, so XLA_FLAGS "
                "is left unchanged (XLA reads it once). Call tune() before any JAX "
                f"computation, or set XLA_FLAGS={FLAG} yourself before starting Python.",
                RuntimeWarning, stacklevel=2)
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return True
