"""YOLO tensor layouts: the core's channel-last layout and CIANNA's channel-major one.

The functional core works channel-last.  A YOLO output is
``(N, [G2,] G1, G0, B, K)``: the grid axes in (depth, height, width) order (depth only
for 3D networks), then the ``B`` boxes and the ``K = 8 + nb_class + nb_param`` values of
each box.  Flattening the grid gives ``(N, G, B, K)`` with no data movement, which is
what the loss and the Pallas kernel iterate over.

CIANNA stores the same numbers channel-major, ``[N, F, G2, G1, G0]`` with ``F = B*K``
(box-major filters), and writes them as flat rows ``(N, F*G2*G1*G0)``.  These
functions convert between the two at the edges (files, golden data, CIANNA rows).
They accept numpy or JAX arrays and return the same kind.
"""

from __future__ import annotations

__all__ = ["from_cianna", "to_cianna", "from_cianna_rows", "to_cianna_rows", "cells",
           "spatial_rank"]


def _xp(a):
    import numpy as np

    if isinstance(a, np.ndarray):
        return np
    import jax.numpy as jnp

    return jnp


def spatial_rank(grid: tuple[int, int, int]) -> int:
    """Default number of grid axes of the channel-last layout: 3 when G2 > 1, else 2."""
    return 3 if int(grid[2]) > 1 else 2


def from_cianna(raw, nb_box: int, nd: int | None = None):
    """``[N, F, G2, G1, G0]`` -> ``(N, [G2,] G1, G0, B, K)``.

    ``nd`` (2 or 3) is the number of grid axes kept; 2 needs ``G2 == 1``.  By default
    it is 3 when ``G2 > 1``, else 2.
    """
    if raw.ndim != 5:
        raise ValueError(f"raw: expected CIANNA's [N, F, G2, G1, G0], received shape "
                         f"{tuple(raw.shape)}")
    n, f, g2, g1, g0 = raw.shape
    if f % nb_box:
        raise ValueError(f"raw: {f} filters are not a multiple of nb_box={nb_box}")
    nd = spatial_rank((g0, g1, g2)) if nd is None else nd
    if nd not in (2, 3) or (nd == 2 and g2 != 1):
        raise ValueError(f"nd: expected 3, or 2 with G2 == 1; received nd={nd}, G2={g2}")
    xp = _xp(raw)
    y = xp.transpose(raw.reshape(n, nb_box, f // nb_box, g2, g1, g0), (0, 3, 4, 5, 1, 2))
    return y if nd == 3 else y[:, 0]


def to_cianna(y):
    """``(N, [G2,] G1, G0, B, K)`` -> ``[N, F, G2, G1, G0]`` (always five axes)."""
    if y.ndim == 5:
        y = y[:, None]
    if y.ndim != 6:
        raise ValueError(f"y: expected (N, [G2,] G1, G0, B, K), received shape {tuple(y.shape)}")
    n, g2, g1, g0, b, k = y.shape
    xp = _xp(y)
    return xp.transpose(y, (0, 4, 5, 1, 2, 3)).reshape(n, b * k, g2, g1, g0)


def from_cianna_rows(rows, grid: tuple[int, int, int], nb_box: int, nd: int | None = None):
    """CIANNA rows ``(N, F*G2*G1*G0)`` with ``grid`` (G0, G1, G2) -> channel-last."""
    g0, g1, g2 = (int(v) for v in grid)
    n = rows.shape[0]
    return from_cianna(rows.reshape(n, -1, g2, g1, g0), nb_box, nd)


def to_cianna_rows(y):
    """Channel-last YOLO output -> CIANNA's flat rows ``(N, F*G2*G1*G0)``."""
    raw = to_cianna(y)
    return raw.reshape(raw.shape[0], -1)


def cells(y):
    """``(N, [G2,] G1, G0, B, K)`` -> ``(N, G, B, K)`` with ``G`` cells in (d, h, w) order."""
    return y.reshape((y.shape[0], -1) + tuple(y.shape[-2:]))
