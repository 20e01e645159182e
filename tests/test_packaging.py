"""Packaging and process hygiene: licence, one version, py.typed, CI script, XLA flags.

``import cianna_jax`` must leave the process alone; ``cianna_jax.xla_cpu.tune()`` is
the explicit, opt-out-able way to set the XLA CPU flags.  Those checks run in fresh
Python processes (XLA reads ``XLA_FLAGS`` once per process).
"""

import json
import os
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import cianna_jax
from cianna_jax import cli, xla_cpu

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


# --------------------------------------------------------------------------- metadata


def test_license_file_matches_pyproject():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License\n                           Version 2.0")
    assert "END OF TERMS AND CONDITIONS" in text
    assert "Copyright 2026 the cianna_jax authors" in text
    assert len(text.splitlines()) == 202  # the full standard text


def test_one_version():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "cianna_jax._version.__version__"}
    from cianna_jax._version import __version__

    assert cianna_jax.__version__ == __version__
    hits = [p for p in (ROOT / "cianna_jax").rglob("*.py")
            if "__version__ = " in p.read_text() and p.name != "_version.py"]
    assert not hits, f"a second version assignment in {hits}"
    try:
        installed = metadata.version("cianna-jax")
    except metadata.PackageNotFoundError:  # running from a source tree
        installed = __version__
    assert installed == __version__, "reinstall: pip install -e '.[test]'"


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"cianna-jax {cianna_jax.__version__}"


