"""Survey-scale prediction: tiles/s on CPU and peak memory on a big memory-mapped FITS image.

    # tiled-inference throughput (network + tiling + decoding, random weights, no detection)
    nice python benchmarks/predict_scale.py throughput --arch demo --tile 64 --batch 64
    nice python benchmarks/predict_scale.py throughput --arch sdc1 --tile 512 --batch 4
    # the whole predict pipeline on an N x N float32 FITS image, with peak memory
    nice python benchmarks/predict_scale.py memory --size 16384 --model MODEL.json --workdir /tmp

``--arch sdc1`` is CIANNA's SKAO SDC1 detector (examples/SKAO_SDC1/train_network.py: 17
convolutions with stride-2 downsampling to 16-pixel cells, a group norm, 9 boxes, 5
parameters), ``demo`` the network of ``cianna-jax demo``.  The memory run builds the image
by tiling a 2048x2048 synthetic field (periodic noise, so the tiling is seamless) and
writes it with a streaming FITS writer; it samples the process's /proc status every 0.2 s
and reports the peak resident memory, split into anonymous memory (what the program
allocates) and file-backed pages (the memory-mapped image, reclaimable by the kernel).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cianna_jax import xla_cpu  # noqa: E402


def network(arch: str, tile: int):
    """(Network, cell size) of ``arch`` at a tile x tile input."""
    from cianna_jax import nn
    from cianna_jax.network import make_network
    from cianna_jax.yolo.config import make_config

    if arch == "demo":
        cell, nb_box, nb_param = 8, 2, 0
        priors = np.array([[8.0, 20.0], [8.0, 20.0]], np.float32)
    else:
        cell, nb_box, nb_param = 16, 9, 5
        priors = np.array([[6, 6, 6, 6, 6, 6, 12, 9, 24], [6, 6, 6, 6, 6, 6, 9, 12, 24]], np.float32)
    cfg = make_config((tile, tile, 1), (tile // cell, tile // cell, 1), nb_box=nb_box, nb_class=0,
                      nb_param=nb_param, max_nb_obj_per_image=8, prior_size=priors,
                      IoU_type="DIoU", rand_startup=0)
    if arch == "demo":
        layers = [nn.conv([3, 3], 8, padding=[1, 1]), nn.pool([2, 2]),
                  nn.conv([3, 3], 16, padding=[1, 1]), nn.pool([2, 2]),
                  nn.conv([3, 3], 32, padding=[1, 1]), nn.pool([2, 2]),
                  nn.conv([3, 3], 32, padding=[1, 1])]
    else:
        spec = [(5, 32, 1, 2), (2, 16, 2, 0), (3, 24, 1, 1), (3, 32, 1, 1), (2, 64, 2, 0),
                (1, 128, 1, 0), (3, 192, 1, 1), (2, 128, 2, 0), (1, 192, 1, 0), (3, 384, 1, 1),
                (1, 256, 1, 0), (3, 384, 1, 1), (2, 512, 2, 0), (1, 768, 1, 0), (3, 1024, 1, 1)]
        layers = [nn.conv([f, f], n, stride=[s, s], padding=[p, p], activation="RELU")
                  for f, n, s, p in spec]
        layers += [nn.norm(group_size=4),
                   nn.conv([1, 1], 2048, activation="RELU", drop_rate=0.25)]
    layers.append(nn.conv([1, 1], cfg.nb_filters, activation="YOLO"))
    return make_network((tile, tile, 1, 1), layers, 0.1, cfg), cell


def throughput(args) -> None:
    import jax

    from cianna_jax.astro.model_card import LoadedModel, ModelCard
    from cianna_jax.astro.noise import estimate_noise_map
    from cianna_jax.astro.predict import detect
    from cianna_jax.network import init_params

    net, cell = network(args.arch, args.tile)
    params = init_params(jax.random.key(0), net)
    overlap = args.overlap if args.overlap is not None else 2 * cell
    card = ModelCard(network="-", tile=(args.tile, args.tile), overlap=(overlap, overlap),
                     batch_size=args.batch)
    model = LoadedModel(card, net, params)
    side = args.image_size
    img = np.random.default_rng(0).normal(0, 1e-5, (side, side)).astype(np.float32)
    noise = estimate_noise_map(lambda w: img[w], img.shape, box=128)
    read = lambda w: img[w]  # noqa: E731
    t0 = time.perf_counter()  # a strip of one full batch of tiles: compiles that batch
    strip = (args.tile, min(side, args.tile + (args.batch - 1) * (args.tile - overlap)))
    detect(read, strip, model, noise=noise, obj_threshold=1.0, progress=False)
    compile_s = time.perf_counter() - t0
    det = detect(read, img.shape, model, noise=noise, obj_threshold=1.0, progress=False)
    n_par = sum(int(np.prod(a.shape)) for p in params for a in p.values())
    print(f"{args.arch} network ({n_par / 1e6:.2f} M parameters), tile {args.tile}, overlap "
          f"{overlap}, batch {args.batch}, {jax.default_backend()} ({os.cpu_count()} cores): "
          f"{det.n_tiles} tiles in {det.seconds:.1f} s = {det.tiles_per_second:.1f} tiles/s "
          f"({det.tiles_per_second * args.tile**2 / 1e6:.2f} Mpix/s incl. overlap); first call "
          f"(compilation) {compile_s:.1f} s")
    sdc1_tiles = len(range(0, 32768 - args.tile, args.tile - overlap)) + 1
    print(f"  a 32768^2 SDC1 image needs {sdc1_tiles**2} such tiles: "
          f"~{sdc1_tiles**2 / det.tiles_per_second / 60:.0f} min at this rate")


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    return out


class Sampler(threading.Thread):
    """Peak of each /proc/self/status memory field, sampled every ``dt`` seconds."""

    def __init__(self, dt: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.dt, self.peak, self.stop = dt, {}, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for k, v in _status().items():
                self.peak[k] = max(self.peak.get(k, 0), v)
            time.sleep(self.dt)


def write_big_fits(path: str, size: int, seed: int = 5) -> None:
    """An N x N float32 Jy/beam image (SDC1 header) made of copies of a 2048^2 synthetic field,
    written row block by row block (never whole in memory)."""
    from astropy.io import fits

    from cianna_jax.astro.synthetic import field_header, synthetic_field

    block = min(2048, size)
    f = synthetic_field(block, seed=seed, noise=1e-5, density=0.003)
    header = field_header((size, size), pixel_scale=f.pixel_scale, beam=f.beam)
    header.insert(0, ("SIMPLE", True))
    header.insert(1, ("BITPIX", -32))
    header.insert(2, ("NAXIS", 2))
    header.insert(3, ("NAXIS1", size))
    header.insert(4, ("NAXIS2", size))
    s = fits.StreamingHDU(path, header)
    row = np.tile(f.image, (1, size // block))
    for _ in range(size // block):
        s.write(row)
    s.close()


def memory(args) -> None:
    from cianna_jax.astro.pipeline import predict_file

    path = os.path.join(args.workdir, f"big_{args.size}.fits")
    if not os.path.exists(path):
        t0 = time.perf_counter()
        write_big_fits(path, args.size)
        print(f"wrote {path} ({os.path.getsize(path) / 2**30:.2f} GiB) in "
              f"{time.perf_counter() - t0:.0f} s")
    import jax

    jax.numpy.zeros(1).block_until_ready()  # backend started: part of the baseline
    base = _status()
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    res = predict_file(path, args.model, os.path.join(args.workdir, f"big_{args.size}.ecsv"),
                       progress=True)
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    peak = sampler.peak
    gib = 2**30
    t = res.timings
    print(f"{args.size}x{args.size} float32 ({args.size**2 * 4 / gib:.1f} GiB), model "
          f"{args.model}: {len(res.table)} sources in {wall:.0f} s (noise map {t['noise_s']:.0f} s, "
          f"detection {t['detect_s']:.0f} s at {t['tiles_per_s']:.0f} tiles/s, measurement "
          f"{t['measure_s']:.0f} s)")
    print(f"baseline (after imports) RSS {base['VmRSS'] / gib:.2f} GiB, anonymous "
          f"{base['RssAnon'] / gib:.2f} GiB")
    print(f"peak anonymous memory {peak['RssAnon'] / gib:.2f} GiB (+{(peak['RssAnon'] - base['RssAnon']) / gib:.2f} "
          f"GiB during the run); peak file-backed (memory-mapped image) {peak['RssFile'] / gib:.2f} GiB; "
          f"peak RSS {peak['VmHWM'] / gib:.2f} GiB")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    th = sub.add_parser("throughput")
    th.add_argument("--arch", choices=("demo", "sdc1"), default="demo")
    th.add_argument("--tile", type=int, default=64)
    th.add_argument("--overlap", type=int, default=None, help="default: two cells")
    th.add_argument("--batch", type=int, default=64)
    th.add_argument("--image-size", type=int, default=2048)
    me = sub.add_parser("memory")
    me.add_argument("--size", type=int, default=16384)
    me.add_argument("--model", required=True)
    me.add_argument("--workdir", default="/tmp")
    args = ap.parse_args(argv)
    xla_cpu.tune()
    warnings.simplefilter("ignore")
    (throughput if args.what == "throughput" else memory)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
