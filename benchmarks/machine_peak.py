"""The machine's single-precision matrix-product rate, XLA and PyTorch: the yardstick of
the SDC1 table's GFLOP/s column.

The machines this project is measured on differ from session to session (the same
"2-core" kind gave XLA 194-198 GFLOP/s and PyTorch 136-154 on a 2048x2048 product on
2026-12-02, fastest calls, where an earlier one was noted at about 310), and a network's
ratio against PyTorch is bounded by
how close PyTorch already runs to this rate: printing it with each run makes the ratios
of different machines comparable.  The line also names the processor and its widest
vector unit (:func:`cpu_info`): the same "2-core AMD EPYC" kind came with AVX-512 in
every earlier session whose notes name it (XLA mostly 190-263 GFLOP/s) and with AVX2 only
in 2026-12-04's twenty-fourth (XLA 86-111 GFLOP/s; benchmarks/README.md).

    python benchmarks/machine_peak.py [--n 2048] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(1, os.path.dirname(_HERE))  # the source tree, when not installed

import numpy as np  # noqa: E402

from cianna_jax.host_cpu import cpu_info  # noqa: E402  (the processor's model and unit)

THREADS = 2


def best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (compilation, first-touch of the output)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(n: int = 2048, repeats: int = 7) -> dict:
    """GFLOP/s of an ``(n, n) @ (n, n)`` float32 product, fastest of ``repeats`` calls
    (the machine's rate, not its noise): ``{"n", "xla", "torch"}``, ``torch`` None
    without PyTorch (run with :data:`THREADS` threads, as the other benchmarks)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    flop = 2.0 * n ** 3
    mm = jax.jit(jnp.matmul)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    out = dict(n=n, xla=flop / best_seconds(lambda: mm(ja, jb).block_until_ready(),
                                             repeats) / 1e9, torch=None)
    try:
        import torch
    except ImportError:
        return out
    torch.set_num_threads(THREADS)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    out["torch"] = flop / best_seconds(lambda: ta @ tb, repeats) / 1e9
    return out


def format_line(r: dict, cpu: dict | None = None) -> str:
    """The yardstick line; ``cpu`` (:func:`cpu_info`) names the processor first."""
    torch = f"{r['torch']:,.0f}" if r["torch"] is not None else "-"
    where = ""
    if cpu is not None:
        where = (f"{cpu.get('model') or 'unknown processor'} "
                 f"({cpu.get('vector_isa') or 'vector unit unknown'}), ")
    return (f"machine: {where}float32 matrix product {r['n']}x{r['n']}, fastest of the "
            f"calls: XLA {r['xla']:,.0f} GFLOP/s, PyTorch ({THREADS} threads) {torch} GFLOP/s")


def main(argv=None) -> None:
    import cianna_jax.xla_cpu

    cianna_jax.xla_cpu.tune()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=7)
    a = parser.parse_args(argv)
    print(format_line(run(a.n, a.repeats), cpu_info()))


if __name__ == "__main__":
    main()
