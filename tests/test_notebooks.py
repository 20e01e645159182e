"""The notebooks execute without error (at reduced sizes, offline), leave no file beside them,
install from the project's repository and have an "Open in Colab" link in the README."""

import concurrent.futures
import os
import re
import tomllib
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = {  # text each notebook must print when it ran through
    "functional_core.ipynb": ["epoch 2: mean loss", "training: 2/2 epochs done", "adam epoch 2",
                              "True"],
    "classification_cianna_style.ipynb": ["embedded shapes", "test accuracy", "ConfMat"],
    "radio_detection_yolo.ipynb": ["above 5 sigma", "precision", "recall"],
    "morphology_classifier.ipynb": ["simulated", "best epoch", "test accuracy", "recall per class",
                                    "gallery drawn"],
    "fits_workflow.ipynb": ["catalogue sources", "best epoch", "sources -> test_sources.ecsv",
                            "sources from", "compact isolated pairs",
                            "radio sources matched", "positions stacked",
                            "in-band spectral index",
                            "format = Name, Type, Patch",
                            "chosen for an estimated reliability >= 0.9",
                            "reliability from the inverted image", "50% complete at SNR", "n_corrected",
                            "precision (reliability)"],
}


def _repository() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Repository"]


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


#: notebooks executed at once: each kernel compiles on one core most of the time
PARALLEL = 2


def _kernel_env(tmp: Path) -> dict[str, str]:
    """The kernels' environment: reduced sizes, offline, and ``tmp`` as their temporary
    folder (the notebooks work in a ``tempfile.mkdtemp`` folder, which pytest then cleans
    up with its own, instead of one left in /tmp per notebook and run)."""
    env = dict(os.environ, CIANNA_NB_N="160", CIANNA_NB_EPOCHS="2", CIANNA_NB_FIELD="192",
               CIANNA_NB_PATCHES="128", CIANNA_NB_INJECTED="100", CIANNA_NB_OFFLINE="1", MPLBACKEND="Agg", TMPDIR=str(tmp))
    # the kernel imports this tree's package (the install cell then does nothing)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def _execute(path: Path, tmp: Path):
    """Run one notebook in a fresh kernel started in notebooks/ (as when a user opens it
    there); returns the executed notebook, or the exception it raised."""
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    try:
        client.execute(env=_kernel_env(tmp))
    except Exception as exc:  # reported by the notebook's own test
        return exc
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every notebook executed, :data:`PARALLEL` at a time, the listing of notebooks/
    before and after, and the kernels' temporary folder."""
    before = _listing(NOTEBOOK_DIR)
    tmp = tmp_path_factory.mktemp("kernels_tmp")
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        results = dict(zip((p.name for p in NOTEBOOKS),
                           pool.map(lambda p: _execute(p, tmp), NOTEBOOKS)))
    return results, before, _listing(NOTEBOOK_DIR), tmp


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_leaves_no_file(path, executed):
    results, before, after, tmp = executed
    nb = results[path.name]
    if isinstance(nb, Exception):
        raise nb
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    for needle in EXPECTED[path.name]:
        assert needle in text, needle
    assert after == before, "a notebook left files in notebooks/"
    work = re.findall(r"working in (\S+)", text)  # its tempfile.mkdtemp folder, if any
    assert all(Path(w).parent == tmp for w in work), work


def test_every_notebook_is_tested_and_starts_with_an_install_cell():
    assert {p.name for p in NOTEBOOKS} == set(EXPECTED)
    for path in NOTEBOOKS:
        first = nbformat.read(path, as_version=4).cells[0]
        assert first.cell_type == "code" and "pip" in first.source


def test_install_cells_use_the_repository_url():
    url = _repository()
    for path in NOTEBOOKS:
        first = nbformat.read(path, as_version=4).cells[0].source
        assert 'find_spec("cianna_jax") is None' in first, path.name
        assert re.findall(r"@ git\+([^\"'\s]+)", first) == [url], path.name


def test_readme_opens_every_notebook_in_colab():
    repo = _repository().removeprefix("https://github.com/")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        link = f"https://colab.research.google.com/github/{repo}/blob/main/notebooks/{path.name}"
        assert f"]({link})" in readme, path.name
