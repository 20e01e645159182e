"""``benchmarks/profile_step.py``: thunks paired with their completion markers, wall time
shared between the thunks in flight, sources read from the compiled module."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import profile_step as ps
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def _x(name, ts, dur, tid=1):
    return {"ph": "X", "name": name, "ts": ts, "dur": dur, "tid": tid, "pid": 1}


def _trace():
    """One program run (dispatched at 0, waited for until 100 us): a convolution launched at 10 (its work on the pool
    until its end marker at 60), a fusion from 40 to 70 beside it, a ``cond`` whose
    body is a nested executor running ``inner`` (75-85), a ``while`` whose body thunk runs
    inside its launch (87-90), and a second run of the fusion in a later window."""
    return [
        _x(ps.DISPATCH, 0, 8, tid=9), _x(ps.WINDOW, 30, 70, tid=9),
        _x(ps.WINDOW, 80, 1, tid=3),  # a nested executor's wait
        _x("conv.1", 10, 5), _x("end: conv.1", 60, 0.5),
        _x("fusion", 40, 30, tid=2), _x("end: fusion", 70, 0.5, tid=2),
        _x("cond.2", 72, 20), _x(ps.EXECUTE, 74, 15), _x("inner", 75, 10),
        _x("end: inner", 85, 0.5), _x("end: cond.2", 92, 0.5),
        _x("while.3", 86, 8), _x("body", 87, 3), _x("end: body", 90, 0.2),
        _x("end: while.3", 94, 0.2),
        _x(ps.DISPATCH, 200, 5, tid=9), _x(ps.WINDOW, 240, 10, tid=9),
        _x(ps.DISPATCH, 300, 5, tid=9),  # a call that never waited: no window
        _x("fusion", 210, 20, tid=2), _x("end: fusion", 230, 0.5, tid=2),
        {"ph": "M", "name": "thread_name", "pid": 1, "tid": 1},
    ]


def test_windows_pair_launches_with_their_end_markers_and_drop_control_flow():
    windows = ps.thunk_windows(_trace())
    assert [(a, b) for a, b, _ in windows] == [(0, 100), (200, 250)]
    first = {iv.name: (iv.start, iv.end) for iv in windows[0][2]}
    assert first == {"conv.1": (10, 60), "fusion": (40, 70), "inner": (75, 85),
                     "body": (87, 90)}
    # the time inside each launch: the convolution's 5 us, the rest left to the pool
    assert {iv.name: iv.launch for iv in windows[0][2]} == {"conv.1": 5, "fusion": 30,
                                                           "inner": 10, "body": 3}
    assert [(iv.name, iv.start, iv.end) for iv in windows[1][2]] == [("fusion", 210, 230)]


def test_shares_split_overlaps_and_add_up_to_the_wall_time():
    (a, b, ivs), _ = ps.thunk_windows(_trace())
    share = ps.share_time(a, b, ivs)
    assert share["conv.1"] == pytest.approx(30 + 10)  # alone 10-40, halved 40-60
    assert share["fusion"] == pytest.approx(10 + 10)  # halved 40-60, alone 60-70
    assert share["inner"] == pytest.approx(10) and share["body"] == pytest.approx(3)
    assert share[ps.BETWEEN] == pytest.approx(10 + 5 + 2 + 10)
    assert sum(share.values()) == pytest.approx(b - a)


def test_a_thunk_ends_when_its_first_reader_starts_if_its_marker_comes_later():
    """The executor may run a thunk's readers before writing its ``end:`` marker: the
    module's data flow (through a bitcast) ends ``fusion`` at its reader's start."""
    text = "\n".join([
        "ENTRY %main (p: f32[4]) -> f32[4] {",
        "  %fusion = f32[4]{0} fusion(%p), kind=kLoop, calls=%c",
        "  %bitcast.1 = f32[2,2]{1,0} bitcast(%fusion)",
        "  %reader = (f32[2,2]{1,0}, f32[]) fusion(%bitcast.1, %p), kind=kLoop, calls=%d",
        "  ROOT %other = f32[4]{0} add(%p, %p)", "}"])
    readers = ps.hlo_readers(text)
    assert readers["fusion"] == {"bitcast.1"} and readers["bitcast.1"] == {"reader"}
    assert readers["p"] == {"fusion", "reader", "other"}
    events = [_x(ps.DISPATCH, 0, 1, tid=9), _x(ps.WINDOW, 5, 95, tid=9),
              _x("fusion", 10, 5), _x("reader", 20, 10), _x("end: reader", 31, 0.1),
              _x("end: fusion", 60, 0.1)]
    (_, _, ivs), = ps.thunk_windows(events, readers)
    assert {iv.name: (iv.start, iv.end) for iv in ivs} == {"fusion": (10, 20),
                                                         "reader": (20, 31)}
    (_, _, ivs), = ps.thunk_windows(events)  # without the data flow: the marker
    assert {iv.name: iv.end for iv in ivs}["fusion"] == 60


def test_rows_are_per_step_and_sorted():
    wall, rows = ps.profile_rows(ps.thunk_windows(_trace()), steps_per_call=2)
    assert wall == pytest.approx(150 / 4)
    assert [r.name for r in rows[:2]] == [ps.BETWEEN, "conv.1"]  # 57 us, 40 us
    assert rows[1].share == pytest.approx(40 / 4) and rows[1].launches == 1 / 4
    fusion = next(r for r in rows if r.name == "fusion")
    assert fusion.in_flight == pytest.approx(50 / 4) and fusion.launches == 0.5
    assert fusion.in_launch == pytest.approx(50 / 4) and rows[1].in_launch == pytest.approx(5 / 4)
    assert sum(r.share for r in rows) == pytest.approx(wall)
    with pytest.raises(ValueError, match="no program run"):
        ps.profile_rows([], 1)


def test_sources_from_stack_frame_tables_and_from_source_lines():
    text = "\n".join([
        "HloModule jit_f", "", "FileNames", '1 "/a/b/layers/conv.py"', "",
        "FunctionNames", '1 "apply"', "", "FileLocations",
        "1 {file_name_id=1 function_name_id=1 line=42 end_line=42 column=1 end_column=9}", "",
        "StackFrames", "1 {file_location_id=1 parent_frame_id=1}", "",
        "ENTRY %main {",
        '  %conv.1 = f32[8]{0} convolution(%p, %q), metadata={op_name="jit(f)/conv_general_'
        'dilated" stack_frame_id=1}',
        '  ROOT %fusion = f32[8]{0} fusion(%conv.1), kind=kLoop, metadata={op_name="jit(f)/'
        'add" source_file="/x/y.py" source_line=7}',
        "  %plain = f32[8]{0} add(%a, %b)", "}"])
    src = ps.hlo_sources(text)
    assert src["conv.1"] == "conv.py:42 apply (conv_general_dilated)"
    assert src["fusion"] == "y.py:7 (add)"
    assert "plain" not in src


def test_layer_tags_from_named_scopes_and_shares_per_layer():
    text = "\n".join([
        "ENTRY %main {",
        '  %a = f32[8]{0} convolution(%p, %q), metadata={op_name="jit(f)/L0_conv_pool/'
        'conv_general_dilated" source_file="/x/fused.py" source_line=3}',
        '  %b = f32[8]{0} dot(%p, %q), metadata={op_name="jit(f)/transpose(jvp(L0_conv_pool))'
        '/dot_general"}',
        '  %c = f32[8]{0} add(%p, %q), metadata={op_name="jit(f)/L4_dense/add"}',
        '  %d = f32[8]{0} add(%p, %q), metadata={op_name="jit(f)/add"}',
        "  %copy.7 = f32[8]{0} copy(%c)", "  %x = f32[8]{0} add(%q, %q)", "}"])
    src = ps.hlo_sources(text)
    assert src == {"a": "L0_conv_pool fused.py:3 (conv_general_dilated)",
                   "b": "L0_conv_pool bwd dot_general", "c": "L4_dense add", "d": "add",
                   "copy.7": "L4_dense (from c)"}  # made by XLA: its operand's layer
    rows = [ps.Row(n, v, v, 1) for n, v in (("a", 5), ("b", 3), ("c", 2), ("d", 1),
                                            (ps.BETWEEN, 4))]
    assert ps.layer_shares(rows, src) == {"L0_conv_pool": 5, "L0_conv_pool bwd": 3,
                                          "L4_dense": 2, "(no layer)": 1, ps.BETWEEN: 4}


def test_a_real_trace_finds_the_convolution_with_its_pool_work():
    """A jitted convolution traced by ``jax.profiler``: its thunk is found, named after
    this file's lines, and the rows add up to the traced calls' wall time."""
    x = jnp.ones((4, 24, 24, 16))
    w = jnp.ones((3, 3, 16, 32)) / 100

    def f(x, w):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.tanh(y).sum()

    comp = jax.jit(f).lower(x, w).compile()
    comp(x, w).block_until_ready()
    events = ps.trace_events(lambda: comp(x, w).block_until_ready(), 3)
    windows = ps.thunk_windows(events, ps.hlo_readers(comp.as_text()))
    assert len(windows) >= 3
    wall, rows = ps.profile_rows(windows, 1)
    assert sum(r.share for r in rows) == pytest.approx(wall)
    sources = ps.hlo_sources(comp.as_text())
    thunks = [r for r in rows if r.name != ps.BETWEEN]
    assert thunks and all(r.name in sources for r in thunks), (rows, sources)
    # the largest thunk (the convolution, or the fusion holding it) comes from f above
    assert "test_profile_step.py" in sources[thunks[0].name]
    assert thunks[0].in_flight > 0 and thunks[0].launches == 1


def test_network_layers_are_named_in_compiled_programs():
    """``network.forward_internal`` runs each layer in a named scope, so the compiled
    module (and a profile) says which layer an operation belongs to, gradient included."""
    import cianna_jax as cj
    from cianna_jax import nn

    net = nn.network([8, 8], 1, [nn.conv([3, 3], 4, padding=[1, 1]), nn.pool([2, 2]),
                                 nn.conv([3, 3], 4, padding=[1, 1]), nn.dense(3)])
    params = cj.init_params(jax.random.key(0), net)
    x = jnp.ones((2, 8, 8, 1))

    def loss(p):
        return jnp.sum(cj.apply(net, p, x) ** 2)

    text = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
    tags = {v.split(" (")[0].split(" ")[0] + (" bwd" if " bwd " in v else "")
            for v in ps.hlo_sources(text).values() if v.startswith("L")}
    assert {"L0_conv_pool", "L2_conv", "L3_dense", "L0_conv_pool bwd", "L2_conv bwd",
            "L3_dense bwd"} <= tags, tags


def test_output_bytes_of_arrays_tuples_and_small_types():
    text = "\n".join([
        "%fused_computation (param_0: f32[2,3]) -> f32[2,3] {",
        "  ROOT %inner = f32[2,3]{1,0} negate(%param_0)", "}",
        "ENTRY %main (p: f32[64,14,14,8]) -> (f32[64,14,14,8], s32[4]) {",
        "  %p = f32[64,14,14,8]{3,2,1,0} parameter(0)",
        "  %fusion = (f32[64,14,14,8]{3,2,1,0}, pred[10]{0}) fusion(%p), kind=kLoop, "
        "calls=%fused_computation, metadata={op_name=\"a/b\"}",
        "  %half = bf16[3,5]{1,0} convert(%p)",
        "  %scalar = f32[] constant(0)",
        "  ROOT %out = (f32[64,14,14,8]{3,2,1,0}, s32[4]{0}) tuple(%p, %p)", "}"])
    sizes = ps.output_bytes(text)
    assert sizes["p"] == 64 * 14 * 14 * 8 * 4 == 401_408
    assert sizes["fusion"] == 401_408 + 10  # a tuple: every element; pred one byte each
    assert sizes["half"] == 30 and sizes["scalar"] == 4 and sizes["inner"] == 24
    assert sizes["out"] == 401_408 + 16


@pytest.mark.parametrize("argv,needle", [(["sdc1-train", "--size", "100"], "--size"),
                                         (["imagenet-train", "--size", "208"], "multiple of 32"),
                                         (["mnist-infer", "--calls", "0"], "--calls"),
                                         (["sdc1-infer", "--steps", "0"], "--steps")])
def test_command_line_refuses_bad_arguments(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        ps.main(argv)
    assert e.value.code == 2 and needle in capsys.readouterr().err


def test_command_line_says_it_profiles_the_cpu_runtime_only(monkeypatch, capsys):
    import cianna_jax.xla_cpu

    monkeypatch.setattr(cianna_jax.xla_cpu, "tune", lambda: None)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with pytest.raises(SystemExit) as e:
        ps.main(["mnist-infer"])
    assert e.value.code == 2 and "JAX_PLATFORMS=cpu" in capsys.readouterr().err


def test_programs_take_the_mixed_precision_mode(monkeypatch):
    """``--mixed-precision`` reaches the traced step: the policy is a static argument
    of the program and its inference weights are laid out under it."""
    from cianna_jax.precision import get_policy

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the workloads' modules

    p = ps.program("mnist-infer", mode="BF16C_FP32A")
    assert p.static["policy"] == get_policy("BF16C_FP32A") and not p.train
    assert ps.program("mnist-train").static["policy"] == get_policy("off")
    with pytest.raises(SystemExit) as e:
        ps.main(["mnist-train", "--mixed-precision", "FP8"])
    assert e.value.code == 2


def test_programs_run_the_batches_asked_per_call(monkeypatch):
    """``steps``: MNIST runs 8 batches per call by default and 1 when asked (one step,
    no loop); SDC1 one by default and a loop of 3 batches when asked, as ``predict``
    and ``train_epoch`` run them."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the workloads' modules

    one = ps.program("mnist-infer", steps=1)
    assert one.steps == 1 and one.args[2].shape == (64, 28, 28, 1)
    assert ps.program("mnist-infer").steps == 8
    assert ps.program("sdc1-train", size=32).steps == 1
    three = ps.program("sdc1-train", size=32, steps=3)
    assert three.steps == 3 and three.args[4].shape == (3, 8, 32, 32, 1)
    assert three.args[5].shape[:2] == (3, 8)
