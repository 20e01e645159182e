"""CIANNA V-1.1 optimizer-state files (``save(file, save_optim=1)``,
``train(save_optim_every=k)``, and ``load`` of such files).

Layout (spec ``cianna_v11.md`` section 2, checked byte for byte against the original's
files): an own header, then a V-1.1 model file (input dims and one record per layer)
whose learned values are replaced, in every dense, conv, norm and GRN record, by the
layer's state blocks, each laid out like the learned values (same rows; ASCII ``%g``
rows then a blank line, norm/GRN a gamma and a beta line then a blank line)::

    header     binary: char[9] "OptimSave" (no NUL), int use_wema, float wema_rate,
                       then "SGD" float momentum | "ADAM" float beta1, beta2, eps, int
                       ams_grad | "RMSprop" float alpha, momentum, eps, int centered
               ASCII:  "OptimSave\\n", "use_wema %d wema_rate %g\\n", then the config
                       line ``OptimizerConfig.header_string()`` and "\\n"
    dims       the model file's header (4 ints / "WxHxDxC\\n")
    records    the model records; per layer with learned values, in this order:
               1. the FP32 (training) weights   2. the EMA weights, if use_wema
               3. SGD: velocity (momentum >= 0.01)
                  ADAM: opt_step (binary uint64 little-endian, ASCII "OptStep %ld\\n"),
                        first_mom, second_mom, max_second_mom (ams_grad)
                  RMSprop: sqrt_avg, velocity (momentum >= 0.01), grad_avg (centered)

The original writes its ASCII SGD line without a newline, so the dims are glued to it
(``SGD_mom0.96x6x1x2``; the original cannot reload such a file).  We write the newline
(the original's reader then works: ``fscanf`` skips whitespace) and read both forms.  A
glued line is split as follows: the momentum is a prefix written as C's ``%g`` writes a
float32 (so ``0.`` or ``06`` are not momenta) followed by a ``WxHxDxC`` with positive
axes and no leading zero.  When several splits remain (``SGD_mom0.512x12x1x1``: 0.5 and
12x12x1x1 or 0.51 and 2x12x1x1), the one whose dims equal the caller's ``in_dims`` wins;
otherwise the splits whose records then parse completely are kept, and among those the
one whose first record is a conv saved with the same input dims (CIANNA writes the
conv's actual input as ``idim``).  Still ambiguous: :class:`CiannaFormatError` asking
for ``in_dims``.

The original's binary reader drops the stored ADAM step (spec defect 2); the step is
stored correctly and read here.  Steps above 2**31-1 are refused (the optimizer counts
int32 updates).
"""

from __future__ import annotations

import errno
import math
import os
import re
import struct
from typing import NamedTuple

import numpy as np

from ..network import INPUT, Network, check_params, make_network
from ..optim import OptimizerConfig, optimizer_buffers, parse_optimizer
from . import ascii_format, binary_format
from .atomic import remove_stale_temps
from .cianna_format import CiannaFormatError, write_network
from .network_file import layers_to_records, records_to_layers, yolo_config_from_record
from .records import STEP_EXTRA, WEIGHT_KINDS, record_kind
from .text_numbers import c_format

__all__ = ["OptimFile", "MAGIC", "write_optimizer_file", "is_optimizer_file",
           "read_optimizer_file", "state_block_names"]

#: First bytes of an optimizer-state file (binary and ASCII).
MAGIC = b"OptimSave"
_VERSION = "1.1"
_HEADER_KIND = "optimizer-state header"
# binary config: kind -> (bytes, struct of its values after the name)
_BIN_KINDS = {"SGD": "f", "ADAM": "fffi", "RMSprop": "fffi"}
_MAX_LINE = ascii_format.MAX_LINE
_USE_WEMA_RE = re.compile(r"use_wema ([-+]?\d{1,10}) wema_rate ([^ \n]{1,64}) *\Z")
_GLUED_SGD_RE = re.compile(r"SGD_mom([0-9.eE+-]{1,64}x\d{1,10}x\d{1,10}x\d{1,10}) *\Z")
_DIMS_RE = re.compile(r"([1-9]\d{0,9})x([1-9]\d{0,9})x([1-9]\d{0,9})x([1-9]\d{0,9})\Z")


