"""Progress output that fits where it goes: one concept for every long task of the package.

``with Progress(total, "detecting", unit="tile") as bar: ... bar.update(n)`` shows

- a live bar with count, rate and ETA on a terminal (``stream`` is a TTY): tqdm when it is
  installed (extra ``progress``), else a single ``\\r``-redrawn line of its own;
- plain lines on a log file, a pipe or CI (not a TTY): at most one every ``every`` seconds,
  then a final line with done/total, elapsed time and rate; no carriage return, no cursor or
  ANSI code, so logs stay readable;
- a notebook widget in Jupyter/Colab when tqdm and ipywidgets work (``tqdm.notebook``), else
  plain lines there too.

Messages printed while a bar is live go through :meth:`Progress.write` (or the module's
:func:`write`), which clears the bar line, prints the message on its own line and redraws the
bar, instead of ``print``, which would garble it.

The mode is chosen per bar, never at import: the ``mode=`` argument (``"auto"``, ``"bar"``,
``"lines"``, ``"notebook"``, ``"off"``) wins when it is not ``"auto"``; otherwise the
environment variable ``CIANNA_JAX_PROGRESS`` (same values; e.g. ``CIANNA_JAX_PROGRESS=lines``
for a terminal recorded by ``script``, ``=off`` to silence every bar); otherwise detection as
above. ``enabled=False`` is ``"off"``. ``"notebook"`` outside a Jupyter kernel or without
ipywidgets falls back to plain lines. CIANNA's own console format for the imperative API
(``cianna_jax.console``) is separate and unchanged.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import time
from collections.abc import Callable
from typing import IO, Any

__all__ = ["ENV_VAR", "MODES", "Progress", "format_seconds", "in_notebook", "resolve_mode",
           "write"]

ENV_VAR = "CIANNA_JAX_PROGRESS"
MODES = ("auto", "bar", "lines", "notebook", "off")

_BAR_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
               "[{elapsed}, {rate_fmt}, ETA {remaining}{postfix}]")
_BAR_WIDTH = 20
_REDRAW = 0.1  # seconds between two redraws of the own bar


def format_seconds(s: float) -> str:
    """``h:mm:ss`` (or ``m:ss``) of a duration in seconds; ``?`` when it is unknown."""
    if not math.isfinite(s):
        return "?"
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _plural(unit: str) -> str:
    """``boxes``, ``patches``, ``tiles``, ``epochs``."""
    return unit + ("es" if unit.endswith(("s", "x", "z", "sh", "tch")) else "s")


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed or file-like without isatty
        return False


def _columns(stream: IO[str]) -> int:
    """Terminal width of ``stream`` (80 when unknown), so the own bar never wraps."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation is both
        return 80


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (Jupyter, VS Code, Colab).

    Looks at ``sys.modules`` only: IPython is never imported here.
    """
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    shell = get_ipython() if callable(get_ipython) else None
    if shell is None:
        return False
    return ("IPKernelApp" in getattr(shell, "config", {})
            or type(shell).__name__ == "ZMQInteractiveShell" or "google.colab" in sys.modules)


def _widgets_available() -> bool:
    return (importlib.util.find_spec("tqdm") is not None
            and importlib.util.find_spec("ipywidgets") is not None)


def _check_mode(mode: str, origin: str) -> str:
    value = mode.strip().lower()
    if value not in MODES:
        raise ValueError(f"{origin}={mode!r}: expected one of {', '.join(MODES)}")
    return value


def resolve_mode(mode: str = "auto", stream: IO[str] | None = None, *,
                 environ: dict[str, str] | None = None) -> str:
    """The mode a bar on ``stream`` gets: ``"bar"``, ``"lines"``, ``"notebook"`` or ``"off"``.

    ``mode`` wins unless ``"auto"``; then ``CIANNA_JAX_PROGRESS`` (from ``environ``, default
    ``os.environ``); then detection: a Jupyter kernel with ipywidgets -> notebook, a TTY -> bar,
    else lines. Raises ValueError on an unknown value.
    """
    chosen = _check_mode(mode, "mode")
    if chosen == "auto":
        env = (os.environ if environ is None else environ).get(ENV_VAR, "")
        chosen = _check_mode(env, ENV_VAR) if env.strip() else "auto"
    stream = sys.stderr if stream is None else stream
    if chosen == "notebook" and not (in_notebook() and _widgets_available()):
        return "lines"
    if chosen != "auto":
        return chosen
    if in_notebook():
        return "notebook" if _widgets_available() else "lines"
    return "bar" if _isatty(stream) else "lines"


def _tqdm_class(mode: str) -> Any:
    """tqdm's class for ``mode`` ("bar" or "notebook"), or None when it cannot be used."""
    try:
        if mode == "notebook":
            from tqdm.notebook import tqdm
        else:
            from tqdm.std import tqdm
    except ImportError:
        return None
    return tqdm


def write(msg: str, file: IO[str] | None = None) -> None:
    """Print ``msg`` on its own line without garbling a live bar (default file: stdout).

    Uses ``tqdm.write`` when tqdm is loaded (it clears and redraws tqdm's bars); on a TTY
    without it, clears the current line first. Prefer :meth:`Progress.write` inside a bar.
    """
    fp = sys.stdout if file is None else file
    std = sys.modules.get("tqdm.std")
    if std is not None:
        std.tqdm.write(msg, file=fp)
        fp.flush()
        return
    if _isatty(fp):
        fp.write("\r\x1b[K")
    fp.write(msg + "\n")
    fp.flush()


