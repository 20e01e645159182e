"""Weight EMA helpers and the per-layer buffers of CIANNA's optimizer-state files."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import host_arrays
from .config import OptimizerConfig
from .float32 import zero_like
from .transform import MAX_STEP, ema_step, find_state, replace_state

__all__ = ["ema_init", "ema_update", "get_ema", "set_ema", "replace_with_ema",
           "optimizer_buffers", "set_optimizer_buffers"]


def _tmap(f, *trees):
    return jax.tree_util.tree_map(f, *trees)


def ema_init(params: Any) -> Any:
    """The EMA at start: a copy of the weights (CIANNA copies them at creation and load)."""
    return host_arrays.copy_tree(params)


def ema_update(ema: Any, params: Any, rate: float | jax.Array) -> Any:
    """CIANNA's ``e = rate*e + (1 - rate)*w`` with the weights *after* the update, only
    when ``rate >= 0.01`` (``rate`` may be traced), rounded as CIANNA's float32 kernels.
    The V-1.1 optimizers made with ``use_wema=True`` do this inside the step."""
    r = jnp.asarray(rate, jnp.float32)
    z = zero_like(r)  # negative rates leave the EMA unchanged anyway
    return _tmap(lambda e, w: ema_step(e, w, r, z), ema, params)


def _need_ema(st):
    if st.ema is None:
        raise ValueError("this optimizer does not track an EMA (make it with use_wema=True)")


def get_ema(opt_state: Any) -> Any:
    """The EMA weights tracked by a V-1.1 optimizer state (None without ``use_wema``)."""
    return find_state(opt_state).ema


def set_ema(opt_state: Any, ema: Any) -> Any:
    """``opt_state`` with the EMA weights ``ema`` (e.g. the weights just loaded)."""
    st = find_state(opt_state)
    _need_ema(st)
    return replace_state(opt_state, st._replace(ema=host_arrays.copy_tree(ema)))


def replace_with_ema(params: Any, opt_state: Any) -> Any:
    """CIANNA's ``wema_replace_every``: ``params`` with the weights of every layer that is
    not frozen replaced by their EMA (after the update of an epoch's last batch)."""
    st = find_state(opt_state)
    _need_ema(st)
    return _tmap(lambda p, e, m: jnp.where(m != 0, e, p), params, st.ema, st.mask[0])


def _host(layer: dict) -> dict:
    return {k: np.array(v, np.float32) for k, v in layer.items()}


def optimizer_buffers(config: OptimizerConfig, opt_state: Any) -> list[dict[str, Any]]:
    """Per layer (one entry per entry of the parameters tuple), the buffers of CIANNA's
    optimizer-state file in file order: ``"ema"`` first when the state tracks the EMA,
    then ``config.buffer_names`` -- SGD: velocity if momentum >= 0.01; ADAM: opt_step
    (int, updates of that layer), first_mom, second_mom, max_second_mom if ams_grad;
    RMSprop: sqrt_avg, velocity if momentum >= 0.01, grad_avg if centered.  Each array
    buffer is a dict keyed by parameter name like the layer's parameters (float32 numpy
    arrays, same shapes; write them in the layer's weight order, e.g. gamma then beta);
    layers without parameters give ``{}``."""
    st = find_state(opt_state)
    missing = [n for n in config.buffer_names if n != "opt_step" and n not in st.buffers]
    if missing:
        raise ValueError(f"optimizer state lacks {missing}, needed by {config.to_string()!r}")
    out = []
    for i, steps in enumerate(st.step):
        layer: dict[str, Any] = {}
        if steps:
            if st.ema is not None:
                layer["ema"] = _host(st.ema[i])
            for n in config.buffer_names:
                layer[n] = (max(int(s) for s in steps.values()) if n == "opt_step"
                            else _host(st.buffers[n][i]))
        out.append(layer)
    return out


def set_optimizer_buffers(config: OptimizerConfig, opt_state: Any,
                          buffers: list[dict[str, Any]]) -> Any:
    """Inverse of :func:`optimizer_buffers`: ``opt_state`` holding the buffers read from
    an optimizer-state file (same keys in any order; shapes checked), so that training
    resumes exactly where it stopped."""
    st = find_state(opt_state)
    if len(buffers) != len(st.step):
        raise ValueError(f"buffers: {len(buffers)} layers given, the optimizer has "
                         f"{len(st.step)}")
    expected = (("ema",) if st.ema is not None else ()) + config.buffer_names
    missing = [n for n in expected if n not in ("ema", "opt_step") and n not in st.buffers]
    if missing:
        raise ValueError(f"optimizer state lacks {missing}, needed by {config.to_string()!r}")
    step = list(st.step)
    ema = list(st.ema) if st.ema is not None else None
    bufs = {n: list(t) for n, t in st.buffers.items()}
    for i, (steps, got) in enumerate(zip(st.step, buffers)):
        want = set(expected) if steps else set()
        if set(got) != want:
            raise ValueError(f"buffers of layer {i}: expected keys {sorted(want)}, "
                             f"received {sorted(got)}")
        for n, value in got.items():
            if n == "opt_step":
                s = int(value)
                if not 0 <= s <= MAX_STEP:
                    raise ValueError(f"buffers of layer {i}: opt_step {s} out of range "
                                     f"[0, {MAX_STEP}]")
                step[i] = {k: jnp.asarray(s, jnp.int32) for k in steps}
                continue
            ref = ema[i] if n == "ema" else bufs[n][i]
            if set(value) != set(ref):
                raise ValueError(f"buffers of layer {i}, {n}: expected arrays {sorted(ref)}, "
                                 f"received {sorted(value)}")
            arrays = {}
            for k, r in ref.items():
                a = np.asarray(value[k], np.float32)
                if a.shape != r.shape:
                    raise ValueError(f"buffers of layer {i}, {n}[{k!r}]: shape {a.shape}, "
                                     f"expected {r.shape}")
                arrays[k] = jnp.asarray(a, jnp.float32)
            if n == "ema":
                ema[i] = arrays
            else:
                bufs[n][i] = arrays
    kind = type(st.step)
    new = st._replace(step=kind(step), buffers={n: kind(v) for n, v in bufs.items()},
                      ema=kind(ema) if ema is not None else None)
    return replace_state(opt_state, new)
