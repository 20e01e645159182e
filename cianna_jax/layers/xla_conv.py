"""XLA's convolution, channel-last, whose gradients on CPU are convolutions in XLA's own
layouts (:func:`xla_conv`): the form every conv layer falls back on, and the one the
CPU forms of :mod:`.conv` and :mod:`.grouped` build on."""

from __future__ import annotations

from functools import partial

import jax
from jax import lax

from ..precision import FP32, Policy
from .common import conv_dimension_numbers, input_grad_conv, weight_grad_conv

__all__ = ["lax_conv", "xla_conv"]


def lax_conv(x: jax.Array, k: jax.Array, strides, padding, dil, policy: Policy = FP32,
             groups: int = 1) -> jax.Array:
    """``lax.conv_general_dilated``, channel-last, with ``policy``'s precision."""
    return lax.conv_general_dilated(
        x, k, window_strides=strides, padding=padding, lhs_dilation=dil,
        dimension_numbers=conv_dimension_numbers(x.ndim - 2), precision=policy.precision,
        preferred_element_type=policy.accum_dtype, feature_group_count=groups)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def xla_conv(x: jax.Array, k: jax.Array, strides, padding, dil, policy: Policy = FP32,
             groups: int = 1) -> jax.Array:
    """XLA's convolution (:func:`lax_conv`; ``padding`` as pairs), whose gradients on
    CPU are convolutions in XLA's own layouts (:func:`.common.input_grad_conv`,
    :func:`.common.weight_grad_conv`) wherever it has no groups and no input dilation:
    autodiff's forms (the kernel's feature axes swapped, the batch as the feature) run
    on XLA's generic code inside loops (a ``lax.scan`` of SDC1 128 training steps:
    15.6 s a step against 0.46, benchmarks/README.md).  Elsewhere: autodiff's."""
    return lax_conv(x, k, strides, padding, dil, policy, groups)


def _xla_conv_fwd(x, k, strides, padding, dil, policy, groups):
    return xla_conv(x, k, strides, padding, dil, policy, groups), (x, k)


def _xla_conv_bwd(strides, padding, dil, policy, groups, res, g):
    x, k = res

    def autodiff(x, k, g):
        return jax.vjp(lambda x, k: lax_conv(x, k, strides, padding, dil, policy, groups),
                       x, k)[1](g)

    if groups != 1 or any(d != 1 for d in dil):
        return autodiff(x, k, g)

    def cpu(x, k, g):
        gx = input_grad_conv(g, k, x.shape[1:-1], strides, padding, policy)
        gk = weight_grad_conv(x, g, k.shape[:-2], strides, padding, policy)
        return gx.astype(x.dtype), gk.astype(k.dtype)

    return lax.platform_dependent(x, k, g, cpu=cpu, default=autodiff)


xla_conv.defvjp(_xla_conv_fwd, _xla_conv_bwd)