def _format_value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """``with Progress(total, "tiles") as p: ... p.update(n)``: a bar, plain lines or a widget.

    ``mode``: ``"auto"`` (default; see the module docstring), ``"bar"``, ``"lines"``,
    ``"notebook"`` or ``"off"``; ``enabled=False`` is ``"off"``. ``stream`` (default stderr)
    receives the progress; ``every`` is the least number of seconds between two plain lines;
    ``clock`` (seconds, default ``time.perf_counter``) times rate, ETA and line spacing, and
    can be replaced in tests.
    """

    def __init__(self, total: int, desc: str, *, enabled: bool = True, unit: str = "tile",
                 stream: IO[str] | None = None, every: float = 5.0, mode: str = "auto",
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.total, self.desc, self.unit = max(int(total), 0), desc, unit
        self.every = float(every)
        self.stream = sys.stderr if stream is None else stream
        self.mode = resolve_mode(mode, self.stream) if enabled else "off"
        self.enabled = self.mode != "off"
        self.done = 0
        self._clock = clock
        self.start = clock()
        self._last = self.start  # last plain line / own-bar redraw
        self._postfix = ""
        self._width = 0  # length of the own bar's last drawing
        self._closed = False
        self._bar: Any = None
        if self.mode in ("bar", "notebook"):
            self._bar = self._make_tqdm()
            if self._bar is None and self.mode == "notebook":
                self.mode = "lines"
        if self.mode == "bar" and self._bar is None:
            self._draw()

    def _make_tqdm(self) -> Any:
        cls = _tqdm_class(self.mode)
        if cls is None:
            return None
        try:
            return cls(total=self.total, desc=self.desc, unit=self.unit, leave=True,
                       file=self.stream, bar_format=_BAR_FORMAT, dynamic_ncols=True)
        except ImportError:  # tqdm.notebook without a working ipywidgets
            return None

    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return self._clock() - self.start

    @property
    def rate(self) -> float:
        """Units per second so far."""
        dt = self.elapsed
        return self.done / dt if dt > 0 else 0.0

    @property
    def eta(self) -> float:
        """Seconds left at the current rate (``nan`` while unknown)."""
        rate = self.rate
        return max(self.total - self.done, 0) / rate if rate > 0 else float("nan")

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done; redraw or print a line when it is time."""
        self.done += int(n)
        if self._closed or self.mode == "off":
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self._clock()
        if self.mode == "bar":
            if now - self._last >= _REDRAW or self.done >= self.total:
                self._last = now
                self._draw()
        elif now - self._last >= self.every:
            self._last = now
            self._print(self._progress_line())

    def set_postfix(self, **values: object) -> None:
        """Values (e.g. ``loss=0.12``) shown after the rate in the bar and in plain lines."""
        self._postfix = ", ".join(f"{k}={_format_value(v)}" for k, v in values.items())
        if self._closed or self.mode == "off":
            return
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix, refresh=True)
        elif self.mode == "bar":
            self._draw()

    def write(self, msg: str, file: IO[str] | None = None) -> None:
        """Print ``msg`` on its own line (default file: stdout), the bar redrawn below it."""
        fp = sys.stdout if file is None else file
        if self._bar is not None and not self._closed:
            self._bar.write(msg, file=fp)
            fp.flush()
            return
        live = self.mode == "bar" and not self._closed and self._width > 0
        if live:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
        elif fp is not self.stream:
            self.stream.flush()  # keep the order of progress and messages in a shared log
        fp.write(msg + "\n")
        fp.flush()
        if live:
            self._draw()

    def close(self) -> None:
        """End the bar (kept on screen with its final state) or print the final line."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "bar":
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
        elif self.mode == "lines":
            self._print(self._final_line())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- text ------------------------------------------------------------------------------

    def _tail(self) -> str:
        return f", {self._postfix}" if self._postfix else ""

    def _progress_line(self) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"{self.desc}: {self.done}/{self.total} {_plural(self.unit)} ({pct:.0f}%), "
                f"{self.rate:.1f} {_plural(self.unit)}/s, ETA {format_seconds(self.eta)}"
                f"{self._tail()}")

    def _final_line(self) -> str:
        return (f"{self.desc}: {self.done}/{self.total} {_plural(self.unit)} done in "
                f"{format_seconds(self.elapsed)} ({self.rate:.1f} {_plural(self.unit)}/s)"
                f"{self._tail()}")

    def _print(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def _draw(self) -> None:
        """The own bar: one line redrawn in place with ``\\r`` (spaces erase a longer one)."""
        frac = min(self.done / self.total, 1.0) if self.total else 1.0
        rate = f"{self.rate:.1f}" if self.done else "?"
        left = f"{self.desc}: {100 * frac:3.0f}%|"
        right = (f"| {self.done}/{self.total} [{format_seconds(self.elapsed)}, {rate} "
                 f"{self.unit}/s, ETA {format_seconds(self.eta)}{self._tail()}]")
        room = _columns(self.stream) - 1  # a line that wraps could not be redrawn with \r
        width = min(_BAR_WIDTH, max(room - len(left) - len(right), 5))
        fill = int(frac * width)
        text = (left + "#" * fill + " " * (width - fill) + right)[: max(room, 10)]
        pad = " " * max(self._width - len(text), 0)
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._width = len(text)