class OptimFile(NamedTuple):
    """What :func:`read_optimizer_file` returns.

    ``net``/``params``: the network and its FP32 training weights, as
    ``load_network(version="1.1")`` gives them (the first layer keeps its saved bias);
    ``buffers``: per layer the optimizer buffers in the form
    :func:`cianna_jax.optim.set_optimizer_buffers` takes (``{}`` for layers without
    learned values; ``"ema"`` when ``use_wema``, ``"opt_step"`` an int)."""

    use_wema: bool
    wema_rate: float
    config: OptimizerConfig
    net: Network
    params: tuple
    buffers: list


def state_block_names(config: OptimizerConfig, use_wema: bool) -> tuple[str, ...]:
    """The blocks stored after the FP32 weights of each layer, in file order."""
    return (("ema",) if use_wema else ()) + tuple(config.buffer_names)


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


def _f32(v) -> float:
    return float(np.float32(v))


def _binary_header(config: OptimizerConfig, use_wema: bool, wema_rate: float) -> bytes:
    head = MAGIC + struct.pack("<if", int(use_wema), wema_rate)
    if config.kind == "SGD":
        return head + b"SGD" + struct.pack("<f", config.momentum)
    if config.kind == "ADAM":
        return head + b"ADAM" + struct.pack("<fffi", config.beta1, config.beta2,
                                            config.epsilon, config.ams_grad)
    return head + b"RMSprop" + struct.pack("<fffi", config.alpha, config.momentum,
                                           config.epsilon, config.centered)


def _ascii_header(config: OptimizerConfig, use_wema: bool, wema_rate: float) -> str:
    # The original writes no newline after the SGD line (defect 3): we always write one.
    return ("OptimSave\nuse_wema %d wema_rate %s\n%s\n"
            % (int(use_wema), c_format("%g", wema_rate), config.header_string()))


def write_optimizer_file(path, net: Network, params, config: OptimizerConfig, opt_state, *,
                         use_wema: bool, wema_rate: float, binary: bool) -> None:
    """Write CIANNA V-1.1's optimizer-state file of ``net``: the FP32 training weights
    ``params``, then per layer the EMA (``use_wema``) and the buffers of ``opt_state``
    (a V-1.1 optimizer state for ``config``), in CIANNA's ASCII or binary layout
    (atomic write, V-1.1 record dialect).  ``wema_rate`` is stored as a float32.

    ValueError when the state does not match ``config``/``use_wema`` or a layer cannot
    be saved (see :func:`~cianna_jax.io.network_file.layers_to_records`)."""
    if not isinstance(config, OptimizerConfig):
        raise TypeError(f"config: expected an OptimizerConfig, received {type(config).__name__}")
    use_wema = bool(use_wema)
    wema_rate = float(wema_rate)
    if not math.isfinite(wema_rate) or wema_rate > 1:
        raise ValueError(f"wema_rate: expected a finite number <= 1, received {wema_rate}")
    wema_rate = _f32(wema_rate)
    params = tuple(params)
    buffers = optimizer_buffers(config, opt_state)
    if len(buffers) != len(net.layers):
        raise ValueError(f"opt_state: buffers for {len(buffers)} layers, the network has "
                         f"{len(net.layers)}")
    names = state_block_names(config, use_wema)
    records = layers_to_records(net, params)
    blocks = {}
    for i, (rec, got) in enumerate(zip(records, buffers)):
        kind = record_kind(rec)
        if kind not in WEIGHT_KINDS:
            continue
        if "ema" in got and not use_wema:
            raise ValueError("use_wema=False but the optimizer state tracks an EMA")
        missing = [n for n in names if n not in got]
        if missing:
            extra = (" (use_wema=True but the optimizer state tracks no EMA)"
                     if "ema" in missing else "")
            raise ValueError(f"opt_state: layer {i + 1} ({kind}) has no {missing} "
                             f"buffer{extra}")
    for name in names:
        if name == STEP_EXTRA:
            continue
        block_params = tuple(got[name] if name in got else p for got, p in zip(buffers, params))
        blocks[name] = layers_to_records(net, block_params)

    if binary:
        weight_chunks, step_chunk = binary_format.binary_weight_chunks, \
            binary_format.binary_step_chunk
        prefix = _binary_header(config, use_wema, wema_rate)
    else:
        weight_chunks, step_chunk = ascii_format.ascii_weight_chunks, \
            ascii_format.ascii_step_chunk
        prefix = _ascii_header(config, use_wema, wema_rate)

    def body(index, rec):
        yield from weight_chunks(rec)
        for name in names:
            if name == STEP_EXTRA:
                yield step_chunk(int(buffers[index][name]))
            else:
                yield from weight_chunks(blocks[name][index])

    write_network(path, net.in_dims, records, binary, version=_VERSION, prefix=prefix,
                  body=body)


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


