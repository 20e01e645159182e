"""cianna_jax: CIANNA's networks, numerics and files in JAX.

Imperative interface, as CIANNA's (``import cianna_jax as cnn``)::

    cnn.init(in_dim=[28, 28], in_nb_ch=1, out_dim=10, b_size=16)
    cnn.create_dataset("TRAIN", 60000, x_train, t_train)
    cnn.conv(f_size=[5, 5], nb_filters=8, padding=[2, 2]); cnn.pool(); ...
    cnn.train(nb_iter=20, learning_rate=0.004, momentum=0.8)

Functional core (pure, jit/vmap/grad friendly)::

    import jax, cianna_jax as cj
    from cianna_jax import nn
    net = nn.network([28, 28], 1, [nn.conv([5, 5], 8, padding=[2, 2]), nn.pool(),
                                   nn.dense(10, activation="SMAX")])
    params = cj.init_params(jax.random.key(0), net)
    y = cj.apply(net, params, x)          # x: (N, C*D*H*W) CIANNA rows
"""

# ruff: noqa: E402  (the XLA flag must be set before the imports below start JAX)
import os as _os


def _tune_xla_cpu() -> None:
    """Turn XLA's YNNPACK fusions off (slower for these networks on CPU, see the README).

    Only when the user has not set the flag, has not opted out with
    ``CIANNA_JAX_KEEP_XLA_FLAGS=1`` and no JAX backend is initialised yet (XLA reads
    ``XLA_FLAGS`` once, when the first backend starts).
    """
    flags = _os.environ.get("XLA_FLAGS", "")
    if _os.environ.get("CIANNA_JAX_KEEP_XLA_FLAGS", "") not in ("", "0") or \
            "xla_cpu_experimental_ynn_fusion_type" in flags:
        return
    try:
        from jax._src import xla_bridge
        if getattr(xla_bridge, "_backends", None):
            return
    except ImportError:
        pass
    _os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_experimental_ynn_fusion_type=").strip()


_tune_xla_cpu()

from . import activations, initializers, layers, losses, nn, precision, training
from .activations import Activation, parse_activation
from .api import (
    YOLO,
    conv,
    create_dataset,
    delete_dataset,
    dense,
    free_network,
    get_network,
    init,
    linear,
    load,
    logistic,
    lrn,
    norm,
    pool,
    relu,
    save,
    set_frozen_layers,
    set_params,
    set_yolo_params,
    softmax,
    swap_data_buffers,
)
from .driver import forward, perf_eval, train
from .io.network_file import Loaded, load_network, save_network
from .network import Network, apply, init_params, make_network
from .report import print_arch_tex
from .training import (
    batch_loss,
    cianna_sgd,
    learning_rate_at,
    make_optimizer,
    train_epoch,
    train_step,
)
from .yolo.config import (
    set_error_scales,
    set_fit_parts,
    set_IoU_limits,
    set_slopes_and_maxes,
    set_sm_single,
)

__version__ = "0.1.0"

__all__ = [
    "YOLO", "conv", "create_dataset", "delete_dataset", "dense", "forward", "free_network",
    "get_network", "init", "linear", "load", "logistic", "lrn", "norm", "perf_eval", "pool",
    "print_arch_tex", "relu", "save", "set_frozen_layers", "set_params", "softmax",
    "swap_data_buffers", "train", "precision", "set_yolo_params", "set_error_scales",
    "set_fit_parts", "set_IoU_limits", "set_slopes_and_maxes", "set_sm_single",
    "Activation",
    "Loaded",
    "Network",
    "activations",
    "apply",
    "batch_loss",
    "cianna_sgd",
    "init_params",
    "initializers",
    "layers",
    "learning_rate_at",
    "load_network",
    "losses",
    "make_network",
    "make_optimizer",
    "nn",
    "parse_activation",
    "save_network",
    "train_epoch",
    "train_step",
    "training",
]
