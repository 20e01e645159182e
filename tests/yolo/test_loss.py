"""YOLO activation, association, delta and displayed loss against CIANNA's goldens.

Reference: the GPU-equivalent harness files of tests/data/golden/yolo_loss (the
``*_cpu.npy`` files hold the CPU integer-truncation bug and are not reproduced; for the
non-square grid the display is compared with ``*_swapfixed.npy``).  Every case is
computed once (activation, terms and display statistics in one compilation per
configuration) and cached.

The golden arrays are in CIANNA's layout ``[N, F, G2, G1, G0]``; the functions take and
return the core's channel-last ``(N, [G2,] G1, G0, B, K)``: inputs are converted with
:func:`layout.from_cianna` (:func:`cl`), results back with :func:`layout.to_cianna`
(:func:`as_cianna`) where they are compared with the goldens.

Compilation, not computation, is what these tests cost on CPU: the programs built here
(:func:`fast_jit`) are compiled with fewer XLA optimisations, which takes a third of the
time and gives the same element-wise values (sums may differ in the last bit, far
inside the tolerances).  The tests that call the public functions eagerly keep XLA's
defaults, and :func:`test_grad_unit_and_jit_equals_eager` checks that both give the
same delta, bit for bit.
"""

import dataclasses
import functools
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cianna_jax import yolo
from cianna_jax.yolo import layout

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"
LOSS_DIR = GOLDEN / "yolo_loss"
ALL_CASES = sorted(p.name for p in LOSS_DIR.iterdir()
                   if p.is_dir() and p.name != "s2_iou_family")
RANDOM_CASES = ("s8_rand_startup_active",)
DET_CASES = tuple(c for c in ALL_CASES if c not in RANDOM_CASES)
PART_NAMES = ("Pos", "Size", "Prob", "Obj", "Class", "Param")
ATOL = 1e-5


def _cpu_compiler_options() -> dict | None:
    """XLA options that compile these small programs 3x faster on CPU: LLVM optimisations
    off (as JAX_DISABLE_MOST_OPTIMIZATIONS does) and, where this XLA knows the option,
    the classic fusion emitters.  None (XLA's defaults) off CPU, or when the tests compile
    as users do (``CIANNA_JAX_TEST_OPTIMIZED``, see tests/conftest.py)."""
    if jax.default_backend() != "cpu" or not jax.config.read("jax_disable_most_optimizations"):
        return None
    opts = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    try:
        fast = {**opts, "xla_cpu_use_fusion_emitters": False}
        jax.jit(lambda x: x + 1, compiler_options=fast).lower(1.0).compile()
        return fast
    except Exception:  # an XLA without that option
        return opts


COMPILER_OPTIONS = _cpu_compiler_options()


def fast_jit(f, **kw):
    """``jax.jit`` compiled with :data:`COMPILER_OPTIONS`."""
    return jax.jit(f, compiler_options=COMPILER_OPTIONS, **kw)


def config_from_meta(meta: dict) -> yolo.YoloConfig:
    kw = dict(meta["set_yolo_params_python_kwargs"])
    for k, v in kw.items():
        if isinstance(v, str) and v.startswith(("np.", "cnn.")):
            kw[k] = eval(v.split("#")[0], {"np": np, "cnn": yolo})  # noqa: S307 (test data)
    hc = meta["harness_config"]
    return yolo.make_config(hc["in_dims"], hc["area"], **kw)


class Case:
    def __init__(self, name: str):
        self.name = name
        self.dir = LOSS_DIR / name
        self.meta = json.loads((self.dir / "meta.json").read_text())
        self.cfg = config_from_meta(self.meta)
        self.swap = (self.dir / "display_err_swapfixed.npy").exists()

    def npy(self, stem: str) -> np.ndarray:
        return np.load(self.dir / f"{stem}.npy")

    def display_ref(self, stem: str) -> np.ndarray:
        return self.npy(stem + "_swapfixed" if self.swap else stem)

    @property
    def loss_ref(self) -> dict:
        key = "gpu_equivalent_swapfixed" if self.swap else "gpu_equivalent"
        return self.meta["loss"][key]


@functools.lru_cache(maxsize=None)
def case(name: str) -> Case:
    return Case(name)


def cl(a, cfg: yolo.YoloConfig) -> np.ndarray:
    """CIANNA's ``[N, F, G2, G1, G0]`` -> the channel-last layout the functions take."""
    return layout.from_cianna(np.asarray(a), cfg.nb_box)


def per_box_cianna(a, cfg: yolo.YoloConfig, extra=()) -> np.ndarray:
    """Per-box results ``(N, *grid, B, *extra)`` -> the goldens' ``(N, G2, G1, G0, B,
    *extra)`` (``extra`` (2,) for IoU monitors)."""
    G0, G1, G2 = cfg.grid
    return np.asarray(a).reshape((-1, G2, G1, G0, cfg.nb_box) + tuple(extra))


def as_cianna(terms: yolo.YoloTerms, cfg: yolo.YoloConfig) -> yolo.YoloTerms:
    """Channel-last :class:`YoloTerms` -> numpy arrays in the goldens' layouts."""
    return yolo.YoloTerms(
        None if terms.delta is None else layout.to_cianna(np.asarray(terms.delta)),
        None if terms.display is None else layout.to_cianna(np.asarray(terms.display)),
        None if terms.iou_monitor is None else per_box_cianna(terms.iou_monitor, cfg, (2,)),
        None if terms.box_locked is None else per_box_cianna(terms.box_locked, cfg))


@functools.lru_cache(maxsize=None)
def computed(name: str):
    """(activated output, terms, stats) of a golden case, computed once, in the goldens'
    layouts."""
    c = case(name)
    key = jax.random.key(0) if name in RANDOM_CASES else None

    def run(raw, target, key):
        out = yolo.activation(raw, c.cfg)
        terms = yolo.yolo_terms(out, target, c.cfg, nb_im_iter=c.meta["nb_im_iter"], key=key)
        return out, terms, yolo.stats_from_display(terms.display, terms.iou_monitor, c.cfg)

    out, terms, stats = fast_jit(run)(cl(c.npy("raw"), c.cfg), c.npy("target"), key)
    assert terms.delta.shape == out.shape and terms.display.shape == out.shape
    assert terms.iou_monitor.shape == out.shape[:-1] + (2,)
    assert terms.box_locked.shape == out.shape[:-1]
    return layout.to_cianna(np.asarray(out)), as_cianna(terms, c.cfg), stats


