"""CIANNA's SDC1 detector backbone, cianna_jax against PyTorch in the same process.

The network is the one of CIANNA's ``examples/SKAO_SDC1/train_network.py`` (repository
Deyht/CIANNA): 16 convolutions (5x5x32, then four stages of a 2x2 stride-2 conv
followed by 1x1 / 3x3 convs, up to 3x3x1024), one group norm (group size 4), a 1x1
conv of 2048 filters with dropout 0.25 and a 1x1 head of 117 filters (9 boxes x
(8 + 5 parameters), CIANNA's ``nb_yolo_filters`` of that script): 17 convolutions.
CIANNA's RELU is a leaky ReLU (slope 0.05).  The head is linear with the
squared-error loss on both sides (``0.5 * sum((y - t)^2) / B``), so the comparison is
like for like (CIANNA's YOLO loss adds about 2% on top).  SGD with momentum 0.8.

Training and inference are timed in alternation with PyTorch (same number of
threads), and the reported ratio is the median over rounds of the per-round ratio.

    python benchmarks/bench_sdc1.py [--size 128] [--batch 8] [--n 32] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(1, os.path.dirname(_HERE))  # the source tree, when not installed

from alternated import alternate, ratio_cell  # noqa: E402
from trained import Trained  # noqa: E402

import cianna_jax as cj  # noqa: E402
import cianna_jax.xla_cpu  # noqa: E402
from cianna_jax import host_memory, nn, parallel, training  # noqa: E402
from cianna_jax.precision import get_policy  # noqa: E402

LR, MOMENTUM = 0.00015, 0.8
THREADS = 2
HEAD = 117  # nb_yolo_filters of CIANNA's SDC1 script: 9 * (8 + 0 + 5)

#: (f_size, filters, stride, padding) of the 16 backbone convolutions, in order;
#: the group norm follows the 15th (3x3x1024)
BACKBONE = [(5, 32, 1, 2),
            (2, 16, 2, 0), (3, 24, 1, 1), (3, 32, 1, 1),
            (2, 64, 2, 0), (1, 128, 1, 0), (3, 192, 1, 1),
            (2, 128, 2, 0), (1, 192, 1, 0), (3, 384, 1, 1), (1, 256, 1, 0), (3, 384, 1, 1),
            (2, 512, 2, 0), (1, 768, 1, 0), (3, 1024, 1, 1),
            (1, 2048, 1, 0)]
NORM_AFTER = 14  # index in BACKBONE
DROP_LAST = 0.25


def sdc1_network(size: int = 128, drop: float = DROP_LAST, bias: float = 0.1) -> cj.Network:
    """The backbone with a linear 1x1 head (functional builders)."""
    layers = []
    for i, (f, nf, s, p) in enumerate(BACKBONE):
        last = i == len(BACKBONE) - 1
        layers.append(nn.conv([f, f], nf, stride=[s, s], padding=[p, p], activation="RELU",
                              drop_rate=drop if last else 0.0))
        if i == NORM_AFTER:
            layers.append(nn.norm(group_size=4, activation="LIN"))
    layers.append(nn.conv([1, 1], HEAD, activation="LIN"))
    return nn.network([size, size], 1, layers, bias=bias)


def flops_per_image(size: int) -> tuple[float, float]:
    """(forward, training) floating-point operations per image (multiply-adds x 2;
    training = 3x forward)."""
    macs, c, n = 0, 1, size
    for f, nf, s, p in BACKBONE:
        n = (n + 2 * p - f) // s + 1
        macs += n * n * f * f * c * nf
        c = nf
    macs += n * n * c * HEAD
    return 2.0 * macs, 6.0 * macs


def data(size: int, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = size // 16
    x = rng.uniform(size=(n, size, size, 1)).astype(np.float32)
    t = rng.normal(scale=0.1, size=(n, g, g, HEAD)).astype(np.float32)
    return x, t


def ours(size: int, batch: int, x, t, mode: str = "off", mesh=None) -> dict:
    """Closures for one training pass and one inference pass over ``x`` through the
    functional core's epoch functions, as the imperative API runs them
    (``training.train_epoch`` and ``cj.predict``, "auto": on CPU 8 batches per compiled
    call, batches past the end skipped) under CIANNA's ``mixed_precision`` ``mode``, and
    the first step time (one ``train_step``, compilation included).  ``mesh``: the
    inference passes split every batch over its devices (``cj.predict(..., mesh=)``)."""
    policy = get_policy(mode)
    net = sdc1_network(size)
    model = Trained(net, LR, MOMENTUM, policy)
    key = jax.random.key(1)
    t0 = time.perf_counter()
    p, s, loss = training.train_step(net, model.opt, model.params, model.state, x[:batch],
                                     t[:batch], np.int32(batch), key, step=np.int32(0),
                                     policy=policy)
    loss.block_until_ready()
    first = time.perf_counter() - t0
    model.params, model.state = p, s

    def epoch():
        model.epoch(x, t, batch)

    def inference():  # as cnn.forward: the weights laid out once per pass
        cj.predict(net, model.params, x, batch, policy=policy, mesh=mesh).block_until_ready()

    epoch()  # compiles the epoch's program (several steps per call)
    # a copy: layers not laid out keep the same arrays, which training steps donate
    laid = cj.inference_params(net, jax.tree.map(jnp.copy, model.params), policy)
    if mesh is not None:  # on every device once, as the weights are laid out once
        laid = parallel.replicate(laid, mesh)

    def steady():  # weights laid out once for many passes (cianna-jax predict on a field)
        cj.predict(net, laid, x, batch, policy=policy, mesh=mesh).block_until_ready()

    t0 = time.perf_counter()
    inference()
    first_infer = time.perf_counter() - t0
    steady()
    return dict(epoch=epoch, inference=inference, steady=steady, first_step=first,
                first_infer=first_infer, net=net)


def torch_model(size: int):
    import torch
    from torch import nn as tnn

    mods, c = [], 1
    for i, (f, nf, s, p) in enumerate(BACKBONE):
        mods += [tnn.Conv2d(c, nf, f, stride=s, padding=p), tnn.LeakyReLU(0.05)]
        if i == NORM_AFTER:
            mods.append(tnn.GroupNorm(nf // 4, nf, eps=1e-3))
        if i == len(BACKBONE) - 1:
            mods.append(tnn.Dropout(DROP_LAST))
        c = nf
    mods.append(tnn.Conv2d(c, HEAD, 1))
    torch.manual_seed(0)
    return tnn.Sequential(*mods)


def theirs(size: int, batch: int, x, t, warm: bool = True) -> dict | None:
    """The same network, loss and optimizer in PyTorch (NCHW, default settings); None
    without torch.  ``warm=False`` (``run_all.py --quick``): no warm-up epoch and
    inference (the first timed round then includes PyTorch's first-call costs; the
    first step is reported as nan)."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(THREADS)
    model = torch_model(size)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    tt = torch.from_numpy(np.ascontiguousarray(t.transpose(0, 3, 1, 2)))
    n = x.shape[0]

    def epoch():
        model.train()
        for i in range(0, n, batch):
            opt.zero_grad(set_to_none=True)
            y = model(xt[i:i + batch])
            loss = 0.5 * torch.sum((y - tt[i:i + batch]) ** 2) / batch
            loss.backward()
            opt.step()

    def inference():
        model.eval()
        with torch.inference_mode():
            for i in range(0, n, batch):
                model(xt[i:i + batch])

    if not warm:  # steady state: PyTorch has no weights to lay out, the same pass
        return dict(epoch=epoch, inference=inference, steady=inference,
                    first_step=float("nan"))
    t0 = time.perf_counter()
    epoch()
    first = time.perf_counter() - t0
    inference()
    return dict(epoch=epoch, inference=inference, steady=inference, first_step=first)


