"""CIANNA's ImageNet example network, cianna_jax against PyTorch in the same process.

The network of CIANNA's ``examples/ImageNET/imagenet_train.py`` (repository
Deyht/CIANNA), the backbone its PASCAL and COCO detectors load: 18 convolutions (3x3 and
1x1, 32 to 1024 filters, leaky ReLU), a group norm after each (group sizes 4-32), five
2x2 max pools, a 1x1 head and a global average pool with softmax.  Random RGB images
(224x224 as CIANNA's first training stage; the second runs at 448), CIANNA's
cross-entropy on both sides, SGD with momentum 0.9, float32.

Training epochs and inference passes are timed in alternation with PyTorch (same number
of threads); a ratio is the median over rounds of the per-round speed ratio.
``--norm-ab`` also times our training step with the group norm's fused passes
(``layers/norm.py`` ``FUSED_PASSES``) against autodiff of the plain formulation,
alternated in the same process.

    python benchmarks/bench_imagenet.py [--size 224] [--batch 8] [--n 16] [--rounds 5]
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(1, os.path.dirname(_HERE))  # the source tree, when not installed

import jax  # noqa: E402
import numpy as np  # noqa: E402
from alternated import alternate, ratio_cell  # noqa: E402
from trained import Trained  # noqa: E402

import cianna_jax as cj  # noqa: E402
import cianna_jax.xla_cpu  # noqa: E402
from cianna_jax import host_memory, nn, training  # noqa: E402

LR, MOMENTUM = 0.003, 0.9
THREADS = 2
#: the layers of CIANNA's script in order: ("conv", f_size, filters), ("norm", group
#: size), ("pool",); the head (1x1 conv to the classes, global average pool) follows
LAYERS = [("conv", 3, 32), ("norm", 4), ("pool",),
          ("conv", 3, 64), ("norm", 8), ("pool",),
          ("conv", 3, 128), ("norm", 8), ("conv", 1, 64), ("norm", 8),
          ("conv", 3, 128), ("norm", 8), ("pool",),
          ("conv", 3, 256), ("norm", 16), ("conv", 1, 128), ("norm", 16),
          ("conv", 3, 256), ("norm", 16), ("pool",),
          ("conv", 3, 512), ("norm", 16), ("conv", 1, 256), ("norm", 16),
          ("conv", 3, 512), ("norm", 16), ("conv", 1, 256), ("norm", 16),
          ("conv", 3, 512), ("norm", 16), ("pool",),
          ("conv", 3, 1024), ("norm", 32), ("conv", 1, 512), ("norm", 16),
          ("conv", 3, 1024), ("norm", 32), ("conv", 1, 512), ("norm", 16),
          ("conv", 3, 1024), ("norm", 32)]


def imagenet_network(size: int = 224, classes: int = 1000, specs=tuple(LAYERS)) -> cj.Network:
    """The network with the functional builders (``size`` a multiple of 32); ``specs`` a
    prefix of :data:`LAYERS` builds its first blocks only (with the head)."""
    layers = []
    for spec in specs:
        if spec[0] == "conv":
            f = spec[1]
            layers.append(nn.conv([f, f], spec[2], padding=[f // 2] * 2, activation="RELU"))
        elif spec[0] == "norm":
            layers.append(nn.norm(group_size=spec[1]))
        else:
            layers.append(nn.pool([2, 2], p_type="MAX"))
    layers += [nn.conv([1, 1], classes, activation="LIN"),
               nn.pool([1, 1], p_type="AVG", p_global=1, activation="SMAX")]
    return nn.network([size, size], 3, layers)


def flops_per_image(size: int) -> tuple[float, float]:
    """(forward, training) floating-point operations of the convolutions per image
    (multiply-adds x 2; training = 3x forward), the head's classes excluded."""
    macs, c, n = 0, 3, size
    for spec in LAYERS:
        if spec[0] == "conv":
            macs += n * n * spec[1] ** 2 * c * spec[2]
            c = spec[2]
        elif spec[0] == "pool":
            n //= 2
    return 2.0 * macs, 6.0 * macs


