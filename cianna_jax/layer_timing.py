"""CIANNA's ``perf_eval``: per-layer times of the step ``train`` (or ``forward``) last ran.

The compiled step is replayed on the batch it last used, under JAX's profiler; each XLA
operation's time is attributed to a layer by the program's data flow.  Nothing is
compiled again and no array is baked into a program (see :func:`perf_eval`).
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np

from . import console, host_arrays, parallel, training
from .api import NetState, get_state, say, warn_once
from .checks import as_int as _int
from .hlo_text import parse_hlo
from .layers.common import Ctx
from .network import inference_params

__all__ = ["perf_eval"]


def perf_eval(network: int = -1, *, runs: int = 3) -> None:
    """Print CIANNA's per-layer table: forward and backward time per example (µs).

    What is measured: the compiled training step that the last ``train`` ran (or, when
    only ``forward`` ran, its inference step) is replayed ``runs`` times on the last batch
    it used, under JAX's profiler, which records the duration of every XLA operation of
    that program.  Nothing is compiled again (JAX's cache returns the program that
    ``train`` built; after a pass that ran several batches per compiled call, see
    ``driver._chunk_steps``, the one-batch program of the same step is compiled once
    first) and nothing is baked into a program: parameters and data are its arguments.
    Each operation is attributed to a layer by the program's data flow
    (:func:`_attribute`): forward operations to the deepest layer whose weights they
    read, backward operations to the layer whose weight gradient they feed or whose
    weights they propagate the error through, the optimizer update to its layer.
    Layers without weights (pooling, an activation-only norm) are counted with the
    layer before; a conv and the max pool it runs fused with appear on the conv, a conv
    fused with the tiling conv after it (on CPU) has its forward on that second conv.  The
    table shows the median over the runs of each layer's summed operation times, per
    example of the batch, and the wall time of the whole step; the report is also kept
    in ``get_state(network).perf["report"]``.  Costs ``2 * runs`` steps, fewer when
    steps are slow (the replay stays within about 3 s, at least two steps).
    """
    state = get_state(network)
    if "train_call" not in state.perf and "eval_call" not in state.perf:
        raise RuntimeError("perf_eval: call train() or forward() first")
    runs = _int(runs, "runs", minimum=1)
    t_start = time.perf_counter()
    with parallel.context(state.mesh):
        kind, step, lower, params = _perf_replay(state)
        t0 = time.perf_counter()
        text = lower().compile().as_text()  # JAX's cache: the program train/forward ran
        t_program = time.perf_counter() - t0
        module = text.split(None, 2)[1].rstrip(",") if text.startswith("HloModule") else None
        walls, events = _profiled_runs(step, runs)
    report = _perf_report(state, kind, text, module, walls, events, len(walls), params)
    report["program_seconds"] = t_program
    report["seconds"] = time.perf_counter() - t_start
    state.perf["report"] = report
    say(console.perf_table(report))


def _perf_replay(state: NetState):
    """("train" or "forward", a zero-argument function running the compiled step once
    on the recorded batch, a function lowering that same call, the parameters it
    reads)."""
    net = state.net
    if "train_call" in state.perf:
        xb, tb, nv, call = state.perf["train_call"]
        # train_step donates its buffers: replay on copies, chaining the runs
        held = {"p": host_arrays.copy_tree(state.params),
                "s": host_arrays.copy_tree(state.opt_state)}

        def step():
            p, s, loss = training.train_step(net, state.optimizer, held["p"], held["s"], xb,
                                             tb, nv, **call)
            held["p"], held["s"] = p, s
            return loss

        def lower():
            return training.train_step.lower(net, state.optimizer, held["p"], held["s"], xb,
                                             tb, nv, **call)

        return "train", step, lower, state.params
    xb, tb, nv, call, kw = state.perf["eval_call"]
    params = inference_params(net, state.forward_params(), state.policy)  # as forward()

    def step():
        return training.eval_step(net, params, xb, tb, nv, *call, **kw)

    def lower():
        return training.eval_step.lower(net, params, xb, tb, nv, *call, **kw)

    return "forward", step, lower, params


def _profiled_runs(step, runs: int, budget: float = 3.0):
    """Run ``step`` up to ``runs`` times timed, then as many times under JAX's profiler:
    (wall seconds of the timed runs, XLA operation events ``(run_id, module, op, start
    ns, end ns)``;
    no events when no profile could be taken, e.g. a trace already running).  Slow
    steps are run fewer times so that the replay stays within about ``budget`` seconds
    (at least one timed and one profiled run)."""
    import glob
    import tempfile

    walls, events = [], []
    while len(walls) < runs:  # wall clock without the profiler's overhead
        t0 = time.perf_counter()
        jax.block_until_ready(step())
        walls.append(time.perf_counter() - t0)
        if 2 * sum(walls) + walls[-1] > budget:
            break
    runs = len(walls)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            jax.profiler.start_trace(tmp)
        except Exception as err:  # a trace of the user's is running
            warn_once("perf_trace", f"perf_eval: no profile ({err}); whole-step times only",
                      RuntimeWarning)
            tmp = None
        try:
            for _ in range(runs if tmp is not None else 0):
                jax.block_until_ready(step())
        finally:
            if tmp is not None:
                jax.profiler.stop_trace()
        files = glob.glob(os.path.join(tmp, "**", "*.xplane.pb"), recursive=True) if tmp else []
        for path in files:
            data = jax.profiler.ProfileData.from_file(path)
            for plane in data.planes:
                for line in plane.lines:
                    for ev in line.events:
                        st = dict(ev.stats)
                        if "hlo_op" in st:
                            events.append((st.get("run_id"), st.get("hlo_module"),
                                           str(st["hlo_op"]), float(ev.start_ns),
                                           float(ev.end_ns)))
    return walls, events


def _leaf_layer(path) -> int | None:
    """Layer index of a parameter-like leaf path (``params[i]['w']``, the optimizer's
    ``trace[i]['w']``...): the sequence index right before the leaf's dict key."""
    keys = list(path)
    for a, b in zip(keys[::-1][1:], keys[::-1]):
        if isinstance(b, jax.tree_util.DictKey) and isinstance(a, jax.tree_util.SequenceKey):
            return int(a.idx)
    return None


