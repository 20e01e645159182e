"""Grouped and depth-wise convolutions (CIANNA V-1.1's ``nb_groups``) on CPU: our forms
(``layers/grouped.py``: one XLA convolution per group, depth-wise as per-tap products)
against XLA's own grouped convolution differentiated by autodiff, and PyTorch's
``Conv2d(groups=)`` (2 threads), forward and training (forward and both gradients of
``sum(conv(x)**2)``), milliseconds, medians of alternated repetitions, with each row's
rate in GFLOP/s (nominal: ``2 * B * out_pixels * taps * C/G * F`` a forward, 3x that a
training step) beside the same shape's ungrouped convolution's.

    python benchmarks/bench_grouped.py [--repeats 7] [--batch 8]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(1, os.path.dirname(_HERE))  # the source tree, when not installed

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import cianna_jax.xla_cpu  # noqa: E402
from cianna_jax.layers.conv import conv_nd  # noqa: E402
from cianna_jax.layers.xla_conv import lax_conv  # noqa: E402

#: (name, map size, channels in, filters, groups): ResNeXt-like, depth-wise (ConvNeXt-like),
#: and the ungrouped reference of the first shape
LAYERS = [("3x3 64->64, 4 groups", 32, 64, 64, 4),
          ("3x3 128->128, 32 groups", 16, 128, 128, 32),
          ("3x3 64, depth-wise", 32, 64, 64, 64),
          ("3x3 64->64, ungrouped", 32, 64, 64, 1)]
THREADS = 2


def _median_ms(fns: dict, repeats: int) -> dict:
    """Each zero-argument closure timed ``repeats`` times, alternated; median ms."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # compile / warm up
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


def _jax_closures(x, k, groups: int) -> dict:
    geo = ((1, 1), (1, 1), (1, 1))

    def ours(x, k):
        return conv_nd(x, k, *geo, groups=groups)

    def xla(x, k):
        return lax_conv(x, k, (1, 1), ((1, 1), (1, 1)), (1, 1), groups=groups)

    out = {}
    for name, f in (("ours", ours), ("xla", xla)):
        fwd = jax.jit(f)
        train = jax.jit(jax.grad(lambda x, k, f=f: jnp.sum(f(x, k) ** 2), (0, 1)))
        out[name + " fwd"] = lambda fwd=fwd: jax.block_until_ready(fwd(x, k))
        out[name + " train"] = lambda train=train: jax.block_until_ready(train(x, k))
    return out


def _torch_closures(batch: int, size: int, c_in: int, n_f: int, groups: int) -> dict:
    try:
        import torch
    except ImportError:
        return {}
    torch.set_num_threads(THREADS)
    conv = torch.nn.Conv2d(c_in, n_f, 3, padding=1, groups=groups, bias=False)
    x = torch.randn(batch, c_in, size, size)

    def fwd():
        with torch.no_grad():
            conv(x)

    def train():
        xr = x.detach().requires_grad_(True)
        conv.zero_grad(set_to_none=True)
        (conv(xr) ** 2).sum().backward()

    return {"torch fwd": fwd, "torch train": train}


def run(batch: int = 8, repeats: int = 7, layers=LAYERS) -> list[dict]:
    """One row per layer: ms of each side and kind, and the nominal GFLOP per forward."""
    rows = []
    rng = np.random.default_rng(0)
    for name, size, c_in, n_f, groups in layers:
        x = jnp.asarray(rng.normal(size=(batch, size, size, c_in)), jnp.float32)
        k = jnp.asarray(rng.normal(size=(3, 3, c_in // groups, n_f)) * 0.05, jnp.float32)
        fns = _jax_closures(x, k, groups) | _torch_closures(batch, size, c_in, n_f, groups)
        ms = _median_ms(fns, repeats)
        gflop = 2 * batch * size * size * 9 * (c_in // groups) * n_f / 1e9
        rows.append(dict(name=name, groups=groups, gflop=gflop, ms=ms))
    return rows


def format_table(rows: list[dict]) -> str:
    kinds = ["ours", "xla", "torch"]
    head = (f"{'layer (batch, CPU)':26s}" + "".join(f"{k + ' ' + p:>12s}" for p in ("fwd", "train")
                                                for k in kinds)
            + f"{'ours GFLOP/s fwd/train':>26s}")
    lines = ["milliseconds (median); '-' where a side is missing", head]
    for r in rows:
        cells = "".join(f"{r['ms'][k + ' ' + p]:12.2f}" if k + " " + p in r["ms"] else f"{'-':>12s}"
                        for p in ("fwd", "train") for k in kinds)
        rate_f = r["gflop"] / r["ms"]["ours fwd"] * 1e3
        rate_t = 3 * r["gflop"] / r["ms"]["ours train"] * 1e3
        lines.append(f"{r['name']:26s}{cells}{rate_f:15.1f} / {rate_t:.1f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    cianna_jax.xla_cpu.tune()  # the project's CPU setting, before any JAX computation
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}")
    print(format_table(run(args.batch, args.repeats)))


if __name__ == "__main__":
    main()
