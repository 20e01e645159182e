"""YOLO loss + gradient: the Pallas kernel against the XLA (jax.numpy) reference.

    python benchmarks/yolo_loss.py                  # SDC1-like shapes, both kernels
    python benchmarks/yolo_loss.py --quick          # one small shape
    python benchmarks/yolo_loss.py --block-cells 2 4 8 --num-warps 4 8 --tune-last  # GPU tuning

Each row times one jitted ``jax.grad`` of :func:`cianna_jax.yolo.yolo_loss` (the
training path: association, delta, displayed loss) for ``kernel="xla"`` and
``kernel="pallas"`` in the same process, checks that both give the same gradient and
prints ms/batch, img/s and the ratio XLA / Pallas.  Without a GPU the Pallas column is
the interpreter (``--interpret``, very slow, small shapes only) or skipped.
``--block-cells``/``--num-warps`` time the kernel call itself for each launch setting.
``--terms N`` also times, for the first N shapes, the association terms alone
(:func:`cianna_jax.yolo.yolo_terms` on the activated output: no activation, no
gradient plumbing) by both kernels, which tells the kernel's own share from what
surrounds it (on the H200, 2026-12-04, the whole loss and gradient took 0.31 ms with
the kernel against 0.43 ms with XLA at the first shape).
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from cianna_jax import yolo
from pallas_kernels.yolo_loss import runs_compiled, yolo_terms_kernel

# (batch, grid, boxes, classes, params, targets per image)
# the first: few targets and boxes, where "auto" takes the kernel (measured faster on an
# H200); the others: crowded images, many boxes, where it takes XLA (see resolve_kernel)
SDC1_SHAPES = [(16, 16, 6, 0, 1, 60), (256, 16, 6, 0, 1, 60), (16, 32, 9, 3, 3, 100),
               (64, 16, 6, 2, 1, 100), (64, 32, 9, 3, 3, 100), (256, 32, 9, 3, 3, 100)]
QUICK_SHAPES = [(4, 8, 3, 1, 1, 10)]


def _median_time(fn, *args, repeats=7, inner=1):
    """Median seconds per call; ``inner`` calls are queued back to back per repeat (on a
    GPU the launches then overlap the host's dispatch, as in a training loop)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = None
        for _ in range(inner):
            out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t0) / inner)
    return float(np.median(times))


def problem(batch, grid, boxes, classes, params, targets, seed=0):
    """A YOLO config at 16 px per cell, raw outputs and crowded random targets."""
    rng = np.random.default_rng(seed)
    size = grid * 16
    priors = np.vstack([rng.uniform(6, 40, boxes), rng.uniform(6, 40, boxes)])
    cfg = yolo.make_config((size, size, 1), (grid, grid, 1), nb_box=boxes, nb_class=classes,
                           nb_param=params, max_nb_obj_per_image=targets, prior_size=priors,
                           IoU_type="DIoU", prior_dist_type="OFFSET", rand_startup=0)
    t = np.zeros((batch, cfg.target_len), np.float32)
    for i in range(batch):
        t[i, 0] = targets
        c = rng.uniform(8, size - 8, (targets, 2))
        e = rng.uniform(5, 40, (targets, 2))
        rows = np.concatenate([rng.integers(1, max(classes, 1) + 1, (targets, 1)), c - e / 2,
                               np.zeros((targets, 1)), c + e / 2, np.ones((targets, 1)),
                               rng.uniform(0, 1, (targets, params))], axis=1)
        t[i, 1:] = rows.ravel()
    # channel-last (N, G1, G0, B, K), the layout of the core
    raw = rng.normal(0, 0.5, (batch, grid, grid, boxes, cfg.channels_per_box)).astype(np.float32)
    return cfg, jnp.asarray(raw), jnp.asarray(t)


def loss_and_grad(cfg, t, kernel):
    def total(r):
        return jnp.sum(yolo.yolo_loss(r, t, cfg, nb_im_iter=10 ** 9, kernel=kernel))
    return jax.jit(jax.value_and_grad(total))