def _attribute(text: str, n_layers: int, param_leaf_layers, output_layers):
    """Map each top-level instruction of the compiled program ``text`` to
    ``(layer or None, "fwd"|"bwd")``.

    ``param_leaf_layers``: the layer of each leaf of the first argument (the network's
    parameters, the program's first parameters); ``output_layers``: the layer of each
    output of the program (None: not a per-layer value).  Rules: an operation is
    backward when JAX named it a transposition (``transpose(jvp(...))``) or it reads a
    backward result (the optimizer update); a forward operation belongs to the deepest
    layer whose weights it reads; a backward one to the layer whose weights (alone, no
    data) it reads, else to the deepest layer among the outputs it feeds; what is
    left (random bits, input padding) goes to the layer of its first reader.  Also
    returns ``{instruction: (opcode, readers)}``."""
    comps, entry = parse_hlo(text)
    instrs = comps.get(entry, [])
    n_leaves = len(param_leaf_layers)
    fmax, data, phase, users = {}, {}, {}, {}
    for ins in instrs:
        name = ins["name"]
        for o in ins["operands"]:
            users.setdefault(o, []).append(name)
        if ins["opcode"] == "parameter":
            k = ins["number"]
            is_param = k is not None and k < n_leaves
            fmax[name] = param_leaf_layers[k] if is_param else -1
            data[name] = not is_param and not name.startswith("opt_state")
            phase[name] = "fwd"
            continue
        ops = [o for o in ins["operands"] if o in fmax]
        fmax[name] = max([fmax[o] for o in ops], default=-1)
        data[name] = any(data[o] for o in ops)
        backward = "transpose(" in ins["op_name"] or any(phase[o] == "bwd" for o in ops)
        phase[name] = "bwd" if backward else "fwd"
    gmax = {}
    root = next((ins for ins in instrs if ins["root"]), None)
    if root is not None and root["opcode"] == "tuple":
        for o, layer in zip(root["operands"], output_layers):
            if layer is not None:
                gmax[o] = max(gmax.get(o, -1), layer)
    for ins in reversed(instrs):
        name = ins["name"]
        g = max([gmax.get(u, -1) for u in users.get(name, [])] + [gmax.get(name, -1)])
        gmax[name] = g
    layer_of = {}
    for ins in instrs:
        name = ins["name"]
        if ins["opcode"] in ("parameter", "constant"):
            continue
        if phase[name] == "fwd":
            layer = fmax[name] if fmax[name] >= 0 else None
        else:
            weights = [fmax[o] for o in ins["operands"]
                       if o in fmax and not data[o] and fmax[o] >= 0]
            layer = max(weights) if weights else (gmax[name] if gmax[name] >= 0 else None)
        layer_of[name] = layer
    for ins in reversed(instrs):  # unattributed: the layer of the first reader
        name = ins["name"]
        if name in layer_of and layer_of[name] is None:
            readers = [layer_of.get(u) for u in users.get(name, [])]
            readers = [r for r in readers if r is not None]
            layer_of[name] = min(readers) if readers else None
    graph = {ins["name"]: (ins["opcode"], tuple(users.get(ins["name"], ()))) for ins in instrs}
    return ({k: (v if v is None or v < n_layers else None, phase[k])
             for k, v in layer_of.items()}, graph)


