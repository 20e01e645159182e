"""The CIANNA V-1.1 update (SGD, ADAM, RMSprop, weight EMA) as one optax transformation.

Per parameter array ``w`` with gradient ``g`` (already divided by the batch length, see
:func:`divide_by_length`), decay mask ``d`` and update mask ``u``, in CIANNA's order::

    decoupled:  w <- w - ((lr*d)*wd)*w;  lg = g        |  otherwise:  lg = g + (d*wd)*w
    SGD      :  V = lr*lg + mom*V;  w <- w - V          (mom >= 0.01, else w <- w - lr*lg)
    ADAM     :  t += 1;  m = b1*m + (1-b1)*lg;  v = b2*v + (1-b2)*lg*lg;  [vmax = max(vmax, v)]
                w <- w - (lr * m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)
    RMSprop  :  s = a*s + (1-a)*lg*lg;  [ga = a*ga + (1-a)*lg;  s' = s - ga*ga]
                V = mom*V + lg/(sqrt(s')+eps); w <- w - lr*V   (mom >= 0.01, else
                w <- w - lr*lg/(sqrt(s')+eps))
    EMA      :  e = r*e + (1-r)*w                     (after the update; r >= 0.01)

Where ``u == 0`` (frozen layer) nothing changes: weights, buffers, ``t``, EMA, as CIANNA
skips the whole update of a frozen layer.  The transformation returns ``w_new - w`` so
that ``optax.apply_updates`` gives ``w_new``; the arithmetic is CIANNA's, rounding
included (:mod:`cianna_jax.optim.float32`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .. import host_arrays
from ..training import divide_by_length, set_learning_rate
from . import float32 as f32x
from .config import MOMENTUM_THRESHOLD, OptimizerConfig

__all__ = ["V11State", "v11_sgd", "v11_adam", "v11_rms_prop", "make_v11_optimizer",
           "set_config", "divide_by_length", "v11_decay_mask", "v11_masks", "set_v11_masks",
           "find_state", "replace_state", "ema_step", "WEMA_THRESHOLD"]

#: A hyper-parameter: a number, or a traced array under :func:`optax.inject_hyperparams`.
Scalar = float | jax.Array

#: CIANNA's CPU kernels update the EMA only for ``wema_rate >= 0.01``.
WEMA_THRESHOLD = 0.01
MAX_STEP = int(np.iinfo(np.int32).max)


class V11State(NamedTuple):
    """State of a V-1.1 optimizer; every tree has the structure of the parameters.

    ``step``: int32 count of the updates applied to each parameter (ADAM's per-layer
    ``opt_step``; frozen layers do not count); ``buffers``: buffer name -> tree
    (``velocity``, ``first_mom``, ``second_mom``, ``max_second_mom``, ``sqrt_avg``,
    ``grad_avg``); ``ema``: the EMA weights or None; ``mask``: (update, decay) masks.
    """

    step: Any
    buffers: dict
    ema: Any
    mask: Any


def _tmap(f, *trees):
    return jax.tree_util.tree_map(f, *trees)


def _init_masks(masks, params):
    if masks is None:
        ones = _tmap(lambda p: host_arrays.full((), 1, p.dtype, like=p), params)
        return ones, host_arrays.copy_tree(ones)
    m = masks(params) if callable(masks) else masks
    return host_arrays.copy_tree(m[0]), host_arrays.copy_tree(m[1])  # own buffers: steps donate


def _buffer_names(kind, ams_grad, centered, has_velocity):
    if kind == "SGD":
        return ("velocity",) if has_velocity else ()
    if kind == "ADAM":
        return ("first_mom", "second_mom") + (("max_second_mom",) if ams_grad else ())
    return (("sqrt_avg",) + (("velocity",) if has_velocity else ())
            + (("grad_avg",) if centered else ()))


def _v11(kind: str, hp: dict, *, decoupled: bool, ams_grad: bool, centered: bool,
         has_velocity: bool, use_wema: bool, masks) -> optax.GradientTransformation:
    """The V-1.1 update of ``kind``; ``hp`` holds the numeric hyper-parameters (traced
    under :func:`optax.inject_hyperparams`), the keywords the static structure."""
    names = _buffer_names(kind, ams_grad, centered, has_velocity)

    def init_fn(params):
        return V11State(step=_tmap(lambda p: host_arrays.full((), 0, jnp.int32, like=p), params),
                        buffers={n: _tmap(host_arrays.zeros_like, params) for n in names},
                        ema=host_arrays.copy_tree(params) if use_wema else None,
                        mask=_init_masks(masks, params))

    def update_fn(grads, state, params=None):
        if params is None:
            raise ValueError("the V-1.1 optimizer needs params (weight decay, EMA)")
        treedef = jax.tree_util.tree_structure(params)
        flat = [treedef.flatten_up_to(t) for t in
                (grads, params, state.mask[0], state.mask[1], state.step)]
        if any(w.dtype != jnp.float32 for w in flat[1]):
            raise TypeError("the V-1.1 optimizer reproduces CIANNA's float32 kernels: "
                            "expected float32 parameters")
        bufs = {n: treedef.flatten_up_to(state.buffers[n]) for n in names}
        emas = treedef.flatten_up_to(state.ema) if use_wema else None
        steps = [jnp.where(jnp.any(um != 0) & (s < MAX_STEP), s + 1, s)
                 for um, s in zip(flat[2], flat[4])]
        z = f32x.zero_like(steps[0]) if steps else None
        corr = _bias_corrections(hp, steps, z) if kind == "ADAM" else None
        out_u, out_ema, out_bufs = [], [], {n: [] for n in names}
        for k, (g, w, um, dm, _) in enumerate(zip(*flat)):
            active = jnp.broadcast_to(um != 0, w.shape)
            b = {n: bufs[n][k] for n in names}
            c = None if corr is None else tuple(x[k] for x in corr)
            u, new_b = _leaf(kind, hp, g.astype(w.dtype), w, dm, b, c, z, decoupled,
                             has_velocity, ams_grad, centered)
            u = jnp.where(active, u, jnp.zeros_like(u))
            out_u.append(u)
            for n in names:
                out_bufs[n].append(jnp.where(active, new_b[n], b[n]))
            if use_wema:
                e = emas[k]
                out_ema.append(jnp.where(active, ema_step(e, w + u, hp["wema_rate"], z), e))
        unflat = treedef.unflatten
        return unflat(out_u), V11State(
            step=unflat(steps), buffers={n: unflat(v) for n, v in out_bufs.items()},
            ema=unflat(out_ema) if use_wema else None, mask=state.mask)

    return optax.GradientTransformation(init_fn, update_fn)


def _bias_corrections(hp, steps, z):
    """Per parameter, ``1 - beta1^t`` and ``1 - beta2^t`` as (hi, lo) pairs (one loop
    for all parameters)."""
    if not steps:
        return None
    t = jnp.stack(steps)
    c1 = f32x.one_minus_pow(jnp.float32(hp["beta1"]), t, z)
    c2 = f32x.one_minus_pow(jnp.float32(hp["beta2"]), t, z)
    return c1[0], c1[1], c2[0], c2[1]


def ema_step(e: jax.Array, w: jax.Array, rate, z: jax.Array) -> jax.Array:
    """CIANNA's ``e = r*e + (1 - r)*w`` (float32 products), when ``r >= 0.01``."""
    r = jnp.float32(rate)
    new = f32x.rounded(r * e, z) + f32x.rounded((1 - r) * w, z)
    return jnp.where(r >= jnp.float32(WEMA_THRESHOLD), new, e)


