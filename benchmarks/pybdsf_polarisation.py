"""This package's polarisation against PyBDSF's on one simulated IQUV cube.

    python benchmarks/pybdsf_polarisation.py [--size 1024] [--seed 31] [--out FOLDER]

Writes one sky's Stokes I, Q, U and V (each source polarised by N(0.1, 0.03) at its own
angle; each Stokes its own noise) as one FITS cube with a STOKES axis, runs PyBDSF on it
with ``polarisation_do=True`` (its Gaussians' Q, U fitted with their I shapes), measures
the same Gaussians' polarisation here (:func:`cianna_jax.astro.polarisation.polarisation`,
forced photometry) and compares: the Q and U fluxes of the two, each one's Q pulls against
the truth on the point sources, and the angles and fractions of the sources polarised here.
Needs ``astropy`` and ``bdsf``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_cube(path: str, size: int, seed: int):
    """The IQUV cube and the I and Q truths."""
    from astropy.io import fits

    from cianna_jax.astro.synthetic import synthetic_field, truth_table

    fields = {s: synthetic_field(size, seed=seed, density=0.002, stokes=s,
                                 pol_fraction=(0.1, 0.03)) for s in "IQUV"}
    h = fields["I"].header.copy()
    h.pop("RESTFREQ", None)
    h["CTYPE3"], h["CRVAL3"], h["CDELT3"], h["CRPIX3"] = "STOKES", 1.0, 1.0, 1.0
    h["CTYPE4"], h["CRVAL4"], h["CDELT4"], h["CRPIX4"], h["CUNIT4"] = (
        "FREQ", 560e6, 1e7, 1.0, "Hz")
    cube = np.stack([fields[s].image for s in "IQUV"])[None].astype(np.float32)
    fits.writeto(path, cube, h, overwrite=True)
    return truth_table(fields["I"]), truth_table(fields["Q"])


def compare(path: str, gaul, truth_i, truth_q) -> dict:
    """Ours against PyBDSF's on PyBDSF's Gaussians (see the module docstring)."""
    from astropy.table import Table

    from cianna_jax.astro.crossmatch import crossmatch_sky
    from cianna_jax.astro.polarisation import polarisation

    cat = Table({"ra": np.asarray(gaul["RA"]), "dec": np.asarray(gaul["DEC"]),
                 "flux": np.asarray(gaul["Total_flux"]),
                 "flux_err": np.asarray(gaul["E_Total_flux"])})
    t = polarisation(cat, path, path, path)
    m = crossmatch_sky(np.asarray(cat["ra"]), np.asarray(cat["dec"]),
                       np.asarray(truth_i["ra"]), np.asarray(truth_i["dec"]), 1.8)
    g, o, tq = gaul[m.det], t[m.det], truth_q[m.truth]
    point = np.asarray(truth_i["kind"])[m.truth] == 0
    pol = np.asarray(o["polarised"], bool)
    out = {"gaussians": len(gaul), "matched": int(len(g)), "point": int(point.sum()),
           "polarised": int(pol.sum())}
    for s in ("Q", "U"):
        d = np.asarray(o[f"{s.lower()}_flux"] - g[f"Total_{s}"], np.float64)[point]
        out[s] = (float(np.median(d)), float(np.std(d)),
                  float(np.median(o[f"{s.lower()}_flux_err"])), float(np.median(g[f"E_Total_{s}"])))
    for who, flux, err in (("ours", o["q_flux"], o["q_flux_err"]),
                           ("pybdsf", g["Total_Q"], g["E_Total_Q"])):
        pull = np.asarray((flux - tq["flux"]) / err, np.float64)[point]
        out[f"pull_{who}"] = (float(np.median(pull)), float(np.std(pull)))
    ang = ((np.asarray(o["evpa"]) - np.asarray(g["Linear_Pol_Ang"]) + 90) % 180 - 90)[pol]
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (np.asarray(o["pol_frac"]) / np.asarray(g["Linear_Pol_frac"]))[pol]
    out["angle"] = (float(np.median(ang)), float(np.std(ang))) if pol.any() else (np.nan, np.nan)
    out["fraction_ratio"] = float(np.median(frac)) if pol.any() else float("nan")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=31)
    ap.add_argument("--out", default=".", help="folder for the cube and PyBDSF's lists")
    args = ap.parse_args(argv)
    import bdsf
    from astropy.table import Table

    path = os.path.join(args.out, "iquv.fits")
    truth_i, truth_q = write_cube(path, args.size, args.seed)
    img = bdsf.process_image(path, thresh_isl=3.0, thresh_pix=5.0, polarisation_do=True,
                             quiet=True)
    gaul_path = os.path.join(args.out, "iquv.gaul.fits")
    img.write_catalog(outfile=gaul_path, format="fits", catalog_type="gaul", clobber=True)
    c = compare(path, Table.read(gaul_path), truth_i, truth_q)
    print(f"{c['gaussians']} PyBDSF Gaussians, {c['matched']} matched to the truth "
          f"({c['point']} point sources), {c['polarised']} polarised here")
    for s in ("Q", "U"):
        med, sd, ours, theirs = c[s]
        print(f"{s}: here - PyBDSF median {med:.2e}, scatter {sd:.2e} Jy; errors here "
              f"{ours:.2e}, PyBDSF's {theirs:.2e} Jy")
    print(f"Q pulls against the truth: here {c['pull_ours'][0]:+.2f} +- {c['pull_ours'][1]:.2f}, "
          f"PyBDSF {c['pull_pybdsf'][0]:+.2f} +- {c['pull_pybdsf'][1]:.2f}; angles here - "
          f"PyBDSF {c['angle'][0]:+.2f} +- {c['angle'][1]:.2f} deg; fractions here / PyBDSF "
          f"{c['fraction_ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
