"""Crash-safe writes: old file or complete new one, synced, killed writes cleaned up."""

import os
import subprocess
import sys
import time

import pytest

from cianna_jax.io import atomic


def test_replaces_only_on_success(tmp_path):
    path = tmp_path / "net.dat"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic.atomic_write(path) as fh:
            fh.write(b"partial")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["net.dat"]
    with atomic.atomic_write(path) as fh:
        fh.write(b"new")
    assert path.read_bytes() == b"new"
    assert sorted(os.listdir(tmp_path)) == ["net.dat"]


def test_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync")
        return real_fsync(fd)

    def replace(a, b):
        events.append("replace")
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    with atomic.atomic_write(tmp_path / "f.dat") as fh:
        fh.write(b"x")
    assert events[:2] == ["fsync", "replace"]  # the data is on disk before it has the name
    if os.name != "nt":
        assert events == ["fsync", "replace", "fsync"]  # and the rename itself is persisted


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporary_files_are_removed_and_live_ones_kept(tmp_path):
    target = tmp_path / "net.dat"
    host = atomic._HOST
    dead = tmp_path / f".net.dat.{host}-{_dead_pid()}-{'a' * 12}.tmp"
    legacy = tmp_path / f".net.dat.{'b' * 12}.tmp"  # written before names were tagged
    mine = tmp_path / f".net.dat.{host}-{os.getpid()}-{'c' * 12}.tmp"
    foreign_old = tmp_path / f".net.dat.{'0' * 8}-1-{'d' * 12}.tmp"
    foreign_new = tmp_path / f".net.dat.{'0' * 8}-1-{'e' * 12}.tmp"
    other_file = tmp_path / f".other.dat.{host}-{_dead_pid()}-{'f' * 12}.tmp"
    for p in (dead, legacy, mine, foreign_old, foreign_new, other_file):
        p.write_bytes(b"x" * 1000)
    old = time.time() - 2 * atomic.FOREIGN_TEMP_AGE_S
    os.utime(foreign_old, (old, old))
    removed = atomic.remove_stale_temps(target)
    assert sorted(os.path.basename(p) for p in removed) == sorted(
        p.name for p in (dead, legacy, foreign_old))
    assert mine.exists() and foreign_new.exists() and other_file.exists()


def test_a_write_cleans_up_after_a_killed_writer(tmp_path):
    target = tmp_path / "big.dat"
    code = ("import sys, os\nfrom cianna_jax.io import atomic\n"
            "with atomic.atomic_write(sys.argv[1]) as fh:\n"
            "    fh.write(b'x' * 1_000_000); fh.flush(); print('writing', flush=True)\n"
            "    os.kill(os.getpid(), 9)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True)
    assert proc.returncode != 0 and b"writing" in proc.stdout
    leftovers = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert len(leftovers) == 1 and not target.exists()
    with atomic.atomic_write(target) as fh:
        fh.write(b"ok")
    assert sorted(os.listdir(tmp_path)) == ["big.dat"]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="directory does not exist"):
        with atomic.atomic_write(tmp_path / "no" / "such.dat") as fh:
            fh.write(b"x")


def test_a_folder_in_place_of_the_file_is_named_before_writing(tmp_path):
    """Was os.replace's error naming our temporary file, after the data was written."""
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError, match=r"is a folder, cannot save over it .*'.*out'"):
        with atomic.atomic_write(tmp_path / "out") as fh:
            fh.write(b"x")
    assert os.listdir(tmp_path) == ["out"] and not os.listdir(tmp_path / "out")


def test_make_folder_creates_parents_and_refuses_a_file(tmp_path):
    assert atomic.make_folder(tmp_path / "a" / "b") == str(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    atomic.make_folder(tmp_path / "a")  # already there: nothing to do
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError, match="f: exists and is not a folder"):
        atomic.make_folder(tmp_path / "f")
    with pytest.raises(FileExistsError, match="f: exists and is not a folder"):
        atomic.check_folder(tmp_path / "f")
    assert atomic.check_folder(tmp_path / "new") == str(tmp_path / "new")
    assert not (tmp_path / "new").exists()  # checked, not made
    assert (tmp_path / "f").read_text() == "x"
