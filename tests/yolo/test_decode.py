"""yolo.decode: the channel-last layout decodes to the same boxes as CIANNA's layout."""

import numpy as np
import pytest

from cianna_jax.yolo import decode as dec
from cianna_jax.yolo import layout, postprocess, tiling


def activated(rng, n, nb_box, k, grid):
    """Random activated outputs [N, F, G2, G1, G0] (positions in [0, 1], log sizes in [-1, 1])."""
    g0, g1, g2 = grid
    pred = rng.uniform(0.0, 1.0, (n, nb_box, k, g2, g1, g0))
    pred[:, :, 3:6] = rng.uniform(-1.0, 1.0, (n, nb_box, 3, g2, g1, g0))
    return pred.reshape(n, nb_box * k, g2, g1, g0).astype(np.float32)


CASES = [  # in_dim, grid, nb_box, nb_class, nb_param, priors (n_dim, B)
    ((64, 48), (4, 3, 1), 2, 3, 1, [[8.0, 20.0], [6.0, 12.0]]),
    ((42, 25, 9), (5, 3, 2), 2, 1, 2, [[10.0, 20.0], [12.0, 6.0], [3.0, 5.0]]),
]


@pytest.mark.parametrize("in_dim, grid, nb_box, nb_class, nb_param, priors", CASES)
def test_channels_last_decode_equals_cianna(in_dim, grid, nb_box, nb_class, nb_param, priors):
    rng = np.random.default_rng(0)
    k = 8 + nb_class + nb_param
    pred = activated(rng, 3, nb_box, k, grid)
    ref = dec.decode(pred, in_dim, grid, nb_box, nb_class, nb_param, priors)
    for nd in ((2, 3) if grid[2] == 1 else (3,)):
        y = layout.from_cianna(pred, nb_box, nd)
        got = dec.decode(y, in_dim, grid, nb_box, nb_class, nb_param, priors, layout="channels_last")
        got_nogrid = dec.decode(y, in_dim, None, nb_box, nb_class, nb_param, priors,
                                layout="channels_last")
        for other in (got, got_nogrid):
            assert len(other) == len(ref)
            for f in ("boxes", "image", "prior", "cell", "probability", "objectness",
                      "class_scores", "params"):
                np.testing.assert_array_equal(getattr(other, f), getattr(ref, f), err_msg=f)
        # decoded-file content keeps the input layout and matches CIANNA's after conversion
        d_cl = dec.raw_to_decoded(y, in_dim, grid, nb_box, nb_class, nb_param, priors,
                                  layout="channels_last")
        d_ci = dec.raw_to_decoded(pred, in_dim, grid, nb_box, nb_class, nb_param, priors)
        assert d_cl.shape == y.shape and d_ci.shape == pred.shape
        np.testing.assert_array_equal(layout.to_cianna(d_cl), d_ci)
        # raw=False reads corners back from the decoded file, in either layout
        back = dec.decode(d_cl, in_dim, grid, nb_box, nb_class, nb_param, None, raw=False,
                          layout="channels_last")
        np.testing.assert_allclose(back.boxes, ref.boxes, rtol=1e-6, atol=1e-4)


def test_channels_last_filters_and_rows():
    rng = np.random.default_rng(1)
    in_dim, grid, nb_box, c, p, priors = CASES[0]
    pred = activated(rng, 2, nb_box, 8 + c + p, grid)
    kw = dict(obj_threshold=[0.3, 0.6], min_score=0.2, class_limit=0.1)
    a = dec.decode(pred, in_dim, grid, nb_box, c, p, priors, **kw)
    b = dec.decode(layout.from_cianna_rows(pred.reshape(2, -1), grid, nb_box), in_dim, grid,
                   nb_box, c, p, priors, layout="channels_last", **kw)
    assert 0 < len(a) < 2 * 12 * nb_box
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.cell, b.cell)
    # flat CIANNA rows in, flat CIANNA rows out
    rows = pred.reshape(2, -1)
    np.testing.assert_array_equal(
        dec.raw_to_decoded(rows, in_dim, grid, nb_box, c, p, priors),
        dec.raw_to_decoded(pred, in_dim, grid, nb_box, c, p, priors).reshape(2, -1))


def test_layout_errors():
    rng = np.random.default_rng(2)
    in_dim, grid, nb_box, c, p, priors = CASES[0]
    pred = activated(rng, 1, nb_box, 8 + c + p, grid)
    y = layout.from_cianna(pred, nb_box)
    with pytest.raises(ValueError, match="layout"):
        dec.decode(pred, in_dim, grid, nb_box, c, p, priors, layout="nhwc")
    with pytest.raises(ValueError):  # a channel-last array is not read as CIANNA's
        dec.decode(y, in_dim, grid, nb_box, c, p, priors)
    with pytest.raises(ValueError):  # flat rows are not channel-last
        dec.decode(pred.reshape(1, -1), in_dim, grid, nb_box, c, p, priors, layout="channels_last")
    with pytest.raises(ValueError):  # wrong (B, K)
        dec.decode(y, in_dim, grid, nb_box, c + 1, p, priors, layout="channels_last")
    with pytest.raises(ValueError):  # grid mismatch
        dec.decode(y, in_dim, (3, 4, 1), nb_box, c, p, priors, layout="channels_last")


def test_decode_kwargs_from_config():
    from cianna_jax.yolo.config import make_config

    cfg = make_config([42, 25, 9], [5, 3, 2], nb_box=2, nb_class=1, nb_param=2,
                      max_nb_obj_per_image=4, prior_size=CASES[1][5], fit_dim=2)
    kw = dec.decode_kwargs(cfg)
    assert kw["in_dim"] == (42, 25, 9) and kw["grid"] == (5, 3, 2)
    np.testing.assert_allclose(kw["priors"], [[10, 20], [12, 6], [0, 0]])  # fit_dim zeroed depth
    pred = activated(np.random.default_rng(3), 1, 2, 11, (5, 3, 2))
    det = dec.decode(pred, **kw)
    np.testing.assert_array_equal(det.boxes[:, 2], det.boxes[:, 5])


def test_postprocess_namespace_reexports():
    for name in postprocess.__all__:
        assert hasattr(postprocess, name), name
    assert postprocess.decode is dec.decode and postprocess.predict_tiled is tiling.predict_tiled
