"""Deterministic fuzzing of the model-file readers (a short run of tools/fuzz_model_files.py).

Mutated golden files (bit flips, byte changes, truncations, odd values in int, float and
string fields, long digit runs and lines, duplicated and dropped records) are read with
``read_network`` and built with ``load_network``: each must load with bounded sizes or
raise CiannaFormatError naming the file, nothing else.  The long run is
``python tools/fuzz_model_files.py --n 20000``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
N_CASES = 400


def _tool():
    spec = importlib.util.spec_from_file_location("fuzz_model_files",
                                                  ROOT / "tools" / "fuzz_model_files.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, mod)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


@pytest.fixture(scope="module")
def fuzz():
    mod = _tool()
    return mod, mod.load_sources()


def test_sources_cover_both_formats_and_every_record_type(fuzz):
    mod, sources = fuzz
    assert {s.binary for s in sources} == {False, True}
    kinds = {k for s in sources for k in s.kinds}
    assert {"conv", "yolo", "dense", "pool", "norm", "lrn"} <= kinds


def test_cases_are_deterministic(fuzz):
    mod, sources = fuzz
    a = [mod.make_case(3, i, sources) for i in range(20)]
    b = [mod.make_case(3, i, sources) for i in range(20)]
    assert a == b
    assert len({c.data for c in a}) == 20


@pytest.mark.parametrize("seed", [0, 1])
def test_mutated_files_load_or_raise_cianna_format_error(fuzz, tmp_path, seed):
    mod, sources = fuzz
    counts = dict.fromkeys(mod.OUTCOMES, 0)
    bad = []
    for i in range(N_CASES // 2):
        case = mod.make_case(seed, i, sources)
        outcome, detail = mod.run_case(case, tmp_path / "case.dat")
        counts[outcome] += 1
        if outcome not in ("loaded", "format_error"):
            bad.append(f"input {i} ({case.source}, {case.desc}, {case.options}): {detail}")
    assert not bad, "\n".join(bad[:5])
    assert counts["loaded"] > 0 and counts["format_error"] > 0
