"""Convolutions over a grid of shapes, to find where one runs far below the others.

The small-map check (``bench_smallmap.py``) follows one layer down to 1x1 maps.  This grid
crosses batch sizes, map sizes and channel widths, for 3x3 convolutions (padding 1,
stride 1 or 2): each cell's forward and training step (forward and both gradients of a
linear loss, as a network's step computes them), ours through ``conv.conv_nd`` (the CPU
forms the package picks) and, with PyTorch installed, ``torch.nn.functional.conv2d`` on
the same arrays (2 threads).  Rates are nominal (multiply-adds x 2 of the direct sum;
training 3x the forward), so Winograd's cells can exceed the machine's product rate.

A cell is flagged ``<1/3`` where our training rate is below a third of the grid's best
training rate at the same channel widths (issue 16: no layer below about a third of the
per-FLOP rate of the network's large layers), and ``torch`` where PyTorch's training step
ran more than 1.5x faster than ours.  The fifty-seventh session found four such cliffs
with it (deep layers on small maps or small batches, strided ones, one-channel ones:
XLA's convolution gradients 2-7x slower than the windows' product there) and made their
gradients the product's (``conv_forms.product_gradients``).

    python benchmarks/bench_conv_grid.py [--quick] [--strided] [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(1, os.path.dirname(_HERE))  # the source tree, when not installed

import numpy as np  # noqa: E402

#: (batch sizes, map sides, (input, output) channels)
GRID = ((1, 4, 16), (2, 3, 4, 6, 8, 16), ((64, 64), (256, 256), (512, 1024)))
QUICK = ((1, 4), (3, 6), ((16, 32), (64, 128)))
#: flags: our training rate below this share of the widths' best; PyTorch this much faster
LOW_SHARE, TORCH_AHEAD = 1 / 3, 1.5
#: training steps shorter than this (seconds) are not flagged "<1/3": dispatch-bound
MIN_FLAGGED = 5e-4
#: seconds between one side's cells and the other's in a round
PAUSE = 0.5
THREADS = 2


def _ours(x, k, stride):
    import jax
    import jax.numpy as jnp

    from cianna_jax.layers import conv

    def out(x, k):
        return conv.conv_nd(x, k, (stride, stride), (1, 1), (1, 1))

    r = jnp.asarray(np.random.default_rng(1).normal(
        size=jax.eval_shape(out, x, k).shape).astype(np.float32))
    fwd = jax.jit(out)
    train = jax.jit(jax.grad(lambda x, k: jnp.sum(out(x, k) * r), argnums=(0, 1)))
    jax.block_until_ready((fwd(x, k), train(x, k)))
    return (lambda: jax.block_until_ready(fwd(x, k)),
            lambda: jax.block_until_ready(train(x, k)))


def _theirs(x, k, stride):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(THREADS)
    xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))
    kt = torch.from_numpy(np.ascontiguousarray(np.transpose(k, (3, 2, 0, 1))))
    xg, kg = xt.clone().requires_grad_(), kt.clone().requires_grad_()
    with torch.no_grad():
        shape = torch.nn.functional.conv2d(xt, kt, stride=stride, padding=1).shape
    r = torch.from_numpy(np.random.default_rng(1).normal(size=tuple(shape)).astype(np.float32))

    def fwd():
        with torch.no_grad():
            torch.nn.functional.conv2d(xt, kt, stride=stride, padding=1)

    def train():
        xg.grad = kg.grad = None
        (torch.nn.functional.conv2d(xg, kg, stride=stride, padding=1) * r).sum().backward()
    return fwd, train


def _calls(fn, budget: float = 0.02) -> int:
    """How many consecutive calls of ``fn`` a round times: about ``budget`` seconds'
    worth, 2 to 50 (measured on two warm-up calls)."""
    fn()
    t0 = time.perf_counter()
    fn()
    return int(min(50, max(2, budget / max(time.perf_counter() - t0, 1e-6))))


def run(batches=GRID[0], maps=GRID[1], widths=GRID[2], stride: int = 1, rounds: int = 5,
        torch: bool = True) -> list[dict]:
    """One row per (batch, map, widths) cell: ms and nominal GFLOP/s of the forward and
    the training step, ours and (``torch``, when installed) PyTorch's, medians over
    ``rounds`` rounds of the fastest of a few consecutive calls (:func:`_calls`), as a
    network's layer runs step after step (one call per round, after other programs, ran
    the small cells up to 10x slower).  Each round times every cell of one side, then of
    the other (their order swapped every round), with a pause between (PyTorch's OpenMP
    threads keep spinning for a while after its calls)."""
    rng = np.random.default_rng(0)
    rows, runs = [], {"ours": [], "torch": []}
    for b, n, (ci, co) in itertools.product(batches, maps, widths):
        x = rng.normal(size=(b, n, n, ci)).astype(np.float32)
        k = (rng.normal(size=(3, 3, ci, co)) / np.sqrt(9 * ci)).astype(np.float32)
        out = (n + 2 - 3) // stride + 1
        row = dict(batch=b, map=n, c_in=ci, c_out=co, stride=stride,
                   flops=2.0 * b * out * out * 9 * ci * co)
        import jax.numpy as jnp
        sides = {"ours": _ours(jnp.asarray(x), jnp.asarray(k), stride)}
        theirs = _theirs(x, k, stride) if torch else None
        if theirs is not None:
            sides["torch"] = theirs
        for side, (fwd, train) in sides.items():
            runs[side] += [(row, f"{side}_fwd", fwd, _calls(fwd)),
                           (row, f"{side}_train", train, _calls(train))]
        rows.append(row)
    times: dict = {}
    for i in range(rounds):
        for side in (("ours", "torch") if i % 2 == 0 else ("torch", "ours")):
            time.sleep(PAUSE)
            for row, name, fn, calls in runs[side]:
                best = float("inf")
                for _ in range(calls):
                    t0 = time.perf_counter()
                    fn()
                    best = min(best, time.perf_counter() - t0)
                times.setdefault((id(row), name), []).append(best)
    for row, name, *_ in runs["ours"] + runs["torch"]:
        row[name] = float(np.median(times[(id(row), name)]))
    flag(rows)
    return rows


def flag(rows: list[dict]) -> None:
    """Set each row's ``flags``: "<1/3" where its training rate is below
    :data:`LOW_SHARE` of the best at its widths (steps of :data:`MIN_FLAGGED` seconds or
    more), "torch" where PyTorch's training step ran over :data:`TORCH_AHEAD` times
    faster."""
    best: dict = {}
    for r in rows:
        key = (r["c_in"], r["c_out"])
        best[key] = max(best.get(key, 0.0), 3 * r["flops"] / r["ours_train"])
    for r in rows:
        rate = 3 * r["flops"] / r["ours_train"]
        low = (rate < LOW_SHARE * best[(r["c_in"], r["c_out"])]
               and r["ours_train"] >= MIN_FLAGGED)
        flags = ["<1/3"] if low else []
        if "torch_train" in r and r["ours_train"] > TORCH_AHEAD * r["torch_train"]:
            flags.append("torch")
        r["flags"] = flags


def format_table(rows: list[dict]) -> str:
    """The grid as text: one line per cell."""
    torch = any("torch_train" in r for r in rows)
    head = (f"{'batch':>5} {'map':>5} {'channels':>10}  {'fwd ms':>8} {'GFLOP/s':>8}  "
            f"{'train ms':>9} {'GFLOP/s':>8}")
    if torch:
        head += f"  {'torch fwd / train ms':>21} {'x torch':>8}"
    head += "  flags"
    stride = rows[0]["stride"] if rows else 1
    lines = [f"3x3 convolutions, padding 1, stride {stride}; nominal GFLOP/s (training: 3x "
             f"the forward's); x torch: PyTorch's training time / ours (above 1: ours "
             f"faster); flags: <1/3 (training rate under a third of the best at the same "
             f"channels, steps of {MIN_FLAGGED * 1e3:g} ms or more), torch (PyTorch's "
             f"training over {TORCH_AHEAD}x faster)",
             head, "-" * len(head)]
    for r in rows:
        f, t = r["flops"] / r["ours_fwd"] / 1e9, 3 * r["flops"] / r["ours_train"] / 1e9
        line = (f"{'b' + str(r['batch']):>5} {r['map']:>2}x{r['map']:<2} "
                f"{str(r['c_in']) + '->' + str(r['c_out']):>10}  {r['ours_fwd'] * 1e3:>8.3f} "
                f"{f:>8.0f}  {r['ours_train'] * 1e3:>9.3f} {t:>8.0f}")
        if torch:
            line += (f"  {r['torch_fwd'] * 1e3:>9.3f} / {r['torch_train'] * 1e3:>9.3f} "
                     f"{r['torch_train'] / r['ours_train']:>8.2f}")
        lines.append(line + "  " + " ".join(r["flags"]))
    n_low = sum("<1/3" in r["flags"] for r in rows)
    n_torch = sum("torch" in r["flags"] for r in rows)
    lines.append(f"{len(rows)} cells: {n_low} under a third of their widths' best training "
                 f"rate" + (f", {n_torch} with PyTorch over {TORCH_AHEAD}x faster" if torch
                            else ""))
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small grid (smoke runs)")
    ap.add_argument("--strided", action="store_true", help="stride 2 instead of 1")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true", help="ours only")
    a = ap.parse_args(argv)
    if a.rounds < 1:
        ap.error(f"--rounds: expected at least 1, received {a.rounds}")
    import cianna_jax.xla_cpu

    cianna_jax.xla_cpu.tune()
    grid = QUICK if a.quick else GRID
    print(format_table(run(*grid, stride=2 if a.strided else 1, rounds=a.rounds,
                           torch=not a.no_torch)))


if __name__ == "__main__":
    main()
