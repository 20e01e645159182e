"""The Pallas YOLO loss kernel against the jax.numpy reference.

Its results must equal the reference's on CIANNA's golden configurations and on larger
random ones (several cell blocks, padded cells, boxes and targets, 3D grids, crowded
cells, random associations).  Block-shape legality is checked by lowering the real
(non-interpreted) kernel for CUDA, which works without a GPU.

Where the kernel runs compiled (a GPU with the Pallas Triton lowering; there
``benchmarks/gpu_check.sh`` runs ``pytest tests/pallas``) every configuration below is
checked: the golden ones, the random ones and the SDC1-like ones.  Elsewhere (CPU) the
kernel runs with ``interpret=True``, and the XLA compilation of the interpreted kernel
and of the reference (seconds per configuration and variant; the runs themselves take
milliseconds) is what this file costs.  There only the four random configurations run,
each built to cover several features at once, so that every code path of the kernel is
still checked on CPU:

* ``2d_giou_classes_params_random``: 2D, GIoU, sigmoid classes, parameters, complete
  display with a random gradient association; cells in two blocks per image, padded
  targets; ``nb_im_iter`` traced (random start-up on at 50, off at 500) and the
  rand_prob and best-box draws hashed in the kernel from a threefry key;
* ``3d_diou_diff_forced_complete_classonly``: 3D, DIoU, difficult targets, forced
  smallest-prior association, a class-only image, complete display (shared
  association), padded cells and boxes; ``display_stats`` (the display-only kernel);
* ``2d_iou_softmax_strict_forced``: IoU, softmax classes, strict association (which
  leaves the forced rule nothing to change here); the loss value and gradient through
  ``yolo_loss``; the kernel keeps the input layout ((N, G1, G0, B, K) and
  (N, 1, G1, G0, B, K));
* ``2d_diou2_random_natural_rbg``: DIoU2, natural display, rand_prob and
  best-box association with an rbg key, whose draws the kernel reads from a table.

The golden configurations (CIANNA's own cases for softmax/DIoU, non-square grids,
difficult class-only images, forced and strict association, random start-up) are
checked only where the kernel runs compiled; the rules they exercise are covered on CPU
by the configurations above (and against CIANNA by tests/yolo/test_loss.py).  On CPU the
kernel and the reference are compiled with fewer XLA optimisations (for these programs
only, see ``_cpu_compiler_options`` in tests/yolo/test_loss.py): a third of the compile
time, the same program.
"""

import dataclasses
import functools
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pallas_kernels._compat as compat
from cianna_jax import yolo
from pallas_kernels import threefry
from pallas_kernels import yolo_loss as kyl
from pallas_kernels._compat import on_gpu, triton_available

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "yolo"))
import test_loss  # noqa: E402
from test_loss import RANDOM_CASES, case, cl  # noqa: E402

TOL = 1e-6
COMPILED = kyl.runs_compiled()
# interpreted: fewer XLA optimisations, a third of the compile time (test_loss.py)
COMPILER_OPTIONS = None if COMPILED else test_loss.COMPILER_OPTIONS
compiled_only = [pytest.mark.gpu, pytest.mark.skipif(
    not COMPILED, reason="interpreted on CPU: the random configurations cover its features")]
GOLDEN_CASES = ("s3c_softmax_diou", "s3d_nonsquare_grid", "s7_difficult_classonly_complete",
                "s8_forced_smallest_1", "s8_rand_startup_active", "s8_strict_SIZE_2")


def output_shape(cfg: yolo.YoloConfig, n: int) -> tuple[int, ...]:
    """Channel-last ``(n, [G2,] G1, G0, B, K)`` of ``cfg``."""
    G0, G1, G2 = cfg.grid
    return (n,) + ((G2,) if G2 > 1 else ()) + (G1, G0, cfg.nb_box, cfg.channels_per_box)