def data(size: int, n: int, classes: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, size, size, 3)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    return x, np.eye(classes, dtype=np.float32)[labels], labels


def ours(size: int, batch: int, x, t, classes: int) -> dict:
    """Closures for one training epoch and one inference pass through the functional
    core (``training.train_epoch``, ``cj.predict``, as the imperative API runs them)."""
    net = imagenet_network(size, classes)
    model = Trained(net, LR, MOMENTUM)

    def epoch():
        model.epoch(x, t, batch)

    def inference():
        cj.predict(net, model.params, x, batch).block_until_ready()

    t0 = time.perf_counter()
    epoch()
    first = time.perf_counter() - t0
    inference()
    return dict(epoch=epoch, inference=inference, first_epoch=first)


def theirs(size: int, batch: int, x, labels, classes: int) -> dict | None:
    """The same network, loss and optimizer in PyTorch (NCHW); None without torch."""
    try:
        import torch
    except ImportError:
        return None
    from torch import nn as tnn

    torch.set_num_threads(THREADS)
    mods, c = [], 3
    for spec in LAYERS:
        if spec[0] == "conv":
            mods += [tnn.Conv2d(c, spec[2], spec[1], padding=spec[1] // 2),
                     tnn.LeakyReLU(0.05)]
            c = spec[2]
        elif spec[0] == "norm":
            mods.append(tnn.GroupNorm(c // spec[1], c, eps=1e-3))
        else:
            mods.append(tnn.MaxPool2d(2))
    mods += [tnn.Conv2d(c, classes, 1), tnn.AdaptiveAvgPool2d(1), tnn.Flatten()]
    torch.manual_seed(0)
    model = tnn.Sequential(*mods)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(labels)
    n = x.shape[0]

    def epoch():
        model.train()
        for i in range(0, n, batch):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xt[i:i + batch]), yt[i:i + batch]).backward()
            opt.step()

    def inference():
        model.eval()
        with torch.inference_mode():
            for i in range(0, n, batch):
                model(xt[i:i + batch])

    epoch()
    inference()
    return dict(epoch=epoch, inference=inference)


def norm_ab(size: int, batch: int, x, t, classes: int, rounds: int,
            specs=tuple(LAYERS)) -> dict:
    """Our training step with the group norm's fused passes and with autodiff of the
    plain formulation (``norm.FUSED_PASSES``), each compiled once, alternated; ``specs``
    as :func:`imagenet_network`."""
    from cianna_jax.layers import norm as norm_mod

    net = imagenet_network(size, classes, specs)
    params = cj.init_params(jax.random.key(0), net)
    opt = cj.make_optimizer(LR, MOMENTUM, masks=functools.partial(cj.cianna_masks, net))
    xb, tb, nv, key = x[:batch], t[:batch], np.int32(batch), jax.random.key(1)
    steps, states = {}, {}
    flag = norm_mod.FUSED_PASSES
    try:
        for fused in (True, False):
            norm_mod.FUSED_PASSES = fused
            jax.clear_caches()  # the flag is read while tracing
            states[fused] = [jax.tree.map(np.array, params), opt.init(params)]
            steps[fused] = training.train_step.lower(net, opt, *states[fused], xb, tb, nv,
                                                     key).compile()
    finally:
        norm_mod.FUSED_PASSES = flag
        jax.clear_caches()
    times = {True: [], False: []}

    def step(fused, timed=True):
        st = states[fused]
        t0 = time.perf_counter()
        st[0], st[1], loss = steps[fused](*st, xb, tb, nv, key)
        loss.block_until_ready()
        if timed:
            times[fused].append(time.perf_counter() - t0)

    for fused in (True, False):
        step(fused, timed=False)
    for r in range(rounds):
        for fused in ((True, False) if r % 2 == 0 else (False, True)):
            step(fused)
    gain = np.asarray(times[False]) / np.asarray(times[True])
    return dict(fused_ms=1e3 * float(np.median(times[True])),
                autodiff_ms=1e3 * float(np.median(times[False])),
                speedup=float(np.median(gain)), faster=float(np.mean(gain > 1)))


def run(size: int = 224, batch: int = 8, n: int = 16, rounds: int = 5,
        classes: int = 1000) -> dict:
    x, t, labels = data(size, n, classes)
    runs = {"cianna_jax": ours(size, batch, x, t, classes)}
    th = theirs(size, batch, x, labels, classes)
    if th is not None:
        runs["torch"] = th
    first = runs["cianna_jax"]["first_epoch"]
    res = alternate(runs, n, rounds, "torch" if th is not None else None)
    fwd, trn = flops_per_image(size)
    return dict(size=size, batch=batch, n=n, rounds=rounds, classes=classes, results=res,
                first_epoch=first, gflop_train=trn / 1e9, gflop_infer=fwd / 1e9)


def format_result(r: dict) -> str:
    head = (f"{'ImageNet example net':<24}{'train img/s':>12}{'infer img/s':>12}"
            f"{'train/torch':>12}{'infer/torch':>12}{'GFLOP/s tr':>11}{'spread':>12}")
    lines = [f"{r['size']}x{r['size']}x3, {r['classes']} classes, batch {r['batch']}, "
             f"{r['n']} images, {r['rounds']} alternated rounds; {r['gflop_train']:.1f} "
             f"GFLOP per training image; our first epoch (compilation) "
             f"{r['first_epoch']:.1f} s", head, "-" * len(head)]
    for name, v in r["results"].items():
        lines.append(f"{name:<24}{v['train']:>12,.2f}{v['infer']:>12,.2f}"
                     f"{ratio_cell(v, 'train'):>12}{ratio_cell(v, 'infer'):>12}"
                     f"{v['train'] * r['gflop_train']:>11,.0f}"
                     f"{v['train_spread']:>6.2f}/{v['infer_spread']:.2f}")
    lines.append("ratios: median over rounds of the per-round speed ratio against PyTorch; "
                 "spread: slowest/fastest round (train/infer)")
    return "\n".join(lines)


def main(argv=None) -> dict:
    if argv is None:  # run as a script: huge pages for the step buffers (both sides)
        host_memory.restart_with_hugepages([os.path.abspath(__file__), *sys.argv[1:]])
    cianna_jax.xla_cpu.tune(warn=False)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--n", type=int, default=16, help="images per epoch")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--norm-ab", action="store_true",
                    help="also time the group norm's fused passes against autodiff")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 32x32, 10 classes")
    a = ap.parse_args(argv)
    if a.quick:
        a.size, a.batch, a.n, a.rounds, a.classes = 32, 2, 4, 1, 10
    if a.size < 32 or a.size % 32:
        ap.error(f"--size: five 2x2 pools need a multiple of 32, received {a.size}")
    r = run(a.size, a.batch, a.n, a.rounds, a.classes)
    print(format_result(r))
    if a.norm_ab or a.quick:
        x, t, _ = data(a.size, a.batch, a.classes)
        # --quick: the first two blocks (two convolutions, two group norms), a check that
        # both forms compile and run (the whole network's two steps took 13 s to compile)
        specs = LAYERS[:6] if a.quick else LAYERS
        ab = norm_ab(a.size, a.batch, x, t, a.classes, max(3, a.rounds) if not a.quick else 1,
                     specs)
        r["norm_ab"] = ab
        print(f"group norm, one training step{' (first two blocks)' if a.quick else ''}: "
              f"fused passes {ab['fused_ms']:.1f} ms, "
              f"autodiff {ab['autodiff_ms']:.1f} ms: x{ab['speedup']:.3f} (faster in "
              f"{100 * ab['faster']:.0f}% of rounds)")
    return r


if __name__ == "__main__":
    main()
