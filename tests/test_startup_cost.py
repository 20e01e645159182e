"""``benchmarks/startup_cost.py``: the phases timed from scratch, the CPU-branch
measurement and its undoing, the table, bad arguments, and a real run."""

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from jax import lax

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import profile_step
    import startup_cost as sc
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def _branches(x):
    return lax.platform_dependent(x, cpu=lambda x: x + 1.0, default=lambda x: x * 10.0)


def test_cpu_branches_only_traces_one_branch_and_is_undone():
    x = jnp.ones((2,), jnp.float32)
    both = jax.make_jaxpr(_branches)(x)
    assert "cond" in str(both) or "platform_index" in str(both)
    original = lax.platform_dependent
    with sc.cpu_branches_only():
        one = jax.make_jaxpr(lambda x: _branches(x))(x)  # a new function: traced anew
        # a platform_dependent without a cpu branch takes its default one
        only_default = jax.make_jaxpr(
            lambda x: lax.platform_dependent(x, default=lambda x: x * 10.0))(x)
    assert "cond" not in str(one) and "platform_index" not in str(one)
    assert [e.primitive.name for e in one.eqns] == ["add"]
    assert [e.primitive.name for e in only_default.eqns] == ["mul"]
    assert lax.platform_dependent is original
    with pytest.raises(RuntimeError), sc.cpu_branches_only():
        raise RuntimeError
    assert lax.platform_dependent is original  # undone after an error too


class _FakeStep:
    """A jitted step stand-in whose trace / lower / compile advance a fake clock."""

    def __init__(self, now, costs):
        self.now, self.costs, self.calls = now, iter(costs), 0

    def trace(self, *args, **static):
        self.calls += 1
        self.now[0] += next(self.costs)
        step = self

        class Traced:
            jaxpr = type("J", (), {"eqns": [0] * 7})()

            def lower(self):
                step.now[0] += next(step.costs)

                class Lowered:
                    def as_text(self):
                        return "a\nb\nc\n"

                    def compile(self):
                        step.now[0] += next(step.costs)

                return Lowered()

        return Traced()


def test_measure_keeps_the_fastest_repeat_of_each_phase(monkeypatch):
    now = [0.0]
    # (trace, lower, compile) per repeat: the fastest of each comes from different repeats
    fake = _FakeStep(now, [3.0, 0.5, 9.0, 2.0, 0.7, 8.0, 2.5, 0.4, 8.5])
    monkeypatch.setattr(sc, "program", lambda name, size, mode: profile_step.Program(
        fake, ("net",), {"with_loss": False}, 1, False))
    cleared = []
    monkeypatch.setattr(jax, "clear_caches", lambda: cleared.append(1))
    r = sc.measure("mnist-infer", 128, 3, clock=lambda: now[0])
    assert (r.trace, r.lower, r.compile) == pytest.approx((2.0, 0.4, 8.0))
    assert (r.eqns, r.hlo_lines) == (7, 3) and fake.calls == 3 and len(cleared) == 3


def test_table_has_a_row_per_workload():
    text = sc.format_rows([sc.Phases("sdc1-train", 2.03, 0.597, 6.324, 365, 3791),
                           sc.Phases("mnist-infer", 0.089, 0.073, 0.591, 3, 359)])
    lines = text.splitlines()
    assert lines[0].split() == ["workload", "trace", "s", "lower", "s", "compile", "s",
                                "eqns", "HLO", "lines"]
    assert lines[2].split() == ["sdc1-train", "2.030", "0.597", "6.324", "365", "3791"]
    assert lines[3].split()[0] == "mnist-infer" and "fastest" in lines[-1]


@pytest.mark.parametrize("argv,needle", [
    (["mnist-train", "--repeats", "0"], "--repeats"),
    (["sdc1-train", "--size", "100"], "multiple of 16"),
    (["no-such-workload"], "invalid choice"),
])
def test_bad_arguments_stop_the_command(argv, needle, capsys):
    with pytest.raises(SystemExit):
        sc.main(argv)
    assert needle in capsys.readouterr().err


def test_a_real_run_times_every_phase(capsys):
    """MNIST's inference step, once: every phase took time, the program is not empty."""
    rows = sc.main(["mnist-infer", "--repeats", "1"])
    assert len(rows) == 1 and rows[0].workload == "mnist-infer"
    assert rows[0].trace > 0 and rows[0].lower > 0 and rows[0].compile > 0
    assert rows[0].hlo_lines > 10
    assert "mnist-infer" in capsys.readouterr().out
