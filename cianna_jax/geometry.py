"""CIANNA's layer geometry as plain integer functions: the one place for these formulas.

Used by the layer specs (:mod:`cianna_jax.layers`) and by the save-file shape rules
(:mod:`cianna_jax.io.record_shapes`), which must know how many values a record holds before
any layer exists.  No imports: safe for every module to use.
"""

from __future__ import annotations

__all__ = ["conv_span", "conv_output_size", "pool_output_size", "nb_groups",
           "dense_weight_shape", "conv_weight_shape", "check_conv_groups", "merge_index",
           "merge_output_shape", "MERGE_TYPES"]

#: CIANNA V-1.1 merge types.
MERGE_TYPES = ("ADD", "CONCAT")


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


def conv_weight_shape(nb_filters: int, f_size, channels: int,
                      nb_groups: int = 1) -> tuple[int, int]:
    """Conv weights ``(F, f_w*f_h*f_d*C/G + 1)``: one row per filter, bias weight last
    (a grouped conv's filter reads the ``C/G`` channels of its group)."""
    return (nb_filters, f_size[0] * f_size[1] * f_size[2] * (channels // nb_groups) + 1)


def check_conv_groups(nb_groups: int, channels: int, nb_filters: int) -> None:
    """ValueError unless ``nb_groups`` (>= 1) divides the input channels and the filters."""
    if nb_groups < 1:
        raise ValueError(f"nb_groups: expected an int >= 1, received {nb_groups}")
    if channels % nb_groups or nb_filters % nb_groups:
        raise ValueError(f"nb_groups: must divide the input channels ({channels}) and the "
                         f"number of filters ({nb_filters}); received nb_groups={nb_groups}")


def merge_index(prev_id: int, index: int) -> int:
    """The layer a merge at ``index`` reads for id ``prev_id`` (CIANNA V-1.1): negative ids
    count back from the merge (-1 = the layer just before it), others are absolute."""
    return index + prev_id if prev_id < 0 else prev_id


def merge_output_shape(merge_type: str, a, b) -> tuple[int, int, int, int]:
    """(W, H, D, C) of a merge of maps ``a`` and ``b`` (each (W, H, D, C)): "ADD" needs
    equal shapes, "CONCAT" equal spatial sizes and stacks the channels of ``a`` then ``b``.
    ValueError otherwise."""
    a, b = tuple(int(v) for v in a[:4]), tuple(int(v) for v in b[:4])
    if merge_type == "ADD":
        if a != b:
            raise ValueError(f"merge ADD needs two inputs of the same shape, received "
                             f"{_x(a)} and {_x(b)}")
        return a
    if merge_type == "CONCAT":
        if a[:3] != b[:3]:
            raise ValueError(f"merge CONCAT needs two inputs of the same spatial size, "
                             f"received {_x(a)} and {_x(b)}")
        return a[:3] + (a[3] + b[3],)
    raise ValueError(f"merge_type: expected 'ADD' or 'CONCAT', received {merge_type!r}")


def _x(shape) -> str:
    return "x".join(str(v) for v in shape)
