"""The Pallas YOLO loss kernel against the jax.numpy reference.

On CPU the kernel runs with ``interpret=True``; its results must equal the reference's
on CIANNA's golden configurations and on larger random ones (several cell blocks,
padded cells and boxes, 3D grids, crowded cells, random associations).  Block-shape
legality is checked by lowering the real (non-interpreted) kernel for CUDA, which
works without a GPU; the compiled kernel itself is tested only where a GPU exists.
"""

import dataclasses
import functools
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pallas_kernels._compat as compat
from cianna_jax import yolo
from cianna_jax.yolo import layout
from pallas_kernels import yolo_loss as kyl
from pallas_kernels._compat import on_gpu, triton_available

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "yolo"))
from test_loss import RANDOM_CASES, case, cl  # noqa: E402

TOL = 1e-6
GOLDEN_CASES = ("s3c_softmax_diou", "s3d_nonsquare_grid", "s7_difficult_classonly_complete",
                "s8_forced_smallest_1", "s8_rand_startup_active", "s8_strict_SIZE_2")


def output_shape(cfg: yolo.YoloConfig, n: int) -> tuple[int, ...]:
    """Channel-last ``(n, [G2,] G1, G0, B, K)`` of ``cfg``."""
    G0, G1, G2 = cfg.grid
    return (n,) + ((G2,) if G2 > 1 else ()) + (G1, G0, cfg.nb_box, cfg.channels_per_box)


def random_problem(cfg: yolo.YoloConfig, n: int, seed: int, crowd: int = 3):
    """Activated outputs (channel-last) and CIANNA target rows, targets clustered in
    ``crowd`` cells."""
    rng = np.random.default_rng(seed)
    raw = cl(rng.normal(0.0, 1.0, (n,) + cfg.output_shape).astype(np.float32), cfg)
    M, L, P = cfg.max_nb_obj_per_image, cfg.target_box_len, cfg.nb_param
    cell = np.asarray(cfg.cell, np.float32)
    grid = np.asarray(cfg.grid)
    nd = 3 if cfg.grid[2] > 1 else 2
    rows = np.zeros((n, cfg.target_len), np.float32)
    for i in range(n):
        k = int(rng.integers(0, M + 1)) if i else M
        rows[i, 0] = k
        hot = rng.integers(0, grid, (crowd, 3))
        for j in range(k):
            c = hot[rng.integers(0, crowd)]
            ctr = (c + rng.uniform(0.05, 0.95, 3)) * cell
            ext = rng.uniform(0.3, 3.0, 3) * cell
            if nd == 2:
                ctr[2], ext[2] = 0.5, 1.0
            box = np.r_[rng.integers(1, max(cfg.nb_class, 1) + 1), ctr - ext / 2, ctr + ext / 2,
                        rng.uniform(0, 1, P)]
            if cfg.diff_flag:
                box = np.r_[box, rng.integers(0, 4)]
            rows[i, 1 + j * L:1 + (j + 1) * L] = box
    return np.asarray(yolo.activation(raw, cfg)), rows


def _cfg(grid, in_dim, **kw):
    B = kw.pop("nb_box", 3)
    pri = np.array([[6.0, 5.0, 4.0][:len(grid)]]).T * np.arange(1, B + 1)   # (n_dim, B)
    return yolo.make_config(in_dim, grid, nb_box=B, prior_size=pri, **kw)