def _leaf(kind, hp, g, w, dm, b, corr, z, decoupled, has_velocity, ams_grad, centered):
    """(update, new buffers) of one parameter array, in CIANNA's order and rounding."""
    r = f32x.rounded
    lr, wd = jnp.float32(hp["learning_rate"]), jnp.float32(hp["weight_decay"])
    if decoupled:
        w1 = w - r(((lr * dm) * wd) * w, z)
        lg = g
    else:
        w1 = w
        lg = g + r((dm * wd) * w, z)
    new = {}
    if kind == "SGD":
        step = r(lr * lg, z)
        if has_velocity:
            mom = jnp.float32(hp["momentum"])
            v = r(lr * lg, z) + r(mom * b["velocity"], z)
            on = mom >= jnp.float32(MOMENTUM_THRESHOLD)
            new["velocity"] = jnp.where(on, v, b["velocity"])
            step = jnp.where(on, v, step)
    elif kind == "ADAM":
        b1, b2, eps = (jnp.float32(hp[k]) for k in ("beta1", "beta2", "epsilon"))
        m = new["first_mom"] = f32x.mix(r(b1 * b["first_mom"], z), f32x.one_minus(b1, z), lg, z)
        v = new["second_mom"] = f32x.mix_square(r(b2 * b["second_mom"], z),
                                                f32x.one_minus(b2, z), lg, z)
        if ams_grad:
            v = new["max_second_mom"] = jnp.fmax(b["max_second_mom"], v)
        m_hat = f32x.divide(m, corr[:2], z)
        v_hat = f32x.divide(v, corr[2:], z)
        step = r(lr * m_hat, z) / (jnp.sqrt(v_hat) + eps)
    else:
        a, eps = jnp.float32(hp["alpha"]), jnp.float32(hp["epsilon"])
        one_a = f32x.one_minus(a, z)
        s = new["sqrt_avg"] = f32x.mix_square(r(a * b["sqrt_avg"], z), one_a, lg, z)
        if centered:
            ga = new["grad_avg"] = f32x.mix(r(a * b["grad_avg"], z), one_a, lg, z)
            s = s - r(ga * ga, z)
        den = jnp.sqrt(s) + eps
        step = r(lr * lg, z) / den
        if has_velocity:
            mom = jnp.float32(hp["momentum"])
            vel = r(mom * b["velocity"], z) + lg / den
            on = mom >= jnp.float32(MOMENTUM_THRESHOLD)
            new["velocity"] = jnp.where(on, vel, b["velocity"])
            step = jnp.where(on, r(lr * vel, z), step)
    return ((w1 - step) - w if decoupled else -step), new