def test_py_typed_is_package_data():
    assert (ROOT / "cianna_jax" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["cianna_jax"]


def test_setuptools_reads_the_configuration():
    pytest.importorskip("setuptools", minversion="77")
    from setuptools.config.pyprojecttoml import read_configuration

    conf = read_configuration(ROOT / "pyproject.toml", expand=True)
    assert conf["project"]["version"] == cianna_jax.__version__


def test_ci_runs_install_ruff_then_tests():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    install = "python -m pip install -e '.[test]'"
    tests = "python -m pytest -q"
    ruff = next(i for i, ln in enumerate(lines) if ln.split()[-2:] == ["check", "."]
                and "ruff" in ln)
    assert lines.index(install) < ruff < lines.index(tests)
    readme = (ROOT / "README.md").read_text()
    assert install in readme and tests in readme
    assert any(dep.startswith("ruff") for dep in PYPROJECT["project"]["optional-dependencies"]
               ["test"])
    assert "*.ipynb" in PYPROJECT["tool"]["ruff"]["extend-exclude"]


def test_module_tables_are_read_only():
    """Lookup tables are constants: nothing can change module state after import."""
    from cianna_jax import precision
    from cianna_jax.yolo import config

    for table in (precision._POLICIES, precision._ALIASES, config.DEFAULT_IOU_LIMITS):
        with pytest.raises(TypeError):
            table["x"] = None
    assert precision.get_policy("on") is precision._POLICIES["FP16C_FP32A"]


# --------------------------------------------------------------------------- XLA flags


def _python(code: str, **env_changes) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line, returned."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("XLA_FLAGS", xla_cpu.OPT_OUT_ENV, "JAX_NUM_CPU_DEVICES")}
    env["JAX_PLATFORMS"] = "cpu"
    env.update(env_changes)
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("flags", [None, "--xla_cpu_use_thunk_runtime=true"])
def test_import_leaves_xla_flags_alone(flags):
    env = {} if flags is None else {"XLA_FLAGS": flags}
    out = _python("""
        import json, os
        import cianna_jax, cianna_jax.cli, cianna_jax.yolo, pallas_kernels
        print(json.dumps({"flags": os.environ.get("XLA_FLAGS")}))
    """, **env)
    assert out["flags"] == flags


def test_tune_sets_the_flag_when_allowed_and_only_then():
    out = _python("""
        import json, os, warnings
        from cianna_jax import xla_cpu
        r = {}
        os.environ["CIANNA_JAX_KEEP_XLA_FLAGS"] = "1"                 # opt-out
        r["opt_out"] = [xla_cpu.tune(), os.environ.get("XLA_FLAGS")]
        os.environ["CIANNA_JAX_KEEP_XLA_FLAGS"] = "0"                 # "0": no opt-out
        os.environ["XLA_FLAGS"] = "--xla_cpu_experimental_ynn_fusion_type=dot"  # user's
        r["user"] = [xla_cpu.tune(), os.environ["XLA_FLAGS"]]
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        r["tuned"] = [xla_cpu.tune(), os.environ["XLA_FLAGS"]]
        r["again"] = [xla_cpu.tune(), os.environ["XLA_FLAGS"]]
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        os.environ["CIANNA_JAX_KEEP_XLA_FLAGS"] = "yes"
        r["forced"] = [xla_cpu.tune(force=True), os.environ["XLA_FLAGS"]]
        del os.environ["CIANNA_JAX_KEEP_XLA_FLAGS"]
        import jax
        r["started_before"] = xla_cpu.backend_started()
        r["devices"] = len(jax.devices())            # the flags above were read here
        r["started_after"] = xla_cpu.backend_started()
        r["num_cpu_devices"] = jax.config.jax_num_cpu_devices  # the probe restored it
        os.environ["XLA_FLAGS"] = ""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r["late"] = [xla_cpu.tune(), os.environ["XLA_FLAGS"]]
            r["late_quiet"] = xla_cpu.tune(warn=False)
        r["warnings"] = [str(w.message) for w in caught]
        print(json.dumps(r))
    """)
    flag = "--xla_cpu_experimental_ynn_fusion_type="
    assert out["opt_out"] == [False, None]
    assert out["user"] == [False, "--xla_cpu_experimental_ynn_fusion_type=dot"]
    assert out["tuned"] == [True, f"--xla_force_host_platform_device_count=2 {flag}"]
    assert out["again"] == [False, f"--xla_force_host_platform_device_count=2 {flag}"]
    assert out["forced"] == [True, f"--xla_force_host_platform_device_count=2 {flag}"]
    assert out["started_before"] is False and out["started_after"] is True
    assert out["devices"] == 2 and out["num_cpu_devices"] == -1
    assert out["late"] == [False, ""] and out["late_quiet"] is False
    assert len(out["warnings"]) == 1 and "already started" in out["warnings"][0]


@pytest.mark.skipif(not sys.platform.startswith("linux") or
                    __import__("platform").libc_ver()[0] != "glibc", reason="glibc only")
@pytest.mark.parametrize("opt_out", ["", "1"])
def test_tune_keeps_freed_memory_for_the_next_step(opt_out):
    """After tune(), a 64 MB block freed and allocated again comes back from the heap
    without page faults (glibc maps blocks over 32 MB from the kernel by default, and
    every new mapping faults each 4 KB page in again); CIANNA_JAX_KEEP_MALLOC opts
    out.  Nothing happens at import."""
    out = _python("""
        import ctypes, json, resource
        import cianna_jax
        from cianna_jax import host_memory, xla_cpu

        libc = ctypes.CDLL(None)             # malloc as XLA's runtime calls it
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
        libc.free.argtypes = (ctypes.c_void_p,)
        size = 64 * 2 ** 20

        def use_once():
            block = libc.malloc(size)
            ctypes.memset(block, 1, size)    # touch every page
            libc.free(block)

        def faults():
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(4):
                use_once()
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

        r = {"imported": faults()}
        xla_cpu.tune()
        use_once()                           # the heap grows once
        r["tuned"] = faults()
        r["again"] = host_memory.keep_freed_memory()
        print(json.dumps(r))
    """, CIANNA_JAX_KEEP_MALLOC=opt_out)
    assert out["imported"] > 40_000              # 4 x 16,384 pages, faulted each time
    if opt_out:
        assert out["tuned"] > 40_000 and out["again"] is False
    else:
        assert out["tuned"] < 2_000 and out["again"] is True
