"""Catalogues under PyBDSF's column names: the names and units of PyBDSF's own lists, the
values of ours converted, read back by the commands, and the refusals."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("astropy")

from cianna_jax.astro.catalogue import read_catalogue  # noqa: E402
from cianna_jax.astro.pipeline import predict_file  # noqa: E402
from cianna_jax.astro.source_list import source_list  # noqa: E402
from cianna_jax.cli import main  # noqa: E402

from .conftest import make_peak_detector  # noqa: E402

DATA = "tests/data/pybdsf"


@pytest.fixture(scope="module")
def written(field, tmp_path_factory):
    """One predict run writing both namings (catalogue and source list, FITS)."""
    d = tmp_path_factory.mktemp("names")
    model = make_peak_detector(d, 8.0)
    out = {}
    for names in ("cianna", "pybdsf"):
        predict_file(field[0], model, d / f"{names}.fits", progress=False, names=names,
                     source_list=d / f"{names}.srl.fits")
        out[names] = (read_catalogue(d / f"{names}.fits"),
                      read_catalogue(d / f"{names}.srl.fits"))
    return out, d, model


def test_pybdsf_s_own_names_and_units(written):
    from astropy.table import Table

    (gaul, srl) = written[0]["pybdsf"]
    for ours, theirs in ((gaul, Table.read(f"{DATA}/pairs.gaul.fits")),
                         (srl, Table.read(f"{DATA}/pairs.srl.fits"))):
        for name in theirs.colnames:
            assert name in ours.colnames, name
            u_ours, u_theirs = (str(getattr(t[name], "unit", None) or "") for t in (ours, theirs))
            assert u_ours.replace(" ", "") == u_theirs.replace(" ", ""), name
    assert gaul["Gaus_id"][0] == 0 and "Isl_id" in srl.colnames and "snr" in gaul.colnames


def test_values_are_ours_converted(written):
    (cat, sl), (gaul, srl) = written[0]["cianna"], written[0]["pybdsf"]
    assert len(gaul) == len(cat) >= 5 and len(srl) == len(sl)
    np.testing.assert_array_equal(gaul["Gaus_id"], np.asarray(cat["id"]) - 1)
    np.testing.assert_array_equal(gaul["Source_id"], np.asarray(cat["source_id"]) - 1)
    np.testing.assert_allclose(gaul["Maj"], np.asarray(cat["bmaj"]) / 3600)
    np.testing.assert_allclose(gaul["E_RA"], np.asarray(cat["ra_err"]) / 3600)
    np.testing.assert_allclose(gaul["Total_flux"], cat["flux"])
    np.testing.assert_allclose(srl["Total_flux"], sl["flux"])
    np.testing.assert_array_equal(np.asarray(gaul["S_Code"]).astype(str),
                                  np.asarray(cat["s_code"]).astype(str))


def test_read_back_by_name(written, tmp_path):
    (cat, _), (gaul, _) = written[0]["cianna"], written[0]["pybdsf"]
    again = source_list(gaul)
    mine = source_list(cat)
    np.testing.assert_allclose(again["flux"], mine["flux"])
    np.testing.assert_allclose(again["bmaj"], mine["bmaj"], rtol=1e-9)
    d = written[1]
    assert main(["sources", "--catalogue", str(d / "pybdsf.fits"), "--out",
                 str(tmp_path / "s.fits"), "--names", "pybdsf"]) == 0
    assert "Total_flux" in read_catalogue(tmp_path / "s.fits").colnames


def test_the_command_line_and_refusals(written, field, tmp_path):
    _, d, model = written
    assert main(["predict", "--model", model, "--image", field[0], "--out",
                 str(tmp_path / "c.ecsv"), "--out", str(tmp_path / "c.reg"), "--names",
                 "pybdsf", "--quiet"]) == 0
    assert "Peak_flux" in read_catalogue(tmp_path / "c.ecsv").colnames
    assert (tmp_path / "c.reg").read_text().startswith("#")  # regions as they are
    with pytest.raises(ValueError, match="names"):
        predict_file(field[0], model, tmp_path / "x.ecsv", progress=False, names="aegean")
