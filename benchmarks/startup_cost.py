"""Where the seconds before a step's first run go: tracing, lowering, XLA compilation.

A jitted step is traced to a jaxpr (Python: the layers, autodiff, the custom VJPs),
lowered to StableHLO, then compiled by XLA.  A warm persistent compilation cache
(``CIANNA_JAX_COMPILE_CACHE``) skips only the last: tracing and lowering are paid at every
start, by every ``cianna-jax`` command and notebook.  This tool times the three phases of
:mod:`profile_step`'s workloads in one process, each repeat after ``jax.clear_caches()``
(so every repeat traces and compiles from scratch), and prints the fastest repeat of
each phase with the program's size (jaxpr equations at its top level, StableHLO lines).

    python benchmarks/startup_cost.py sdc1-train mnist-train [--repeats 3] [--size 128]
    python benchmarks/startup_cost.py sdc1-train --cpu-branches-only

``--cpu-branches-only`` is a measurement, not a mode: it traces every
``lax.platform_dependent`` with its CPU branch alone, as if the platform were known when
tracing, to show what tracing the other platforms' branches costs (the programs are
then CPU-only and are not run).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the workloads' modules
from profile_step import add_workload_arguments, checked_size, program  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Phases:
    """Fastest repeat of each phase (s) and the program's size."""
    workload: str
    trace: float
    lower: float
    compile: float
    eqns: int
    hlo_lines: int


@contextlib.contextmanager
def cpu_branches_only():
    """``lax.platform_dependent`` traced with its ``cpu`` branch alone (the default one
    where it has none) inside the block."""
    from jax import lax

    original = lax.platform_dependent

    def cpu_only(*args, cpu=None, default=None, **others):
        return (cpu or default)(*args)

    lax.platform_dependent = cpu_only
    try:
        yield
    finally:
        lax.platform_dependent = original


def measure(name: str, size: int, repeats: int, clock=time.perf_counter,
            mode: str = "off") -> Phases:
    """Trace, lower and compile ``name``'s step (under ``mixed_precision`` ``mode``)
    ``repeats`` times from scratch."""
    import jax

    p = program(name, size, mode)
    best = {"trace": float("inf"), "lower": float("inf"), "compile": float("inf")}
    for _ in range(repeats):
        jax.clear_caches()
        t0 = clock()
        traced = p.fn.trace(*p.args, **p.static)
        t1 = clock()
        lowered = traced.lower()
        t2 = clock()
        lowered.compile()
        t3 = clock()
        for phase, seconds in (("trace", t1 - t0), ("lower", t2 - t1), ("compile", t3 - t2)):
            best[phase] = min(best[phase], seconds)
    # the size of the last repeat's program (every repeat makes the same one)
    return Phases(name, best["trace"], best["lower"], best["compile"],
                  len(traced.jaxpr.eqns), lowered.as_text().count("\n"))


def format_rows(rows: list[Phases]) -> str:
    head = (f"{'workload':<16}{'trace s':>9}{'lower s':>9}{'compile s':>11}{'eqns':>7}"
            f"{'HLO lines':>11}")
    out = [head, "-" * len(head)]
    for r in rows:
        out.append(f"{r.workload:<16}{r.trace:>9.3f}{r.lower:>9.3f}{r.compile:>11.3f}"
                   f"{r.eqns:>7}{r.hlo_lines:>11}")
    out.append("fastest of the repeats, each from scratch (jax.clear_caches); eqns: the "
               "jaxpr's top level")
    return "\n".join(out)


def main(argv=None) -> list[Phases]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_workload_arguments(ap, several=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cpu-branches-only", action="store_true",
                    help="trace lax.platform_dependent's CPU branches alone (a measurement)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, received {args.repeats}")
    sizes = [checked_size(ap, w, args.size) for w in args.workloads]

    import cianna_jax.xla_cpu
    cianna_jax.xla_cpu.tune(warn=False)  # the flags users' programs compile with
    rows = []
    with cpu_branches_only() if args.cpu_branches_only else contextlib.nullcontext():
        for name, size in zip(args.workloads, sizes):
            rows.append(measure(name, size, args.repeats, mode=args.mixed_precision))
            print(f"{name}: done", file=sys.stderr, flush=True)
    title = "startup cost" + (", platform_dependent traced with its CPU branch alone"
                              if args.cpu_branches_only else "")
    print(f"{title}\n{format_rows(rows)}")
    return rows


if __name__ == "__main__":
    main()
