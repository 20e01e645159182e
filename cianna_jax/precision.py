"""CIANNA's ``mixed_precision`` modes as dtype policies (cianna_layers.md section 12).

A policy names the dtype activations are stored and multiplied in (``compute``),
the accumulation dtype of matmuls and convolutions (``accum``) and the matmul
precision for float32 inputs.  Parameters always stay float32 master copies;
layers cast them to ``compute`` when they use them.  FP16 modes honour CIANNA's
``TC_scale_factor`` as a static loss scale.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import NamedTuple

import jax.numpy as jnp

__all__ = ["Policy", "get_policy", "MODES", "FP32"]


class Policy(NamedTuple):
    """A static dtype policy; hashable, so it can be part of a jit's static context."""

    name: str = "FP32C_FP32A"
    compute: str = "float32"
    accum: str = "float32"
    precision: str = "highest"
    loss_scaling: bool = False

    @property
    def compute_dtype(self):
        return jnp.dtype(self.compute)

    @property
    def accum_dtype(self):
        return jnp.dtype(self.accum)


#: the default policy: float32 everywhere, full-precision matmuls (CIANNA's "off")
FP32 = Policy()

# read-only tables (constants: nothing changes module state after import)
_POLICIES = MappingProxyType({
    "FP32C_FP32A": FP32,
    "TF32C_FP32A": Policy("TF32C_FP32A", precision="default"),
    "FP16C_FP32A": Policy("FP16C_FP32A", "float16", "float32", "default", True),
    "FP16C_FP16A": Policy("FP16C_FP16A", "float16", "float16", "default", True),
    "BF16C_FP32A": Policy("BF16C_FP32A", "bfloat16", "float32", "default", False),
})
_ALIASES = MappingProxyType({"off": "FP32C_FP32A", "on": "FP16C_FP32A"})

#: every accepted ``mixed_precision`` string
MODES = tuple(_ALIASES) + tuple(_POLICIES)


def get_policy(mode: str | Policy = "off") -> Policy:
    """The policy of a CIANNA ``mixed_precision`` string ("off", "FP16C_FP32A", ...)."""
    if isinstance(mode, Policy):
        return mode
    if not isinstance(mode, str):
        raise TypeError(f"mixed_precision: expected a str, received {type(mode).__name__}")
    name = _ALIASES.get(mode, mode)
    if name not in _POLICIES:
        raise ValueError(f"mixed_precision: unknown mode {mode!r}; expected one of {MODES}")
    return _POLICIES[name]
