"""YOLO post-processing: decode, IoU family, NMS, AP/mAP, tiled inference (hand-made cases)."""

import math

import numpy as np
import pytest

from cianna_jax.yolo.postprocess import (
    DecodedBoxes,
    average_precision,
    batched_nms,
    box_similarity,
    coco_map,
    decode,
    match_detections,
    nms,
    pairwise_similarity,
    precision_recall,
    predict_tiled,
    raw_to_decoded,
    tile_origins,
)

# ---------------------------------------------------------------------------------------------
# helpers: independent scalar reference implementations
# ---------------------------------------------------------------------------------------------


def ref_decode_loop(pred5, in_dim, nb_box, nb_class, nb_param, priors3):
    """Plain loop decode of activated outputs [N, F, G2, G1, G0]; priors3[b] = (w, h, d)."""
    N, F, G2, G1, G0 = pred5.shape
    K = 8 + nb_class + nb_param
    s = [in_dim[0] // G0, in_dim[1] // G1, in_dim[2] // G2]
    rows = []
    for n in range(N):
        for z in range(G2):
            for y in range(G1):
                for x in range(G0):
                    for b in range(nb_box):
                        ch = pred5[n, b * K : (b + 1) * K, z, y, x]
                        g = (x, y, z)
                        mins, maxs = [], []
                        for d in range(3):
                            c = (g[d] + ch[d]) * s[d]
                            e = priors3[b][d] * math.exp(ch[3 + d])
                            mins.append(c - e / 2)
                            maxs.append(c + e / 2)
                        rows.append((n, b, g, mins + maxs, list(ch[6:])))
    return rows


def ref_sim(a, b, kind, ndim, plus_one=False):
    p = 1.0 if plus_one else 0.0
    inter, va, vb, e, c2, d2 = 1.0, 1.0, 1.0, 1.0, 0.0, 0.0
    for d in range(ndim):
        inter *= max(0.0, min(a[3 + d], b[3 + d]) - max(a[d], b[d]) + p)
        va *= abs(a[3 + d] - a[d] + p)
        vb *= abs(b[3 + d] - b[d] + p)
        ed = max(a[3 + d], b[3 + d]) - min(a[d], b[d])
        e *= ed
        c2 += ed * ed
        d2 += ((a[d] + a[3 + d]) / 2 - (b[d] + b[3 + d]) / 2) ** 2
    u = va + vb - inter
    iou = inter / u
    return {
        "IoU": iou,
        "GIoU": iou - (e - u) / e,
        "DIoU": iou - math.sqrt(d2) / math.sqrt(c2),
        "DIoU2": iou - d2 / c2,
    }[kind]


def ref_nms(boxes, scores, cls, same, diff, kind, ndim, plus_one=False):
    """The examples' loop: argmax of the remaining scores, suppress the rest."""
    alive = list(range(len(scores)))
    keep = []
    while alive:
        best = max(alive, key=lambda i: (scores[i], -i))
        keep.append(best)
        alive.remove(best)
        survivors = []
        for i in alive:
            s = ref_sim(boxes[best], boxes[i], kind, ndim, plus_one)
            thr = same if cls[i] == cls[best] else diff
            if not s > thr:
                survivors.append(i)
        alive = survivors
    return keep


# ---------------------------------------------------------------------------------------------
# decode
# ---------------------------------------------------------------------------------------------


def s3_activated():
    """Spec §8 S3: all raw outputs 0 -> positions 0.5, sizes 0, prob/obj/classes 0.5 (z forced)."""
    B, C = 1, 2
    pred = np.zeros((1, B * (8 + C), 1, 2, 2), np.float32)
    pred[:, 0:3] = 0.5
    pred[:, 3:6] = 0.0
    pred[:, 6:] = 0.5
    return pred


def test_decode_spec_s3_cell():
    pred = s3_activated()
    det = decode(pred, (32, 32), (2, 2), 1, 2, 0, [[16], [16]])
    assert len(det) == 4
    # rows ordered (y, x): cell (x=0, y=1) is row 2
    np.testing.assert_array_equal(det.cell, [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]])
    np.testing.assert_allclose(det.boxes[2], [0, 16, 0.5, 16, 32, 0.5])
    np.testing.assert_allclose(det.boxes[1], [16, 0, 0.5, 32, 16, 0.5])
    assert det.probability[2] == 0.5 and det.objectness[2] == 0.5
    np.testing.assert_allclose(det.class_scores[2], [0.5, 0.5])
    assert det.params.shape == (4, 0)
    np.testing.assert_array_equal(det.image, 0)
    np.testing.assert_array_equal(det.prior, 0)
    # the loss's floored prior gives z extent [0, 1]
    det_f = decode(pred, (32, 32), (2, 2), 1, 2, 0, [[16], [16]], floor_priors=True)
    np.testing.assert_allclose(det_f.boxes[2], [0, 16, 0, 16, 32, 1])
    # decoded file content for S3 (spec §8): xmin 0, ymin 16, zmin 0.5, xmax 16, ymax 32, zmax 0.5, 0.5 x 4
    dec = raw_to_decoded(pred, (32, 32), (2, 2), 1, 2, 0, [[16], [16]])
    np.testing.assert_allclose(dec[0, :, 0, 1, 0], [0, 16, 0.5, 16, 32, 0.5, 0.5, 0.5, 0.5, 0.5])


