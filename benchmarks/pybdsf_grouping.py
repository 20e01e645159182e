"""PyBDSF's grouping of its own Gaussians into sources against this package's.

    python benchmarks/pybdsf_grouping.py --image field.fits [--image other.fits ...]

Runs PyBDSF (``process_image``, thresh_isl=3, thresh_pix=5) on each image, groups its
Gaussian list (``gaul``, in its islands ``Isl_id``) with
:func:`cianna_jax.astro.sources.with_sources`, and compares with PyBDSF's own source list
(``srl``): the pairs of Gaussians grouped by each, the S_Code of every Gaussian (also with
the islands read from the Gaussians' sum), for the sources of several Gaussians the summed
flux, the centroid, the moments' axes and the peak against PyBDSF's, and the islands this
package finds (:func:`cianna_jax.astro.islands.pixel_islands`) at PyBDSF's Gaussians
against PyBDSF's. Needs ``astropy`` and ``bdsf``.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pairs(ids: np.ndarray) -> np.ndarray:
    """For each pair of rows (upper triangle), whether they share an id."""
    iu = np.triu_indices(len(ids), 1)
    return (ids[:, None] == ids[None, :])[iu]


def island_pairs(gaul, image: str) -> dict:
    """Pairs of PyBDSF's Gaussians in one island: PyBDSF's and this package's islands."""
    from cianna_jax.astro.fits_image import open_image
    from cianna_jax.astro.islands import pixel_islands
    from cianna_jax.astro.noise import estimate_noise_map

    with open_image(image) as img:
        noise = estimate_noise_map(img.read, img.shape)
        ours = pixel_islands(img, noise, np.asarray(gaul["Xposn"]), np.asarray(gaul["Yposn"]),
                             np.asarray(gaul["Maj"]) * 3600.0 / img.pixel_scale)
    theirs, here = _pairs(np.asarray(gaul["Isl_id"])), _pairs(ours)
    return dict(pybdsf=int(theirs.sum()), ours=int(here.sum()), both=int((theirs & here).sum()))


def compare(gaul, srl) -> dict:
    """Our grouping of PyBDSF's ``gaul`` (an astropy Table) against its ``srl``."""
    from cianna_jax.astro.source_list import source_list
    from cianna_jax.astro.sources import with_sources

    t = with_sources(gaul.copy())
    bare = gaul.copy()
    bare.remove_column("Isl_id")
    loose = np.asarray(with_sources(bare)["s_code"]).astype(str)
    pb, us = np.asarray(gaul["Source_id"]), np.asarray(t["source_id"])
    theirs, ours = _pairs(pb), _pairs(us)
    codes_pb = np.asarray(gaul["S_Code"]).astype(str)
    codes_us = np.asarray(t["s_code"]).astype(str)
    rows = []
    for r in source_list(t):
        if r["n_components"] < 2:
            continue
        members = np.array([int(i) for i in r["component_ids"].split(",")]) - 1
        ids = set(pb[members])
        if len(ids) != 1:
            continue  # grouped differently: counted in the pairs
        p = srl[srl["Source_id"] == ids.pop()][0]
        dra = (r["ra"] - p["RA"]) * math.cos(math.radians(p["DEC"])) * 3600.0
        rows.append(dict(n=int(r["n_components"]), flux=r["flux"] / p["Total_flux"],
                         offset=math.hypot(dra, (r["dec"] - p["DEC"]) * 3600.0),
                         major=r["bmaj"] / (p["Maj"] * 3600.0),
                         minor=r["bmin"] / (p["Min"] * 3600.0),
                         peak=r["peak"] / p["Peak_flux"]))
    return dict(gaussians=len(gaul), sources_pybdsf=len(srl),
                sources_ours=len(np.unique(us)), pairs_pybdsf=int(theirs.sum()),
                pairs_ours=int(ours.sum()), pairs_both=int((theirs & ours).sum()),
                codes_same=int((codes_pb == codes_us).sum()),
                codes_same_no_islands=int((codes_pb == loose).sum()),
                codes=collections.Counter(zip(codes_pb, codes_us)), multi=rows)


def run_pybdsf(image: str, folder: str):
    """PyBDSF's gaul and srl of ``image`` (written in ``folder``, read back)."""
    import bdsf
    from astropy.table import Table

    img = bdsf.process_image(image, thresh_isl=3.0, thresh_pix=5.0, quiet=True)
    base = os.path.join(folder, os.path.splitext(os.path.basename(image))[0])
    out = []
    for kind in ("gaul", "srl"):
        path = f"{base}.{kind}.fits"
        img.write_catalog(outfile=path, format="fits", catalog_type=kind, clobber=True)
        out.append(Table.read(path))
    return out


def format_report(image: str, c: dict) -> str:
    lines = [f"{image}: {c['gaussians']} Gaussians; sources PyBDSF {c['sources_pybdsf']}, "
             f"here {c['sources_ours']}; pairs of Gaussians grouped: PyBDSF {c['pairs_pybdsf']}, "
             f"here {c['pairs_ours']}, both {c['pairs_both']}; S_Code the same for "
             f"{c['codes_same']} of {c['gaussians']} "
             f"({', '.join(f'{a}->{b} {n}' for (a, b), n in sorted(c['codes'].items()) if a != b) or 'all'}"
             f"; {c['codes_same_no_islands']} without its islands)"]
    if "islands" in c:
        i = c["islands"]
        lines.append(f"  pairs of its Gaussians in one island: PyBDSF {i['pybdsf']}, with the "
                     f"islands found here {i['ours']}, both {i['both']}")
    if c["multi"]:
        lines.append("   n  flux here/PyBDSF  centroid offset (arcsec)  major  minor  peak")
        for r in c["multi"]:
            lines.append(f"  {r['n']:2d}  {r['flux']:16.4f}  {r['offset']:24.3f}  "
                         f"{r['major']:5.2f}  {r['minor']:5.2f}  {r['peak']:4.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", action="append", required=True, help="a FITS image")
    ap.add_argument("--out", default=None,
                    help="folder to keep PyBDSF's catalogues in (default: a temporary one, "
                         "removed after)")
    args = ap.parse_args(argv)
    if args.out is not None and not os.path.isdir(args.out):
        ap.error(f"--out: {args.out}: folder does not exist")
    with tempfile.TemporaryDirectory() as tmp:
        for image in args.image:
            gaul, srl = run_pybdsf(image, args.out or tmp)
            c = compare(gaul, srl)
            c["islands"] = island_pairs(gaul, image)
            print(format_report(image, c))
    return 0


if __name__ == "__main__":
    sys.exit(main())