def terms_line(cfg, raw, t, with_kernel: bool, repeats: int, inner: int) -> str:
    """The association terms alone (:func:`yolo.yolo_terms` of the activated output),
    timed for the XLA reference and, ``with_kernel``, the Pallas kernel."""
    act = yolo.activation(raw, cfg)
    times = {}
    for kernel in ("xla", "pallas") if with_kernel else ("xla",):
        fn = jax.jit(partial(yolo.yolo_terms, cfg=cfg, nb_im_iter=10 ** 9, kernel=kernel))
        times[kernel] = _median_time(fn, act, t, repeats=repeats, inner=inner)
    line = f"      terms alone (no activation, no gradient): XLA {times['xla'] * 1e3:.2f} ms"
    if "pallas" in times:
        line += (f", Pallas {times['pallas'] * 1e3:.2f} ms, XLA/Pallas "
                 f"{times['xla'] / times['pallas']:.2f}")
    return line


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one small shape")
    p.add_argument("--first", type=int, default=None, help="only the first FIRST SDC1 shapes")
    p.add_argument("--interpret", action="store_true",
                   help="without a GPU, time the interpreted kernel too (very slow)")
    p.add_argument("--block-cells", type=int, nargs="*", default=[])
    p.add_argument("--num-warps", type=int, nargs="*", default=[4])
    p.add_argument("--terms", type=int, default=0, metavar="N",
                   help="also time the terms alone (no activation, no gradient) for the "
                        "first N shapes")
    p.add_argument("--tune-last", action="store_true",
                   help="time the launch settings for the last shape only")
    a = p.parse_args(argv)
    gpu = runs_compiled()   # a GPU with the Triton lowering
    inner = 20 if gpu else 1
    shapes = QUICK_SHAPES if a.quick else SDC1_SHAPES[:a.first]
    dev = jax.devices()[0]
    print(f"jax {jax.__version__} on {dev.platform} ({dev.device_kind})")
    print(f"{'batch':>5} {'grid':>5} {'B':>2} {'C':>2} {'P':>2} {'T':>4} | {'XLA ms':>8} "
          f"{'img/s':>8} | {'Pallas ms':>9} {'img/s':>8} | {'XLA/Pallas':>10} {'max|dg|':>8}")
    for i, shape in enumerate(shapes):
        cfg, raw, t = problem(*shape)
        f_xla = loss_and_grad(cfg, t, "xla")
        t_xla = _median_time(f_xla, raw, inner=inner)
        line = (f"{shape[0]:>5} {shape[1]:>5} {shape[2]:>2} {shape[3]:>2} {shape[4]:>2} "
                f"{shape[5]:>4} | {t_xla * 1e3:>8.2f} {shape[0] / t_xla:>8.0f} | ")
        if gpu or a.interpret:
            f_pl = loss_and_grad(cfg, t, "pallas")
            t_pl = _median_time(f_pl, raw, repeats=7 if gpu else 1, inner=inner)
            dg = float(jnp.max(jnp.abs(f_pl(raw)[1] - f_xla(raw)[1])))
            line += (f"{t_pl * 1e3:>9.2f} {shape[0] / t_pl:>8.0f} | {t_xla / t_pl:>10.2f} "
                     f"{dg:>8.1e}")
        else:
            line += f"{'skipped: no GPU (--interpret to force)':>40}"
        print(line, flush=True)
        if i < a.terms:
            print(terms_line(cfg, raw, t, gpu or a.interpret, 7 if gpu else 1, inner),
                  flush=True)
        tune = not a.tune_last or i == len(shapes) - 1
        for bc in a.block_cells if tune else ():
            for nw in a.num_warps:
                fn = partial(yolo_terms_kernel, cfg=cfg, startup_mode="off", block_cells=bc,
                             num_warps=nw)
                tk = _median_time(fn, yolo.activation(raw, cfg), t, jnp.int32(0), None,
                                  repeats=7 if gpu else 1, inner=inner)
                print(f"      kernel only, block_cells={bc:<3} num_warps={nw:<2}: "
                      f"{tk * 1e3:8.2f} ms", flush=True)


if __name__ == "__main__":
    main()
