"""How far apart the machine's first two CPUs are: the round trip of a byte between them.

    python benchmarks/core_latency.py [--seconds 60]

On this project's 2-core cloud machine (KVM, AMD EPYC) the host places the two virtual
CPUs sometimes on nearby cores and sometimes far apart, and moves them every few seconds
to minutes.  A C ping-pong of one cache line measured 85-125 ns a round trip in the first
state and 400-520 ns in the second.  XLA splits every operation of a step over both
threads, so a step's activations cross between the cores: MNIST's training step (batch
64, 8 steps per call) ran 23% slower far apart (12,480 -> 9,621 img/s), PyTorch's MNIST
epoch 10-30% (benchmarks/README.md, thirty-second session).  A machine's speed ratios then
depend on the state its rounds ran in, so :func:`alternated.alternate` can record it for
every round.

The probe here needs no compiler: two Python processes, pinned to two CPUs, bounce a byte
through shared memory.  Python's loop adds a few hundred nanoseconds, so on that machine
it reads 250-460 ns near (median 295) and 450-810 ns far (median 531), fastest of three
probes of 20,000 round trips.  :data:`FAR_NS` splits the two.  It was checked against
the C ping-pong run before and after each probe: of 571 probes where the state did not
change (502 near, 69 far), one of each fell on the wrong side.  The line between the
states is the processor's (:func:`far_ns`): the Zen 5 EPYC of later sessions (AVX-512,
cpu family 26) reads 175-212 ns near and 372-424 far, and there too our SDC1 inference
runs about 20% slower far apart while PyTorch's does not move (benchmarks/README.md,
fifty-ninth session).  Linux only (CPU pinning); elsewhere, or with fewer than two CPUs
allowed, :func:`round_trip_ns` returns None.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

__all__ = ["FAR_NS", "FAR_NS_BY_CPU", "TIMEOUT_S", "can_probe", "far_ns", "round_trip_ns",
           "state", "main"]

#: a round trip (fastest of the probes, ns) above this is the far state, on processors
#: :data:`FAR_NS_BY_CPU` does not list
FAR_NS = 450.0
#: the same line per processor, ``(vendor_id, cpu family)`` as /proc/cpuinfo gives them:
#: the Zen 3 EPYC (25) read 250-460 ns near and 450-810 far (thirty-second session), the
#: Zen 5 EPYC (26) 175-212 near and 372-424 far (fifty-ninth session)
FAR_NS_BY_CPU = {("AuthenticAMD", 25): 450.0, ("AuthenticAMD", 26): 290.0}

#: seconds a probe may take before its processes are killed (it takes about 0.05 s)
TIMEOUT_S = 30.0

# the answering side: pinned to its CPU, it answers each odd byte with the next even one
_PONG = """
import mmap, os, sys
cpu, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
os.sched_setaffinity(0, {cpu})
with open(path, "r+b") as f:
    buf = mmap.mmap(f.fileno(), 4096)
mv = memoryview(buf)
def answer():  # a function: its names are fast locals
    for i in range(n):
        w = (2 * i + 1) & 127
        while mv[0] != w:
            pass
        mv[0] = (w + 1) & 127
mv[0] = 255
answer()
"""

# the timing side: pinned to the other CPU, it starts the answering side, bounces the
# byte ``repeats`` times ``n`` times and prints the fastest mean round trip (ns)
_PING = """
import mmap, os, subprocess, sys, time
cpu, other, n, repeats, path = (*map(int, sys.argv[1:5]), sys.argv[5])
os.sched_setaffinity(0, {cpu})
with open(path, "r+b") as f:
    buf = mmap.mmap(f.fileno(), 4096)
mv = memoryview(buf)
pong = subprocess.Popen([sys.executable, "-c", sys.argv[6], str(other), str(n * repeats),
                         path])
while mv[0] != 255:
    if pong.poll() is not None:
        sys.exit("the answering process ended before it started")
    time.sleep(0.001)