RANDOM_CONFIGS = {
    # 4x4 cells in blocks of 8: two programs per image, B=3 padded to 4
    "2d_giou_classes_params": (_cfg([4, 4], [32, 32], nb_class=2, nb_param=2,
                                    max_nb_obj_per_image=7, fit_dim=2,
                                    fit_parts=[1, 1, 1, 1, 1, 1]), 8),
    # 3x2x2 cells: padded to 16 cells, 3D extents
    "3d_diou_diff_complete": (_cfg([3, 2, 2], [24, 16, 16], nb_class=1, nb_param=1,
                                   max_nb_obj_per_image=6, fit_dim=3, diff_flag=1,
                                   IoU_type="DIoU", error_type="complete",
                                   fit_parts=[1, 1, 1, 1, 1, 1]), 8),
    "2d_iou_softmax_strict_forced": (_cfg([4, 4], [32, 32], nb_box=4, nb_class=3,
                                          max_nb_obj_per_image=8, fit_dim=2, class_softmax=1,
                                          IoU_type="IoU", strict_box_size=1,
                                          min_prior_forced_scaling=1.5,
                                          fit_parts=[1, 1, 1, 1, 1, -1]), 16),
    "2d_diou2_random_natural": (_cfg([4, 4], [32, 32], nb_class=2, max_nb_obj_per_image=6,
                                     fit_dim=2, IoU_type="DIoU2", rand_prob=0.3,
                                     rand_prob_best_box_assoc=0.3, diff_flag=1,
                                     fit_parts=[1, 1, 1, 1, 0, -1]), 4),
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


@pytest.mark.parametrize("name", GOLDEN_CASES)
def test_golden_configurations(name):
    c = case(name)
    out = yolo.activation(cl(c.npy("raw"), c.cfg), c.cfg)
    kw = dict(nb_im_iter=c.meta["nb_im_iter"],
              key=jax.random.key(3) if name in RANDOM_CASES else None)
    ref = yolo.yolo_terms(out, c.npy("target"), c.cfg, kernel="xla", **kw)
    got = yolo.yolo_terms(out, c.npy("target"), c.cfg, kernel="pallas", **kw)
    _assert_same(ref, got)


@functools.lru_cache(maxsize=None)
def random_case(name):
    cfg, block = RANDOM_CONFIGS[name]
    out, tgt = random_problem(cfg, 3, seed=len(name))
    random = cfg.rand_prob > 0
    kw = dict(nb_im_iter=10 ** 9, key=jax.random.key(11) if random else None)
    ref, _ = _terms(out, tgt, cfg, "xla", **kw)
    got, sums = _terms(out, tgt, cfg, "pallas", block_cells=block, **kw)
    return cfg, ref, got, sums


@pytest.mark.parametrize("name", sorted(RANDOM_CONFIGS))
def test_random_configurations(name):
    cfg, ref, got, sums = random_case(name)
    assert np.sum(np.asarray(ref.box_locked) == 2) >= 4   # associations really happen
    _assert_same(ref, got)
    per_channel = np.asarray(ref.display).reshape(3, -1, cfg.channels_per_box)
    np.testing.assert_allclose(np.asarray(sums), per_channel.sum(axis=1), atol=1e-5)


def test_random_startup_with_traced_nb_im_iter():
    """The start-up phase decided at run time, random draws shared with the reference."""
    cfg = dataclasses.replace(RANDOM_CONFIGS["2d_giou_classes_params"][0], rand_startup=100)
    out, tgt = random_problem(cfg, 2, seed=5)

    def both(nb):
        f = jax.jit(lambda o, t, nb, k, kernel: yolo.yolo_terms(
            o, t, cfg, nb_im_iter=nb, key=k, kernel=kernel), static_argnames="kernel")
        return [f(out, tgt, jnp.int32(nb), jax.random.key(2), kernel=k) for k in ("xla", "pallas")]

    for nb in (50, 500):   # start-up on, then off
        ref, got = both(nb)
        _assert_same(ref, got)


def test_random_draws_from_a_table_for_other_key_types():
    """An rbg key cannot be hashed in the kernel: its draws are read from a table."""
    cfg, block = RANDOM_CONFIGS["2d_diou2_random_natural"]
    out, tgt = random_problem(cfg, 2, seed=9)
    key = jax.random.key(4, impl="rbg")
    ref, _ = _terms(out, tgt, cfg, "xla", nb_im_iter=10 ** 9, key=key)
    got, _ = _terms(out, tgt, cfg, "pallas", nb_im_iter=10 ** 9, key=key, block_cells=block)
    _assert_same(ref, got)


def test_yolo_loss_value_and_gradient():
    cfg = RANDOM_CONFIGS["2d_giou_classes_params"][0]
    rng = np.random.default_rng(0)
    raw = jnp.asarray(rng.normal(0, 1, output_shape(cfg, 2)), jnp.float32)
    _, tgt = random_problem(cfg, 2, seed=1)

    def total(r, kernel):
        return jnp.sum(yolo.yolo_loss(r, tgt, cfg, nb_im_iter=10 ** 9, loss_scale=2.0,
                                      kernel=kernel))

    v_ref, g_ref = jax.value_and_grad(total)(raw, "xla")
    v_got, g_got = jax.value_and_grad(total)(raw, "pallas")
    np.testing.assert_allclose(float(v_got), float(v_ref), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g_got), np.asarray(g_ref), atol=TOL)
    assert float(jnp.max(jnp.abs(g_ref))) > 0


