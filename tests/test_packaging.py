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
from cianna_jax import cli, host_memory, xla_cpu

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


def test_readme_commands_are_ones_the_command_line_takes():
    """Every ``$ cianna-jax ...`` line of the README and docs parses with today's options
    (a renamed or removed option fails here, not for a reader)."""
    import re
    import shlex

    parser = cli._parser()
    commands = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for line in doc.read_text().splitlines():
            if m := re.match(r"\s*\$ (cianna-jax\s.*)", line):
                commands.append(shlex.split(m.group(1), comments=True)[1:])
    assert len(commands) >= 9  # demo, simulate, train, predict, val, ... (2026-12-06: 9)
    for args in commands:
        parser.parse_args(args)  # SystemExit (and the reason on stderr) for a bad one


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


@pytest.mark.parametrize("flags", [None, "--xla_force_host_platform_device_count=1"])
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


@pytest.mark.parametrize("version, expected", [
    ("0.10.2", xla_cpu.CLASSIC_EMITTERS), ("0.11.0", xla_cpu.CLASSIC_EMITTERS),
    ("0.10.2.dev20260501", xla_cpu.CLASSIC_EMITTERS), ("0.11.1", ""), ("0.12.0.1", ""),
    ("1.0", ""), ("nightly", ""), (None, "")])
def test_classic_emitters_flag_follows_the_jaxlib_version(monkeypatch, version, expected):
    def fake(name):
        assert name == "jaxlib"
        if version is None:
            raise metadata.PackageNotFoundError(name)
        return version

    monkeypatch.setattr(metadata, "version", fake)
    assert xla_cpu.classic_emitters_flag() == expected


C = "--xla_cpu_use_fusion_emitters=false"  # xla_cpu.CLASSIC_EMITTERS
D = "--xla_force_host_platform_device_count=2"
U = "--xla_cpu_use_fusion_emitters=true"


@pytest.mark.parametrize("classic, flags, expected", [
    (C, "", C), (C, D, f"{D} {C}"), (C, U, U), (C, f"{D} {U}", f"{D} {U}"),
    ("", "", ""), ("", D, D)])
def test_with_classic_emitters_adds_the_flag_unless_chosen(monkeypatch, classic, flags,
                                                           expected):
    """The flag is added where this XLA has it, never over the user's own choice, and
    nothing is set."""
    assert xla_cpu.CLASSIC_EMITTERS == C
    monkeypatch.setattr(xla_cpu, "classic_emitters_flag", lambda: classic)
    before = os.environ.get("XLA_FLAGS")
    assert xla_cpu.with_classic_emitters(flags) == expected
    assert os.environ.get("XLA_FLAGS") == before


def test_classic_emitters_flag_is_one_this_xla_accepts():
    """XLA aborts a process whose ``XLA_FLAGS`` hold a flag it does not know, as the
    backend starts: the flag the function gives must start JAX (where it gives none, the
    installed XLA must refuse the flag, or the version rule is out of date)."""
    code = "import jax.numpy as jnp; print(float(jnp.ones(3).sum()))"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", XLA_FLAGS=xla_cpu.CLASSIC_EMITTERS)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    if xla_cpu.classic_emitters_flag():
        assert done.returncode == 0 and done.stdout.strip() == "3.0", done.stderr[-2000:]
    else:
        assert done.returncode != 0 and "Unknown flag" in done.stderr, done.stdout


def test_hugepage_tunable_is_added_once_and_respects_the_user():
    env = {"PATH": "/bin"}
    if not host_memory.applies(env):
        pytest.skip("no glibc >= 2.35 here")
    assert host_memory.with_hugepages(env)["GLIBC_TUNABLES"] == host_memory.TUNABLE
    other = {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=10"}
    assert host_memory.with_hugepages(other)["GLIBC_TUNABLES"] == \
        f"glibc.malloc.tcache_count=10:{host_memory.TUNABLE}"
    users = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}     # the user's value stays
    assert host_memory.with_hugepages(users) == users
    assert host_memory.with_hugepages({host_memory.OPT_OUT_ENV: "1"}) == \
        {host_memory.OPT_OUT_ENV: "1"}
    assert host_memory.with_hugepages(
        {host_memory.OPT_OUT_ENV: "0"})["GLIBC_TUNABLES"] == host_memory.TUNABLE