def test_decode_flat_and_4d_inputs_agree():
    pred = s3_activated()
    a = decode(pred, (32, 32), (2, 2), 1, 2, 0, [[16], [16]])
    b = decode(pred.reshape(1, -1), 32, (2, 2), 1, 2, 0, [[16], [16]])
    c = decode(pred[:, :, 0], (32, 32), None, 1, 2, 0, [[16], [16]])
    d = decode(pred.reshape(-1), [32, 32], 2, 1, 2, 0, np.array([[16], [16]]))
    for other in (b, c, d):
        np.testing.assert_allclose(other.boxes, a.boxes)
        np.testing.assert_array_equal(other.cell, a.cell)
    with pytest.raises(ValueError):
        decode(pred, (32, 32), (2, 2), 2, 2, 0, [[16, 16], [16, 16]])  # wrong filter count
    with pytest.raises(ValueError):
        decode(pred.reshape(1, -1), (32, 32), None, 1, 2, 0, [[16], [16]])  # flat needs grid


def test_decode_matches_loop_3d_multi_image():
    rng = np.random.default_rng(0)
    B, C, P = 2, 3, 2
    K = 8 + C + P
    G0, G1, G2 = 5, 3, 2
    in_dim = (42, 25, 9)  # non-divisible: cell sizes 8, 8, 4 (integer division)
    pred = rng.uniform(0.0, 1.0, (3, B * K, G2, G1, G0))
    for b in range(B):
        pred[:, b * K + 3 : b * K + 6] = rng.uniform(-1.5, 1.5, (3, 3, G2, G1, G0))
    priors = [[10.0, 20.0], [12.0, 6.0], [3.0, 5.0]]
    det = decode(pred, in_dim, (G0, G1, G2), B, C, P, priors)
    rows = ref_decode_loop(pred, in_dim, B, C, P, [(10, 12, 3), (20, 6, 5)])
    assert len(det) == len(rows)
    for r, (n, b, g, box, rest) in enumerate(rows):
        assert det.image[r] == n and det.prior[r] == b and tuple(det.cell[r]) == g
        np.testing.assert_allclose(det.boxes[r], box, rtol=1e-12, atol=1e-12)
        assert det.probability[r] == rest[0] and det.objectness[r] == rest[1]
        np.testing.assert_array_equal(det.class_scores[r], rest[2 : 2 + C])
        np.testing.assert_array_equal(det.params[r], rest[2 + C :])
    # fit_dim=2 zeroes the depth prior -> zero z extent
    det2 = decode(pred, in_dim, (G0, G1, G2), B, C, P, priors, fit_dim=2)
    np.testing.assert_allclose(det2.boxes[:, 2], det2.boxes[:, 5])


