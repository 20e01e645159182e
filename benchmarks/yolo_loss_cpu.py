"""Time of CIANNA's YOLO loss + gradient (jitted XLA reference) at an SDC1-like shape.

    python benchmarks/yolo_loss_cpu.py [--batch 16] [--grid 16] [--boxes 6] [--classes 2]
                                        [--params 1] [--targets 60]

Prints the median time of one jitted ``jax.grad`` of :func:`cianna_jax.yolo.yolo_loss`
and the images/s it allows, plus the same for the forward YOLO activation alone as
a reference run in the same process.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from cianna_jax import yolo


def _median_time(fn, *args, repeats=7):
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--grid", type=int, default=16)
    p.add_argument("--boxes", type=int, default=6)
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--params", type=int, default=1)
    p.add_argument("--targets", type=int, default=60)
    a = p.parse_args(argv)
    cell = 16
    size = a.grid * cell
    rng = np.random.default_rng(0)
    priors = np.vstack([rng.uniform(6, 24, a.boxes), rng.uniform(6, 24, a.boxes)])
    cfg = yolo.make_config((size, size, 1), (a.grid, a.grid, 1), nb_box=a.boxes,
                           nb_class=a.classes, nb_param=a.params,
                           max_nb_obj_per_image=a.targets, prior_size=priors, IoU_type="DIoU",
                           prior_dist_type="OFFSET", rand_startup=0)
    blen = 7 + a.params
    t = np.zeros((a.batch, cfg.target_len), np.float32)
    for i in range(a.batch):
        t[i, 0] = a.targets
        c = rng.uniform(8, size - 8, (a.targets, 2))
        e = rng.uniform(5, 30, (a.targets, 2))
        boxes = np.concatenate([rng.integers(1, max(a.classes, 1) + 1, (a.targets, 1)),
                                c - e / 2, np.zeros((a.targets, 1)), c + e / 2,
                                np.ones((a.targets, 1)), rng.uniform(0, 1, (a.targets, a.params))],
                               axis=1)
        t[i, 1:] = boxes.ravel()[: a.targets * blen]
    raw = jnp.asarray(rng.normal(0, 0.5, (a.batch, cfg.nb_filters, 1, a.grid, a.grid)),
                      jnp.float32)
    t = jnp.asarray(t)
    grad = jax.jit(jax.grad(lambda r: yolo.yolo_loss(r, t, cfg, nb_im_iter=10**9).sum()))
    act = jax.jit(lambda r: yolo.activation(r, cfg))
    tg, ta = _median_time(grad, raw), _median_time(act, raw)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}: batch {a.batch}, grid "
          f"{a.grid}x{a.grid}, {a.boxes} boxes, {a.classes} classes, {a.params} params, "
          f"{a.targets} targets/image")
    print(f"{'variant':<34}{'ms/batch':>10}{'img/s':>10}")
    print(f"{'YOLO loss + gradient (XLA)':<34}{tg * 1e3:>10.2f}{a.batch / tg:>10.0f}")
    print(f"{'reference: activation only':<34}{ta * 1e3:>10.2f}{a.batch / ta:>10.0f}")
    print(f"{'ratio loss+grad / activation':<34}{tg / ta:>10.1f}")


if __name__ == "__main__":
    main()
