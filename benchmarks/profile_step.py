"""Where a compiled step's wall time goes on CPU, thunk by thunk, thread-pool work included.

XLA's CPU runtime runs a program as thunks.  A convolution or a large product thunk only
*launches* its work, which then runs on the Eigen thread pool, and the thunk's completion
shows later in the trace as an ``end: <thunk>`` marker.  A per-op profile that sums the
traced durations therefore credits a convolution with its launch (tens of us) and hides
the milliseconds it really takes (benchmarks/README.md, fourteenth session).  This tool
takes each thunk as *in flight* from its launch to its completion: its ``end:`` marker,
or the start of the first thunk that reads its result when that comes first (the
executor may run those readers before it writes the marker: a 6 us fusion's marker came
300 us late).  Every instant of the program's run is shared between the thunks in flight
then (two side by side get half of it each; none in flight is "between thunks": the
executor's own time), so the shares add up to the step's wall time.  In flight is not
working: a thunk whose pool tasks wait behind another thunk's is in flight while it waits
(XLA copies of 1 MB or more run one block at launch and up to seven on the pool: SDC1's
8 MB parameter copy spends 0.5 ms in its launch, then stays in flight 45-50 ms behind
convolutions, with a 10-13 ms share).  The ``launch`` column, the time inside the launch
on the executor's thread, tells work done at launch from work left to the pool.  ``MB
out`` is the size of a thunk's result and ``GB/s`` that size over its time in flight: a
fusion that only moves data and writes far below memory speed is worth a look (the
thirty-third session's concatenation of per-phase selects wrote 1.6 MB at about 2 GB/s;
its one-hot form, 4-5 GB/s).

Each thunk is named as in the compiled HLO, with the network layer it belongs to (the
``L{i}_{kind}`` named scope of ``network.forward_internal``, ``bwd`` in the gradient), the
source line (innermost frame) and the jax operation, read from the compiled module's
text; a second table sums the shares per layer.  (Users get CIANNA's per-layer table from
``cnn.perf_eval()``; this tool is for finding where a step waits.)

    python benchmarks/profile_step.py mnist-train [--calls 5] [--top 25] [--plot step.png]
    python benchmarks/profile_step.py sdc1-infer --size 128
    python benchmarks/profile_step.py sdc1-train --size 256 --steps 8 --calls 2

Workloads: ``mnist-train`` / ``mnist-infer`` (CIANNA's MNIST network, batch 64, 8 steps
per compiled call as ``train_epoch`` and ``predict`` run them), ``sdc1-train`` /
``sdc1-infer`` (CIANNA's SDC1 backbone, batch 8, one step per call by default),
``imagenet-train`` / ``imagenet-infer`` (CIANNA's ImageNet example network of
``bench_imagenet.py``, 224x224, batch 8, one step per call by default).  ``--steps K`` runs
K batches per compiled call, a loop as ``train_epoch`` and ``predict`` run 8 on CPU: a
single-step call pays the step's fresh temporaries (page faults, zeroed pages) in its
thunks at every call, which K steps per call pay once (SDC1 256 inference, 197 against 172
ms per step with ``--steps 8``; benchmarks/README.md, fifty-eighth session).
Profiling adds about 1 us per thunk; compare thunks with each other, not with the
benchmarks' rates.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable

from cianna_jax import hlo_text
from cianna_jax.network import LAYER_SCOPE

WINDOW = "ThunkExecutor::Execute (wait for completion)"
EXECUTE = "ThunkExecutor::Execute"
DISPATCH = "CommonPjRtLoadedExecutable::ExecuteHelperOnSingleDevice"
BETWEEN = "(between thunks)"


@dataclasses.dataclass(frozen=True)
class Interval:
    """One thunk execution: in flight from its launch to its ``end:`` marker (us);
    ``launch``: the time inside its launch."""
    name: str
    start: float
    end: float
    launch: float = 0.0


def hlo_readers(text: str) -> dict[str, set[str]]:
    """Instruction name -> the names of the instructions that read it, within each
    computation of a compiled module's text (``compiled.as_text()``)."""
    return hlo_text.readers(hlo_text.parse_hlo(text)[0])


