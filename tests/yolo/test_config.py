"""YOLO configuration: defaults, sentinels, validation, printout (cianna_yolo.md section 1)."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cianna_jax import checks, yolo
from cianna_jax.yolo.config import DEFAULT_IOU_LIMITS

LOSS_DIR = Path(__file__).resolve().parents[1] / "data" / "golden" / "yolo_loss"
LOSS_CASES = sorted(p.name for p in LOSS_DIR.iterdir()
                    if p.is_dir() and p.name != "s2_iou_family")


def config_from_meta(meta: dict) -> yolo.YoloConfig:
    """Build the config of a loss golden case from its recorded Python call."""
    kw = dict(meta["set_yolo_params_python_kwargs"])
    for k, v in kw.items():
        if isinstance(v, str) and v.startswith(("np.", "cnn.")):
            kw[k] = eval(v.split("#")[0], {"np": np, "cnn": yolo})  # noqa: S307 (test data)
    hc = meta["harness_config"]
    return yolo.make_config(hc["in_dims"], hc["area"], **kw)


def base(**kw):
    args = dict(nb_box=2, nb_class=3, nb_param=1, max_nb_obj_per_image=4,
                prior_size=[[16.0, 32.0], [16.0, 24.0]])
    args.update(kw)
    return yolo.make_config([64, 64], [4, 4], **args)


# --------------------------------------------------------------------------- helpers


def test_helper_arrays_and_sentinels():
    fp = yolo.set_fit_parts(size=0, parameters=-1)
    assert fp.dtype == np.int32 and fp.tolist() == [-2, 0, -2, -2, -2, -1]
    es = yolo.set_error_scales(classes=0.4)
    assert es.dtype == np.float32 and es.shape == (6,)
    np.testing.assert_array_equal(es, np.float32([-1, -1, -1, -1, 0.4, -1]))
    lim = yolo.set_IoU_limits(low_IoU_best_box_assoc=0.5, diff_obj_lim=0.1)
    assert lim.dtype == np.float32 and lim.shape == (8,)
    np.testing.assert_array_equal(lim, np.float32([-2, 0.5, -2, -2, -2, -2, -2, 0.1]))
    sm = yolo.set_sm_single(slope=2, fmin=-3, fmax=4)
    np.testing.assert_array_equal(sm, np.float32([2, 4, -3]))          # [slope, max, min]
    np.testing.assert_array_equal(yolo.set_sm_single(), np.float32([-1, 1e5, -1e5]))
    table = yolo.set_slopes_and_maxes(size=yolo.set_sm_single(slope=0.5, fmin=-1, fmax=1))
    assert table.dtype == np.float32 and table.shape == (6, 3)
    np.testing.assert_array_equal(table[1], np.float32([0.5, 1, -1]))
    for p in (0, 2, 3, 4, 5):
        np.testing.assert_array_equal(table[p], np.float32([-1, 1e5, -1e5]))


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("kind", ["IoU", "GIoU", "DIoU", "DIoU2"])
def test_default_limits_per_iou_type(kind):
    cfg = base(IoU_type=kind)
    np.testing.assert_allclose(cfg.IoU_limits, DEFAULT_IOU_LIMITS[kind], rtol=0, atol=1e-7)
    expected = {"IoU": (0.5, 0.1, 0.0, 0.0, 0.2, 0.2, 0.5, 0.3),
                "GIoU": (0.4, -0.5, -1.0, -1.0, -0.3, -0.3, 0.4, 0.2),
                "DIoU": (0.3, -0.6, -1.0, -1.0, -0.5, -0.5, 0.3, 0.1),
                "DIoU2": (0.3, -0.5, -1.0, -1.0, -0.4, -0.4, 0.3, 0.1)}[kind]
    np.testing.assert_allclose(cfg.IoU_limits, expected, atol=1e-7)
    # a partial setting keeps the type defaults elsewhere; entries <= -1.99 are sentinels
    lim = yolo.set_IoU_limits(good_IoU_lim=0.7, min_prob_IoU_lim=-1.5, min_obj_IoU_lim=-1.995)
    cfg = base(IoU_type=kind, IoU_limits=lim)
    want = list(expected)
    want[0], want[2] = 0.7, -1.5
    np.testing.assert_allclose(cfg.IoU_limits, want, atol=1e-7)


def test_defaults_resolved():
    cfg = yolo.make_config([32, 32], [2, 2], nb_box=1, nb_class=2, nb_param=1,
                           prior_size=np.array([[16.0], [16.0]], "float32"))
    assert cfg.fit_dim == 2
    assert cfg.prior_size == ((16.0, 16.0, 0.0),)
    assert cfg.priors_floored == ((16.0, 16.0, 1.0),)
    assert cfg.prior_noobj_prob == (np.float32(0.2),)
    assert cfg.error_scales == (2.0, 2.0, 1.0, 2.0, 1.0, 1.0)
    assert cfg.slopes_and_maxes == ((1.0, 6.0, -6.0), (1.0, np.float32(1.6), np.float32(-1.6)),
                                    (1.0, 6.0, -6.0), (1.0, 6.0, -6.0), (1.0, 6.0, -6.0),
                                    (1.0, np.float32(1.2), np.float32(-0.2)))
    assert cfg.param_ind_scales == (1.0,)
    assert cfg.fit_parts == (1, 1, 1, 1, 1, 1)
    assert (cfg.IoU_type, cfg.prior_dist_type, cfg.error_type) == ("GIoU", "SIZE", "natural")
    assert cfg.rand_startup == 64000
    assert cfg.nb_filters == 11                       # spec S1: 1*(8+2+1)
    assert cfg.cell == (16, 16, 1)
    assert cfg.target_len == 1
    # no classes / params -> those parts are not fitted by default
    cfg0 = yolo.make_config([32, 32], [2, 2], nb_box=1, prior_size=[[16], [16]])
    assert cfg0.fit_parts == (1, 1, 1, 1, -1, -1)
    # explicit flags win over the defaults, -2 keeps them
    cfg1 = yolo.make_config([32, 32], [2, 2], nb_box=1, prior_size=[[16], [16]],
                            fit_parts=yolo.set_fit_parts(position=0, classes=1))
    assert cfg1.fit_parts == (0, 1, 1, 1, 1, -1)


def test_sentinels_and_clamps():
    cfg = base(error_scales=yolo.set_error_scales(position=12, size=0, classes=0.4),
               slopes_and_maxes=yolo.set_slopes_and_maxes(
                   position=yolo.set_sm_single(slope=0.5),
                   size=yolo.set_sm_single(fmax=1.2),
                   parameters=yolo.set_sm_single(slope=0, fmin=-1)),
               rand_startup=-5, rand_prob=-0.3, rand_prob_best_box_assoc=-1,
               min_prior_forced_scaling=-2.0, diff_flag=1, class_softmax=3)
    assert cfg.error_scales == (12.0, 2.0, 1.0, 2.0, np.float32(0.4), 1.0)
    assert cfg.slopes_and_maxes[0] == (0.5, 6.0, -6.0)
    assert cfg.slopes_and_maxes[1] == (1.0, np.float32(1.2), np.float32(-1.6))
    assert cfg.slopes_and_maxes[5] == (1.0, np.float32(1.2), -1.0)
    assert cfg.rand_startup == 64000
    assert cfg.rand_prob == 0.0 and cfg.rand_prob_best_box_assoc == 0.0
    assert cfg.min_prior_forced_scaling == 0.0
    assert cfg.diff_flag == 1 and cfg.class_softmax == 1
    assert cfg.target_len == 1 + 4 * (7 + 1 + 1)
    assert cfg.nb_filters == 2 * (8 + 3 + 1)


def test_priors_fit_dim_and_dims():
    # prior_size (n_dim, B); dims >= fit_dim zeroed, floored at 1 for the loss
    cfg = yolo.make_config([64, 64, 16], [4, 4, 2], nb_box=2,
                           prior_size=[[8, 0.5], [4, 6], [2, 3]], fit_dim=2)
    assert cfg.fit_dim == 2
    assert cfg.prior_size == ((8.0, 4.0, 0.0), (0.5, 6.0, 0.0))
    assert cfg.priors_floored == ((8.0, 4.0, 1.0), (1.0, 6.0, 1.0))
    cfg3 = yolo.make_config([64, 64, 16], [4, 4, 2], nb_box=2,
                            prior_size=np.array([[8, 6], [4, 6], [2, 3]], np.float64))
    assert cfg3.fit_dim == 3 and cfg3.prior_size[1] == (6.0, 6.0, 3.0)
    assert cfg3.cell == (16, 16, 8)
    # no prior: all 0, fit_dim left as given
    cfg0 = yolo.make_config([32, 32], [2, 2], nb_box=1)
    assert cfg0.prior_size == ((0.0, 0.0, 0.0),) and cfg0.fit_dim == 0
    # prior_dist_type alias
    assert base(prior_dist_type="IOU").prior_dist_type == "IoU"
    assert base(prior_dist_type="IoU").prior_dist_type == "IoU"


def test_config_is_hashable_and_jit_static():
    a, b = base(), base()
    assert a == b and hash(a) == hash(b)
    assert a != base(IoU_type="DIoU")
    f = jax.jit(lambda x, cfg: x * cfg.nb_filters, static_argnums=1)
    assert float(f(jnp.float32(1.0), a)) == a.nb_filters


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("kw, exc, word", [
    (dict(prior_size=[[16.0, 32.0, 8.0], [16.0, 24.0, 8.0]]), ValueError, "prior_size"),
    (dict(prior_size=[16.0, 32.0]), ValueError, "prior_size"),
    (dict(prior_size=np.ones((4, 2))), ValueError, "prior_size"),
    (dict(prior_noobj_prob=[0.1, 0.2, 0.3]), ValueError, "prior_noobj_prob"),
    (dict(param_ind_scales=[1.0, 2.0]), ValueError, "param_ind_scales"),
    (dict(fit_dim=3), ValueError, "fit_dim"),
    (dict(IoU_type="giou"), ValueError, "IoU_type"),
    (dict(IoU_type="empty"), ValueError, "IoU_type"),
    (dict(prior_dist_type="size"), ValueError, "prior_dist_type"),
    (dict(error_type="NATURAL"), ValueError, "error_type"),
    (dict(error_scales=[1.0, 2.0]), ValueError, "error_scales"),
    (dict(IoU_limits=np.zeros(7)), ValueError, "IoU_limits"),
    (dict(slopes_and_maxes=np.zeros((6, 2))), ValueError, "slopes_and_maxes"),
    (dict(fit_parts=[1, 1, 1, 1, 2, 1]), ValueError, "fit_parts"),
    (dict(nb_box="2"), TypeError, "nb_box"),
    (dict(nb_class=-1), ValueError, "nb_class"),
    (dict(IoU_type=3), TypeError, "IoU_type"),
    (dict(prior_noobj_prob=["a", "b"]), TypeError, "prior_noobj_prob"),
    (dict(rand_prob="0.1"), TypeError, "rand_prob"),
    # one policy (cianna_jax.checks): ints refuse floats, even integral ones, as CIANNA
    (dict(nb_box=2.0), TypeError, "nb_box"),
    (dict(nb_class=np.float32(3)), TypeError, "nb_class"),
    (dict(max_nb_obj_per_image=1.5), TypeError, "max_nb_obj_per_image"),
    (dict(nb_box=True), TypeError, "nb_box"),
    (dict(fit_dim=2.0), TypeError, "fit_dim"),
    (dict(rand_startup=100.0), TypeError, "rand_startup"),
    (dict(strict_box_size=0.5), TypeError, "strict_box_size"),
    (dict(class_softmax=1.0), TypeError, "class_softmax"),
    (dict(fit_parts=np.ones(6)), TypeError, "fit_parts"),
    (dict(fit_parts=[1, 1, 1, 1, 0.5, 1]), TypeError, "fit_parts"),
    (dict(fit_parts=[1, 1, 1, 1]), ValueError, "fit_parts"),
    (dict(prior_size=[[16, 32], [16]]), ValueError, "prior_size"),
    (dict(prior_size=np.ones((2, 2), bool)), TypeError, "prior_size"),
    (dict(rand_prob=float("nan")), ValueError, "rand_prob"),
    (dict(rand_prob=True), TypeError, "rand_prob"),
    (dict(kernel="cuda"), ValueError, "kernel"),
])
def test_validation_errors_name_the_keyword(kw, exc, word):
    with pytest.raises(exc, match=word):
        base(**kw)


def test_geometry_validation():
    with pytest.raises(ValueError, match="grid"):
        yolo.make_config([32, 32], [0, 2])
    with pytest.raises(ValueError, match="in_dim"):
        yolo.make_config([32, 32, 1, 1], [2, 2])
    with pytest.raises(ValueError, match="fit_dim"):
        yolo.make_config([32, 32], [2, 2], fit_dim=4)
    with pytest.raises(TypeError, match="grid"):
        yolo.make_config([32, 32], [2.0, 2.0])
    with pytest.raises(TypeError, match="in_dim"):
        yolo.make_config(None, [2, 2])
    assert yolo.make_config(np.array([32, 16], np.int64), 2).grid == (2, 1, 1)


def test_numpy_integers_and_bool_flags_accepted():
    cfg = base(nb_box=np.int64(2), nb_class=np.int32(3), max_nb_obj_per_image=np.uint8(4),
               fit_parts=np.array([1, 1, 1, 1, 0, -2], np.int64), class_softmax=True,
               diff_flag=np.bool_(True), rand_prob=np.float16(0.5), rand_startup=np.int16(7))
    assert (cfg.nb_box, cfg.nb_class, cfg.max_nb_obj_per_image) == (2, 3, 4)
    assert all(type(v) is int for v in (cfg.nb_box, cfg.nb_class, cfg.rand_startup))
    assert cfg.fit_parts == (1, 1, 1, 1, 0, 1)
    assert cfg.class_softmax == 1 and cfg.diff_flag == 1 and cfg.rand_prob == 0.5


def test_helpers_check_their_keywords():
    with pytest.raises(TypeError, match="position"):
        yolo.set_fit_parts(position=0.5)
    with pytest.raises(TypeError, match="classes"):
        yolo.set_fit_parts(classes=1.0)
    with pytest.raises(TypeError, match="size"):
        yolo.set_error_scales(size="2")
    with pytest.raises(TypeError, match="diff_obj_lim"):
        yolo.set_IoU_limits(diff_obj_lim=None)
    with pytest.raises(TypeError, match="fmax"):
        yolo.set_sm_single(fmax="1")
    with pytest.raises(TypeError, match="objectness"):
        yolo.set_slopes_and_maxes(objectness=["a", "b", "c"])
    assert yolo.set_fit_parts(position=np.int8(0))[0] == 0
    assert yolo.set_error_scales(position=np.float64(3))[0] == 3.0


# --------------------------------------------------------------------------- cianna_jax.checks


@pytest.mark.parametrize("value", [3, np.int32(3), np.int64(3), np.uint16(3)])
def test_checks_as_int_accepts_integers(value):
    out = checks.as_int(value, "n", minimum=3)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize("value", [3.0, np.float32(3), 1.5, float("nan"), True, np.bool_(1),
                                   "3", None, np.array([3])])
def test_checks_as_int_refuses_non_integers(value):
    with pytest.raises(TypeError, match="^n_things: expected an int"):
        checks.as_int(value, "n_things")


def test_checks_scalars():
    with pytest.raises(ValueError, match="^n: expected an int >= 1, received 0"):
        checks.as_int(0, "n", minimum=1)
    assert checks.as_flag(True, "f") == 1 and checks.as_flag(np.int8(0), "f") == 0
    assert checks.as_flag(5, "f") == 5
    with pytest.raises(TypeError, match="^f: "):
        checks.as_flag(1.0, "f")
    assert checks.as_float(2, "x") == 2.0 and type(checks.as_float(np.float32(2), "x")) is float
    assert np.isnan(checks.as_float(float("nan"), "x"))
    with pytest.raises(ValueError, match="^x: expected a finite float"):
        checks.as_float(float("inf"), "x", finite=True)
    for bad in (True, "1.0", None, 1j):
        with pytest.raises(TypeError, match="^x: expected a float"):
            checks.as_float(bad, "x")
    assert checks.as_bounded_float(2, "r") == 2.0
    assert checks.as_bounded_float(0, "r", strict=False) == 0
    assert checks.as_bounded_float(np.float32(1.5), "r", low=1.0) == 1.5
    for bad, strict in ((0, True), (-1e-9, False), (float("nan"), True), (float("inf"), False),
                        (True, True), ("1", True), (None, True)):
        sign = ">" if strict else ">="
        with pytest.raises(ValueError, match=f"^r: expected a finite number {sign} 0, "):
            checks.as_bounded_float(bad, "r", strict=strict)
    assert checks.as_str("a", "s") == "a"
    with pytest.raises(TypeError, match="^s: expected a str"):
        checks.as_str(b"a", "s")
    assert checks.as_choice("IoU", "t", ("IoU", "GIoU")) == "IoU"
    with pytest.raises(ValueError, match=r"^t: expected one of \('IoU', 'GIoU'\)"):
        checks.as_choice("iou", "t", ("IoU", "GIoU"))


def test_checks_arrays():
    assert checks.as_triple(None, "s", 1) == (1, 1, 1)
    assert checks.as_triple(2, "s", 0) == (2, 0, 0)
    assert checks.as_triple([3, 4], "s", 1, minimum=1) == (3, 4, 1)
    assert checks.as_triple(np.array([3, 4, 5], np.uint8), "s") == (3, 4, 5)
    assert all(type(v) is int for v in checks.as_triple(np.int64(2), "s"))
    for bad, exc in (([3.0, 3.0], TypeError), (3.0, TypeError), ([True], TypeError),
                     (["3"], TypeError), ([1, 2, 3, 4], ValueError), ([], TypeError),
                     ([[1, 2]], ValueError), ([0, 1], ValueError)):
        with pytest.raises(exc, match="^s: "):
            checks.as_triple(bad, "s", 1, minimum=1)
    with pytest.raises(TypeError, match="^s: "):
        checks.as_triple(None, "s", required=True)
    arr = checks.as_int_array((1, -2), "a", shape=(2,))
    assert arr.dtype == np.int64 and arr.tolist() == [1, -2]
    with pytest.raises(ValueError, match=r"^a: expected shape \(3,\)"):
        checks.as_int_array([1, 2], "a", shape=(3,))
    with pytest.raises(TypeError, match="^a: expected integers"):
        checks.as_int_array([1.0, 2.0], "a")
    f = checks.as_float_array([[1, 2], [3, 4.5]], "p", shape=(2, 2))
    assert f.dtype == np.float32 and f[1, 1] == 4.5
    for bad in ([True, False], ["a"], [1j], [None]):
        with pytest.raises(TypeError, match="^p: expected numbers"):
            checks.as_float_array(bad, "p")
    with pytest.raises(ValueError, match="^p: expected a rectangular array"):
        checks.as_float_array([[1, 2], [3]], "p")


def test_lists_and_any_float_dtype_accepted():
    a = base(prior_size=np.array([[16, 32], [16, 24]], np.float64),
             prior_noobj_prob=np.array([0.5, 0.1], np.float16), param_ind_scales=[2])
    assert a.prior_noobj_prob == (np.float32(0.5), np.float32(np.float16(0.1)))
    assert a.param_ind_scales == (2.0,)
    assert a.prior_size == base().prior_size


# --------------------------------------------------------------------------- printout


@pytest.mark.parametrize("case", LOSS_CASES)
def test_summary_matches_cianna_printout(case):
    meta = json.loads((LOSS_DIR / case / "meta.json").read_text())
    cfg = config_from_meta(meta)
    assert yolo.summary(cfg) == (LOSS_DIR / case / "setup_log.txt").read_text()
    eff = meta["effective_params"]
    assert cfg.fit_dim == eff["fit_dim"]
    np.testing.assert_allclose(cfg.prior_size, eff["prior_size_per_box_whd"])
    np.testing.assert_allclose(cfg.priors_floored, eff["prior_size_floored_used_by_loss"])
    np.testing.assert_allclose(cfg.IoU_limits, list(eff["IoU_limits"].values()), atol=1e-7)
    np.testing.assert_allclose(cfg.error_scales, list(eff["error_scales"].values()), atol=1e-7)
    np.testing.assert_allclose(cfg.slopes_and_maxes,
                               list(eff["slopes_and_maxes_slope_max_min"].values()), atol=1e-7)
    assert list(cfg.fit_parts) == list(eff["fit_parts"].values())
    np.testing.assert_allclose(cfg.prior_noobj_prob, eff["prior_noobj_prob"], atol=1e-7)
    assert cfg.nb_filters == meta["network_equivalent"]["nb_filters"]
    assert cfg.target_len == meta["network_equivalent"]["out_dim"]
    assert cfg.cell == tuple(meta["network_equivalent"]["cell_size"])


def test_summary_spec_example():
    cfg = yolo.make_config([32, 32], [2, 2], nb_box=1, nb_class=2, nb_param=1,
                           prior_size=[[16], [16]], IoU_type="GIoU", prior_dist_type="SIZE",
                           error_type="natural", rand_startup=0)
    text = yolo.summary(cfg)
    assert "   = [ 1  1  1  1  1  1 ]" in text
    assert "   = [ 2.000  2.000  1.000  2.000  1.000  1.000 ]" in text
    assert "   = [  0.400  -0.500  -1.000  -1.000  -0.300  -0.300   0.400   0.200 ]" in text
    assert "Startup random association Nb. item : 0" in text
    assert "Individual param. error scaling" in text
    assert "D priors = [0.0000 ]" in text
    soft = yolo.summary(base(class_softmax=1, IoU_type="DIoU2", strict_box_size=3,
                             diff_flag=1, error_type="complete", prior_dist_type="OFFSET"))
    for line in ("IoU type = Distance DIoU2", "softmax-CrossEntropy",
                 "Strict association Nb. good priors = 3", "Difficult flag in use: True",
                 "Display error type : COMPLETE", "Prior dist. OFFSET"):
        assert line in soft
    assert "Classical IoU" in yolo.summary(base(IoU_type="IoU"))


# --------------------------------------------------------------------------- targets


def test_check_targets():
    cfg = base()  # C=3, P=1, max 4 objects, row length 1 + 4*8
    row = np.zeros(cfg.target_len, np.float32)
    row[0] = 2
    row[1:9] = [1, 2, 2, 0, 10, 10, 1, 0.5]
    row[9:17] = [3, 20, 20, 0, 40, 30, 1, 0.1]
    out = yolo.check_targets([row.tolist()], cfg)
    assert out.dtype == np.float32 and out.shape == (1, cfg.target_len)
    with pytest.raises(ValueError, match="target_len"):
        yolo.check_targets(np.zeros((2, cfg.target_len + 1)), cfg)
    bad = row.copy()
    bad[0] = 5
    with pytest.raises(ValueError, match="max_nb_obj_per_image"):
        yolo.check_targets(bad[None], cfg)
    bad[0] = -2
    with pytest.raises(ValueError, match="below -1"):
        yolo.check_targets(bad[None], cfg)
    bad = row.copy()
    bad[9] = 4
    with pytest.raises(ValueError, match="class"):
        yolo.check_targets(bad[None], cfg)
    bad = row.copy()
    bad[1:9] = [1, 12, 2, 0, 10, 10, 1, 0.5]
    with pytest.raises(ValueError, match="inverted"):
        yolo.check_targets(bad[None], cfg)
    only = np.zeros(cfg.target_len, np.float32)
    only[0] = -1
    with pytest.raises(ValueError, match="class-only"):
        yolo.check_targets(only[None], cfg)
    only[1:9] = row[1:9]
    yolo.check_targets(only[None], cfg)
    # C = 0: class 1 is still required
    cfg0 = base(nb_class=0)
    r0 = row.copy()
    r0[9] = 1
    yolo.check_targets(r0[None], cfg0)
    with pytest.raises(ValueError, match="class"):
        yolo.check_targets(row[None], cfg0)
