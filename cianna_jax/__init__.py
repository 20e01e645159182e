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
    y = cj.apply(net, params, x)          # x: (N, H, W, C) images, channel-last
    y = cj.apply(net, params, cj.rows_to_images(net, rows))   # from CIANNA rows

Importing the package is quick: its names load on first use (PEP 562), so ``cianna-jax
--help`` and the command's restart for huge pages do not wait for JAX to import.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from ._version import __version__ as __version__  # the one source of the version

if TYPE_CHECKING:  # the names as static tools see them; loaded lazily below
    from . import activations, initializers, layers, losses, nn, optim, precision, training
    from .activations import Activation, parse_activation
    from .api import (
        YOLO,
        adam,
        conv,
        create_dataset,
        delete_dataset,
        dense,
        free_network,
        get_network,
        grn,
        init,
        linear,
        logistic,
        lrn,
        merge,
        norm,
        pool,
        relu,
        rms_prop,
        set_frozen_layers,
        set_optimizer_param,
        set_params,
        set_yolo_params,
        sgd,
        softmax,
        swap_data_buffers,
    )
    from .driver import forward, train
    from .io.network_file import Loaded, load_network, save_network
    from .layer_timing import perf_eval
    from .network import (
        Network,
        apply,
        apply_layers,
        images_to_rows,
        inference_params,
        init_params,
        make_network,
        output_rows,
        params_to_rows,
        rows_to_images,
        rows_to_params,
        targets_to_internal,
    )
    from .report import print_arch_tex
    from .saving import load, save
    from .training import (
        batch_loss,
        cianna_masks,
        cianna_sgd,
        learning_rate_at,
        make_optimizer,
        predict,
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


#: the package's submodules loaded on first use as ``cianna_jax.<name>``
_SUBMODULES = ("activations", "initializers", "layers", "losses", "nn", "optim", "precision",
               "training")

#: ``{module: names}``: each public name and the module (relative) that defines it
_SOURCES = {
    "activations": ("Activation", "parse_activation"),
    "api": ("YOLO", "adam", "conv", "create_dataset", "delete_dataset", "dense", "free_network",
            "get_network", "grn", "init", "linear", "logistic", "lrn", "merge", "norm", "pool",
            "relu", "rms_prop", "set_frozen_layers", "set_optimizer_param", "set_params",
            "set_yolo_params", "sgd", "softmax", "swap_data_buffers"),
    "driver": ("forward", "train"),
    "io.network_file": ("Loaded", "load_network", "save_network"),
    "layer_timing": ("perf_eval",),
    "network": ("Network", "apply", "apply_layers", "images_to_rows", "inference_params",
                "init_params", "make_network", "output_rows", "params_to_rows", "rows_to_images",
                "rows_to_params", "targets_to_internal"),
    "report": ("print_arch_tex",),
    "saving": ("load", "save"),
    "training": ("batch_loss", "cianna_masks", "cianna_sgd", "learning_rate_at",
                 "make_optimizer", "predict", "train_epoch", "train_step"),
    "yolo.config": ("set_error_scales", "set_fit_parts", "set_IoU_limits",
                    "set_slopes_and_maxes", "set_sm_single"),
}
_WHERE = {name: module for module, names in _SOURCES.items() for name in names}


def __getattr__(name: str):
    """Load a public name on first use and keep it in the package; any submodule too
    (``cianna_jax.yolo``, ``cianna_jax.network``, ...), as when the package imported
    them all."""
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    elif name in _SUBMODULES or (not name.startswith("__")
                                 and importlib.util.find_spec(f"{__name__}.{name}")):
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE) | set(_SUBMODULES))


__all__ = [
    "YOLO", "conv", "create_dataset", "delete_dataset", "dense", "forward", "free_network",
    "get_network", "init", "linear", "load", "logistic", "lrn", "norm", "perf_eval", "pool",
    "print_arch_tex", "relu", "save", "set_frozen_layers", "set_params", "softmax",
    "swap_data_buffers", "train", "precision", "set_yolo_params", "set_error_scales",
    "set_fit_parts", "set_IoU_limits", "set_slopes_and_maxes", "set_sm_single",
    "adam", "sgd", "rms_prop", "set_optimizer_param", "grn", "merge", "optim",
    "Activation",
    "Loaded",
    "Network",
    "activations",
    "apply",
    "apply_layers",
    "inference_params",
    "batch_loss",
    "cianna_masks",
    "cianna_sgd",
    "images_to_rows",
    "output_rows",
    "rows_to_images",
    "rows_to_params",
    "params_to_rows",
    "targets_to_internal",
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
    "predict",
    "save_network",
    "train_epoch",
    "train_step",
    "training",
]