def bounce(first):  # a function: its names are fast locals
    t0 = time.perf_counter_ns()
    for i in range(first, first + n):
        mv[0] = (2 * i + 1) & 127
        w = (2 * i + 2) & 127
        while mv[0] != w:
            pass
    return (time.perf_counter_ns() - t0) / n
best = min(bounce(r * n) for r in range(repeats))
pong.wait()
print(best)
"""


def _cpu_pair() -> tuple[int, int] | None:
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else None


def can_probe() -> bool:
    """Whether this machine allows the probe: Linux CPU pinning and two CPUs allowed."""
    return _cpu_pair() is not None


def round_trip_ns(n: int = 20_000, repeats: int = 3) -> float | None:
    """Fastest of ``repeats`` probes of ``n`` round trips between the first two allowed
    CPUs, ns per round trip (about 0.05 s in all); None where the probe cannot run (not
    Linux, or fewer than two CPUs allowed) or did not end within :data:`TIMEOUT_S`.

    Both sides run in processes of their own (one session, killed together on a timeout),
    so the caller's threads keep their CPUs and nothing is left spinning."""
    if n < 1 or repeats < 1:
        raise ValueError(f"round_trip_ns: n and repeats must be >= 1, received {n}, {repeats}")
    cpus = _cpu_pair()
    if cpus is None:
        return None
    fd, path = tempfile.mkstemp(prefix="core_latency_", dir="/dev/shm"
                                if os.path.isdir("/dev/shm") else None)
    try:
        os.write(fd, bytes(4096))
        os.close(fd)
        ping = subprocess.Popen([sys.executable, "-c", _PING, str(cpus[0]), str(cpus[1]),
                                 str(n), str(repeats), path, _PONG],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            out, err = ping.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            out = None
        finally:
            try:  # the answering side too, should the timing side have stopped early
                os.killpg(ping.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            if out is None:
                ping.communicate()
        if out is None:
            return None
        if ping.returncode != 0:
            raise RuntimeError(f"core_latency: the probe failed: {err.strip()[-500:]}")
        return float(out)
    finally:
        os.unlink(path)


def far_ns(cpuinfo: str | None = None) -> float:
    """The round trip (ns) above which this machine's two CPUs are far apart: the line of
    :data:`FAR_NS_BY_CPU` for the processor ``cpuinfo`` (the text of /proc/cpuinfo, read
    when None) describes, :data:`FAR_NS` for others or where it cannot be read."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return FAR_NS
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
        if not line.strip():  # the first processor's block is enough
            break
    try:
        key = (fields.get("vendor_id", ""), int(fields.get("cpu family", "")))
    except ValueError:
        return FAR_NS
    return FAR_NS_BY_CPU.get(key, FAR_NS)


def state(ns: float | None, far: float | None = None) -> str:
    """"near", "far" or "" (not measured) for a :func:`round_trip_ns` value, far above
    ``far`` ns (default: :func:`far_ns`)."""
    if ns is None:
        return ""
    return "far" if ns > (far_ns() if far is None else far) else "near"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="how long to watch (one probe every half second)")
    a = parser.parse_args(argv)
    end = time.monotonic() + a.seconds
    counts = {"near": 0, "far": 0}
    far = far_ns()
    while True:
        ns = round_trip_ns()
        if ns is None:
            print(f"no probe: it needs Linux CPU pinning and two CPUs, and ends within "
                  f"{TIMEOUT_S:g} s")
            return
        where = state(ns, far)
        counts[where] += 1
        print(f"{time.strftime('%H:%M:%S')}  round trip {ns:6.0f} ns  {where}", flush=True)
        if time.monotonic() >= end:
            break
        time.sleep(0.5)
    print(f"near {counts['near']}, far {counts['far']} (far: above {far:.0f} ns, this "
          f"processor's line)")


if __name__ == "__main__":
    main()