#: the name of the run whose inference is split over the CPU devices (:func:`run`)
PER_DEVICE = "cianna_jax per device"


def run(size: int = 128, batch: int = 8, n: int = 32, rounds: int = 5,
        warm_torch: bool = True, modes: tuple[str, ...] = (), probe=None) -> dict:
    """``modes``: CIANNA ``mixed_precision`` modes timed too, each as a run of its own
    (``cianna_jax <mode>``), beside the float32 one; PyTorch stays in float32.
    ``probe``: see :func:`alternated.alternate`.  Where the process has several CPU
    devices (``--cpu-devices``), a run :data:`PER_DEVICE` times the inference passes split
    over them (its training pass is the float32 run's, timed again)."""
    x, t = data(size, n)
    runs = {"cianna_jax": ours(size, batch, x, t)}
    cpus = jax.devices("cpu")
    if len(cpus) > 1 and batch % len(cpus) == 0:
        runs[PER_DEVICE] = ours(size, batch, x, t, mesh=parallel.make_mesh(platform="cpu"))
        runs[PER_DEVICE]["epoch"] = runs["cianna_jax"]["epoch"]
    for mode in modes:
        runs[f"cianna_jax {mode}"] = ours(size, batch, x, t, mode)
    th = theirs(size, batch, x, t, warm_torch)
    if th is not None:
        runs["torch"] = th
    firsts = {k: v["first_step"] for k, v in runs.items()}
    res = alternate({k: v for k, v in runs.items()}, n, rounds,
                    "torch" if th is not None else None, probe)
    for k in res:
        res[k]["first_step"] = firsts[k]
    fwd, trn = flops_per_image(size)
    return dict(size=size, batch=batch, n=n, rounds=rounds, results=res,
                gflop_train=trn / 1e9, gflop_infer=fwd / 1e9)


