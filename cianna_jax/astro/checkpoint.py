"""Resume checkpoints of ``cianna-jax train``: parameters, optimizer state and run
metadata in one ``.npz`` file, written atomically.

The CIANNA ``.dat`` files of a run hold weights only; continuing a run exactly also needs
the momentum buffers, the injected hyper-parameters (learning rate, momentum) and where
the run stands (epoch, best score, history).  Arrays are stored leaf by leaf in the
order of ``jax.tree_util.tree_leaves`` and put back into the structure of a freshly
initialised state, so a checkpoint of another network is refused with the first leaf
that differs.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Any

import jax
import numpy as np

from ..io.atomic import atomic_write

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint"]

#: version 2: conv parameters channel-last (``kernel``, ``bias_weight``); version 1 held
#: CIANNA's weight rows, which the core no longer uses
_FORMAT = "cianna_jax.train_checkpoint/2"
_OLD_FORMATS = ("cianna_jax.train_checkpoint/1",)


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged or does not belong to this run's network."""


def _leaves(tree: Any) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(tree)]


def save_checkpoint(path: str | os.PathLike, params: Any, opt_state: Any,
                    meta: dict[str, Any]) -> None:
    """Write ``params``, ``opt_state`` (pytrees of arrays) and ``meta`` (JSON-able)."""
    arrays: dict[str, np.ndarray] = {"format": np.array(_FORMAT),
                                     "meta": np.array(json.dumps(meta))}
    for prefix, tree in (("p", params), ("o", opt_state)):
        for i, a in enumerate(_leaves(tree)):
            arrays[f"{prefix}{i:05d}"] = a
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_write(path) as fh:
        fh.write(buf.getvalue())


def _restore(like: Any, data: Any, prefix: str, path: str) -> Any:
    flat, treedef = jax.tree_util.tree_flatten(like)
    keys = sorted(k for k in data.files if k.startswith(prefix) and k[1:].isdigit())
    if len(keys) != len(flat):
        raise CheckpointError(f"{path}: {len(keys)} arrays for {len(flat)} expected in "
                              f"{'parameters' if prefix == 'p' else 'optimizer state'}: "
                              "a checkpoint of another network or optimizer")
    out = []
    for k, ref in zip(keys, flat):
        a = data[k]
        ref = np.asarray(ref)
        if a.shape != ref.shape or a.dtype != ref.dtype:
            raise CheckpointError(f"{path}: array {k} is {a.dtype}{list(a.shape)}, expected "
                                  f"{ref.dtype}{list(ref.shape)}: a checkpoint of another network")
        out.append(jax.numpy.asarray(a))
    return jax.tree_util.tree_unflatten(treedef, out)


def load_checkpoint(path: str | os.PathLike, params_like: Any,
                    opt_state_like: Any) -> tuple[Any, Any, dict[str, Any]]:
    """``(params, opt_state, meta)`` read from ``path``, in the structures of
    ``params_like`` / ``opt_state_like`` (e.g. a fresh init of the same network)."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"no checkpoint to resume from: {p} does not exist")
    try:
        with np.load(p, allow_pickle=False) as data:
            if "format" in data.files and str(data["format"]) in _OLD_FORMATS:
                raise CheckpointError(
                    f"{p}: a training checkpoint of an earlier cianna_jax (conv weights in "
                    "CIANNA's rows, not channel-last): it cannot be resumed by this version; "
                    "start a new training, from the run's saved model file if you want its "
                    "weights")
            if "format" not in data.files or str(data["format"]) != _FORMAT:
                raise CheckpointError(f"{p}: not a cianna_jax training checkpoint")
            meta = json.loads(str(data["meta"]))
            params = _restore(params_like, data, "p", p)
            opt_state = _restore(opt_state_like, data, "o", p)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"{p}: cannot read the checkpoint ({err})") from None
    return params, opt_state, meta
