"""GPU throughput of CIANNA's MNIST network and SDC1 detector (used by gpu_check.sh).

    python3 benchmarks/gpu_bench.py mnist [--quick]
    python3 benchmarks/gpu_bench.py sdc1 [--size 512] [--quick]

Data stay on the device; every rate is images per second of completed work (the
result is waited for before the clock is read), median of several timed repeats
after a warm-up call that compiles.  Modes are CIANNA's ``mixed_precision`` strings:
FP32C_FP32A (float32, full-precision matmuls: no TF32), BF16C_FP32A, FP16C_FP32A, and for
the SDC1 detector on a GPU also TF32C_FP32A (TF32 tensor-core products).
Runs on CPU too, for the script's own check: with ``--quick`` small sizes, one mode per
kind (BF16 inference, FP32 training) and, for the SDC1 detector, inference only.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(1, os.path.dirname(_HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import cianna_jax as cj  # noqa: E402
from cianna_jax import training  # noqa: E402
from cianna_jax.precision import get_policy  # noqa: E402

MODES = ("FP32C_FP32A", "BF16C_FP32A", "FP16C_FP32A")
#: without a GPU, ``--quick``: one mode per kind (each compilation costs seconds on CPU)
CPU_QUICK_MODES = {"infer": ("BF16C_FP32A",), "train": ("FP32C_FP32A",)}


def _rate(fn, n_images: int, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile + warm
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return n_images / float(np.median(times))


def _loops(net, x, t, batch: int, mode: str, lr: float, mom: float, steps: int):
    """Closures over ``steps`` batches of device data: the inference pass, the training
    pass (one call per step) and the same training as one call (``train_steps``, a scan:
    no dispatch per step; "auto" gives it only on CPU so far)."""
    policy = get_policy(mode)
    params = cj.init_params(jax.random.key(0), net)
    opt = cj.make_optimizer(lr, mom, masks=functools.partial(cj.cianna_masks, net))
    state = {"p": params, "s": opt.init(params)}
    nv = jnp.int32(batch)
    key = jax.random.key(1)

    def infer():  # as cnn.forward: the weights laid out once per pass
        out, p = None, cj.inference_params(net, state["p"])
        for j in range(steps):
            out, _ = training.eval_step(net, p, x[j], t[j], nv, None, "AVG_MODEL",
                                        False, policy)
        return out

    def train():
        p, s, loss = state["p"], state["s"], None
        for j in range(steps):
            p, s, loss = training.train_step(net, opt, p, s, x[j], t[j], nv, key,
                                             policy=policy, step=jnp.int32(j))
        state["p"], state["s"] = p, s
        return loss

    n_valid = jnp.full((steps,), batch, jnp.int32)

    def scan():
        p, s, sums = training.train_steps(net, opt, state["p"], state["s"], x, t, n_valid,
                                          key, policy=policy)
        state["p"], state["s"] = p, s
        return sums

    return {"infer": infer, "train": train, "scan": scan}


def mnist(quick: bool) -> list[str]:
    import bench_mnist

    net = bench_mnist.mnist_network()
    gpu = jax.default_backend() == "gpu"
    lines = []
    configs = [(8192, 16, "infer"), (256, 16, "train"), (256, 16, "scan"),
               (2048, 8, "train")] if gpu else [(256, 2, "infer"), (64, 2, "train"),
                                                (64, 2, "scan")]
    if quick:
        configs = configs[:2] if gpu else [(64, 2, "infer"), (64, 2, "train")]
    for batch, steps, kind in configs:
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.uniform(size=(steps, batch, 28, 28, 1)).astype(np.float32))
        t = jnp.asarray(np.eye(10, dtype=np.float32)[rng.integers(0, 10, (steps, batch))])
        modes = MODES if not quick else MODES[:2] if gpu else CPU_QUICK_MODES[kind]
        if kind == "scan" or (gpu and batch == 256):  # the dispatch cost, in FP32
            modes = MODES[:1]
        for mode in modes:
            fns = _loops(net, x, t, batch, mode, bench_mnist.LR, bench_mnist.MOMENTUM, steps)
            r = _rate(fns[kind], batch * steps, 5 if gpu else 2)
            lines.append(f"MNIST {kind:<5} batch {batch:>5} {mode:<12} {r:>14,.0f} img/s")
            print(lines[-1], flush=True)
    if gpu:
        lines.append("targets: inference FP16/BF16 >= 1,500,000 img/s (CIANNA publishes "
                     "630,000 on an RTX 4090 in FP16)")
    return lines


def sdc1(size: int, quick: bool) -> list[str]:
    import bench_sdc1

    net = bench_sdc1.sdc1_network(size)
    gpu = jax.default_backend() == "gpu"
    lines = []
    configs = [(32, 4, "infer"), (16, 4, "train")] if gpu else [(2, 1, "infer"), (2, 1, "train")]
    if quick and not gpu:  # inference only (run_all.py --quick trains this network on CPU)
        configs = configs[:1]
    modes = ("BF16C_FP32A", "FP32C_FP32A")
    if quick:
        modes = modes[:1]
    elif gpu:  # CIANNA's FP32 mode is full float32 (452 img/s inference on the H200,
        # 2026-12-04); TF32C_FP32A is what a GPU user short of BF16's range would take
        modes = ("BF16C_FP32A", "TF32C_FP32A", "FP32C_FP32A")
    for batch, steps, kind in configs:
        x_h, t_h = bench_sdc1.data(size, batch * steps)
        x = jnp.asarray(x_h.reshape((steps, batch) + x_h.shape[1:]))
        t = jnp.asarray(t_h.reshape((steps, batch) + t_h.shape[1:]))
        for mode in modes:
            fns = _loops(net, x, t, batch, mode, bench_sdc1.LR, bench_sdc1.MOMENTUM, steps)
            r = _rate(fns[kind], batch * steps, 5 if gpu else 1)
            fwd, trn = bench_sdc1.flops_per_image(size)
            tf = r * (fwd if kind == "infer" else trn) / 1e12
            lines.append(f"SDC1 {size}x{size} {kind:<5} batch {batch:>3} {mode:<12} "
                         f"{r:>10,.1f} img/s  ({tf:,.1f} TFLOP/s)")
            print(lines[-1], flush=True)
    if gpu:
        lines.append("target: inference BF16 >= 3,000 img/s at 512x512 (CIANNA publishes 500 "
                     "on an RTX 4090)")
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("which", choices=["mnist", "sdc1"])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    dev = jax.devices()[0]
    print(f"jax {jax.__version__} on {dev.platform} ({dev.device_kind})", flush=True)
    if a.which == "mnist":
        mnist(a.quick)
    else:
        sdc1(a.size if jax.default_backend() == "gpu" or not a.quick else 32, a.quick)


if __name__ == "__main__":
    main()
