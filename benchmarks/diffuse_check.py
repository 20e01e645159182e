"""Diffuse emission found at coarser scales of the residual, against the truth.

    python benchmarks/diffuse_check.py --model M [--size 2048] [--blobs 12] [--scales 4 8]

A synthetic field (compact and slightly resolved sources, as the other checks) with
``--blobs`` large faint Gaussians added (FWHM 7-13 beams, 1-3 mJy: peak SNR 1-5 per beam,
under the compact pass's reach), searched with ``cianna-jax diffuse``: the compact pass, then
the residual at each scale. Printed: the blobs found (within half their FWHM) and their flux
ratios, and the other components sorted by the truth: flux the compact pass missed (the true
sources within the component's half-power radius hold at least half its flux beyond what the
compact catalogue has there) or not.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def field(folder: str, size: int, n_blobs: int, seed: int):
    """Write the field; return its path, the truth and the blobs (ra, dec, flux, fwhm")."""
    from dataclasses import replace

    from cianna_jax.astro.fits_image import FWHM_AREA, open_image
    from cianna_jax.astro.sky import pixel_to_sky
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits
    from cianna_jax.datasets import radio_sky as rs

    f = synthetic_field(size, seed=seed, pixel_scale=0.6, psf_fwhm=3.0, noise=1e-5,
                        density=0.002, snr_range=(15.0, 3000.0))
    rng = np.random.default_rng([seed, 7])
    x, y = rng.uniform(100, size - 100, n_blobs), rng.uniform(100, size - 100, n_blobs)
    fwhm = rng.uniform(20, 40, n_blobs)  # pixels
    flux = rng.uniform(1.0, 3.0, n_blobs) * 1e-3
    one = np.ones(n_blobs)
    blobs = rs.Catalogue(x, y, flux, fwhm, fwhm, 0 * one, np.ones(n_blobs, int), 0 * one,
                         0 * one, ndim=2)
    image = f.image + rs.render_sources(f.image.shape, blobs) * FWHM_AREA * 9.0
    path = os.path.join(folder, "diffuse_field.fits")
    write_fits(path, replace(f, image=image.astype(np.float32)))
    with open_image(path) as img:
        ra, dec = pixel_to_sky(img.wcs, x, y)
    return path, truth_table(f), (ra, dec, flux, fwhm * 0.6)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a detector's model card (.json)")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--blobs", type=int, default=12)
    ap.add_argument("--scales", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--seed", type=int, default=3)
    args = ap.parse_args(argv)
    from cianna_jax.astro.crossmatch import crossmatch_sky, tangent_plane
    from cianna_jax.astro.multiscale import find_diffuse

    with tempfile.TemporaryDirectory() as folder:
        path, truth, (bra, bdec, bflux, bfwhm) = field(folder, args.size, args.blobs,
                                                       args.seed)
        t0 = time.perf_counter()
        res = find_diffuse(path, args.model, scales=args.scales)
        dt = time.perf_counter() - t0
    t, c = res.table, res.compact.table
    m = crossmatch_sky(np.asarray(t["ra"]), np.asarray(t["dec"]), bra, bdec, bfwhm / 2)
    blob = np.zeros(len(t), bool)
    blob[m.det] = True
    peak_snr = bflux * 9.0 / (9.0 + (bfwhm / 0.6) ** 2) / 1e-5
    print(f"{args.size}x{args.size} field, {len(truth)} true sources, {args.blobs} blobs of "
          f"FWHM {bfwhm.min():.0f}-{bfwhm.max():.0f} arcsec, peak SNR "
          f"{peak_snr.min():.1f}-{peak_snr.max():.1f} per beam; {len(c)} compact sources, "
          f"{len(t)} diffuse components at scales {list(res.scales)} ({dt:.0f} s)")
    print(f"blobs found: {len(set(m.truth.tolist()))} of {args.blobs}; flux ratios "
          + " ".join(f"{r:.2f}" for r in np.asarray(t["flux"])[m.det] / bflux[m.truth])
          + "; scales " + " ".join(str(int(s)) for s in np.asarray(t["scale"])[m.det]))
    tr = np.asarray(truth["ra"], np.float64), np.asarray(truth["dec"], np.float64)
    x, y, _, centre = tangent_plane(np.concatenate([t["ra"], c["ra"], tr[0]]),
                                    np.concatenate([t["dec"], c["dec"], tr[1]]))
    n1, n2 = len(t), len(t) + len(c)
    missed, spurious = [], []
    for i in np.flatnonzero(~blob):
        r = float(t["bmaj"][i]) / 2
        d_true = np.hypot(x[n2:] - x[i], y[n2:] - y[i]) < r
        d_comp = np.hypot(x[n1:n2] - x[i], y[n1:n2] - y[i]) < r
        extra = float(np.sum(truth["flux"][d_true]) - np.sum(c["flux"][d_comp]))
        (missed if extra >= 0.5 * float(t["flux"][i]) else spurious).append(i)
    print(f"other components: {len(missed)} flux the compact pass missed (the truth within "
          f"their half-power radius holds at least half their flux beyond the compact "
          f"catalogue's), {len(spurious)} not")
    if spurious:
        print("   not: SNR " + " ".join(f"{t['snr'][i]:.1f}" for i in spurious))
    return 0


if __name__ == "__main__":
    sys.exit(main())