def thunk_windows(events: Iterable[dict], readers: dict[str, set[str]] | None = None
                  ) -> list[tuple[float, float, list[Interval]]]:
    """The program runs of a trace (Chrome trace events, as ``jax.profiler`` writes them):
    one ``(start, end, intervals)`` per call, from its dispatch to the end of its last
    ``wait for completion``, with the leaf thunks launched in it (calls must not overlap:
    wait for each call's result before the next).  Control-flow thunks (``while``,
    ``cond``: other thunks start inside their launch) are left out; their bodies'
    thunks are counted.

    A thunk is in flight from its launch to its ``end:`` marker, but the executor may
    run the thunks that were waiting for it before it writes that marker; with the
    module's ``readers`` (:func:`hlo_readers`) a thunk ends instead when the first
    thunk reading its result (through bitcasts, tuples...) starts, if that is earlier,
    and never before its launch returns."""
    xs = [e for e in events if e.get("ph") == "X" and "dur" in e]
    ends = collections.defaultdict(list)
    for e in xs:
        if e["name"].startswith("end: "):
            ends[e["name"][5:]].append(e["ts"])
    for v in ends.values():
        v.sort()
    launches = sorted((e for e in xs if e["name"] in ends), key=lambda e: e["ts"])
    starts = collections.defaultdict(list)  # per thread: launches and nested executors
    for e in launches + [e for e in xs if e["name"] == EXECUTE]:
        starts[e["tid"]].append(e["ts"])
    for v in starts.values():
        v.sort()

    def container(e: dict) -> bool:  # runs other thunks inside its own launch
        ts = starts[e["tid"]]
        i = bisect.bisect_right(ts, e["ts"])
        return i < len(ts) and ts[i] <= e["ts"] + e["dur"]

    launched = collections.defaultdict(list)
    for e in launches:
        launched[e["name"]].append(e["ts"])
    following = _reader_thunks(readers or {}, set(launched))
    used = collections.Counter()
    intervals = []
    for e in launches:  # each launch takes the first unused end marker after it
        marks = ends[e["name"]]
        j = max(used[e["name"]], bisect.bisect_left(marks, e["ts"]))
        if j >= len(marks):
            continue
        used[e["name"]] = j + 1
        if container(e):
            continue
        end = marks[j]
        for r in following.get(e["name"], ()):  # the first reader's start after the launch
            k = bisect.bisect_left(launched[r], e["ts"])
            if k < len(launched[r]):
                end = min(end, launched[r][k])
        intervals.append(Interval(e["name"], e["ts"], max(end, e["ts"] + e["dur"]), e["dur"]))

    waits = sorted((e["ts"], e["ts"] + e["dur"]) for e in xs if e["name"] == WINDOW)
    calls = sorted(e["ts"] for e in xs if e["name"] == DISPATCH)
    windows = []
    for i, a in enumerate(calls):  # a call: from its dispatch to the end of its last wait
        nxt = calls[i + 1] if i + 1 < len(calls) else float("inf")
        b = max((end for s, end in waits if a <= s < nxt), default=None)
        if b is not None:
            windows.append((a, b, [iv for iv in intervals if a <= iv.start < b]))
    return windows


def _reader_thunks(readers: dict[str, set[str]], thunks: set[str]) -> dict[str, set[str]]:
    """Thunk -> the thunks that read its result, through instructions without a thunk."""
    out = {}
    for t in thunks:
        found, todo, seen = set(), list(readers.get(t, ())), set()
        while todo and len(seen) < 256:
            r = todo.pop()
            if r in seen:
                continue
            seen.add(r)
            if r in thunks:
                found.add(r)
            else:
                todo.extend(readers.get(r, ()))
        out[t] = found
    return out


def share_time(start: float, end: float, intervals: list[Interval]) -> dict[str, float]:
    """Wall time of ``[start, end]`` shared between the intervals in flight at each
    instant (equal parts); time with none in flight goes to ``BETWEEN``.  The values add
    up to ``end - start``."""
    marks = sorted({start, end, *(min(max(t, start), end) for iv in intervals
                                  for t in (iv.start, iv.end))})
    out = collections.defaultdict(float)
    by_start = sorted(intervals, key=lambda iv: iv.start)
    active: list[Interval] = []
    k = 0
    for lo, hi in zip(marks, marks[1:]):
        while k < len(by_start) and by_start[k].start <= lo:
            active.append(by_start[k])
            k += 1
        active = [iv for iv in active if iv.end > lo]
        if active:
            for iv in active:
                out[iv.name] += (hi - lo) / len(active)
        else:
            out[BETWEEN] += hi - lo
    return dict(out)