def is_optimizer_file(path, binary: bool) -> bool:
    """Whether the file at ``path`` is an optimizer-state file (starts with ``OptimSave``,
    in both formats); False for a missing file."""
    try:
        with open(os.fspath(path), "rb") as fh:
            return fh.read(len(MAGIC)) == MAGIC
    except FileNotFoundError:
        return False


def _error(path, detail, where=None) -> CiannaFormatError:
    return CiannaFormatError(path, None, detail, kind=_HEADER_KIND, where=where)


def _config(path, kind, values, where) -> OptimizerConfig:
    try:
        if kind == "SGD":
            return OptimizerConfig("SGD", momentum=values[0])
        if kind == "ADAM":
            return OptimizerConfig("ADAM", beta1=values[0], beta2=values[1],
                                   epsilon=values[2], ams_grad=values[3])
        return OptimizerConfig("RMSprop", alpha=values[0], momentum=values[1],
                               epsilon=values[2], centered=values[3])
    except (TypeError, ValueError) as e:
        raise _error(path, str(e), where) from None


def _check_wema(path, use_wema, wema_rate, where, hint=""):
    if use_wema not in (0, 1):
        raise _error(path, f"use_wema: expected 0 or 1, found {use_wema}{hint}", where)
    if not math.isfinite(wema_rate) or wema_rate > 1:
        raise _error(path, f"wema_rate: expected a finite number <= 1, found {wema_rate}", where)


def _read_binary_header(path, data: bytes):
    """(use_wema, wema_rate, config, offset of the dims header)."""
    if len(data) < 17:
        raise _error(path, f"truncated file: the header needs 17 bytes, the file holds "
                     f"{len(data)}", "offset 0")
    use_wema, wema_rate = struct.unpack_from("<if", data, 9)
    hint = (" (the file looks like an ASCII optimizer-state file: use binary=False)"
            if data[9:10] == b"\n" else "")
    _check_wema(path, use_wema, wema_rate, "offset 9", hint)
    pos = 17
    for kind, fmt in _BIN_KINDS.items():
        name = kind.encode("ascii")
        if data.startswith(name, pos):
            st = struct.Struct("<" + fmt)
            start = pos + len(name)
            if start + st.size > len(data):
                raise _error(path, f"truncated file: the {kind} settings need {st.size} bytes, "
                             f"only {len(data) - start} left", f"offset {start}")
            config = _config(path, kind, st.unpack_from(data, start), f"offset {start}")
            return bool(use_wema), _f32(wema_rate), config, start + st.size
    raise _error(path, f"expected the optimizer type 'SGD', 'ADAM' or 'RMSprop', found "
                 f"{data[pos:pos + 8]!r}", f"offset {pos}")


def _next_line(path, text: str, pos: int, line_no: int, what: str):
    """(line without its newline, position after it)."""
    end = text.find("\n", pos, pos + _MAX_LINE + 1)
    if end < 0:
        if len(text) - pos > _MAX_LINE:
            raise _error(path, f"expected {what}, found a line longer than {_MAX_LINE} "
                         "characters", f"line {line_no}")
        raise _error(path, f"expected {what}, the file ends "
                     f"{'here' if pos >= len(text) else 'inside this line'} (truncated "
                     "file?)", f"line {line_no}")
    line = text[pos:end]
    if "\r" in line:
        raise _error(path, f"expected {what}: carriage return found (Windows CRLF line "
                     "endings are not supported)", f"line {line_no}")
    return line, end + 1


def _shown(s: str) -> str:
    return repr(s if len(s) <= 80 else s[:77] + "...")