# --------------------------------------------------------------------------- goldens


@pytest.mark.parametrize("name", ALL_CASES)
def test_activation(name):
    out, _, _ = computed(name)
    np.testing.assert_allclose(out, case(name).npy("output"), rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", DET_CASES)
def test_delta_and_box_locks(name):
    _, terms, _ = computed(name)
    c = case(name)
    np.testing.assert_allclose(terms.delta, c.npy("delta"), rtol=0, atol=ATOL)
    np.testing.assert_array_equal(terms.box_locked, c.npy("box_locked"))


@pytest.mark.parametrize("name", ALL_CASES)
def test_display(name):
    _, terms, stats = computed(name)
    c = case(name)
    np.testing.assert_allclose(terms.display, c.display_ref("display_err"), rtol=0, atol=ATOL)
    np.testing.assert_allclose(terms.iou_monitor, c.display_ref("iou_monitor"), rtol=0,
                               atol=ATOL)
    ref = c.loss_ref
    np.testing.assert_allclose(float(stats.total), ref["display_total_sum"], rtol=1e-5)
    np.testing.assert_allclose(float(np.sum(terms.display)), ref["display_total_sum"],
                               rtol=1e-5)
    n_img = terms.display.shape[0]
    parts = np.asarray(stats.parts) / n_img
    np.testing.assert_allclose(parts, [ref["displayed_parts_mean"][p] for p in PART_NAMES],
                               rtol=1e-5, atol=1e-7)
    assert int(stats.n_monitor) == ref["n_monitor_entries"]
    for field in ("M_IoU", "M_Obj", "P_Good"):
        got = float(getattr(stats, field))
        if ref[field] is None:
            assert np.isnan(got)
        else:
            np.testing.assert_allclose(got, ref[field], rtol=1e-5, atol=1e-7)


def test_nonsquare_grid_display_is_swap_fixed():
    _, terms, _ = computed("s3d_nonsquare_grid")
    c = case("s3d_nonsquare_grid")
    assert c.swap
    np.testing.assert_allclose(float(np.sum(terms.display)), 2.128531, rtol=1e-6)
    buggy = c.npy("display_err")
    assert not np.allclose(terms.display, buggy)
    # the target cell (3, 0) of image 0 carries the size/probability/objectness terms
    np.testing.assert_allclose(terms.display[0, 3:5, 0, 0, 3], [0.480453] * 2, atol=1e-6)


def test_spec_numbers():
    """A few numbers of cianna_yolo.md section 8 read off the computed arrays."""
    _, t3, _ = computed("s3_one_target_natural")
    np.testing.assert_allclose(t3.delta[0, :10, 0, 1, 0],
                               [0, 0, 0, 1.386294, 1.386294, 0, -0.12, -0.0625, 0.12, -0.12],
                               atol=1e-6)
    np.testing.assert_allclose(t3.delta[0, 6:8, 0, 0, 0], [0.024, 0.048], atol=1e-6)
    np.testing.assert_allclose(t3.iou_monitor[0, 0, 1, 0, 0], [0.5, 0.25], atol=1e-6)
    _, t4, _ = computed("s4_lock_per_box_lambda")
    np.testing.assert_array_equal(t4.box_locked[0, 0, 0, 0], [1, 2])
    np.testing.assert_allclose(t4.delta[0, :8, 0, 0, 0], 0.0)          # locked box 0
    np.testing.assert_allclose(t4.delta[0, 8 + 6:8 + 8, 0, 0, 0], [-0.12, -0.245], atol=1e-6)
    _, t7, _ = computed("s7_difficult_classonly_complete")
    per_image = t7.display.reshape(5, -1).sum(axis=1)
    np.testing.assert_allclose(per_image, [0.27648, 0.79306, 0.56266, 0.56266, 0.59296],
                               atol=2e-5)


@pytest.mark.parametrize("name", ["yolo_a1_2d_c0_p0_giou", "yolo_a3_2d_c3_p0_diou_sigmoid"])
def test_end_to_end_case_forward_loss(name):
    """Part-A cases: harness delta/display on CIANNA's own activated forward outputs."""
    d = GOLDEN / name
    meta = json.loads((d / "meta.json").read_text())
    kw = {k: v for k, v in meta["set_yolo_params_kwargs"].items() if k != "network"}
    kw["prior_size"] = eval(kw["prior_size"], {"np": np})  # noqa: S307 (test data)
    cfg = yolo.make_config(meta["init"]["in_dim"], meta["yolo_grid_G0_G1_G2"], **kw)
    out = np.load(d / "output_activated.npy")
    out = out.reshape((out.shape[0],) + cfg.output_shape)
    target = np.load(d / "target.npy")

    def run(out, target):
        t = yolo.yolo_terms(out, target, cfg, nb_im_iter=1)
        return t, yolo.stats_from_display(t.display, t.iou_monitor, cfg)

    t_cl, stats = fast_jit(run)(cl(out, cfg), target)
    terms = as_cianna(t_cl, cfg)
    np.testing.assert_allclose(terms.delta, np.load(d / "test_delta_gpuemu.npy").reshape(out.shape),
                               rtol=0, atol=ATOL)
    np.testing.assert_allclose(terms.display,
                               np.load(d / "test_display_err_gpuemu.npy").reshape(out.shape),
                               rtol=0, atol=ATOL)
    # error.txt: iter, total/n, six parts/n (printed with %g)
    n = out.shape[0]
    line = [float(v) for v in meta["analysis"]["forward_display_loss"]["error_txt_lines"][0][1:]]
    np.testing.assert_allclose(float(stats.total) / n, line[0], rtol=2e-5)
    np.testing.assert_allclose(np.asarray(stats.parts) / n, line[1:], rtol=2e-5, atol=1e-6)
    printed = meta["analysis"]["forward_display_loss"]["printed"]["Loss_dist_printed"]
    for field in ("M_IoU", "M_Obj", "P_Good"):
        assert f"{float(getattr(stats, field)):.4f}" == printed[field]


# --------------------------------------------------------------------------- gradient


def _with_padding_row(c: Case):
    raw = c.npy("raw")
    tgt = c.npy("target")
    raw = np.concatenate([raw, np.zeros_like(raw[:1])])
    tgt = np.concatenate([tgt, np.zeros_like(tgt[:1])])
    return raw, tgt


@pytest.mark.parametrize("name", ["s3b_params_fit1", "s3c_softmax_diou",
                                  "s1_activation_softmax_slopes"])
def test_grad_of_yolo_loss_is_delta(name):
    c = case(name)
    cfg, nb = c.cfg, c.meta["nb_im_iter"]
    raw, tgt = _with_padding_row(c)  # plus one padding slot: zero input, zero target row
    raw = cl(raw, cfg)

    @fast_jit
    def run(raw, tgt):
        per_image, grad = jax.value_and_grad(
            lambda r: yolo.yolo_loss(r, tgt, cfg, nb_im_iter=nb, loss_scale=4.0,
                                     grads="cianna").sum())(raw)
        out = yolo.activation(raw, cfg)
        delta, display = yolo.delta_and_display(out, tgt, cfg, nb_im_iter=nb)
        per = yolo.yolo_loss(raw, tgt, cfg, nb_im_iter=nb)
        return per_image, grad, delta, display, per

    total, grad, delta, display, per = jax.tree.map(np.asarray, run(raw, tgt))
    np.testing.assert_array_equal(grad, 4.0 * delta)
    delta, display = layout.to_cianna(delta), layout.to_cianna(display)
    n = c.npy("raw").shape[0]
    np.testing.assert_allclose(delta[:n], c.npy("delta"), rtol=0, atol=ATOL)
    np.testing.assert_allclose(per, display.reshape(display.shape[0], -1).sum(axis=1),
                               rtol=1e-6)
    np.testing.assert_allclose(total, per.sum(), rtol=1e-6)
    # the padding row is not masked: pure background gradient (prob/obj of every box)
    o = layout.to_cianna(np.asarray(yolo.activation(raw[-1:], cfg)))
    K = cfg.channels_per_box
    assert np.all(delta[-1].reshape(cfg.nb_box, K, -1)[:, np.r_[0:6, 8:K]] == 0)
    prob = o[0].reshape(cfg.nb_box, K, -1)[:, 6]
    lam = np.float32(0.2)
    np.testing.assert_allclose(delta[-1].reshape(cfg.nb_box, K, -1)[:, 6],
                               lam * prob * (1 - prob) * (prob - 0.02), atol=1e-7)


def test_grad_unit_and_jit_equals_eager():
    c = case("s6_multi_target")
    raw, tgt = cl(c.npy("raw"), c.cfg), c.npy("target")
    g = jax.grad(lambda r: yolo.yolo_loss(r, tgt, c.cfg, nb_im_iter=1).sum())(raw)
    _, terms, _ = computed("s6_multi_target")
    np.testing.assert_array_equal(layout.to_cianna(np.asarray(g)), terms.delta)
    # straight-through activation derivative through the custom VJP
    out, vjp = jax.vjp(lambda r: yolo.activation(r, c.cfg), jnp.asarray(raw))
    ones = jnp.ones_like(out)
    (dx,) = vjp(ones)
    o = np.asarray(out).reshape(-1, c.cfg.channels_per_box)      # one row per box
    dx = np.asarray(dx).reshape(o.shape)
    np.testing.assert_allclose(dx[:, [0, 1, 6, 7]], (o * (1 - o))[:, [0, 1, 6, 7]], rtol=1e-6)
    np.testing.assert_array_equal(dx[:, [2, 5]], 0.0)
    np.testing.assert_array_equal(dx[:, [3, 4]], 1.0)


def test_activation_straight_through_on_clipped_values():
    c = case("s1_activation")
    raw = cl(c.npy("raw"), c.cfg)  # contains saturated position / probability / size / parameter
    o, vjp = jax.vjp(lambda r: yolo.activation(r, c.cfg), jnp.asarray(raw))
    (dx,) = vjp(jnp.ones_like(o))
    o, dx = np.asarray(o)[0, 0, 0, 0], np.asarray(dx)[0, 0, 0, 0]    # image 0, cell 0, box 0
    np.testing.assert_allclose(o, [0.5, 0.997527, 0.5, 1.6, -0.5, 0, 0.002473, 0.731059,
                                   0.731059, 0.880797, 1.2], atol=1e-6)
    sig = [1, 6, 7, 8, 9]
    np.testing.assert_allclose(dx[sig], o[sig] * (1 - o[sig]), rtol=1e-6)
    np.testing.assert_array_equal(dx[[3, 4, 10]], 1.0)                 # clipped but kept
    np.testing.assert_array_equal(dx[[2, 5]], 0.0)                      # forced z channels
    # softmax classes: the usual Jacobian
    cs = case("s1_activation_softmax_slopes")
    g = np.zeros((2,) + cs.cfg.output_shape, np.float32)
    g[:, 8] = 1.0
    o, vjp = jax.vjp(lambda r: yolo.activation(r, cs.cfg), jnp.asarray(cl(cs.npy("raw"), cs.cfg)))
    (dx,) = vjp(jnp.asarray(cl(g, cs.cfg)))
    o = layout.to_cianna(np.asarray(o))[:, :, 0, 0, 0]
    dx = layout.to_cianna(np.asarray(dx))[:, :, 0, 0, 0]
    np.testing.assert_allclose(dx[:, 8], o[:, 8] * (1 - o[:, 8]), rtol=1e-6)
    np.testing.assert_allclose(dx[:, 9], -o[:, 8] * o[:, 9], rtol=1e-6)
    np.testing.assert_allclose(dx[:, 0], 0.0)


def test_vmap_over_images_matches_batch():
    c = case("s7_difficult_classonly_complete")
    out, terms, _ = computed(c.name)
    tgt = c.npy("target")
    per = fast_jit(jax.vmap(lambda o, t: yolo.delta_and_display(
        o[None], t[None], c.cfg, nb_im_iter=1)))(cl(out, c.cfg), tgt)
    np.testing.assert_allclose(layout.to_cianna(np.asarray(per[0])[:, 0]), terms.delta,
                               rtol=0, atol=1e-7)
    np.testing.assert_allclose(layout.to_cianna(np.asarray(per[1])[:, 0]), terms.display,
                               rtol=0, atol=1e-7)


def test_display_stats_and_n_valid():
    c = case("s7_difficult_classonly_natural")
    out, terms, stats = computed(c.name)

    @fast_jit
    def run(out, target, display):
        st = yolo.display_stats(out, target, c.cfg)
        return st, yolo.stats_from_display(display, st.iou_monitor, c.cfg, n_valid=2)

    st, st2 = run(cl(out, c.cfg), c.npy("target"), cl(terms.display, c.cfg))
    np.testing.assert_allclose(st.parts, stats.parts, rtol=1e-6)
    np.testing.assert_array_equal(per_box_cianna(st.iou_monitor, c.cfg, (2,)), terms.iou_monitor)
    # only the first 2 images counted in the sums, monitor statistics over all images
    np.testing.assert_allclose(float(st2.total), terms.display[:2].sum(), rtol=1e-6)
    assert float(st2.M_IoU) == float(st.M_IoU)
    np.testing.assert_allclose(float(st2.M_IoU), float(stats.M_IoU), rtol=1e-6)


def _exact_problem(iou_type: str):
    """A 2x2 grid, two boxes, every target alone in its cell (so the natural display
    associates it with the box of largest IoU)."""
    cfg = yolo.make_config([32, 32], [2, 2], nb_box=2, max_nb_obj_per_image=2,
                           prior_size=[[12.0, 20.0], [10.0, 24.0]], prior_noobj_prob=[0.3, 0.6],
                           IoU_type=iou_type, rand_startup=0)
    rng = np.random.default_rng(1)
    raw = rng.normal(0.0, 0.5, (2, 2, 2, 2, 8)).astype(np.float32)     # (N, G1, G0, B, K)
    # (class, xmin, ymin, zmin, xmax, ymax, zmax): cells (x, y) = (0, 0), (1, 1); (1, 0)
    boxes = [[[1, 2, 3, 0, 14, 20, 1], [1, 18, 20, 0, 30, 30, 1]], [[1, 19, 1, 0, 29, 28, 1]]]
    tgt = np.zeros((2, cfg.target_len), np.float32)
    for n, bs in enumerate(boxes):
        tgt[n, 0] = len(bs)
        tgt[n, 1:1 + 7 * len(bs)] = np.ravel(bs)
    return cfg, raw, tgt, [np.asarray(bs, np.float32)[:, 1:] for bs in boxes]


def _display_formula(raw, cfg, tboxes):
    """CIANNA's natural displayed loss of :func:`_exact_problem`, written out in jnp."""
    o = yolo.activation(raw, cfg, grads="exact")                       # (N, G1, G0, B, K)
    cell = np.asarray(cfg.cell, np.float32)
    pri = np.asarray(cfg.priors_floored, np.float32)                   # (B, 3)
    lam = np.asarray(cfg.prior_noobj_prob, np.float32)
    w = cfg.error_scales
    lo, hi = np.exp(np.float32(cfg.slopes_and_maxes[1][2])), np.exp(np.float32(cfg.slopes_and_maxes[1][1]))
    cy, cx = np.meshgrid(np.arange(2), np.arange(2), indexing="ij")
    cxy = np.stack([cx, cy, np.zeros_like(cx)], -1)[:, :, None, :]    # (G1, G0, 1, 3)
    total = 0.0
    for n, tb in enumerate(tboxes):
        ctr = (o[n, ..., 0:3] + cxy) * cell
        ext = pri * jnp.exp(o[n, ..., 3:6])
        pred = jnp.concatenate([ctr - ext / 2, ctr + ext / 2], -1)    # (G1, G0, B, 6)
        ious = [yolo.iou(pred, t, cfg.IoU_type) for t in tb]
        locked = jnp.any(jnp.stack([i > cfg.IoU_limits[0] for i in ious]), axis=0)
        assoc = jnp.zeros(locked.shape, bool)
        for t, i in zip(tb, ious):
            x, y = (0.5 * (t[:2] + t[3:5]) // cell[:2]).astype(int)
            b = jnp.argmax(i[y, x])                                    # largest IoU
            assoc = assoc.at[y, x, b].set(True)
            ob = o[n, y, x, b]
            t_pos = (0.5 * (t[:2] + t[3:5]) - np.array([x, y]) * cell[:2]) / cell[:2]
            t_size = jnp.log(jnp.clip((t[3:5] - t[:2]) / jnp.asarray(pri)[b, :2], lo, hi))
            i_star = jnp.minimum(i[y, x, b], 0.98)
            total += 0.5 * w[0] * jnp.sum(jnp.square(ob[0:2] - t_pos))
            total += 0.5 * w[1] * jnp.sum(jnp.square(ob[3:5] - t_size))
            total += 0.5 * w[2] * jnp.square(ob[6] - 0.98)
            total += 0.5 * w[3] * jnp.square(ob[7] - 0.5 * (1.0 + i_star))
        free = ~locked & ~assoc
        noobj = 0.5 * lam * (w[2] * jnp.square(o[n, ..., 6] - 0.02)
                             + w[3] * jnp.square(o[n, ..., 7] - 0.02))
        total += jnp.sum(jnp.where(free, noobj, 0.0))
    return total


@pytest.mark.parametrize("iou_type", ["GIoU", "DIoU"])
def test_exact_gradient_is_autodiff_of_the_display_formula(iou_type):
    cfg, raw, tgt, tboxes = _exact_problem(iou_type)

    def loss(r, grads, scale=1.0):
        return jnp.sum(yolo.yolo_loss(r, tgt, cfg, nb_im_iter=1, grads=grads, loss_scale=scale,
                                      kernel="xla"))

    @fast_jit   # one program (the formula, run op by op, compiles each of its operations)
    def run(raw):
        return (jax.value_and_grad(loss)(raw, "exact"),
                jax.value_and_grad(_display_formula)(raw, cfg, tboxes),
                jax.value_and_grad(loss)(raw, "cianna"),
                jax.value_and_grad(loss)(raw, "exact", 4.0),
                yolo.yolo_terms(yolo.activation(raw, cfg), tgt, cfg, nb_im_iter=1).iou_monitor)

    (v_exact, g_exact), (v_form, g_form), (v_cianna, g_cianna), (v4, g4), monitor = \
        jax.tree.map(np.asarray, run(jnp.asarray(raw)))
    np.testing.assert_allclose(float(v_exact), float(v_form), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g_exact), np.asarray(g_form), rtol=1e-5, atol=1e-7)
    # same displayed value as "cianna"; here (nothing clips, no IoU gating) the gradients
    # differ only through IoU* (a function of the predicted box), which CIANNA holds
    # constant: on the associated boxes' position and size channels
    np.testing.assert_allclose(float(v_cianna), float(v_exact), rtol=1e-6)
    assoc = monitor[..., 0] > -0.98
    assert assoc.sum() == 3
    np.testing.assert_allclose(g_exact[~assoc], g_cianna[~assoc], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g_exact[assoc][:, 6:], g_cianna[assoc][:, 6:], rtol=1e-5)
    assert np.all(np.abs(g_exact[assoc][:, [0, 1, 3, 4]]
                         - g_cianna[assoc][:, [0, 1, 3, 4]]).max(axis=1) > 1e-3)
    # loss_scale scales the gradient, not the value
    np.testing.assert_allclose(float(v4), float(v_exact), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(g4), 4.0 * g_exact, rtol=1e-6, atol=1e-7)


def test_exact_activation_and_grads_errors():
    c = case("s1_activation")
    raw = jnp.asarray(cl(c.npy("raw"), c.cfg))   # saturated channels 1, 3, 6, 10
    (dx,) = jax.vjp(lambda r: yolo.activation(r, c.cfg, grads="exact"), raw)[1](
        jnp.ones(raw.shape))
    (dc,) = jax.vjp(lambda r: yolo.activation(r, c.cfg), raw)[1](jnp.ones(raw.shape))
    dx, dc = np.asarray(dx)[0, 0, 0, 0], np.asarray(dc)[0, 0, 0, 0]
    np.testing.assert_array_equal(dx[[1, 3, 6, 10]], 0.0)      # clipped: no exact gradient
    np.testing.assert_array_equal(dc[[3, 10]], 1.0)            # CIANNA's straight-through
    assert np.all(dc[[1, 6]] > 0)
    np.testing.assert_allclose(dx[[0, 4, 7, 8, 9]], dc[[0, 4, 7, 8, 9]], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(yolo.activation(raw, c.cfg, grads="exact")),
                                  np.asarray(yolo.activation(raw, c.cfg)))
    cfg, raw, tgt, _ = _exact_problem("GIoU")
    with pytest.raises(ValueError, match="grads"):
        yolo.yolo_loss(raw, tgt, cfg, nb_im_iter=1, grads="autodiff")
    with pytest.raises(ValueError, match="grads"):
        yolo.activation(raw, cfg, grads="true")
    with pytest.raises(ValueError, match="kernel"):
        yolo.yolo_loss(raw, tgt, cfg, nb_im_iter=1, grads="exact", kernel="pallas")
    # the display is never random: no key needed even where the association is random
    v = fast_jit(lambda r, t: yolo.yolo_loss(r, t, cfg, nb_im_iter=0, grads="exact"))(raw, tgt)
    assert v.shape == (2,) and np.all(np.isfinite(np.asarray(v)))


def test_channel_last_layouts():
    """2D grids take (N, G1, G0, B, K) or (N, 1, G1, G0, B, K); results follow the input;
    CIANNA's channel-major layout is refused."""
    c = case("s6_multi_target")
    out5 = cl(c.npy("output"), c.cfg)
    out6 = layout.from_cianna(c.npy("output"), c.cfg.nb_box, nd=3)
    assert out5.ndim == 5 and out6.ndim == 6
    t5, t6 = fast_jit(lambda o5, o6, t: [yolo.yolo_terms(o, t, c.cfg, nb_im_iter=1)
                                         for o in (o5, o6)])(out5, out6, c.npy("target"))
    for a, b in zip(t5, t6):
        assert b.shape == (b.shape[0], 1) + a.shape[1:]
        np.testing.assert_array_equal(np.asarray(b)[:, 0], np.asarray(a))
    with pytest.raises(ValueError, match="channel-last"):
        yolo.yolo_terms(c.npy("output"), c.npy("target"), c.cfg, nb_im_iter=1)
    with pytest.raises(ValueError, match="channel-last"):
        yolo.activation(c.npy("raw"), c.cfg)


# --------------------------------------------------------------------------- randomness


def test_key_required_only_when_randomness_can_fire():
    c = case("s3_one_target_natural")   # rand_startup = 0
    out, terms, _ = computed(c.name)
    out = cl(out, c.cfg)
    tgt = c.npy("target")
    with pytest.raises(ValueError, match="key"):
        yolo.delta_and_display(out, tgt, c.cfg)              # nb_im_iter 0 <= rand_startup 0
    with pytest.raises(ValueError, match="key"):
        yolo.yolo_loss(cl(c.npy("raw"), c.cfg), tgt, c.cfg, nb_im_iter=0)
    assert not yolo.random_can_fire(c.cfg, 1)
    assert yolo.random_can_fire(c.cfg, 0)
    # a key given where nothing is random changes nothing
    d, _ = fast_jit(lambda o, t, k: yolo.delta_and_display(o, t, c.cfg, nb_im_iter=1, key=k))(
        out, tgt, jax.random.key(3))
    np.testing.assert_array_equal(layout.to_cianna(np.asarray(d)), terms.delta)
    with pytest.raises(ValueError, match="key"):
        jax.jit(lambda o, t, nb: yolo.delta_and_display(o, t, c.cfg, nb_im_iter=nb))(out, tgt, 1)
    with pytest.raises(ValueError, match="key"):
        yolo.delta_and_display(out, tgt, dataclasses.replace(c.cfg, rand_prob=0.5),
                               nb_im_iter=1)


@functools.lru_cache(maxsize=None)
def startup_fn():
    cfg = case("s8_rand_startup_active").cfg
    return fast_jit(lambda o, t, nb, k: yolo.yolo_terms(o, t, cfg, nb_im_iter=nb, key=k))


def test_random_startup_invariants():
    c = case("s8_rand_startup_active")   # B=3 priors 16/32/64, T1 and T2 in cell (0, 0)
    assert c.meta["nb_im_iter"] == 1000 and c.cfg.rand_startup == 1000
    out = cl(c.npy("output"), c.cfg)
    tgt = c.npy("target")
    f = startup_fn()
    K = c.cfg.channels_per_box
    pri = np.array(c.cfg.priors_floored)
    boxes = tgt[0, 1:].reshape(2, 7)[:, 1:7]
    ext = boxes[:, 3:5] - boxes[:, :2]
    # predicted boxes of cell (0, 0): centred at (16, 16), prior-sized
    pred = np.stack([np.r_[16 - pri[b, :2] / 2, 0, 16 + pri[b, :2] / 2, 1] for b in range(3)])
    ious = np.asarray(fast_jit(lambda p, t: yolo.iou(p, t, "GIoU"))(pred[:, None], boxes[None]))
    want = {}   # (box, target): size and objectness deltas of the box against the target
    for b in range(3):
        for j in range(2):
            size_t = np.log(np.clip(ext[j] / pri[b, :2], np.exp(-1.6), np.exp(1.6)))
            iou_j = min(float(ious[b, j]), 0.98)
            want[b, j] = 2 * (0 - size_t), 2 * 0.25 * (0.5 - (1 + iou_j) / 2)
    display_ref = c.npy("display_err")
    pairs = {}
    for seed in range(100):
        t = f(out, tgt, 1000, jax.random.key(seed))
        locked = np.asarray(t.box_locked)[0, 0, 0]          # image 0, cell (0, 0): (B,)
        chosen = tuple(np.flatnonzero(locked == 2))
        assert len(chosen) == 2, locked                    # distinct boxes
        pairs[chosen] = pairs.get(chosen, 0) + 1
        delta = np.asarray(t.delta)[0, 0, 0]                # (B, K)
        assert delta.shape == (3, K)
        for b in chosen:                                   # deltas against the chosen prior
            ok = False
            for j in range(2):
                want_size, want_obj = want[b, j]
                if (np.allclose(delta[b, 3:5], want_size, atol=1e-5)
                        and np.isclose(delta[b, 7], want_obj, atol=1e-5)):
                    ok = True
            assert ok, (seed, b, delta[b])
            np.testing.assert_allclose(delta[b, 6], 0.25 * (0.5 - 0.98), atol=1e-6)
        for b in set(range(3)) - set(chosen):
            if locked[b] == 0:
                np.testing.assert_allclose(delta[b, 6:8], [0.024, 0.048], atol=1e-6)
            else:
                np.testing.assert_allclose(delta[b], 0.0)
        # the display is never random
        np.testing.assert_allclose(layout.to_cianna(np.asarray(t.display)), display_ref,
                                   atol=ATOL)
    assert set(pairs) == {(0, 1), (0, 2), (1, 2)}
    assert min(pairs.values()) >= 15, pairs


def test_traced_nb_im_iter_switches_startup_off():
    c = case("s8_rand_startup_off")
    assert c.meta["nb_im_iter"] == 1001
    f = startup_fn()   # same configuration as the active case
    t = as_cianna(f(cl(c.npy("output"), c.cfg), c.npy("target"), 1001, jax.random.key(5)), c.cfg)
    np.testing.assert_allclose(t.delta, c.npy("delta"), atol=ATOL)
    np.testing.assert_array_equal(t.box_locked, c.npy("box_locked"))


def test_rand_prob_best_box_assoc_one_forces_best_prior():
    """With probability 1 the best-prior rule always fires: S5 association (box 0)."""
    ref = case("s5_low_iou_reassoc_natural_SIZE")
    kw = dict(ref.meta["set_yolo_params_python_kwargs"])
    kw["prior_size"] = np.array([[12.0, 40.0], [12.0, 16.0]], np.float32)
    kw["rand_prob_best_box_assoc"] = 1.0
    del kw["IoU_limits"]       # default low_IoU_best_box_assoc: the rule only fires by chance
    hc = ref.meta["harness_config"]
    cfg = yolo.make_config(hc["in_dims"], hc["area"], **kw)
    out, tgt = cl(ref.npy("output"), cfg), ref.npy("target")
    f = fast_jit(lambda o, t, k: yolo.delta_and_display(o, t, cfg, nb_im_iter=1, key=k))
    for seed in range(3):
        delta, display = f(out, tgt, jax.random.key(seed))
        np.testing.assert_allclose(layout.to_cianna(np.asarray(delta)), ref.npy("delta"),
                                   atol=ATOL)
        np.testing.assert_allclose(layout.to_cianna(np.asarray(display)),
                                   ref.npy("display_err"), atol=ATOL)
    # probability 0 (no key needed): greedy keeps box 1
    cfg0 = yolo.make_config(hc["in_dims"], hc["area"], **{**kw, "rand_prob_best_box_assoc": 0})
    delta0, _ = fast_jit(lambda o, t: yolo.delta_and_display(o, t, cfg0, nb_im_iter=1))(out, tgt)
    assert np.asarray(delta0)[0, 0, 0, 1, 6] == pytest.approx(-0.12, abs=1e-6)   # box 1, prob


def test_rand_prob_one_picks_random_free_box():
    ref = case("s4_lock_per_box_lambda")   # box 0 GIoU 0.5625, box 1 IoU 1 (greedy)
    kw = dict(ref.meta["set_yolo_params_python_kwargs"])
    kw["prior_size"] = np.array([[16.0, 12.0], [16.0, 12.0]], np.float32)
    kw["prior_noobj_prob"] = np.array([0.5, 0.1], np.float32)
    kw["rand_prob"] = 1.0
    hc = ref.meta["harness_config"]
    cfg = yolo.make_config(hc["in_dims"], hc["area"], **kw)
    f = fast_jit(lambda o, t, k: yolo.yolo_terms(o, t, cfg, nb_im_iter=1, key=k))
    seen = set()
    for seed in range(30):
        t = f(cl(ref.npy("output"), cfg), ref.npy("target"), jax.random.key(seed))
        locked = np.asarray(t.box_locked)[0, 0, 0]
        assert sorted(locked.tolist()) == [1, 2]   # one associated, the other locked (good IoU)
        b = int(np.argmax(locked == 2))
        seen.add(b)
        delta = np.asarray(t.delta)[0, 0, 0]                # (B, K) of cell (0, 0)
        iou_b = 0.98 if b == 1 else 0.5625
        np.testing.assert_allclose(delta[b, 7], 2 * 0.25 * (0.5 - (1 + iou_b) / 2), atol=1e-6)
        np.testing.assert_allclose(delta[1 - b], 0.0)
    assert seen == {0, 1}


def test_3d_single_target_hand_computed():
    cfg = yolo.make_config([32, 32, 32], [2, 2, 2], nb_box=1, max_nb_obj_per_image=1,
                           prior_size=[[16.0], [16.0], [16.0]], rand_startup=0)
    assert cfg.fit_dim == 3 and cfg.nb_filters == 8
    raw = np.zeros((1, 2, 2, 2, 1, 8), np.float32)    # (N, G2, G1, G0, B, K)
    # target 8^3 centred at (8, 24, 24): cell (0, 1, 1), predicted box [0,16]x[16,32]^2
    tgt = np.array([[1, 1, 4, 20, 20, 12, 28, 28]], np.float32)
    (delta, display), grad = fast_jit(lambda r, t: (
        yolo.delta_and_display(yolo.activation(r, cfg), t, cfg, nb_im_iter=1),
        jax.grad(lambda x: yolo.yolo_loss(x, t, cfg, nb_im_iter=1).sum())(r)))(raw, tgt)
    delta, display = np.asarray(delta)[0, ..., 0, :], np.asarray(display)[0]   # (z, y, x, K)
    np.testing.assert_array_equal(np.asarray(grad)[0, ..., 0, :], delta)
    iou_star = 0.125                                   # 512 / 4096, enclosing = predicted box
    np.testing.assert_allclose(delta[1, 1, 0],
                               [0, 0, 0, 1.386294, 1.386294, 1.386294, -0.12,
                                2 * 0.25 * (0.5 - (1 + iou_star) / 2)], atol=1e-6)
    others = np.ones((2, 2, 2), bool)
    others[1, 1, 0] = False
    np.testing.assert_allclose(delta[..., 6][others], 0.024, atol=1e-7)
    np.testing.assert_allclose(delta[..., 7][others], 0.048, atol=1e-7)
    want = 3 * 0.480453 + 0.1152 + (0.5 - 0.5625) ** 2 + 7 * 0.06912
    np.testing.assert_allclose(display.sum(), want, rtol=1e-5)


def test_no_target_slot_background_only():
    cfg = yolo.make_config([32, 32], [2, 2], nb_box=2, nb_class=1, max_nb_obj_per_image=0,
                           prior_size=[[8.0, 16.0], [8.0, 16.0]], rand_startup=0)
    assert cfg.target_len == 1
    delta, display = fast_jit(lambda raw, t: yolo.delta_and_display(
        yolo.activation(raw, cfg), t, cfg, nb_im_iter=1))(
        np.zeros((3, 2, 2, 2, cfg.channels_per_box), np.float32), np.zeros((3, 1), np.float32))
    d = np.asarray(delta)
    assert d.shape == (3, 2, 2, 2, cfg.channels_per_box)
    np.testing.assert_allclose(d[..., 6], 0.024, atol=1e-7)
    np.testing.assert_allclose(d[..., 7], 0.048, atol=1e-7)
    assert np.all(d[..., np.r_[0:6, 8]] == 0)
    np.testing.assert_allclose(np.asarray(display).sum(), 3 * 8 * 0.06912, rtol=1e-5)


def test_vectorised_random_box_equals_unrolled_draws(monkeypatch):
    """The reference picks random boxes from all 2B draws at once; the kernel's rule
    form unrolls them.  Crowded cells (more targets than boxes: no free box left for
    some draws) with rand_prob 1 and a traced start-up: the same associations."""
    cfg = yolo.make_config((32, 32, 1), (2, 2, 1), nb_box=3, max_nb_obj_per_image=6,
                           prior_size=np.array([[6.0, 10.0, 14.0], [6.0, 10.0, 14.0]],
                                               np.float32),
                           rand_prob=1.0, rand_prob_best_box_assoc=0.5, rand_startup=50)
    rng = np.random.default_rng(3)
    out = yolo.activation(jnp.asarray(rng.normal(0, 1, (4, 2, 2, 3, cfg.channels_per_box)),
                                      jnp.float32), cfg)
    tgt = np.zeros((4, cfg.target_len), np.float32)
    for n in range(4):
        tgt[n, 0] = 6
        for j in range(6):   # 4-6 targets in cell (0, 0), the rest elsewhere
            cx, cy = rng.uniform(1, 15, 2) if j < 4 + n % 3 else rng.uniform(17, 31, 2)
            w, h = rng.uniform(3, 12, 2)
            tgt[n, 1 + 7 * j:8 + 7 * j] = [1, cx - w / 2, cy - h / 2, 0, cx + w / 2, cy + h / 2, 1]
    key = jax.random.key(11)
    results = {}
    for form in ("vectorised", "unrolled"):
        def run(*args, **kw):   # a new function: traced again (jit caches traces by function)
            return yolo.loss._terms.__wrapped__(*args, **kw)

        run = jax.jit(run, static_argnames=("cfg", "startup_mode", "want_delta",
                                            "want_display"))
        if form == "unrolled":
            def draws(k, shape, dtype):
                def step(i):
                    u = jax.random.uniform(jax.random.fold_in(k, i), shape, dtype)
                    return lambda r: u[:, :, r, None, None]
                return step
            monkeypatch.setattr(yolo.loss, "_draws", draws)
        for nb in (10, 100):   # start-up on, off
            d, _, _, locked = run(out, jnp.asarray(tgt), jnp.asarray(nb, jnp.int32), key,
                                  cfg=cfg, startup_mode="traced", want_display=False)
            results[form, nb] = np.asarray(d), np.asarray(locked)
    for nb in (10, 100):
        np.testing.assert_array_equal(results["vectorised", nb][1], results["unrolled", nb][1])
        np.testing.assert_array_equal(results["vectorised", nb][0], results["unrolled", nb][0])
        assert (results["vectorised", nb][1][:, 0, 0] == 2).sum() >= 8   # crowded cell used


def test_unclassified_targets_train_their_boxes_only():
    """``unclassified_targets``: a target of class 0 is associated and its box fitted as
    if it had a class, its class outputs get no delta; without the flag class 0 is
    refused (CIANNA's classes are 1-based)."""
    cfg = yolo.make_config([32, 32], [2, 2], nb_box=1, nb_class=3, class_softmax=1,
                           max_nb_obj_per_image=2, prior_size=[[12.0], [12.0]], rand_startup=0,
                           unclassified_targets=1)
    raw = np.random.default_rng(0).normal(0, 1, (1, 2, 2, 1, cfg.channels_per_box))
    raw = raw.astype(np.float32)
    # two targets in cells (0, 0) and (1, 1): the second's class unknown (0), then 2
    rows = np.array([[2, 2, 2, 3, 0, 12, 13, 1, 0, 18, 17, 0, 29, 30, 1]], np.float32)
    known = rows.copy()
    known[0, 8] = 2
    run = fast_jit(lambda r, t: yolo.delta_and_display(yolo.activation(r, cfg), t, cfg,
                                                       nb_im_iter=1))
    (d0, s0), (d1, s1) = [jax.tree.map(np.asarray, run(raw, t)) for t in (rows, known)]
    assert np.all(d0[0, 1, 1, 0, 8:] == 0) and np.abs(d1[0, 1, 1, 0, 8:]).max() > 0.1
    np.testing.assert_array_equal(d0[0, 1, 1, 0, :8], d1[0, 1, 1, 0, :8])  # the box fitted
    np.testing.assert_array_equal(d0[0, 0, 0], d1[0, 0, 0])     # the classified target
    assert np.abs(d0[0, 0, 0, 0, 8:]).max() > 0.1
    assert s0.sum() < s1.sum()   # no class term in the displayed loss either
    assert "Targets of class 0: boxes fitted, classes not" in yolo.summary(cfg)
    yolo.check_targets(rows, cfg)
    with pytest.raises(ValueError, match=r"class 0 outside 1\.\.3"):
        yolo.check_targets(rows, dataclasses.replace(cfg, unclassified_targets=0))


def test_class_weights_scale_each_targets_class_term():
    """``class_weights``: the class deltas (and displayed terms) of a box associated with a
    target of class c are ``class_weights[c]`` times the unweighted ones; nothing else
    changes; a weight per class, finite and positive."""
    kw = dict(nb_box=1, nb_class=2, max_nb_obj_per_image=2, prior_size=[[12.0], [12.0]],
              rand_startup=0, error_type="complete")
    plain = yolo.make_config([32, 32], [2, 2], **kw)
    weighted = yolo.make_config([32, 32], [2, 2], class_weights=[0.5, 4.0], **kw)
    raw = np.random.default_rng(1).normal(0, 1, (1, 2, 2, 1, plain.channels_per_box))
    raw = raw.astype(np.float32)
    rows = np.array([[2, 1, 2, 3, 0, 12, 13, 1, 2, 18, 17, 0, 29, 30, 1]], np.float32)
    out = {}
    for name, cfg in (("plain", plain), ("weighted", weighted)):
        out[name] = jax.tree.map(np.asarray, fast_jit(lambda r, t, cfg=cfg: (
            yolo.delta_and_display(yolo.activation(r, cfg), t, cfg, nb_im_iter=1)))(raw, rows))
    (d0, s0), (d1, s1) = out["plain"], out["weighted"]
    np.testing.assert_allclose(d1[0, 0, 0, 0, 8:], 0.5 * d0[0, 0, 0, 0, 8:], rtol=1e-6)
    np.testing.assert_allclose(d1[0, 1, 1, 0, 8:], 4.0 * d0[0, 1, 1, 0, 8:], rtol=1e-6)
    assert np.abs(d0[..., 8:]).max() > 0.01
    np.testing.assert_array_equal(d1[..., :8], d0[..., :8])
    np.testing.assert_allclose(s1[0, 1, 1, 0, 8:], 4.0 * s0[0, 1, 1, 0, 8:], rtol=1e-6)
    assert "Class loss weights : [ 0.500  4.000 ]" in yolo.summary(weighted)
    for bad in ([1.0], [1.0, 0.0], [1.0, np.inf]):
        with pytest.raises(ValueError, match="class_weights must be 2 .nb_class. finite"):
            yolo.make_config([32, 32], [2, 2], class_weights=bad, **kw)
