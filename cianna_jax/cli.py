"""The ``cianna-jax`` console command: ``demo``, ``info`` and ``--version``.

Before a command does any JAX work, :func:`cianna_jax.xla_cpu.tune` sets the XLA CPU
flags measured best for these networks (``CIANNA_JAX_KEEP_XLA_FLAGS=1``: leave them).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys

from . import xla_cpu
from ._version import __version__

__all__ = ["main"]


def _info() -> int:
    import jax
    import numpy as np
    import optax

    print(f"cianna_jax {__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"jax {jax.__version__}, jaxlib {jax.lib.__version__ if hasattr(jax.lib, '__version__') else '?'}, "
          f"numpy {np.__version__}, optax {optax.__version__}")
    print(f"XLA_FLAGS: {os.environ.get('XLA_FLAGS', '')!r}")
    print(f"default backend: {jax.default_backend()}")
    for d in jax.devices():
        print(f"  device {d.id}: {d.platform} {getattr(d, 'device_kind', '')}")
    try:
        import pallas_kernels  # noqa: F401

        print("pallas_kernels: importable")
    except ImportError as err:  # pragma: no cover - packaging problem
        print(f"pallas_kernels: not importable ({err})")
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    metrics = run_demo(out=args.out, quick=args.quick, seed=args.seed)
    return 0 if metrics["recall"] > 0 else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cianna-jax`` command."""
    parser = argparse.ArgumentParser(
        prog="cianna-jax", description="CIANNA in JAX: radio-source detection demo and tools")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a YOLO detector on a synthetic radio field and "
                                       "evaluate it on a held-out field")
    demo.add_argument("--quick", action="store_true", help="a run of under a minute")
    demo.add_argument("--seed", type=int, default=0, help="random seed (data and training)")
    demo.add_argument("--out", default="cianna_demo", help="output folder (PNG, CSV, network)")
    sub.add_parser("info", help="versions, devices and default backend")
    args = parser.parse_args(argv)
    xla_cpu.tune()  # before any JAX work; warns if a backend already started
    if args.command == "info":
        return _info()
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