def v11_sgd(learning_rate: Scalar, momentum: Scalar = 0.0, weight_decay: Scalar = 0.0,
            wema_rate: Scalar = 0.0, *,
            decoupled: bool = False, has_velocity: bool | None = None, use_wema: bool = False,
            masks=None) -> optax.GradientTransformation:
    """CIANNA V-1.1 SGD (the velocity ``V = lr*lg + mom*V`` contains the learning rate).

    ``has_velocity`` (static; default ``momentum >= 0.01``, momentum then concrete)
    allocates the velocity; ``decoupled``: AdamW-style decay; ``use_wema``: track the EMA;
    ``masks``: an (update, decay) pair, a callable ``params -> pair`` (e.g.
    ``functools.partial(v11_masks, net)``) or None (update and decay everything).
    """
    if has_velocity is None:
        has_velocity = float(momentum) >= MOMENTUM_THRESHOLD
    hp = dict(learning_rate=learning_rate, weight_decay=weight_decay, wema_rate=wema_rate,
              momentum=momentum)
    return _v11("SGD", hp, decoupled=decoupled, ams_grad=False, centered=False,
                has_velocity=has_velocity, use_wema=use_wema, masks=masks)


def v11_adam(learning_rate: Scalar, beta1: Scalar = 0.9, beta2: Scalar = 0.999,
             epsilon: Scalar = 1e-8, weight_decay: Scalar = 0.0, wema_rate: Scalar = 0.0, *,
             ams_grad: int = 0, decoupled: bool = False, use_wema: bool = False,
             masks=None) -> optax.GradientTransformation:
    """CIANNA V-1.1 ADAM (AdamW with ``decoupled=True``): bias correction with the
    per-parameter update count; ``ams_grad > 0`` keeps the running max of ``v``."""
    hp = dict(learning_rate=learning_rate, weight_decay=weight_decay, wema_rate=wema_rate,
              beta1=beta1, beta2=beta2, epsilon=epsilon)
    return _v11("ADAM", hp, decoupled=decoupled, ams_grad=ams_grad > 0, centered=False,
                has_velocity=False, use_wema=use_wema, masks=masks)


