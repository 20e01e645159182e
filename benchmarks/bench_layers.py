"""CIANNA's SDC1 backbone layer by layer, cianna_jax against PyTorch (each layer alone).

For each convolution of the backbone (``bench_sdc1.BACKBONE`` and the head): our layer
forward with the weights laid out for inference (``cj.inference_params``), or its training
step (``Conv.apply`` with CIANNA's weight rows, forward and both gradients), against the
same ``Conv2d`` + ``LeakyReLU(0.05)`` in PyTorch (2 threads), medians of alternated
repetitions.  Layers alone are slower than inside the network (fresh buffers, cold caches),
PyTorch's far more than ours (256x256 training, 2026-12-04: PyTorch's layers sum to 2,970 ms
against a 1,540 ms network step; its first layer takes 625 ms here, 216-227 ms timed alone in
a fresh process; ours sum to 1,964 ms against 1,740), so the rows are not additive and the
torch/ours column is no speed ratio: use ``bench_sdc1.py`` for that.  The rows show where our
own time goes.

    python benchmarks/bench_layers.py [--size 256] [--train] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(1, os.path.dirname(_HERE))  # the source tree, when not installed

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from bench_sdc1 import THREADS, sdc1_network, torch_model  # noqa: E402

import cianna_jax as cj  # noqa: E402
import cianna_jax.xla_cpu  # noqa: E402
from cianna_jax.layers.common import Ctx  # noqa: E402


def _ours(layer, params, laid, x, train: bool):
    """A zero-argument closure running the layer's compiled program once."""
    if train:
        key = jax.random.key(0)
        fn = jax.jit(jax.grad(lambda p, x: jnp.sum(
            layer.apply(p, x, Ctx(train=True), key) ** 2), (0, 1)))
        p = params
    else:
        fn = jax.jit(lambda p, x: layer.apply(p, x, Ctx()))
        p = laid
    jax.block_until_ready(fn(p, x))
    return lambda: jax.block_until_ready(fn(p, x))


def _theirs(conv, x_shape, train: bool):
    import torch

    act = torch.nn.LeakyReLU(0.05)
    x = torch.randn(*x_shape)

    def step():
        if train:
            xr = x.detach().requires_grad_(True)
            (act(conv(xr)) ** 2).sum().backward()
        else:
            with torch.inference_mode():
                act(conv(x))

    step()
    return step


def run(size: int = 256, batch: int = 8, train: bool = False, repeats: int = 7) -> list[dict]:
    """One row per convolution: name, our and PyTorch's median milliseconds."""
    import torch

    torch.set_num_threads(THREADS)
    net = sdc1_network(size)
    params = cj.init_params(jax.random.key(0), net)
    laid = cj.inference_params(net, params)
    convs = [m for m in torch_model(size) if isinstance(m, torch.nn.Conv2d)]
    rows, runs, j = [], [], 0
    for i, (layer, (sin, _)) in enumerate(zip(net.layers, net.shapes)):
        if layer.kind != "conv":
            continue
        conv = convs[j]
        j += 1
        x = jnp.asarray(np.random.default_rng(i).normal(size=(batch, sin.h, sin.w, sin.c)),
                        jnp.float32)
        fw, fh = layer.f_size[:2]
        path = "winograd" if "winograd" in laid[i] else ""
        rows.append(dict(name=f"{fw}x{fh}s{layer.stride[0]} {sin.c}->{layer.nb_filters} "
                              f"{sin.h}x{sin.w}", path=path, ours=[], torch=[]))
        runs.append((_ours(layer, params[i], laid[i], x, train),
                     _theirs(conv, (batch, sin.c, sin.h, sin.w), train)))
    for _ in range(repeats):
        for row, (ours, theirs) in zip(rows, runs):
            for key, fn in (("ours", ours), ("torch", theirs)):
                t0 = time.perf_counter()
                fn()
                row[key].append(time.perf_counter() - t0)
    for row in rows:
        row["ours"] = float(np.median(row["ours"])) * 1e3
        row["torch"] = float(np.median(row["torch"])) * 1e3
    return rows


def format_table(rows: list[dict], size: int, batch: int, train: bool) -> str:
    head = f"{'layer':<28}{'path':>9}{'ours ms':>10}{'torch ms':>10}{'torch/ours':>12}"
    lines = [f"SDC1 backbone at {size}x{size}, batch {batch}, "
             f"{'training step' if train else 'inference forward'}, each layer alone",
             head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['name']:<28}{r['path']:>9}{r['ours']:>10.1f}{r['torch']:>10.1f}"
                     f"{r['torch'] / r['ours']:>12.2f}")
    lines.append(f"{'sum':<37}{sum(r['ours'] for r in rows):>10.1f}"
                 f"{sum(r['torch'] for r in rows):>10.1f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    cianna_jax.xla_cpu.tune()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--train", action="store_true", help="training steps, not inference")
    parser.add_argument("--repeats", type=int, default=7)
    a = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("bench_layers.py compares against PyTorch: pip install torch")
    print(format_table(run(a.size, a.batch, a.train, a.repeats), a.size, a.batch, a.train))


if __name__ == "__main__":
    main()
