"""CIANNA-style console output: banner, layer summaries, progress bars, confusion matrix.

Only formatting lives here; the imperative API decides what to print and when.
"""

from __future__ import annotations

import sys

import numpy as np

from .layers import LRN, Conv, Dense, Norm, Pool
from .layers.common import Shape

__all__ = ["banner", "layer_summary", "progress_line", "confusion_matrix_text"]

VERSION_LINE = "CIANNA_JAX V-0.1.0 (JAX reimplementation of CIANNA V-1.0.1), by the cianna_jax team"

_LOGO = r"""
   ____ ___    _    _   _ _   _    _          _   _    __  __
  / ___|_ _|  / \  | \ | | \ | |  / \        | | / \   \ \/ /
 | |    | |  / _ \ |  \| |  \| | / _ \    _  | |/ _ \   \  /
 | |___ | | / ___ \| |\  | |\  |/ ___ \  | |_| / ___ \  /  \
  \____|___/_/   \_\_| \_|_| \_/_/   \_\  \___/_/   \_\/_/\_\

 Convolutional Interactive Artificial Neural Networks by/for Astrophysicists
"""


def banner(no_logo: bool) -> str:
    """The text printed by the first ``init`` of a session."""
    line = "#" * 60
    logo = "" if no_logo else _LOGO + "\n"
    return f"{logo}{line}\n{VERSION_LINE}\n{line}\n"


def _mb(nbytes: float) -> int:
    return int(nbytes / 1e6)


def _triple(v) -> str:
    return "x".join(str(int(a)) for a in v)


def layer_summary(index: int, layer, in_shape: Shape, out_shape: Shape, b_size: int,
                  loading: bool = False) -> str:
    """CIANNA's ``L:<n> - CREATING ... LAYER`` block for ``layer``."""
    kind = {Dense: "dense", Conv: "conv", Pool: "pool", Norm: "norm", LRN: "lrn"}[type(layer)]
    head = {"dense": "DENSE", "conv": "CONVOLUTIONAL", "pool": "POOL",
            "norm": "NORMALIZATION", "lrn": "LOCAL RESPONSE NORMALIZATION"}[kind]
    lines = []
    if loading:
        lines.append(f"Loading {kind} layer, L:{index + 1}")
    lines.append(f"L:{index + 1} - CREATING {head} LAYER ...")
    act = layer.activation.name
    ind = "      "
    if isinstance(layer, Dense):
        n_w = (in_shape.size + 1) * (layer.nb_neurons + 1)
        lines.append(f"{ind}Input: {in_shape.size + 1}, Nb. Neurons: {layer.nb_neurons}")
        lines.append(f"{ind}Activation: {act}, Bias: {layer.bias:.2f}, dropout rate: "
                     f"{layer.drop_rate:.2f}")
        mem = 4 * (n_w * 2 + b_size * (in_shape.size + 1 + 2 * (layer.nb_neurons + 1)))
        lines.append(f"{ind}Nb. weights: {n_w}, Approx layer RAM/VRAM requirement: {_mb(mem)} MB")
    elif isinstance(layer, Conv):
        src = layer.map_input(in_shape)
        f = layer.f_size
        n_w = layer.nb_filters * layer.flat_f_size(in_shape)
        lines.append(f"{ind}Input: {src}, Filters: {layer.nb_filters}f {_triple(f)}x{src.c}, "
                     f"Output: {out_shape} ")
        lines.append(f"{ind}Stride: {':'.join(map(str, layer.stride))}, padding: "
                     f"{':'.join(map(str, layer.padding))}, int_padding: "
                     f"{':'.join(map(str, layer.int_padding))},  ")
        lines.append(f"{ind}Activation: {act}, Bias: {layer.bias:.2f}, dropout rate: "
                     f"{layer.drop_rate:.2f}")
        mem = 4 * (2 * n_w + b_size * (out_shape.size * 3))
        lines.append(f"{ind}Nb. weights: {n_w}, Approx layer RAM/VRAM requirement: {_mb(mem)} MB")
    elif isinstance(layer, Pool):
        size, stride, pad = layer.geometry(in_shape)
        lines.append(f"{ind}Input: {in_shape}, Output: {out_shape}")
        lines.append(f"{ind}P. size: {_triple(size)}, Stride: {_triple(stride)}, padding: "
                     f"{_triple(pad)} ")
        lines.append(f"{ind}Pool type: {layer.p_type}, Global: {layer.p_global}, Activation: "
                     f"{act}, dropout rate: {layer.drop_rate:.2f}")
        lines.append(f"{ind}Approx layer RAM/VRAM requirement: "
                     f"{_mb(4 * b_size * (in_shape.size + 2 * out_shape.size))} MB")
    elif isinstance(layer, Norm):
        ng = layer.nb_groups(in_shape)
        lines.append(f"{ind}Group size: {layer.group_size}, Nb. groups: {ng}, Set-off: "
                     f"{layer.set_off}")
        lines.append(f"{ind}Activation: {act}")
        lines.append(f"{ind}Nb. params: {2 * ng}, Approx layer RAM/VRAM requirement: "
                     f"{_mb(4 * b_size * 2 * out_shape.size)} MB")
    else:
        lines.append(f"{ind}Range: {layer.range}, k: {layer.k:f}, Alpha: {layer.alpha:f}, "
                     f"Beta: {layer.beta:f}, Activation: {act}")
        lines.append(f"{ind}Approx layer RAM/VRAM requirement: "
                     f"{_mb(4 * b_size * 3 * out_shape.size)} MB")
    return "\n".join(lines) + "\n"


def progress_line(prefix: str, iteration: int, batch: int, nb_batch: int, adv_size: int,
                  loss: float | None, rate: float) -> str:
    """CIANNA's progress bar: ``Iter: n [###---] b / nb | B.Loss: x | B.perf.: r it/s``."""
    done = int(adv_size * batch / max(nb_batch, 1))
    bar = "#" * done + "-" * (adv_size - done)
    loss_txt = "  ...  " if loss is None else f"{loss:.5f}"
    return (f"\r{prefix} {iteration:5d} [{bar}] {batch:4d} / {nb_batch:4d} | B.Loss: {loss_txt} | "
            f"B.perf.: {rate:.0f} it/s ")


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def confusion_matrix_text(mat: np.ndarray, mode: int) -> str:
    """CIANNA's confusion-matrix display for ``confmat`` 1, 2 or 3."""
    n = mat.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.diag(mat) / mat.sum(axis=1) * 100
        prec = np.diag(mat) / mat.sum(axis=0) * 100
    acc = np.trace(mat) / max(mat.sum(), 1) * 100

    def pct(v, width):
        return f"{'-nan' if np.isnan(v) else f'{v:.2f}':>{width}}%"

    if mode == 3:
        return f" Accuracy: {acc:6.2f}%\n"
    if mode == 2:
        return (" Recall:   " + "".join(pct(r, 7) + "  " for r in recall) + "\n"
                + " Precision:" + "".join(pct(p, 7) + "  " for p in prec) + "\n"
                + f" Accuracy: {acc:6.2f}%\n")
    stars = "*" * max(n * 10 // 2 - 3, 1)
    out = [f"\n   {stars}  ConfMat  {stars}   Recall"]
    for i in range(n):
        row = "".join(f"{int(v):8d} |" for v in mat[i])
        out.append(f"     {row}{pct(recall[i], 10)}")
    out.append("Prec. " + "".join(pct(p, 7) + "  " for p in prec) + f"Acc {acc:6.2f}%")
    return "\n".join(out) + "\n"
