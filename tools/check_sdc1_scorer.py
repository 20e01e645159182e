"""Check cianna_jax's SDC1 score against the official scorer (``ska-sdc`` 2.0.0).

The official package needs old pandas/numpy, so it runs in its own virtual environment::

    python -m venv /tmp/sdcvenv
    /tmp/sdcvenv/bin/pip install "numpy<2" "pandas<2.2" "scikit-learn<1.6" "astropy<6.1" \\
        "setuptools<70" ska-sdc==2.0.0
    python tools/check_sdc1_scorer.py --venv-python /tmp/sdcvenv/bin/python [--predicted CAT.ecsv --truth TRUTH.ecsv]

For each case (synthetic SDC1-like truth and perturbed submissions around the SDC1 field
centre, both position modes, inside and outside the training area, three bands, and
optionally a catalogue written by ``cianna-jax predict`` against its truth) both scorers
read the same SDC1 text files; the script prints both scores and their relative
difference and exits 1 if any differs by more than 1e-6 (relative) or in the counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cianna_jax.astro.catalogue import make_table, read_catalogue, read_sdc1, write_sdc1  # noqa: E402
from cianna_jax.astro.sdc1 import sdc1_score  # noqa: E402

OFFICIAL = r"""
import json, logging, sys, warnings
warnings.simplefilter("ignore")
logging.disable(logging.CRITICAL)
from ska_sdc import Sdc1Scorer
out = []
for sub, truth, freq, mode, train in json.loads(sys.argv[1]):
    try:
        s = Sdc1Scorer.from_txt(sub, truth, freq, sub_skiprows=1, truth_skiprows=0).run(
            mode=mode, train=train, detail=False)
    except Exception as err:  # e.g. an empty catalogue after the area cut
        out.append(dict(error=f"{type(err).__name__}: {err}"[:200]))
        continue
    out.append(dict(value=float(s.value), n_det=int(s.n_det), n_match=int(s.n_match),
                    n_bad=int(s.n_bad), n_false=int(s.n_false), score_det=float(s.score_det)))
