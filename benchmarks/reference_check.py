"""Astrometry and flux scale against a reference catalogue, on a simulated field.

    python benchmarks/reference_check.py --model M [--size 2048] [--seed 41] [--pybdsf]

The field's sources are found with the model (as ``cianna-jax predict``) and compared
(:func:`cianna_jax.astro.reference_check.reference_check`) with a reference made from the
truth with known systematics: positions moved by (-0.4", +0.25") with 0.3" of noise (its
``ra_err``, ``dec_err``) and 0.2" more, fluxes divided by 1.08 with 3% noise (its
``flux_err``) and 5% more; so the check should find offsets (+0.4", -0.25"), a ratio of
1.08 and systematic parts of 0.2" and 0.05, and, once the catalogue is corrected, none.
Five reference draws. ``--pybdsf``: PyBDSF's source list of the same image as the
reference too (two finders of one image: offsets and ratio near 0 and 1). ``--ref-beam
ARCSEC``: a reference of that resolution (NVSS: 45) instead, the truth seen through it
(sources within half a beam of each other merged, friends of friends: fluxes summed, the
flux-weighted centre; those above ``--ref-limit`` Jy kept), then the same systematics:
the check compares each isolated reference source with the sum of ours within its beam.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SYSTEMATICS = dict(d_ra=0.4, d_dec=-0.25, pos_noise=0.3, pos_extra=0.2, ratio=1.08,
                   flux_noise=0.03, flux_extra=0.05)


def reference_from(truth, seed: int):
    """The truth with the module docstring's systematics."""
    s = SYSTEMATICS
    rng = np.random.default_rng(seed)
    ref = truth.copy()
    n = len(ref)
    cosd = np.cos(np.radians(np.asarray(ref["dec"], np.float64)))
    pos = np.hypot(s["pos_noise"], s["pos_extra"])
    ref["ra"] = (np.asarray(ref["ra"]) - (s["d_ra"] + rng.normal(0, pos, n)) / 3600 / cosd) % 360
    ref["dec"] = np.asarray(ref["dec"]) - (s["d_dec"] + rng.normal(0, pos, n)) / 3600
    ref["ra_err"] = np.full(n, s["pos_noise"])
    ref["dec_err"] = np.full(n, s["pos_noise"])
    flux = np.asarray(ref["flux"], np.float64) / s["ratio"]
    ref["flux"] = flux * (1 + rng.normal(0, np.hypot(s["flux_noise"], s["flux_extra"]), n))
    ref["flux_err"] = s["flux_noise"] * flux
    ref.meta["frequency_hz"] = 560e6
    return ref


def low_resolution(truth, beam: float, limit: float, gather: float = 0.5):
    """The truth as a survey of ``beam`` arcsec sees it (see the module's note): its
    sources above ``limit`` Jy, those within half a beam of each other merged (friends of
    friends), each with the flux of every true source within half a beam of it (the faint
    ones blend in), at the flux-weighted centre."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    from cianna_jax.astro.catalogue import make_table

    ra, dec = (np.asarray(truth[c], np.float64) for c in ("ra", "dec"))
    flux = np.asarray(truth["flux"], np.float64)
    cosd = np.cos(np.radians(np.mean(dec)))
    xy = np.stack([ra * cosd, dec], 1) * 3600.0
    seeds = np.flatnonzero(flux >= limit)
    pairs = cKDTree(xy[seeds]).query_pairs(beam / 2.0, output_type="ndarray")
    n = seeds.size
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    d, near = cKDTree(xy[seeds]).query(xy)  # each true source to its nearest seed's group
    inside = d <= gather * beam
    group = lab[near[inside]]
    f = flux[inside]
    tot = np.bincount(group, weights=f)
    mra = np.bincount(group, weights=f * ra[inside]) / tot
    mdec = np.bincount(group, weights=f * dec[inside]) / tot
    return make_table({"ra": mra, "dec": mdec, "flux": tot})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model card of a 2D detector")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=41)
    ap.add_argument("--pybdsf", action="store_true", help="PyBDSF's list as a reference too")
    ap.add_argument("--ref-beam", type=float, default=None, metavar="ARCSEC",
                    help="a reference of this resolution (the truth seen through it)")
    ap.add_argument("--ref-limit", type=float, default=1e-3, metavar="JY",
                    help="with --ref-beam: its sources of at least this flux (1 mJy)")
    a = ap.parse_args()
    from cianna_jax.astro.pipeline import find_sources
    from cianna_jax.astro.reference_check import (
        apply_reference,
        format_reference_check,
        reference_check,
    )
    from cianna_jax.astro.synthetic import synthetic_field, truth_table, write_fits

    with tempfile.TemporaryDirectory() as d:
        f = synthetic_field(a.size, seed=a.seed)
        path = os.path.join(d, "field.fits")
        write_fits(path, f)
        ours = find_sources(path, a.model, progress=False).table
        truth = truth_table(f)
        if a.ref_beam is not None:
            truth = low_resolution(truth, a.ref_beam, a.ref_limit)
        print(f"{a.size}x{a.size} field, {len(ours)} sources found, {len(truth)} "
              f"{'true' if a.ref_beam is None else f'seen at {a.ref_beam:g} arcsec'}; "
              f"reference systematics {SYSTEMATICS}")
        rows = []
        for k in range(5):
            ref = reference_from(truth, k)
            c = reference_check(ours, ref, ref_beam_arcsec=a.ref_beam)
            again = reference_check(apply_reference(ours, c), ref, ref_beam_arcsec=a.ref_beam)
            rows.append((len(c.pairs), c.d_ra, c.d_ra_err, c.d_dec, c.d_dec_err,
                         c.astrometric_error, c.flux_ratio, c.flux_ratio_err,
                         c.flux_scale_error, again.d_ra, again.d_dec, again.flux_ratio))
            if k == 0:
                print(format_reference_check(c))
        print("draw  pairs  d_ra (\")        d_dec (\")       astro.err  ratio            "
              "flux err  | corrected: d_ra  d_dec  ratio")
        for k, r in enumerate(rows):
            print(f"{k:4d} {r[0]:6d}  {r[1]:+.3f}+-{r[2]:.3f}  {r[3]:+.3f}+-{r[4]:.3f}  "
                  f"{r[5]:.3f}      {r[6]:.4f}+-{r[7]:.4f}  {r[8]:.3f}     | "
                  f"{r[9]:+.3f}  {r[10]:+.3f}  {r[11]:.4f}")
        if a.pybdsf:
            import bdsf

            from cianna_jax.astro.catalogue import read_catalogue

            img = bdsf.process_image(path, thresh_isl=3.0, thresh_pix=5.0, quiet=True)
            srl = os.path.join(d, "field.srl.fits")
            img.write_catalog(outfile=srl, format="fits", catalog_type="srl", clobber=True)
            ref = read_catalogue(srl)
            ref.meta["frequency_hz"] = 560e6
            print("against PyBDSF's source list of the same image:")
            print(format_reference_check(reference_check(ours, ref),
                                         names=("cianna_jax", "PyBDSF")))


if __name__ == "__main__":
    main()
