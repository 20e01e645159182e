"""The benchmarks' probe of the cores' state (``benchmarks/core_latency.py``) and the
per-state ratios of alternated rounds (``benchmarks/alternated.py``)."""

import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import alternated
    import core_latency
finally:
    sys.path.remove(str(ROOT / "benchmarks"))

_PAIR = core_latency.can_probe()


@pytest.mark.skipif(not _PAIR, reason="needs Linux CPU pinning and two CPUs")
def test_round_trip_is_measured_and_leaves_the_affinity_alone():
    folder = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()

    def files():
        return {f for f in os.listdir(folder) if f.startswith("core_latency_")}

    before, mask = files(), os.sched_getaffinity(0)
    ns = core_latency.round_trip_ns(n=2000, repeats=2)
    assert isinstance(ns, float) and 10 < ns < 1e6  # a round trip, in nanoseconds
    assert core_latency.state(ns) in ("near", "far")
    assert os.sched_getaffinity(0) == mask
    assert files() == before  # its shared-memory file is removed


@pytest.mark.skipif(not _PAIR, reason="needs Linux CPU pinning and two CPUs")
def test_a_probe_past_its_time_is_killed(monkeypatch):
    """A probe that does not end in time gives None; its processes are killed (they spin
    otherwise), so the next probe measures alone."""
    monkeypatch.setattr(core_latency, "TIMEOUT_S", 0.3)
    t0 = time.monotonic()
    assert core_latency.round_trip_ns(n=10**9, repeats=1) is None
    assert time.monotonic() - t0 < 10

    def left():  # processes still holding a probe's file name in their command line
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"core_latency_" in f.read():
                        found.append(pid)
            except OSError:
                pass
        return found

    deadline = time.monotonic() + 2.0  # SIGKILL is delivered at once, reaping may lag
    while left() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left()
    # the next probe measures, given its usual time (0.3 s to start two processes failed
    # once with the other test worker compiling)
    monkeypatch.setattr(core_latency, "TIMEOUT_S", 30.0)
    assert isinstance(core_latency.round_trip_ns(n=1000, repeats=1), float)


def test_no_probe_without_two_cpus(monkeypatch):
    monkeypatch.setattr(core_latency, "_cpu_pair", lambda: None)
    assert not core_latency.can_probe() and core_latency.round_trip_ns() is None
    assert core_latency.state(None) == ""


@pytest.fixture
def zen3_line(monkeypatch):
    """The thirty-second session's line (450 ns), whatever processor runs the tests."""
    monkeypatch.setattr(core_latency, "far_ns", lambda cpuinfo=None: 450.0)


_CPUINFO = "processor\t: 0\nvendor_id\t: {}\ncpu family\t: {}\nmodel\t\t: 2\n\nprocessor\t: 1\n"


def test_the_line_is_the_processors():
    """Zen 5 EPYCs read 175-212 ns near and 372-424 far, Zen 3 ones 250-460 and 450-810."""
    assert core_latency.far_ns(_CPUINFO.format("AuthenticAMD", 26)) == 290.0
    assert core_latency.far_ns(_CPUINFO.format("AuthenticAMD", 25)) == 450.0
    for other in (_CPUINFO.format("GenuineIntel", 6), _CPUINFO.format("AuthenticAMD", "x"),
                  "", "garbage without fields"):
        assert core_latency.far_ns(other) == core_latency.FAR_NS
    host = core_latency.far_ns()
    assert host in set(core_latency.FAR_NS_BY_CPU.values()) | {core_latency.FAR_NS}
    assert core_latency.state(host) == "near" and core_latency.state(host + 1) == "far"
    # on the Zen 5 machine, a near probe of the Zen 3 one's range reads far
    assert core_latency.state(300.0, far=290.0) == "far"
    assert core_latency.state(300.0, far=450.0) == "near"


def test_states_and_bad_arguments(zen3_line):
    assert core_latency.state(core_latency.FAR_NS) == "near"
    assert core_latency.state(core_latency.FAR_NS + 1) == "far"
    with pytest.raises(ValueError, match="n and repeats"):
        core_latency.round_trip_ns(n=0)
    with pytest.raises(ValueError, match="n and repeats"):
        core_latency.round_trip_ns(repeats=0)


def test_command_counts_the_states(monkeypatch, capsys, zen3_line):
    probes = iter([300.0, 600.0, 310.0])
    monkeypatch.setattr(core_latency, "round_trip_ns", lambda: next(probes))
    monkeypatch.setattr(core_latency.time, "sleep", lambda s: None)
    clock = iter([0.0, 0.5, 1.0, 1.5, 9.0])
    monkeypatch.setattr(core_latency.time, "monotonic", lambda: next(clock))
    core_latency.main(["--seconds", "1.2"])
    out = capsys.readouterr().out
    assert out.count(" ns  near") == 2 and out.count(" ns  far") == 1
    assert "near 2, far 1 (far: above 450 ns" in out


def test_alternated_ratios_split_by_state(monkeypatch, zen3_line):
    """Ours takes 1 s near and 2 s far, the reference 2 s always: ratio 2 near, 1 far."""
    now = [0.0]
    state = {"far": False}
    monkeypatch.setattr(alternated.time, "perf_counter", lambda: now[0])

    def advance(near_s, far_s):
        def fn():
            now[0] += far_s if state["far"] else near_s
        return fn

    runs = {"ours": dict(epoch=advance(1.0, 2.0), inference=advance(0.5, 1.0)),
            "ref": dict(epoch=advance(2.0, 2.0), inference=advance(1.0, 1.0))}
    # probed before the training and the inference runs of each round
    probes = iter([300.0, 300.0, 600.0, 600.0, None, None, 600.0, 600.0, 320.0, 320.0])

    def probe():
        ns = next(probes)
        state["far"] = core_latency.state(ns) == "far"
        return ns

    res = alternated.alternate(runs, 10, 5, "ref", probe)["ours"]
    assert res["train_round_trip_ns"] == res["infer_round_trip_ns"] == [
        300.0, 600.0, None, 600.0, 320.0]
    assert res["train_ratio_near"] == pytest.approx(2.0)  # rounds 1 and 5 (round 3: None)
    assert res["train_ratio_far"] == pytest.approx(1.0)
    assert res["infer_ratio_near"] == pytest.approx(2.0)
    assert res["infer_ratio_far"] == pytest.approx(1.0)
    # without a probe, no per-state fields
    plain = alternated.alternate(runs, 10, 2, "ref")["ours"]
    assert not [k for k in plain if k.endswith(("_near", "_far", "_round_trip_ns"))]