def _glued_splits(rest: str):
    """(momentum, dims) splits of a glued ``<momentum><W>x<H>x<D>x<C>`` (see module doc)."""
    out = []
    for cut in range(1, len(rest)):
        mom, dims = rest[:cut], rest[cut:]
        m = _DIMS_RE.match(dims)
        if m is None:
            continue
        try:
            v = float(mom)
        except ValueError:
            continue
        if not math.isfinite(v) or v < 0 or c_format("%g", _f32(v)) != mom:
            continue
        out.append((mom, tuple(int(d) for d in m.groups())))
    return out


def _read_ascii_header(path, text: str):
    """(use_wema, wema_rate, config, position after the config line, glued dims splits:
    a list of (momentum string, dims) when the SGD line holds the dims -- config is then
    None -- else None)."""
    if "\x00" in text[:64]:
        raise _error(path, "expected the line 'OptimSave', found binary data (NUL bytes): "
                     "is this a binary file? use binary=True", "line 1")
    line, pos = _next_line(path, text, 0, 1, "'OptimSave'")
    if line.rstrip(" ") != "OptimSave":
        raise _error(path, f"expected 'OptimSave', found {_shown(line)}", "line 1")
    line, pos = _next_line(path, text, pos, 2, "'use_wema <0|1> wema_rate <rate>'")
    m = _USE_WEMA_RE.match(line)
    if m is None:
        raise _error(path, f"expected 'use_wema <0|1> wema_rate <rate>', found {_shown(line)}",
                     "line 2")
    try:
        wema_rate = _f32(float(m.group(2)))
    except ValueError:
        raise _error(path, f"wema_rate: {_shown(m.group(2))} is not a number",
                     "line 2") from None
    use_wema = int(m.group(1))
    _check_wema(path, use_wema, wema_rate, "line 2")
    line, pos = _next_line(path, text, pos, 3, "the optimizer line (SGD_mom<m>, ADAM_b1<b1>_"
                           "b2<b2>_eps<eps>_ams<a> or RMSprop_a<a>_mom<m>_eps<eps>_cent<c>)")
    word = line.rstrip(" ")
    glued = _GLUED_SGD_RE.match(word) if "x" in word else None
    if glued is not None:  # the original's SGD line: no newline before the dims
        splits = _glued_splits(glued.group(1))
        if not splits:
            raise _error(path, f"the SGD line {_shown(line)} holds the input dims after the "
                         "momentum, but no split gives a %g momentum and WxHxDxC dims",
                         "line 3")
        return bool(use_wema), wema_rate, None, pos, splits
    if len(word) > 200 or not word or " " in word:
        raise _error(path, f"expected the optimizer line, found {_shown(line)}", "line 3")
    try:
        config = parse_optimizer(word)
    except ValueError as e:
        raise _error(path, str(e), "line 3") from None
    return bool(use_wema), wema_rate, config, pos, None


def _read_glued(path, text, pos, splits, use_wema, in_dims):
    """Read the records after a glued SGD line: (CiannaFile, config, block names) of the
    split kept (see the module doc)."""
    if in_dims is not None:
        want = tuple(int(d) for d in in_dims)
        matching = [s for s in splits if s[1] == want]
        splits = matching or splits
    parsed, first_error = [], None
    for mom, dims in splits:
        config = _config(path, "SGD", (float(mom),), "line 3")
        names = state_block_names(config, use_wema)
        try:
            cf = ascii_format.read_ascii(path, text, None, 0, 0, _VERSION, start=pos,
                                         in_dims=dims, extras=names)
        except CiannaFormatError as e:
            if len(splits) == 1:
                raise
            first_error = first_error or e
            continue
        parsed.append((cf, mom, config, names))
    if not parsed:
        raise CiannaFormatError(first_error.path, first_error.record, first_error.detail
                                + " (with every split of the glued SGD line: "
                                + ", ".join(f"momentum {m} dims {'x'.join(map(str, d))}"
                                            for m, d in splits) + ")",
                                where=None) from None
    if len(parsed) > 1:
        same = [p for p in parsed if p[0].records and record_kind(p[0].records[0]) == "conv"
                and tuple(p[0].records[0].in_dims) == tuple(p[0].in_dims)]
        parsed = same or parsed
    if len(parsed) > 1:
        raise _error(path, "the SGD line (written without its newline by the original) can be "
                     "split as " + " or ".join(
                         f"momentum {p[1]} dims {'x'.join(map(str, p[0].in_dims))}"
                         for p in parsed) + ": pass in_dims= (the network input W, H, D, "
                     "C) to choose", "line 3")
    cf, _, config, names = parsed[0]
    return cf, config, names