def format_result(r: dict) -> str:
    head = (f"{'SDC1 backbone':<30}{'train img/s':>12}{'infer img/s':>12}{'steady':>9}"
            f"{'train/torch':>12}{'infer/torch':>12}{'steady/torch':>13}{'GFLOP/s tr':>11}"
            f"{'1st step s':>11}{'spread':>12}")
    lines = [f"{r['size']}x{r['size']}x1, batch {r['batch']}, {r['n']} images, "
             f"{r['rounds']} alternated rounds; {r['gflop_train']:.2f} GFLOP per training "
             f"image, {r['gflop_infer']:.2f} per inference", head, "-" * len(head)]
    for name, v in r["results"].items():
        rt, ri = ratio_cell(v, "train"), ratio_cell(v, "infer")
        spread = f"{v['train_spread']:.2f}/{v['infer_spread']:.2f}"
        lines.append(f"{name + ' ' + str(r['size']):<30}{v['train']:>12,.1f}{v['infer']:>12,.1f}"
                     f"{v.get('steady', float('nan')):>9,.1f}{rt:>12}{ri:>12}"
                     f"{ratio_cell(v, 'steady'):>13}{v['train'] * r['gflop_train']:>11,.0f}"
                     f"{v['first_step']:>11.2f}{spread:>12}")
    lines.append("ratios: median over rounds of the per-round speed ratio against PyTorch; "
                 "infer: one pass over the images with the weights laid out at its start (as "
                 "cnn.forward after training); steady: the weights laid out once before (as "
                 "cianna-jax predict over a field); spread: slowest/fastest round "
                 "(train/infer), the machine's noise; torch's first step is one whole first "
                 "epoch")
    return "\n".join(lines)


def add_cpu_devices_argument(parser: argparse.ArgumentParser) -> None:
    """``--cpu-devices N``: the process's JAX CPU devices (see :func:`use_cpu_devices`)."""
    parser.add_argument("--cpu-devices", type=int, default=1, metavar="N",
                        help="JAX CPU devices of this process (e.g. one per core): with 2 "
                             "or more, SDC1's inference is also timed split over them "
                             "(cj.predict(..., mesh=)); training stays on one device")


def use_cpu_devices(n: int) -> None:
    """``--cpu-devices N``: :func:`cianna_jax.xla_cpu.use_cpu_devices` (ValueError for
    ``n`` < 1, RuntimeError once JAX started)."""
    cianna_jax.xla_cpu.use_cpu_devices(n, "--cpu-devices")


def main(argv=None) -> None:
    if argv is None:  # run as a script: huge pages for XLA's step buffers (and
        # PyTorch's), which glibc takes only from a process's start (cianna_jax.host_memory)
        host_memory.restart_with_hugepages([os.path.abspath(__file__), *sys.argv[1:]])
    cianna_jax.xla_cpu.tune()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--mixed-precision", nargs="*", default=[], metavar="MODE",
                        help="CIANNA mixed_precision modes to time too (e.g. TF32C_FP32A "
                             "FP16C_FP32A, as CIANNA's prediction scripts set), beside float32")
    add_cpu_devices_argument(parser)
    a = parser.parse_args(argv)
    use_cpu_devices(a.cpu_devices)
    for mode in a.mixed_precision:
        get_policy(mode)  # an unknown mode fails before any timing
    print(f"jax {jax.__version__}, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(format_result(run(a.size, a.batch, a.n, a.rounds, modes=tuple(a.mixed_precision))))


if __name__ == "__main__":
    main()