def random_problem(cfg: yolo.YoloConfig, n: int, seed: int, crowd: int = 3,
                   class_only: tuple[int, ...] = ()):
    """Raw (not activated) outputs, channel-last, and CIANNA target rows, targets
    clustered in ``crowd`` cells; the images ``class_only`` are class-only (count -1)."""
    rng = np.random.default_rng(seed)
    raw = cl(rng.normal(0.0, 1.0, (n,) + cfg.output_shape).astype(np.float32), cfg)
    M, L, P = cfg.max_nb_obj_per_image, cfg.target_box_len, cfg.nb_param
    cell = np.asarray(cfg.cell, np.float32)
    grid = np.asarray(cfg.grid)
    nd = 3 if cfg.grid[2] > 1 else 2
    rows = np.zeros((n, cfg.target_len), np.float32)
    for i in range(n):
        k = int(rng.integers(0, M + 1)) if i else M
        if i in class_only:
            k = max(k, 1)
        rows[i, 0] = -1 if i in class_only else k
        hot = rng.integers(0, grid, (crowd, 3))
        for j in range(k):
            c = hot[rng.integers(0, crowd)]
            ctr = (c + rng.uniform(0.05, 0.95, 3)) * cell
            ext = rng.uniform(0.3, 3.0, 3) * cell
            if nd == 2:
                ctr[2], ext[2] = 0.5, 1.0
            lowest = 0 if cfg.unclassified_targets else 1   # class 0: none known
            box = np.r_[rng.integers(lowest, max(cfg.nb_class, 1) + 1), ctr - ext / 2, ctr + ext / 2,
                        rng.uniform(0, 1, P)]
            if cfg.diff_flag:
                box = np.r_[box, rng.integers(0, 4)]
            rows[i, 1 + j * L:1 + (j + 1) * L] = box
    return raw, rows


def _cfg(grid, in_dim, **kw):
    B = kw.pop("nb_box", 3)
    pri = np.array([[6.0, 5.0, 4.0][:len(grid)]]).T * np.arange(1, B + 1)   # (n_dim, B)
    return yolo.make_config(in_dim, grid, nb_box=B, prior_size=pri, **kw)


class Spec(NamedTuple):
    """A random configuration and what is run on it (3 images)."""

    cfg: yolo.YoloConfig
    block: int                    # block_cells of the kernel
    seed: int
    key: str | None = None        # PRNG implementation of the association key
    nb_im_iter: tuple = (10 ** 9,)  # more than one: traced (one compilation)
    class_only: tuple = ()        # class-only images
    loss: bool = False            # yolo_loss value and gradient
    stats: bool = False           # display_stats (display-only kernel)
    layout6: bool = False         # the kernel on (N, 1, G1, G0, B, K) too


RANDOM_CONFIGS = {
    # 4x4 cells in blocks of 8: two programs per image; M=7 padded to 8; nb_im_iter traced;
    # the class term weighted per class
    "2d_giou_classes_params_random": Spec(
        _cfg([4, 4], [32, 32], nb_box=2, nb_class=2, nb_param=2, max_nb_obj_per_image=7,
             fit_dim=2, fit_parts=[1, 1, 1, 1, 1, 1], error_type="complete",
             rand_startup=100, rand_prob=0.2, rand_prob_best_box_assoc=0.3,
             class_weights=[0.5, 3.0]),
        block=8, seed=22, key="threefry2x32", nb_im_iter=(50, 500)),
    # 3x2x2 cells: padded to 16 cells, 3D extents; B=3 padded to 4
    "3d_diou_diff_forced_complete_classonly": Spec(
        _cfg([3, 2, 2], [24, 16, 16], nb_class=1, nb_param=1, max_nb_obj_per_image=6,
             fit_dim=3, diff_flag=1, IoU_type="DIoU", error_type="complete",
             min_prior_forced_scaling=3.0, fit_parts=[1, 1, 1, 1, 1, 1]),
        block=8, seed=21, class_only=(1,), stats=True),
    # some targets of class 0 (no known class), as the product's classifying detector
    "2d_iou_softmax_strict_forced": Spec(
        _cfg([4, 4], [32, 32], nb_box=4, nb_class=3, max_nb_obj_per_image=8, fit_dim=2,
             class_softmax=1, IoU_type="IoU", strict_box_size=1, min_prior_forced_scaling=1.5,
             fit_parts=[1, 1, 1, 1, 1, -1], unclassified_targets=1),
        block=16, seed=28, loss=True, layout6=True),
    "2d_diou2_random_natural_rbg": Spec(
        _cfg([4, 4], [32, 32], nb_class=2, max_nb_obj_per_image=6, fit_dim=2,
             IoU_type="DIoU2", rand_prob=0.3, rand_prob_best_box_assoc=0.3, diff_flag=1,
             fit_parts=[1, 1, 1, 1, 0, -1]),
        block=4, seed=23, key="rbg"),
}