def test_decoded_file_path_equals_raw_path():
    rng = np.random.default_rng(1)
    B, C, P = 3, 2, 1
    K = 8 + C + P
    G = 4
    pred = rng.uniform(0.05, 0.95, (2, B * K, 1, G, G)).astype(np.float32)
    for b in range(B):
        pred[:, b * K + 2] = 0.5  # 2D: z forced
        pred[:, b * K + 3 : b * K + 5] = rng.uniform(-1, 1, (2, 2, 1, G, G))
        pred[:, b * K + 5] = 0.0
    priors = [[8.0, 20.0, 0.5], [8.0, 10.0, 0.5]]  # a sub-pixel prior: unfloored in files
    # decoded file built by hand with the spec §2.3 formula
    dec = pred.astype(np.float64).copy()
    s = 64 // G
    for n in range(2):
        for y in range(G):
            for x in range(G):
                for b in range(B):
                    o = pred[n, b * K : (b + 1) * K, 0, y, x].astype(np.float64)
                    pw = (priors[0][b], priors[1][b], 0.0)
                    for d, g in enumerate((x, y, 0)):
                        sd = s if d < 2 else 1
                        c = (g + o[d]) * sd
                        dec[n, b * K + d, 0, y, x] = c - 0.5 * pw[d] * math.exp(o[3 + d])
                        dec[n, b * K + 3 + d, 0, y, x] = c + 0.5 * pw[d] * math.exp(o[3 + d])
    np.testing.assert_allclose(raw_to_decoded(pred, 64, G, B, C, P, priors), dec, rtol=1e-6, atol=1e-5)
    a = decode(pred, 64, G, B, C, P, priors)
    b = decode(dec, 64, G, B, C, P, None, raw=False)
    np.testing.assert_allclose(a.boxes, b.boxes, rtol=1e-6, atol=1e-5)
    for f in ("image", "prior", "cell"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    for f in ("probability", "objectness", "class_scores", "params"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-6)
    assert np.all(a.boxes[:, 2] == 0.5) and np.all(a.boxes[:, 5] == 0.5)


def test_decode_filters_like_examples():
    B, C = 2, 2
    K = 8 + C
    pred = np.zeros((1, B * K, 1, 1, 2))
    # (cell x, box) -> objectness, classes
    vals = {(0, 0): (0.9, 0.8, 0.1), (0, 1): (0.02, 0.9, 0.1), (1, 0): (0.5, 0.25, 0.2), (1, 1): (0.05, 0.1, 0.15)}
    for (x, b), (obj, c0, c1) in vals.items():
        pred[0, b * K + 7, 0, 0, x] = obj
        pred[0, b * K + 8, 0, 0, x] = c0
        pred[0, b * K + 9, 0, 0, x] = c1
    args = (pred, 32, (2, 1), B, C, 0, [[16, 16], [16, 16]])
    assert len(decode(*args)) == 4
    # obj >= 0.03, obj*pc >= 0.01, pc > 0.3
    det = decode(*args, obj_threshold=0.03, min_score=0.01, class_limit=0.3)
    got = {(int(c[0]), int(p)) for c, p in zip(det.cell, det.prior)}
    assert got == {(0, 0)}  # (1,0): pc 0.25 <= 0.3; (1,1): obj*pc 0.0075 < 0.01; (0,1): obj < 0.03
    det = decode(*args, obj_threshold=[0.5, 0.01])  # per-prior thresholds
    got = {(int(c[0]), int(p)) for c, p in zip(det.cell, det.prior)}
    assert got == {(0, 0), (1, 0), (0, 1), (1, 1)}
    det = decode(*args, obj_threshold=[0.6, 0.03])
    got = {(int(c[0]), int(p)) for c, p in zip(det.cell, det.prior)}
    assert got == {(0, 0), (1, 1)}
    np.testing.assert_allclose(det.score(), det.objectness * det.class_scores.max(1))
    np.testing.assert_array_equal(det.class_id, [0, 1])
    # C = 0: class score is 1
    pred0 = np.zeros((1, 8, 1, 1, 2))
    pred0[0, 7] = [[[0.5, 0.005]]]
    det0 = decode(pred0, 32, (2, 1), 1, 0, 0, [[16], [16]], obj_threshold=0.0, min_score=0.01, class_limit=0.3)
    assert len(det0) == 1 and det0.cell[0, 0] == 0
    np.testing.assert_array_equal(det0.max_class_score, [1.0])
    np.testing.assert_array_equal(det0.score(), [0.5])


# ---------------------------------------------------------------------------------------------
# IoU family
# ---------------------------------------------------------------------------------------------

SPEC_TABLE = [
    ([0, 0, 0, 10, 10, 1], [5, 5, 0, 15, 15, 1], (0.142857, -0.079365, -0.190106, 0.031992)),
    ([0, 0, 0, 4, 4, 2], [2, 2, 1, 6, 6, 3], (0.066667, -0.377778, -0.266667, -0.044444)),
    ([0, 0, 0, 10, 10, 1], [20, 0, 0, 30, 10, 1], (0.0, -0.333333, -0.632140, -0.399600)),
    # non-integer widths: GPU (float volume) values
    ([0, 0, 0, 10.9, 10, 1], [5, 0, 0, 15.9, 10, 1], (0.371069, 0.371069, 0.105251, 0.300410)),
]


@pytest.mark.parametrize("a,t,expected", SPEC_TABLE)
def test_iou_family_spec_table_3d(a, t, expected):
    for kind, v in zip(("IoU", "GIoU", "DIoU", "DIoU2"), expected):
        assert box_similarity(a, t, kind, ndim=3) == pytest.approx(v, abs=1e-6)


def test_iou_family_2d_and_plus_one_by_hand():
    a, t = [0, 0, 10, 10], [5, 5, 15, 15]  # [M, 4] form
    # IoU 25/175; enclosure 15x15; centre distance sqrt(50); diagonal sqrt(450)
    assert box_similarity(a, t, "IoU", ndim=2) == pytest.approx(1 / 7)
    assert box_similarity(a, t, "GIoU", ndim=2) == pytest.approx(1 / 7 - 50 / 225)
    assert box_similarity(a, t, "DIoU", ndim=2) == pytest.approx(1 / 7 - 1 / 3)
    assert box_similarity(a, t, "DIoU2", ndim=2) == pytest.approx(1 / 7 - 1 / 9)
    # +1 pixel: intersection 6x6, areas 11x11; enclosure and distance unchanged
    assert box_similarity(a, t, "IoU", ndim=2, plus_one=True) == pytest.approx(36 / 206)
    assert box_similarity(a, t, "DIoU", ndim=2, plus_one=True) == pytest.approx(36 / 206 - 1 / 3)
    # 2D ignores z entirely
    assert box_similarity([0, 0, 0, 10, 10, 1], [5, 5, 7, 15, 15, 9], "DIoU", ndim=2) == pytest.approx(1 / 7 - 1 / 3)
    # zero union -> NaN
    assert np.isnan(box_similarity([1, 1, 0, 1, 1, 1], [1, 1, 0, 1, 1, 1], "IoU", ndim=2))
    with pytest.raises(ValueError):
        box_similarity(a, t, "CIoU")


def test_pairwise_similarity_matches_scalar():
    rng = np.random.default_rng(2)
    lo = rng.uniform(0, 50, (7, 3))
    A = np.concatenate([lo, lo + rng.uniform(1, 20, (7, 3))], 1)
    lo = rng.uniform(0, 50, (5, 3))
    T = np.concatenate([lo, lo + rng.uniform(1, 20, (5, 3))], 1)
    for kind in ("IoU", "GIoU", "DIoU", "DIoU2"):
        for ndim in (2, 3):
            for p1 in (False, True):
                m = pairwise_similarity(A, T, kind, ndim=ndim, plus_one=p1)
                assert m.shape == (7, 5)
                ref = [[ref_sim(a, t, kind, ndim, p1) for t in T] for a in A]
                np.testing.assert_allclose(m, ref, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# NMS
# ---------------------------------------------------------------------------------------------


def test_nms_same_and_different_class_thresholds_2d():
    boxes = np.array([
        [0, 0, 0, 20, 20, 1],    # 0: best, class 0
        [2, 2, 0, 22, 22, 1],    # 1: DIoU ~0.67 with 0, class 0 -> dropped (> 0.4)
        [1, 1, 0, 21, 21, 1],    # 2: DIoU ~0.82 with 0, class 1 -> kept (< 0.95)
        [0, 0, 0, 20, 20, 1],    # 3: identical to 0, class 2 -> dropped (1 > 0.95)
        [100, 100, 0, 120, 120, 1],  # 4: far away -> kept
        [30, 0, 0, 50, 20, 1],   # 5: touching-ish class 0, DIoU < 0 -> kept
    ], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.95])
    classes = np.array([0, 0, 1, 2, 0, 0])
    sim = pairwise_similarity(boxes, boxes, "DIoU", ndim=2)
    assert sim[0, 1] > 0.4 and 0.4 < sim[0, 2] < 0.95 and sim[0, 5] < 0
    keep = nms(boxes, scores, classes, same_class_threshold=0.4, diff_class_threshold=0.95)
    np.testing.assert_array_equal(keep, [5, 0, 2, 4])
    # class scores [M, C] accepted (arg-max)
    onehot = np.eye(3)[classes] * 0.7 + 0.1
    np.testing.assert_array_equal(
        nms(boxes, scores, onehot, same_class_threshold=0.4, diff_class_threshold=0.95), keep
    )
    # one class: 2 and 3 now suppressed by 0
    np.testing.assert_array_equal(nms(boxes, scores, same_class_threshold=0.4), [5, 0, 4])
    # default diff threshold 1.0 keeps the identical box of another class
    np.testing.assert_array_equal(nms(boxes, scores, classes, same_class_threshold=0.4), [5, 0, 2, 3, 4])


def test_nms_plus_one_touching_boxes():
    # gap 0.5 in x: no overlap, but +1 pixel gives I = 0.5*11, IoU = 5.5/236.5
    boxes = np.array([[0, 0, 10, 10], [10.5, 0, 20.5, 10]], float)
    assert box_similarity(boxes[0], boxes[1], "IoU", ndim=2, plus_one=True) == pytest.approx(5.5 / 236.5)
    kw = dict(same_class_threshold=0.01, iou_type="IoU")
    np.testing.assert_array_equal(nms(boxes, [0.9, 0.8], **kw), [0, 1])
    np.testing.assert_array_equal(nms(boxes, [0.9, 0.8], plus_one=True, **kw), [0])


def test_nms_3d_vs_2d():
    # same xy footprint, disjoint in z
    boxes = np.array([[0, 0, 0, 10, 10, 10], [0, 0, 20, 10, 10, 30], [1, 1, 1, 11, 11, 11]], float)
    scores = np.array([0.9, 0.8, 0.7])
    np.testing.assert_array_equal(nms(boxes, scores, same_class_threshold=0.3, iou_type="IoU", ndim=2), [0])
    np.testing.assert_array_equal(nms(boxes, scores, same_class_threshold=0.3, iou_type="IoU", ndim=3), [0, 1])
    # 3D with different class thresholds
    classes = [0, 0, 1]
    np.testing.assert_array_equal(
        nms(boxes, scores, classes, same_class_threshold=0.3, diff_class_threshold=0.9, iou_type="GIoU", ndim=3),
        [0, 1, 2],
    )


@pytest.mark.parametrize("same,diff", [(0.2, 0.6), (0.0, 0.3), (-0.2, 0.3)])  # x-sweep and full paths
@pytest.mark.parametrize("kind,ndim,p1", [("DIoU", 2, True), ("GIoU", 3, False), ("DIoU2", 2, False), ("IoU", 3, False)])
def test_nms_random_matches_loop(kind, ndim, p1, same, diff):
    rng = np.random.default_rng(3)
    n = 60
    lo = rng.uniform(0, 60, (n, 3))
    boxes = np.concatenate([lo, lo + rng.uniform(4, 25, (n, 3))], 1)
    scores = rng.uniform(0, 1, n)
    boxes[7] = boxes[3] + [boxes[3, 3] - boxes[3, 0], 0, 0, boxes[3, 3] - boxes[3, 0], 0, 0]  # touching in x
    boxes[8] = boxes[3] + [boxes[3, 3] - boxes[3, 0] + 0.5, 0, 0, boxes[3, 3] - boxes[3, 0] + 0.5, 0, 0]
    scores[5] = scores[9]  # a tie: lower index first
    cls = rng.integers(0, 3, n)
    got = nms(boxes, scores, cls, same_class_threshold=same, diff_class_threshold=diff, iou_type=kind, ndim=ndim, plus_one=p1)
    ref = ref_nms(boxes, scores, cls, same, diff, kind, ndim, p1)
    np.testing.assert_array_equal(got, ref)


def test_batched_nms_per_image():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    scores = np.array([0.5, 0.9, 0.8, 0.7])
    image = np.array([1, 0, 1, 0])
    keep = batched_nms(boxes, scores, image, same_class_threshold=0.3)
    np.testing.assert_array_equal(keep, [1, 3, 2])  # image 0: 1, 3; image 1: 2 beats 0
    assert nms(np.zeros((0, 6)), np.zeros(0), same_class_threshold=0.5).size == 0


# ---------------------------------------------------------------------------------------------
# AP / mAP / precision-recall
# ---------------------------------------------------------------------------------------------

GT = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]], float)


