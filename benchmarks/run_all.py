"""Run every benchmark and print one report: the one command of the benchmark suite.

    python benchmarks/run_all.py [--quick]

1. CIANNA's MNIST network, functional and imperative APIs, batches 16, 64 and 128 on
   10,000 images, with PyTorch in the same run when it is importable (ratios ours / PyTorch),
   time to the first training step and compilations during epochs 2-5;
2. an SDC1-like YOLO network at 256x256 (forward and training img/s);
3. the YOLO loss + gradient alone, XLA reference and Pallas kernel (the kernel only on a GPU);
4. peak host memory of ``create_dataset`` against the raw data size.

``--quick`` uses fewer images and one batch size (a smoke run, not for numbers).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_memory  # noqa: E402
import bench_mnist  # noqa: E402
import bench_yolo  # noqa: E402
import jax  # noqa: E402
import yolo_loss  # noqa: E402

import cianna_jax.xla_cpu  # noqa: E402


def main(argv=None) -> None:
    cianna_jax.xla_cpu.tune()  # XLA CPU flags: before any JAX computation
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    a = parser.parse_args(argv)
    n, batches, epochs = (1000, (64,), 1) if a.quick else (10_000, (16, 64, 128), 3)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} "
          f"({os.cpu_count()} CPUs), XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    print(f"\n== MNIST network, {n} images ==")
    print(bench_mnist.format_table(bench_mnist.run(n, batches, epochs)))
    print("\n== YOLO ==")
    print(bench_yolo.format_result(
        bench_yolo.run(size=64 if a.quick else 256, n=8 if a.quick else 32, batch=8,
                       repeats=1 if a.quick else 3)))
    print("\n== YOLO loss + gradient ==")
    yolo_loss.main(["--quick"] if a.quick else ["--first", "2"])
    print("\n== Memory ==")
    print(bench_memory.format_result(bench_memory.run(n=256 if a.quick else 4096)))


if __name__ == "__main__":
    main()
