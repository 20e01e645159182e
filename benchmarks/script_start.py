"""How long a CIANNA-style script waits for its first epoch, and what it compiles.

Runs CIANNA's MNIST example script (``cnn.init``, ``create_dataset``, the example
network, ``cnn.train`` for one iteration with validation; random 28x28 images, batch 64)
in fresh child processes, as users start it, and prints per run: the seconds from
``import cianna_jax`` to the end of that first ``cnn.train``, and the XLA programs
compiled on the way, by name (``jax.log_compiles``): the training and validation steps,
and any small program an eager jax.numpy or jax.random call compiled (optax's own two
scalar conversions, once per process, are named apart).

    python benchmarks/script_start.py [--repeats 3] [--images 256]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys

CHILD = r"""
import json, logging, re, sys, time
import numpy as np
import jax
names = []
class _Names(logging.Handler):
    def emit(self, record):
        m = re.search(r"Finished XLA compilation of jit\((\S+)\)", record.getMessage())
        if m:
            names.append(m.group(1))
logging.getLogger("jax._src.dispatch").addHandler(_Names())
n = int(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.uniform(size=(n + 64, 784)).astype(np.float32)
t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n + 64)]
with jax.log_compiles():
    t0 = time.perf_counter()
    import cianna_jax as cnn
    cnn.init(in_dim=np.array([28, 28]), in_nb_ch=1, out_dim=10, bias=0.1, b_size=64,
             comp_meth="C_CUDA", dynamic_load=1, seed=3, no_logo=1)
    cnn.create_dataset("TRAIN", size=n, input=x[:n], target=t[:n], silent=1)
    cnn.create_dataset("VALID", size=64, input=x[n:], target=t[n:], silent=1)
    cnn.conv(f_size=np.array([5, 5]), nb_filters=8, padding=np.array([2, 2]),
             activation="RELU", silent=1)
    cnn.pool(p_size=np.array([2, 2]), p_type="MAX", silent=1)
    cnn.conv(f_size=np.array([5, 5]), nb_filters=16, padding=np.array([2, 2]),
             activation="RELU", silent=1)
    cnn.pool(p_size=np.array([2, 2]), p_type="MAX", silent=1)
    cnn.dense(nb_neurons=256, activation="RELU", drop_rate=0.5, silent=1)
    cnn.dense(nb_neurons=128, activation="RELU", drop_rate=0.2, silent=1)
    cnn.dense(nb_neurons=10, strict_size=1, activation="SMAX", silent=1)
    cnn.train(nb_iter=1, learning_rate=0.004, momentum=0.9, control_interv=1, silent=2)
    seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "compiled": names}))
"""

#: the programs a training run needs; anything else is a small eager program
STEP_PROGRAMS = {"sample", "train_step", "train_steps", "all_finite", "_lay_out",
                 "eval_step", "eval_steps"}


#: optax's ``inject_hyperparams`` makes its step counter and float hyper-parameters with
#: eager jax.numpy calls: two scalar programs, compiled once per process
OPTAX_SCALARS = collections.Counter({"convert_element_type": 2})


def small_programs(names: list[str]) -> list[str]:
    """The compiled programs that are neither a run's own nor optax's scalar conversions."""
    rest = collections.Counter(n for n in names if n not in STEP_PROGRAMS) - OPTAX_SCALARS
    return list(rest.elements())


def run_once(images: int) -> dict:
    """One fresh child process: ``{"seconds", "compiled"}``."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-c", CHILD, str(images)], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes (default 3)")
    ap.add_argument("--images", type=int, default=256, help="training images (default 256)")
    args = ap.parse_args(argv)
    runs = []
    for i in range(args.repeats):
        r = run_once(args.images)
        small = small_programs(r["compiled"])
        optax = r["compiled"].count("convert_element_type") - small.count("convert_element_type")
        print(f"run {i + 1}: {r['seconds']:.2f} s from import to the first epoch's end; "
              f"{len(r['compiled'])} programs compiled, {len(small)} of them small eager ones"
              + (f": {dict(collections.Counter(small))}" if small else "")
              + (f" (besides optax's {optax} scalar conversions)" if optax else ""))
        runs.append(r)
    return runs


if __name__ == "__main__":
    main()
