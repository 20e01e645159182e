"""Matrix products in the operand layouts XLA's CPU runs fast.

With its YNN fusions off (the project's CPU setting, :func:`cianna_jax.xla_cpu.tune`),
XLA's CPU matrix product is fast when both operands and the result are row-major in the
canonical ``(M, K) @ (K, N)`` form.  The input gradient of a layer that is a product,
``g @ k^T``, reads the kernel transposed, and once the kernel outgrows the caches that
runs on much slower code: ``(144, 1024) @ (4608, 1024)^T`` (a 3x3 512 -> 1024 layer's
small-map gradient on 3x3 maps, batch 16) 40 ms, against 7.4 ms as ``(k @ g^T)^T`` with
the two small arrays transposed.  Training steps of single layers (batch 32, ms): a 3x3
512 -> 512 convolution on 2x2 maps 24.3 -> 14.7, a 2048 -> 1024 dense layer 8.2 -> 5.3;
SDC1's 1x1 1024 -> 2048 layer (8x8 maps, batch 8) 49.2 -> 45.3, which inside the
network's step gains nothing measurable (XLA's copy of the transposed gradient there
takes what the product saves; benchmarks/README.md).  XLA folds a plain transpose back
into the product, so the transposed operand and the product are pinned row-major by
layout constraints.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental.layout import Layout, with_layout_constraint

__all__ = ["times_transposed", "transposed_form_pays", "product", "TRANSPOSED_MIN_VALUES"]

#: a kernel of at least this many values (2 MiB in float32) has ``g @ k^T`` computed as
#: ``(k @ g^T)^T`` on CPU (:func:`transposed_form_pays`)
TRANSPOSED_MIN_VALUES = 1 << 19


def transposed_form_pays(m: int, n: int, k: int) -> bool:
    """Whether ``g (m, n) @ kernel (k, n)^T`` runs faster on CPU as ``(kernel @ g^T)^T``:
    the kernel holds at least :data:`TRANSPOSED_MIN_VALUES` values (below that the
    transposed read stays in the caches) and at least half as many as the two copies
    the form adds, ``g^T`` and the result's transpose (``m (n + k)`` values).  Measured
    with ``tune()``, medians of 21 alternated calls (ms, plain / this form): m, k, n =
    512, 768, 1024: 8.1 / 6.7; 1024, 1024, 2048: 32.9 / 28.3; 2048, 1024, 2048: 52.2 /
    56.3 (too many rows); 256, 512, 768: 1.8 / 1.9 (a small kernel); 8192, 192, 128: 5.3
    / 12.1."""
    return k * n >= TRANSPOSED_MIN_VALUES and 2 * k * n >= m * (n + k)


def times_transposed(g: jax.Array, k: jax.Array, precision=None,
                     preferred_element_type=None) -> jax.Array:
    """``g (M, N) @ k (K, N)^T`` -> ``(M, K)``: the input gradient of a product with the
    kernel ``k``.  On CPU, where :func:`transposed_form_pays`, computed as
    ``(k @ g^T)^T`` with ``g^T`` and the product laid out row-major; elsewhere (and on
    other backends) the plain product.  The same sums (float32 rounding aside)."""
    m, n = g.shape
    dot = partial(lax.dot_general, precision=precision,
                  preferred_element_type=preferred_element_type)

    def plain(g):
        return dot(g, k, (((1,), (1,)), ((), ())))

    if not transposed_form_pays(m, n, k.shape[0]):
        return plain(g)

    def cpu(g):
        gt = with_layout_constraint(g.T, Layout((0, 1)))
        return with_layout_constraint(dot(k, gt, (((1,), (0,)), ((), ()))), Layout((0, 1))).T

    return lax.platform_dependent(g, cpu=cpu, default=plain)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def product(a: jax.Array, k: jax.Array, precision=None,
            preferred_element_type=None) -> jax.Array:
    """``a (..., K) @ k (K, N)`` -> ``(..., N)`` (``jnp.dot``), whose input gradient is
    :func:`times_transposed` (autodiff's reads the kernel transposed) and weight gradient
    autodiff's, ``(g^T @ a)^T`` over the flattened leading axes."""
    return jnp.dot(a, k, precision=precision, preferred_element_type=preferred_element_type)


def _product_fwd(a, k, precision, preferred_element_type):
    return product(a, k, precision, preferred_element_type), (a, k)


def _product_bwd(precision, preferred_element_type, res, g):
    a, k = res
    a2, g2 = a.reshape(-1, a.shape[-1]), g.reshape(-1, g.shape[-1])
    ga = times_transposed(g2, k, precision, preferred_element_type)
    if a2.shape[0] == 1:  # one row: an outer product, written in the kernel's layout
        acc = preferred_element_type or jnp.result_type(a2, g2)
        gk = a2.T.astype(acc) * g2.astype(acc)
    else:  # autodiff's weight gradient as it writes it: (g^T a)^T
        gk = lax.dot_general(g2, a2, (((0,), (0,)), ((), ())), precision=precision,
                             preferred_element_type=preferred_element_type).T
    return ga.reshape(a.shape).astype(a.dtype), gk.astype(k.dtype)


product.defvjp(_product_fwd, _product_bwd)