def test_ap_perfect_detector():
    r = average_precision(GT, [0.9, 0.8, 0.7], [0, 0, 0], None, GT, [0, 0, 0], None)
    assert r.ap.tolist() == [1.0] and r.map == 1.0 and r.n_gt.tolist() == [3]


def test_ap_false_positive_above_true_positive():
    preds = np.array([[100, 100, 110, 110], [0, 0, 10, 10]], float)  # FP (0.9) then TP (0.8)
    r = average_precision(preds, [0.9, 0.8], [0, 0], None, GT[:1], [0], None)
    assert r.map == pytest.approx(0.5)  # precision 1/2 at recall 1
    # a duplicate below the TP is an FP but does not change the AP
    preds = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    m = match_detections(preds, [0.9, 0.8], None, None, GT[:1], None, None)
    assert m.status.tolist() == [1, 0] and m.gt_index.tolist() == [0, -1]
    assert average_precision(preds, [0.9, 0.8], None, None, GT[:1], None, None).map == 1.0
    # wrong class -> FP and class 1 gets AP 0 (no target: NaN, excluded from the mean)
    r = average_precision(GT[:1], [0.9], [1], None, GT[:1], [0], None)
    assert r.classes.tolist() == [0, 1] and r.ap[0] == 0.0 and np.isnan(r.ap[1]) and r.map == 0.0