@dataclasses.dataclass
class Row:
    """One thunk's totals per step: wall share, time in flight, launches (us, count),
    time inside its launches (us)."""
    name: str
    share: float
    in_flight: float
    launches: float
    in_launch: float = 0.0


def profile_rows(windows, steps_per_call: int) -> tuple[float, list[Row]]:
    """(wall time per step, rows sorted by share) over the windows of a trace."""
    n = len(windows) * steps_per_call
    if n == 0:
        raise ValueError("the trace has no program run (no dispatch with its 'wait for completion')")
    share, flight, count, inside = (collections.defaultdict(float) for _ in range(4))
    wall = 0.0
    for a, b, ivs in windows:
        wall += b - a
        for k, v in share_time(a, b, ivs).items():
            share[k] += v
        for iv in ivs:
            flight[iv.name] += iv.end - iv.start
            count[iv.name] += 1
            inside[iv.name] += iv.launch
    rows = [Row(k, v / n, flight[k] / n, count[k] / n, inside[k] / n) for k, v in share.items()]
    return wall / n, sorted(rows, key=lambda r: -r.share)


_RESULT = re.compile(r"^\s*(?:ROOT\s+)?%([\w.\-]+) = (\([^=]*?\)|\S+) ", re.M)
_ARRAY = re.compile(r"\b[a-z]+(\d*)\w*\[([\d,]*)\]")


def output_bytes(text: str) -> dict[str, int]:
    """Instruction name -> the bytes of its result (every element of a tuple), from a
    compiled module's text: ``f32[64,14,14,8]`` is 401,408 bytes, ``pred`` one byte an
    element, ``bf16`` two."""
    out = {}
    for m in _RESULT.finditer(text):
        total = 0
        for bits, dims in _ARRAY.findall(m.group(2)):
            n = 1
            for d in filter(None, dims.split(",")):
                n *= int(d)
            total += n * (int(bits) if bits else 8) // 8
        out[m.group(1)] = total
    return out


def hlo_sources(text: str) -> dict[str, str]:
    """Thunk name -> ``"L3_conv bwd file.py:line function (jax op)"`` from a compiled
    module's text (``compiled.as_text()``): the network layer (its named scope, ``bwd``
    in the gradient), the innermost source frame (through the module's stack-frame
    tables when it has them) and the jax operation.  Instructions without metadata (made
    by XLA) take the layer of a neighbour in the data flow (:func:`_inferred_layers`)."""
    def table(title: str) -> dict[str, str]:
        m = re.search(rf"^{title}\n((?:\d+ .*\n?)*)", text, re.M)
        return dict(line.split(" ", 1) for line in m.group(1).splitlines()) if m else {}

    files, funcs, locs, frames = (table(t) for t in ("FileNames", "FunctionNames",
                                                      "FileLocations", "StackFrames"))

    def field(s: str, key: str) -> str | None:
        m = re.search(rf"\b{key}=(\w+)", s)
        return m.group(1) if m else None

    comps, _ = hlo_text.parse_hlo(text)
    out = {}
    for ins in (ins for instrs in comps.values() for ins in instrs):
        m = re.search(r"metadata=\{([^}]*)\}", ins["attrs"])
        if m is None:
            continue
        name, meta = ins["name"], m.group(1)
        op = re.search(r'op_name="([^"]*)"', meta)
        where = ""
        frame = frames.get(field(meta, "stack_frame_id") or "")
        loc = locs.get(field(frame, "file_location_id") or "") if frame else None
        if loc:
            path = files.get(field(loc, "file_name_id") or "", '""').strip('"')
            func = funcs.get(field(loc, "function_name_id") or "", '""').strip('"')
            where = f"{os.path.basename(path)}:{field(loc, 'line')} {func}"
        else:
            src = re.search(r'source_file="([^"]*)" source_line=(\d+)', meta)
            if src:
                where = f"{os.path.basename(src.group(1))}:{src.group(2)}"
        path = op.group(1) if op else ""
        layer = LAYER_SCOPE.findall(path)
        tag = (layer[-1] + (" bwd" if "transpose(" in path else "") + " ") if layer else ""
        jop = path.rsplit("/", 1)[-1]
        out[name] = f"{tag}{where} ({jop})" if where else f"{tag}{jop}"
    return _inferred_layers(comps, out)