#: operations XLA's CPU runtime runs asynchronously on its thread pool: their trace
#: event covers the launch only, so they last until their first reader starts
_ASYNC_OPS = frozenset({"convolution", "dot", "custom-call", "fft"})


def _op_times(events, module, graph) -> dict:
    """``{run_id: {op: ns}}`` from profiler events.  An asynchronous operation
    (:data:`_ASYNC_OPS`) is timed from its start to the start of its first reader with
    an event in the same run (its own end when later or when nothing reads it): an upper
    bound, exact when the reader waited for it, as along a network's layer chain."""
    runs: dict = {}
    for run_id, mod, op, start, end in events:
        if module is not None and mod != module:
            continue
        ops = runs.setdefault(run_id, {})
        s0, e0 = ops.get(op, (start, end))
        ops[op] = (min(s0, start), max(e0, end))
    out = {}
    for run_id, ops in runs.items():
        times = {}
        for op, (start, end) in ops.items():
            opcode, readers = graph.get(op, ("", ()))
            if opcode in _ASYNC_OPS:
                starts, todo, seen = [], list(readers), set()
                while todo:  # readers with an event, through bitcasts and tuple accesses
                    r = todo.pop()
                    if r in seen:
                        continue
                    seen.add(r)
                    if r in ops:
                        if ops[r][0] >= start:
                            starts.append(ops[r][0])
                    elif len(seen) < 64:
                        todo.extend(graph.get(r, ("", ()))[1])
                if starts:
                    end = max(end, min(starts))
            times[op] = end - start
        out[run_id] = times
    return out


def _perf_report(state: NetState, kind: str, text: str, module, walls, events, runs,
                 params) -> dict:
    """The per-layer times (µs per example, medians over runs) of a profiled replay of
    a program whose first argument is ``params``."""
    net = state.net
    b = int(state.b_size)
    leaf_layers = [_leaf_layer(path) for path, _ in
                   jax.tree_util.tree_flatten_with_path(tuple(params))[0]]
    out_layers: list = []
    if kind == "train":
        out_layers = [_leaf_layer(p) for p, _ in jax.tree_util.tree_flatten_with_path(
            (tuple(params), state.opt_state))[0]] + [None]
    n = len(net.layers)
    try:
        where, graph = _attribute(text, n, leaf_layers, out_layers)
    except Exception:  # an HLO text this parser does not know: whole-step times only
        where, graph = {}, {}
    per_run: dict = {}
    for run_id, ops in _op_times(events, module, graph).items():
        acc = per_run.setdefault(run_id, {})
        for op, ns in ops.items():
            if op not in where and where:
                continue  # nested in a loop body: counted in its loop's own event
            key = where.get(op, (None, "fwd"))
            acc[key] = acc.get(key, 0.0) + ns
    fwd, bwd = np.zeros(n), np.zeros(n)
    other = {"fwd": 0.0, "bwd": 0.0}
    if per_run:
        keys = {k for acc in per_run.values() for k in acc}
        for key in keys:
            value = float(np.median([acc.get(key, 0.0) for acc in per_run.values()]))
            value = value / 1e3 / b  # ns per batch -> µs per example
            layer, phase = key
            if layer is None:
                other[phase] += value
            elif phase == "fwd":
                fwd[layer] += value
            else:
                bwd[layer] += value
    ctx = Ctx(train=True, nd=net.nd, policy=state.policy)
    fused = sorted(net.fused_pairs(ctx))
    return dict(kind=kind, batch=b, runs=runs, layers=[layer.kind for layer in net.layers],
                forward=fwd, backward=bwd, other=other, profiled=bool(per_run),
                wall_us=float(np.median(walls)) * 1e6 / b,
                n_weights=sum(int(np.prod(a.shape)) for p in state.params for a in p.values()),
                fused=[i + 1 for i in fused], tiled=sorted(net.tiled_pairs(ctx)),
                )