def _terms(out, tgt, cfg, kernel, *, nb_im_iter=0, key=None, block_cells=None):
    if kernel == "pallas" and block_cells is not None:
        out_, tgt_, mode, nb, key_ = yolo.loss._prepare(out, tgt, cfg, nb_im_iter, key)
        t = kyl.yolo_terms_kernel(out_, tgt_, nb, key_, cfg=cfg, startup_mode=mode,
                                  block_cells=block_cells)
        return yolo.YoloTerms(t.delta, t.display, t.iou_monitor, t.box_locked), t.channel_sums
    t = yolo.yolo_terms(out, tgt, cfg, nb_im_iter=nb_im_iter, key=key, kernel=kernel)
    return t, None


def _assert_same(ref: yolo.YoloTerms, got: yolo.YoloTerms):
    for name in yolo.YoloTerms._fields:
        a, b = np.asarray(getattr(ref, name)), np.asarray(getattr(got, name))
        assert a.shape == b.shape, (name, a.shape, b.shape)
        np.testing.assert_allclose(b, a, rtol=0, atol=TOL, err_msg=name)


@pytest.mark.parametrize("name", [pytest.param(n, marks=compiled_only) for n in GOLDEN_CASES])
def test_golden_configurations(name):
    c = case(name)
    out = yolo.activation(cl(c.npy("raw"), c.cfg), c.cfg)
    kw = dict(nb_im_iter=c.meta["nb_im_iter"],
              key=jax.random.key(3) if name in RANDOM_CASES else None)
    ref = yolo.yolo_terms(out, c.npy("target"), c.cfg, kernel="xla", **kw)
    got = yolo.yolo_terms(out, c.npy("target"), c.cfg, kernel="pallas", **kw)
    _assert_same(ref, got)


class Run(NamedTuple):
    """One evaluation of a random configuration by one kernel (numpy arrays)."""

    terms: yolo.YoloTerms
    sums: np.ndarray | None       # the kernel's per-image, per-channel display sums
    loss: tuple | None = None     # (value, gradient) of sum(yolo_loss), loss_scale 2
    stats: yolo.DisplayStats | None = None
    terms6: yolo.YoloTerms | None = None   # from the (N, 1, G1, G0, B, K) input
    sums6: np.ndarray | None = None


@functools.lru_cache(maxsize=None)
def random_case(name):
    """``(spec, raw, activated output, targets, key, {kernel: [Run per nb_im_iter]})``:
    one compilation per kernel (``nb_im_iter`` traced where several are evaluated)."""
    s = RANDOM_CONFIGS[name]
    cfg = s.cfg
    raw, tgt = random_problem(cfg, 3, seed=s.seed, class_only=s.class_only)
    out = np.asarray(yolo.activation(raw, cfg))
    key = None if s.key is None else jax.random.key(11, impl=s.key)
    traced = len(s.nb_im_iter) > 1
    runs = {}
    for kernel in ("xla", "pallas"):
        block = s.block if kernel == "pallas" else None

        def run(raw, out, tgt, key, nb, kernel=kernel, block=block):
            terms, sums = _terms(out, tgt, cfg, kernel, nb_im_iter=nb, key=key,
                                 block_cells=block)
            r = Run(terms, sums)
            if s.loss:
                r = r._replace(loss=jax.value_and_grad(lambda x: jnp.sum(yolo.yolo_loss(
                    x, tgt, cfg, nb_im_iter=nb, key=key, loss_scale=2.0, kernel=kernel)))(raw))
            if s.stats:
                r = r._replace(stats=yolo.display_stats(out, tgt, cfg, n_valid=2, kernel=kernel))
            if s.layout6 and kernel == "pallas":
                r = r._replace(**dict(zip(("terms6", "sums6"), _terms(
                    out[:, None], tgt, cfg, kernel, nb_im_iter=nb, key=key, block_cells=block))))
            return r

        f = jax.jit(run, static_argnames=() if traced else ("nb",),
                    compiler_options=COMPILER_OPTIONS)
        runs[kernel] = [jax.tree.map(np.asarray, f(raw, out, tgt, key, nb=nb))
                        for nb in s.nb_im_iter]
    return s, raw, out, tgt, key, runs


