"""perf_eval (replays the compiled step under the profiler) and the B.perf. rate.

Time-free assertions only: what is compiled, what the report contains, how the rate
meter counts completed work (fake clock, fake asynchronous steps)."""

import re

import jax
import numpy as np
import pytest

import cianna_jax as cnn
from cianna_jax import console, driver, training
from cianna_jax import layer_timing as perf_mod
from cianna_jax.hlo_text import parse_hlo

# CIANNA's functions write net_save/, fwd_res/ and error.txt in the current folder
pytestmark = pytest.mark.usefixtures("in_tmp_dir")


def _small_net(n=96, b=16, heavy=False, silent=1):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n, 144)).astype(np.float32)
    t = np.eye(3, dtype=np.float32)[rng.integers(0, 3, n)]
    cnn.init(in_dim=[12, 12], in_nb_ch=1, out_dim=3, bias=0.1, b_size=b, comp_meth="C_BLAS",
             no_logo=1, seed=0)
    cnn.create_dataset("TRAIN", n, x, t, silent=1)
    cnn.create_dataset("VALID", 32, x[:32], t[:32], silent=1)
    cnn.create_dataset("TEST", 32, x[:32], t[:32], silent=1)
    cnn.conv(f_size=[3, 3], nb_filters=4, padding=[1, 1], activation="RELU", silent=1)
    cnn.pool(p_size=[2, 2], silent=1)
    cnn.dense(nb_neurons=1500 if heavy else 16, activation="RELU", drop_rate=0.2, silent=1)
    cnn.dense(nb_neurons=3, strict_size=1, activation="SMAX", silent=1)
    return cnn.api._SESSION["last"]


