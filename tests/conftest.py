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
# ``pytest -m "not slow"`` is the fast subset: every module keeps tests in it.  The tests
# below are marked slow here (by node-id prefix: a file, a test, or one parametrization)
# rather than in their files; each took 7 s or more on the shared 2-core machine (XLA
# compilations of whole training steps, the Pallas kernel in interpret mode, child
# processes), measured with ``--durations`` file by file (benchmarks/README.md, "Test
# suite speed").  A slow test's module always keeps a fast test.
SLOW_TESTS = (
    # the Pallas YOLO kernel in interpret mode (parity on the GPU runs in gpu_check.sh)
    "tests/pallas/test_yolo_loss_kernel.py::test_random_startup_with_traced_nb_im_iter",
    "tests/pallas/test_yolo_loss_kernel.py::test_random_configurations",
    "tests/pallas/test_yolo_loss_kernel.py::test_kernel_keeps_the_input_layout",
    "tests/pallas/test_yolo_loss_kernel.py::test_random_draws_from_a_table_for_other_key_types",
    "tests/pallas/test_yolo_loss_kernel.py::test_yolo_loss_value_and_gradient",
    "tests/pallas/test_yolo_loss_kernel.py::test_display_stats_by_kernel",
    "tests/pallas/test_yolo_loss_kernel.py::test_golden_configurations[s8_rand_startup_active]",
    "tests/pallas/test_yolo_loss_kernel.py::test_golden_configurations[s3d_nonsquare_grid]",
    "tests/pallas/test_yolo_loss_kernel.py::test_golden_configurations[s7_difficult_classonly",
    "tests/pallas/test_yolo_loss_kernel.py::test_golden_configurations[s8_forced_smallest_1]",
    # whole CIANNA scripts through the imperative API (several compiled networks each)
    "tests/test_api.py::test_mixed_precision_trains",
    "tests/test_api.py::test_dynamic_load_0_gives_the_same_training",
    "tests/test_api.py::test_golden_case_as_a_cianna_script[norm_gn-1]",
    "tests/test_api.py::test_golden_case_as_a_cianna_script[conv_pad_stride-1]",
    "tests/test_api.py::test_golden_case_as_a_cianna_script[pool_avg-1]",
    "tests/yolo/test_loss.py::test_exact_gradient_is_autodiff_of_the_display_formula[GIoU]",
    "tests/yolo/test_loss.py::test_exact_gradient_is_autodiff_of_the_display_formula[DIoU]",
    "tests/yolo/test_loss.py::test_random_startup_invariants",
    "tests/yolo/test_loss.py::test_rand_prob_best_box_assoc_one_forces_best_prior",
    "tests/test_robustness.py::test_yolo_targets_created_before_the_settings_are_checked",
    # child processes (a fresh JAX each) and notebooks
    "tests/test_compile_cache.py::test_environment_variable_enables_it",
    "tests/test_compile_cache.py::test_default_folder",
    "tests/test_notebooks.py::test_notebook_runs",
    "tests/test_benchmarks_smoke.py",
    "tests/yolo/test_yolo_end_to_end.py",
    # the weight-layout product on every geometry (one fast case stays)
    "tests/test_conv_small_map.py::test_weight_layout_product_matches_the_convolution[True-",
    "tests/test_conv_small_map.py::test_weight_layout_product_matches_the_convolution[False-3d]",
    "tests/test_conv_small_map.py::test_weight_layout_product_matches_the_convolution[False-f",
)


def pytest_collection_modifyitems(config, items):
    slow = pytest.mark.slow
    for item in items:
        if item.nodeid.startswith(SLOW_TESTS):
            item.add_marker(slow)


#: set to 1 to compile the tests' programs with all of XLA's optimisations, as users run
OPTIMIZED_ENV = "CIANNA_JAX_TEST_OPTIMIZED"


def pytest_configure(config):
    """Compilation, not running, is what the suite's tiny programs cost: on CPU they are
    compiled with LLVM's optimisations off (``jax_disable_most_optimizations``: the same
    XLA program, fusions and numbers to the last bit or so; about a third of the compile
    time), in this process and in the child processes and notebook kernels the tests
    start.  ``CIANNA_JAX_TEST_OPTIMIZED=1`` compiles as users do (the benchmarks and
    ``benchmarks/gpu_check.sh`` on a GPU always do).

    ``CIANNA_JAX_COMPILE_CACHE`` (see cianna_jax.compile_cache) also serves the test
    run: with a kept cache folder (CI: restore it between runs) the XLA compilations that
    dominate the suite's time are loaded instead of redone."""
    if os.environ.get(OPTIMIZED_ENV, "") in ("", "0"):
        os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1"  # children read it at import
        import jax

        jax.config.update("jax_disable_most_optimizations", True)
    from cianna_jax import compile_cache

    compile_cache.enable_from_env()
