"""In-process A/B of XLA compile options on one compiled step, with a control.

    python benchmarks/ab_options.py mnist-train --option xla_cpu_enable_fast_math=true
    python benchmarks/ab_options.py sdc1-infer --size 128 --option NAME=VALUE --option ...
    python benchmarks/ab_options.py sdc1-infer --size 256 --steps 8 --switch ...
    python benchmarks/ab_options.py sdc1-train --size 256 \
        --switch cianna_jax.layers.fused_tiles:FUSE=false

Each ``--option NAME=VALUE`` is one variant: the workload's step (the programs
``profile_step.py`` profiles) compiled with that XLA option (``Lowered.compile``'s
``compiler_options``; ``true`` / ``false`` / numbers are converted, the rest stays text).
Beside them run ``base`` (the defaults) and ``control``: the same defaults compiled a
second time.  The control is the noise floor of the comparison: on this project's 2-core
machine two identical MNIST programs measured x1.043 apart over 11 alternated rounds, one
faster in 73% of them (benchmarks/README.md, thirty-third session), so a variant that
does not clear the control's distance from x1.000 has shown nothing.  The ``same HLO``
column says whether an option changed the optimized module XLA compiled (its text):
options of XLA's passes (fusion emitters, tiling) change it; options that only change
LLVM's code generation (fast math, vector width) keep it, and so does an option at its
default value.  Each ``--switch MODULE:NAME=VALUE`` is a variant too: the step traced
and compiled anew with one of the package's module constants set (a form rule's switch,
e.g. ``cianna_jax.layers.conv_forms:WINOGRAD=false``), the constant restored after.

``--steps K`` runs K batches per compiled call (a loop, as ``train_epoch`` and ``predict``
run 8 on CPU; the SDC1 and ImageNet workloads run one by default).  A single-step call pays
the step's fresh temporaries at every call (XLA's CPU runtime maps them anew per call: page
faults, zeroed pages), which K steps per call pay once: a change that only saves such memory
traffic shows there and not in the product's calls (the fifty-eighth session's unrolled
Winograd passes: SDC1 256 inference x1.03-1.05 in single-step A/Bs, nothing in ``predict``'s
8-batch calls).  Check a gain with ``--steps 8`` before keeping it.

Every round probes the cores' state (``core_latency.py``), then times each variant's
step (the fastest of ``--calls`` calls), in an order rotated from round to round.
Per variant it prints the median time per step, the median over rounds of the per-round
ratio against ``base`` (above 1: faster), the share of rounds it was faster, and the
slowest / fastest round.  An option this jaxlib does not know stops it with its name.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the workloads' modules
from core_latency import can_probe, round_trip_ns, state  # noqa: E402
from profile_step import (  # noqa: E402
    add_steps_argument,
    add_workload_arguments,
    checked_size,
    checked_steps,
    workload,
)

#: the names of the two default-compiled programs
BASE, CONTROL = "base", "control"


def parse_option(text: str) -> tuple[str, bool | int | float | str]:
    """``"NAME=VALUE"`` -> (name, value): ``true`` / ``false`` as booleans, integers and
    floats as numbers, anything else as text.  ValueError without ``=`` or a name."""
    name, sep, value = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValueError(f"--option: expected NAME=VALUE, received {text!r}")
    value = value.strip()
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    for kind in (int, float):
        try:
            return name, kind(value)
        except ValueError:
            pass
    return name, value


def alternate_rounds(runs: dict[str, Callable[[], None]], rounds: int, calls: int,
                     steps: int, probe: Callable[[], float | None] | None = None,
                     clock: Callable[[], float] = time.perf_counter
                     ) -> tuple[dict[str, list[float]], list[str]]:
    """Seconds per step of each run, per round (the fastest of ``calls`` calls of
    ``steps`` steps each), the runs' order rotated by one every round, and each round's
    cores' state (``core_latency.state`` of ``probe()``, taken first; "" without
    ``probe``)."""
    names = list(runs)
    times: dict[str, list[float]] = {n: [] for n in names}
    states = []
    for r in range(rounds):
        states.append(state(probe()) if probe is not None else "")
        for name in names[r % len(names):] + names[:r % len(names)]:
            best = float("inf")
            for _ in range(calls):
                t0 = clock()
                runs[name]()
                best = min(best, clock() - t0)
            times[name].append(best / steps)
    return times, states


def parse_switch(text: str) -> tuple[str, str, bool | int | float | str]:
    """``"MODULE:NAME=VALUE"`` -> (module, name, value as :func:`parse_option` reads
    it).  ValueError without the module or the name."""
    module, sep, rest = text.partition(":")
    if not sep or not module.strip():
        raise ValueError(f"--switch: expected MODULE:NAME=VALUE, received {text!r}")
    name, value = parse_option(rest)
    return module.strip(), name, value


def switched_workload(module: str, name: str, value, build: Callable[[], tuple]) -> tuple:
    """``build()`` traced and compiled anew (JAX's caches cleared) with ``module.name``
    set to ``value``, then the constant restored; ValueError naming a module or constant
    that does not exist."""
    import jax
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"--switch: no module {module!r} ({e})") from None
    if not hasattr(mod, name):
        raise ValueError(f"--switch: {module} has no constant {name!r}")
    old = getattr(mod, name)
    setattr(mod, name, value)
    jax.clear_caches()
    try:
        return build()
    finally:
        setattr(mod, name, old)
        jax.clear_caches()


def summarize(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per run: ``ms`` (median per step), ``ratio`` (median over rounds of base's time /
    the run's: above 1 faster), ``faster`` (share of rounds faster than base) and
    ``spread`` (slowest / fastest round)."""
    base = np.asarray(times[BASE])
    out = {}
    for name, ts in times.items():
        ts = np.asarray(ts)
        ratios = base / ts
        out[name] = {"ms": 1e3 * float(np.median(ts)), "ratio": float(np.median(ratios)),
                     "faster": float(np.mean(ratios > 1.0)),
                     "spread": float(ts.max() / ts.min())}
    return out


def format_table(summary: dict[str, dict[str, float]], same: dict[str, bool],
                 options: dict[str, str]) -> str:
    """The printed table, one row per run (base first, then the control); ``same``: per
    run, whether its optimized module's text is base's; ``options``: the variants'
    labels."""
    width = max([len("variant")] + [len(options.get(n, n)) for n in summary])
    lines = [f"{'variant':<{width}} {'ms/step':>8} {'x base':>7} {'faster':>7} "
             f"{'spread':>7}  same HLO"]
    for name, s in summary.items():
        label = options.get(name, name)
        lines.append(f"{label:<{width}} {s['ms']:8.3f} {s['ratio']:7.3f} "
                     f"{100 * s['faster']:6.0f}% {s['spread']:7.2f}  "
                     f"{'-' if name == BASE else ('yes' if same[name] else 'no')}")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_workload_arguments(ap)
    add_steps_argument(ap)
    ap.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                    help="an XLA compile option: one variant each (repeat the flag)")
    ap.add_argument("--switch", action="append", default=[], metavar="MODULE:NAME=VALUE",
                    help="a module constant of the package set while one variant is traced "
                         "and compiled (repeat the flag)")
    ap.add_argument("--rounds", type=int, default=15, help="alternated rounds")
    ap.add_argument("--calls", type=int, default=3, help="calls per variant and round "
                    "(the fastest is kept)")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        ap.error(f"--rounds and --calls must be >= 1, received {args.rounds} and {args.calls}")
    try:
        options = [parse_option(o) for o in args.option]
        switches = [parse_switch(o) for o in args.switch]
    except ValueError as e:
        ap.error(str(e))
    args.size = checked_size(ap, args.workload, args.size)
    args.steps = checked_steps(ap, args.steps)

    import jax

    import cianna_jax.xla_cpu
    cianna_jax.xla_cpu.tune()  # before the backend starts (XLA reads its flags once)

    variants = {BASE: None, CONTROL: None}
    labels = {}
    for i, (name, value) in enumerate(options):
        variants[f"v{i}"] = {name: value}
        labels[f"v{i}"] = f"{name}={value}"
    runs, texts, steps = {}, {}, 1
    for key, opts in variants.items():
        try:
            runs[key], texts[key], steps = workload(args.workload, args.size, opts,
                                                     args.mixed_precision, args.steps)
        except jax.errors.JaxRuntimeError as e:
            ap.error(f"--option {labels.get(key, key)}: XLA refused it: {e}")
    for i, (module, name, value) in enumerate(switches):
        key = f"s{i}"
        labels[key] = f"{module.rsplit('.', 1)[-1]}.{name}={value}"
        try:
            runs[key], texts[key], steps = switched_workload(
                module, name, value, lambda: workload(args.workload, args.size,
                                                  mode=args.mixed_precision,
                                                  steps=args.steps))
        except ValueError as e:
            ap.error(str(e))
    probe = round_trip_ns if can_probe() else None
    times, states = alternate_rounds(runs, args.rounds, args.calls, steps, probe)
    same = {k: texts[k] == texts[BASE] for k in runs}
    print(f"{args.workload}: {args.rounds} alternated rounds, fastest of {args.calls} "
          f"calls of {steps} step(s) per variant and round, on {jax.default_backend()}")
    if probe is not None:
        print("cores' state per round: " + ", ".join(
            f"{s} {states.count(s)}" for s in ("near", "far") if states.count(s)))
    print(format_table(summarize(times), same, labels))
    c = summarize(times)[CONTROL]
    print(f"noise floor: the control (the defaults compiled again) measured x{c['ratio']:.3f}"
          f", faster in {100 * c['faster']:.0f}% of the rounds")


if __name__ == "__main__":
    main()
