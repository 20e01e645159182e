"""Training and inference speed of CIANNA's MNIST example network, with PyTorch alongside.

Network: conv 5x5x8 pad 2 - max pool 2 - conv 5x5x16 pad 2 - max pool 2 -
dense 256 RELU drop 0.5 - dense 128 RELU drop 0.2 - dense 10 SMAX, on random
28x28 images.  Measures, per batch size, in one process:

* the functional core (``training.train_epoch``, ``cj.predict``) and the
  imperative API (``cnn.train`` / ``cnn.forward``): training and inference img/s,
  medians over epochs (functional, imperative and PyTorch epochs alternate, for fair
  ratios);
* the same network in PyTorch (2 threads, SGD momentum) when ``torch`` is importable;
* the time to the first finished training step (compilation included) and the number
  of XLA compilations during epochs 2-5 (the ragged last batch included).

    python benchmarks/bench_mnist.py [--n 10000] [--batch 16 64 128] [--epochs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import tempfile
import time

import jax
import numpy as np
from alternated import alternate, ratio_cell

import cianna_jax as cj
import cianna_jax.xla_cpu
from cianna_jax import nn, training
from cianna_jax.api import get_state
from cianna_jax.precision import FP32

LR, MOMENTUM = 0.004, 0.9
THREADS = 2


def mnist_network() -> cj.Network:
    """CIANNA's MNIST example network (functional builders)."""
    return nn.network([28, 28], 1, [
        nn.conv([5, 5], 8, padding=[2, 2], activation="RELU"),
        nn.pool([2, 2], p_type="MAX"),
        nn.conv([5, 5], 16, padding=[2, 2], activation="RELU"),
        nn.pool([2, 2], p_type="MAX"),
        nn.dense(256, activation="RELU", drop_rate=0.5),
        nn.dense(128, activation="RELU", drop_rate=0.2),
        nn.dense(10, activation="SMAX", strict_size=1),
    ], bias=0.1)


def mnist_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random 28x28 images (CIANNA rows) and one-hot targets."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n, 784)).astype(np.float32)
    return x, np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]


