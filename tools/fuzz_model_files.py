#!/usr/bin/env python
"""Fuzz the CIANNA model-file readers with mutated golden files.

Each input is a golden save file (``tests/data/golden/*/..net*.dat``, ASCII and
binary) or a synthetic one, changed by a few deterministic mutations: bit flips,
byte changes, truncations (random and at record boundaries), huge, negative and
odd values in integer, float and string fields, long digit runs and long lines,
duplicated, dropped and swapped chunks and records.  Input ``i`` of seed ``s`` is
always the same (:func:`make_case`).  Each input is read with ``read_network`` and,
when that succeeds, built with ``load_network``; the only accepted outcomes are a
load (with bounded sizes) or a ``CiannaFormatError``.

Inputs run in worker processes (one import of the package each) under a memory
limit (``RLIMIT_AS``); the parent kills and restarts a worker whose input runs past
the time limit.  Usage::

    python tools/fuzz_model_files.py --n 20000 --seed 0 --timeout 10 --memory 2048

The report gives the inputs tried, the outcome counts (loaded, CiannaFormatError,
other exception, timeout, memory, crash), the total time and examples of every
outcome other than a load or a CiannaFormatError (saved under ``--save-dir``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden"
OUTCOMES = ("loaded", "format_error", "other", "timeout", "memory", "crash")
BAD = ("other", "timeout", "memory", "crash")

INTS = (0, 1, -1, 2, 3, 7, 8, 16, 255, 4096, 65535, 65536, 1 << 20, (1 << 20) + 1, 10 ** 6,
        1 << 24, 1 << 30, (1 << 31) - 1, -(1 << 31), -(1 << 30))
FLOATS = (float("nan"), float("inf"), float("-inf"), 7.0, -1.0, 1.0, 0.99, 1e30, -0.0, 0.5,
          1e-45, 3.4e38)
WORDS = (b"", b"YOLO", b"SMAX", b"LIN", b"RELU", b"LOGI", b"RELU_S1e999_L0", b"LOGI_S" + b"9" * 30,
         b"AVG", b"MAX", b"GN", b"X", b"RELUX", b"relu", b"YOLO_S2", b"A" * 39)
TEXT_NUMBERS = ("0", "-1", "1", "2147483647", "2147483648", "-2147483649", str(2 ** 64 + 1),
                "1" * 5000, "9" * 50000, "0" * 3000 + "1", "1e999", "nan", "inf", "-nan", "0x10",
                "1.5", "+3", "007", "", "1e", ".", "-", "1" * 64)
LONG_RUNS = (100, 4097, 20000, 100000, 1 << 20)

# binary field offsets after the record type byte: (offset, "i" | "f" | "s")
_FIELDS = {
    "conv": [(1 + 4 * k, "i") for k in range(17)] + [(69, "f"), (73, "f"), (77, "s")],
    "dense": [(1, "i"), (5, "f"), (9, "f"), (13, "s")],
    "pool": [(1 + 4 * k, "i") for k in range(10)] + [(41, "f"), (45, "s"), (85, "s")],
    "norm": [(1, "s"), (41, "i"), (45, "i"), (49, "s")],
    "lrn": [(1, "i"), (5, "f"), (9, "f"), (13, "f"), (17, "s")],
}
_YOLO_FIELDS = [(117 + 4 * k, "i") for k in range(5)]
_NUMBER = re.compile(rb"[-+]?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|nan|inf")


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A valid file: its bytes, format, record start offsets and kinds, hyper-line spans."""

    name: str
    data: bytes
    binary: bool
    starts: tuple  # offset of each record (type byte/char); then the file size
    kinds: tuple  # record kind of each record ("conv", ...), "yolo" for a YOLO conv
    lines: tuple  # ASCII: (start, end) of the header, record and YOLO settings lines


