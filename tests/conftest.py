"""Shared fixtures: the golden cases produced by the original CIANNA (tests/data/golden)."""

import json
from pathlib import Path

import numpy as np
import pytest

GOLDEN = Path(__file__).parent / "data" / "golden"
DENSE_CASES = ("dense_only", "conv_pad_stride", "global_pool_smax", "norm_gn", "pool_avg")
TRAINED_CASES = tuple(c for c in DENSE_CASES if (GOLDEN / c / "trained_output.npy").exists())


class Case:
    """One golden folder: meta.json plus lazy access to its .npy files."""

    def __init__(self, name: str):
        self.name = name
        self.dir = GOLDEN / name
        self.meta = json.loads((self.dir / "meta.json").read_text())

    def npy(self, stem: str) -> np.ndarray:
        return np.load(self.dir / f"{stem}.npy")

    def path(self, fname: str) -> Path:
        return self.dir / fname

    @property
    def bias(self) -> float:
        return float(self.meta["init"]["bias"])

    @property
    def b_size(self) -> int:
        return int(self.meta["init"]["b_size"])


@pytest.fixture(scope="session")
def golden_case():
    cache: dict[str, Case] = {}

    def get(name: str) -> Case:
        if name not in cache:
            cache[name] = Case(name)
        return cache[name]

    return get