def test_ap_missed_target_and_interpolations():
    r = average_precision(GT[:1], [0.9], [0], None, GT[:2], [0, 0], None)
    assert r.map == pytest.approx(0.5)
    # TP (0.9), FP (0.8), TP (0.7), 2 targets: precision 1, 1/2, 2/3; recall 1/2, 1/2, 1
    preds = np.array([[0, 0, 10, 10], [60, 60, 70, 70], [20, 20, 30, 30]], float)
    args = (preds, [0.9, 0.8, 0.7], None, None, GT[:2], None, None)
    assert average_precision(*args).map == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision(*args, interpolation="trapezoid").map == pytest.approx(0.5 * 2 / 3)
    assert average_precision(*args, interpolation="coco101").map == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_ap_difficult_targets_ignored():
    gt = GT[:2]
    preds = np.array([[20, 20, 30, 30], [0, 0, 10, 10]], float)  # 0.9 on the difficult one, 0.8 on the other
    diff = [0, 1]
    m = match_detections(preds, [0.9, 0.8], None, None, gt, None, None, gt_difficult=diff)
    assert m.status.tolist() == [-1, 1]
    assert average_precision(preds, [0.9, 0.8], None, None, gt, None, None, gt_difficult=diff).map == 1.0
    # unmatched difficult target is not a miss
    r = average_precision(preds[1:], [0.8], None, None, gt, None, None, gt_difficult=diff)
    assert r.map == 1.0 and r.n_gt.tolist() == [1]
    # without the flag it is a miss
    assert average_precision(preds[1:], [0.8], None, None, gt, None, None).map == pytest.approx(0.5)
    # several predictions on a difficult target are all ignored
    p3 = np.array([[20, 20, 30, 30], [21, 21, 31, 31], [0, 0, 10, 10]], float)
    m = match_detections(p3, [0.9, 0.85, 0.8], None, None, gt, None, None, gt_difficult=diff)
    assert m.status.tolist() == [-1, -1, 1]


def test_ap_images_classes_and_greedy_unmatched():
    # image 0: two overlapping targets of class 0; two predictions both best on target 0
    gt = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    gtc, gti = [0, 0, 0, 1], [0, 0, 1, 1]
    preds = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 10], [50, 50, 60, 60], [50, 50, 60, 60]], float)
    pc, pi = [0, 0, 0, 1, 1], [0, 0, 0, 1, 0]
    sc = [0.9, 0.8, 0.7, 0.6, 0.5]
    m = match_detections(preds, sc, pc, pi, gt, gtc, gti)
    # pred 1 (IoU 0.818 with t0, 0.818 with t1): t0 is taken -> t1; pred 2 is an FP in image 0
    assert m.status.tolist() == [1, 1, 0, 1, 0] and m.gt_index.tolist() == [0, 1, -1, 3, -1]
    r = average_precision(preds, sc, pc, pi, gt, gtc, gti)
    # class 0: TP TP FP on 3 targets -> 2/3; class 1: TP then FP on 1 target -> 1
    np.testing.assert_allclose(r.ap, [2 / 3, 1.0])
    assert r.map == pytest.approx(5 / 6)
    # plus_one convention changes IoU but not the matches here
    assert average_precision(preds, sc, pc, pi, gt, gtc, gti, plus_one=True).map == pytest.approx(5 / 6)


