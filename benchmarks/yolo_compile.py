"""Compile time and program size of the YOLO loss's training path.

    python benchmarks/yolo_compile.py               # SDC1 detector (256x256, 9 boxes) and default
    python benchmarks/yolo_compile.py --rounds 3
    python benchmarks/yolo_compile.py --quick       # the default detector, batch 2, one round

For each detector, builds the network of :func:`cianna_jax.astro.architectures.build_detector`
and times lowering and compiling one ``jax.value_and_grad`` of the summed
:func:`cianna_jax.yolo.yolo_loss` as the trainer calls it (random key, traced
``nb_im_iter``), the StableHLO operation count, and one run of the compiled program.
Each round uses a fresh ``jax.jit`` (nothing comes from JAX's caches; the persistent
compilation cache is not enabled here).
"""

from __future__ import annotations

import argparse
import re
import time

import jax
import jax.numpy as jnp
import numpy as np

from cianna_jax import xla_cpu, yolo
from cianna_jax.astro.architectures import build_detector, get_architecture

_OP = re.compile(r"\b(?:stablehlo|chlo|func)\.\w+")


def count_ops(text: str) -> int:
    """StableHLO (and chlo, func) operations in a lowered program's text."""
    return len(_OP.findall(text))


DETECTORS = [("sdc1", 256, 60), ("default", 64, 20)]


def _inputs(cfg, batch, max_obj, rng):
    g = cfg.grid
    raw = rng.normal(0, 1, (batch, g[1], g[0], cfg.nb_box, cfg.channels_per_box)).astype(np.float32)
    t = np.zeros((batch, cfg.target_len), np.float32)
    side = g[0] * cfg.cell[0]
    L = cfg.target_box_len
    for n in range(batch):
        k = rng.integers(1, max_obj + 1)
        t[n, 0] = k
        for j in range(k):
            c = rng.uniform(4, side - 4, 2)
            w = rng.uniform(2, 20, 2)
            t[n, 1 + j * L:1 + (j + 1) * L][:7] = [1, c[0] - w[0] / 2, c[1] - w[1] / 2, 0,
                                                    c[0] + w[0] / 2, c[1] + w[1] / 2, 1]
    return jnp.asarray(raw, jnp.float32), jnp.asarray(t, jnp.float32)


def measure(name: str, patch: int, max_obj: int, batch: int, rounds: int) -> dict:
    arch = get_architecture(name)
    priors = np.array([[6.0, 12.0], [6.0, 12.0]], np.float32)[:, :arch.nb_box]
    if arch.nb_box > 2:
        priors = np.ones((2, arch.nb_box), np.float32) * 8
    cfg = build_detector(name, patch, priors, max_obj).yolo
    raw, t = _inputs(cfg, batch, max_obj, np.random.default_rng(0))
    key = jax.random.key(0)
    nb = jnp.asarray(10_000, jnp.int32)

    def loss(r, t, key, nb):
        return jnp.sum(yolo.yolo_loss(r, t, cfg, nb_im_iter=nb, key=key))

    res = {"detector": name, "patch": patch, "lower_s": [], "compile_s": []}
    for _ in range(rounds):
        f = jax.jit(jax.value_and_grad(loss))
        t0 = time.perf_counter()
        low = f.lower(raw, t, key, nb)
        t1 = time.perf_counter()
        comp = low.compile()
        t2 = time.perf_counter()
        res["lower_s"].append(t1 - t0)
        res["compile_s"].append(t2 - t1)
    res["ops"] = count_ops(low.as_text())
    out = comp(raw, t, key, nb)
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    for _ in range(5):
        jax.block_until_ready(comp(raw, t, key, nb))
    res["run_ms"] = (time.perf_counter() - t0) / 5 * 1e3
    res["value"] = float(out[0])
    res["grad_sum"] = float(jnp.sum(jnp.abs(out[1])))
    return res


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="default detector, batch 2, 1 round")
    a = ap.parse_args(argv)
    xla_cpu.tune(warn=False)
    detectors = DETECTORS[1:] if a.quick else DETECTORS
    results = []
    for name, patch, max_obj in detectors:
        r = measure(name, patch, max_obj, 2 if a.quick else a.batch, 1 if a.quick else a.rounds)
        results.append(r)
        print(f"{name:8s} {patch}px  ops {r['ops']:5d}  lower "
              + " ".join(f"{v:.2f}" for v in r["lower_s"]) + " s  compile "
              + " ".join(f"{v:.2f}" for v in r["compile_s"])
              + f" s  run {r['run_ms']:.1f} ms  loss {r['value']:.6g}  |grad| {r['grad_sum']:.6g}")
    return results


if __name__ == "__main__":
    main()
