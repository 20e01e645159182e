"""Smoke runs of the benchmark suite (slow: child processes that compile whole networks;
their quick paths keep XLA's optimisations mostly off, see benchmarks/run_all.py)."""

import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _benchmark(name: str):
    """The module ``benchmarks/<name>.py`` (the folder is on ``sys.path`` only while it
    is imported)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")


def test_run_all_quick_prints_the_summary_table(tmp_path):
    pytest.importorskip("torch")
    record = tmp_path / "run.json"
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick",
                          "--json", str(record)],
                         env=_env(), capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    for needle in ("== Summary ==", "SDC1 64 b8 training", "SDC1 64 b8 inference",
                   "SDC1 64 b8 inference, laid out",
                   "MNIST b64 funct. training", "MNIST b64 funct. inference",
                   "MNIST b64 imper. training", "MNIST b64 imper. inference",
                   "first training step, mnist", "first training step, sdc1 64x64",
                   "small-map check:", "== Small-map check ==",
                   "float32 matrix product 256x256",
                   "SDC1 64 training, nominal GFLOP/s / the machine's matrix product rate"):
        assert needle in text, needle
    # the rounds' cores state, probed where two CPUs can be pinned, has a table of its own
    probed = _benchmark("core_latency").can_probe()
    main_table, _, states = text.partition("the same ratios by the cores' state:\n")
    assert bool(states) == probed
    lines = main_table.splitlines()
    if probed:
        state_rows = [s for s in states.splitlines() if s.startswith(("SDC1 64 b8 ", "MNIST"))]
        assert len(state_rows) == 3 + 4  # rounds near + far = the one round
        assert all(int(s.split()[-4]) + int(s.split()[-2]) == 1 for s in state_rows)
    row = next(line for line in lines if line.startswith("SDC1 64 b8 training"))
    assert float(row.split()[-3]) > 0  # a ratio against PyTorch was computed
    # every row of the table has its ratio (SDC1 rows end with the spread, MNIST rows not)
    for prefix, col in (("SDC1 64 b8 ", -3), ("MNIST b64 ", -2)):
        rows = [line for line in lines if line.startswith(prefix)]
        assert len(rows) == (3 if prefix.startswith("SDC1") else 4), rows
        assert all(float(r.split()[col]) > 0 for r in rows), rows
    # --json: the same rows as a record that compare_runs.py reads
    compare_runs = _benchmark("compare_runs")
    (run,) = compare_runs.load_runs([str(record)])
    assert run["about"]["quick"] is True and run["about"]["cpus"] >= 1
    # the record and the machine line name the processor's vector unit (or None / unknown)
    assert {"cpu_model", "vector_isa", "bf16_units"} <= set(run["about"])
    machine = next(s for s in lines if s.startswith("machine: "))
    assert f"({run['about']['vector_isa'] or 'vector unit unknown'})" in machine
    assert len(run["rows"]) == 3 + 4 and len(run["first_steps"]) == 2
    assert all(("rounds_far" in r) == probed for r in run["rows"])
    for r in run["rows"]:
        line = next(s for s in lines if s.startswith(r["workload"] + " "))
        assert f"{r['ratio']:.2f}" in line.split()
    assert "MNIST b64 funct. training" in compare_runs.format_report([run])


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_script_on_cpu(tmp_path):
    env = _env()
    env.pop("JAX_PLATFORMS")
    env["OUT"] = str(tmp_path)
    env["GPU_CHECK_QUICK"] = "1"
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], env=env,
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = (tmp_path / "gpu_check.txt").read_text()
    assert "NO GPU" in text
    assert "golden" in text.lower() and "mnist" in text.lower()
    # the script always exits 0: each of its four parts must have run, and succeeded
    parts = re.findall(r"^-- (.+): exit code (\d+) ", text, flags=re.M)
    assert len(parts) == 4 and all(rc == "0" for _, rc in parts), text
    assert re.search(r"^\d+ passed", text, flags=re.M), text  # the parity tests
    for needle in ("XLA ms", "terms alone (no activation, no gradient): XLA ",
                   "MNIST infer", "MNIST train", "SDC1 32x32 infer"):
        assert needle in text, needle


def test_winograd_benchmark_quick():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_winograd.py"),
                          "--quick"], env=_env(), capture_output=True, text=True, timeout=300,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith("b")]
    assert [r[:3] for r in rows] == [["b2", "8x8", "128->128"], ["b1", "8x8x8", "8->16"]]
    assert all(r[3] == "winograd" and float(r[6]) > 0 and float(r[9]) > 0 for r in rows)


def test_layer_benchmark_against_pytorch():
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_layers.py"),
                          "--size", "32", "--repeats", "1"], env=_env(), capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split() for line in out.stdout.splitlines() if "->" in line]
    assert len(rows) == 17  # the backbone's 16 convolutions and the head
    assert rows[0][:2] == ["5x5s1", "1->32"] and rows[-1][:2] == ["1x1s1", "2048->117"]
    assert all(float(r[-1]) > 0 for r in rows)  # both sides timed


def test_machine_peak_measures_both_sides():
    machine_peak = _benchmark("machine_peak")
    r = machine_peak.run(64, 1)
    assert r["n"] == 64 and r["xla"] > 0
    try:
        import torch  # noqa: F401
        assert r["torch"] > 0
    except ImportError:
        assert r["torch"] is None
    line = machine_peak.format_line(r)
    assert line.startswith("machine: float32 matrix product 64x64") and "GFLOP/s" in line
    named = machine_peak.format_line(r, dict(model="AMD EPYC", vector_isa="AVX2"))
    assert named.startswith("machine: AMD EPYC (AVX2), float32 matrix product 64x64")
    cpu = machine_peak.cpu_info()
    assert set(cpu) == {"model", "vector_isa", "bf16"}


def test_summary_adds_mixed_precision_rows_without_target():
    """``run_all.py --mixed-precision MODE``: the mode's SDC1 rows follow the float32 ones,
    with their ratio against PyTorch and no target (the targets are float32's)."""
    run_all = _benchmark("run_all")
    res = {"cianna_jax": {"train": 20.0, "train_ratio": 1.10, "train_spread": 1.2},
           "cianna_jax TF32C_FP32A": {"train": 24.0, "train_ratio": 1.32, "train_spread": 1.3},
           "torch": {"train": 18.0}}
    text = run_all.summary([dict(size=128, batch=8, gflop_train=8.6, results=res)], [], [],
                           [])
    rows = [line.split() for line in text.splitlines() if line.startswith("SDC1 128")]
    assert rows[0][:4] == ["SDC1", "128", "b8", "training"] and rows[0][-3:] == ["1.10", "1.15",
                                                                                "1.20"]
    assert rows[1][3:5] == ["training", "TF32C_FP32A"] and rows[1][-2:] == ["1.32", "1.30"]
    assert len(rows[1]) == len(rows[0])  # no target cell


def test_grouped_benchmark_times_every_side():
    bench_grouped = _benchmark("bench_grouped")
    rows = bench_grouped.run(batch=2, repeats=1, layers=[("2 groups", 6, 4, 4, 2),
                                                         ("depth-wise", 6, 4, 4, 4)])
    kinds = {"ours fwd", "ours train", "xla fwd", "xla train"}
    assert [r["groups"] for r in rows] == [2, 4]
    assert all(kinds <= set(r["ms"]) and all(v > 0 for v in r["ms"].values()) for r in rows)
    text = bench_grouped.format_table(rows)
    assert "depth-wise" in text and "ours GFLOP/s" in text


def test_conv_grid_times_each_cell_and_flags_the_slow_ones(capsys):
    bench_conv_grid = _benchmark("bench_conv_grid")
    rows = bench_conv_grid.run((1,), (3,), ((4, 8),), stride=2, rounds=1,
                               torch=importlib.util.find_spec("torch") is not None)
    (r,) = rows
    assert (r["batch"], r["map"], r["c_in"], r["c_out"], r["stride"]) == (1, 3, 4, 8, 2)
    assert r["flops"] == 2.0 * 1 * 2 * 2 * 9 * 4 * 8  # 2x2 outputs at stride 2
    assert r["ours_fwd"] > 0 and r["ours_train"] > 0 and r["flags"] == []
    # flags: a cell under a third of its widths' best rate (long enough to count), and
    # one where PyTorch ran more than 1.5x faster; the best cell and a short one are not
    cells = [dict(c_in=8, c_out=8, flops=f, ours_train=t, torch_train=u)
             for f, t, u in ((1e9, 0.01, 0.02), (1e9, 0.04, 0.05), (1e9, 0.02, 0.01),
                             (1e4, 1e-4, 1e-4))]
    bench_conv_grid.flag(cells)
    assert [c["flags"] for c in cells] == [[], ["<1/3"], ["torch"], []]
    for c, (b, n) in zip(cells, ((1, 2), (1, 3), (4, 2), (4, 3))):
        c.update(batch=b, map=n, stride=1, ours_fwd=c["ours_train"] / 3, torch_fwd=0.01)
    text = bench_conv_grid.format_table(cells)
    assert "4 cells: 1 under a third" in text and "1 with PyTorch over 1.5x faster" in text
    with pytest.raises(SystemExit):
        bench_conv_grid.main(["--rounds", "0"])
    assert "--rounds: expected at least 1, received 0" in capsys.readouterr().err


def test_dense_map_benchmark_times_both_layouts():
    bench_dense_map = _benchmark("bench_dense_map")
    rows = bench_dense_map.run(layers=[(2, 3, 4, 5)], repeats=1)
    (r,) = rows
    assert r["shape"] == "3x3x4->5" and r["ms_rows"] > 0 and r["ms_laid"] > 0
    assert r["max_diff"] < 1e-5  # the same outputs from both layouts
    assert "3x3x4->5" in bench_dense_map.format_table(rows)


def test_train_detector_benchmark_splits_the_epochs():
    bench = _benchmark("bench_train_detector")
    res = bench.run("default", epochs=2, patches=32, batch=16, field=256)
    assert [int(r["epoch"]) for r in res["rows"]] == [1, 2]
    for r in res["rows"]:
        assert r["train_seconds"] > 0 and r["validation_seconds"] > 0
        assert r["other_seconds"] >= 0
        assert r["patches_per_second"] == pytest.approx(32 / r["train_seconds"], rel=1e-5)
    assert res["median_after_first"]["epoch_seconds"] == res["rows"][1]["epoch_seconds"]
    text = bench.table(res)
    assert "patches/s" in text and " med." in text


def test_pybdsf_comparison_trains_through_the_product_on_several_fields(tmp_path):
    """pybdsf_compare's detector: `cianna-jax train`'s trainer on simulated fields (written
    once, reused by a second seed), the card's threshold the trainer's."""
    from cianna_jax.astro.model_card import load_model_card

    bench = _benchmark("pybdsf_compare")
    kw = dict(seed=5, size=256, n_fields=2, n_patches=32, epochs=1, target_snr=3.0,
              log=lambda m: None)
    card = bench.train(str(tmp_path), **kw)
    fields = sorted(os.listdir(tmp_path / "fields"))
    assert fields == ["field_15.fits", "field_5.fits", "truth_15.ecsv", "truth_5.ecsv"]
    c = load_model_card(card)
    assert card == str(tmp_path / "model_0" / "best.json")
    assert c.notes["trained_by"] == "cianna-jax train" and len(c.notes["more_fields"]) == 1
    assert 0.05 <= float(np.max(c.obj_threshold)) <= 0.95
    stamp = os.path.getmtime(tmp_path / "fields" / "field_5.fits")
    assert bench.train(str(tmp_path), train_seed=1, **kw).endswith("model_1/best.json")
    assert os.path.getmtime(tmp_path / "fields" / "field_5.fits") == stamp


def test_sdc1_prefixes_time_each_prefix_on_both_sides():
    """sdc1_prefixes: one row per cut and the whole network, both sides timed."""
    pytest.importorskip("torch")
    bench = _benchmark("sdc1_prefixes")
    rows = bench.run(size=32, cuts=(1, 3), head=True, n=8, rounds=1)
    assert [(r["cut"], r["head"], r["side"], r["channels"]) for r in rows] == [
        (1, False, 16, 16), (3, False, 16, 32), (15, True, 2, 117)]
    assert all(r["ours"] > 0 and r["torch"] > 0 for r in rows)
    text = bench.format_rows(rows, 32)
    assert "through conv 3 (16x16x32)" in text and "whole network" in text


def test_yolo_compile_benchmark_measures_the_loss_program():
    (r,) = _benchmark("yolo_compile").main(["--quick"])
    assert r["detector"] == "default" and r["ops"] > 100
    assert r["compile_s"][0] > 0 and r["run_ms"] > 0
    assert np.isfinite(r["value"]) and r["value"] > 0 and r["grad_sum"] > 0


def test_widths_benchmark_times_both_forms_with_the_same_update():
    r = _benchmark("bench_widths").main(["--quick"])
    (p,) = r["primitives"]
    assert p["n"] == 2048 and p["own_s"] > 0 and p["wide_s"] > 0
    (layer,) = r["layers"]
    assert layer["own_s"] > 0 and layer["wide_s"] > 0 and 0 <= layer["faster"] <= 1
    assert layer["param_diff"] < 1e-5  # only the form changes


def test_imagenet_benchmark_times_both_sides_and_the_norm_forms():
    r = _benchmark("bench_imagenet").main(["--quick"])
    ours = r["results"]["cianna_jax"]
    assert ours["train"] > 0 and ours["infer"] > 0 and r["first_epoch"] > 0
    if "torch" in r["results"]:
        assert ours["train_ratio"] > 0 and ours["infer_ratio"] > 0
    ab = r["norm_ab"]
    assert ab["fused_ms"] > 0 and ab["autodiff_ms"] > 0 and 0 <= ab["faster"] <= 1
    # the network's conv work: 18 convolutions at 32x32 (0.1 GFLOP forward)
    assert 0.05 < r["gflop_infer"] < 0.2


def test_script_start_times_a_fresh_process_and_names_its_programs(capsys):
    (run,) = _benchmark("script_start").main(["--repeats", "1", "--images", "64"])
    assert run["seconds"] > 0
    # the MNIST script's first cnn.train compiles its steps and no small eager program
    assert {"train_step", "eval_step"} & set(run["compiled"])
    assert not _benchmark("script_start").small_programs(run["compiled"]), run["compiled"]
    assert "0 of them small eager ones" in capsys.readouterr().out


def test_pybdsf_grouping_compares_with_pybdsf_own_lists():
    """The comparison on PyBDSF's stored lists (no PyBDSF run): its grouped pairs all found,
    the multi-Gaussian sources' fluxes PyBDSF's, the report naming the S_Code changes."""
    from astropy.table import Table

    m = _benchmark("pybdsf_grouping")
    c = m.compare(Table.read(ROOT / "tests" / "data" / "pybdsf" / "pairs.gaul.fits"),
                  Table.read(ROOT / "tests" / "data" / "pybdsf" / "pairs.srl.fits"))
    assert c["pairs_pybdsf"] == c["pairs_ours"] == c["pairs_both"] > 0
    assert c["codes_same"] == c["gaussians"] and len(c["multi"]) == 9
    assert c["codes_same_no_islands"] == c["gaussians"] - 2
    assert all(abs(r["flux"] - 1.0) < 1e-6 for r in c["multi"])
    text = m.format_report("f.fits", dict(c, islands=dict(pybdsf=3, ours=3, both=3)))
    assert "51 of 51 (all; 49 without its islands)" in text and "one island: PyBDSF 3" in text


def test_spectral_index_check_bins_the_pulls():
    """The comparison with the truth: offsets and pull scatter per S/N bin."""
    from astropy.table import Table

    m = _benchmark("spectral_index_check")
    n = 40
    rng = np.random.default_rng(0)
    truth = Table({"ra": np.linspace(10, 10.1, n), "dec": np.zeros(n),
                   "alpha": rng.normal(-0.7, 0.3, n)})
    err = np.full(n, 0.05)
    t = Table({"ra": truth["ra"], "dec": truth["dec"], "flux_2": np.full(n, 1.0),
               "flux_err_2": np.where(np.arange(n) < 20, 0.2, 0.02),
               "alpha": truth["alpha"] + err * rng.normal(size=n), "alpha_err": err})
    t.meta.update(radius_arcsec=1.0, frequencies_hz=[1e8, 1e9])
    rows = m.compare(t, truth)
    assert [r["n"] for r in rows] == [20, 20] and rows[0]["bin"] == (0.0, 10.0)
    assert all(0.5 < r["pull"] < 1.6 and abs(r["offset"]) < 0.05 for r in rows)


def test_inband_alpha_check_bins_offsets_and_pulls():
    from astropy.table import Table

    m = _benchmark("inband_alpha_check")
    n = 30
    ra = np.linspace(10, 10.1, n)
    truth = Table({"ra": ra, "dec": np.zeros(n), "alpha": np.full(n, -0.7),
                   "pb": np.where(np.arange(n) < 10, 0.9, 0.5)})
    got = Table({"ra": ra, "dec": np.zeros(n), "alpha": np.full(n, -0.6),
                 "alpha_err": np.full(n, 0.1)})
    lines = m.compare(got, truth, "pb", m.RESPONSE_BINS)
    assert [ln.split(":")[0] for ln in lines] == ["0.8-1.01", "0.4-0.6"]
    assert "10 sources, alpha - true +0.100, pulls 0.00" in lines[0]


def test_variability_check_counts_found_and_false_variables():
    from astropy.table import Table

    from cianna_jax.astro.variability import variability

    m = _benchmark("variability_check")
    n = 30
    ra = np.linspace(10, 10.1, n)
    f0 = np.full(n, 1.0)
    f1 = f0.copy()
    f1[:5] = 2.0  # five variables, found (errors 0.01)
    truths = [Table({"ra": ra, "dec": np.zeros(n), "flux": f, "variable": np.arange(n) < 5})
              for f in (f0, f1)]
    cats = [Table({"ra": ra, "dec": np.zeros(n), "flux": f, "flux_err": np.full(n, 0.01)})
            for f in (f0, f1)]
    c = m.compare(variability(cats, radius_arcsec=1.0), truths)
    assert c["matched"] == n and c["constant"] == 25 and c["false"] == 0
    assert c["flagged"] == 5 and c["bins"][-1]["found"] == 5
    assert "vs scatter" in m.format_report(c) and len(m.format_report(c).splitlines()) == 5


def test_polarisation_check_compares_with_the_truth():
    from astropy.table import Table

    m = _benchmark("polarisation_check")
    n = 20
    ra = np.linspace(10, 10.1, n)
    ti = Table({"ra": ra, "dec": np.zeros(n), "flux": np.full(n, 1.0), "kind": np.zeros(n)})
    tq = Table({"ra": ra, "dec": np.zeros(n), "flux": np.full(n, 0.1),
                "pol_frac": np.full(n, 0.1), "evpa": np.full(n, 0.0)})
    got = Table({"ra": ra, "dec": np.zeros(n), "q_flux": np.full(n, 0.1),
                 "q_flux_err": np.full(n, 0.01), "evpa": np.full(n, 1.0),
                 "evpa_err": np.full(n, 2.0), "pol_frac": np.full(n, 0.1),
                 "pol_frac_err": np.full(n, 0.01), "pol_flux_err": np.full(n, 0.01),
                 "polarised": np.ones(n, bool)})
    c = m.compare(got, ti, tq)
    assert c["matched"] == n and c["polarised"] == n and c["q_pull"][0] == 0.0
    assert c["evpa_pull"][0] == pytest.approx(0.5) and c["bright"] == c["bright_found"] == n


def test_rm_synthesis_check_compares_detected_measures():
    from astropy.table import Table

    m = _benchmark("rm_synthesis_check")
    n = 10
    ra = np.linspace(10, 10.1, n)
    truth = Table({"ra": ra, "dec": np.zeros(n), "rm": np.full(n, 10.0),
                   "evpa": np.full(n, 30.0)})
    got = Table({"ra": ra, "dec": np.zeros(n), "rm": np.full(n, 12.0), "rm_err": np.full(n, 2.0),
                 "chi0": np.full(n, 31.0), "rm_detected": np.arange(n) < 6})
    c = m.compare(got, truth)
    assert c["matched"] == n and c["detected"] == 6 and c["pull_median"] == pytest.approx(1.0)
    assert c["chi_median"] == pytest.approx(1.0) and c["pull_max"] == pytest.approx(1.0)


def test_pybdsf_polarisation_compares_on_a_written_cube(tmp_path):
    """The comparison without PyBDSF: a stand-in Gaussian list holding the truth's values."""
    from astropy.table import Table

    m = _benchmark("pybdsf_polarisation")
    path = str(tmp_path / "iquv.fits")
    ti, tq = m.write_cube(path, 128, 31)
    n = len(ti)
    gaul = Table({"RA": ti["ra"], "DEC": ti["dec"], "Total_flux": ti["flux"],
                  "E_Total_flux": np.full(n, 1e-5), "Total_Q": tq["flux"],
                  "E_Total_Q": np.full(n, 1e-5), "Total_U": np.zeros(n),
                  "E_Total_U": np.full(n, 1e-5), "Linear_Pol_Ang": tq["evpa"],
                  "Linear_Pol_frac": tq["pol_frac"]})
    c = m.compare(path, gaul, ti, tq)
    assert c["gaussians"] == n and c["matched"] == n and abs(c["pull_ours"][0]) < 1.5
    assert c["pull_pybdsf"] == (0.0, 0.0)


def test_crossid_check_scores_the_likelihood_ratio_and_the_nearest(capsys):
    m = _benchmark("crossid_check")
    assert m.main(["--n", "200", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("Q0") == len(m.REGIMES) and "with colours" in out


def test_transients_check_finds_the_new_and_the_vanished(tmp_path, capsys):
    m = _benchmark("transients_check")
    assert m.main(["--model", _peak_detector(tmp_path), "--size", "384",
                   "--new", "4"]) == 0
    out = capsys.readouterr().out
    found = re.search(r"new found (\d+)/4, vanished found (\d+)/4", out)
    assert found and int(found.group(1)) >= 3 and int(found.group(2)) >= 3


def _peak_detector(tmp_path) -> str:
    spec = importlib.util.spec_from_file_location("astro_fixtures",
                                                  ROOT / "tests" / "astro" / "conftest.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    return fixtures.make_peak_detector(tmp_path, 5.0)


def test_clustering_check_compares_both_randoms_with_the_truth(tmp_path, capsys):
    m = _benchmark("clustering_check")
    assert m.main(["--model", _peak_detector(tmp_path), "--size", "768", "--seeds", "0",
                   "--parents", "40"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"seed 0, (Poisson|clustered): \d+ of \d+ sources .*chi2 against the "
                      r"truth, 8 bins: ([\d.]+) with the selection's randoms, ([\d.]+) with "
                      r"uniform ones", out)
    assert [r[0] for r in rows] == ["Poisson", "clustered"]
    assert "expected:" in out and "w (uniform):" in out


def test_lumfunc_check_compares_phi_with_the_population(tmp_path, capsys):
    m = _benchmark("lumfunc_check")
    assert m.main(["--model", _peak_detector(tmp_path), "--size", "1024", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"seed 0: \d+ true sources above 10 uJy, \d+ detections, \d+ matched, "
                     r"\d+ with a redshift", out)
    found = re.search(r"complete bins of 5 or more sources: (\d+), pulls' mean ([-+.\d]+)", out)
    assert found and int(found.group(1)) >= 1 and abs(float(found.group(2))) < 3


def test_morphology_check_compares_the_classifier_and_the_rule(tmp_path, capsys):
    m = _benchmark("morphology_check")
    assert m.main(["--size", "512", "--sources", "40", "--epochs", "1", "--train-fields",
                   "1", "--detector", _peak_detector(tmp_path), "--mc", "3"]) == 0
    out = capsys.readouterr().out
    acc = re.search(r"classifier +accuracy ([.\d]+)", out)
    rule = re.search(r"classical rule +accuracy ([.\d]+)", out)
    assert acc and rule and 0.0 <= float(acc.group(1)) <= 1.0
    assert re.search(r"rule tuned on training: islands within [.\d]+ beams", out)
    assert re.search(r"through the detector: \d+ sources in its source list", out)
    assert re.search(r"doubles \(scale 120 arcsec\): \d+ pairs", out)
    assert re.search(r"Monte Carlo dropout \(3 draws\): \d+ misclassified", out)


def test_detector_classes_check_scores_both_classifications(capsys):
    m = _benchmark("detector_classes_check")
    assert m.main(["--size", "512", "--sources", "40", "--epochs", "4", "--patches", "256",
                   "--classifier-epochs", "1", "--balance"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"detection on the test field: precision [.\d]+, recall [.\d]+", out)
    for who in (r"detector's classes: +accuracy", r"on the same detections: accuracy"):
        found = re.search(who + r" ([.\d]+)", out)
        assert found and 0.0 <= float(found.group(1)) <= 1.0, who
    assert re.search(r"calibration error [.\d]+ at the card's temperature [.\d]+", out)
    assert re.search(r"detected by true class: \w+ [.\d]+ \(\d+/\d+\)", out)
    assert "balanced positives" in out


def test_lumfunc_coverages_compares_three_coverages(capsys):
    m = _benchmark("lumfunc_coverages")
    assert m.main(["--area", "5"]) == 0
    out = capsys.readouterr().out
    for name in ("injection's completeness", "flux limit", "true fluxes"):
        assert name in out
    assert re.search(r"z 0\.1-0\.5: \d", out)


def test_lumfunc_fit_check_fits_three_populations(capsys):
    m = _benchmark("lumfunc_fit_check")
    assert m.main(["--area", "10"]) == 0
    out = capsys.readouterr().out
    assert out.count("evolution: log_phi_star") == 9
    assert len(re.findall(r"evolution \(maximum likelihood on \d+ sources\): log_phi_star",
                          out)) == 9
    assert re.search(r"luminosity evolution k_L = 2\.5: \d+ sources", out)


def test_morphology_transfer_scores_three_classifiers(capsys):
    m = _benchmark("morphology_transfer")
    assert m.main(["--size", "512", "--sources", "40", "--epochs", "1", "--labels", "3"]) == 0
    out = capsys.readouterr().out
    for name in ("as it is", "fine-tuned", "from scratch on the labels"):
        assert re.search(name + r" +[.\d]+", out)


def test_cube_duplicates_check_scores_both_rules(capsys):
    m = _benchmark("cube_duplicates_check")
    assert m.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for name in ("discs", "large discs"):
        # per rule: n_det, P, R, F1, the median line flux ratio and its scatter (NaN
        # without matches)
        row = re.search(rf"^{name} +\d+((?: +(?:[.\d]+|nan)){{12}})", out, re.M)
        assert row, name
        vals = [float(v) for v in row.group(1).split()]
        assert all(0.0 <= v <= 1.0 for v in vals[1:4] + vals[7:10])
        assert re.search(rf"{name}: mean F1 [.\d]+ \(previous rule [.\d]+\)", out)
    assert re.search(r"discs of FWHM >= 12.0 pixels \(SNR >= 5\) in the large discs' cubes", out)
