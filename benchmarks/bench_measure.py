"""Source measurement speed: the Gaussian fits (and their errors) of ``measure_sources``.

    python benchmarks/bench_measure.py [--size 2048] [--sources 3600] [--repeats 2]

Measures every source of a synthetic field from its true box (the step after detection in
``cianna-jax predict``) and prints the best time of ``--repeats`` runs and sources/s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cianna_jax.astro.measure import FWHM, measure_sources  # noqa: E402
from cianna_jax.astro.noise import estimate_noise_map  # noqa: E402
from cianna_jax.datasets.radio_sky import boxes_from_catalogue, make_field  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--sources", type=int, default=3600)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    img, cat = make_field(a.size, n_sources=a.sources, seed=3, noise_rms=1.0, psf_fwhm=3.0,
                          flux_range=(30.0, 3000.0), border=10)
    noise = estimate_noise_map(lambda w: img[w], img.shape, box=64)
    bs = 3.0 / FWHM
    boxes = boxes_from_catalogue(cat)             # the true boxes, as training labels them
    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        m = measure_sources(lambda w: img[w], img.shape, boxes, noise, beam_area=1.0,
                            beam_sigma=bs, noise_beam=(bs, bs, 0.0))
        times.append(time.perf_counter() - t)
    best = min(times)
    print(f"{a.sources} sources on {a.size}x{a.size}: {best:.2f} s (best of {a.repeats}), "
          f"{a.sources / best:.0f} sources/s, {int(m.fit_ok.sum())} fitted")


if __name__ == "__main__":
    main()
