"""The angular correlation function of a detector's catalogue, on fields whose noise rises
towards the corners (as after a primary-beam correction), against the truth.

    python benchmarks/clustering_check.py --model M [--size 2048] [--seeds 0 1] [--flux-min JY]

Two skies per seed, each searched with the model (``predict``) and measured with
``cianna-jax clustering``'s randoms (uniform on the data, kept as the detector would keep
them: 5 sigma of the image's noise map) and, for comparison, with uniform randoms:
- Poisson: the synthetic field's sources where they are (uniform): ``w`` should be 0;
- clustered: the same sources moved into a Thomas process (parents at random, children
  Gaussian about them, ``--sigma`` arcsec), rendered on the same noise: ``w`` should follow
  ``exp(-theta^2 / 4 s^2) / (4 pi s^2 n_parents)``.
Printed per sky: the bins' ``w`` +- jackknife error and the expected value, and chi2
against it for both kinds of randoms.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def thomas(rng, shape, n_sources, parents, sigma_px):
    """Thomas-process positions (pixels): parents over the image and a margin, Poisson
    children (``n_sources / parents`` each) Gaussian about them, those off the image cut."""
    H, W = shape
    m = 6 * sigma_px
    grow = (H + 2 * m) * (W + 2 * m) / (H * W)
    n = rng.poisson(parents * grow)
    px, py = rng.uniform(-m, W + m, n), rng.uniform(-m, H + m, n)
    k = rng.poisson(n_sources / parents, n)
    x = np.repeat(px, k) + rng.normal(0, sigma_px, k.sum())
    y = np.repeat(py, k) + rng.normal(0, sigma_px, k.sum())
    ok = (x > 8) & (x < W - 9) & (y > 8) & (y < H - 9)
    return x[ok], y[ok]


def skies(folder, size, seed, edge, sigma_arcsec, parents, faintest):
    """Write the Poisson and the clustered field; return their paths."""
    from cianna_jax.astro.fits_image import FWHM_AREA
    from cianna_jax.astro.synthetic import synthetic_field, write_fits
    from cianna_jax.datasets import radio_sky as rs

    f = synthetic_field(size, seed=seed, pixel_scale=0.6, psf_fwhm=3.0, noise=1e-5,
                        density=0.002, noise_edge=edge, snr_range=(faintest, 3000.0))
    beam_pix = FWHM_AREA * 3.0 ** 2
    cat = f.catalogue
    noise = f.image - rs.render_sources(f.image.shape, cat) * beam_pix  # Jy/beam
    rng = np.random.default_rng([seed, 11])
    x, y = thomas(rng, f.image.shape, len(cat.x), parents, sigma_arcsec / 0.6)
    pick = rng.integers(0, len(cat.x), x.size)  # the same population, moved
    moved = rs.Catalogue(x, y, cat.flux[pick], cat.bmaj[pick], cat.bmin[pick], cat.pa[pick],
                         cat.kind[pick], cat.z[pick], cat.dz[pick], ndim=2)
    clustered = (rs.render_sources(f.image.shape, moved) * beam_pix + noise).astype(np.float32)
    paths = [os.path.join(folder, f"{kind}{seed}.fits") for kind in ("poisson", "thomas")]
    write_fits(paths[0], f)
    from dataclasses import replace

    write_fits(paths[1], replace(f, image=clustered, catalogue=moved))
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a detector's model card (.json)")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--edge", type=float, default=4.0, help="noise at the corners / centre")
    ap.add_argument("--sigma", type=float, default=30.0, help="clusters' sigma (arcsec)")
    ap.add_argument("--parents", type=int, default=300, help="clusters on the field")
    ap.add_argument("--faintest", type=float, default=15.0,
                    help="the faintest source's flux in synthetic_field's snr_range units "
                         "(default 15, as the other checks; 5: more sources near the limit)")
    ap.add_argument("--flux-min", type=float, default=50e-6,
                    help="the flux cut (Jy; default 50e-6: 5 sigma at the centre, where the "
                         "corners see 20 sigma)")
    args = ap.parse_args(argv)
    from cianna_jax.astro.catalogue_clustering import measure_clustering
    from cianna_jax.astro.pipeline import predict_file

    side_deg = args.size * 0.6 / 3600.0
    rho = args.parents / side_deg ** 2  # parents per deg^2
    s = args.sigma / 3600.0
    print(f"{args.size}x{args.size} fields of 0.6 arcsec pixels, beam 1.8 arcsec, noise x"
          f"{args.edge:g} at the corners; clusters: {args.parents}, sigma {args.sigma:g} "
          f"arcsec: w(0) = {1 / (4 * math.pi * s * s * rho):.3f}")
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            t0 = time.perf_counter()
            for path, clustered in zip(skies(folder, args.size, seed, args.edge, args.sigma,
                                             args.parents, args.faintest), (False, True)):
                cat = path.replace(".fits", ".ecsv")
                predict_file(path, args.model, cat, progress=False)
                res = measure_clustering(cat, path, bins=8, flux_min=args.flux_min,
                                         theta_min=10.0 / 3600,
                                         theta_max=5.0 / 60, naive=True, fit=False, seed=seed)
                c, u = res.correlation, res.naive
                want = (np.exp(-c.theta ** 2 / (4 * s * s)) / (4 * math.pi * s * s * rho)
                        if clustered else np.zeros_like(c.theta))
                chi = float(np.sum(((c.w - want) / c.w_err) ** 2))
                chi_u = float(np.sum(((u.w - want) / u.w_err) ** 2))
                m = c.meta
                print(f"seed {seed}, {'clustered' if clustered else 'Poisson'}: "
                      f"{m['n_selected']} of {m['n_catalogue']} sources (flux >= "
                      f"{m['flux_min_jy'] * 1e6:.0f} uJy); chi2 against the truth, 8 bins: "
                      f"{chi:.1f} with the selection's randoms, {chi_u:.1f} with uniform ones")
                print("   theta (arcsec):   " + " ".join(f"{t * 3600:7.1f}" for t in c.theta))
                print("   w (selection):    " + " ".join(f"{v:7.3f}" for v in c.w))
                print("   +-                " + " ".join(f"{v:7.3f}" for v in c.w_err))
                print("   w (uniform):      " + " ".join(f"{v:7.3f}" for v in u.w))
                print("   expected:         " + " ".join(f"{v:7.3f}" for v in want))
            print(f"   ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