def test_coco_map_bounds_and_hand_value():
    gt = np.array([[0, 0, 100, 100]], float)
    pred = np.array([[0, 0, 100, 72]], float)  # IoU 0.72: TP for 0.50 .. 0.70 (5 of 10 thresholds)
    r = coco_map(pred, [0.9], None, None, gt, None, None)
    assert r.map == pytest.approx(0.5)
    np.testing.assert_allclose(r.thresholds, np.arange(10) * 0.05 + 0.5)
    np.testing.assert_array_equal(r.per_threshold, [1.0] * 5 + [0.0] * 5)
    rng = np.random.default_rng(4)
    gts = rng.uniform(0, 200, (20, 2))
    gts = np.concatenate([gts, gts + rng.uniform(10, 40, (20, 2))], 1)
    preds = gts + rng.normal(0, 2.0, gts.shape)
    sc = rng.uniform(0, 1, 20)
    r = coco_map(preds, sc, None, None, gts, None, None)
    ap50 = average_precision(preds, sc, None, None, gts, None, None, iou_threshold=0.5).map
    ap95 = average_precision(preds, sc, None, None, gts, None, None, iou_threshold=0.95).map
    assert 0.0 <= ap95 <= r.map <= ap50 <= 1.0
    assert np.all(np.diff(r.per_threshold) <= 1e-12)
    assert r.map == pytest.approx(np.mean(r.per_threshold))


def test_precision_recall_counts():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]], float)
    diff = [0, 0, 0, 1]
    preds = np.array([[0, 0, 10, 10], [80, 80, 90, 90], [20, 20, 30, 30], [40, 40, 50, 50], [60, 60, 70, 70]], float)
    sc = [0.9, 0.8, 0.7, 0.2, 0.95]
    r = precision_recall(preds, sc, None, None, gt, None, None, score_threshold=0.5, gt_difficult=diff)
    # above 0.5: TP, FP, TP, ignored(difficult) -> tp 2, fp 1, fn 1 (the 0.2 one)
    assert (r.tp, r.fp, r.fn) == (2, 1, 1)
    assert r.precision == pytest.approx(2 / 3) and r.recall == pytest.approx(2 / 3)
    r = precision_recall(preds, sc, None, None, gt, None, None, score_threshold=0.0, gt_difficult=diff)
    assert (r.tp, r.fp, r.fn) == (3, 1, 0) and r.recall == 1.0
    r = precision_recall(preds, sc, None, None, gt, None, None, score_threshold=1.0)
    assert (r.tp, r.fp, r.fn, r.precision, r.recall) == (0, 0, 4, 0.0, 0.0)


@pytest.mark.parametrize("call, match", [
    (lambda b, s: average_precision(b, s[:2], None, None, b, None, None),
     r"pred_scores: expected one value per box \(3\), received 2"),
    (lambda b, s: average_precision(b, s, None, [0, 0, 1], b, None, None),
     "give the image ids of both or of neither"),
    (lambda b, s: average_precision(b, s, [0, 1], None, b, None, None),
     r"pred_classes: expected one value per box \(3\)"),
    (lambda b, s: match_detections(b, [np.nan, 0.8, 0.7], None, None, b, None, None),
     "pred_scores: value 0 is not finite"),
    (lambda b, s: match_detections(b, s, None, None, b, None, None, iou_threshold=np.nan),
     r"iou_threshold: expected a number in \[0, 1\], received nan"),
    (lambda b, s: average_precision(b, s, None, None, b[:, [2, 3, 0, 1]], None, None),
     "gt_boxes: box 0 has a max corner below its min corner"),
    (lambda b, s: coco_map(b, s, None, None, b, None, None, iou_thresholds=[]),
     "iou_thresholds: expected a non-empty list"),
    (lambda b, s: precision_recall(b, s, None, None, b, None, None, score_threshold=np.nan),
     "score_threshold: expected a number, received nan"),
    (lambda b, s: nms(np.where(b == 11, np.inf, b), s, same_class_threshold=0.3),
     "boxes: box 1 has a NaN or infinite coordinate"),
    (lambda b, s: nms(b, s, same_class_threshold=np.nan), "same_class_threshold"),
    (lambda b, s: batched_nms(b, s, [0, 1], same_class_threshold=0.3),
     r"image: expected one value per box \(3\), received 2"),
])
def test_postprocess_names_inconsistent_inputs(call, match):
    """Mismatched counts, one-sided image ids, NaN scores or thresholds and inverted boxes
    were index errors or silently wrong scores (an inverted box never matched, a NaN
    threshold matched nothing, image ids on one side only were ignored)."""
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    with pytest.raises(ValueError, match=match):
        call(b, [0.9, 0.8, 0.7])


# ---------------------------------------------------------------------------------------------
# tiling
# ---------------------------------------------------------------------------------------------


