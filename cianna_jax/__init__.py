"""cianna_jax: CIANNA's networks, numerics and files in JAX.

Functional core (pure, jit/vmap/grad friendly)::

    import jax, cianna_jax as cj
    from cianna_jax import nn
    net = nn.network([28, 28], 1, [nn.conv([5, 5], 8, padding=[2, 2]), nn.pool(),
                                   nn.dense(10, activation="SMAX")])
    params = cj.init_params(jax.random.key(0), net)
    y = cj.apply(net, params, x)          # x: (N, C*D*H*W) CIANNA rows
"""

from . import activations, initializers, layers, losses, nn, training
from .activations import Activation, parse_activation
from .io.network_file import Loaded, load_network, save_network
from .network import Network, apply, init_params, make_network
from .training import (
    batch_loss,
    cianna_sgd,
    learning_rate_at,
    make_optimizer,
    train_epoch,
    train_step,
)

__version__ = "0.1.0"

__all__ = [
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