def _synthetic_records():
    """A small network with every record type (LRN is in no golden file)."""
    from cianna_jax.io import ConvRecord, DenseRecord, LRNRecord, NormRecord, PoolRecord

    rng = np.random.default_rng(7)

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    in_dims = (9, 7, 1, 2)
    recs = [ConvRecord(4, (3, 3, 1), (1, 1, 1), (1, 1, 0), (0, 0, 0), in_dims, 0.0, 0.25,
                       "RELU_S6.00_L0.10", None, w(4, 19)),
            NormRecord("GN", 2, 1, "RELU_S800.00_L0.05", w(2), w(2)),
            PoolRecord((3, 2, 1), (2, 2, 1), (1, 0, 0), 0, 0.0, "AVG", "LIN"),
            ConvRecord(4, (2, 2, 1), (2, 1, 1), (0, 0, 0), (1, 0, 0), (5, 3, 1, 4), 0.0, 0.3,
                       "LIN", None, w(4, 17)),
            LRNRecord(3, 2.0, 0.5, 0.75, "LIN"),
            DenseRecord(6, 0.0, 0.4, "LIN", w(4 * 2 * 4 + 1, 7)),
            ConvRecord(3, (2, 2, 1), (1, 1, 1), (0, 0, 0), (0, 0, 0), (3, 2, 1, 1), 0.0, 0.1,
                       "LOGI_S4.00_B2.00", None, w(3, 5)),
            DenseRecord(5, 0.2, 0.1, "LOGI_S6.00_B1.00", w(7, 6)),
            DenseRecord(3, 0.0, 0.1, "SMAX", w(6, 4))]
    return in_dims, recs


def _source(name: str, in_dims, records, binary: bool, data: bytes | None = None) -> Source:
    from cianna_jax.io.ascii_format import ascii_chunks
    from cianna_jax.io.binary_format import binary_chunks
    from cianna_jax.io.records import record_kind

    chunks = binary_chunks if binary else ascii_chunks

    def size(recs):
        return sum(len(c) for c in chunks(in_dims, recs))

    full = b"".join(c if binary else c.encode("ascii") for c in chunks(in_dims, records))
    if data is not None:  # CIANNA's binary string fields hold garbage after the NUL
        if len(data) != len(full) or (not binary and data != full):
            raise ValueError(f"{name}: not in the writer's exact layout")
        full = data
    starts = tuple(size(records[:k]) for k in range(len(records) + 1))
    kinds = tuple("yolo" if getattr(r, "yolo", None) is not None else record_kind(r)
                  for r in records)
    lines = []
    if not binary:
        lines.append((0, full.index(b"\n")))
        for k, s in enumerate(starts[:-1]):
            e = full.index(b"\n", s)
            lines.append((s, e))
            if kinds[k] == "yolo":
                lines.append((e + 1, full.index(b"\n", e + 1)))
    return Source(name, full, binary, starts, kinds, tuple(lines))


def load_sources(golden: Path = GOLDEN) -> list[Source]:
    """The golden ``net*.dat`` save files plus a synthetic network, both formats."""
    from cianna_jax.io import read_network

    out = []
    for path in sorted(golden.glob("*/*net*.dat")):
        binary = "bin" in path.name
        cf = read_network(path, binary)
        out.append(_source(f"{path.parent.name}/{path.name}", cf.in_dims, list(cf.records),
                           binary, path.read_bytes()))
    in_dims, recs = _synthetic_records()
    out += [_source("synthetic/net_bin.dat", in_dims, recs, True),
            _source("synthetic/net_ascii.dat", in_dims, recs, False)]
    return out


