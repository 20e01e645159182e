"""CIANNA's layer geometry as plain integer functions: the one place for these formulas.

Used by the layer specs (:mod:`cianna_jax.layers`) and by the save-file reader
(:mod:`cianna_jax.io.records`), which must know how many values a record holds before any
layer exists.  No imports: safe for every module to use.
"""

from __future__ import annotations

__all__ = ["conv_span", "conv_output_size", "pool_output_size", "nb_groups",
           "dense_weight_shape", "conv_weight_shape"]


def conv_span(size: int, pad: int, int_pad: int) -> int:
    """Length of one input axis after CIANNA's internal padding and zero padding."""
    return size + (size - 1) * int_pad + 2 * pad


def conv_output_size(size: int, f: int, stride: int, pad: int, int_pad: int) -> int:
    """Conv output size along one axis (C integer division, as CIANNA computes it).

    The output is empty when :func:`conv_span` is smaller than the filter ``f``.
    """
    return int((conv_span(size, pad, int_pad) - f) / stride) + 1


def pool_output_size(size: int, p: int, stride: int, pad: int) -> int:
    """Pool output size along one axis (C integer division)."""
    return int((size + 2 * pad - p) / stride) + 1


def nb_groups(channels: int, group_size: int) -> int:
    """Group-norm groups: ``ceil(channels / group_size)``."""
    return -(-channels // group_size)


def dense_weight_shape(n_in: int, nb_neurons: int) -> tuple[int, int]:
    """Dense weights ``(n_in + 1, nb_neurons + 1)``: bias-slot row and propagation column."""
    return (n_in + 1, nb_neurons + 1)


def conv_weight_shape(nb_filters: int, f_size, channels: int) -> tuple[int, int]:
    """Conv weights ``(F, f_w*f_h*f_d*C + 1)``: one row per filter, bias weight last."""
    return (nb_filters, f_size[0] * f_size[1] * f_size[2] * channels + 1)
