"""``print_arch_tex``: the network as a LaTeX table (cianna_api.md section 13)."""

from __future__ import annotations

import os
import shutil
import subprocess

from .api import get_state
from .checks import as_int as _int
from .checks import as_str as _str

__all__ = ["print_arch_tex"]

_COLUMNS = (  # flag, header, column spec
    ("in_size", "In. size", "p{2.0cm}"),
    ("size", "N. filters", "p{1.6cm}"),
    ("f_size", "F. size", "p{2.0cm}"),
    ("stride", "Stride", "p{1.2cm}"),
    ("padding", "Padding", "p{1.2cm}"),
    ("in_padding", "Intern. Pad.", "p{1.2cm}"),
    ("out_size", "Out. size", "p{2.0cm}"),
    ("activation", "Activ.", "p{1.2cm}"),
    ("bias", "Bias", "p{0.8cm}"),
    ("dropout", "Dropout", "p{1.2cm}"),
    ("param_count", "N. param.", "p{1.4cm}"),
)

# the table's Type column (V-1.1's GRN and merge layers, and any new layer type, too)
_TYPE_NAMES = {"dense": "Dense", "conv": "Conv", "pool": "Pool", "norm": "Norm", "lrn": "LRN",
               "grn": "GRN", "merge": "Merge"}


def _cells(layer, sin, sout, params) -> dict[str, str]:
    hook = getattr(layer, "tex_cells", None)
    return hook(sin, sout, params) if hook is not None else {"activation": layer.activation.kind}


def print_arch_tex(path: str, file_name: str, size: int = 1, in_size: int = 1, f_size: int = 1,
                   out_size: int = 1, stride: int = 1, padding: int = 1, in_padding: int = 0,
                   activation: int = 0, bias: int = 0, dropout: int = 0, param_count: int = 0,
                   network: int = -1) -> str:
    """Write ``path + file_name + ".tex"``, a table of the layers with the selected
    columns, and compile it to PDF when ``pdflatex`` is on the PATH.  Returns the
    .tex path."""
    state = get_state(network)
    path, file_name = _str(path, "path"), _str(file_name, "file_name")
    flags = dict(in_size=in_size, size=size, f_size=f_size, stride=stride, padding=padding,
                 in_padding=in_padding, out_size=out_size, activation=activation, bias=bias,
                 dropout=dropout, param_count=param_count)
    flags = {k: _int(v, k) for k, v in flags.items()}
    if not state.layers:
        raise RuntimeError("print_arch_tex: the network has no layer")
    cols = [c for c in _COLUMNS if flags[c[0]]]
    net = state.net
    counts: dict[str, int] = {}
    rows = []
    for i, (layer, (sin, sout)) in enumerate(zip(net.layers, net.shapes)):
        name = _TYPE_NAMES.get(layer.kind, layer.kind.capitalize())
        counts[name] = counts.get(name, 0) + 1
        cells = _cells(layer, sin, sout, state.params[i])
        row = [str(i + 1), f"{name}\\_{counts[name]}"] + [cells.get(c[0], "") for c in cols]
        rows.append(" & ".join(row) + " \\\\")
    spec = "p{0.6cm} p{1.4cm} " + " ".join(
        c[2] if c[0] == "activation" else ">{\\centering\\arraybackslash}" + c[2] for c in cols)
    header = " & ".join(["Id.", "Type"] + [c[1] for c in cols]) + " \\\\"
    text = "\n".join([
        "\\documentclass[border=2pt]{standalone}", "\\usepackage[utf8]{inputenc}",
        "\\usepackage{array}", "\\renewcommand{\\arraystretch}{1.1}", "\\begin{document}",
        "\\begin{tabular}{" + spec + "}", "\\hline\\noalign{\\smallskip}", header,
        "\\hline\\noalign{\\smallskip}", *rows, "\\hline\\noalign{\\smallskip}",
        "\\end{tabular}", "\\end{document}", ""])
    os.makedirs(path or ".", mode=0o700, exist_ok=True)
    tex = os.path.join(path, file_name + ".tex")
    with open(tex, "w") as fh:
        fh.write(text)
    if shutil.which("pdflatex"):
        subprocess.run(["pdflatex", "--interaction=batchmode", f"-output-directory={path or '.'}",
                        tex], check=False, capture_output=True)
        print(f"print_arch_tex: wrote {tex} and compiled it with pdflatex")
    else:
        print(f"print_arch_tex: wrote {tex}; pdflatex is not on the PATH, no PDF was made")
    return tex
