"""Training and inference speed of CIANNA's MNIST example network (functional core).

Network: conv 5x5x8 pad 2 - max pool 2 - conv 5x5x16 pad 2 - max pool 2 -
dense 256 RELU drop 0.5 - dense 128 RELU drop 0.2 - dense 10 SMAX, on random
28x28 images.  Prints img/s for training (CIANNA's update rule, momentum 0.9)
and inference (AVG_MODEL), plus the same for a plain-JAX reference of the same
network run in the same process (``--no-reference`` to skip), and the ratio.

    python benchmarks/bench_mnist.py [--n 10000] [--batch 64] [--epochs 3]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import cianna_jax as cj
from cianna_jax import nn, training


def mnist_network() -> cj.Network:
    return nn.network([28, 28], 1, [
        nn.conv([5, 5], 8, padding=[2, 2], activation="RELU"),
        nn.pool([2, 2], p_type="MAX"),
        nn.conv([5, 5], 16, padding=[2, 2], activation="RELU"),
        nn.pool([2, 2], p_type="MAX"),
        nn.dense(256, activation="RELU", drop_rate=0.5),
        nn.dense(128, activation="RELU", drop_rate=0.2),
        nn.dense(10, activation="SMAX", strict_size=1),
    ], bias=0.1)


def _median_rate(fn, n_items: int, repeats: int) -> float:
    fn()  # compile and warm up
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        rates.append(n_items / (time.perf_counter() - t0))
    return float(np.median(rates))


def bench_cianna_jax(x, t, batch: int, epochs: int):
    net = mnist_network()
    params = cj.init_params(jax.random.key(0), net)
    opt = cj.make_optimizer(net, 0.004, 0.9)
    state = {"p": params, "s": opt.init(params)}
    key = jax.random.key(1)

    def epoch():
        p, s, total = training.train_epoch(net, opt, state["p"], state["s"], x, t, batch, key)
        total.block_until_ready()
        state["p"], state["s"] = p, s

    train_rate = _median_rate(epoch, x.shape[0], epochs)
    infer = jax.jit(lambda p, xb: cj.apply(net, p, xb))

    def inference():
        out = None
        for start in range(0, x.shape[0], batch):
            out = infer(state["p"], training.pad_batch(x[start:start + batch], batch))
        out.block_until_ready()

    return train_rate, _median_rate(inference, x.shape[0], epochs)


def bench_plain_jax(x, t, batch: int, epochs: int):
    """A straightforward JAX version: lax.conv, reduce_window pools, optax SGD momentum."""
    k = jax.random.split(jax.random.key(0), 5)
    params = {
        "c1": jax.random.normal(k[0], (5, 5, 1, 8)) * 0.2, "b1": jnp.zeros(8),
        "c2": jax.random.normal(k[1], (5, 5, 8, 16)) * 0.1, "b2": jnp.zeros(16),
        "d1": jax.random.normal(k[2], (784, 256)) * 0.05, "e1": jnp.zeros(256),
        "d2": jax.random.normal(k[3], (256, 128)) * 0.05, "e2": jnp.zeros(128),
        "d3": jax.random.normal(k[4], (128, 10)) * 0.05, "e3": jnp.zeros(10),
    }

    def forward(p, xb, key, train):
        h = xb.reshape(-1, 1, 28, 28).transpose(0, 2, 3, 1)
        for c, b in (("c1", "b1"), ("c2", "b2")):
            h = jax.lax.conv_general_dilated(h, p[c], (1, 1), [(2, 2), (2, 2)],
                                             dimension_numbers=("NHWC", "HWIO", "NHWC")) + p[b]
            h = jax.nn.leaky_relu(h, 0.05)
            h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
        h = h.reshape(h.shape[0], -1)
        for (d, e), rate, kk in zip((("d1", "e1"), ("d2", "e2")), (0.5, 0.2), jax.random.split(key)):
            h = h @ p[d] + p[e]
            if train:
                h = h * (jax.random.uniform(kk, h.shape) >= rate)
            h = jax.nn.leaky_relu(h, 0.05)
        return h @ p["d3"] + p["e3"]

    opt = optax.sgd(0.004, momentum=0.9)

    @jax.jit
    def step(p, s, xb, tb, key):
        def loss(pp):
            return optax.softmax_cross_entropy(forward(pp, xb, key, True), tb).mean()
        value, g = jax.value_and_grad(loss)(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, value

    state = {"p": params, "s": opt.init(params)}
    key = jax.random.key(1)

    def epoch():
        total = 0.0
        for start in range(0, x.shape[0], batch):
            xb = training.pad_batch(x[start:start + batch], batch)
            tb = training.pad_batch(t[start:start + batch], batch)
            state["p"], state["s"], batch_loss = step(state["p"], state["s"], xb, tb, key)
            total = total + batch_loss
        jnp.asarray(total).block_until_ready()

    infer = jax.jit(lambda p, xb: jax.nn.softmax(forward(p, xb, key, False)))

    def inference():
        out = None
        for start in range(0, x.shape[0], batch):
            out = infer(state["p"], training.pad_batch(x[start:start + batch], batch))
        out.block_until_ready()

    return _median_rate(epoch, x.shape[0], epochs), _median_rate(inference, x.shape[0], epochs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of images")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (median)")
    parser.add_argument("--no-reference", action="store_true", help="skip the plain-JAX run")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.n, 784)).astype(np.float32)
    t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.n)]
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {args.n} images, "
          f"batch {args.batch}")
    ours = bench_cianna_jax(x, t, args.batch, args.epochs)
    rows = [("cianna_jax (functional)", *ours)]
    if not args.no_reference:
        rows.append(("plain JAX reference", *bench_plain_jax(x, t, args.batch, args.epochs)))
    print(f"{'variant':<26}{'train img/s':>14}{'infer img/s':>14}")
    for name, tr, inf in rows:
        print(f"{name:<26}{tr:>14,.0f}{inf:>14,.0f}")
    if len(rows) == 2:
        print(f"{'ratio ours / reference':<26}{rows[0][1] / rows[1][1]:>14.2f}"
              f"{rows[0][2] / rows[1][2]:>14.2f}")


if __name__ == "__main__":
    main()
