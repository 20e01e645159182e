"""A progress report with rate and ETA: tqdm when installed, else a plain line on stderr."""

from __future__ import annotations

import sys
import time
from typing import IO

__all__ = ["Progress", "format_seconds"]


def format_seconds(s: float) -> str:
    """``h:mm:ss`` (or ``m:ss``) of a duration in seconds."""
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """``with Progress(total, "tiles") as p: ... p.update(n)``.

    Uses ``tqdm`` when it is installed (extra ``progress``), else prints
    ``desc done/total (pct), rate/s, ETA m:ss`` to ``stream`` at most every ``every`` seconds.
    ``enabled=False`` prints nothing.
    """

    def __init__(self, total: int, desc: str, *, enabled: bool = True, unit: str = "tile",
                 stream: IO[str] | None = None, every: float = 2.0) -> None:
        self.total, self.desc, self.unit = int(total), desc, unit
        self.enabled, self.every = enabled, every
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.start = time.perf_counter()
        self._last = self.start
        self._bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=self.total, desc=desc, unit=unit, leave=False,
                                 file=self.stream)
            except ImportError:
                self._bar = None

    @property
    def rate(self) -> float:
        """Units per second so far."""
        dt = time.perf_counter() - self.start
        return self.done / dt if dt > 0 else 0.0

    def update(self, n: int = 1) -> None:
        self.done += int(n)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if now - self._last >= self.every or self.done >= self.total:
            self._last = now
            rate = self.rate
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            pct = 100.0 * self.done / max(self.total, 1)
            eta_s = format_seconds(eta) if eta == eta else "?"
            print(f"{self.desc}: {self.done}/{self.total} {self.unit}s ({pct:.0f}%), "
                  f"{rate:.1f} {self.unit}s/s, ETA {eta_s}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
