"""CIANNA-style console output: banner, layer summaries, progress bars, confusion matrix.

Only formatting lives here; the imperative API decides what to print and when.
"""

from __future__ import annotations

import sys

import numpy as np

from .layers.common import Shape

__all__ = ["banner", "layer_summary", "progress_line", "confusion_matrix_text", "perf_table"]

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


def layer_summary(index: int, layer, in_shape: Shape, out_shape: Shape, b_size: int,
                  loading: bool = False) -> str:
    """CIANNA's ``L:<n> - CREATING ... LAYER`` block for ``layer`` (its
    ``summary_lines``; a plain shape line for layers without that hook)."""
    lines = []
    if loading:
        lines.append(f"Loading {layer.kind} layer, L:{index + 1}")
    title = getattr(layer, "title", layer.kind.upper())
    lines.append(f"L:{index + 1} - CREATING {title} LAYER ...")
    hook = getattr(layer, "summary_lines", None)
    body = hook(in_shape, out_shape, b_size) if hook is not None else \
        [f"Input: {in_shape}, Output: {out_shape}"]
    lines += ["      " + line for line in body]
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


def perf_table(report: dict) -> str:
    """CIANNA's ``perf_eval`` table from :func:`cianna_jax.layer_timing.perf_eval`'s report:
    per layer, forward and backward µs per example with their shares, then what was
    measured and how."""
    fwd = np.asarray(report["forward"], dtype=float)
    bwd = np.asarray(report["backward"], dtype=float)
    tot = fwd + bwd

    def pct(v, total):
        return 100.0 * v / total if total > 0 else 0.0

    lines = [f"\nTotal Net. nb weights: {report['n_weights']} ",
             "\n     Layer  Type       Forward             Backprop             Cumulated",
             "       N     T      [µs]  /  [%]         [µs]  /  [%]         [µs]  /  [%]",
             "  " + "-" * 67]
    for i, kind in enumerate(report["layers"]):
        lines.append(f"   {i + 1:5d}     {kind[0].upper()}   {fwd[i]:8.1f} / "
                     f"{pct(fwd[i], fwd.sum()):4.1f}      {bwd[i]:8.1f} / "
                     f"{pct(bwd[i], bwd.sum()):4.1f}      {tot[i]:8.1f} / "
                     f"{pct(tot[i], tot.sum()):4.1f}")
    lines.append("  " + "-" * 67)
    lines.append(f"   Total         {fwd.sum():8.1f} µs          {bwd.sum():8.1f} µs          "
                 f"{tot.sum():8.1f} µs       ")
    other = report["other"]["fwd"] + report["other"]["bwd"]
    what = "training step" if report["kind"] == "train" else "inference step (no training " \
        "step compiled yet: call train() for the backward column)"
    source = "train" if report["kind"] == "train" else "forward"
    notes = [f"Measured: the compiled {what} that {source}() ran, replayed on its last batch "
             f"(B = {report['batch']}), {report['runs']} runs timed and {report['runs']} "
             "profiled; times per example, medians over the runs."]
    if report["profiled"]:
        notes.append("Per layer: XLA's operation times from JAX's profiler, each operation "
                     "attributed to a layer through the program's data flow (operations on "
                     "both CPU threads are all counted, so the sum can exceed the wall time).")
        notes.append(f"Not attributed to a layer: {other:.1f} µs (random bits, loss, input "
                     "copies).  Layers without weights (pooling...) count with the layer before"
                     + (f"; conv + max pool run fused at layers {report['fused']}"
                        if report["fused"] else "")
                     + "".join(f"; conv {i} runs fused with the tiling conv {i + 1}, its forward "
                               f"counted on {i + 1}" for i in report.get("tiled", ())) + ".")
    else:
        notes.append("No profile could be taken: only the whole step below is measured.")
    notes.append(f"Whole step (wall clock, without the profiler): {report['wall_us']:.1f} µs "
                 f"per example.  This report took {report.get('seconds', 0.0):.2f} s.")
    return "\n".join(lines) + "\n" + "\n".join(" " + n for n in notes) + "\n\n"