def v11_rms_prop(learning_rate: Scalar, alpha: Scalar = 0.99, momentum: Scalar = 0.0,
                 epsilon: Scalar = 1e-8, weight_decay: Scalar = 0.0, wema_rate: Scalar = 0.0,
                 *, centered: int = 0, decoupled: bool = False,
                 has_velocity: bool | None = None, use_wema: bool = False,
                 masks=None) -> optax.GradientTransformation:
    """CIANNA V-1.1 RMSprop (``centered > 0``: minus the squared running mean of ``lg``)."""
    if has_velocity is None:
        has_velocity = float(momentum) >= MOMENTUM_THRESHOLD
    hp = dict(learning_rate=learning_rate, weight_decay=weight_decay, wema_rate=wema_rate,
              alpha=alpha, momentum=momentum, epsilon=epsilon)
    return _v11("RMSprop", hp, decoupled=decoupled, ams_grad=False, centered=centered > 0,
                has_velocity=has_velocity, use_wema=use_wema, masks=masks)


_STATIC = ("decoupled", "use_wema", "masks")


def make_v11_optimizer(config: OptimizerConfig, *, learning_rate: float = 0.0,
                       weight_decay: float = 0.0, decoupled: bool = False,
                       use_wema: bool = False, wema_rate: float = 0.0,
                       masks=None) -> optax.GradientTransformationExtraArgs:
    """The V-1.1 optimizer of ``config`` with injectable hyper-parameters.

    ``learning_rate``, ``weight_decay``, ``wema_rate`` and the config's numbers (momentum,
    beta1, beta2, epsilon, alpha) live in ``opt_state.hyperparams``: change them with
    :func:`cianna_jax.training.set_learning_rate` or :func:`set_config`, no
    recompilation.  ``decoupled``, ``use_wema``, ams_grad, centered and the presence of a
    velocity buffer are static (they shape the state).  ``masks`` as in :func:`v11_sgd`,
    changed later with :func:`set_v11_masks`.
    """
    common = dict(learning_rate=learning_rate, weight_decay=weight_decay,
                  wema_rate=wema_rate, decoupled=bool(decoupled), use_wema=bool(use_wema),
                  masks=masks)
    if config.kind == "SGD":
        return optax.inject_hyperparams(v11_sgd, static_args=("has_velocity",) + _STATIC)(
            momentum=config.momentum, has_velocity=config.has_velocity, **common)
    if config.kind == "ADAM":
        return optax.inject_hyperparams(v11_adam, static_args=("ams_grad",) + _STATIC)(
            beta1=config.beta1, beta2=config.beta2, epsilon=config.epsilon,
            ams_grad=config.ams_grad, **common)
    return optax.inject_hyperparams(
        v11_rms_prop, static_args=("centered", "has_velocity") + _STATIC)(
        alpha=config.alpha, momentum=config.momentum, epsilon=config.epsilon,
        centered=config.centered, has_velocity=config.has_velocity, **common)


def set_config(opt_state: Any, config: OptimizerConfig) -> Any:
    """``opt_state`` of :func:`make_v11_optimizer` with the numbers of ``config`` (e.g.
    after :func:`~cianna_jax.optim.update_optimizer_config`).  Raises ``ValueError``
    when ``config`` needs another state (kind, ams_grad, centered, velocity switched on):
    build a new optimizer then."""
    st = find_state(opt_state)
    need = set(_buffer_names(config.kind, config.ams_grad > 0, config.centered > 0,
                             config.has_velocity))
    have = set(st.buffers)
    same_kind = ("first_mom" in have) == (config.kind == "ADAM") and (
        ("sqrt_avg" in have) == (config.kind == "RMSprop"))
    if not same_kind or not need <= have or (have - need) - {"velocity"}:
        raise ValueError(f"optimizer state has buffers {sorted(have)}, config "
                         f"{config.to_string()!r} needs {sorted(need)}: build a new optimizer")
    numbers = {"SGD": ("momentum",), "ADAM": ("beta1", "beta2", "epsilon"),
               "RMSprop": ("alpha", "momentum", "epsilon")}[config.kind]
    return set_learning_rate(opt_state, opt_state.hyperparams["learning_rate"],
                             **{k: getattr(config, k) for k in numbers})



