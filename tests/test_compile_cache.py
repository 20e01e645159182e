"""The optional persistent compilation cache (cianna_jax.compile_cache)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cianna_jax import compile_cache

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import jax, numpy as np
hits = []
jax.monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if name == "/jax/compilation_cache/cache_hits" else None)
import cianna_jax as cnn
from cianna_jax import xla_cpu, compile_cache
print("AT_IMPORT", jax.config.jax_compilation_cache_dir)
xla_cpu.tune()
print("AFTER_TUNE", compile_cache.enabled_path())
f = jax.jit(lambda x: jax.numpy.tanh(x) * 3 + 1)
f(np.ones((7, 5), np.float32)).block_until_ready()
print("HITS", len(hits))
"""


def _run(env_value, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
               XDG_CACHE_HOME=str(tmp_path / "xdg"))
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if env_value is None:
        env.pop(compile_cache.ENV, None)
    else:
        env[compile_cache.ENV] = env_value
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    return lines


def test_never_enabled_at_import_and_off_without_the_variable(tmp_path):
    lines = _run(None, tmp_path)
    assert lines["AT_IMPORT"] == "None" and lines["AFTER_TUNE"] == "None"
    assert not (tmp_path / "xdg").exists()
    assert _run("0", tmp_path)["AFTER_TUNE"] == "None"


def test_environment_variable_enables_it_and_a_second_process_hits(tmp_path):
    folder = tmp_path / "cache"
    first = _run(str(folder), tmp_path)
    assert first["AT_IMPORT"] == "None"  # still nothing at import
    assert first["AFTER_TUNE"] == str(folder)
    assert any(folder.iterdir())  # programs written, even sub-second ones
    second = _run(str(folder), tmp_path)
    assert int(second["HITS"]) >= 1


def test_default_folder(tmp_path):
    lines = _run("1", tmp_path)
    assert lines["AFTER_TUNE"] == str(tmp_path / "xdg" / "cianna_jax" / "xla")
    assert any((tmp_path / "xdg" / "cianna_jax" / "xla").iterdir())


def test_enable_compile_cache_sets_jax_options(tmp_path, monkeypatch):
    import jax

    old = {k: getattr(jax.config, k) for k in (
        "jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes")}
    try:
        path = compile_cache.enable_compile_cache(tmp_path / "c", min_compile_seconds=0.5)
        assert path == str(tmp_path / "c") and os.path.isdir(path)
        assert jax.config.jax_compilation_cache_dir == path
        assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.5
    finally:
        for k, v in old.items():
            jax.config.update(k, v)
        compile_cache._state["path"] = None


@pytest.mark.parametrize("value", ["", "0", "off", "no"])
def test_off_values(value, monkeypatch):
    monkeypatch.setenv(compile_cache.ENV, value)
    assert compile_cache.enable_from_env() is None


def test_a_bad_folder_is_named_and_the_environment_only_warns(tmp_path, monkeypatch):
    """A file where the cache folder should go: a named error when asked for in code; from
    the environment, a warning and the run goes on without the cache (it used to end the
    script in os.makedirs' traceback at cnn.init)."""
    import jax

    before = jax.config.jax_compilation_cache_dir
    blocker = tmp_path / "afile"
    blocker.write_text("")
    with pytest.raises(NotADirectoryError, match=r"compile cache .*afile: exists and is not a "
                                                 r"folder"):
        compile_cache.enable_compile_cache(blocker)
    monkeypatch.setenv(compile_cache.ENV, str(blocker / "sub"))
    with pytest.warns(RuntimeWarning, match="running without the compilation cache"):
        assert compile_cache.enable_from_env() is None
    assert compile_cache.enabled_path() is None
    assert jax.config.jax_compilation_cache_dir == before