def test_tile_origins_2d_3d():
    o = tile_origins((100, 70), 40, 8)  # stride 32
    ys, xs = np.unique(o[:, 0]), np.unique(o[:, 1])
    assert ys.tolist() == [0, 32, 60] and xs.tolist() == [0, 30]
    assert o.tolist()[:3] == [[0, 0], [0, 30], [32, 0]]  # C order, x fastest
    o = tile_origins((20, 64, 50), (16, 32, 32), (4, 0, 2))
    assert np.unique(o[:, 0]).tolist() == [0, 4]
    assert np.unique(o[:, 1]).tolist() == [0, 32]
    assert np.unique(o[:, 2]).tolist() == [0, 18]
    assert o.shape == (8, 3)
    assert tile_origins((10, 10), 32, 8).tolist() == [[0, 0]]
    # full coverage, every tile inside the image
    for shape, t, ov in [((1000,), 512, 32), ((97, 131), 32, 8), ((33, 65, 40), 16, 5)]:
        o = tile_origins(shape, t, ov)
        covered = np.zeros(shape, bool)
        for org in o:
            covered[tuple(slice(int(a), int(a) + t) for a in org)] = True
            assert all(int(a) + t <= s for a, s in zip(org, shape))
        assert covered.all()
    with pytest.raises(ValueError):
        tile_origins((100, 100), 32, 32)


# fake network: grid of 8-pixel cells on 32-pixel tiles, one box (prior 8x8), C = 1, P = 1 (object id)
CELL, TILE, B, C, P = 8, 32, 1, 1, 1
K = 8 + C + P


def fake_objects(shape, rng, n, min_sep=16, fixed=()):
    """``fixed`` (cx, cy, w, h) objects plus random ones up to ``n``, centres on half pixels, at least
    ``min_sep`` apart (so never two in one cell); returned as (id, cx, cy, w, h) with ids 1..n."""
    objs = [tuple(float(v) for v in f) for f in fixed]
    while len(objs) < n:
        cx, cy = rng.integers(0, shape[1]) + 0.5, rng.integers(0, shape[0]) + 0.5
        if all(max(abs(cx - o[0]), abs(cy - o[1])) >= min_sep for o in objs):
            objs.append((float(cx), float(cy), float(rng.integers(4, 12)), float(rng.integers(4, 12))))
    return [(i + 1, *o) for i, o in enumerate(objs)]


def paint(shape, objs):
    """Channel 0 marks the centre pixel with the object id, channels 1-2 hold width and height."""
    img = np.zeros((3,) + tuple(shape))
    for oid, cx, cy, w, h in objs:
        y, x = int(cy), int(cx)
        img[:, y, x] = (oid, w, h)
    return img