def v11_decay_mask(shape: tuple[int, ...], bias_weight_offset: int,
                   flat_dim_offset: int) -> np.ndarray:
    """The kernels' decay mask of a weight array (row-major flat index ``i``): 0 where
    ``(i + 1) % flat_dim_offset >= bias_weight_offset``, else 1 (float32)."""
    i = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    return (((i + 1) % flat_dim_offset) < bias_weight_offset).astype(np.float32)


def _layer_decay(layer, p: dict) -> dict:
    """The layer's V-1.1 decay mask (its ``v11_decay_mask`` hook; everything decayed for
    a layer without one)."""
    hook = getattr(layer, "v11_decay_mask", None)
    if hook is None:
        return {k: host_arrays.full((), 1, v.dtype, like=v) for k, v in p.items()}
    return host_arrays.copy_tree(hook(p))


def v11_masks(net: Any, params: Any, frozen: tuple[int, ...] = ()) -> tuple[tuple, tuple]:
    """CIANNA V-1.1's (update mask, decay mask) trees for ``params`` of ``net``.

    Update: 1 (V-1.1 updates every weight, the dense pivot too), 0 for the layers in
    ``frozen`` (scalar masks, so freezing never recompiles).  Decay, the kernels' offset
    rule: dense -- the bias row is not decayed except its last entry (the pivot), nor is
    the last entry of the row above it; conv -- everything, bias weights included; norm
    and GRN -- nothing; other layers -- their ``update_masks`` decay mask.
    """
    upd, dec = [], []
    for i, (layer, p) in enumerate(zip(net.layers, params)):
        upd.append({k: host_arrays.full((), 0.0 if i in frozen else 1.0, v.dtype, like=v)
                    for k, v in p.items()})
        dec.append(_layer_decay(layer, p))
    return tuple(upd), tuple(dec)


def find_state(opt_state: Any) -> V11State:
    """The :class:`V11State` inside ``opt_state`` (injected, chained or bare)."""
    if isinstance(opt_state, V11State):
        return opt_state
    if hasattr(opt_state, "inner_state"):
        return find_state(opt_state.inner_state)
    if isinstance(opt_state, tuple):
        for s in opt_state:
            try:
                return find_state(s)
            except TypeError:
                pass
    raise TypeError("opt_state: expected the state of a V-1.1 optimizer (make_v11_optimizer)")


def replace_state(opt_state: Any, new: V11State) -> Any:
    """``opt_state`` with its :class:`V11State` replaced by ``new``."""
    if isinstance(opt_state, V11State):
        return new
    if hasattr(opt_state, "inner_state"):
        return opt_state._replace(inner_state=replace_state(opt_state.inner_state, new))
    out, done = [], False
    for s in opt_state:
        if not done:
            try:
                find_state(s)
            except TypeError:
                pass
            else:
                s, done = replace_state(s, new), True
        out.append(s)
    return type(opt_state)(*out) if hasattr(opt_state, "_fields") else tuple(out)


def set_v11_masks(opt_state: Any, masks: tuple[Any, Any]) -> Any:
    """``opt_state`` with new (update, decay) masks (e.g. :func:`v11_masks` after freezing
    layers); same shapes, so no recompilation."""
    st = find_state(opt_state)
    return replace_state(opt_state, st._replace(mask=(host_arrays.copy_tree(masks[0]),
                                                      host_arrays.copy_tree(masks[1]))))