# --------------------------------------------------------------------------------------------
# Mutations
# --------------------------------------------------------------------------------------------


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _field_edit(rng, src: Source, data: bytearray) -> str:
    """Overwrite one binary int, float or string field with an odd value."""
    k = int(rng.integers(len(src.kinds)))
    kind = src.kinds[k]
    fields = _FIELDS["conv" if kind == "yolo" else kind] + (_YOLO_FIELDS if kind == "yolo" else [])
    off, typ = _pick(rng, fields)
    pos = src.starts[k] + off
    if pos + (40 if typ == "s" else 4) > len(data):  # cut by an earlier mutation
        return "skip"
    if typ == "i":
        old = int(np.frombuffer(bytes(data[pos:pos + 4]), "<i4")[0])
        value = _pick(rng, INTS) if rng.random() < 0.8 else old + int(rng.integers(-3, 4))
        value = (value + (1 << 31)) % (1 << 32) - (1 << 31)  # wrap into int32
        data[pos:pos + 4] = np.int32(value).tobytes()
        return f"int@{pos}={value}"
    if typ == "f":
        value = _pick(rng, FLOATS)
        data[pos:pos + 4] = np.float32(value).tobytes()
        return f"float@{pos}={value}"
    word = _pick(rng, WORDS) if rng.random() < 0.8 else b"\x01\xff" * 20
    data[pos:pos + 40] = (word + b"\x00" * 40)[:40]
    return f"str@{pos}={word[:12]!r}"


def _text_edit(rng, src: Source, data: bytearray) -> tuple[bytearray, str]:
    """Replace a number or the word at the end of an ASCII hyper-parameter line, or a
    learned value."""
    if rng.random() < 0.25:
        m = _NUMBER.search(bytes(data), int(rng.integers(len(data))))
        if m is not None:
            new = _pick(rng, TEXT_NUMBERS).encode()
            return (data[:m.start()] + new + data[m.end():],
                    f"value@{m.start()}={new[:12]!r}")
    s, e = _pick(rng, src.lines)
    line = bytes(data[s:e])
    nums = list(_NUMBER.finditer(line))
    if nums and rng.random() < 0.8:
        m = _pick(rng, nums)
        new = _pick(rng, TEXT_NUMBERS).encode()
        return data[:s + m.start()] + new + data[s + m.end():], f"num@{s + m.start()}={new[:12]!r}"
    word = _pick(rng, WORDS)
    cut = line.rstrip(b" ")
    i = max(cut.rfind(b"b"), cut.rfind(b" "), cut.rfind(b"d"), 0) + 1
    return data[:s + i] + word + data[s + len(cut):], f"word@{s + i}={word[:12]!r}"