def fake_predict(tiles):
    """Activated outputs [T, K, 1, 4, 4]: a detection in the cell holding each marked centre."""
    T = tiles.shape[0]
    g = TILE // CELL
    out = np.zeros((T, K, 1, g, g))
    out[:, 0:3] = 0.5
    for t in range(T):
        for y, x in zip(*np.nonzero(tiles[t, 0])):
            cx, cy = x + 0.5, y + 0.5
            gx, gy = int(cx // CELL), int(cy // CELL)
            w, h = tiles[t, 1, y, x], tiles[t, 2, y, x]
            out[t, 0:6, 0, gy, gx] = (cx / CELL - gx, cy / CELL - gy, 0.5, math.log(w / 8), math.log(h / 8), 0.0)
            out[t, 6:10, 0, gy, gx] = (0.9, 0.8, 0.7, tiles[t, 0, y, x])
    return out


def check_once(det, objs):
    ids = det.params[:, 0].round().astype(int)
    assert sorted(ids.tolist()) == [o[0] for o in objs]  # each object exactly once
    for oid, cx, cy, w, h in objs:
        r = int(np.nonzero(ids == oid)[0][0])
        np.testing.assert_allclose(det.boxes[r], [cx - w / 2, cy - h / 2, 0.5, cx + w / 2, cy + h / 2, 0.5], atol=1e-9)


def test_predict_tiled_nms_merges_overlap_duplicates():
    shape = (100, 130)  # origins y 0,24,48,68; x 0,24,48,72,96,98
    rng = np.random.default_rng(5)
    # objects straddling overlaps (including the flush last tiles) and the corners, plus random ones
    fixed = [(28.5, 5.5, 6, 6), (100.5, 60.5, 10, 4), (50.5, 70.5, 5, 9), (129.5, 99.5, 4, 4), (0.5, 0.5, 6, 6)]
    objs = fake_objects(shape, rng, 30, fixed=fixed)
    img = paint(shape, objs)
    kw = dict(nb_box=B, nb_class=C, nb_param=P, priors=[[8], [8]], obj_threshold=0.5)
    raw = predict_tiled(fake_predict, img, TILE, 8, **kw)
    ids = raw.params[:, 0].round().astype(int)
    assert len(raw) > len(objs) and len(set(ids.tolist())) == len(objs)  # duplicates before merging
    assert {1, 2, 3} <= {i for i in ids.tolist() if (ids == i).sum() > 1}
    det = predict_tiled(fake_predict, img, TILE, 8, same_class_threshold=0.5, batch_size=7, **kw)
    check_once(det, objs)
    assert np.all(np.diff(det.score()) <= 0)
    origins = tile_origins(shape, TILE, 8)
    # tile index and in-tile cell are consistent with the global centre
    ctr = det.centers[:, :2] - origins[det.image][:, ::-1]
    np.testing.assert_array_equal(np.floor(ctr / CELL).astype(int), det.cell[:, :2])


def test_predict_tiled_margin_filters():
    rng = np.random.default_rng(6)
    # exact-stride image: 4 tiles of stride 24 plus 8 -> 104; margin 4 partitions it
    shape = (104, 104)
    # centres just either side of the margin boundary between tiles 0 and 1 (global 28)
    objs = fake_objects(shape, rng, 30, min_sep=12, fixed=[(28.5, 27.5, 6, 6), (27.5, 44.5, 6, 6), (60.5, 51.5, 4, 4), (76.5, 52.5, 4, 4)])
    img = paint(shape, objs)
    kw = dict(nb_box=B, nb_class=C, nb_param=P, priors=[[8], [8]], obj_threshold=0.5)
    assert len(predict_tiled(fake_predict, img, TILE, 8, **kw)) > len(objs)  # duplicates without margin
    det = predict_tiled(fake_predict, img, TILE, 8, margin=4, **kw)
    check_once(det, objs)
    # boundary at global 28 (x) and 52 (y): 28.5 comes from the tile at x 24, 27.5 from the one at x 0
    tile_of = {int(i): int(t) for i, t in zip(det.params[:, 0].round(), det.image)}
    assert [tile_of[k] for k in (1, 2, 3, 4)] == [1, 4, 6, 11]
    check_once(predict_tiled(fake_predict, img, TILE, 8, margin="auto", **kw), objs)
    # irregular size (flush last tile has a larger overlap): "auto" still partitions exactly
    shape = (100, 130)
    objs = fake_objects(shape, rng, 30, min_sep=12)
    img = paint(shape, objs)
    check_once(predict_tiled(fake_predict, img, TILE, 8, margin="auto", **kw), objs)
    check_once(predict_tiled(fake_predict, img, (TILE, TILE), (8, 8), margin="auto", same_class_threshold=0.5, **kw), objs)


def test_predict_tiled_small_image_padded():
    objs = [(1, 5.5, 10.5, 6.0, 4.0), (2, 15.5, 2.5, 4.0, 4.0)]
    img = paint((20, 18), objs)
    det = predict_tiled(fake_predict, img, TILE, 8, nb_box=B, nb_class=C, nb_param=P, priors=[[8], [8]],
                        obj_threshold=0.5, margin=4, same_class_threshold=0.5)
    check_once(det, objs)
    assert np.all(det.image == 0)


def test_predict_tiled_3d():
    # 3D: 16^3 tiles, grid 2^3 (cell 8), one object per straddling position, C = 0, P = 1
    Kc = 8 + 0 + 1
    objs = [(1, 7.5, 7.5, 13.5, 4.0), (2, 20.5, 3.5, 20.5, 6.0), (3, 13.5, 13.5, 5.5, 6.0)]  # (id, x, y, z, size)
    vol = np.zeros((2, 24, 24, 24))
    for oid, x, y, z, s in objs:
        vol[:, int(z), int(y), int(x)] = (oid, s)

    def predict(tiles):
        out = np.zeros((tiles.shape[0], Kc, 2, 2, 2))
        for t in range(tiles.shape[0]):
            for z, y, x in zip(*np.nonzero(tiles[t, 0])):
                c = np.array([x, y, z]) + 0.5
                g = (c // 8).astype(int)
                s = tiles[t, 1, z, y, x]
                out[t, 0:3, g[2], g[1], g[0]] = c / 8 - g
                out[t, 3:6, g[2], g[1], g[0]] = math.log(s / 6)
                out[t, 6:9, g[2], g[1], g[0]] = (0.9, 0.8, tiles[t, 0, z, y, x])
        return out

    kw = dict(nb_box=1, nb_class=0, nb_param=1, priors=[[6], [6], [6]], obj_threshold=0.5)
    assert tile_origins((24, 24, 24), 16, 4).shape == (8, 3)
    det = predict_tiled(predict, vol, (16, 16, 16), 4, same_class_threshold=0.5, **kw)
    assert sorted(det.params[:, 0].round().astype(int).tolist()) == [1, 2, 3]
    for oid, x, y, z, s in objs:
        r = int(np.nonzero(det.params[:, 0].round() == oid)[0][0])
        np.testing.assert_allclose(det.boxes[r], [x - s / 2, y - s / 2, z - s / 2, x + s / 2, y + s / 2, z + s / 2])
    det_m = predict_tiled(predict, vol, (16, 16, 16), 4, margin="auto", **kw)
    assert sorted(det_m.params[:, 0].round().astype(int).tolist()) == [1, 2, 3]


def test_decoded_boxes_helpers():
    det = decode(s3_activated(), 32, 2, 1, 2, 0, [[16], [16]])
    sub = det.take([3, 0])
    np.testing.assert_array_equal(sub.cell[:, :2], [[1, 1], [0, 0]])
    both = DecodedBoxes.concatenate([sub, det.take(np.array([False, True, False, False]))])
    assert len(both) == 3 and both.class_scores.shape == (3, 2)
    assert len(DecodedBoxes.empty(2, 1)) == 0
    np.testing.assert_allclose(det.centers[2], [8, 24, 0.5])
