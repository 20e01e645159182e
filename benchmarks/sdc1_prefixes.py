"""Where each side's SDC1 training time goes inside the network: the backbone's prefixes,
cianna_jax against PyTorch.

For each cut ``k``, the backbone's first ``k + 1`` convolutions (``bench_sdc1.BACKBONE``,
the group norm where it lies before the cut) train alone, their last layer the output
(squared error against a random target), ours through ``training.train_epoch`` as the
imperative API runs it and PyTorch's ``Sequential`` of the same layers, timed in
alternated rounds in one process.  The difference between consecutive cuts is what that
segment of the network costs each side, inside the network (layers timed alone mislead:
``bench_layers.py``).  The last row (``--head``) is the whole benchmark network: dropout
on the 2048-filter layer and the 117-filter linear head.

    python benchmarks/sdc1_prefixes.py [--size 256] [--cuts 1 3 6 11 14 15] [--head]
        [--n 16] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(1, os.path.dirname(_HERE))  # the source tree, when not installed

import numpy as np  # noqa: E402
from bench_sdc1 import BACKBONE, DROP_LAST, HEAD, LR, MOMENTUM, NORM_AFTER, THREADS  # noqa: E402

#: the default cuts: after the 2x2 stride-2 conv of each resolution and the last layers
CUTS = (1, 3, 6, 11, 14, 15)


def out_shape(size: int, k: int, head: bool = False) -> tuple[int, int]:
    """(side, channels) of prefix ``k``'s output on ``size x size`` inputs."""
    c, n = 1, size
    for f, nf, s, p in BACKBONE[:k + 1]:
        n, c = (n + 2 * p - f) // s + 1, nf
    return n, (HEAD if head else c)


def _layers(k: int, head: bool):
    """(f, filters, stride, padding, dropout, norm after) of prefix ``k``'s convolutions."""
    last = len(BACKBONE) - 1
    return [(f, nf, s, p, DROP_LAST if head and i == last else 0.0, i == NORM_AFTER and i < k)
            for i, (f, nf, s, p) in enumerate(BACKBONE[:k + 1])]


def ours(size: int, k: int, x, t, batch: int, head: bool = False):
    """A closure training prefix ``k`` for one epoch over ``x`` (warmed up)."""
    from trained import Trained

    from cianna_jax import nn

    layers = []
    for f, nf, s, p, drop, norm in _layers(k, head):
        layers.append(nn.conv([f, f], nf, stride=[s, s], padding=[p, p], activation="RELU",
                              drop_rate=drop))
        if norm:
            layers.append(nn.norm(group_size=4, activation="LIN"))
    if head:
        layers.append(nn.conv([1, 1], HEAD, activation="LIN"))
    model = Trained(nn.network([size, size], 1, layers, bias=0.1), LR, MOMENTUM)

    def epoch():
        model.epoch(x, t, batch)

    epoch()
    return epoch


def theirs(k: int, x, t, batch: int, head: bool = False):
    """The same prefix in PyTorch (NCHW, default settings), or None without torch."""
    try:
        import torch
        from torch import nn as tnn
    except ImportError:
        return None
    torch.set_num_threads(THREADS)
    mods, c = [], 1
    for f, nf, s, p, drop, norm in _layers(k, head):
        mods += [tnn.Conv2d(c, nf, f, stride=s, padding=p), tnn.LeakyReLU(0.05)]
        if drop:
            mods.append(tnn.Dropout(drop))
        if norm:
            mods.append(tnn.GroupNorm(nf // 4, nf, eps=1e-3))
        c = nf
    if head:
        mods.append(tnn.Conv2d(c, HEAD, 1))
    torch.manual_seed(0)
    model = tnn.Sequential(*mods)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    tt = torch.from_numpy(np.ascontiguousarray(t.transpose(0, 3, 1, 2)))

    def epoch():
        model.train()
        for i in range(0, len(xt), batch):
            opt.zero_grad(set_to_none=True)
            loss = 0.5 * torch.sum((model(xt[i:i + batch]) - tt[i:i + batch]) ** 2) / batch
            loss.backward()
            opt.step()

    epoch()
    return epoch


def run(size: int = 256, cuts=CUTS, head: bool = True, n: int = 16, batch: int = 8,
        rounds: int = 5) -> list[dict]:
    """One row per prefix (the cuts, then the whole network with ``head``): ms per
    training image for each side (medians over alternated rounds; torch NaN without it)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n, size, size, 1)).astype(np.float32)
    rows = []
    for k, hd in [(c, False) for c in cuts] + ([(len(BACKBONE) - 1, True)] if head else []):
        side, ch = out_shape(size, k, hd)
        t = rng.normal(scale=0.1, size=(n, side, side, ch)).astype(np.float32)
        fns = {"ours": ours(size, k, x, t, batch, hd), "torch": theirs(k, x, t, batch, hd)}
        times = {name: [] for name, fn in fns.items() if fn is not None}
        for _ in range(rounds):
            for name in times:
                t0 = time.perf_counter()
                fns[name]()
                times[name].append((time.perf_counter() - t0) / n * 1e3)
        rows.append(dict(cut=k, head=hd, side=side, channels=ch,
                         ours=float(np.median(times["ours"])),
                         torch=float(np.median(times["torch"])) if "torch" in times
                         else float("nan")))
    return rows


def format_rows(rows: list[dict], size: int) -> str:
    lines = [f"SDC1 backbone prefixes at {size}x{size}, ms per training image (medians); "
             "segment: the difference from the row above",
             f"{'prefix':<34}{'ours':>8}{'torch':>8}{'torch/ours':>11}{'segment ours':>14}"
             f"{'segment torch':>15}"]
    prev = None
    for r in rows:
        name = ("whole network (dropout, head)" if r["head"] else
                f"through conv {r['cut']} ({r['side']}x{r['side']}x{r['channels']})")
        seg = ("", "") if prev is None or r["head"] else (
            f"{r['ours'] - prev['ours']:.1f}", f"{r['torch'] - prev['torch']:.1f}")
        lines.append(f"{name:<34}{r['ours']:>8.1f}{r['torch']:>8.1f}"
                     f"{r['torch'] / r['ours']:>11.2f}{seg[0]:>14}{seg[1]:>15}")
        prev = r
    return "\n".join(lines)


def main(argv=None) -> None:
    from cianna_jax import host_memory

    if argv is None:  # as bench_sdc1.py: huge pages from the process's start
        host_memory.restart_with_hugepages([os.path.abspath(__file__), *sys.argv[1:]])
    import cianna_jax.xla_cpu

    cianna_jax.xla_cpu.tune()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--cuts", type=int, nargs="+", default=list(CUTS),
                    help=f"0-based indices into the {len(BACKBONE)} backbone convolutions")
    ap.add_argument("--no-head", action="store_true", help="leave out the whole network's row")
    ap.add_argument("--n", type=int, default=16, help="images per epoch")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args(argv)
    if not all(0 <= c < len(BACKBONE) for c in a.cuts):
        ap.error(f"--cuts: indices in [0, {len(BACKBONE) - 1}]")
    rows = run(a.size, sorted(set(a.cuts)), not a.no_head, a.n, 8, a.rounds)
    print(format_rows(rows, a.size))


if __name__ == "__main__":
    main()
