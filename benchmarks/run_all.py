"""Run every benchmark and print one report: the one command of the benchmark suite.

    python benchmarks/run_all.py [--quick] [--no-extras] [--cpu-devices 2]

First the summary table (issue 16), then the details it comes from:

1. CIANNA's SDC1 detector backbone (``bench_sdc1.py``: the 17 convolutions of CIANNA's
   examples/SKAO_SDC1/train_network.py, one group norm, a 1x1 head, squared-error loss,
   SGD momentum), training and inference img/s against PyTorch in the same process
   (alternated rounds, same number of threads), 128x128 and 256x256, batch 8, epochs of 32
   and 64 images;
2. CIANNA's MNIST network at batch 64 (``bench_mnist.py``: functional and imperative
   APIs against PyTorch, alternated epochs);
3. first training step: MNIST and SDC1 128x128, each cold and with the persistent
   compilation cache warm, in fresh processes (``first_step.py``);
4. the small-map check: a 3x3 convolution's rate on 8x8 down to 1x1 maps
   (``bench_smallmap.py``);
   (before them: the machine's float32 matrix-product rate, XLA and PyTorch,
   ``machine_peak.py``, the yardstick of the SDC1 GFLOP/s column);
5. extras (skipped by ``--no-extras``): the SDC1-like YOLO network, the YOLO loss alone,
   host memory of ``create_dataset``.

``--quick`` (the smoke test, about half a minute on 2 cores) is a check that everything
runs, not numbers: XLA's optimisations mostly off (``jax_disable_most_optimizations``
and, where XLA has them, the classic fusion emitters: compilation dominates such short runs),
SDC1 at 64x64 on one batch (PyTorch not warmed up), MNIST on 96 images, the small-map
check on 4x4 and 1x1 maps, one round, the first training steps measured in this process
(no fresh processes, no cache) and no extras.  Ratios are medians over rounds of the
per-round ratio; the spread column (slowest / fastest round) tells how noisy the machine
was.  ``--cpu-devices N`` gives the process N JAX CPU devices and adds SDC1 rows "per
device": inference split over them (``training.predict(..., mesh=)``); everything else
runs on one device as before.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _HERE)
sys.path.insert(1, os.path.dirname(_HERE))  # the source tree, when not installed

import core_latency  # noqa: E402

import cianna_jax.xla_cpu  # noqa: E402
from cianna_jax import host_memory  # noqa: E402

TARGETS = {"sdc1_train": 1.15, "sdc1_infer": 1.3, "mnist_train": 2.0, "mnist_infer": 2.5}
SMALL_MAP_TARGET = 0.33
FIRST_STEP_TARGET_S = 3.0
#: version of the ``--json`` record (compare_runs.py checks it)
RECORD_FORMAT = 1


def summary_rows(sdc1: list[dict], mnist: list[dict]) -> list[dict]:
    """The summary table's rows: ``workload``, ``ours`` and ``torch`` (img/s; torch None
    without PyTorch), ``ratio`` (ours / PyTorch, median of the per-round ratios; None
    without PyTorch), ``target`` (None for a mixed-precision mode's rows: the targets are
    float32's) and ``spread`` (slowest / fastest of our rounds; None for MNIST); with the
    cores' state probed every round (:mod:`core_latency`), ``ratio_near`` / ``ratio_far``
    (the median ratio of the rounds in that state, None without any) and ``rounds_near`` /
    ``rounds_far``."""
    rows = []
    for r in sdc1:
        th = r["results"].get("torch")
        for run in [k for k in r["results"] if k.startswith("cianna_jax")]:
            ours = r["results"][run]
            mode = run[len("cianna_jax "):]  # a mixed-precision mode's rows: no target
            # bench_sdc1.PER_DEVICE: inference split over the CPU devices, a target
            split = run.endswith(" per device")
            for kind, name, target in (("train", "training", "sdc1_train"),
                                       ("infer", "inference", "sdc1_infer"),
                                       ("steady", "inference, laid out", "sdc1_infer")):
                if kind not in ours or (split and kind == "train"):  # its training: ours
                    continue
                rows.append(dict(
                    workload=f"SDC1 {r['size']} b{r['batch']} {name}" + (f" {mode}" if mode else ""),
                    ours=ours[kind], torch=th[kind] if th else None,
                    ratio=ours.get(kind + "_ratio"),
                    target=None if mode and not split else TARGETS[target],
                    spread=ours[kind + "_spread"], **_by_state(ours, kind)))
    for r in mnist:
        th = r["torch"]
        for api in ("functional", "imperative"):
            v = r[api]
            for kind, name in (("train", "training"), ("infer", "inference")):
                rows.append(dict(workload=f"MNIST b{r['batch']} {api[:5]}. {name}", ours=v[kind],
                                 torch=th[kind] if th else None, ratio=v.get(kind + "_ratio"),
                                 target=TARGETS["mnist_" + kind], spread=None,
                                 **_by_state(v, kind)))
    return rows


def _by_state(res: dict, kind: str) -> dict:
    """A summary row's per-state fields from one run's :func:`alternated.alternate`
    results (none when its rounds were not probed)."""
    probes = res.get(kind + "_round_trip_ns")
    if probes is None:
        return {}
    states = [core_latency.state(ns) for ns in probes]
    return dict(ratio_near=res.get(kind + "_ratio_near"), ratio_far=res.get(kind + "_ratio_far"),
                rounds_near=states.count("near"), rounds_far=states.count("far"),
                round_trip_ns=list(probes))


def by_state_table(rows: list[dict]) -> str:
    """The ratios split by the cores' state (:mod:`core_latency`), for the rows whose
    rounds were probed; "" when none were."""
    rows = [r for r in rows if "rounds_far" in r and r["ratio"] is not None]
    if not rows:
        return ""
    w = 1 + max([30] + [len(r["workload"]) for r in rows])
    head = f"{'workload':<{w}}{'near':>8}{'rounds':>8}{'far':>8}{'rounds':>8}{'target':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        near, far = (f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("ratio_near",
                                                                            "ratio_far"))
        target = f"{r['target']:.2f}" if r["target"] is not None else ""
        lines.append(f"{r['workload']:<{w}}{near:>8}{r['rounds_near']:>8}{far:>8}"
                     f"{r['rounds_far']:>8}{target:>8}")
    lines.append(f"near / far: median ratio of the rounds whose two CPUs were near / far apart "
                 f"(a byte's round trip between them at most / above {core_latency.far_ns():.0f} "
                 f"ns, this processor's line in benchmarks/core_latency.py, probed before "
                 f"each kind of each round)")
    return "\n".join(lines)


def small_map_check(small: list[dict]) -> dict | None:
    """The slowest map's rate over the first (largest) map's rate: ``forward``,
    ``training`` and, when measured, ``xla_forward`` (XLA's convolution alone)."""
    if not small:
        return None
    ref = small[0]
    out = dict(reference=ref["size"],
               training=min(3 * r["flops"] / r["new_train"] for r in small) / (
                   3 * ref["flops"] / ref["new_train"]),
               forward=min(r["flops"] / r["new_fwd"] for r in small) / (
                   ref["flops"] / ref["new_fwd"]))
    if "xla_fwd" in ref:
        out["xla_forward"] = min(r["flops"] / r["xla_fwd"] for r in small) / (
            ref["flops"] / ref["xla_fwd"])
    return out


def summary(sdc1: list[dict], mnist: list[dict], firsts: list[dict], small: list[dict],
            peak: dict | None = None) -> str:
    rows = summary_rows(sdc1, mnist)
    w = 1 + max([30] + [len(r["workload"]) for r in rows])
    head = (f"{'workload':<{w}}{'ours img/s':>12}{'torch img/s':>13}{'ratio':>8}{'target':>8}"
            f"{'spread':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        digits = ",.1f" if r["workload"].startswith("SDC1") else ",.0f"
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        lines.append(
            f"{r['workload']:<{w}}{r['ours']:>12{digits}}"
            f"{(r['torch'] if r['torch'] is not None else float('nan')):>13{digits}}"
            f"{ratio:>8}" + (f"{r['target']:>8.2f}" if r["target"] is not None else f"{'':>8}")
            + (f"{r['spread']:>8.2f}" if r["spread"] is not None else f"{'':>8}"))
    if peak is not None:
        for r in sdc1:
            use = [f"{name} {v['train'] * r['gflop_train'] / peak[side]:.0%}"
                   for name, side, v in (("ours", "xla", r["results"]["cianna_jax"]),
                                         ("PyTorch", "torch", r["results"].get("torch")))
                   if v is not None and peak[side]]
            lines.append(f"SDC1 {r['size']} training, nominal GFLOP/s / the machine's matrix "
                         f"product rate (each side's own): {', '.join(use)}")
    lines.append("")
    for f in firsts:
        lines.append(f"first training step, {f['network']:<14} cache {f['cache']:<5}"
                     f"{f['first_step']:>8.2f} s" + (f"  (target <= {FIRST_STEP_TARGET_S:g} s)"
                                                      if f["network"] == "mnist" else ""))
    check = small_map_check(small)
    if check is not None:
        line = (f"small-map check: slowest map's rate / {check['reference']}x"
                f"{check['reference']} map's rate: forward {check['forward']:.2f}, training "
                f"{check['training']:.2f} (target >= {SMALL_MAP_TARGET})")
        if "xla_forward" in check:
            line += f"; XLA conv alone: forward {check['xla_forward']:.2f}"
        lines.append(line)
    states = by_state_table(rows)
    if states:
        lines += ["", "the same ratios by the cores' state:", states, ""]
    lines.append("ratio: ours / PyTorch, median over alternated rounds; spread: slowest / "
                 "fastest of our rounds; SDC1 inference: one pass with the weights laid out "
                 "at its start (cnn.forward after training), 'laid out': laid out once before "
                 "(cianna-jax predict over a field)")
    return "\n".join(lines)


def record(sdc1: list[dict], mnist: list[dict], firsts: list[dict], small: list[dict],
           peak: dict | None, about: dict) -> dict:
    """The run as one JSON-able record (``--json``; ``compare_runs.py`` reads several):
    ``about`` (date, host, versions, loads, flags), the summary ``rows``, the first steps,
    the small-map check with its target, the machine's product rate."""
    return dict(format=RECORD_FORMAT, about=about, rows=summary_rows(sdc1, mnist),
                first_steps=[{k: f[k] for k in ("network", "cache", "first_step")} for f in firsts],
                small_map=small_map_check(small), small_map_target=SMALL_MAP_TARGET,
                first_step_target=dict(mnist=FIRST_STEP_TARGET_S), peak=peak)


def main(argv=None) -> None:
    if argv is None:  # run as a script: huge pages for XLA's step buffers (and
        # PyTorch's), which glibc takes only from a process's start (cianna_jax.host_memory)
        host_memory.restart_with_hugepages([os.path.abspath(__file__), *sys.argv[1:]])
    cianna_jax.xla_cpu.tune()  # XLA CPU flags: before any JAX computation
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small smoke run (about 30 s), a check that everything runs")
    parser.add_argument("--no-extras", action="store_true",
                        help="skip the YOLO network, YOLO loss and memory benchmarks")
    parser.add_argument("--mixed-precision", nargs="*", default=[], metavar="MODE",
                        help="CIANNA mixed_precision modes whose SDC1 rows are added (against "
                             "PyTorch in float32, no target), e.g. TF32C_FP32A FP16C_FP32A")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the summary as a JSON record (several runs' records "
                             "compare with benchmarks/compare_runs.py)")
    import bench_sdc1  # no JAX computation at import: the CPU devices are set below

    bench_sdc1.add_cpu_devices_argument(parser)
    a = parser.parse_args(argv)
    try:
        bench_sdc1.use_cpu_devices(a.cpu_devices)
    except (ValueError, RuntimeError) as err:
        parser.error(str(err))
    if a.json:  # fail now, not after minutes of benchmarks
        folder = os.path.dirname(os.path.abspath(a.json))
        if not os.path.isdir(folder):
            parser.error(f"--json: no folder {folder}")
    if a.quick:
        # compilation dominates such short runs: XLA's classic CPU fusion emitters compile
        # the SDC1 training step 2-3x faster than the new ones (same program), where the
        # installed XLA still has them; read when the backend starts, below
        flags = os.environ.get("XLA_FLAGS", "")
        if (new := cianna_jax.xla_cpu.with_classic_emitters(flags)) != flags:
            os.environ["XLA_FLAGS"] = new
        # PyTorch's OpenMP threads sleep instead of spinning between its calls (read when
        # torch is first imported, below): on 2 shared cores their spinning made PyTorch's
        # short MNIST epochs here 10x slower
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    import bench_mnist
    import bench_smallmap
    import first_step
    import jax
    import machine_peak

    t0 = time.perf_counter()
    cpu = machine_peak.cpu_info()
    about = dict(date=time.strftime("%Y-%m-%d %H:%M:%S %Z"), host=platform.node(),
                 machine=platform.processor() or platform.machine(), cpus=os.cpu_count(),
                 cpu_model=cpu["model"], vector_isa=cpu["vector_isa"], bf16_units=list(cpu["bf16"]),
                 jax=jax.__version__, device=jax.devices()[0].platform,
                 xla_flags=os.environ.get("XLA_FLAGS", ""), quick=a.quick,
                 glibc_tunables=os.environ.get("GLIBC_TUNABLES", ""),
                 mixed_precision=list(a.mixed_precision), load_start=_load(),
                 far_ns=core_latency.far_ns(), cpu_devices=a.cpu_devices)
    print(f"jax {jax.__version__} on {about['device']} ({os.cpu_count()} CPUs), "
          f"XLA_FLAGS={about['xla_flags']!r}, GLIBC_TUNABLES={about['glibc_tunables']!r}, "
          f"load average {about['load_start']:.2f}")
    peak = machine_peak.run(256, 1) if a.quick else machine_peak.run()
    print(machine_peak.format_line(peak, cpu))

    if a.quick:
        # and LLVM's optimisations off: the SDC1 training step then compiles in about
        # 2 CPU-seconds instead of 15, and runs at most 2x slower
        jax.config.update("jax_disable_most_optimizations", True)
        print("--quick: small sizes, one round, XLA optimisations mostly off "
              "(jax_disable_most_optimizations, classic fusion emitters): a check that "
              "everything runs, not numbers")
        sdc1_runs = [bench_sdc1.run(size=64, batch=8, n=8, rounds=1, warm_torch=False,
                                    probe=core_latency.round_trip_ns)]
        mnist = bench_mnist.run(96, (64,), 1, like_epoch=True,  # a ragged last batch
                                probe=core_latency.round_trip_ns)
        nan = float("nan")
        firsts = [dict(network="mnist", cache="none", second_step=nan, from_start=nan,
                       first_step=mnist[0]["functional"]["first_step"]),
                  dict(network=f"sdc1 {sdc1_runs[0]['size']}x{sdc1_runs[0]['size']}",
                       cache="none", second_step=nan, from_start=nan,
                       first_step=sdc1_runs[0]["results"]["cianna_jax"]["first_step"])]
        small = bench_smallmap.run((4, 1), 16, 64, 128, repeats=1, compare=False,
                                   host_data=True)  # 4x4: XLA conv, 1x1: im2col
    else:
        modes = tuple(a.mixed_precision)
        # the cores' state probed before every round: on a cloud machine it moves the
        # ratios (core_latency.py)
        # 256: epochs of 64 images, one compiled call of 8 steps (train_epoch on CPU): a
        # call right after PyTorch's run pays the host's fresh memory (0.5-1 s on the
        # 2-core VM), up to half the time of a call of 2 steps (benchmarks/README.md,
        # forty-sixth session)
        sdc1_runs = [bench_sdc1.run(size=s, batch=8, n=n, rounds=5, modes=modes,
                                    probe=core_latency.round_trip_ns)
                     for s, n in ((128, 32), (256, 64))]
        # 7 alternated rounds: MNIST's passes are short (0.3-2 s) and the machine's noise
        # moved 3-round medians by up to 0.4 (2 runs each on AVX2: 3 rounds gave
        # training 1.66 / 2.03, inference 2.11 / 2.60; 7 rounds 1.83 / 1.89 and 2.51 /
        # 2.61; 22 s more, benchmarks/README.md)
        mnist = bench_mnist.run(10_000, (64,), 7, probe=core_latency.round_trip_ns)
        firsts = first_step.twice("mnist", 0) + first_step.twice("sdc1", 128)
        small = bench_smallmap.run(repeats=5)  # medians of 5: one slow round is noise

    print("\n== Summary ==")
    print(summary(sdc1_runs, mnist, firsts, small, peak))
    if a.json:
        about.update(load_end=_load(), torch=_torch_version())
        with open(a.json, "w") as f:
            json.dump(jsonable(record(sdc1_runs, mnist, firsts, small, peak, about)), f,
                      indent=1, allow_nan=False)
        print(f"(summary written to {a.json})")
    print("\n== SDC1 backbone ==")
    for r in sdc1_runs:
        print(bench_sdc1.format_result(r))
    print("\n== MNIST network ==")
    print(bench_mnist.format_table(mnist))
    print("\n== First training step ==")
    print(first_step.format_rows(firsts))
    print("\n== Small-map check ==")
    print(bench_smallmap.format_table(small, *((16, 64, 128) if a.quick else (16, 512, 1024))))

    if not a.no_extras and not a.quick:
        import bench_memory
        import bench_yolo
        import yolo_loss

        print("\n== SDC1-like YOLO network ==")
        print(bench_yolo.format_result(bench_yolo.run(size=256, n=32, batch=8, repeats=3)))
        print("\n== YOLO loss + gradient ==")
        yolo_loss.main(["--first", "2"])
        print("\n== Memory ==")
        print(bench_memory.format_result(bench_memory.run(n=4096)))
    print(f"\n(total {time.perf_counter() - t0:.0f} s; load average at the end {_load():.2f})")


def jsonable(obj):
    """``obj`` with numpy scalars as Python numbers and NaN or infinite floats as None
    (strict JSON has no NaN: a load average the system does not give, say)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


if __name__ == "__main__":
    main()