class _Compiles:
    """Counts XLA compilations (jax.monitoring) between enter and exit."""

    registered = False
    count = 0

    @classmethod
    def _listen(cls, event, duration, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            cls.count += 1

    def __enter__(self):
        if not _Compiles.registered:
            jax.monitoring.register_event_duration_secs_listener(_Compiles._listen)
            _Compiles.registered = True
        self.start = _Compiles.count
        return self

    def __exit__(self, *exc):
        self.n = _Compiles.count - self.start


def test_perf_eval_compiles_nothing_and_reports(capsys):
    _small_net()
    cnn.train(nb_iter=1, learning_rate=0.01, momentum=0.8, control_interv=0, silent=1)
    capsys.readouterr()
    with _Compiles() as c:
        cnn.perf_eval()
    assert c.n == 0  # the program train() built, from JAX's cache
    out = capsys.readouterr().out
    assert "Backprop" in out and "Measured: the compiled training step" in out
    assert "Constant folding" not in out
    rows = [line for line in out.splitlines() if re.match(r"\s+\d+\s+[CPDN]\s", line)]
    assert len(rows) == 4
    rep = cnn.api.get_state().perf["report"]
    assert rep["kind"] == "train" and rep["profiled"] and rep["batch"] == 16
    fwd, bwd = np.asarray(rep["forward"]), np.asarray(rep["backward"])
    assert (fwd >= 0).all() and (bwd >= 0).all()
    assert fwd[0] > 0 and bwd[0] > 0 and fwd[2] > 0 and bwd[2] > 0  # conv (+ fused pool), dense
    assert fwd[1] == 0 and bwd[1] == 0  # the pool runs fused with the conv
    assert rep["fused"] == [1]
    total = fwd.sum() + bwd.sum()
    assert rep["other"]["fwd"] + rep["other"]["bwd"] < 0.2 * total
    assert rep["wall_us"] > 0 and rep["runs"] >= 1


def test_replayed_program_has_no_array_constants():
    _small_net()
    cnn.train(nb_iter=1, learning_rate=0.01, momentum=0.8, control_interv=0, silent=1)
    state = cnn.api.get_state()
    kind, _, lower, _ = perf_mod._perf_replay(state)
    assert kind == "train"
    text = lower().as_text()
    # parameters and data are arguments: no constant with more than a few elements
    shapes = re.findall(r"dense<[^>]*> : tensor<([0-9x]+)x?f32>", text)
    sizes = [int(np.prod([int(v) for v in s.split("x") if v])) for s in shapes]
    assert all(n <= 16 for n in sizes), sizes
    assert "tensor<16x12x12x1xf32>" in text.split("func.func public @main")[1].split("{")[0] \
        or "tensor<16x" in text


def test_heaviest_layer_gets_the_largest_share():
    _small_net(heavy=True)
    cnn.train(nb_iter=1, learning_rate=0.001, momentum=0.8, control_interv=0, silent=1)
    cnn.perf_eval()
    rep = cnn.api.get_state().perf["report"]
    tot = np.asarray(rep["forward"]) + np.asarray(rep["backward"])
    # dense 145 -> 1500 and 1500 -> 3 against a 3x3x4 conv on 12x12: the first dense
    # layer (FLOPs x60 the conv's) must dominate
    assert int(np.argmax(tot)) == 2


def test_perf_eval_after_forward_only(capsys):
    _small_net(heavy=True)
    cnn.forward(saving=0, silent=1)
    capsys.readouterr()
    cnn.perf_eval()
    out = capsys.readouterr().out
    assert "inference step" in out
    rep = cnn.api.get_state().perf["report"]
    assert rep["kind"] == "forward" and not np.asarray(rep["backward"]).any()
    # forward ran with the weights laid out for inference (conv: kernel and bias):
    # attributed by that program's arguments, the big dense layer dominates
    assert int(np.argmax(rep["forward"])) == 2


def test_perf_eval_needs_a_run():
    _small_net()
    with pytest.raises(RuntimeError, match="train\\(\\) or forward\\(\\)"):
        cnn.perf_eval()


def test_perf_table_formats_a_report():
    rep = dict(kind="train", batch=8, runs=2, layers=["conv", "pool", "dense"],
               forward=[2.0, 0.0, 1.0], backward=[4.0, 0.0, 2.0],
               other={"fwd": 0.5, "bwd": 0.0}, profiled=True, wall_us=9.0, n_weights=10,
               fused=[1], seconds=0.1)
    text = console.perf_table(rep)
    assert "Total" in text and "9.0 µs per example" in text and "fused at layers [1]" in text
    assert " 6.0 / 66.7" in text  # conv: 6 of the 9 cumulated µs
    assert "tiling conv" not in text
    text = console.perf_table(dict(rep, fused=[], tiled=[0], layers=["conv", "conv", "dense"]))
    assert "conv 0 runs fused with the tiling conv 1, its forward counted on 1" in text
    assert "max pool" not in text


def test_attribute_forward_backward_and_update():
    """A two-layer dense program: each operation goes to its layer."""
    import functools

    from cianna_jax import nn

    net = nn.network([4, 4], 1, [nn.dense(32, activation="RELU"),
                                 nn.dense(3, activation="SMAX", strict_size=1)])
    params = cnn.init_params(jax.random.key(0), net)
    opt = cnn.make_optimizer(0.01, 0.9, masks=functools.partial(cnn.cianna_masks, net))
    s = opt.init(params)
    x = np.zeros((8, 4, 4, 1), np.float32)
    t = np.zeros((8, 3), np.float32)
    text = training.train_step.lower(net, opt, params, s, x, t, np.int32(8),
                                     jax.random.key(0)).compile().as_text()
    leaves = [perf_mod._leaf_layer(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    outs = [perf_mod._leaf_layer(p) for p, _ in
            jax.tree_util.tree_flatten_with_path((params, s))[0]] + [None]
    where, graph = perf_mod._attribute(text, 2, leaves, outs)
    assert graph and all(isinstance(v[1], tuple) for v in graph.values())
    comps, entry = parse_hlo(text)
    dots = {i["name"]: where[i["name"]] for i in comps[entry]  # dots, or YNN fusions of dots
            if i["opcode"] == "dot"
            or (i["opcode"] == "fusion" and i["op_name"].endswith("dot_general"))}
    # forward: one dot per layer; backward: weight gradients and the error through layer 2
    assert sorted(v for v in dots.values() if v[1] == "fwd") == [(0, "fwd"), (1, "fwd")]
    bwd = sorted(v for v in dots.values() if v[1] == "bwd")
    assert bwd and {v[0] for v in bwd} == {0, 1}


# --------------------------------------------------------------------------- B.perf.


class _FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _Result:
    """A step result that becomes ready at a given (fake) time."""

    def __init__(self, clock, ready_at, value=1.0):
        self.clock, self.ready_at, self.value = clock, ready_at, value

    def is_ready(self):
        return self.clock() >= self.ready_at

    def __float__(self):
        return self.value


def test_rate_meter_counts_completed_work_only():
    clock = _FakeClock()
    meter = driver._RateMeter(clock=clock)
    pending = []
    # 50 batches of 10 images dispatched within 5 ms, each taking 100 ms to compute
    for j in range(50):
        clock.now = j * 1e-4
        pending.append((_Result(clock, 0.1 * (j + 1)), 10))
        meter.poll(pending)
        rate = meter.rate()
        assert rate < 1.0  # nothing finished yet: no images per second
    for k in range(1, 40):
        clock.now = 0.1 * k + 0.05
        meter.poll(pending)
        rate = meter.rate()
        assert rate <= 110  # never more than the real throughput (10 images / 0.1 s)
        if k >= 5:
            assert rate == pytest.approx(100.0, rel=0.15)  # 10 images / 0.1 s
    assert meter.done == 390


def test_rate_meter_windowed():
    clock = _FakeClock()
    meter = driver._RateMeter(window=1.0, clock=clock)
    pending = [(_Result(clock, 10.0 + 0.01 * j), 1) for j in range(1000)]  # slow start
    for k in range(100):
        clock.now = 10.0 + 0.05 * k
        meter.poll(pending)
        r = meter.rate()
    assert r == pytest.approx(100.0, rel=0.1)  # recent work, not diluted by the start


def test_progress_line_rate_with_a_slow_asynchronous_step(capsys, monkeypatch):
    """cnn.train with a fake step that returns at once but finishes 20 ms later (as an
    asynchronous dispatch does): B.perf. must show the real rate, not the dispatch rate."""
    _small_net(n=160, b=16)
    clock = {"t": None}
    real = training.train_step
    import time

    def fake_step(net, opt, params, opt_state, xb, tb, nv, **kw):
        now = time.perf_counter()
        start = max(now, clock["t"] or now)
        clock["t"] = start + 0.02  # each step finishes 20 ms after the previous one
        out = real(net, opt, params, opt_state, xb, tb, nv, **kw)
        return out[0], out[1], _Delayed(out[2], clock["t"])

    class _Delayed:
        def __init__(self, value, at):
            self.value, self.at = value, at

        def is_ready(self):
            return time.perf_counter() >= self.at

        def __float__(self):
            while not self.is_ready():
                time.sleep(0.001)
            return float(self.value)

        def __array__(self, dtype=None, copy=None):
            float(self)
            return np.asarray(self.value, dtype=dtype)

    monkeypatch.setattr(training, "STEPS_PER_CALL", 1)  # every batch through train_step
    cnn.train(nb_iter=1, learning_rate=0.01, momentum=0.8, control_interv=0, silent=1)
    monkeypatch.setattr(training, "train_step", fake_step)
    monkeypatch.setattr(driver.jnp, "stack", lambda xs: np.stack([np.asarray(v) for v in xs]))
    capsys.readouterr()
    cnn.train(nb_iter=1, learning_rate=0.01, momentum=0.8, control_interv=0, silent=0)
    out = capsys.readouterr().out
    rates = [float(r) for r in re.findall(r"B\.perf\.: ([0-9.]+) it/s", out)]
    assert rates
    # 16 images every 20 ms = 800 images/s at most (plus the real step's own time)
    assert max(rates) < 1000, rates


def test_asynchronous_operations_last_until_their_reader():
    """XLA's CPU convolutions and dots run on the thread pool: their trace event is the
    launch; their time runs to the start of the first reader (through bitcasts)."""
    graph = {"conv": ("convolution", ("bc",)), "bc": ("bitcast", ("fus",)),
             "fus": ("fusion", ()), "dot": ("dot", ()), "f2": ("fusion", ("fus",))}
    events = [(1, "m", "conv", 0.0, 10.0), (1, "m", "fus", 100.0, 120.0),
              (1, "m", "dot", 200.0, 230.0), (1, "m", "f2", 5.0, 50.0),
              (1, "other", "conv", 0.0, 999.0), (2, "m", "conv", 0.0, 4.0)]
    times = perf_mod._op_times(events, "m", graph)
    assert times[1] == {"conv": 100.0, "fus": 20.0, "dot": 30.0, "f2": 45.0}
    assert times[2] == {"conv": 4.0}
