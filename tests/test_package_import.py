"""``import cianna_jax`` is quick: the public names load on first use (PEP 562), so the
``cianna-jax`` command's help, its argument errors and its restart for huge pages do not
wait for JAX to import; every name is still its module's own object."""

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import cianna_jax

ROOT = Path(__file__).resolve().parents[1]


def _fresh(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line, returned."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_help_and_argument_errors_load_no_jax():
    out = _fresh("""
        import contextlib, io, json, sys
        import cianna_jax
        after_import = "jax" in sys.modules
        from cianna_jax import cli
        codes = []
        for argv in (["--help"], ["train", "--help"], ["predict", "--no-such-option"]):
            with contextlib.redirect_stdout(io.StringIO()), \\
                    contextlib.redirect_stderr(io.StringIO()):
                try:
                    cli.main(argv)
                except SystemExit as e:
                    codes.append(e.code)
        after_cli = "jax" in sys.modules
        net = cianna_jax.nn  # the first use of a name loads it, JAX with it
        print(json.dumps({"import": after_import, "cli": after_cli, "codes": codes,
                          "used": "jax" in sys.modules, "nn": net.__name__}))
    """)
    assert out == {"import": False, "cli": False, "codes": [0, 0, 2], "used": True,
                   "nn": "cianna_jax.nn"}


def test_every_public_name_is_its_modules_own():
    assert set(cianna_jax.__all__) == set(cianna_jax._WHERE) | set(cianna_jax._SUBMODULES)
    for name in cianna_jax.__all__:
        value = getattr(cianna_jax, name)
        if name in cianna_jax._SUBMODULES:
            assert value is importlib.import_module(f"cianna_jax.{name}")
        else:
            module = importlib.import_module(f"cianna_jax.{cianna_jax._WHERE[name]}")
            assert value is getattr(module, name), name
    assert set(cianna_jax.__all__) <= set(dir(cianna_jax))
    star: dict = {}
    exec("from cianna_jax import *", star)
    assert {n: star[n] for n in cianna_jax.__all__} == {
        n: getattr(cianna_jax, n) for n in cianna_jax.__all__}


#: the submodules ``import cianna_jax`` left as attributes when it imported everything
SUBMODULES_BEFORE = ("activations", "api", "checks", "console", "driver", "geometry",
                     "hlo_text", "host_cpu", "initializers", "io", "layer_timing", "layers",
                     "losses", "metrics", "network", "nn", "optim", "parallel", "precision",
                     "report", "saving", "training", "xla_cpu", "yolo")


def test_submodules_are_attributes_as_before():
    out = _fresh(f"""
        import json, types
        import cianna_jax as cj
        names = {SUBMODULES_BEFORE!r}
        ok = [n for n in names if isinstance(getattr(cj, n), types.ModuleType)
              and getattr(cj, n).__name__ == "cianna_jax." + n]
        print(json.dumps({{"ok": ok, "yolo_config": cj.yolo.config.__name__}}))
    """)
    assert out == {"ok": list(SUBMODULES_BEFORE), "yolo_config": "cianna_jax.yolo.config"}


def test_the_names_static_tools_see_are_the_lazy_ones():
    """The ``TYPE_CHECKING`` imports (for type checkers and editors) name the same
    modules and names as the table the package loads them from."""
    import ast

    tree = ast.parse(Path(cianna_jax.__file__).read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and getattr(node.test, "id", "") == "TYPE_CHECKING")
    static: dict = {}
    modules = set()
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 1
        if node.module is None:
            modules |= {a.name for a in node.names}
        else:
            static[node.module] = tuple(a.name for a in node.names)
    assert static == cianna_jax._SOURCES
    assert modules == set(cianna_jax._SUBMODULES)


def test_an_unknown_name_raises_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="'cianna_jax' has no attribute 'no_such_name'"):
        cianna_jax.no_such_name  # noqa: B018
    assert not hasattr(cianna_jax, "_private_nothing")
    assert not hasattr(cianna_jax, "__wrapped__")  # dunders are never looked up as modules
    with pytest.raises(ImportError, match="no_such_name"):
        exec("from cianna_jax import no_such_name", {})
