"""Progress output per destination: live bar on a TTY, plain lines elsewhere, nothing when off."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from cianna_jax.progress import ENV_VAR, Progress, format_seconds, resolve_mode, write


class FakeTTY(io.StringIO):
    """An in-memory terminal."""

    def isatty(self) -> bool:
        return True


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def no_tqdm(monkeypatch):
    """Hide tqdm so the package's own bar is used."""
    for name in ("tqdm", "tqdm.std", "tqdm.notebook", "tqdm.auto"):
        monkeypatch.setitem(sys.modules, name, None)


def test_lines_are_rate_limited_plain_and_end_with_a_final_line():
    out, clock = io.StringIO(), FakeClock()
    with Progress(100, "detecting", stream=out, every=5.0, clock=clock) as p:
        assert p.mode == "lines"
        for _ in range(100):  # 100 units, one every 0.5 s: 50 s in all
            clock.now += 0.5
            p.update(1)
        p.set_postfix(loss=0.123456)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 10 + 1  # one every 5 s over 50 s, then the final line
    assert lines[0].startswith("detecting: 10/100 tiles (10%), 2.0 tiles/s, ETA 0:45")
    assert lines[-1] == "detecting: 100/100 tiles done in 0:50 (2.0 tiles/s), loss=0.1235"


def test_lines_of_a_short_task_are_one_final_line():
    out, clock = io.StringIO(), FakeClock()
    with Progress(3, "noise map", stream=out, unit="box", clock=clock) as p:
        clock.now += 1.0
        p.update(3)
    assert out.getvalue() == "noise map: 3/3 boxes done in 0:01 (3.0 boxes/s)\n"


def test_own_bar_on_a_tty_redraws_in_place_with_an_eta(no_tqdm):
    tty, clock = FakeTTY(), FakeClock()
    with Progress(10, "training", stream=tty, unit="epoch", clock=clock) as p:
        assert p.mode == "bar" and p._bar is None
        for _ in range(4):
            clock.now += 2.0
            p.update(1)
        snapshot = tty.getvalue()
    assert snapshot.count("\r") >= 5 and "\n" not in snapshot
    assert "4/10 [0:08, 0.5 epoch/s, ETA 0:12]" in snapshot
    assert tty.getvalue().endswith("\n") and tty.getvalue().count("\n") == 1


def test_tqdm_bar_on_a_tty_redraws_in_place_with_an_eta():
    pytest.importorskip("tqdm")
    tty = FakeTTY()
    with Progress(10, "training", stream=tty, unit="epoch") as p:
        assert p.mode == "bar" and p._bar is not None
        p.update(4)
        p.set_postfix(loss=1.5)
    text = tty.getvalue()
    assert "\r" in text and "ETA" in text and "4/10" in text and "loss=1.5" in text


@pytest.mark.parametrize("tqdm", [False, True], ids=["own", "tqdm"])
def test_write_during_a_bar_puts_the_message_on_its_own_line(tqdm, monkeypatch):
    if tqdm:
        pytest.importorskip("tqdm")
    else:
        for name in ("tqdm", "tqdm.std", "tqdm.notebook", "tqdm.auto"):
            monkeypatch.setitem(sys.modules, name, None)
    tty, clock = FakeTTY(), FakeClock()
    with Progress(5, "epochs", stream=tty, clock=clock) as p:
        clock.now += 1.0
        p.update(2)
        p.write("epoch 2: mean loss 0.5", file=tty)
        clock.now += 1.0
        p.update(3)
    screen = _render(tty.getvalue())
    assert "epoch 2: mean loss 0.5" in screen
    assert screen[0] == "epoch 2: mean loss 0.5"  # not glued to the bar
    assert "5/5" in screen[1]


def _render(text: str) -> list[str]:
    """What a terminal shows: ``\\r`` goes back to column 0 and overwrites."""
    rows, row, col = [], [], 0
    for ch in text:
        if ch == "\r":
            col = 0
        elif ch == "\n":
            rows.append("".join(row).rstrip())
            row, col = [], 0
        else:
            row[col:col + 1] = [ch]
            col += 1
    if row:
        rows.append("".join(row).rstrip())
    return rows


def test_write_in_lines_mode_and_the_module_function(capsys):
    out = io.StringIO()
    with Progress(2, "x", stream=out, clock=FakeClock()) as p:
        p.write("hello")
        p.update(2)
    write("bye")
    assert capsys.readouterr().out == "hello\nbye\n"
    assert out.getvalue().startswith("x: 2/2 tiles done")


@pytest.mark.parametrize("how", ["enabled", "mode", "env"])
def test_off_prints_nothing(how, monkeypatch):
    kwargs = {"enabled": False} if how == "enabled" else {"mode": "off"} if how == "mode" else {}
    if how == "env":
        monkeypatch.setenv(ENV_VAR, "off")
    for stream in (io.StringIO(), FakeTTY()):
        with Progress(4, "x", stream=stream, **kwargs) as p:
            p.update(4)
            p.set_postfix(loss=1.0)
        assert stream.getvalue() == "" and p.mode == "off" and p.done == 4


def test_environment_variable_selects_the_mode(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "lines")
    tty = FakeTTY()
    with Progress(2, "x", stream=tty, clock=FakeClock()) as p:
        p.update(2)
    assert p.mode == "lines" and "\r" not in tty.getvalue()
    monkeypatch.setenv(ENV_VAR, "bar")
    assert resolve_mode("auto", io.StringIO()) == "bar"
    assert resolve_mode("lines", FakeTTY()) == "lines"  # an explicit mode wins
    assert resolve_mode("notebook", FakeTTY()) == "lines"  # no Jupyter kernel here
    monkeypatch.setenv(ENV_VAR, "sometimes")
    with pytest.raises(ValueError, match=ENV_VAR):
        resolve_mode("auto", FakeTTY())
    with pytest.raises(ValueError, match="mode"):
        Progress(1, "x", mode="loud")


def test_auto_detection_without_environment():
    assert resolve_mode("auto", FakeTTY(), environ={}) == "bar"
    assert resolve_mode("auto", io.StringIO(), environ={}) == "lines"


def test_units_in_plain_lines():
    for unit, plural in (("box", "boxes"), ("patch", "patches"), ("epoch", "epochs"),
                         ("source", "sources")):
        out = io.StringIO()
        with Progress(1, "x", stream=out, unit=unit, clock=FakeClock()) as p:
            p.update(1)
        assert f"1/1 {plural} done" in out.getvalue()


def test_format_seconds():
    assert format_seconds(59.6) == "1:00"
    assert format_seconds(3725) == "1:02:05"
    assert format_seconds(float("nan")) == "?"


def test_no_import_of_optional_packages():
    code = ("import sys, cianna_jax.progress; "
            "bad = [m for m in ('tqdm', 'IPython', 'ipywidgets') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
