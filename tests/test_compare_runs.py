"""The benchmark suite's run records (``run_all.py --json``) and their comparison over
several runs (``benchmarks/compare_runs.py``): rows, ranges, targets met, errors, plot."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import compare_runs
    import run_all
finally:
    sys.path.remove(str(ROOT / "benchmarks"))


def _results(train_ratio: float, torch: bool = True):
    """bench_sdc1 / bench_mnist results shaped as run_all receives them."""
    ours = {"train": 18.0, "train_ratio": train_ratio, "train_spread": 1.2,
            "infer": 80.0, "infer_ratio": 1.35, "infer_spread": 1.1}
    if not torch:
        ours = {k: v for k, v in ours.items() if not k.endswith("_ratio")}
    res = {"cianna_jax": ours, "cianna_jax TF32C_FP32A": dict(ours)}
    if torch:
        res["cianna_jax TF32C_FP32A"]["train_ratio"] = 1.3
        res["torch"] = {"train": 16.0, "infer": 60.0}
    sdc1 = [dict(size=128, batch=8, gflop_train=8.6, results=res)]
    mnist_side = {"train": 10_000.0, "infer": 30_000.0}
    if torch:
        mnist_side.update(train_ratio=1.4, infer_ratio=1.7)
    mnist = [dict(batch=64, functional=mnist_side, imperative=mnist_side,
                  torch={"train": 7_000.0, "infer": 17_000.0} if torch else None)]
    firsts = [dict(network="mnist", cache="cold", first_step=1.5),
              dict(network="sdc1 128x128", cache="cold", first_step=float("nan"))]
    small = [dict(size=8, flops=100.0, new_fwd=1.0, new_train=3.0),
             dict(size=1, flops=1.0, new_fwd=0.02, new_train=0.05)]
    return sdc1, mnist, firsts, small


def _record(tmp_path, name: str, train_ratio: float, isa: str | None = None,
            model: str | None = None, **kw) -> str:
    sdc1, mnist, firsts, small = _results(train_ratio, **kw)
    about = dict(date=f"2026-12-03 10:0{name}", host="box", cpus=2, jax="0.10.2",
                 load_start=float("nan"), load_end=1.0, torch="2.13")
    if isa is not None:
        about["vector_isa"] = isa
    if model is not None:
        about["cpu_model"] = model
    rec = run_all.jsonable(run_all.record(sdc1, mnist, firsts, small, None, about))
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(rec, allow_nan=False))
    return str(path)


def test_record_rows_are_the_summary_rows():
    sdc1, mnist, firsts, small = _results(1.10)
    rows = run_all.summary_rows(sdc1, mnist)
    names = [r["workload"] for r in rows]
    assert names[:2] == ["SDC1 128 b8 training", "SDC1 128 b8 inference"]
    assert names[2:4] == ["SDC1 128 b8 training TF32C_FP32A", "SDC1 128 b8 inference TF32C_FP32A"]
    assert rows[0]["target"] == 1.15 and rows[1]["target"] == 1.3
    assert rows[2]["target"] is None and rows[2]["ratio"] == 1.3  # a mode: no target
    assert rows[-1]["workload"] == "MNIST b64 imper. inference" and rows[-1]["target"] == 2.5
    text = run_all.summary(sdc1, mnist, firsts, small)
    for r in rows:  # every row of the record is a line of the printed table
        line = next(s for s in text.splitlines() if s.startswith(r["workload"] + " "))
        assert f"{r['ratio']:.2f}" in line
    check = run_all.small_map_check(small)
    assert check["forward"] == pytest.approx(0.5) and check["training"] == pytest.approx(0.6)
    assert "forward 0.50, training 0.60 (target >= 0.33)" in text


def test_ratios_by_the_cores_state(monkeypatch):
    """Rounds probed by core_latency: the rows carry per-state ratios and counts, the
    summary prints them in a table of their own, the record keeps them as strict JSON."""
    # the Zen 3 machine's line, whatever processor runs the tests
    monkeypatch.setattr(run_all.core_latency, "far_ns", lambda cpuinfo=None: 450.0)
    sdc1, mnist, firsts, small = _results(1.10)
    ours = sdc1[0]["results"]["cianna_jax"]
    ours.update(train_round_trip_ns=[300.0, 600.0, None, 310.0],
                infer_round_trip_ns=[300.0, 600.0, None, 310.0], train_ratio_near=1.2,
                train_ratio_far=0.9, infer_ratio_near=1.4)  # no far inference round kept
    rows = run_all.summary_rows(sdc1, mnist)
    train, infer = rows[0], rows[1]
    assert (train["ratio_near"], train["ratio_far"]) == (1.2, 0.9)
    assert (train["rounds_near"], train["rounds_far"]) == (2, 1)  # None: not counted
    assert infer["ratio_far"] is None
    assert "rounds_far" not in rows[2]  # the mode's rounds were not probed
    text = run_all.summary(sdc1, mnist, firsts, small)
    states = text.split("the same ratios by the cores' state:\n")[1].splitlines()
    line = next(s for s in states if s.startswith("SDC1 128 b8 training "))
    assert line.split()[-5:] == ["1.20", "2", "0.90", "1", "1.15"]
    line = next(s for s in states if s.startswith("SDC1 128 b8 inference "))
    assert line.split()[-5:] == ["1.40", "2", "-", "1", "1.30"]
    rec = json.loads(json.dumps(run_all.jsonable(run_all.record(
        sdc1, mnist, firsts, small, None, {})), allow_nan=False))
    assert rec["rows"][0]["ratio_far"] == 0.9 and rec["rows"][1]["ratio_far"] is None
    # the probes themselves, so that a run can be split again by another line
    assert rec["rows"][0]["round_trip_ns"] == [300.0, 600.0, None, 310.0]
    assert "at most / above 450 ns" in text
    # unprobed runs print no such table
    assert "cores' state" not in run_all.summary(*_results(1.10))


def test_comparison_by_the_cores_state(tmp_path):
    paths = [_record(tmp_path, str(i), 1.1) for i in range(3)]
    for path, near, far in zip(paths, (1.2, 1.3, None), (0.9, None, None)):
        rec = json.loads(Path(path).read_text())
        rec["rows"][0].update(ratio_near=near, ratio_far=far, rounds_near=1, rounds_far=1)
        Path(path).write_text(json.dumps(rec))
    runs = compare_runs.load_runs(paths)
    row = compare_runs.compare(runs)[0]
    assert (row["near"], row["far"]) == ([1.2, 1.3], [0.9])
    text = compare_runs.format_report(runs)
    states = text.split("by the cores' state (runs whose rounds were probed):\n")[1]
    line = next(s for s in states.splitlines() if s.startswith("SDC1 128 b8 training "))
    assert line.split()[-5:] == ["1.20-1.30", "2", "0.90", "1", "1.15"]
    assert "SDC1 128 b8 inference" not in states  # no probed rounds there
    assert "by the cores' state" not in compare_runs.format_report(runs[2:])
    # the plot's per-state points: run 1 both states, run 2 near only, run 3 none
    y = {"SDC1 128 b8 training": 3.0}
    assert compare_runs.state_points(runs[0], y, 0.1) == {"near": [(1.2, 3.1)],
                                                          "far": [(0.9, 3.1)]}
    assert compare_runs.state_points(runs[1], y, 0.0) == {"near": [(1.3, 3.0)]}
    assert compare_runs.state_points(runs[2], y, 0.0) == {}
    if importlib.util.find_spec("matplotlib") is not None:
        out = tmp_path / "states.png"
        assert compare_runs.plot(runs, str(out)) == str(out)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_record_is_strict_json():
    sdc1, mnist, firsts, small = _results(1.10)
    rec = run_all.jsonable(run_all.record(sdc1, mnist, firsts, small, None,
                                          dict(load_start=math.nan)))
    text = json.dumps(rec, allow_nan=False)  # raises on a NaN left in
    back = json.loads(text)
    assert back["about"]["load_start"] is None
    assert back["first_steps"][1]["first_step"] is None
    assert back["format"] == compare_runs.RECORD_FORMAT == run_all.RECORD_FORMAT
    np = pytest.importorskip("numpy")
    assert run_all.jsonable({"a": np.float32(1.5), "b": [np.int64(3)]}) == {"a": 1.5, "b": [3]}


def test_ranges_and_targets_over_runs(tmp_path):
    paths = [_record(tmp_path, str(i), r) for i, r in enumerate((1.06, 1.20, 1.15))]
    runs = compare_runs.load_runs(paths)
    rows = {r["workload"]: r for r in compare_runs.compare(runs)}
    train = rows["SDC1 128 b8 training"]
    assert (train["low"], train["median"], train["high"]) == (1.06, 1.15, 1.20)
    assert train["met"] == 2 and train["target"] == 1.15  # 1.15 meets 1.15
    assert rows["SDC1 128 b8 training TF32C_FP32A"]["met"] is None
    assert rows["MNIST b64 funct. training"]["met"] == 0
    text = compare_runs.format_report(runs)
    line = next(s for s in text.splitlines() if s.startswith("SDC1 128 b8 training "))
    assert line.split()[-5:] == ["1.06", "1.15", "1.20", "1.15", "2/3"]
    assert "first training step, mnist" in text and "1.50 s (target <= 3 s, met 3/3)" in text
    assert "sdc1 128x128" not in text  # NaN first steps are left out, not shown as nan
    assert "forward 0.50, met 3/3; training 0.60, met 3/3 (target >= 0.33)" in text
    assert "load -/1.0" in text  # a missing load average is a dash


def test_runs_without_pytorch_and_partial_rows(tmp_path):
    a = _record(tmp_path, "1", 1.1, torch=False)
    b = _record(tmp_path, "2", 1.2)
    rec = json.loads(Path(b).read_text())
    rec["rows"] = rec["rows"][:1]  # the second run measured the first workload only
    Path(b).write_text(json.dumps(rec))
    rows = {r["workload"]: r for r in compare_runs.compare(compare_runs.load_runs([a, b]))}
    assert rows["SDC1 128 b8 training"]["ratios"] == [None, 1.2]
    assert rows["SDC1 128 b8 training"]["met"] == 1
    assert rows["SDC1 128 b8 inference"]["low"] is None
    text = compare_runs.format_report(compare_runs.load_runs([a, b]))
    line = next(s for s in text.splitlines() if s.startswith("SDC1 128 b8 inference "))
    assert line.split()[-5:-1] == ["-", "-", "-", "1.30"] and line.split()[-1] == "0/1"


def test_bad_inputs_are_named(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="nothere.json"):
        compare_runs.load_runs([str(tmp_path / "nothere.json")])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json: not a JSON run record"):
        compare_runs.load_runs([str(bad)])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"rows": [], "format": 99}))
    with pytest.raises(ValueError, match="other.json: record format 99"):
        compare_runs.load_runs([str(other)])
    plain = tmp_path / "plain.json"
    plain.write_text("[1, 2]")
    with pytest.raises(ValueError, match="no 'rows' list"):
        compare_runs.load_runs([str(plain)])
    with pytest.raises(ValueError, match="at least one"):
        compare_runs.load_runs([])
    with pytest.raises(SystemExit) as exc:
        compare_runs.main([str(tmp_path / "nothere.json")])
    assert exc.value.code == 2 and "nothere.json" in capsys.readouterr().err


def test_plot_of_the_runs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    paths = [_record(tmp_path, str(i), r) for i, r in enumerate((1.06, 1.2))]
    out = tmp_path / "ratios.png"
    compare_runs.main(paths + ["--plot", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert f"plot written to {out}" in capsys.readouterr().out
    empty = _record(tmp_path, "9", 1.1, torch=False)
    with pytest.raises(ValueError, match="no ratio"):
        compare_runs.plot(compare_runs.load_runs([empty]), str(tmp_path / "x.png"))


def test_runs_of_different_processors_are_told_apart(tmp_path):
    """Records name the processor's vector unit and model; runs of different processors
    are flagged (the same machine kind came with AVX-512 and with AVX2: XLA's matrix
    product ran at about 250 and 100 GFLOP/s; and as an AMD EPYC and an Intel Xeon, both
    AVX-512: 450 and 280), runs of one processor or of older records are not."""
    paths = [_record(tmp_path, "1", 1.1, isa="AVX-512"), _record(tmp_path, "2", 1.2),
             _record(tmp_path, "3", 1.3, isa="AVX2"), _record(tmp_path, "4", 1.3, isa="AVX2")]
    runs = compare_runs.load_runs(paths)
    assert compare_runs.processor_kinds(runs) == {"AVX-512": [1], "?": [2], "AVX2": [3, 4]}
    text = compare_runs.format_report(runs)
    assert "(2 CPUs, AVX-512)" in text and "(2 CPUs, ?)" in text
    assert "different processors (AVX-512: runs 1; ?: runs 2; AVX2: runs 3, 4)" in text
    same = compare_runs.format_report(compare_runs.load_runs(paths[2:]))
    assert "(2 CPUs, AVX2)" in same and "different processors" not in same
    models = [_record(tmp_path, "5", 1.0, isa="AVX-512", model="AMD EPYC"),
              _record(tmp_path, "6", 1.0, isa="AVX-512", model="Intel(R) Xeon(R) Processor")]
    text = compare_runs.format_report(compare_runs.load_runs(models))
    assert "(2 CPUs, AMD EPYC AVX-512)" in text
    assert ("different processors (AMD EPYC AVX-512: runs 1; Intel(R) Xeon(R) Processor "
            "AVX-512: runs 2)") in text
    one = compare_runs.format_report(compare_runs.load_runs(models[:1] * 2))
    assert "different processors" not in one


def test_the_kept_records_are_all_read_by_the_documented_command():
    """``compare_runs.py benchmarks/runs/*.json`` (the READMEs' command) reads every record
    kept there: other kinds of record live in subfolders (``runs/train/``)."""
    paths = sorted(str(p) for p in (ROOT / "benchmarks" / "runs").glob("*.json"))
    assert len(paths) >= 2
    runs = compare_runs.load_runs(paths)
    table = compare_runs.compare(runs)
    assert any(e["workload"].startswith("SDC1") for e in table)
    assert all(r["about"]["date"] for r in runs)


def test_rows_of_inference_split_over_cpu_devices():
    """``run_all.py --cpu-devices 2``: bench_sdc1's run "cianna_jax per device" gives
    inference rows with the float32 targets; its training is the one-device run's, so no
    row."""
    sdc1, mnist, _, _ = _results(1.10)
    sdc1[0]["results"]["cianna_jax per device"] = {
        "train": 18.0, "train_ratio": 1.10, "train_spread": 1.2,
        "infer": 95.0, "infer_ratio": 1.52, "infer_spread": 1.1}
    rows = {r["workload"]: r for r in run_all.summary_rows(sdc1, mnist)}
    assert "SDC1 128 b8 training per device" not in rows
    row = rows["SDC1 128 b8 inference per device"]
    assert row["ratio"] == 1.52 and row["target"] == run_all.TARGETS["sdc1_infer"]
    assert rows["SDC1 128 b8 inference TF32C_FP32A"]["target"] is None
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_sdc1
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    with pytest.raises(ValueError, match="--cpu-devices"):
        bench_sdc1.use_cpu_devices(0)
    bench_sdc1.use_cpu_devices(1)  # one device: nothing set
