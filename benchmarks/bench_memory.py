"""Peak host memory of ``cnn.create_dataset``: RSS growth against the raw data size.

Runs in a fresh Python process (so earlier allocations do not hide the peak): builds
the input and target arrays, resets the kernel's peak-RSS counter, creates the
dataset through the imperative API and reports the peak RSS growth divided by the
size of the raw data (about 1.0 means one copy).

    python benchmarks/bench_memory.py [--n 4096] [--size 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import cianna_jax.xla_cpu

_CHILD = r"""
import json, sys
import numpy as np
import cianna_jax as cnn

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)

n, size = int(sys.argv[1]), int(sys.argv[2])
cnn.init(in_dim=[size, size], in_nb_ch=1, out_dim=10, b_size=32, comp_meth="C_BLAS",
         seed=0, no_logo=1)
rng = np.random.default_rng(0)
x = rng.uniform(size=(n, size * size)).astype(np.float32)
t = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = status("VmRSS")
cnn.create_dataset("TRAIN", n, x, t, silent=1)
peak = status("VmHWM")
print(json.dumps(dict(n=n, size=size, raw=x.nbytes + t.nbytes, growth=peak - base,
                      after=status("VmRSS") - base)))
"""


def run(n: int = 4096, size: int = 64) -> dict:
    """Peak RSS growth of creating a dataset of ``n`` images of ``size`` x ``size``."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(size)], check=True,
                         capture_output=True, text=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    res["ratio"] = res["growth"] / res["raw"]
    return res


def format_result(r: dict) -> str:
    mib = 1024 ** 2
    return (f"create_dataset of {r['n']} images {r['size']}x{r['size']}: raw data "
            f"{r['raw'] / mib:.1f} MiB, peak RSS growth {r['growth'] / mib:.1f} MiB "
            f"({r['ratio']:.2f}x the raw data), kept after {r['after'] / mib:.1f} MiB")


def main(argv=None) -> None:
    cianna_jax.xla_cpu.tune()  # XLA CPU flags (inherited by the child process)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--size", type=int, default=64)
    a = parser.parse_args(argv)
    print(format_result(run(a.n, a.size)))


if __name__ == "__main__":
    main()
