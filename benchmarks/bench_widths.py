"""Layers of 2048 or 4096 filters in XLA's CPU code, at their width and widened.

    python benchmarks/bench_widths.py            # products, convolutions, training steps
    python benchmarks/bench_widths.py --rounds 9
    python benchmarks/bench_widths.py --quick    # small shapes, one round (a smoke run)

Part 1: products ``(M, K) @ (K, N)`` and convolutions (batch 8) with ``N`` filters,
against the same with :data:`cianna_jax.layers.widths.EXTRA` columns more, each a
jitted call, fastest of the rounds (the widths that run slowly are multiples of 2048,
see :mod:`cianna_jax.layers.widths`).  Part 2: the training step of one wide layer and
a 1x1 head of 16 filters through the functional core, with the widening of
:func:`cianna_jax.layers.widths.on_cpu` and without it (``widths.slow`` switched off),
compiled in one process and alternated round by round, and the parameters after one
step from the same state on both sides (they agree: only the form changes).  Run it
with huge pages as ``run_all.py`` does (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1``,
:mod:`cianna_jax.host_memory`).
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np
from machine_peak import best_seconds  # the fastest of several calls

#: part 1: (label, kind, shape) with the filters last; "dot": (M, K, N); "conv":
#: (batch, map side, C, N, filter side, stride)
PRIMITIVES = [
    ("product 512x1024 @ 1024xN", "dot", (512, 1024, 2048)),
    ("product 512x1024 @ 1024xN", "dot", (512, 1024, 4096)),
    ("product 512x1024 @ 1024xN", "dot", (512, 1024, 1536)),
    ("conv 3x3 512 -> N, 8x8", "conv", (8, 8, 512, 2048, 3, 1)),
    ("conv 2x2 s2 256 -> N, 16x16", "conv", (8, 16, 256, 2048, 2, 2)),
    ("conv 1x1 1024 -> N, 16x16", "conv", (8, 16, 1024, 2048, 1, 1)),
]
#: part 2: (label, map side, C, filter side, stride, dropout)
LAYERS = [
    ("3x3 512 -> 2048, 8x8", 8, 512, 3, 1, 0.0),
    ("1x1 1024 -> 2048, 16x16", 16, 1024, 1, 1, 0.0),
    ("2x2 s2 256 -> 2048, 16x16", 16, 256, 2, 2, 0.0),
    ("1x1 1024 -> 2048, 16x16, dropout 0.25", 16, 1024, 1, 1, 0.25),
]
QUICK_PRIMITIVES = [("product 64x64 @ 64xN", "dot", (64, 64, 2048))]
QUICK_LAYERS = [("1x1 8 -> 2048, 4x4, dropout 0.25", 4, 8, 1, 1, 0.25)]


def primitive(kind: str, shape: tuple, extra: int, calls: int) -> float:
    """Seconds of one call at the shape's own width plus ``extra`` filters."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    rng = np.random.default_rng(0)
    hi = lax.Precision.HIGHEST
    if kind == "dot":
        m, k, n = shape
        a = jnp.asarray(rng.standard_normal((m, k), np.float32))
        b = jnp.asarray(rng.standard_normal((k, n + extra), np.float32))
        f = jax.jit(lambda a, b: jnp.dot(a, b, precision=hi))
    else:
        batch, side, c, n, fs, stride = shape
        a = jnp.asarray(rng.standard_normal((batch, side, side, c), np.float32))
        b = jnp.asarray(rng.standard_normal((fs, fs, c, n + extra), np.float32))
        f = jax.jit(lambda a, b: lax.conv_general_dilated(
            a, b, (stride, stride), "SAME" if stride == 1 else "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=hi))
    return best_seconds(lambda: f(a, b).block_until_ready(), calls)


@contextlib.contextmanager
def _widening(on: bool):
    """``widths.slow`` as it is (``on``) or answering False (every layer at its width)."""
    from cianna_jax.layers import widths

    slow = widths.slow
    if not on:
        widths.slow = lambda n: False
    try:
        yield
    finally:
        widths.slow = slow


def layer_steps(side: int, c: int, fs: int, stride: int, drop: float, rounds: int,
                batch: int = 8) -> dict:
    """Training step seconds per round, widened and not, and the largest difference of
    the parameters after one step from the same state."""
    import jax
    import jax.numpy as jnp

    import cianna_jax as cj
    from cianna_jax import nn, training

    net = nn.network([side, side], c, [
        nn.conv([fs, fs], 2048, stride=[stride, stride], activation="RELU", drop_rate=drop,
                padding=[fs // 2 if stride == 1 else 0] * 2),
        nn.conv([1, 1], 16, activation="LIN")])
    out = side // stride
    x = jax.random.normal(jax.random.key(0), (batch, side, side, c))
    t = jax.random.normal(jax.random.key(1), (batch, out, out, 16))
    params = cj.init_params(jax.random.key(2), net)
    opt = training.make_optimizer(0.01, 0.8, masks=lambda p: training.cianna_masks(net, p))
    key, nv = jax.random.key(3), jnp.int32(batch)

    def fresh():
        p = jax.tree_util.tree_map(jnp.copy, params)
        return [p, opt.init(p)]

    runs, after = {}, {}
    for name in ("own width", "widened"):
        with _widening(name == "widened"):
            jax.clear_caches()
            comp = training.train_step.lower(net, opt, *fresh(), x, t, nv, key).compile()
        after[name] = comp(*fresh(), x, t, nv, key)[0]
        state = fresh()

        def run(comp=comp, state=state):
            state[0], state[1], loss = comp(state[0], state[1], x, t, nv, key)
            loss.block_until_ready()
        run()
        runs[name] = run
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    diff = max(float(jnp.max(jnp.abs(a - b)))
               for a, b in zip(jax.tree_util.tree_leaves(after["own width"]),
                               jax.tree_util.tree_leaves(after["widened"])))
    return {"times": times, "param_diff": diff}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="small shapes, one round")
    a = ap.parse_args(argv)
    from cianna_jax import xla_cpu

    xla_cpu.tune(warn=False)
    from cianna_jax.layers import widths

    rounds = 1 if a.quick else a.rounds
    result = {"primitives": [], "layers": []}
    print(f"{'part 1: one call, fastest of ' + str(rounds + 2):46s} {'N':>5} "
          f"{'own ms':>8} {'+' + str(widths.EXTRA) + ' ms':>8} {'gain':>6}")
    for label, kind, shape in QUICK_PRIMITIVES if a.quick else PRIMITIVES:
        own = primitive(kind, shape, 0, rounds + 2)
        wide = primitive(kind, shape, widths.EXTRA, rounds + 2)
        n = shape[2] if kind == "dot" else shape[3]
        result["primitives"].append({"label": label, "n": n, "own_s": own, "wide_s": wide})
        print(f"{label:46s} {n:5d} {own * 1e3:8.2f} {wide * 1e3:8.2f} {own / wide:6.2f}")
    print(f"\n{'part 2: training step + 1x1 head, batch 8':46s} {'own ms':>8} {'wide ms':>8} "
          f"{'ratio':>6} {'faster':>7} {'param diff':>11}")
    for label, side, c, fs, stride, drop in QUICK_LAYERS if a.quick else LAYERS:
        r = layer_steps(side, c, fs, stride, drop, rounds, batch=2 if a.quick else 8)
        own, wide = (np.asarray(r["times"][k]) for k in ("own width", "widened"))
        ratio = float(np.median(own / wide))
        faster = float(np.mean(wide < own))
        result["layers"].append({"label": label, "own_s": float(np.median(own)),
                                 "wide_s": float(np.median(wide)), "ratio": ratio,
                                 "faster": faster, "param_diff": r["param_diff"]})
        print(f"{label:46s} {np.median(own) * 1e3:8.1f} {np.median(wide) * 1e3:8.1f} "
              f"{ratio:6.3f} {faster:7.0%} {r['param_diff']:11.1e}")
    print("gain / ratio: own width's time over the widened one's (medians of per-round "
          "ratios in part 2)")
    return result


if __name__ == "__main__":
    main()
