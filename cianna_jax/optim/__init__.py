"""CIANNA V-1.1 optimizers (SGD, ADAM/AdamW, RMSprop) as optax transformations.

* :mod:`.config` -- the optimizer strings: ``sgd()``, ``adam()``, ``rms_prop()``,
  :func:`parse_optimizer`, :class:`OptimizerConfig`, ``set_optimizer_param``'s rules
  (:func:`update_optimizer_config`);
* :mod:`.transform` -- the update of CIANNA's kernels ``update_weights_*_fct`` as one
  optax transformation (decay, moments, weight EMA, frozen-layer masks), reproduced
  bit for bit in float32 (:mod:`.float32`); :func:`make_v11_optimizer` injects the
  hyper-parameters so they change without recompiling;
* :mod:`.state` -- the weight EMA helpers and the per-layer buffers of CIANNA's
  optimizer-state files (:func:`optimizer_buffers`, :func:`set_optimizer_buffers`).

The functional step needs nothing special: :func:`cianna_jax.training.train_step` takes
any ``optax.GradientTransformation``; a V-1.1 optimizer expects the gradient of the
*summed* loss divided by the real batch length (:func:`divide_by_length`).
"""

from .config import (
    MOMENTUM_THRESHOLD,
    OptimizerConfig,
    adam,
    parse_optimizer,
    rms_prop,
    sgd,
    update_optimizer_config,
)
from .state import (
    ema_init,
    ema_update,
    get_ema,
    optimizer_buffers,
    replace_with_ema,
    set_ema,
    set_optimizer_buffers,
)
from .transform import (
    WEMA_THRESHOLD,
    V11State,
    divide_by_length,
    find_state,
    make_v11_optimizer,
    replace_state,
    set_config,
    set_v11_masks,
    v11_adam,
    v11_decay_mask,
    v11_masks,
    v11_rms_prop,
    v11_sgd,
)

__all__ = [
    "sgd", "adam", "rms_prop", "OptimizerConfig", "parse_optimizer", "update_optimizer_config",
    "V11State", "v11_sgd", "v11_adam", "v11_rms_prop", "make_v11_optimizer", "set_config",
    "divide_by_length", "v11_decay_mask", "v11_masks", "set_v11_masks", "find_state",
    "replace_state",
    "ema_init", "ema_update", "get_ema", "set_ema", "replace_with_ema",
    "optimizer_buffers", "set_optimizer_buffers", "MOMENTUM_THRESHOLD", "WEMA_THRESHOLD",
]
