"""A dense layer that reads a map (conv -> dense) on CPU, inference: the weights as CIANNA
stores them (rows in channel-major order, reordered to the map's channel-last order inside
every compiled call) against the same weights laid out once by ``cj.inference_params``
(what ``cj.predict``, ``cnn.forward`` and ``cianna-jax predict`` use), milliseconds per
batch, medians of alternated calls, with the nominal rate in GFLOP/s
(``2 * B * H * W * C * N``).

    python benchmarks/bench_dense_map.py [--repeats 9]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(1, os.path.dirname(_HERE))  # the source tree, when not installed

import jax  # noqa: E402
import numpy as np  # noqa: E402

import cianna_jax as cj  # noqa: E402
import cianna_jax.xla_cpu  # noqa: E402
from cianna_jax import nn  # noqa: E402

#: (batch, map side, channels, neurons): CIANNA's MNIST network's first dense layer, a
#: CIFAR-like head, a VGG-like head
LAYERS = [(64, 7, 16, 256), (32, 4, 256, 512), (8, 7, 512, 1024)]


def run(layers=LAYERS, repeats: int = 9) -> list[dict]:
    """One row per layer: ``ms_rows`` (CIANNA's rows), ``ms_laid`` (laid out),
    ``speedup``, ``gflops_laid`` and the largest difference between the two outputs."""
    rows = []
    for b, side, c, n in layers:
        net = nn.network([side, side], c, [nn.dense(n, activation="LIN")], bias=0.5)
        params = cj.init_params(jax.random.key(0), net)
        laid = cj.inference_params(net, params)
        x = np.asarray(jax.random.normal(jax.random.key(1), (b, side, side, c)), np.float32)
        outs = {name: np.asarray(cj.apply(net, p, x)) for name, p in
                (("rows", params), ("laid", laid))}  # compiled here, outside the timing
        times = {"rows": [], "laid": []}
        for _ in range(repeats):
            for name, p in (("rows", params), ("laid", laid)):
                t0 = time.perf_counter()
                cj.apply(net, p, x).block_until_ready()
                times[name].append(time.perf_counter() - t0)
        ms = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        rows.append(dict(batch=b, shape=f"{side}x{side}x{c}->{n}", ms_rows=ms["rows"],
                         ms_laid=ms["laid"], speedup=ms["rows"] / ms["laid"],
                         gflops_laid=2 * b * side * side * c * n / ms["laid"] / 1e6,
                         max_diff=float(np.abs(outs["rows"] - outs["laid"]).max())))
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'batch':>5} {'layer':>18} {'rows ms':>9} {'laid ms':>9} {'x':>6} "
             f"{'GFLOP/s':>8} {'max diff':>9}"]
    lines += [f"{r['batch']:>5} {r['shape']:>18} {r['ms_rows']:>9.3f} {r['ms_laid']:>9.3f} "
              f"{r['speedup']:>6.2f} {r['gflops_laid']:>8.1f} {r['max_diff']:>9.2e}"
              for r in rows]
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args(argv)
    cianna_jax.xla_cpu.tune()
    print(format_table(run(repeats=a.repeats)))


if __name__ == "__main__":
    main()
