"""A network trained epoch by epoch through the functional core, as the imperative API
trains it: the benchmarks' "ours" side.

``Trained(net, lr, momentum)`` holds the parameters and CIANNA's SGD-momentum state;
``epoch(x, t, batch)`` runs ``training.train_epoch`` ("auto": on CPU 8 batches per
compiled call, batches past the end skipped) and keeps the result.
"""

from __future__ import annotations

import functools

import jax

import cianna_jax as cj
from cianna_jax import training
from cianna_jax.precision import FP32, Policy


class Trained:
    """Parameters and optimizer state of ``net`` (drawn with key 0), trained in place."""

    def __init__(self, net: cj.Network, lr: float, momentum: float, policy: Policy = FP32):
        self.net, self.policy, self.epochs = net, policy, 0
        self.opt = cj.make_optimizer(lr, momentum,
                                     masks=functools.partial(cj.cianna_masks, net))
        self.params = cj.init_params(jax.random.key(0), net)
        self.state = self.opt.init(self.params)

    def epoch(self, x, t, batch: int) -> None:
        """One training epoch over ``x``, ``t`` (key: the epoch's number), waited for."""
        p, s, total = training.train_epoch(self.net, self.opt, self.params, self.state, x, t,
                                           batch, jax.random.key(self.epochs),
                                           policy=self.policy)
        total.block_until_ready()
        self.params, self.state = p, s
        self.epochs += 1