def _inferred_layers(comps: dict, sources: dict[str, str]) -> dict[str, str]:
    """Instructions XLA made without metadata (layout transposes, parameter copies) named
    after the nearest layer-tagged instruction that reads them, or that they read (two
    hops at most): ``"L16_conv bwd (from dot_general.35)"``."""
    readers = hlo_text.readers(comps)
    operands = {ins["name"]: set(ins["operands"]) for group in comps.values() for ins in group}
    out = dict(sources)
    for name in operands:
        if name in sources:
            continue
        hop = [sorted(readers.get(name, ())), sorted(operands.get(name, ()))]
        for near in hop + [sorted({r for n in hop[0] for r in readers.get(n, ())}),
                           sorted({o for n in hop[1] for o in operands.get(n, ())})]:
            tagged = [n for n in near if LAYER_SCOPE.match(sources.get(n, ""))]
            if tagged:
                tag = LAYER_SCOPE.match(sources[tagged[0]]).group(0)
                bwd = " bwd" if sources[tagged[0]][len(tag):].startswith(" bwd") else ""
                out[name] = f"{tag}{bwd} (from {tagged[0]})"
                break
    return out


def layer_shares(rows: list[Row], sources: dict[str, str]) -> dict[str, float]:
    """Shares summed per network layer (``"L3_conv"``, ``"L3_conv bwd"``); thunks
    outside any layer (the optimizer, the loss, the loop) under ``"(no layer)"``."""
    out = collections.defaultdict(float)
    for r in rows:
        src = sources.get(r.name, "")
        m = LAYER_SCOPE.match(src)
        tag = BETWEEN if r.name == BETWEEN else "(no layer)"
        if m:
            tag = m.group(0) + (" bwd" if src[m.end():].startswith(" bwd") else "")
        out[tag] += r.share
    return dict(out)


def trace_events(run: Callable[[], None], calls: int, trace_dir: str | None = None) -> list:
    """Trace events of ``calls`` runs of ``run`` (already compiled and warm)."""
    import jax

    with tempfile.TemporaryDirectory() as tmp:
        d = trace_dir or tmp
        with jax.profiler.trace(d):
            for _ in range(calls):
                run()
        fn = sorted(glob.glob(os.path.join(d, "**", "*.trace.json.gz"), recursive=True))[-1]
        with gzip.open(fn) as f:
            return json.load(f)["traceEvents"]


@dataclasses.dataclass
class Program:
    """One workload's jitted step and what it is called with: ``fn.lower(*args,
    **static)`` gives its program, which takes ``args`` less the static ones in front
    (network and optimizer for training, the network for inference); ``state``, when
    training, the params and optimizer state that its calls update."""
    fn: Callable
    args: tuple
    static: dict
    steps: int
    train: bool
    state: list | None = None


def default_steps(name: str) -> int:
    """Batches per compiled call of a workload by default: MNIST's 8 (as ``train_epoch``
    and ``predict`` run it on CPU), one for SDC1 and ImageNet (a profile of one step's
    thunks; ``--steps 8`` runs them as ``train_epoch`` and ``predict`` do)."""
    return 8 if name.startswith("mnist") else 1


def program(name: str, size: int = 128, mode: str = "off", steps: int | None = None
            ) -> Program:
    """The jitted step of one of the named workloads (:data:`WORKLOADS`) under CIANNA's
    ``mixed_precision`` ``mode``, its network built and its parameters drawn, not yet
    traced; ``steps`` batches per call (default :func:`default_steps`), several as a loop
    where ``training.loop_safe`` allows (as ``train_epoch`` and ``predict`` choose)."""
    import functools

    import jax
    import jax.numpy as jnp

    import cianna_jax as cj
    from cianna_jax import training
    from cianna_jax.precision import get_policy

    policy = get_policy(mode)
    k = steps or default_steps(name)
    if name.startswith("mnist"):
        from bench_mnist import LR, MOMENTUM, mnist_data, mnist_network
        net, b = mnist_network(), 64
        x, t = mnist_data(k * b)
    elif name.startswith("imagenet"):
        from bench_imagenet import LR, MOMENTUM, data, imagenet_network
        net, b = imagenet_network(size), 8
        x, t, _ = data(size, k * b, 1000)
    else:
        from bench_sdc1 import LR, MOMENTUM, data, sdc1_network
        net, b = sdc1_network(size), 8
        x, t = data(size, k * b)
    xs = jnp.asarray(x).reshape((k, b) + tuple(net.input_shape))
    ts = jnp.asarray(t).reshape((k, b) + t.shape[1:])
    nv = jnp.full((k,), b, jnp.int32)
    params = cj.init_params(jax.random.key(0), net)
    loop = k > 1 and training.loop_safe(net, policy)  # as train_epoch / predict choose
    if not loop:
        k, xs, ts, nv = 1, xs[0], ts[0], nv[0]
    if name.endswith("train"):
        opt = cj.make_optimizer(LR, MOMENTUM, masks=functools.partial(cj.cianna_masks, net))
        state = [params, opt.init(params)]
        fn = training.train_steps if loop else training.train_step
        return Program(fn, (net, opt, *state, xs, ts, nv, jax.random.key(1)),
                       {"policy": policy}, k, True, state)
    laid = cj.inference_params(net, params, policy)
    fn = training.eval_steps if loop else training.eval_step
    return Program(fn, (net, laid, xs, ts, nv), {"with_loss": False, "policy": policy}, k,
                   False)