class CompileCounter:
    """Counts XLA backend compilations (a jax.monitoring listener, registered once)."""

    def __init__(self) -> None:
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._on_event)

    def _on_event(self, event: str, duration: float, **_kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1


def median_rate(fn, n_items: int, repeats: int) -> float:
    """Median items/s of ``fn`` over ``repeats`` timed calls (after one warm-up call)."""
    fn()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        rates.append(n_items / (time.perf_counter() - t0))
    return float(np.median(rates))


def first_train_step(net, opt, state: dict, x, t, batch: int, like_epoch: bool = False
                     ) -> float:
    """Seconds from the call to the end of the first training step (compilation included);
    updates ``state`` ("p": params, "s": optimizer state).  ``x``: images (core layout).
    ``like_epoch``: call the step with the arguments ``training.train_epoch`` passes (step
    index, image counter, the static options spelled out), so that the epochs reuse its
    compiled program instead of compiling a second one (``--quick``: its epochs then run
    one step per call; otherwise they take ``train_epoch``'s "auto", several per call)."""
    t0 = time.perf_counter()
    xb, tb, nv = next(training.iterate_batches(x, t, batch))
    if like_epoch:
        p, s, loss = training.train_step(net, opt, state["p"], state["s"], xb, tb,
                                         np.int32(nv), jax.random.key(1), loss_scale=1.0,
                                         policy=FP32, nb_im_iter=np.int32(0), step=np.int32(0),
                                         exact=False)
    else:
        p, s, loss = training.train_step(net, opt, state["p"], state["s"], xb, tb,
                                         np.int32(nv), jax.random.key(1))
    loss.block_until_ready()
    state["p"], state["s"] = p, s
    return time.perf_counter() - t0


def bench_functional(x, t, batch: int, epochs: int, counter: CompileCounter,
                     like_epoch: bool = False) -> dict:
    """Functional core: first step (compilation included), compilations in epochs 2-5,
    training and inference img/s.  ``x``: CIANNA rows (converted to images here).
    ``like_epoch``: see :func:`first_train_step`."""
    net = mnist_network()
    x = cj.rows_to_images(net, x)  # (N, 28, 28, 1), the core's channel-last layout
    params = cj.init_params(jax.random.key(0), net)
    opt = cj.make_optimizer(LR, MOMENTUM, masks=functools.partial(cj.cianna_masks, net))
    state = {"p": params, "s": opt.init(params), "epoch": 0}
    first_step = first_train_step(net, opt, state, x, t, batch, like_epoch)

    def epoch():
        p, s, total = training.train_epoch(net, opt, state["p"], state["s"], x, t, batch,
                                           jax.random.key(state["epoch"]),
                                           steps_per_call=1 if like_epoch else "auto")
        total.block_until_ready()
        state["p"], state["s"] = p, s
        state["epoch"] += 1

    epoch()
    before = counter.count
    for _ in range(4):
        epoch()
    recompiles = counter.count - before

    def inference():  # as cnn.forward: the weights laid out once per pass
        cj.predict(net, state["p"], x, batch).block_until_ready()

    inference()
    return dict(epoch=epoch, inference=inference, first_step=first_step, recompiles=recompiles)


class _Quiet(contextlib.ExitStack):
    """Inside a scratch directory (CIANNA's files go there), standard output muted."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self.directory = directory

    def __enter__(self):
        super().__enter__()
        self.enter_context(contextlib.chdir(self.directory))
        self.enter_context(contextlib.redirect_stdout(open(os.devnull, "w")))
        return self


def bench_imperative(x, t, batch: int, epochs: int, counter: CompileCounter,
                     scratch: str) -> dict:
    """Imperative API (``import cianna_jax as cnn``): the first ``cnn.train`` epoch
    (compilations included), compilations in epochs 2-5, and closures for one training
    epoch (shuffling included, no control step) and one ``cnn.forward`` over the data."""
    cnn = cj
    n = x.shape[0]
    with _Quiet(scratch):
        cnn.init(in_dim=[28, 28], in_nb_ch=1, out_dim=10, bias=0.1, b_size=batch,
                 comp_meth="C_BLAS", seed=0, no_logo=1,
                 data_parallel=False)  # one device, whatever run_all --cpu-devices gives
        cnn.create_dataset("TRAIN", n, x, t, silent=1)
        cnn.create_dataset("VALID", min(n, 1000), x[:1000], t[:1000], silent=1)
        cnn.create_dataset("TEST", n, x, t, silent=1)
        cnn.conv(f_size=[5, 5], nb_filters=8, padding=[2, 2], activation="RELU", silent=1)
        cnn.pool(p_size=[2, 2], p_type="MAX", silent=1)
        cnn.conv(f_size=[5, 5], nb_filters=16, padding=[2, 2], activation="RELU", silent=1)
        cnn.pool(p_size=[2, 2], p_type="MAX", silent=1)
        cnn.dense(nb_neurons=256, activation="RELU", drop_rate=0.5, silent=1)
        cnn.dense(nb_neurons=128, activation="RELU", drop_rate=0.2, silent=1)
        cnn.dense(nb_neurons=10, strict_size=1, activation="SMAX", silent=1)
        network = get_state().id
        t0 = time.perf_counter()
        cnn.train(nb_iter=1, learning_rate=LR, momentum=MOMENTUM, control_interv=1, silent=1)
        first_epoch = time.perf_counter() - t0
        before = counter.count
        cnn.train(nb_iter=4, learning_rate=LR, momentum=MOMENTUM, control_interv=1, silent=1)
        recompiles = counter.count - before

    def epoch():
        with _Quiet(scratch):
            cnn.train(nb_iter=1, learning_rate=LR, momentum=MOMENTUM, control_interv=0,
                      silent=1, network=network)

    def inference():
        with _Quiet(scratch):
            cnn.forward(saving=0, silent=1, network=network)

    inference()
    return dict(epoch=epoch, inference=inference, first_epoch=first_epoch,
                recompiles=recompiles)


def bench_torch(x, t, batch: int, epochs: int) -> dict | None:
    """The same network in PyTorch (2 threads, SGD momentum); None without torch."""
    try:
        import torch
    except ImportError:
        return None
    from torch import nn as tnn

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = tnn.Sequential(
        tnn.Conv2d(1, 8, 5, padding=2), tnn.LeakyReLU(0.05), tnn.MaxPool2d(2),
        tnn.Conv2d(8, 16, 5, padding=2), tnn.LeakyReLU(0.05), tnn.MaxPool2d(2),
        tnn.Flatten(),
        tnn.Linear(784, 256), tnn.Dropout(0.5), tnn.LeakyReLU(0.05),
        tnn.Linear(256, 128), tnn.Dropout(0.2), tnn.LeakyReLU(0.05),
        tnn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    xt = torch.from_numpy(x).reshape(-1, 1, 28, 28)
    yt = torch.from_numpy(t.argmax(1))
    loss_fn = tnn.CrossEntropyLoss()

    def epoch():
        model.train()
        for start in range(0, x.shape[0], batch):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[start:start + batch]), yt[start:start + batch])
            loss.backward()
            opt.step()

    def inference():
        model.eval()
        with torch.inference_mode():
            for start in range(0, x.shape[0], batch):
                torch.softmax(model(xt[start:start + batch]), 1)

    epoch()
    inference()
    return dict(epoch=epoch, inference=inference)


def run(n: int = 10_000, batches=(16, 64, 128), epochs: int = 3,
        like_epoch: bool = False, probe=None) -> list[dict]:
    """Every measurement for every batch size; one dict per batch size.  ``like_epoch``
    (``run_all.py --quick``): the functional first step shares the epochs' compiled
    program (see :func:`first_train_step`).  ``probe``: see :func:`alternated.alternate`."""
    x, t = mnist_data(n)
    counter = CompileCounter()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        for batch in batches:
            res = dict(batch=batch, functional=bench_functional(x, t, batch, epochs, counter,
                                                                like_epoch))
            res["imperative"] = bench_imperative(x, t, batch, epochs, counter, scratch)
            res["torch"] = bench_torch(x, t, batch, epochs)
            timed = {k: res[k] for k in ("functional", "imperative", "torch")
                     if res[k] is not None}
            rates = alternate(timed, n, epochs, "torch" if res["torch"] else None, probe)
            for k, r in timed.items():
                del r["epoch"], r["inference"]
                r.update(rates[k])
            results.append(res)
    return results


def format_table(results: list[dict]) -> str:
    """A plain-text table of :func:`run`'s results."""
    head = (f"{'batch':>5} {'API':<11}{'train img/s':>12}{'infer img/s':>12}"
            f"{'train/torch':>12}{'infer/torch':>12}{'1st step s':>11}{'recompiles':>11}")
    lines = [head, "-" * len(head)]
    for r in results:
        for api in ("functional", "imperative", "torch"):
            v = r[api]
            if v is None:
                continue
            ratio_t, ratio_i = ratio_cell(v, "train"), ratio_cell(v, "infer")
            first = v.get("first_step", v.get("first_epoch"))
            first = "" if first is None else f"{first:.2f}" + ("" if "first_step" in v else "*")
            rec = "" if "recompiles" not in v else str(v["recompiles"])
            lines.append(f"{r['batch']:>5} {api:<11}{v['train']:>12,.0f}{v['infer']:>12,.0f}"
                         f"{ratio_t:>12}{ratio_i:>12}{first:>11}{rec:>11}")
    lines.append("* imperative: the whole first cnn.train epoch (compilations, control step); "
                 "recompiles: XLA compilations during epochs 2-5; ratios: median over rounds "
                 "of the per-round speed ratio against PyTorch, all APIs timed in alternation")
    return "\n".join(lines)


def main(argv=None) -> None:
    cianna_jax.xla_cpu.tune()  # XLA CPU flags: before any JAX computation
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="number of images")
    parser.add_argument("--batch", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (median)")
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {args.n} images")
    print(format_table(run(args.n, tuple(args.batch), args.epochs)))


if __name__ == "__main__":
    main()