def test_restart_goes_on_when_the_interpreter_cannot_start_again(monkeypatch):
    """A failed restart (no interpreter to start) leaves the process running as it is."""
    if not host_memory.applies({}):
        pytest.skip("no glibc >= 2.35 here")
    for name in ("GLIBC_TUNABLES", host_memory.OPT_OUT_ENV, "CIANNA_JAX_RESTARTED_WITH_HUGEPAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "executable", str(ROOT / "no-such-python"))
    assert host_memory.restart_with_hugepages(["-c", "pass"]) is None
    monkeypatch.setattr(sys, "executable", "")
    assert host_memory.restart_with_hugepages(["-c", "pass"]) is None


def _thp_enabled() -> bool:
    try:
        mode = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False
    return "[always]" in mode or "[madvise]" in mode


@pytest.mark.skipif(not host_memory.applies({}) or not _thp_enabled(),
                    reason="needs glibc >= 2.35 and transparent huge pages")
def test_restart_with_hugepages_cuts_the_page_faults_of_big_blocks(tmp_path):
    """restart_with_hugepages() replaces the process by one started with the tunable
    (once: the restarted one goes on); there a 64 MB block freed and allocated again
    faults in huge pages instead of 16,384 small ones each time.  tune() exports the
    tunable to children; import changes nothing."""
    code = """
        import ctypes, json, os, resource, sys
        import cianna_jax
        from cianna_jax import host_memory, xla_cpu
        before = os.environ.get("GLIBC_TUNABLES")
        host_memory.restart_with_hugepages([__file__])
        libc = ctypes.CDLL(None)             # malloc as XLA's runtime calls it
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, (ctypes.c_size_t,)
        libc.free.argtypes = (ctypes.c_void_p,)
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(4):
            block = libc.malloc(64 * 2 ** 20)
            ctypes.memset(block, 1, 64 * 2 ** 20)  # touch every page
            libc.free(block)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
        xla_cpu.tune()
        print(json.dumps({"started": host_memory.started_with_hugepages(), "faults": faults,
                          "before": before, "exported": os.environ.get("GLIBC_TUNABLES")}))
    """
    script = tmp_path / "faults.py"
    script.write_text(textwrap.dedent(code))
    runs = {}
    for opt_out in ("", "1"):
        env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
        env.update({host_memory.OPT_OUT_ENV: opt_out, "JAX_PLATFORMS": "cpu"})
        done = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.strip().splitlines()
        assert len(lines) == 1  # one process printed: the restarted one, or the original
        runs[opt_out] = json.loads(lines[0])
    on, off = runs[""], runs["1"]
    assert on["started"] and on["before"] == host_memory.TUNABLE
    assert on["exported"] == host_memory.TUNABLE
    assert not off["started"] and off["before"] is None and off["exported"] is None
    assert off["faults"] > 40_000                 # 4 x 16,384 small pages
    assert on["faults"] < off["faults"] / 4


def test_cpu_devices_are_set_before_jax_starts_or_refused():
    """``xla_cpu.use_cpu_devices``: 1 sets nothing; in this process JAX already runs, so
    more devices are refused, naming the caller's option; below 1 is refused too."""
    import jax

    jax.devices()  # a backend, as in any test process
    before = jax.config.jax_num_cpu_devices
    xla_cpu.use_cpu_devices(1)
    with pytest.raises(RuntimeError, match="--cpu-devices: JAX already started"):
        xla_cpu.use_cpu_devices(2, "--cpu-devices")
    with pytest.raises(ValueError, match="cpu_devices: expected at least 1, received 0"):
        xla_cpu.use_cpu_devices(0)
    assert jax.config.jax_num_cpu_devices == before
