"""The small-map check: a 3x3 convolution's rate on maps of 8x8 down to 1x1.

Batch 16, 512 -> 1024 channels, padding 1, the layer's own convolution (``conv_nd``:
CIANNA's custom backward) forward and forward + gradient, with the CPU formulations
(im2col + one matmul when no spatial dimension exceeds the filter,
``cianna_jax.layers.conv_forms.small_map``; Winograd where ``conv_forms.winograd_form`` takes it)
and without them ("XLA conv").  Rates are nominal GFLOP/s (2 x multiply-adds of the
3x3 window, padding included) and the ratio to the 8x8 map's rate: the target is that
no map size runs below a third of it.  All (size, path) pairs are timed in alternated
rounds, medians.

    python benchmarks/bench_smallmap.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(_HERE))  # the source tree, when not installed

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import cianna_jax.xla_cpu  # noqa: E402
from cianna_jax.layers import conv as conv_mod  # noqa: E402
from cianna_jax.layers import conv_forms  # noqa: E402


def run(sizes=(8, 4, 3, 2, 1), batch=16, c_in=512, c_out=1024, repeats=3,
        compare=True, host_data=False) -> list[dict]:
    """Compile every (size, path) first, then time them in alternated rounds (load
    changes on a shared machine hit all alike); medians over the rounds.
    ``host_data``: draw the inputs with NumPy instead of ``jax.random`` (``--quick``:
    an eager ``jax.random.normal`` compiles a sampler per shape, seconds each on CPU)."""
    modes = (True, False) if compare else (True,)
    rows, fns = [], []
    rng = np.random.default_rng(0)
    for h in sizes:
        if host_data:
            x = jnp.asarray(rng.normal(size=(batch, h, h, c_in)).astype(np.float32))
            k = jnp.asarray(rng.normal(scale=0.01, size=(3, 3, c_in, c_out)).astype(np.float32))
        else:
            x = jax.random.normal(jax.random.key(0), (batch, h, h, c_in))
            k = jax.random.normal(jax.random.key(1), (3, 3, c_in, c_out)) * 0.01
        paths = ["wino" if conv_forms.winograd_form((h, h), k.shape, (1, 1), batch=batch,
                                                  training=training)
                 else "im2col" if conv_forms.small_map((h, h), (3, 3))
                 else "XLA+grads" if training and conv_forms.product_gradients(
                     (h, h), (3, 3), [(1, 1)] * 2, batch, c_out, channels=c_in)
                 else "XLA" for training in (False, True)]
        # the forward's path, and the training step's where its rule differs
        path = paths[0] if paths[0] == paths[1] else "/".join(paths)
        row = dict(size=h, flops=2.0 * batch * h * h * 9 * c_in * c_out, path=path)
        rows.append(row)
        for flag in modes:
            old = conv_forms.SMALL_MAP_IM2COL, conv_forms.WINOGRAD
            conv_forms.SMALL_MAP_IM2COL = conv_forms.WINOGRAD = flag  # read when tracing
            try:
                fwd = jax.jit(lambda x, k: conv_mod.conv_nd(x, k, (1, 1), (1, 1), (1, 1)))
                grad = jax.jit(jax.grad(
                    lambda x, k: jnp.sum(conv_mod.conv_nd(x, k, (1, 1), (1, 1), (1, 1)) ** 2),
                    argnums=(0, 1)))
                jax.block_until_ready(fwd(x, k))
                jax.block_until_ready(grad(x, k))
            finally:
                conv_forms.SMALL_MAP_IM2COL, conv_forms.WINOGRAD = old
            tag = "new" if flag else "xla"
            fns += [(row, tag + "_fwd", fwd, x, k), (row, tag + "_train", grad, x, k)]
    times: dict = {}
    for _ in range(repeats):
        for row, name, fn, x, k in fns:
            t0 = time.perf_counter()
            jax.block_until_ready(fn(x, k))
            times.setdefault((id(row), name), []).append(time.perf_counter() - t0)
    for row, name, *_ in fns:
        row[name] = float(np.median(times[(id(row), name)]))
    return rows


def format_table(rows: list[dict], batch=16, c_in=512, c_out=1024) -> str:
    ref = rows[0]
    compare = "xla_fwd" in ref
    head = (f"{'map':>5}{'path':>14}{'fwd ms':>9}{'GFLOP/s':>9}{'x 1st':>7}"
            f"{'train ms':>10}{'GFLOP/s':>9}{'x 1st':>7}")
    if compare:
        head += f"{'XLA conv fwd/train ms':>24}{'x 1st':>12}"
    lines = [f"3x3 conv, batch {batch}, {c_in} -> {c_out} channels, padding 1 (nominal FLOPs); "
             f"'x 1st': rate relative to the {ref['size']}x{ref['size']} map; path: XLA's "
             f"conv, Winograd or im2col (forward/training where they differ; XLA+grads: "
             f"XLA's forward, the product's gradients)", head,
             "-" * len(head)]
    r_f = ref["flops"] / ref["new_fwd"]
    r_t = 3 * ref["flops"] / ref["new_train"]
    for r in rows:
        f, t = r["flops"] / r["new_fwd"], 3 * r["flops"] / r["new_train"]
        line = (f"{r['size']}x{r['size']:<3}{r['path']:>14}"
                f"{r['new_fwd'] * 1e3:>9.1f}{f / 1e9:>9.1f}{f / r_f:>7.2f}"
                f"{r['new_train'] * 1e3:>10.1f}{t / 1e9:>9.1f}{t / r_t:>7.2f}")
        if compare:
            xf, xt = r["flops"] / r["xla_fwd"], 3 * r["flops"] / r["xla_train"]
            xr_f = ref["flops"] / ref["xla_fwd"]
            xr_t = 3 * ref["flops"] / ref["xla_train"]
            line += (f"{r['xla_fwd'] * 1e3:>12.1f} /{r['xla_train'] * 1e3:>9.1f}"
                     f"{xf / xr_f:>6.2f} /{xt / xr_t:>5.2f}")
        lines.append(line)
    return "\n".join(lines)


def main(argv=None) -> None:
    cianna_jax.xla_cpu.tune()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128 -> 256 channels, 3 sizes")
    a = parser.parse_args(argv)
    if a.quick:
        print(format_table(run((4, 2, 1), 16, 128, 256, repeats=1, host_data=True), 16,
                           128, 256))
    else:
        print(format_table(run()))


if __name__ == "__main__":
    main()