def _network(path, cfile):
    """(net, params) of the loaded records, as ``load_network(version="1.1")``."""
    net_in = tuple(cfile.in_shapes[0]) if cfile.in_shapes else tuple(cfile.in_dims)
    saved = getattr(cfile.records[0], "bias", None) if cfile.records else None
    bias = 0.1 if saved is None else saved
    layers, params, yolo = records_to_layers(cfile.records, 0, False, path)
    inputs = []
    for j, rec in enumerate(cfile.records):
        link = getattr(rec, "sources", None)  # merge records read two earlier layers
        inputs.append(tuple(link(j)) if link is not None else ((j - 1,) if j else (INPUT,)))
    try:
        net = make_network(net_in, layers, bias, inputs=inputs)
        last = len(layers) - 1
        if last in yolo and layers[last].activation.kind == "YOLO":
            cfg = yolo_config_from_record(yolo[last], net_in[:3], net.output_shape.spatial)
            net = make_network(net_in, layers, bias, cfg, inputs=inputs)
        check_params(net, tuple(params))
    except ValueError as err:
        raise CiannaFormatError(path, None, str(err), kind="network") from None
    return net, tuple(params)


def _buffers(path, cfile, names) -> list:
    """Per layer, the state blocks of ``cfile.extras`` as parameter dicts (through each
    layer's ``from_record``)."""
    out = [{} for _ in cfile.records]
    for name in names:
        if name == STEP_EXTRA:
            for i, extra in enumerate(cfile.extras):
                if extra:
                    out[i][name] = int(extra[name])
            continue
        recs = [extra.get(name, rec) for rec, extra in zip(cfile.records, cfile.extras)]
        _, bparams, _ = records_to_layers(recs, 0, False, path)
        for i, extra in enumerate(cfile.extras):
            if extra:
                out[i][name] = {k: np.asarray(v, np.float32) for k, v in bparams[i].items()}
    return out


def read_optimizer_file(path, binary: bool, *, in_dims=None) -> OptimFile:
    """Read a CIANNA V-1.1 optimizer-state file (ours or the original's, ASCII or binary).

    ``in_dims`` (W, H, D, C), optional, only settles the split of the original's ASCII
    SGD line that has the dims glued to it (see the module doc); it is not checked
    against the file otherwise.  Raises ``FileNotFoundError`` for a missing file and
    :class:`CiannaFormatError` (naming the file and the record) for a corrupt one; every
    count is checked against the bytes/characters left before anything is allocated.
    """
    fspath = os.fspath(path)
    remove_stale_temps(fspath)
    try:
        with open(fspath, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "CIANNA optimizer-state file not found",
                                fspath) from None
    if not data.startswith(MAGIC):
        raise _error(fspath, f"not an optimizer-state file: expected it to start with "
                     f"'OptimSave', found {data[:9]!r}", "offset 0" if binary else "line 1")
    if binary:
        use_wema, wema_rate, config, pos = _read_binary_header(fspath, data)
        names = state_block_names(config, use_wema)
        cfile = binary_format.read_binary(fspath, data, None, 0, 0, _VERSION, start=pos,
                                          extras=names)
    else:
        text = data.decode("latin-1")
        use_wema, wema_rate, config, pos, splits = _read_ascii_header(fspath, text)
        if splits is None:
            names = state_block_names(config, use_wema)
            cfile = ascii_format.read_ascii(fspath, text, None, 0, 0, _VERSION, start=pos,
                                            extras=names)
        else:
            cfile, config, names = _read_glued(fspath, text, pos, splits, use_wema, in_dims)
    net, params = _network(fspath, cfile)
    return OptimFile(use_wema, wema_rate, config, net, params, _buffers(fspath, cfile, names))