def mutate(rng, src: Source) -> tuple[bytes, str]:
    """One to three random mutations of ``src``; returns (bytes, description)."""
    data = bytearray(src.data)
    done = []
    for _ in range(int(rng.integers(1, 4))):
        n = len(data)
        op = int(rng.integers(13))
        if n == 0:
            break
        if op == 0:  # bit flips
            for _ in range(int(rng.integers(1, 9))):
                i = int(rng.integers(n))
                data[i] ^= 1 << int(rng.integers(8))
            done.append("bitflip")
        elif op == 1:  # byte changes
            for _ in range(int(rng.integers(1, 5))):
                data[int(rng.integers(n))] = int(rng.integers(256))
            done.append("bytes")
        elif op == 2:  # truncation anywhere
            cut = int(rng.integers(n))
            del data[cut:]
            done.append(f"cut@{cut}")
        elif op == 3:  # truncation at (or near) a record boundary
            cut = _pick(rng, src.starts) + _pick(rng, (0, 0, 0, 1, -1, 2, 40))
            del data[max(0, cut):]
            done.append(f"cut@boundary{cut}")
        elif op == 4 and src.binary:
            done.append(_field_edit(rng, src, data))
        elif op == 4:
            data, d = _text_edit(rng, src, data)
            done.append(d)
        elif op == 5:  # duplicate a chunk
            i, j = sorted(int(v) for v in rng.integers(n, size=2))
            k = int(rng.integers(n + 1))
            data[k:k] = data[i:j + 1]
            done.append(f"dup[{i}:{j + 1}]@{k}")
        elif op == 6:  # delete a chunk
            i = int(rng.integers(n))
            j = i + int(rng.integers(1, 64))
            del data[i:j]
            done.append(f"del[{i}:{j}]")
        elif op in (7, 8):  # duplicate, drop or swap whole records
            k = int(rng.integers(len(src.kinds)))
            rec = bytes(src.data[src.starts[k]:src.starts[k + 1]])
            s = src.starts[k]
            if op == 7 and rng.random() < 0.15:  # many copies: deep files
                times = _pick(rng, (10, 100, 255, 300))
                data[s:s] = rec * times
                done.append(f"duprec{k}x{times}")
            elif op == 7 and rng.random() < 0.5:
                data[s:s] = rec
                done.append(f"duprec{k}")
            elif op == 7:
                del data[s:s + len(rec)]
                done.append(f"droprec{k}")
            else:
                data = bytearray(src.data[:src.starts[0]]) + bytearray(
                    b"".join(src.data[src.starts[i]:src.starts[i + 1]]
                             for i in rng.permutation(len(src.kinds))))
                done.append("shuffle")
        elif op == 9 and not src.binary:  # long digit run or long line
            k = _pick(rng, LONG_RUNS)
            i = int(rng.integers(n + 1))
            fill = _pick(rng, (b"7", b" ", b"0", b"x"))
            data[i:i] = fill * k
            done.append(f"run{k}x{fill!r}@{i}")
        elif op == 9:  # huge count right after a record type byte
            k = int(rng.integers(len(src.kinds)))
            p = src.starts[k] + 1
            data[p:p + 4] = np.int32(_pick(rng, INTS)).tobytes()
            done.append(f"count@{p}")
        elif op == 10 and not src.binary:  # text layout changes
            choice = int(rng.integers(4))
            if choice == 0:
                data = data.replace(b"\n", b"\r\n")
            elif choice == 1:
                data = bytearray(bytes(data).rstrip(b"\n "))
            elif choice == 2:
                i = int(rng.integers(n))
                data[i:i] = _pick(rng, (b"C", b"D", b"P", b"N", b"L", b"\n", b"\n\n", b"-"))
            else:
                i = bytes(data).find(b"\n", int(rng.integers(n)))
                if i >= 0:
                    del data[i]
            done.append(f"layout{choice}")
        elif op == 10:  # append a record type byte or garbage
            data += _pick(rng, (b"C", b"D", b"P", b"N", b"L", b" \n", b"\x00" * 7))
            done.append("tail")
        elif op == 11:  # insert random bytes
            i = int(rng.integers(n + 1))
            data[i:i] = bytes(rng.integers(256, size=int(rng.integers(1, 16)), dtype=np.uint8))
            done.append(f"insert@{i}")
        else:  # another field/value edit: the most productive mutation
            if src.binary:
                done.append(_field_edit(rng, src, data))
            else:
                data, d = _text_edit(rng, src, data)
                done.append(d)
    return bytes(data), "+".join(done)


@dataclass(frozen=True)
class Case:
    index: int
    source: str
    binary: bool
    data: bytes
    desc: str
    options: dict  # read_network/load_network keywords (nb_layers, nb_skip_layers, ...)


def make_case(seed: int, index: int, sources: list[Source]) -> Case:
    """Input ``index`` of run ``seed`` (deterministic)."""
    rng = np.random.default_rng([seed, index])
    src = sources[int(rng.integers(len(sources)))]
    data, desc = mutate(rng, src)
    options = {}
    r = rng.random()
    if r < 0.1:
        options = {"nb_skip_layers": int(rng.integers(0, 3)), "nb_layers": int(rng.integers(0, 3))}
    elif r < 0.15:
        options = {"nb_layers": int(rng.integers(1, 6))}
    elif r < 0.2:  # another input resolution (load_network's in_dims)
        w, h = (int(v) for v in _pick(rng, ((4, 4), (64, 48), (1, 1), (1 << 20, 1),
                                            (4096, 4096), (1 << 20, 1 << 20))))
        options = {"in_dims": (w, h, 1, int(rng.integers(1, 4)))}
    return Case(index, src.name, src.binary, data, desc, options)


# --------------------------------------------------------------------------------------------
# Running one input
# --------------------------------------------------------------------------------------------


