"""The luminosity function of a detector's catalogue, against the population it was drawn
from.

    python benchmarks/lumfunc_check.py --model M [--size 4096] [--seeds 0 1] [--snr 5]

A non-evolving double power law (Mpc^-3 dex^-1, at the image's frequency, alpha -0.7) fills
the volume behind a simulated field out to z 2.2; its sources, point-like, are drawn on the
field's noise (rising ``--edge`` times to the corners, as after a primary-beam correction)
and searched with the model (``predict``). Each detection matched to a true source within
1.8 arcsec takes its redshift (``--with-z`` of them: photometric redshifts for some hosts
only); ``cianna-jax lumfunc`` then measures Phi over the image's visibility areas at
``--snr`` 5 sigma.
Printed: per redshift and luminosity bin the sources, Phi +- its error and the truth, and the
pulls of the complete bins.
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

#: the population: Phi* (Mpc^-3 dex^-1), L* (W/Hz), the two slopes (per dex)
PHI_STAR, L_STAR, SLOPES = 3e-3, 10 ** 23.0, (0.4, 1.6)
Z_RANGE, LOGL_RANGE = (0.02, 2.2), (20.5, 27.5)


def phi(logl: np.ndarray) -> np.ndarray:
    x = 10 ** (np.asarray(logl) - math.log10(L_STAR))
    return PHI_STAR / (x ** SLOPES[0] + x ** SLOPES[1])


def field(folder: str, size: int, seed: int, edge: float, faintest: float):
    """Write the field; return its path and the true sources' (ra, dec, z, flux)."""
    from dataclasses import replace

    from cianna_jax.astro.fits_image import FWHM_AREA
    from cianna_jax.astro.luminosity_function import simulate_population
    from cianna_jax.astro.synthetic import synthetic_field, write_fits
    from cianna_jax.datasets import radio_sky as rs

    rng = np.random.default_rng([seed, 5])
    base = synthetic_field(size, seed=seed, pixel_scale=0.6, psf_fwhm=3.0, noise=1e-5,
                           density=1e-7, noise_edge=edge, snr_range=(15.0, 16.0))
    beam_pix = FWHM_AREA * 3.0 ** 2
    noise = base.image - rs.render_sources(base.image.shape, base.catalogue) * beam_pix
    area_sr = (size * 0.6 / 3600 * math.pi / 180) ** 2
    z, flux = simulate_population(phi, area_sr, rng, z_range=Z_RANGE, logl_range=LOGL_RANGE)
    keep = flux >= faintest  # the far fainter ones add nothing a 5-sigma search can see
    z, flux = z[keep], flux[keep]
    x, y = rng.uniform(4, size - 5, z.size), rng.uniform(4, size - 5, z.size)
    one = np.ones(z.size)
    cat = rs.Catalogue(x, y, flux, 3.0 * one, 3.0 * one, 0.0 * one, np.zeros(z.size, int),
                       0.0 * one, 0.0 * one, ndim=2)
    image = (rs.render_sources(base.image.shape, cat) * beam_pix + noise).astype(np.float32)
    path = os.path.join(folder, f"lf{seed}.fits")
    write_fits(path, replace(base, image=image, catalogue=cat))
    ra, dec = _sky(path, x, y)
    return path, ra, dec, z, flux


def _sky(path: str, x, y):
    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.sky import pixel_to_sky

    with open_image(path) as img:
        return pixel_to_sky(img.wcs, x, y)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a detector's model card (.json)")
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--edge", type=float, default=3.0, help="noise at the corners / centre")
    ap.add_argument("--snr", type=float, default=5.0,
                    help="the visibility areas' threshold (sources below it left out)")
    ap.add_argument("--with-z", type=float, default=0.8,
                    help="the fraction of matched detections given their redshift")
    args = ap.parse_args(argv)
    from cianna_jax.astro.catalogue import read_catalogue, write_catalogue
    from cianna_jax.astro.crossmatch import crossmatch_sky
    from cianna_jax.astro.luminosity_function import catalogue_luminosity_function
    from cianna_jax.astro.pipeline import predict_file

    print(f"{args.size}x{args.size} fields of 0.6 arcsec pixels, noise 10 uJy/beam at the "
          f"centre, x{args.edge:g} at the corners; Phi* {PHI_STAR:g} Mpc^-3 dex^-1, "
          f"log L* {math.log10(L_STAR):g}, slopes {SLOPES}")
    all_pulls = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in args.seeds:
            t0 = time.perf_counter()
            path, ra, dec, z, flux = field(folder, args.size, seed, args.edge, 1e-5)
            cat = os.path.join(folder, f"lf{seed}.ecsv")
            predict_file(path, args.model, cat, progress=False)
            t = read_catalogue(cat)
            m = crossmatch_sky(np.asarray(t["ra"]), np.asarray(t["dec"]), ra, dec, 1.8)
            zc = np.full(len(t), np.nan)
            rng = np.random.default_rng([seed, 9])
            given = rng.uniform(size=m.det.size) < args.with_z
            zc[m.det[given]] = z[m.truth[given]]
            t["z_phot"] = zc
            write_catalogue(t, cat)
            lf = catalogue_luminosity_function(cat, z_column="z_phot", image=path,
                                               snr=args.snr, z_edges=(0.1, 0.5, 1.0, 2.0),
                                               dex=0.5)
            print(f"seed {seed}: {z.size} true sources above 10 uJy, {len(t)} detections, "
                  f"{m.det.size} matched, {int(np.isfinite(zc).sum())} with a redshift "
                  f"({time.perf_counter() - t0:.0f} s)")
            for b in range(lf.z_edges.size - 1):
                for j in range(lf.logl_edges.size - 1):
                    if lf.n[b, j] < 5:
                        continue
                    g = np.linspace(*lf.logl_edges[j:j + 2], 50)
                    want = np.trapezoid(phi(g), g) / np.diff(lf.logl_edges[j:j + 2])[0]
                    pull = (lf.phi[b, j] - want) / lf.phi_err[b, j]
                    if lf.complete[b, j]:
                        all_pulls.append(pull)
                    print(f"   z {lf.z_edges[b]:.1f}-{lf.z_edges[b + 1]:.1f} log L "
                          f"{lf.logl_edges[j]:.1f}-{lf.logl_edges[j + 1]:.1f}: n {lf.n[b, j]:4d} "
                          f"Phi {lf.phi[b, j]:.3e} +- {lf.phi_err[b, j]:.1e}, true "
                          f"{want:.3e}, pull {pull:+.2f}"
                          + ("" if lf.complete[b, j] else " (incomplete)"))
    p = np.array(all_pulls)
    if not p.size:
        print("no complete bin of 5 or more sources: a larger --size")
        return 1
    print(f"complete bins of 5 or more sources: {p.size}, pulls' mean {p.mean():+.2f}, "
          f"rms {math.sqrt(np.mean(p ** 2)):.2f}, largest |pull| {np.abs(p).max():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