def _pairs(name):
    s, *_, runs = random_case(name)
    return [(nb, ref, got) for nb, ref, got in zip(s.nb_im_iter, runs["xla"], runs["pallas"])]


@pytest.mark.parametrize("name", sorted(RANDOM_CONFIGS))
def test_random_configurations(name):
    cfg = RANDOM_CONFIGS[name].cfg
    for nb, ref, got in _pairs(name):
        assert np.sum(ref.terms.box_locked == 2) >= 4, nb   # associations really happen
        _assert_same(ref.terms, got.terms)
        per_channel = ref.terms.display.reshape(3, -1, cfg.channels_per_box)
        np.testing.assert_allclose(got.sums, per_channel.sum(axis=1), atol=1e-5)


def test_random_startup_with_traced_nb_im_iter():
    """The start-up phase decided at run time, random draws shared with the reference."""
    name = "2d_giou_classes_params_random"
    s = RANDOM_CONFIGS[name]
    (on, ref_on, got_on), (off, ref_off, got_off) = _pairs(name)
    assert on <= s.cfg.rand_startup < off
    _assert_same(ref_on.terms, got_on.terms)
    _assert_same(ref_off.terms, got_off.terms)
    # one traced compilation really switches (start-up: targets in slot order, random boxes)
    assert np.abs(ref_on.terms.delta - ref_off.terms.delta).max() > 0.1


def test_random_draws_from_a_table_for_other_key_types():
    """An rbg key cannot be hashed in the kernel: its draws are read from a table."""
    name = "2d_diou2_random_natural_rbg"
    s, _, out, _, key, _ = random_case(name)
    assert not threefry.supported(key)
    assert kyl.make_plan(s.cfg, out.shape[0], draw_table=True).S > 0
    ((_, ref, got),) = _pairs(name)
    _assert_same(ref.terms, got.terms)


def test_yolo_loss_value_and_gradient():
    for _, ref, got in _pairs("2d_iou_softmax_strict_forced"):
        (v_ref, g_ref), (v_got, g_got) = ref.loss, got.loss
        np.testing.assert_allclose(float(v_got), float(v_ref), rtol=1e-6)
        np.testing.assert_allclose(g_got, g_ref, atol=TOL)
        assert float(np.max(np.abs(g_ref))) > 0
        # the value is the displayed loss, the gradient CIANNA's delta (times loss_scale)
        np.testing.assert_allclose(float(v_ref), ref.terms.display.sum(), rtol=1e-5)
        np.testing.assert_allclose(g_ref, 2.0 * ref.terms.delta, atol=TOL)


def test_display_stats_by_kernel():
    ((_, ref, got),) = _pairs("3d_diou_diff_forced_complete_classonly")
    for name in ("parts", "M_IoU", "M_Obj", "P_Good", "n_monitor"):
        np.testing.assert_allclose(getattr(got.stats, name), getattr(ref.stats, name),
                                   atol=1e-5, err_msg=name)
    # n_valid=2: the third image is left out of the sums
    np.testing.assert_allclose(ref.stats.total, ref.terms.display[:2].sum(), rtol=1e-5)


def test_kernel_keeps_the_input_layout():
    """(N, G1, G0, B, K) and (N, 1, G1, G0, B, K) inputs: same numbers, same layouts back."""
    _, _, out, *_ = random_case("2d_iou_softmax_strict_forced")
    ((_, _, got),) = _pairs("2d_iou_softmax_strict_forced")
    t5, t6 = got.terms, got.terms6
    assert t5.delta.shape == t5.display.shape == out.shape
    assert t5.iou_monitor.shape == out.shape[:-1] + (2,)
    assert t5.box_locked.shape == out.shape[:-1]
    for name in ("delta", "display", "iou_monitor", "box_locked"):
        a, b = getattr(t5, name), getattr(t6, name)
        assert b.shape == (a.shape[0], 1) + a.shape[1:], name
        np.testing.assert_array_equal(b[:, 0], a, err_msg=name)
    np.testing.assert_array_equal(got.sums6, got.sums)