def workload(name: str, size: int = 128, compiler_options: dict | None = None,
             mode: str = "off", steps: int | None = None):
    """(run, compiled module text, steps per call) for one of the named workloads under
    ``mixed_precision`` ``mode``, compiled with XLA's ``compiler_options`` (None: the
    defaults; see ``ab_options.py``), ``steps`` batches per call (:func:`program`)."""
    import jax

    p = program(name, size, mode, steps)
    comp = p.fn.lower(*p.args, **p.static).compile(compiler_options)
    if p.train:
        state, rest = p.state, p.args[4:]

        def run():
            state[0], state[1], loss = comp(*state, *rest)
            loss.block_until_ready()
    else:
        laid, rest = p.args[1], p.args[2:]

        def run():
            jax.block_until_ready(comp(laid, *rest))
    for _ in range(3):
        run()
    return run, comp.as_text(), p.steps


def plot_timeline(window, rows: list[Row], sources: dict[str, str], path: str, title: str,
                  top: int = 20) -> None:
    """One traced call as a chart: a row for each of the ``top`` thunks by share, a bar
    for each of its executions over the time it is in flight."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b, ivs = window
    names = [r.name for r in rows if r.name != BETWEEN][:top]
    fig, ax = plt.subplots(figsize=(11, 0.3 * len(names) + 1.6))
    for i, name in enumerate(names):
        spans = [((iv.start - a) / 1e3, (iv.end - iv.start) / 1e3) for iv in ivs
                 if iv.name == name]
        ax.broken_barh(spans, (i - 0.4, 0.8), color=f"C{i % 10}")
    ax.set_yticks(range(len(names)), [f"{n}  {sources.get(n, '')}"[:80] for n in names],
                  fontsize=7)
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlim(0, (b - a) / 1e3)
    ax.set_xlabel("time since the call's start (ms)")
    ax.set_title(f"{title}: the {len(names)} largest thunks in flight (launch to completion)"
                 f" in one {(b - a) / 1e3:.2f} ms call", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


#: the steps :func:`workload` builds
WORKLOADS = ("mnist-train", "mnist-infer", "sdc1-train", "sdc1-infer", "imagenet-train",
             "imagenet-infer")


def add_workload_arguments(ap: argparse.ArgumentParser, several: bool = False) -> None:
    """The ``workload`` argument (``workloads``, one or more, with ``several``),
    ``--size`` and ``--mixed-precision`` (this tool's, ``ab_options.py``'s and
    ``startup_cost.py``'s)."""
    if several:
        ap.add_argument("workloads", nargs="+", choices=WORKLOADS)
    else:
        ap.add_argument("workload", choices=WORKLOADS)
    ap.add_argument("--size", type=int, help="SDC1 input size (pixels, default 128) or "
                    "ImageNet's (default 224)")
    from cianna_jax.precision import MODES  # imports jax, starts no backend

    ap.add_argument("--mixed-precision", default="off", choices=MODES, metavar="MODE",
                    help="CIANNA's mixed_precision mode (default off: float32), one of "
                    + ", ".join(MODES))


def add_steps_argument(ap: argparse.ArgumentParser) -> None:
    """``--steps`` (this tool's and ``ab_options.py``'s)."""
    ap.add_argument("--steps", type=int, help="batches per compiled call (default 8 for "
                    "MNIST, 1 for SDC1 and ImageNet; train_epoch and predict run 8 on CPU): "
                    "one per call pays the step's fresh temporaries at every call, which "
                    "more per call pay once")


def checked_steps(ap: argparse.ArgumentParser, steps: int | None) -> int | None:
    """``--steps``: None (the workload's default) or a count >= 1 (else ``ap.error``)."""
    if steps is not None and steps < 1:
        ap.error(f"--steps must be >= 1, received {steps}")
    return steps


def checked_size(ap: argparse.ArgumentParser, name: str, size: int | None) -> int:
    """``--size`` for the workload ``name``: its default when None; a size its network
    cannot take stops the command (``ap.error``)."""
    imagenet = name.startswith("imagenet")
    if size is None:
        return 224 if imagenet else 128
    if name.startswith("sdc1") and (size < 32 or size % 16):
        ap.error(f"--size: the SDC1 backbone needs a multiple of 16 >= 32 (four stride-2 "
                 f"stages), received {size}")
    if imagenet and (size < 32 or size % 32):
        ap.error(f"--size: CIANNA's ImageNet network needs a multiple of 32 (five 2x2 max "
                 f"pools), received {size}")
    return size


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_workload_arguments(ap)
    add_steps_argument(ap)
    ap.add_argument("--calls", type=int, default=5, help="compiled calls traced")
    ap.add_argument("--top", type=int, default=25, help="thunks listed")
    ap.add_argument("--plot", help="PNG of the median-length traced run's timeline")
    ap.add_argument("--trace-dir", help="keep the trace there (TensorBoard / Perfetto)")
    args = ap.parse_args(argv)
    if args.calls < 1 or args.top < 0:
        ap.error(f"--calls must be >= 1 and --top >= 0, received {args.calls} and {args.top}")
    args.size = checked_size(ap, args.workload, args.size)
    args.steps = checked_steps(ap, args.steps)

    import jax

    import cianna_jax.xla_cpu
    cianna_jax.xla_cpu.tune()  # before the backend starts (XLA reads its flags once)
    if jax.default_backend() != "cpu":
        ap.error(f"profiles XLA's CPU runtime (its thunks); the default backend here is "
                 f"{jax.default_backend()}: run with JAX_PLATFORMS=cpu, or read a GPU trace "
                 f"of jax.profiler in TensorBoard or Perfetto")
    run, text, steps = workload(args.workload, args.size, mode=args.mixed_precision,
                                steps=args.steps)
    windows = thunk_windows(trace_events(run, args.calls, args.trace_dir), hlo_readers(text))
    wall, rows = profile_rows(windows, steps)
    sources = hlo_sources(text)
    print(f"{args.workload}: {len(windows)} traced calls of {steps} step(s), "
          f"wall {wall / 1e3:.3f} ms per step")
    sizes = output_bytes(text)
    print(f"{'share us':>9} {'%':>5} {'in flight':>9} {'launch':>8} {'x':>4} {'MB out':>7} "
          f"{'GB/s':>6}  thunk / source (jax op)")
    for r in rows[:args.top]:
        size = sizes.get(r.name)
        mb = f"{size / 1e6:7.2f}" if size is not None else f"{'':>7}"
        # written per launch over the time in flight per launch (bytes/us = MB/s)
        rate = (f"{size * r.launches / r.in_flight / 1e3:6.1f}" if size and r.in_flight
                else f"{'':>6}")
        print(f"{r.share:9.1f} {100 * r.share / wall:5.1f} {r.in_flight:9.1f} "
              f"{r.in_launch:8.1f} {r.launches:4.1f} {mb} {rate}  {r.name}  "
              f"{sources.get(r.name, '')}")
    rest = rows[args.top:]
    if rest:
        print(f"{sum(r.share for r in rest):9.1f} {100 * sum(r.share for r in rest) / wall:5.1f}"
              f" {'':>9} {'':>8} {'':>4} {'':>7} {'':>6}  {len(rest)} more thunks")
    print(f"\n{'share us':>9} {'%':>5}  by layer (named scope; bwd: its gradient)")
    for tag, v in sorted(layer_shares(rows, sources).items(), key=lambda kv: -kv[1]):
        print(f"{v:9.1f} {100 * v / wall:5.1f}  {tag}")
    if args.plot:
        mid = sorted(windows, key=lambda w: w[1] - w[0])[len(windows) // 2]
        plot_timeline(mid, rows, sources, args.plot, args.workload)
        print(f"timeline: {args.plot}")


if __name__ == "__main__":
    main()