def run_case(case: Case, path: Path, layers: bool = True) -> tuple[str, str]:
    """(outcome, detail) of one input; ``outcome`` is "loaded", "format_error", "other"
    or "memory".  Successful loads are checked for bounded sizes."""
    from cianna_jax.io import CiannaFormatError, read_network
    from cianna_jax.io.records import MAX_VALUES

    path.write_bytes(case.data)
    limit = len(case.data) // (4 if case.binary else 2)
    read_options = dict(case.options)
    if "in_dims" in read_options:
        read_options["input_shape"] = read_options.pop("in_dims")
    try:
        cf = read_network(path, case.binary, **read_options)
        values = sum(int(np.size(getattr(r, k))) for r in cf.records
                     for k in ("weights", "gamma", "beta") if getattr(r, k, None) is not None)
        if values > limit or any(int(np.prod(s)) > MAX_VALUES for s in cf.in_shapes):
            return "other", f"insane read: {values} values from {len(case.data)} bytes"
        if layers and cf.records:
            from cianna_jax.io.network_file import load_network

            loaded = load_network(path, binary=case.binary, **case.options)
            sizes = [s.size for _, s in loaded.net.shapes]
            values = sum(int(np.size(a)) for p in loaded.params for a in p.values())
            if values > limit or max(sizes) > MAX_VALUES:
                return "other", f"insane load: {values} values, outputs {sizes}"
        return "loaded", ""
    except CiannaFormatError as e:
        if type(e) is not CiannaFormatError or str(path) not in str(e):
            return "other", f"CiannaFormatError without the file name: {e}"
        return "format_error", str(e)[len(str(path)):][:200]
    except MemoryError:
        return "memory", traceback.format_exc(limit=-3)
    except Exception as e:  # noqa: BLE001 - the point is to catch everything else
        return "other", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-4)}"


def _worker(conn, seed: int, layers: bool, memory_mb: int) -> None:
    if memory_mb > 0:
        import resource

        lim = memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    sources = load_sources()
    if layers:
        import cianna_jax.io.network_file  # noqa: F401  (JAX once, before the first input)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.dat"
        conn.send("ready")
        while True:
            index = conn.recv()
            if index is None:
                return
            t0 = time.perf_counter()
            outcome, detail = run_case(make_case(seed, index, sources), path, layers)
            conn.send((index, outcome, detail, time.perf_counter() - t0))


# --------------------------------------------------------------------------------------------
# Parent: workers, time limits, report
# --------------------------------------------------------------------------------------------


class _Slot:
    def __init__(self, ctx, seed, layers, memory_mb):
        self.args = (ctx, seed, layers, memory_mb)
        self.start()

    def start(self):
        ctx, seed, layers, memory_mb = self.args
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, seed, layers, memory_mb),
                                daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(300) or self.conn.recv() != "ready":
            raise RuntimeError("fuzz worker did not start")
        self.index, self.t0 = None, 0.0

    def kill_and_restart(self):
        self.proc.kill()
        self.proc.join()
        self.conn.close()
        self.start()


