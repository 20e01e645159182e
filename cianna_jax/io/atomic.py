"""Crash-safe file writes: a temporary file beside the target, synced, then renamed.

A reader of ``path`` sees the old file or the complete new one, never a torn file,
even after a power loss (the data and the rename are both ``fsync``-ed).  A writer
killed before the rename leaves its temporary file behind; the next write or read of
the same path through :func:`remove_stale_temps` deletes it once its writer is
known to be gone.  Temporary names are ``.<name>.<host>-<pid>-<random>.tmp``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from typing import IO

__all__ = ["atomic_write", "check_folder", "make_folder", "remove_stale_temps", "temp_path"]

#: A temporary file of another machine (shared folder) is removed after this many seconds.
FOREIGN_TEMP_AGE_S = 3600.0

_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_RE = re.compile(r"\.(?:(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-)?[0-9a-f]{12}\.tmp\Z")


def check_folder(path: str | os.PathLike) -> str:
    """``path`` as a string; FileExistsError naming it when a file of that name is in the
    way of a folder (checked before the work whose output goes there)."""
    p = os.fspath(path)
    if os.path.exists(p) and not os.path.isdir(p):
        raise FileExistsError(f"{p}: exists and is not a folder")
    return p


def make_folder(path: str | os.PathLike) -> str:
    """Create the output folder ``path`` (and its parents) if missing (see
    :func:`check_folder`).  Returns the path."""
    p = check_folder(path)
    os.makedirs(p, exist_ok=True)
    return p


def temp_path(path: str | os.PathLike) -> str:
    """A fresh temporary name beside ``path``, tagged with this host and process."""
    fspath = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(fspath)
    return os.path.join(folder, f".{name}.{_HOST}-{os.getpid()}-{secrets.token_hex(6)}.tmp")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of ours may be writing it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _stale(entry: os.DirEntry, host: str | None, pid: str | None) -> bool:
    if host is None:  # written by a version without tags: no writer can still own it
        return True
    if host == _HOST and os.name != "nt":  # (os.kill(pid, 0) would kill it on Windows)
        return not _process_alive(int(pid))
    try:
        age = time.time() - entry.stat().st_mtime
    except OSError:
        return False
    return age > FOREIGN_TEMP_AGE_S


def remove_stale_temps(path: str | os.PathLike) -> list[str]:
    """Delete the temporary files that killed writes of ``path`` left behind; returns
    their paths.  Files of a writer that may still be running are kept."""
    fspath = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(fspath)
    prefix = f".{name}"
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.name.endswith(".tmp"):
            continue
        m = _TEMP_RE.match(entry.name, len(prefix))
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        if _stale(entry, m.group("host"), m.group("pid")):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(entry.path)
    return removed


def _fsync_folder(folder: str) -> None:
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """``with atomic_write(path) as fh: fh.write(...)``: ``path`` is replaced only when
    the block ends without error; on any error (or Ctrl-C) the previous file stays and
    the temporary file is removed.  Raises FileNotFoundError for a missing folder."""
    fspath = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(fspath)
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, "directory does not exist, cannot save",
                                os.fspath(path))
    if os.path.isdir(fspath):
        raise IsADirectoryError(errno.EISDIR, "is a folder, cannot save over it (give a file "
                                "name)", os.fspath(path))
    remove_stale_temps(fspath)
    tmp = temp_path(fspath)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, fspath)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(folder)
