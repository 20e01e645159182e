"""Winograd convolutions against XLA's, one layer at a time (2D 3x3 and 3D 3x3x3).

For each layer shape: the inference forward (filters laid out once by
``Conv.inference_params``: Winograd-transformed against XLA's channel-last kernel) and the
layer's training step (``Conv.apply`` forward and gradients with CIANNA's weight rows and
backward pass, the path a training step takes), with Winograd on and off
(``cianna_jax.layers.conv_forms.WINOGRAD``), timed in alternated rounds, medians.  The default
shapes are the 3x3 layers of CIANNA's SDC1 backbone at 128x128 input (batch 8) and a few
3D layers.

``--mixed-precision MODE`` times both paths under one of CIANNA's modes (e.g.
``TF32C_FP32A``: Winograd F(4x4, 3x3) on maps of 16x16 or more, ``winograd.tile_size``).

    python benchmarks/bench_winograd.py [--quick] [--rounds 3] [--mixed-precision MODE]
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
from cianna_jax.activations import parse_activation  # noqa: E402
from cianna_jax.layers import conv as conv_mod  # noqa: E402
from cianna_jax.layers import conv_forms  # noqa: E402
from cianna_jax.layers.common import Ctx, Shape  # noqa: E402
from cianna_jax.precision import FP32, Policy, get_policy  # noqa: E402

#: (batch, spatial, channels, filters): the SDC1 backbone's 3x3 layers at 128x128, 3D layers
SHAPES = [(8, (32, 32), 128, 192), (8, (16, 16), 192, 384), (8, (16, 16), 256, 384),
          (8, (8, 8), 768, 1024), (2, (16, 16, 16), 32, 64), (2, (16, 16, 16), 128, 128)]
QUICK = [(2, (8, 8), 128, 128), (1, (8, 8, 8), 8, 16)]


def _programs(batch, sp, c, f, flag, tag, policy: Policy = FP32):
    """(inference forward, training step, arguments, the Winograd filters' positions or 0)
    with Winograd ``flag`` under ``policy``."""
    nd = len(sp)
    conv_forms.WINOGRAD = flag  # read when tracing and laying out: compile now
    layer = conv_mod.Conv((3,) * 3 if nd == 3 else (3, 3, 1), f, parse_activation("RELU"),
                          0.1 + tag * 1e-6, padding=(1,) * 3 if nd == 3 else (1, 1, 0))
    shape = Shape(*reversed(sp), c) if nd == 3 else Shape(sp[1], sp[0], 1, c)
    params, _ = layer.init(jax.random.key(0), shape)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(batch, *sp, c)),
                    policy.compute_dtype)
    laid = layer.inference_params(params, shape, nd, policy)
    fwd = jax.jit(lambda p, x: layer.apply(p, x, Ctx(nd=nd, policy=policy)))

    def loss(p, x):
        z = layer.apply(p, x, Ctx(train=True, nd=nd, policy=policy))
        return jnp.sum(z.astype(jnp.float32) ** 2)

    train = jax.jit(jax.grad(loss, (0, 1)))
    jax.block_until_ready(fwd(laid, x))
    jax.block_until_ready(train(params, x))
    return fwd, train, laid, params, x, laid["winograd"].shape[0] if "winograd" in laid else 0


def run(shapes=SHAPES, rounds: int = 3, mode: str = "off") -> list[dict]:
    """Rows of timings per layer shape, both paths under CIANNA's ``mode``."""
    rows, old, policy = [], conv_forms.WINOGRAD, get_policy(mode)
    try:
        for batch, sp, c, f in shapes:
            progs = {flag: _programs(batch, sp, c, f, flag, i, policy)
                     for i, flag in enumerate((True, False))}
            times: dict = {}
            for _ in range(rounds):
                for flag, (fwd, train, laid, params, x, _) in progs.items():
                    for name, fn, p in (("fwd", fwd, laid), ("train", train, params)):
                        t0 = time.perf_counter()
                        jax.block_until_ready(fn(p, x))
                        times.setdefault((flag, name), []).append(time.perf_counter() - t0)
            rows.append(dict(batch=batch, sp=sp, c=c, f=f, winograd=progs[True][-1] > 0,
                             positions=progs[True][-1],
                             **{f"{'wino' if flag else 'xla'}_{name}": float(np.median(v))
                                for (flag, name), v in times.items()}))
    finally:
        conv_forms.WINOGRAD = old
    return rows


def format_table(rows: list[dict]) -> str:
    head = (f"{'layer':<28}{'path':>9}{'fwd ms':>9}{'XLA':>8}{'x':>6}"
            f"{'train ms':>10}{'XLA':>8}{'x':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        name = f"b{r['batch']} {'x'.join(map(str, r['sp']))} {r['c']}->{r['f']}"
        lines.append(f"{name:<28}{'winograd' if r['winograd'] else 'XLA':>9}"
                     f"{r['wino_fwd'] * 1e3:>9.1f}{r['xla_fwd'] * 1e3:>8.1f}"
                     f"{r['xla_fwd'] / r['wino_fwd']:>6.2f}{r['wino_train'] * 1e3:>10.1f}"
                     f"{r['xla_train'] * 1e3:>8.1f}{r['xla_train'] / r['wino_train']:>6.2f}")
    tiles = sorted({r["positions"] for r in rows if r["winograd"]})
    lines.append("x: XLA's time over ours (higher is faster); 'path': what the inference "
                 "layout chose with Winograd on (filter positions: "
                 f"{', '.join(str(t) for t in tiles) or 'none'}; 16 F(2x2, 3x3), 36 "
                 "F(4x4, 3x3), 64 F(2x2x2, 3x3x3))")
    return "\n".join(lines)


def main(argv=None) -> None:
    cianna_jax.xla_cpu.tune()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two tiny layers (smoke test)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mixed-precision", default="off", metavar="MODE",
                        help="CIANNA mixed_precision mode of both paths (default off: float32)")
    a = parser.parse_args(argv)
    get_policy(a.mixed_precision)  # an unknown mode fails before any timing
    print(f"jax {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
          f"mode {a.mixed_precision}")
    print(format_table(run(QUICK if a.quick else SHAPES, 1 if a.quick else a.rounds,
                           a.mixed_precision)))


if __name__ == "__main__":
    main()
