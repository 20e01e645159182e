"""Forward and training speed of an SDC1-like YOLO network (functional core).

Network (256x256 single-channel input, 16x16 output grid): 13 conv layers, group
norm after most 3x3 convs, four 2x2 max pools, a 1x1 YOLO output conv with 6 boxes,
CIANNA's YOLO loss with 60 targets per image.

    python benchmarks/bench_yolo.py [--size 256] [--n 32] [--batch 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import numpy as np

import cianna_jax as cj
import cianna_jax.xla_cpu
from cianna_jax import nn, training, yolo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_mnist import first_train_step  # noqa: E402

NB_BOX, NB_CLASS, NB_PARAM, MAX_OBJ = 6, 2, 1, 60


def sdc1_network(size: int = 256) -> cj.Network:
    """A Darknet-like detector in the spirit of CIANNA's SDC1 example scripts."""
    grid = size // 16
    rng = np.random.default_rng(0)
    priors = np.vstack([rng.uniform(6, 24, NB_BOX), rng.uniform(6, 24, NB_BOX)])
    cfg = yolo.make_config((size, size, 1), (grid, grid, 1), nb_box=NB_BOX, nb_class=NB_CLASS,
                           nb_param=NB_PARAM, max_nb_obj_per_image=MAX_OBJ, prior_size=priors,
                           IoU_type="DIoU", prior_dist_type="OFFSET", rand_startup=0)
    relu = "RELU"

    def block(filters, f=3):
        pad = f // 2
        return [nn.conv([f, f], filters, padding=[pad, pad], activation="LIN"),
                nn.norm(group_size=8, activation=relu)]

    layers = [nn.conv([3, 3], 16, padding=[1, 1], activation=relu), nn.pool([2, 2]),
              nn.conv([3, 3], 32, padding=[1, 1], activation=relu), nn.pool([2, 2]),
              *block(64), *block(32, 1), *block(64), nn.pool([2, 2]),
              *block(128), *block(64, 1), *block(128), nn.pool([2, 2]),
              *block(256), *block(128, 1), *block(256), *block(256),
              nn.conv([1, 1], cfg.nb_filters, activation="YOLO")]
    return cj.make_network(nn.in_dims_from([size, size], 1), layers, 0.1, cfg)


def yolo_data(net: cj.Network, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random images and CIANNA target rows (MAX_OBJ boxes per image)."""
    rng = np.random.default_rng(seed)
    size = net.in_dims[0]
    x = rng.normal(size=(n, net.input_dim)).astype(np.float32)
    t = np.zeros((n, net.yolo.target_len), np.float32)
    blen = 7 + NB_PARAM
    for i in range(n):
        c = rng.uniform(8, size - 8, (MAX_OBJ, 2))
        e = rng.uniform(5, 30, (MAX_OBJ, 2))
        boxes = np.concatenate([rng.integers(1, NB_CLASS + 1, (MAX_OBJ, 1)), c - e / 2,
                                np.zeros((MAX_OBJ, 1)), c + e / 2, np.ones((MAX_OBJ, 1)),
                                rng.uniform(0, 1, (MAX_OBJ, NB_PARAM))], axis=1)
        t[i, 0] = MAX_OBJ
        t[i, 1:1 + MAX_OBJ * blen] = boxes.ravel()
    return x, t


def run(size: int = 256, n: int = 32, batch: int = 8, repeats: int = 3) -> dict:
    """Training and forward img/s (medians) and the first training step's time."""
    net = sdc1_network(size)
    x, t = yolo_data(net, n)
    x = cj.rows_to_images(net, x)  # CIANNA rows -> the core's (N, H, W, 1) images
    params = cj.init_params(jax.random.key(0), net)
    opt = cj.make_optimizer(0.0005, 0.9, masks=functools.partial(cj.cianna_masks, net))
    state = {"p": params, "s": opt.init(params)}
    first = first_train_step(net, opt, state, x, t, batch)

    def epoch():
        p, s, total = training.train_epoch(net, opt, state["p"], state["s"], x, t, batch,
                                           jax.random.key(2))
        total.block_until_ready()
        state["p"], state["s"] = p, s

    infer = jax.jit(cj.apply, static_argnums=0)

    def inference():  # as cnn.forward: the weights laid out once per pass
        out, p = None, cj.inference_params(net, state["p"])
        for start in range(0, n, batch):
            out = infer(net, p, training.pad_batch(x[start:start + batch], batch))
        out.block_until_ready()

    def rate(fn):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return n / float(np.median(times))

    convs = sum(1 for layer in net.layers if layer.kind == "conv")
    norms = sum(1 for layer in net.layers if layer.kind == "norm")
    return dict(size=size, batch=batch, n=n, convs=convs, norms=norms, train=rate(epoch),
                infer=rate(inference), first_step=first)


def format_result(r: dict) -> str:
    return (f"SDC1-like YOLO {r['size']}x{r['size']}x1, {r['convs']} conv + {r['norms']} GN "
            f"layers, batch {r['batch']}, {r['n']} images: train {r['train']:,.1f} img/s, "
            f"forward {r['infer']:,.1f} img/s, first step {r['first_step']:.2f} s")


def main(argv=None) -> None:
    cianna_jax.xla_cpu.tune()  # XLA CPU flags: before any JAX computation
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    a = parser.parse_args(argv)
    print(format_result(run(a.size, a.n, a.batch, a.repeats)))


if __name__ == "__main__":
    main()
