"""Optional persistent compilation cache: a second run of the same script starts fast.

XLA compiles every jitted step the first time it sees a network and batch shape
(CIANNA's MNIST network: about 1-2 s on 2 CPU cores; its SDC1 detector: 10-30 s).  JAX
can keep the compiled programs on disk and reuse them in later processes.  Nothing here
runs at import; turn it on explicitly::

    import cianna_jax.compile_cache
    cianna_jax.compile_cache.enable_compile_cache()            # default folder
    cianna_jax.compile_cache.enable_compile_cache("/scratch/xla")

or from the environment, without touching the script::

    CIANNA_JAX_COMPILE_CACHE=1 python train.py                 # default folder
    CIANNA_JAX_COMPILE_CACHE=/scratch/xla python train.py      # that folder

The variable is read by :func:`enable_from_env`, which ``cnn.init`` and the
``cianna-jax`` command call through :func:`cianna_jax.xla_cpu.tune` (functional-core
users call :func:`enable_compile_cache` or :func:`enable_from_env` themselves).
``""`` or ``"0"`` leaves the cache off.  The default folder is
``$XDG_CACHE_HOME/cianna_jax/xla`` (``~/.cache/cianna_jax/xla``).  Entries are keyed by
the program, the JAX/XLA versions and the device, so a stale entry is never used; the
folder can be deleted at any time.  Every program is cached, however short its
compilation (JAX's own default skips those under one second, which are most of a
small network's).
"""

from __future__ import annotations

import os
import warnings

__all__ = ["ENV", "default_path", "enable_compile_cache", "enable_from_env", "enabled_path"]

#: environment variable: "1" (or "on", "true", "yes") for the default folder, a path for
#: that folder, "" or "0" for no cache
ENV = "CIANNA_JAX_COMPILE_CACHE"

_state = {"path": None}


def default_path() -> str:
    """``$XDG_CACHE_HOME/cianna_jax/xla``, ``~/.cache/cianna_jax/xla`` without it."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "cianna_jax", "xla")


def enable_compile_cache(path: str | os.PathLike | None = None, *,
                         min_compile_seconds: float = 0.0) -> str:
    """Keep compiled XLA programs in ``path`` (default :func:`default_path`) and reuse
    them across processes; returns the folder.  ``min_compile_seconds``: programs that
    compiled faster than this are not written (0: all).  May be called at any time; the
    programs compiled before the call are not written."""
    import jax

    folder = os.path.abspath(os.path.expanduser(os.fspath(path) if path else default_path()))
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(f"compile cache {folder}: exists and is not a folder") from None
    except OSError as err:
        raise OSError(f"compile cache {folder}: cannot be made ({err.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"compile cache {folder}: not writable")
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _state["path"] = folder
    return folder


def enable_from_env() -> str | None:
    """Enable the cache when :data:`ENV` asks for it; returns the folder or None."""
    value = os.environ.get(ENV, "").strip()
    if value in ("", "0") or value.lower() in ("off", "false", "no"):
        return None
    if _state["path"] is not None:
        return _state["path"]
    default = value.lower() in ("1", "on", "true", "yes")
    try:
        return enable_compile_cache(None if default else value)
    except OSError as err:  # an optimisation: the run goes on, compiling as usual
        warnings.warn(f"{ENV}={value!r}: {err}; running without the compilation cache",
                      RuntimeWarning, stacklevel=2)
        return None


def enabled_path() -> str | None:
    """The folder set by this module in this process, or None."""
    return _state["path"]
