"""IoU family with the GPU semantics (cianna_yolo.md section 4.3, scenario S2)."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cianna_jax.yolo import iou, iou_corners

KINDS = ("IoU", "GIoU", "DIoU", "DIoU2")
S2 = Path(__file__).resolve().parents[1] / "data" / "golden" / "yolo_loss" / "s2_iou_family"


def all_kinds(a, b):
    return np.stack([np.asarray(iou(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), k))
                     for k in KINDS], axis=-1)


def test_golden_s2_gpu_values():
    a, b, ref = (np.load(S2 / f) for f in ("boxes_a.npy", "boxes_b.npy", "iou.npy"))
    got = all_kinds(a, b)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(ref).any()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6, equal_nan=True)
    # and not the CPU integer-truncation values where those differ
    cpu = np.load(S2 / "iou_cpu.npy")
    differ = np.abs(cpu - ref) > 1e-4
    assert differ.any()
    assert np.all(np.abs(got - cpu)[differ] > 1e-4)


@pytest.mark.parametrize("a, b, want", [
    ([0, 0, 0, 10, 10, 1], [5, 5, 0, 15, 15, 1], [0.142857, -0.079365, -0.190106, 0.031992]),
    ([0, 0, 0, 4, 4, 2], [2, 2, 1, 6, 6, 3], [0.066667, -0.377778, -0.266667, -0.044444]),
    ([0, 0, 0, 10, 10, 1], [20, 0, 0, 30, 10, 1], [0.0, -0.333333, -0.632140, -0.399600]),
    # non-integer widths: the GPU values (the CPU truncates extents)
    ([0, 0, 0, 10.9, 10, 1], [5, 0, 0, 15.9, 10, 1], [0.371069, 0.371069, 0.105251, 0.300410]),
    # identical 10.5-pixel squares: 1 (the CPU gives 1.228412)
    ([0, 0, 0, 10.5, 10.5, 1], [0, 0, 0, 10.5, 10.5, 1], [1.0, 1.0, 1.0, 1.0]),
])
def test_spec_table(a, b, want):
    np.testing.assert_allclose(all_kinds(a, b), want, atol=2e-6)


def test_hand_computed_3d_and_degenerate():
    # 3D: A = [0,4]^3, T = [2,6]x[0,4]x[0,4]: I = 32, U = 96, E = 6*4*4
    a, t = [0, 0, 0, 4, 4, 4], [2, 0, 0, 6, 4, 4]
    got = all_kinds(a, t)
    diag = np.sqrt(36 + 16 + 16)
    np.testing.assert_allclose(got, [1 / 3, 1 / 3 - (96 - 96) / 96, 1 / 3 - 2 / diag,
                                     1 / 3 - 4 / diag ** 2], atol=1e-6)
    # contained box: IoU = GIoU, DIoU equals IoU when centres coincide
    got = all_kinds([0, 0, 0, 10, 10, 1], [2.5, 2.5, 0, 7.5, 7.5, 1])
    np.testing.assert_allclose(got, [0.25] * 4, atol=1e-6)
    # z always enters the diagonal: 2D boxes with z extent [0, 1]
    got = all_kinds([0, 0, 0, 2, 2, 1], [2, 0, 0, 4, 2, 1])
    np.testing.assert_allclose(got[2], 0 - 2 / np.sqrt(16 + 4 + 1), atol=1e-6)
    # touching boxes: no overlap
    np.testing.assert_allclose(got[0], 0.0)
    # a box thinner than one pixel keeps its volume (float abs, GPU)
    np.testing.assert_allclose(all_kinds([0, 0, 0, 0.5, 10, 1], [0, 0, 0, 0.5, 10, 1]), 1.0)
    # inverted corners: |extent| in the volumes, no intersection
    inv = jnp.array([10., 10, 1, 0, 0, 0])
    np.testing.assert_allclose(iou(inv, inv, "IoU"), 0.0)
    # zero-volume union (z extent 0 on both): NaN for every kind
    assert np.all(np.isnan(all_kinds([0, 0, 0, 10, 10, 0], [0, 0, 0, 10, 10, 0])))
    # ranges: DIoU (unsquared) is below DIoU2 for disjoint boxes
    far = all_kinds([0, 0, 0, 1, 1, 1], [50, 50, 0, 51, 51, 1])
    assert -1 < far[2] < far[3] < 0 and -1 < far[1] < 0


def test_broadcasting_and_corner_form():
    rng = np.random.default_rng(0)
    lo = rng.uniform(0, 20, (5, 1, 3))
    a = np.concatenate([lo, lo + rng.uniform(1, 10, (5, 1, 3))], -1).astype(np.float32)
    lo = rng.uniform(0, 20, (1, 7, 3))
    b = np.concatenate([lo, lo + rng.uniform(1, 10, (1, 7, 3))], -1).astype(np.float32)
    for k in KINDS:
        full = np.asarray(iou(a, b, k))
        assert full.shape == (5, 7)
        pair = np.asarray(iou(a[2, 0], b[0, 4], k))
        np.testing.assert_allclose(full[2, 4], pair, rtol=1e-6)
        corners = iou_corners([a[..., i] for i in range(6)], [b[..., i] for i in range(6)], k)
        np.testing.assert_array_equal(np.asarray(corners), full)
    jitted = jax.jit(iou, static_argnums=2)
    np.testing.assert_allclose(jitted(a, b, "DIoU"), iou(a, b, "DIoU"), rtol=1e-6)


def test_bad_kind_and_shape():
    with pytest.raises(ValueError, match="kind"):
        iou(np.zeros(6), np.zeros(6), "CIoU")
    with pytest.raises(ValueError, match="6"):
        iou(np.zeros(4), np.zeros(4), "IoU")


def test_diou_gradient_finite_at_common_centre():
    """DIoU's centre distance is sqrt(d^2): its autodiff gradient stays finite (0 from
    that term) when the centres coincide, as YOLO's grads="exact" needs."""
    a = jnp.array([0.0, 0, 0, 4, 4, 1])
    b = jnp.array([1.0, 1, 0, 3, 3, 1])                  # same centre, inside a
    for kind in KINDS:
        g = np.asarray(jax.grad(lambda x, k=kind: iou(x, b, k))(a))
        assert np.all(np.isfinite(g)), (kind, g)
    g_iou = np.asarray(jax.grad(lambda x: iou(x, b, "IoU"))(a))
    np.testing.assert_allclose(np.asarray(jax.grad(lambda x: iou(x, b, "DIoU"))(a)), g_iou,
                               rtol=1e-6)
