"""Time to the first finished training step, in a fresh process, cold or with the
persistent compilation cache warm.

    python benchmarks/first_step.py mnist [--cache DIR]
    python benchmarks/first_step.py sdc1 --size 128 [--cache DIR]
    python benchmarks/first_step.py both --size 128 --twice     # cold then warm, temp cache

Prints one JSON line per measurement: the first ``train_step`` call (tracing,
compilation or cache load, one step of work), the second step (work alone), and the
time from the process start to the end of the first step (imports and parameter
initialisation included).  ``--twice`` runs two child processes on one fresh cache
folder: the first fills it (cold), the second reads it (warm).
"""

from __future__ import annotations

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(1, os.path.dirname(_HERE))


def measure(which: str, size: int, cache: str | None) -> dict:
    import cianna_jax.xla_cpu

    cianna_jax.xla_cpu.tune()
    if cache:
        import cianna_jax.compile_cache

        cianna_jax.compile_cache.enable_compile_cache(cache)
    import bench_mnist
    import bench_sdc1
    import jax
    import numpy as np

    import cianna_jax as cj
    from cianna_jax import training

    if which == "mnist":
        net, b = bench_mnist.mnist_network(), 64
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(b, 28, 28, 1)).astype(np.float32)
        t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, b)]
        lr, mom = bench_mnist.LR, bench_mnist.MOMENTUM
    else:
        net, b = bench_sdc1.sdc1_network(size), 8
        x, t = bench_sdc1.data(size, b)
        lr, mom = bench_sdc1.LR, bench_sdc1.MOMENTUM
    params = cj.init_params(jax.random.key(0), net)
    opt = cj.make_optimizer(lr, mom, masks=functools.partial(cj.cianna_masks, net))
    state = opt.init(params)
    jax.block_until_ready(state)
    key = jax.random.key(1)
    t0 = time.perf_counter()
    p, s, loss = training.train_step(net, opt, params, state, x, t, np.int32(b), key,
                                     step=np.int32(0))
    loss.block_until_ready()
    t1 = time.perf_counter()
    p, s, loss = training.train_step(net, opt, p, s, x, t, np.int32(b), key, step=np.int32(1))
    loss.block_until_ready()
    t2 = time.perf_counter()
    return dict(network=which if which == "mnist" else f"sdc1 {size}x{size}", batch=b,
                cache=("warm" if os.environ.get("_CJ_CACHE_WAS_WARM") == "1" else "cold")
                if cache else "none",
                first_step=t1 - t0, second_step=t2 - t1, from_start=t1 - T_START)


def twice(which: str, size: int) -> list[dict]:
    """Cold then warm, each in its own child process, on one fresh cache folder."""
    out = []
    with tempfile.TemporaryDirectory() as folder:
        for warm in (False, True):
            env = dict(os.environ, _CJ_CACHE_WAS_WARM="1" if warm else "0")
            res = subprocess.run([sys.executable, os.path.abspath(__file__), which, "--size",
                                  str(size), "--cache", folder], env=env, capture_output=True,
                                 text=True, timeout=900)
            if res.returncode != 0:
                raise RuntimeError(res.stderr[-2000:])
            out.append(json.loads(res.stdout.strip().splitlines()[-1]))
    return out


def format_rows(rows: list[dict]) -> str:
    head = f"{'network':<16}{'cache':>7}{'1st step s':>12}{'2nd step s':>12}{'start->1st s':>14}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['network']:<16}{r['cache']:>7}{r['first_step']:>12.2f}"
                     f"{r['second_step']:>12.3f}{r['from_start']:>14.2f}")
    lines.append("1st step: tracing + compilation (or cache load) + one step; start->1st: from "
                 "the process start (imports, parameter initialisation)")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["mnist", "sdc1", "both"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--cache", default=None, help="compilation cache folder")
    parser.add_argument("--twice", action="store_true",
                        help="cold then warm cache, two child processes")
    a = parser.parse_args(argv)
    if a.twice or a.which == "both":
        rows = []
        for which in (["mnist", "sdc1"] if a.which == "both" else [a.which]):
            rows += twice(which, a.size)
        print(format_rows(rows))
        return
    print(json.dumps(measure(a.which, a.size, a.cache)))


if __name__ == "__main__":
    main()
