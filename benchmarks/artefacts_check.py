"""False sources around bright ones: a field with calibration artefacts, the detector's
catalogue and its reliability by zone, against PyBDSF's.

    python benchmarks/artefacts_check.py --model M [--level 0.01] [--no-pybdsf]

A 2048x2048 SDC1-like field with a few very bright sources (integrated fluxes up to 1e5
times the per-pixel noise, peak SNR up to ~1900), and the same field with the residual
sidelobes of calibration errors around the sources of peak SNR >= 300
(:func:`cianna_jax.astro.synthetic.with_artefacts`, ``--level`` of their peak). For each,
the detector's catalogue (``predict --reliability``) is matched to the truth: its false
sources near bright ones (the ``near_bright`` flag) and elsewhere, what a cut at
reliability >= 0.9 keeps when each source's reliability is its zone's (as the catalogue
gives it) or the whole image's, and the catalogue of ``--target-reliability 0.9`` (a
threshold per zone); the same two with the noise map raised around bright sources
(``--adaptive-rms``, :mod:`cianna_jax.astro.adaptive_noise`); then PyBDSF 1.14.1
(thresh_isl 3, thresh_pix 5), with and without its ``adaptive_rms_box``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CUT = 0.9


def fields(folder: str, level: float) -> list[tuple[str, str, object]]:
    """(name, FITS path, truth) of the field without and with artefacts."""
    from cianna_jax.astro.synthetic import (
        synthetic_field,
        truth_table,
        with_artefacts,
        write_fits,
    )

    f0 = synthetic_field(2048, seed=102, snr_range=(1.0, 1e5))
    out = []
    for name, f in (("no artefacts", f0),
                    (f"artefacts {level:g}", with_artefacts(f0, level=level, min_snr=300))):
        path = os.path.join(folder, f"{len(out)}.fits")
        write_fits(path, f)
        out.append((name, path, truth_table(f)))
    return out


def real_rows(table, truth) -> np.ndarray:
    """Rows of ``table`` matched to a true source (within 1.8 arcsec, one-to-one)."""
    from cianna_jax.astro.crossmatch import crossmatch_sky

    m = crossmatch_sky(np.asarray(table["ra"]), np.asarray(table["dec"]),
                       np.asarray(truth["ra"]), np.asarray(truth["dec"]), 1.8)
    real = np.zeros(len(table), bool)
    real[m.det] = True
    return real


def ours(path: str, truth, model: str, adaptive=None) -> str:
    from cianna_jax.astro.pipeline import find_sources

    t0 = time.perf_counter()
    res = find_sources(path, model, progress=False, reliability=True, adaptive_rms=adaptive)
    t = res.table
    real, near = real_rows(t, truth), np.asarray(t["near_bright"], bool)
    zone = np.asarray(t["reliability"]) >= CUT
    whole = res.reliability.at(np.asarray(t["snr"])) >= CUT
    return (f"{len(t)} detections, {real.sum()} real ({time.perf_counter() - t0:.0f} s); false: "
            f"{(~real & near).sum()} near bright sources ({near.sum()} flagged near_bright), "
            f"{(~real & ~near).sum()} elsewhere; reliability >= {CUT:g} by zone keeps "
            f"{(real & zone).sum()} real and {(~real & zone).sum()} false, by the whole "
            f"image's {(real & whole).sum()} real and {(~real & whole).sum()} false; "
            + target_line(path, truth, model, adaptive))


def target_line(path: str, truth, model: str, adaptive=None) -> str:
    """The catalogue at a target reliability of CUT (a threshold per zone)."""
    from cianna_jax.astro.pipeline import find_sources

    t = find_sources(path, model, progress=False, target_reliability=CUT,
                     adaptive_rms=adaptive).table
    real, near = real_rows(t, truth), np.asarray(t["near_bright"], bool)
    near_thr = t.meta["reliability"].get("near_bright_threshold")
    return (f"--target-reliability {CUT:g}: threshold {t.meta['obj_threshold']:g}"
            + (f" ({near_thr:g} near bright sources)" if near_thr is not None else "")
            + f", {real.sum()} real, {(~real & near).sum()} false near bright sources, "
            f"{(~real & ~near).sum()} elsewhere")


def pybdsf(path: str, truth, adaptive: bool) -> str:
    import bdsf
    from astropy.table import Table

    t0 = time.perf_counter()
    img = bdsf.process_image(path, thresh_isl=3.0, thresh_pix=5.0, quiet=True,
                             adaptive_rms_box=adaptive)
    out = path.replace(".fits", f"_{adaptive}.srl.fits")
    img.write_catalog(outfile=out, format="fits", catalog_type="srl", clobber=True)
    s = Table.read(out)
    t = Table({"ra": np.mod(np.asarray(s["RA"]), 360.0), "dec": np.asarray(s["DEC"])})
    real = real_rows(t, truth)
    return (f"{len(t)} detections, {real.sum()} real, {(~real).sum()} false "
            f"({time.perf_counter() - t0:.0f} s)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--level", type=float, default=0.01,
                    help="the artefacts' peaks over the bright source's (at 1 beam)")
    ap.add_argument("--no-pybdsf", action="store_true")
    args = ap.parse_args(argv)
    from cianna_jax.astro.adaptive_noise import AdaptiveRms

    with tempfile.TemporaryDirectory() as folder:
        for name, path, truth in fields(folder, args.level):
            snr = np.asarray(truth["snr"])
            print(f"{name}: {len(truth)} true sources, {(snr >= 5).sum()} of SNR >= 5, "
                  f"{(snr >= 300).sum()} of SNR >= 300")
            print(f"  cianna_jax: {ours(path, truth, args.model)}")
            print(f"  cianna_jax --adaptive-rms: {ours(path, truth, args.model, AdaptiveRms())}")
            if not args.no_pybdsf:
                for adaptive in (False, True):
                    print(f"  PyBDSF{' adaptive_rms_box' if adaptive else ''}: "
                          f"{pybdsf(path, truth, adaptive)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
