"""``benchmarks/ab_options.py``: compile options parsed, rounds alternated in rotated
order, ratios against the base program, and a real run with its control."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import ab_options as ab
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


@pytest.mark.parametrize("text,expected", [
    ("xla_cpu_enable_fast_math=true", ("xla_cpu_enable_fast_math", True)),
    ("a=False", ("a", False)),
    (" xla_cpu_prefer_vector_width = 256 ", ("xla_cpu_prefer_vector_width", 256)),
    ("x=0.5", ("x", 0.5)),
    ("xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
     ("xla_cpu_experimental_ynn_fusion_type", "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT")),
    ("empty=", ("empty", "")),
])
def test_options_are_parsed_into_typed_values(text, expected):
    name, value = ab.parse_option(text)
    assert (name, value) == expected and type(value) is type(expected[1])


@pytest.mark.parametrize("text", ["no_value", "=1", ""])
def test_an_option_without_name_or_equals_sign_is_refused(text):
    with pytest.raises(ValueError, match="NAME=VALUE"):
        ab.parse_option(text)


def test_rounds_rotate_the_order_and_keep_the_fastest_call_per_step():
    """A fake clock advances by each run's cost; the second call of every slot is
    faster, so the fastest is kept; 4 steps per call divide it."""
    now, order, calls = [0.0], [], {"base": 0, "control": 0, "v0": 0}
    cost = {"base": 8.0, "control": 8.0, "v0": 4.0}

    def make(name):
        def run():
            order.append(name)
            calls[name] += 1
            now[0] += cost[name] * (1.0 if calls[name] % 2 else 0.5)
        return run

    probes = iter([100.0, 900.0, None])  # near and far on any processor's line
    times, states = ab.alternate_rounds({n: make(n) for n in cost}, rounds=3, calls=2,
                                        steps=4, probe=lambda: next(probes),
                                        clock=lambda: now[0])
    assert order[::2] == ["base", "control", "v0", "control", "v0", "base",
                          "v0", "base", "control"]
    assert times == {"base": [1.0] * 3, "control": [1.0] * 3, "v0": [0.5] * 3}
    assert states == ["near", "far", ""]
    summary = ab.summarize(times)
    assert summary["v0"]["ratio"] == 2.0 and summary["v0"]["faster"] == 1.0
    assert summary["control"]["ratio"] == 1.0 and summary["control"]["faster"] == 0.0
    assert summary["base"]["ms"] == 1000.0 and summary["v0"]["spread"] == 1.0


def test_the_summary_takes_the_median_of_per_round_ratios():
    times = {"base": [1.0, 2.0, 1.0], "control": [1.0, 2.0, 1.0], "v0": [2.0, 1.0, 0.5]}
    s = ab.summarize(times)["v0"]
    # per-round ratios 0.5, 2, 2: median 2 (the ratio of the medians would be 1)
    assert s["ratio"] == 2.0 and s["faster"] == pytest.approx(2 / 3)
    assert s["ms"] == 1000.0 and s["spread"] == 4.0


def test_the_table_names_variants_and_says_which_kept_the_module():
    times = {"base": [1e-3], "control": [1e-3], "v0": [2e-3]}
    text = ab.format_table(ab.summarize(times), {"base": True, "control": True, "v0": False},
                           {"v0": "xla_cpu_enable_fast_math=True"})
    lines = text.splitlines()
    assert lines[0].split()[-2:] == ["same", "HLO"]
    assert lines[1].split()[0] == "base" and lines[1].split()[-1] == "-"
    assert lines[2].split()[0] == "control" and lines[2].split()[-1] == "yes"
    assert lines[3].split()[0] == "xla_cpu_enable_fast_math=True"
    assert lines[3].split()[1:3] == ["2.000", "0.500"] and lines[3].split()[-1] == "no"


def test_switches_are_parsed_and_restored_after_the_build():
    assert ab.parse_switch("cianna_jax.layers.fused_tiles:FUSE=false") == (
        "cianna_jax.layers.fused_tiles", "FUSE", False)
    for bad in ("FUSE=false", ":FUSE=false", "cianna_jax.layers.conv:=1"):
        with pytest.raises(ValueError, match="MODULE:NAME=VALUE|NAME=VALUE"):
            ab.parse_switch(bad)
    import cianna_jax.layers.fused_tiles as ft
    seen = ab.switched_workload("cianna_jax.layers.fused_tiles", "FUSE", False,
                                lambda: (ft.FUSE,))
    assert seen == (False,) and ft.FUSE is True
    with pytest.raises(ValueError, match="no constant 'NOPE'"):
        ab.switched_workload("cianna_jax.layers.fused_tiles", "NOPE", 1, lambda: ())
    with pytest.raises(ValueError, match="no module"):
        ab.switched_workload("cianna_jax.no_such_module", "X", 1, lambda: ())
    with pytest.raises(RuntimeError):  # a failing build restores the constant too
        ab.switched_workload("cianna_jax.layers.fused_tiles", "FUSE", False,
                             lambda: (_ for _ in ()).throw(RuntimeError("build")))
    assert ft.FUSE is True


@pytest.mark.parametrize("argv,needle", [
    (["mnist-infer", "--rounds", "0"], "--rounds"),
    (["mnist-infer", "--option", "fast_math"], "NAME=VALUE"),
    (["mnist-infer", "--switch", "cianna_jax.layers.conv:NO_SUCH=1"], "no constant"),
    (["sdc1-train", "--size", "100"], "multiple of 16"),
    (["sdc1-train", "--steps", "-1"], "--steps"),
])
def test_command_line_refuses_bad_arguments(argv, needle, capsys):
    with pytest.raises(SystemExit):
        ab.main(argv)
    assert needle in capsys.readouterr().err


def test_a_real_run_prints_base_control_and_the_variant(capsys):
    """MNIST's inference step, one round: the control compiles the same module; an
    option of LLVM's code generation keeps the module too; an unknown option stops the
    run with its name."""
    ab.main(["mnist-infer", "--rounds", "1", "--calls", "1",
             "--option", "xla_cpu_enable_fast_math=true"])
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("base", "control",
                                                    "xla_cpu_enable_fast_math=True")}
    assert rows["control"][-1] == "yes" and rows["xla_cpu_enable_fast_math=True"][-1] == "yes"
    assert float(rows["base"][1]) > 0 and "noise floor" in out
    with pytest.raises(SystemExit):
        ab.main(["mnist-infer", "--rounds", "1", "--option", "xla_cpu_no_such_option=1"])
    assert "xla_cpu_no_such_option" in capsys.readouterr().err