def test_display_stats_by_kernel():
    cfg = RANDOM_CONFIGS["3d_diou_diff_complete"][0]
    out, tgt = random_problem(cfg, 3, seed=4)
    ref = yolo.display_stats(out, tgt, cfg, n_valid=2, kernel="xla")
    got = yolo.display_stats(out, tgt, cfg, n_valid=2, kernel="pallas")
    for name in ("parts", "M_IoU", "M_Obj", "P_Good", "n_monitor"):
        np.testing.assert_allclose(np.asarray(getattr(got, name)),
                                   np.asarray(getattr(ref, name)), atol=1e-5, err_msg=name)


def test_kernel_keeps_the_input_layout():
    """(N, G1, G0, B, K) and (N, 1, G1, G0, B, K) inputs: same numbers, same layouts back."""
    cfg, block = RANDOM_CONFIGS["2d_giou_classes_params"]
    out, tgt = random_problem(cfg, 2, seed=3)
    assert out.shape == output_shape(cfg, 2)

    def run(o):
        return kyl.yolo_terms_kernel(o, tgt, jnp.int32(0), None, cfg=cfg, startup_mode="off",
                                     block_cells=block)

    t5, t6 = run(out), run(layout.from_cianna(layout.to_cianna(out), cfg.nb_box, nd=3))
    assert t5.delta.shape == t5.display.shape == out.shape
    assert t5.iou_monitor.shape == out.shape[:-1] + (2,)
    assert t5.box_locked.shape == out.shape[:-1]
    for name in ("delta", "display", "iou_monitor", "box_locked"):
        a, b = np.asarray(getattr(t5, name)), np.asarray(getattr(t6, name))
        np.testing.assert_array_equal(b[:, 0], a, err_msg=name)
    np.testing.assert_array_equal(np.asarray(t5.channel_sums), np.asarray(t6.channel_sums))


@pytest.mark.parametrize("statement", [
    "import pallas_kernels.yolo_loss; import cianna_jax",
    "import cianna_jax; import pallas_kernels.yolo_loss",
    "import cianna_jax.yolo.rules",
])
def test_imports_in_any_order(statement):
    """loss imports the kernel at module level and the kernel imports the public rules:
    a fresh interpreter imports them in any order."""
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", statement], check=True, cwd=root)


# --------------------------------------------------------------------------- dispatch


def test_kernel_choice_and_errors():
    cfg = RANDOM_CONFIGS["2d_giou_classes_params"][0]
    assert yolo.resolve_kernel(cfg, "xla") == "xla"
    assert yolo.resolve_kernel(cfg, "pallas") == "pallas"
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
    """On a GPU "auto" takes the kernel only if this jax has the Triton lowering."""
    cfg = RANDOM_CONFIGS["2d_giou_classes_params"][0]
    monkeypatch.setattr(compat, "on_gpu", lambda device=None: True)
    assert yolo.resolve_kernel(cfg) == ("pallas" if triton_available() else "xla")
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


@pytest.mark.skipif(not triton_available(), reason="this jax has no Pallas Triton lowering")
@pytest.mark.parametrize("name", sorted(SDC1_LIKE))
def test_kernel_lowers_for_cuda(name):
    """The non-interpreted kernel passes the Triton lowering (power-of-two shapes, only
    supported primitives) at SDC1-like sizes; lowering needs no GPU."""
    cfg = SDC1_LIKE[name]
    n = 4
    out = jax.ShapeDtypeStruct(output_shape(cfg, n), jnp.float32)
    tgt = jax.ShapeDtypeStruct((n, cfg.target_len), jnp.float32)
    random = cfg.rand_prob > 0
    key = jax.random.key(0) if random else None
    low = kyl.yolo_terms_kernel.trace(
        out, tgt, jnp.int32(0), key, cfg=cfg, startup_mode="traced" if random else "off",
        interpret=False).lower(lowering_platforms=("cuda",))
    assert "triton" in low.as_text()


@pytest.mark.gpu
@pytest.mark.skipif(not on_gpu(), reason="needs a GPU")
@pytest.mark.parametrize("name", sorted(SDC1_LIKE))
def test_compiled_kernel_on_gpu(name):
    cfg = SDC1_LIKE[name]
    out, tgt = random_problem(cfg, 4, seed=0, crowd=12)
    key = jax.random.key(1) if cfg.rand_prob > 0 else None
    ref = yolo.yolo_terms(out, tgt, cfg, key=key, nb_im_iter=10 ** 9, kernel="xla")
    got = yolo.yolo_terms(out, tgt, cfg, key=key, nb_im_iter=10 ** 9, kernel="pallas")
    _assert_same(ref, got)
