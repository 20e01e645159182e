"""Version and device guards for the Pallas kernels (jax 0.10 and 0.11).

Import locations moved between jax releases and the Triton lowering is deprecated in
0.11, so everything version dependent is looked up here, once, without failing at import.
"""

from __future__ import annotations

import functools

import jax

__all__ = ["pallas", "triton_params", "gpu_capability", "triton_available", "on_gpu"]


def pallas():
    """``jax.experimental.pallas`` (raises ImportError with the jax version if missing)."""
    try:
        from jax.experimental import pallas as pl
    except ImportError as err:  # pragma: no cover - depends on the installed jax
        raise ImportError(f"Pallas is not available in jax {jax.__version__}: {err}") from err
    return pl


@functools.cache
def _triton_module():
    try:
        from jax.experimental.pallas import triton as plt
    except ImportError:
        return None
    return plt


def triton_available() -> bool:
    """Whether this jax has the Pallas Triton lowering (with its compiler parameters)."""
    plt = _triton_module()
    return plt is not None and _params_class(plt) is not None


def _params_class(plt):
    return getattr(plt, "CompilerParams", None) or getattr(plt, "TritonCompilerParams", None)


def triton_params(num_warps: int, num_stages: int):
    """Triton compiler parameters, whatever this jax calls their class."""
    plt = _triton_module()
    cls = None if plt is None else _params_class(plt)
    if cls is None:
        raise RuntimeError(f"the Pallas Triton lowering is not available in jax {jax.__version__}")
    return cls(num_warps=num_warps, num_stages=num_stages)


def on_gpu(device=None) -> bool:
    """Whether ``device`` (default: jax's first device) is a CUDA or ROCm GPU."""
    device = jax.devices()[0] if device is None else device
    return device.platform in ("gpu", "cuda", "rocm")


def gpu_capability(device=None) -> tuple[int, int] | None:
    """CUDA compute capability ``(major, minor)`` of ``device``; None off NVIDIA GPUs."""
    device = jax.devices()[0] if device is None else device
    if not on_gpu(device):
        return None
    cc = getattr(device, "compute_capability", None)
    if not cc:
        return None
    major, _, minor = str(cc).partition(".")
    return int(major), int(minor or 0)
