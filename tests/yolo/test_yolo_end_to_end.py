"""A tiny YOLO network learns to find bright Gaussian blobs in noisy 32x32 images."""

import numpy as np
import pytest

import cianna_jax as cnn
from cianna_jax.yolo import postprocess as pp

SIZE, BOX, MAX_OBJ = 32, 8, 3


def make_blobs(n, rng):
    """Images with 1-3 Gaussian blobs (sigma 1.5 px) on N(0, 0.15) noise, and their
    CIANNA target rows (class 1, 8x8 boxes centred on the blobs)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    x = rng.normal(0, 0.15, (n, SIZE, SIZE)).astype(np.float32)
    t = np.zeros((n, 1 + MAX_OBJ * 7), np.float32)
    boxes = []
    for i in range(n):
        k = int(rng.integers(1, MAX_OBJ + 1))
        centres = []
        while len(centres) < k:  # keep blobs apart so that each one is a distinct object
            c = rng.uniform(4, SIZE - 4, 2)
            if all(np.hypot(*(c - o)) > 9 for o in centres):
                centres.append(c)
        t[i, 0] = k
        for j, (cx, cy) in enumerate(centres):
            x[i] += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5 ** 2))
            box = [cx - BOX / 2, cy - BOX / 2, 0, cx + BOX / 2, cy + BOX / 2, 1]
            t[i, 1 + 7 * j:1 + 7 * (j + 1)] = [1, *box]
            boxes.append((i, box))
    return x.reshape(n, -1), t, boxes


@pytest.mark.slow
def test_tiny_yolo_finds_blobs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x_train, t_train, _ = make_blobs(512, rng)
    x_test, t_test, gt = make_blobs(64, rng)
    cnn.init(in_dim=[SIZE, SIZE], in_nb_ch=1, out_dim=1 + MAX_OBJ * 7, b_size=16, seed=0,
             comp_meth="C_BLAS", no_logo=1)
    nb_filters = cnn.set_yolo_params(nb_box=1, max_nb_obj_per_image=MAX_OBJ,
                                     prior_size=np.array([[8.0], [8.0]]), rand_startup=0,
                                     IoU_type="DIoU")
    cnn.create_dataset("TRAIN", 512, x_train, t_train, silent=1)
    cnn.create_dataset("TEST", 64, x_test, t_test, silent=1)
    cnn.conv([3, 3], 8, padding=[1, 1], silent=1)
    cnn.pool([2, 2], silent=1)
    cnn.conv([3, 3], 16, padding=[1, 1], silent=1)
    cnn.pool([2, 2], silent=1)
    cnn.conv([3, 3], 16, padding=[1, 1], silent=1)
    cnn.pool([2, 2], silent=1)
    cnn.conv([1, 1], nb_filters, activation="YOLO", silent=1)
    gt_img = np.array([i for i, _ in gt])
    gt_boxes = np.array([b for _, b in gt], np.float64)

    def scores():
        rows = cnn.forward(saving=0, silent=1)  # decoded boxes (raw_output=0)
        det = pp.decode(rows, (SIZE, SIZE, 1), (4, 4, 1), 1, 0, 0, [[8.0], [8.0]], raw=False,
                        obj_threshold=0.5)
        keep = pp.batched_nms(det.boxes, det.objectness, det.image, same_class_threshold=0.2)
        return pp.precision_recall(det.boxes[keep], det.objectness[keep], None,
                                   det.image[keep], gt_boxes, None, gt_img, score_threshold=0.5,
                                   iou_threshold=0.5)

    before = scores()
    assert before.recall < 0.5, before  # the untrained network does not find the blobs
    cnn.train(nb_iter=12, learning_rate=0.02, momentum=0.9, control_interv=0, silent=1)
    pr = scores()  # measured when written: precision 0.94, recall 0.98
    # A blob is an 8x8 target centred on a bright spot; with the cell grid of 8 pixels a
    # trained detector localises it within a few pixels (IoU >= 0.5).  An untrained or
    # broken one (random objectness, boxes at cell centres) stays far below these values.
    assert pr.recall >= 0.8, pr
    assert pr.precision >= 0.8, pr