IMPORT_ORDERS = ("import pallas_kernels.yolo_loss; import cianna_jax",
                 "import cianna_jax; import pallas_kernels.yolo_loss",
                 "import cianna_jax.yolo.rules")
# one interpreter tries each order with none of the project's modules loaded (they are
# dropped from sys.modules before each): jax is imported once, not once per order
_IMPORT_CHILD = """
import sys, traceback
failed = []
for statement in sys.argv[1:]:
    for m in [m for m in sys.modules if m.partition(".")[0] in ("cianna_jax", "pallas_kernels")]:
        del sys.modules[m]
    try:
        exec(statement, {})
    except Exception:
        failed.append(statement + "\\n" + traceback.format_exc())
sys.exit("\\n".join(failed) or None)
"""


def test_imports_in_any_order():
    """loss imports the kernel at module level and the kernel imports the public rules:
    they import in any order into an interpreter that has none of them."""
    root = Path(__file__).resolve().parents[2]
    p = subprocess.run([sys.executable, "-c", _IMPORT_CHILD, *IMPORT_ORDERS], cwd=root,
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


# --------------------------------------------------------------------------- dispatch


def test_kernel_choice_and_errors():
    cfg = RANDOM_CONFIGS["2d_giou_classes_params_random"].cfg
    assert yolo.resolve_kernel(cfg, "xla") == "xla"
    assert yolo.resolve_kernel(cfg, "pallas") == "pallas"
    assert kyl.keeps_default_block(cfg)
    expected = "pallas" if on_gpu() and triton_available() else "xla"
    assert yolo.resolve_kernel(cfg) == expected
    assert yolo.resolve_kernel(dataclasses.replace(cfg, kernel="pallas")) == "pallas"
    with pytest.raises(ValueError, match="kernel"):
        yolo.resolve_kernel(cfg, "cuda")
    with pytest.raises(ValueError, match="yolo_kernel"):
        yolo.make_config([32, 32], [4, 4], nb_box=1, kernel="triton")
    with pytest.raises(ValueError, match="block_cells"):
        kyl.make_plan(cfg, 2, block_cells=12)


def test_auto_dispatch_follows_device_and_triton(monkeypatch):
    """On a GPU "auto" takes the kernel only if this jax has the Triton lowering, and
    only for configurations where it was measured faster than XLA."""
    cfg = RANDOM_CONFIGS["2d_giou_classes_params_random"].cfg
    monkeypatch.setattr(compat, "on_gpu", lambda device=None: True)
    assert yolo.resolve_kernel(cfg) == ("pallas" if triton_available() else "xla")
    # crowded images and many boxes: measured slower than XLA on an H200
    sdc1 = SDC1_LIKE["sdc1_2d"]
    assert not kyl.keeps_default_block(sdc1)
    assert yolo.resolve_kernel(sdc1) == "xla"
    assert yolo.resolve_kernel(sdc1, "pallas") == "pallas"
    assert kyl.keeps_default_block(SDC1_LIKE["cube_3d"])   # 64 x 8: measured faster
    assert yolo.resolve_kernel(SDC1_LIKE["cube_3d"]) == ("pallas" if triton_available()
                                                         else "xla")
    monkeypatch.setattr(compat, "_triton_module", lambda: None)
    assert not compat.triton_available()
    assert yolo.resolve_kernel(cfg) == "xla"
    with pytest.raises(RuntimeError, match="Triton"):
        compat.triton_params(4, 1)


# --------------------------------------------------------------------------- GPU legality

SDC1_LIKE = {
    "sdc1_2d": _cfg([16, 16], [256, 256], nb_box=9, nb_class=3, nb_param=3,
                    max_nb_obj_per_image=100, fit_dim=2, fit_parts=[1, 1, 1, 1, 1, 1]),
    "sdc1_2d_random": _cfg([32, 32], [512, 512], nb_box=6, max_nb_obj_per_image=100,
                           fit_dim=2, rand_prob=0.1, diff_flag=1),
    "cube_3d": _cfg([8, 8, 4], [64, 64, 32], nb_box=5, nb_class=1, nb_param=2,
                    max_nb_obj_per_image=40, fit_dim=3, error_type="complete"),
}


@pytest.mark.parametrize("name", sorted(SDC1_LIKE))
def test_block_shapes_are_powers_of_two(name):
    cfg = SDC1_LIKE[name]
    for block in (None, 8, 32):
        plan = kyl.make_plan(cfg, 16, block_cells=block, draw_table=cfg.rand_prob > 0)
        kyl.check_block_shapes(plan)
        for shape in kyl.block_shapes(plan).values():
            assert all(d & (d - 1) == 0 for d in shape), shape
    bad = kyl.make_plan(cfg, 16)._replace(Gb=12)
    with pytest.raises(ValueError, match="power-of-two"):
        kyl.check_block_shapes(bad)


def test_default_block_fits_the_table_budget():
    """Crowded images and many boxes narrow the default block of cells (a 128 x 16 x 16
    table did not compile within a minute on an H200); an explicit block is kept."""
    for name, cfg in SDC1_LIKE.items():
        plan = kyl.make_plan(cfg, 16)
        assert plan.Mp * plan.Bp * plan.Gb <= kyl.TABLE_BUDGET, name
        assert plan.Gb == min(kyl.DEFAULT_BLOCK_CELLS, kyl.TABLE_BUDGET // (plan.Mp * plan.Bp))
        assert kyl.make_plan(cfg, 16, block_cells=32).Gb == 32
    sdc1 = kyl.make_plan(SDC1_LIKE["sdc1_2d"], 16)
    assert (sdc1.Mp, sdc1.Bp, sdc1.Gb) == (128, 16, 4)
    small = kyl.make_plan(RANDOM_CONFIGS["2d_giou_classes_params_random"].cfg, 3)
    assert small.Gb == min(kyl.DEFAULT_BLOCK_CELLS, 1 << (small.G - 1).bit_length())


@pytest.mark.skipif(not triton_available(), reason="this jax has no Pallas Triton lowering")
@pytest.mark.parametrize("name", sorted(SDC1_LIKE))
def test_kernel_lowers_for_cuda(name):
    """The non-interpreted kernel passes the Triton lowering (power-of-two shapes, only
    supported primitives) at SDC1-like sizes.  Lowering needs no GPU: an abstract H200
    stands for it (jax 0.12's Triton lowering asks for the target's kind; arrays are made
    outside that context, where JAX would have to place them)."""
    cfg = SDC1_LIKE[name]
    n = 4
    out = jax.ShapeDtypeStruct(output_shape(cfg, n), jnp.float32)
    tgt = jax.ShapeDtypeStruct((n, cfg.target_len), jnp.float32)
    random = cfg.rand_prob > 0
    key = jax.random.key(0) if random else None
    step = jnp.int32(0)
    h200 = jax.sharding.AbstractMesh(
        (1,), ("d",), axis_types=(jax.sharding.AxisType.Auto,),
        abstract_device=jax.sharding.AbstractDevice("NVIDIA H200", None, "cuda"))
    with jax.sharding.use_abstract_mesh(h200):
        low = kyl.yolo_terms_kernel.trace(
            out, tgt, step, key, cfg=cfg, startup_mode="traced" if random else "off",
            interpret=False).lower(lowering_platforms=("cuda",))
    assert "triton" in low.as_text()


@pytest.mark.gpu
@pytest.mark.skipif(not on_gpu(), reason="needs a GPU")
@pytest.mark.parametrize("name", sorted(SDC1_LIKE))
def test_compiled_kernel_on_gpu(name):
    cfg = SDC1_LIKE[name]
    raw, tgt = random_problem(cfg, 4, seed=0, crowd=12)
    out = yolo.activation(raw, cfg)
    key = jax.random.key(1) if cfg.rand_prob > 0 else None
    ref = yolo.yolo_terms(out, tgt, cfg, key=key, nb_im_iter=10 ** 9, kernel="xla")
    got = yolo.yolo_terms(out, tgt, cfg, key=key, nb_im_iter=10 ** 9, kernel="pallas")
    _assert_same(ref, got)
