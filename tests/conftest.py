"""Shared fixtures: the golden cases produced by the original CIANNA (tests/data/golden)."""

import json
import os
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


@pytest.fixture
def in_tmp_dir(tmp_path, monkeypatch):
    """Run the test in its own empty folder (the current directory), returned."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------- test speed
#
# ``pytest -m "not slow"`` is the fast subset: every test file keeps tests in it.  The
# slow tests are listed by node-id prefix in slow_tests.txt (measured durations, see its
# header) rather than marked in their files.
SLOW_TESTS = tuple(
    line.strip() for line in (Path(__file__).parent / "slow_tests.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#"))


#: the files whose tests take longest (measured, longest first): collected first, so
#: that the parallel workers (pytest-xdist, ``-n auto --dist loadfile`` in pyproject.toml)
#: start them early and finish together
LONGEST_FILES = ("tests/test_cli_demo.py", "tests/test_notebooks.py",
                 "tests/test_benchmarks_smoke.py", "tests/astro/test_train.py",
                 "tests/yolo/test_loss.py", "tests/test_data_parallel.py",
                 "tests/pallas/test_yolo_loss_kernel.py", "tests/yolo/test_yolo_api.py")


def pytest_collection_modifyitems(config, items):
    slow = pytest.mark.slow
    for item in items:
        if item.nodeid.startswith(SLOW_TESTS):
            item.add_marker(slow)

    def rank(item):
        path = item.nodeid.split("::")[0]
        return LONGEST_FILES.index(path) if path in LONGEST_FILES else len(LONGEST_FILES)

    items.sort(key=rank)  # stable: the other files keep their order


#: set to 1 to compile the tests' programs with all of XLA's optimisations, as users run
OPTIMIZED_ENV = "CIANNA_JAX_TEST_OPTIMIZED"


@pytest.fixture
def optimized_compilation():
    """XLA's optimisations on for one test whose time goes to running, not compiling
    (the quick demo trains a detector for 320 steps: 70 s with them off, 41 s on, alone,
    classic emitters)."""
    import jax

    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


def pytest_configure(config):
    """Compilation, not running, is what the suite's tiny programs cost: on CPU they are
    compiled with LLVM's optimisations off (``jax_disable_most_optimizations``: the same
    XLA program, fusions and numbers to the last bit or so; about a third of the compile
    time) and, where the installed XLA has them, its classic fusion emitters (the same
    fused programs compiled 2-3x faster: tests/test_api.py, test_layers.py and
    test_conv_small_map.py 79 s -> 37 s on 2 cores; ``xla_cpu.with_classic_emitters``,
    unless ``XLA_FLAGS`` already chooses), in this process and in the child processes and
    notebook kernels the tests start.  ``CIANNA_JAX_TEST_OPTIMIZED=1`` compiles as users
    do (the benchmarks and ``benchmarks/gpu_check.sh`` on a GPU always do), and so does an
    XLA without the classic emitters (jaxlib 0.11.1 and later) or flags that choose the
    newer ones: with those emitters and LLVM's optimisations off, XLA 0.10.2 and 0.12.1
    computed infinite and NaN gradients on an Intel Xeon (AVX-512, AMX) for a small
    network that both compile right optimised (``tests/test_fused_tiles.py::
    test_exact_gradients``, fifty-sixth session).

    ``CIANNA_JAX_COMPILE_CACHE`` (see cianna_jax.compile_cache) also serves the test
    run: with a kept cache folder (CI: restore it between runs) the XLA compilations that
    dominate the suite's time are loaded instead of redone."""
    from cianna_jax import compile_cache, xla_cpu

    # read when the backend starts (not yet); the classic emitters where XLA has them
    flags = xla_cpu.with_classic_emitters(os.environ.get("XLA_FLAGS", ""))
    if os.environ.get(OPTIMIZED_ENV, "") in ("", "0") and xla_cpu.CLASSIC_EMITTERS in flags:
        os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"  # children read it at import
        os.environ["XLA_FLAGS"] = flags
        import jax

        jax.config.update("jax_disable_most_optimizations", True)
    compile_cache.enable_from_env()