print(json.dumps(out))
"""


def sdc1_truth(rng: np.random.Generator, n: int, span: float = 0.8) -> dict:
    """SDC1-like truth around (RA 0, Dec -30): all size and class codes, core fractions."""
    ra = np.mod(rng.uniform(-span, span, n), 360.0)
    dec = rng.uniform(-30.0 - span, -30.0 + span, n)
    bmaj = np.exp(rng.uniform(np.log(0.2), np.log(20.0), n))
    size = rng.choice([1, 2, 3], n, p=[0.1, 0.3, 0.6])
    cls = rng.choice([1, 2, 3], n, p=[0.1, 0.1, 0.8])
    return dict(id=np.arange(1, n + 1), ra_core=ra, dec_core=dec,
                ra_cent=np.mod(ra + rng.normal(0, 2e-4, n), 360.0), dec_cent=dec + rng.normal(0, 2e-4, n),
                flux=np.exp(rng.uniform(np.log(1e-6), np.log(1e-2), n)),
                core_frac=np.where(cls < 3, rng.uniform(0, 1, n), 0.0), b_maj=bmaj,
                b_min=bmaj * rng.uniform(0.2, 1.0, n), pa=rng.uniform(0, 360, n), size=size,
                **{"class": cls})


def perturbed(rng: np.random.Generator, truth: dict, keep: float, false: float, bad: int) -> dict:
    """A submission: ``keep`` of the truth with measurement errors, ``false`` spurious
    sources, and ``bad`` rows with a negative size (dropped by the scorer's rules)."""
    n = truth["id"].size
    sel = rng.random(n) < keep
    d = {k: np.array(v[sel], dtype=np.float64) for k, v in truth.items()}
    m = int(sel.sum())
    jit = rng.normal(0, 1, (4, m)) * np.array([[3e-4], [3e-4], [5e-4], [5e-4]])
    d["ra_core"] = np.mod(d["ra_core"] + jit[0], 360.0)
    d["dec_core"] += jit[1]
    d["ra_cent"] = np.mod(d["ra_cent"] + jit[2], 360.0)
    d["dec_cent"] += jit[3]
    d["flux"] *= np.exp(rng.normal(0, 0.2, m))
    d["b_maj"] *= np.exp(rng.normal(0, 0.3, m))
    d["b_min"] *= np.exp(rng.normal(0, 0.3, m))
    d["pa"] = d["pa"] + rng.normal(0, 15, m)
    flip = rng.random(m) < 0.2
    d["size"] = np.where(flip, rng.choice([1, 2, 3], m), d["size"])
    d["class"] = np.where(rng.random(m) < 0.2, rng.choice([1, 2, 3], m), d["class"])
    d["core_frac"] = np.clip(d["core_frac"] + rng.normal(0, 0.05, m), 0, 1)
    f = sdc1_truth(rng, int(false * n))
    d = {k: np.concatenate([d[k], np.asarray(f[k], np.float64)]) for k in d}
    if bad:
        d["b_min"][rng.choice(d["b_min"].size, bad, replace=False)] *= -1
    d["id"] = np.arange(1, d["id"].size + 1, dtype=np.float64)
    return d


def write(path: str, cols: dict, header: bool) -> None:
    write_sdc1(make_table({k: np.asarray(v) for k, v in cols.items()}), path, header=header)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--venv-python", default="/tmp/sdcvenv/bin/python",
                    help="python of the virtual environment holding ska-sdc 2.0.0")
    ap.add_argument("--predicted", default=None, help="a catalogue written by cianna-jax predict")
    ap.add_argument("--truth", default=None, help="its truth catalogue (ra, dec, flux, sizes)")
    ap.add_argument("--rtol", type=float, default=1e-6)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(2024)
    tmp = tempfile.mkdtemp(prefix="sdc1_check_")
    cases = []
    truth = sdc1_truth(rng, 3000)
    tpath = os.path.join(tmp, "truth.txt")
    write(tpath, truth, header=False)
    for k, (keep, false, bad) in enumerate([(0.8, 0.1, 0), (0.5, 0.4, 5), (0.95, 0.0, 0)]):
        spath = os.path.join(tmp, f"sub{k}.txt")
        write(spath, perturbed(rng, truth, keep, false, bad), header=True)
        for freq in (560, 1400, 9200):
            for mode in (0, 1):
                for train in (False, True):
                    if k > 0 and (freq != 1400 or mode == 1):
                        continue
                    cases.append((f"synthetic {k}", spath, tpath, freq, mode, train))
    if args.predicted and args.truth:
        from cianna_jax.astro.validate import sdc1_columns

        p = read_catalogue(args.predicted)
        t = read_catalogue(args.truth)
        ppath, tpath2 = os.path.join(tmp, "predicted.txt"), os.path.join(tmp, "pred_truth.txt")
        write_sdc1(p, ppath)
        bm = "bmaj_deconv" if "bmaj_deconv" in t.colnames else "bmaj"
        bn = "bmin_deconv" if "bmin_deconv" in t.colnames else "bmin"
        write(tpath2, sdc1_columns(np.arange(1, len(t) + 1), np.asarray(t["ra"]), np.asarray(t["dec"]),
                                   np.asarray(t["flux"]), np.asarray(t[bm]), np.asarray(t[bn]),
                                   np.asarray(t["pa"])), header=False)
        for freq in (560, 1400):
            for mode in (0, 1):
                cases.append(("predicted", ppath, tpath2, freq, mode, False))
    payload = json.dumps([[c[1], c[2], c[3], c[4], c[5]] for c in cases])
    proc = subprocess.run([args.venv_python, "-c", OFFICIAL, payload], capture_output=True,
                          text=True, check=False)
    if proc.returncode:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 2
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    worst, bad = 0.0, 0
    print(f"{'case':<14}{'freq':>6}{'mode':>6}{'area':>8}{'ska-sdc':>16}{'cianna_jax':>16}"
          f"{'rel. diff':>11}  n_det/n_match/n_bad")
    for (name, sub, tru, freq, mode, train), ref in zip(cases, theirs):
        if "error" in ref:
            print(f"{name:<14}{freq:>6}{mode:>6}{'train' if train else 'test':>8}  ska-sdc failed: "
                  f"{ref['error']}")
            continue
        ours = sdc1_score(read_sdc1(sub), read_sdc1(tru), freq,
                          mode="core" if mode == 0 else "centroid",
                          area="train" if train else "exclude_train")
        rel = abs(ours.value - ref["value"]) / max(abs(ref["value"]), 1e-12)
        counts = (ours.n_det, ours.n_match, ours.n_bad) == (ref["n_det"], ref["n_match"], ref["n_bad"])
        worst = max(worst, rel)
        bad += (rel > args.rtol) or not counts
        print(f"{name:<14}{freq:>6}{mode:>6}{'train' if train else 'test':>8}{ref['value']:>16.6f}"
              f"{ours.value:>16.6f}{rel:>11.1e}  {ours.n_det}/{ours.n_match}/{ours.n_bad}"
              f"{'' if counts else '  COUNTS DIFFER: ' + str(ref)}")
    print(f"{len(cases)} cases, largest relative difference {worst:.2e} (tolerance {args.rtol:g}); "
          f"{'all agree' if not bad else f'{bad} disagree'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
