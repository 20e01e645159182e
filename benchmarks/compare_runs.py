"""Several runs of the benchmark suite side by side: each workload's speed ratio against
PyTorch over the runs, and how many runs met its target.

    python benchmarks/run_all.py --no-extras --json runs/a.json     # a few times, apart
    python benchmarks/compare_runs.py runs/*.json [--plot ratios.png]

On a shared machine one run's ratio moves by 0.1-0.2 with the load of other jobs
(benchmarks/README.md): a target is judged on the range over runs, which this prints
(lowest, median and highest ratio, runs at or above the target), with the first
training steps and the small-map check over the same runs.  ``--plot`` draws every
run's ratio per workload against its target (needs matplotlib).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

#: the ``format`` of the records this reads (benchmarks/run_all.py RECORD_FORMAT)
RECORD_FORMAT = 1


def load_runs(paths: list[str]) -> list[dict]:
    """The records of ``run_all.py --json``, in the order given; FileNotFoundError for a
    missing file, ValueError naming the file for one that is not such a record."""
    if not paths:
        raise ValueError("paths: give at least one run_all.py --json record")
    runs = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no such run record")
        try:
            with open(path) as f:
                rec = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not a JSON run record ({err})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("rows"), list):
            raise ValueError(f"{path}: not a run_all.py --json record (no 'rows' list)")
        if rec.get("format") != RECORD_FORMAT:
            raise ValueError(f"{path}: record format {rec.get('format')!r}, this script reads "
                             f"format {RECORD_FORMAT}")
        rec["path"] = path
        runs.append(rec)
    return runs


def compare(runs: list[dict]) -> list[dict]:
    """One entry per workload (first-seen order): its ``ratios`` (one per run that has
    it, None where PyTorch was absent), ``target``, ``low`` / ``median`` / ``high``,
    ``met`` (runs at or above the target), the median img/s of both sides, and ``near`` /
    ``far``: the runs' ratios in each state of the cores (records whose rounds were probed,
    ``benchmarks/core_latency.py``)."""
    table: dict[str, dict] = {}
    for i, run in enumerate(runs):
        for row in run["rows"]:
            e = table.setdefault(row["workload"], dict(workload=row["workload"],
                                                       target=row.get("target"), runs=[],
                                                       ratios=[], ours=[], torch=[],
                                                       near=[], far=[]))
            e["runs"].append(i)
            e["ratios"].append(row.get("ratio"))
            for where in ("near", "far"):
                if row.get(f"ratio_{where}") is not None:
                    e[where].append(row[f"ratio_{where}"])
            e["ours"].append(row["ours"])
            if row.get("torch") is not None:
                e["torch"].append(row["torch"])
    out = []
    for e in table.values():
        got = [r for r in e["ratios"] if r is not None]
        e.update(low=min(got, default=None), high=max(got, default=None),
                 median=statistics.median(got) if got else None,
                 met=None if e["target"] is None else sum(r >= e["target"] for r in got),
                 ours_median=statistics.median(e["ours"]),
                 torch_median=statistics.median(e["torch"]) if e["torch"] else None)
        out.append(e)
    return out


def _span(values: list[float], fmt: str) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:{fmt}}" if f"{lo:{fmt}}" == f"{hi:{fmt}}" else f"{lo:{fmt}}-{hi:{fmt}}"


def processor_kinds(runs: list[dict]) -> dict[str, list[int]]:
    """The runs (1-based numbers) per processor their record names: its vector unit
    (``about.vector_isa``, written since 2026-12-04's twenty-fourth session) and, where
    recorded, its model (``about.cpu_model``: an AMD EPYC and an Intel Xeon both with
    AVX-512 ran XLA's 2048x2048 product at about 450 and 280 GFLOP/s, and PyTorch's MNIST
    ratio at 2.4 and 1.5); "?" for older records."""
    kinds: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        a = run.get("about", {})
        isa = a.get("vector_isa") or "?"
        kind = f"{a['cpu_model']} {isa}" if a.get("cpu_model") else isa
        kinds.setdefault(kind, []).append(i + 1)
    return kinds


def format_report(runs: list[dict]) -> str:
    rows = compare(runs)
    lines = [f"{len(runs)} run(s):"]
    for i, run in enumerate(runs):
        a = run.get("about", {})
        load = "/".join("-" if a.get(k) is None else f"{a[k]:.1f}"
                        for k in ("load_start", "load_end"))
        lines.append(f"  [{i + 1}] {a.get('date', '?')}, {a.get('host', '?')} "
                     f"({a.get('cpus', '?')} CPUs, "
                     f"{a.get('cpu_model') + ' ' if a.get('cpu_model') else ''}"
                     f"{a.get('vector_isa') or '?'}), "
                     f"jax {a.get('jax', '?')}, PyTorch "
                     f"{a.get('torch') or '-'}, load {load}{', QUICK' if a.get('quick') else ''}"
                     f": {run['path']}")
    kinds = processor_kinds(runs)
    if len(kinds) > 1:
        lines.append("  these runs come from different processors ("
                     + "; ".join(f"{isa}: runs {', '.join(map(str, ix))}" for isa, ix in kinds.items())
                     + "): XLA's and PyTorch's kernels differ between them, so compare the "
                     "ratios of one kind (give its records only)")
    w = 1 + max([30] + [len(r["workload"]) for r in rows])
    head = (f"{'workload':<{w}}{'ours img/s':>12}{'torch img/s':>13}{'lowest':>8}"
            f"{'median':>8}{'highest':>8}{'target':>8}{'met':>7}")
    lines += ["", head, "-" * len(head)]

    def cell(v, fmt=".2f"):
        return "-" if v is None else f"{v:{fmt}}"

    for r in rows:
        digits = ",.1f" if r["ours_median"] < 1000 else ",.0f"
        met = "" if r["met"] is None else f"{r['met']}/{len(r['ratios'])}"
        lines.append(f"{r['workload']:<{w}}{r['ours_median']:>12{digits}}"
                     f"{cell(r['torch_median'], digits):>13}{cell(r['low']):>8}"
                     f"{cell(r['median']):>8}{cell(r['high']):>8}"
                     f"{cell(r['target']):>8}{met:>7}")
    firsts: dict[tuple, list[float]] = {}
    for run in runs:
        for f in run.get("first_steps", []):
            if f.get("first_step") is not None:
                firsts.setdefault((f["network"], f["cache"]), []).append(f["first_step"])
    limit = runs[0].get("first_step_target", {})
    if firsts:
        lines.append("")
    for (net, cache), ts in firsts.items():
        goal = limit.get(net)
        met = f" (target <= {goal:g} s, met {sum(t <= goal for t in ts)}/{len(ts)})" if goal else ""
        lines.append(f"first training step, {net:<14} cache {cache:<5} {_span(ts, '.2f')} s{met}")
    checks = [run["small_map"] for run in runs if run.get("small_map")]
    if checks:
        goal = runs[0].get("small_map_target")
        parts = []
        for kind in ("forward", "training"):
            vals = [c[kind] for c in checks]
            met = f", met {sum(v >= goal for v in vals)}/{len(vals)}" if goal else ""
            parts.append(f"{kind} {_span(vals, '.2f')}{met}")
        lines.append(f"small-map check (slowest map's rate / largest map's rate): "
                     f"{'; '.join(parts)}" + (f" (target >= {goal})" if goal else ""))
    lines.append("ratios: ours / PyTorch img/s, each run's median of alternated rounds; img/s: "
                 "median over the runs; met: runs at or above the target")
    states = [r for r in rows if r["near"] or r["far"]]
    if states:
        head = f"{'workload':<{w}}{'near':>12}{'runs':>6}{'far':>12}{'runs':>6}{'target':>8}"
        lines += ["", "by the cores' state (runs whose rounds were probed):", head,
                  "-" * len(head)]
        for r in states:
            near, far = (_span(r[k], ".2f") if r[k] else "-" for k in ("near", "far"))
            lines.append(f"{r['workload']:<{w}}{near:>12}{len(r['near']):>6}{far:>12}"
                         f"{len(r['far']):>6}{cell(r['target']):>8}")
        lines.append("near / far: lowest-highest over the runs of each run's median ratio in "
                     "the rounds whose two CPUs were near / far apart (core_latency.py)")
    return "\n".join(lines)


#: markers of a probed run's per-state medians in :func:`plot`
STATE_MARKERS = {"near": "^", "far": "v"}


def state_points(run: dict, y: dict[str, float], dy: float) -> dict[str, list[tuple]]:
    """``(ratio, y[workload] + dy)`` points of a run's per-state median ratios, per state
    that has any (records of runs whose rounds were probed, ``core_latency.py``)."""
    out = {}
    for where in STATE_MARKERS:
        pts = [(row[f"ratio_{where}"], y[row["workload"]] + dy) for row in run["rows"]
               if row.get(f"ratio_{where}") is not None and row["workload"] in y]
        if pts:
            out[where] = pts
    return out


def plot(runs: list[dict], path: str) -> str:
    """Every run's ratio per workload (one colour per run) against the targets, saved to
    ``path`` (the format from its extension); for runs whose rounds were probed, also the
    median of each state's rounds (hollow triangles).  ImportError without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ImportError("--plot needs matplotlib (pip install matplotlib)") from err
    rows = [r for r in compare(runs) if r["low"] is not None]
    if not rows:
        raise ValueError("the runs have no ratio against PyTorch to plot")
    fig = Figure(figsize=(11, 0.45 * len(rows) + 1.8))
    ax = fig.add_subplot()
    y = {r["workload"]: len(rows) - 1 - i for i, r in enumerate(rows)}
    colours = [f"C{i % 10}" for i in range(len(runs))]
    step = min(0.12, 0.6 / max(1, len(runs) - 1))  # runs side by side on a workload's line
    drawn = set()  # the states whose medians were drawn (one legend entry each)
    for i, run in enumerate(runs):
        dy = (i - (len(runs) - 1) / 2) * step
        pts = [(row["ratio"], y[row["workload"]] + dy) for row in run["rows"]
               if row.get("ratio") is not None and row["workload"] in y]
        if pts:
            a = run.get("about", {})
            load = a.get("load_start")
            ax.scatter(*zip(*pts), s=28, color=colours[i], alpha=0.9, zorder=3,
                       label=f"run {i + 1}: {a.get('date', '?')[:16]}, load "
                             f"{'n/a' if load is None else f'{load:.1f}'}")
        for where, pts in state_points(run, y, dy).items():  # probed runs
            ax.scatter(*zip(*pts), s=34, marker=STATE_MARKERS[where], facecolors="none",
                       edgecolors=colours[i], linewidths=1.2, zorder=3)
            drawn.add(where)
    for where in [w for w in STATE_MARKERS if w in drawn]:
        ax.scatter([], [], s=34, marker=STATE_MARKERS[where], facecolors="none",
                   edgecolors="black", label=f"median of the rounds with the CPUs {where}")
    targets = [(r["target"], y[r["workload"]]) for r in rows if r["target"] is not None]
    if targets:
        ax.scatter(*zip(*targets), marker="|", s=400, color="black", linewidths=2, zorder=2,
                   label="target")
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1, label="as fast as PyTorch")
    ax.set_yticks(list(y.values()), list(y.keys()))
    ax.set_xlabel("speed ratio, cianna_jax / PyTorch (img/s, same process, alternated rounds)")
    hosts = sorted({run.get("about", {}).get("host", "?") for run in runs})
    units = ", ".join(k for k in processor_kinds(runs) if k != "?")
    ax.set_title(f"cianna_jax against PyTorch: {len(runs)} run(s) on {', '.join(hosts)}"
                 + (f" ({units})" if units else ""))
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="records written by run_all.py --json")
    parser.add_argument("--plot", metavar="FILE", help="also draw the ratios (PNG, PDF, SVG)")
    a = parser.parse_args(argv)
    try:
        runs = load_runs(a.runs)
    except (FileNotFoundError, ValueError) as err:
        parser.error(str(err))
    print(format_report(runs))
    if a.plot:
        print(f"(plot written to {plot(runs, a.plot)})")


if __name__ == "__main__":
    main()
