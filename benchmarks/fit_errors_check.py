"""Are the catalogue's 1-sigma errors honest?  Pulls on a synthetic field.

    python benchmarks/fit_errors_check.py [--size 1024] [--sources 900] [--seed 3]

Renders a noise-free synthetic field (points and extended sources), adds noise two ways
(correlated as the beam, as a radio image's noise is and the simulator's; and, to see the
errors when the noise is not what they assume, white noise smoothed by the beam, so
correlated over sqrt(2) beams, as the simulator made it before 2026-12-06), measures every true
source from its true box (``measure_sources`` with the beam as the noise correlation), and
prints for the isolated ones, per SNR bin, the robust scatter (1.4826 MAD) of the pulls
``(measured - true) / error`` of x, y, flux and peak: 1 for honest errors.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cianna_jax.astro.measure import FWHM, measure_sources  # noqa: E402
from cianna_jax.astro.noise import estimate_noise_map  # noqa: E402
from cianna_jax.datasets.radio_sky import (  # noqa: E402
    boxes_from_catalogue,
    correlated_noise,
    make_field,
)

BEAM = 3.0  # pixels FWHM
BINS = ((5, 15), (15, 50), (50, math.inf))


def _robust(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else math.nan


def pulls(sky: np.ndarray, cat, noise: np.ndarray) -> dict[tuple, dict[str, float]]:
    """Pull scatter per (kind, SNR bin) of the isolated sources of ``cat`` on ``sky + noise``."""
    from scipy.spatial import cKDTree

    img = (sky + noise).astype(np.float32)
    nmap = estimate_noise_map(lambda w: img[w], img.shape, box=64)
    bs = BEAM / FWHM
    boxes = boxes_from_catalogue(cat)              # the true boxes, as training labels them
    m = measure_sources(lambda w: img[w], img.shape, boxes, nmap, beam_area=1.0,
                        beam_sigma=bs, noise_beam=(bs, bs, 0.0))
    peak = cat.flux / (2 * np.pi * (cat.bmaj / FWHM) * (cat.bmin / FWHM))  # per-pixel image
    xy = np.stack([cat.x, cat.y], 1)
    iso = cKDTree(xy).query(xy, k=2)[0][:, 1] > 4 * BEAM
    out = {}
    for kind in (0, 1):
        for lo, hi in BINS:
            s = m.fit_ok & iso & (cat.kind == kind) & (peak >= lo) & (peak < hi)
            out[(kind, lo, hi)] = {
                "n": int(s.sum()),
                "x": _robust(((m.x - cat.x) / np.sqrt(m.xy_cov[:, 0, 0]))[s]),
                "y": _robust(((m.y - cat.y) / np.sqrt(m.xy_cov[:, 1, 1]))[s]),
                "flux": _robust(((m.flux - cat.flux) / m.flux_err)[s]),
                "peak": _robust(((m.peak - peak) / m.peak_err)[s]),
            }
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--sources", type=int, default=900)
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args(argv)
    sky, cat = make_field(a.size, n_sources=a.sources, seed=a.seed, noise_rms=0.0,
                          psf_fwhm=BEAM, flux_range=(30.0, 3000.0), border=10)
    rng = np.random.default_rng(a.seed + 1)
    cases = {"noise correlated as the beam": correlated_noise(sky.shape, 1.0, BEAM, rng),
             "noise correlated over sqrt(2) beams": correlated_noise(sky.shape, 1.0,
                                                                     BEAM * math.sqrt(2), rng)}
    print(f"{a.size}x{a.size} field, {a.sources} sources, beam {BEAM} px, noise rms 1; "
          "robust scatter of (measured - true) / error, isolated sources (1: honest errors)")
    for name, noise in cases.items():
        print(f"\n{name}")
        print(f"{'kind':9s} {'SNR':10s} {'n':>4s} {'x':>6s} {'y':>6s} {'flux':>6s} {'peak':>6s}")
        for (kind, lo, hi), r in pulls(sky, cat, noise).items():
            label = f"[{lo}, {hi})" if math.isfinite(hi) else f">= {lo}"
            print(f"{('point', 'extended')[kind]:9s} {label:10s} {r['n']:4d} {r['x']:6.2f} "
                  f"{r['y']:6.2f} {r['flux']:6.2f} {r['peak']:6.2f}")


if __name__ == "__main__":
    main()
