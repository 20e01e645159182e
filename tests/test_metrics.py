"""cianna_jax.metrics: classification confusion matrix and accuracy (hand-computed)."""

import numpy as np
import pytest

from cianna_jax.metrics import accuracy, class_ids, confusion_matrix


def one_hot(ids, c):
    return np.eye(c, dtype=np.float32)[ids]


def test_confusion_matrix_by_hand():
    # 6 samples, 3 classes; predicted ids 0 1 2 2 0 1, true ids 0 1 1 2 2 1
    outputs = np.array([[0.8, 0.1, 0.1],
                        [0.2, 0.7, 0.1],
                        [0.1, 0.3, 0.6],
                        [0.0, 0.1, 0.9],
                        [0.5, 0.4, 0.1],
                        [0.3, 0.4, 0.3]], np.float32)
    targets = one_hot([0, 1, 1, 2, 2, 1], 3)
    expected = np.array([[1, 0, 0],   # true 0: predicted 0
                         [0, 2, 1],   # true 1: predicted 1, 2, 1
                         [1, 0, 1]])  # true 2: predicted 2, 0
    mat = confusion_matrix(outputs, targets, 3)
    assert mat.dtype == np.int64
    np.testing.assert_array_equal(mat, expected)
    # ids work as well as scores / one-hot rows
    np.testing.assert_array_equal(confusion_matrix([0, 1, 2, 2, 0, 1], [0, 1, 1, 2, 2, 1], 3),
                                  expected)
    assert accuracy(outputs, targets, 3) == pytest.approx(4 / 6)


def test_ties_extra_columns_and_padded_targets():
    # ties go to the last maximal index (CIANNA); columns past nb_class (bias slot) ignored
    outputs = np.array([[0.5, 0.5, 9.0], [0.2, 0.2, -1.0]])
    assert class_ids(outputs, 2).tolist() == [1, 1]
    # targets padded past the outputs (whole batches): only the first N are used
    targets = one_hot([1, 0, 0, 0], 2)
    np.testing.assert_array_equal(confusion_matrix(outputs, targets, 2), [[0, 1], [0, 1]])
    assert np.isnan(accuracy(np.zeros((0, 2)), np.zeros((0, 2)), 2))
    with pytest.raises(ValueError):
        confusion_matrix(outputs, targets[:1], 2)
    with pytest.raises(ValueError):
        confusion_matrix([0, 3], [0, 1], 2)