def fuzz(n: int, seed: int = 0, timeout: float = 10.0, memory_mb: int = 2048, workers: int = 1,
         layers: bool = True, first: int = 0, progress: bool = True):
    """Run inputs ``first .. first + n - 1``; returns (counts, examples, seconds) where
    ``examples`` maps each outcome to [(input, detail)] and "slowest" to [seconds, input]."""
    ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
    t_start = time.perf_counter()
    slots = [_Slot(ctx, seed, layers, memory_mb) for _ in range(max(1, workers))]
    counts = dict.fromkeys(OUTCOMES, 0)
    examples: dict[str, list] = {k: [] for k in OUTCOMES}
    todo = iter(range(first, first + n))
    done = 0

    slowest = [0.0, None]

    def record(index, outcome, detail, seconds=0.0):
        nonlocal done
        if seconds > slowest[0]:
            slowest[:] = [seconds, index]
        counts[outcome] += 1
        done += 1
        if len(examples[outcome]) < (20 if outcome in BAD else 3):
            examples[outcome].append((index, detail))
        if progress and done % 1000 == 0:
            print(f"  {done}/{n} inputs, {time.perf_counter() - t_start:.0f} s: "
                  + ", ".join(f"{k} {v}" for k, v in counts.items() if v), flush=True)

    try:
        while True:
            for s in slots:
                if s.index is None:
                    s.index = next(todo, None)
                    if s.index is not None:
                        s.t0 = time.perf_counter()
                        s.conn.send(s.index)
            busy = [s for s in slots if s.index is not None]
            if not busy:
                break
            now = time.perf_counter()
            wait_s = max(0.0, min(s.t0 + timeout - now for s in busy))
            ready = wait([s.conn for s in busy], timeout=wait_s)
            for s in busy:
                if s.conn in ready:
                    try:
                        index, outcome, detail, seconds = s.conn.recv()
                    except (EOFError, OSError):
                        s.proc.join()
                        record(s.index, "crash", f"worker died, exit code {s.proc.exitcode}")
                        s.index = None
                        s.kill_and_restart()
                        continue
                    record(index, outcome, detail, seconds)
                    s.index = None
                elif time.perf_counter() - s.t0 > timeout:
                    record(s.index, "timeout", f"no result after {timeout} s")
                    s.index = None
                    s.kill_and_restart()
    finally:
        for s in slots:
            try:
                s.conn.send(None)
            except OSError:
                pass
            s.proc.join(5)
            if s.proc.is_alive():
                s.proc.kill()
    examples["slowest"] = slowest
    return counts, examples, time.perf_counter() - t_start


def report(counts, examples, seconds, args, sources) -> str:
    n = sum(counts.values())
    lines = [f"CIANNA model-file fuzz: {n} inputs (seed {args.seed}, first {args.first}), "
             f"{len(sources)} source files, timeout {args.timeout} s, memory "
             f"{args.memory} MiB, {args.workers} worker(s), load_network "
             f"{'on' if not args.no_layers else 'off'}",
             f"total time {seconds:.1f} s ({1000 * seconds / max(n, 1):.1f} ms per input; "
             f"slowest input {1000 * examples['slowest'][0]:.0f} ms: #{examples['slowest'][1]})",
             "outcomes:"]
    lines += [f"  {k:<13} {counts[k]}" for k in OUTCOMES]
    bad = sum(counts[k] for k in BAD)
    lines.append(f"result: {'PASS' if bad == 0 else 'FAIL'} ({bad} input(s) neither loaded nor "
                 f"refused with CiannaFormatError)")
    for k in OUTCOMES:
        if examples[k] and (k in BAD or args.verbose):
            lines.append(f"examples of {k}:")
            for index, detail in examples[k]:
                case = make_case(args.seed, index, sources)
                lines.append(f"  input {index} ({case.source}, {case.desc}, {case.options}): "
                             f"{detail.strip()[:600]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="number of inputs (default 20000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--first", type=int, default=0, help="index of the first input")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per input")
    ap.add_argument("--memory", type=int, default=2048, help="MiB of address space per worker")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--no-layers", action="store_true", help="read_network only (no JAX)")
    ap.add_argument("--save-dir", type=Path, help="write the bad inputs there")
    ap.add_argument("--verbose", action="store_true", help="also show loaded/refused examples")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    sources = load_sources()
    counts, examples, seconds = fuzz(args.n, args.seed, args.timeout, args.memory, args.workers,
                                     not args.no_layers, args.first)
    print(report(counts, examples, seconds, args, sources))
    if args.save_dir:
        args.save_dir.mkdir(parents=True, exist_ok=True)
        for k in BAD:
            for index, _ in examples[k]:
                case = make_case(args.seed, index, sources)
                (args.save_dir / f"{k}_{index}{'.bin' if case.binary else '.txt'}").write_bytes(
                    case.data)
    return 0 if not any(counts[k] for k in BAD) else 1


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.exit(main())
