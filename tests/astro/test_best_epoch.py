"""The best epoch of a run: the lowest validation loss within one standard error of the
best score so far, replayed as the epochs come."""

import math

import pytest

from cianna_jax.astro.best_epoch import best_epoch, resumed_best, score_band


def rows(f1, loss, n_det=10, n_true=10, key="f1"):
    return [{"epoch": i + 1, key: f, "val_loss": v, "n_detections": n_det, "n_true": n_true}
            for i, (f, v) in enumerate(zip(f1, loss))]


def test_score_band_is_a_binomial_error_with_one_success_and_one_failure_added():
    assert score_band(1.0, 9, 9) == pytest.approx(math.sqrt((19 / 20) * (1 / 20) / 18))
    assert score_band(0.5, 50, 50) == pytest.approx(math.sqrt(0.25 / 100))
    assert score_band(0.9, 0, 0) == 0.0 and score_band(float("nan"), 5, 5) == 0.0


def test_a_small_area_keeps_the_better_fitting_epoch_within_the_band():
    # 9 lines: a perfect F1 at epoch 2 by luck, then one false detection each epoch (0.952:
    # precision 10 / 11, recall 1; within the band of 0.051) with lower validation losses:
    # the lowest loss is kept
    h = rows([0.8, 1.0, 0.952, 0.952, 0.952], [0.5, 0.30, 0.25, 0.20, 0.22], 9, 9)
    assert [best_epoch(h[:i + 1])["epoch"] for i in range(5)] == [1, 2, 3, 4, 4]


def test_a_large_area_keeps_the_best_score():
    # 1000 sources: 0.952 is far outside the band of 1.0's 0.0022
    h = rows([0.8, 1.0, 0.952, 0.952], [0.5, 0.30, 0.25, 0.20], 1000, 1000)
    assert best_epoch(h)["epoch"] == 2


def test_a_new_best_score_moves_the_band_past_the_kept_epoch():
    # epoch 2 kept for its loss within 0.70's band; epoch 3's 0.95 moves the band above it
    h = rows([0.70, 0.69, 0.95, 0.94], [0.5, 0.2, 0.4, 0.3], 20, 20)
    assert [best_epoch(h[:i + 1])["epoch"] for i in range(4)] == [1, 2, 3, 4]


def test_other_keys_and_non_finite_values():
    h = rows([0.5, float("nan"), 0.5], [0.3, 0.1, float("nan")], key="ap")
    assert best_epoch(h, "ap")["epoch"] == 1
    assert best_epoch([]) is None


def test_a_resumed_run_keeps_the_epoch_best_dat_holds():
    h = rows([0.8, 1.0, 0.952, 0.952], [0.5, 0.30, 0.25, 0.20], 9, 9)
    assert resumed_best(h, "f1", None)["epoch"] == 4  # the rule's
    assert resumed_best(h, "f1", 4)["epoch"] == 4
    assert resumed_best(h, "f1", 2)["epoch"] == 2  # an earlier version kept epoch 2
    assert resumed_best(h, "f1", 9)["epoch"] == 4  # not a row of the history
    assert resumed_best([], "f1", 2) is None
