"""The notebooks execute without error (at reduced sizes, offline)."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))
EXPECTED = {  # text each notebook must print when it ran through
    "functional_core.ipynb": ["epoch 2: mean loss", "adam epoch 2", "True"],
    "classification_cianna_style.ipynb": ["embedded shapes", "test accuracy", "ConfMat"],
    "radio_detection_yolo.ipynb": ["above 5 sigma", "precision", "recall"],
}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, monkeypatch, tmp_path):
    monkeypatch.setenv("CIANNA_NB_N", "160")
    monkeypatch.setenv("CIANNA_NB_EPOCHS", "2")
    monkeypatch.setenv("CIANNA_NB_OFFLINE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    for needle in EXPECTED[path.name]:
        assert needle in text, needle


def test_every_notebook_is_tested_and_starts_with_an_install_cell():
    assert {p.name for p in NOTEBOOKS} == set(EXPECTED)
    for path in NOTEBOOKS:
        first = nbformat.read(path, as_version=4).cells[0]
        assert first.cell_type == "code" and "pip" in first.source
