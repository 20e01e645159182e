"""CIANNA V-1.1's Python interface: ``import cianna_jax.v11 as cnn``.

A V-1.1 script changes only its import line.  The functions are those of
:mod:`cianna_jax` with V-1.1's signatures, defaults and behaviour
(``../shared/spec/cianna_v11.md``): ``network=0`` everywhere; ``init`` takes
``b_size`` before the deprecated ``bias`` and selects an ``optimizer`` (``sgd()``,
``adam()``, ``rms_prop()``) and the weight EMA (``wema``); the first layer's input
bias is that layer's own bias; gradients are divided by the real batch length;
``train(momentum=)`` is ignored (the momentum belongs to the optimizer);
``forward(no_error=1, return_output=0)`` by default and dense predictions without the
bias column; ``conv(nb_groups=)``; ``norm`` with a per-channel affine and
``gamma_init``; ``grn`` and ``merge``; V-1.1 save files and optimizer-state files.

The networks, datasets and files are shared with :mod:`cianna_jax`: a network made
here is a normal network of the imperative state, marked as V-1.1.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import api, driver, report, saving
from .api import adam, linear, logistic, relu, rms_prop, sgd, softmax
from .checks import as_float, as_int
from .layer_timing import perf_eval as _perf_eval

__all__ = [
    "init", "free_network", "create_dataset", "delete_dataset", "swap_data_buffers",
    "set_optimizer_param", "load", "save", "train", "forward", "perf_eval", "print_arch_tex",
    "set_frozen_layers", "sgd", "adam", "rms_prop", "linear", "relu", "logistic", "softmax",
    "yolo", "dense", "conv", "pool", "norm", "lrn", "grn", "merge", "set_yolo_params",
    "get_network",
]

_NO_BIAS = -1000.0  # V-1.1's marker of a bias not given to init


def init(in_dim, in_nb_ch: int, out_dim: int, b_size: int = 8, bias: float = _NO_BIAS,
         optimizer: str = "SGD", wema: int = 0, comp_meth: str = "C_CUDA", network: int = 0,
         dynamic_load: int = 1, mixed_precision: str = "off", inference_only: int = 0,
         no_logo: int = 0, adv_size: int = 0, seed: int | None = None,
         data_parallel: bool | int | None = None) -> None:
    """V-1.1 ``init``: creates (or replaces) network ``network``; ``bias`` is deprecated
    and unused (the first layer's own bias is its input bias)."""
    if as_float(bias, "bias") != _NO_BIAS:
        warnings.warn("init(bias=...) is deprecated in CIANNA V-1.1 and not used: the first "
                      "layer's input bias is its own bias value", DeprecationWarning,
                      stacklevel=2)
    api.init(in_dim, in_nb_ch, out_dim, bias=0.1, b_size=b_size, comp_meth=comp_meth,
             network=network, dynamic_load=dynamic_load, mixed_precision=mixed_precision,
             inference_only=inference_only, no_logo=no_logo,
             adv_size=adv_size if adv_size > 0 else 30, seed=seed,
             data_parallel=data_parallel, optimizer=optimizer, wema=wema)
    api.get_state(network).dialect = "1.1"


def free_network(network: int = 0) -> None:
    api.free_network(network)


def create_dataset(dataset: str, size: int, input, target=None, network: int = 0,
                   silent: int = 0) -> None:
    """V-1.1 ``create_dataset``: ``target`` may be omitted (zeros, for inference)."""
    if target is None:
        target = np.zeros((as_int(size, "size", minimum=1), api.get_state(network).out_dim),
                          np.float32)
    api.create_dataset(dataset, size, input, target, network=network, silent=silent)


def delete_dataset(dataset: str, network: int = 0, silent: int = 0) -> None:
    api.delete_dataset(dataset, network=network, silent=silent)


def swap_data_buffers(dataset: str, network: int = 0) -> None:
    api.swap_data_buffers(dataset, network)


def set_optimizer_param(param: str, network: int = 0) -> None:
    api.set_optimizer_param(param, network)


def set_frozen_layers(froz_array, network: int = 0) -> None:
    api.set_frozen_layers(froz_array, network)


def yolo(*_args, **_kwargs) -> str:
    """The YOLO activation string, ``"YOLO"``."""
    return "YOLO"


def _scaling(init_scaling):
    return None if init_scaling is None or as_float(init_scaling, "init_scaling") < 0 \
        else init_scaling


def dense(nb_neurons: int, activation: str = "RELU", bias: float | None = None,
          prev_layer: int = -1, drop_rate: float = 0.0, strict_size: int = 0,
          init_fct: str = "xavier", init_scaling: float = -1.0, network: int = 0,
          silent: int = 0) -> int:
    return api.dense(nb_neurons, activation, bias, prev_layer, drop_rate, strict_size,
                     init_fct, _scaling(init_scaling), network, silent)


def conv(f_size, nb_filters: int, nb_groups: int = 1, stride=None, padding=None,
         int_padding=None, activation: str = "RELU", bias: float | None = None,
         prev_layer: int = -1, input_shape=None, drop_rate: float = 0.0,
         init_fct: str = "xavier", init_scaling: float = -1.0, network: int = 0,
         silent: int = 0) -> int:
    """V-1.1 ``conv``: ``nb_groups`` (grouped / depthwise convolution) is the 3rd keyword."""
    return api.conv(f_size, nb_filters, stride, padding, int_padding, activation, bias,
                    prev_layer, input_shape, drop_rate, init_fct, _scaling(init_scaling),
                    network, silent, nb_groups=nb_groups)


def pool(p_size=None, stride=None, padding=None, prev_layer: int = -1, drop_rate: float = 0.0,
         p_type: str = "MAX", activation: str = "LIN", p_global: int = 0, network: int = 0,
         silent: int = 0) -> int:
    return api.pool(p_size, stride, padding, prev_layer, drop_rate, p_type, activation,
                    p_global, network, silent)


def norm(normalization: str = "GN", activation: str = "LIN", prev_layer: int = -1,
         group_size: int = 8, gamma_init: float = 1.0, network: int = 0,
         silent: int = 0) -> int:
    """V-1.1 group normalisation: one gamma and beta per channel, gamma set to
    ``gamma_init`` (``set_off`` is gone)."""
    return api.norm(normalization, activation, prev_layer, group_size, 0, network, silent,
                    gamma_init=gamma_init, per_channel=True)


def lrn(activation: str = "LIN", prev_layer: int = -1, range: int = 5, k: float = 1.0,
        alpha: float = 1.0, beta: float = 0.5, network: int = 0, silent: int = 0) -> int:
    return api.lrn(activation, prev_layer, range, k, alpha, beta, network, silent)


def grn(residual: int = 1, activation: str = "LIN", prev_layer: int = -1,
        gamma_init: float = 1.0, network: int = 0, silent: int = 0) -> int:
    return api.grn(residual, activation, prev_layer, gamma_init, network, silent)


def merge(prev_layer_a: int = -1, prev_layer_b: int = -1, merge_type: str = "ADD",
          activation: str = "LIN", network: int = 0, silent: int = 0) -> int:
    """V-1.1 ``merge``: negative ids are relative to the merge layer (-1 the layer just
    before it), ids >= 0 absolute."""
    return api.merge(prev_layer_a, prev_layer_b, merge_type, activation, network, silent)


def set_yolo_params(*args, network: int = 0, **kwargs) -> int:
    return api.set_yolo_params(*args, network=network, **kwargs)


def get_network(network: int = 0):
    return api.get_network(network)


def save(file, network: int = 0, save_optim: int = 0, bin: int = 0) -> None:
    saving.save(file, network, bin, save_optim)


def load(file, iteration: int, network: int = 0, nb_layers: int = 0, nb_skip_layers: int = 0,
         bin: int = 0, silent: int = 0) -> None:
    """V-1.1 ``load``: network files and optimizer-state files (``OptimSave``)."""
    saving.load(file, iteration, network, nb_layers, nb_skip_layers, bin, silent)


def train(nb_iter: int, learning_rate: float, end_learning_rate: float = 0.0,
          control_interv: int = 1, momentum: float = 0.0, lr_decay: float = 0.0,
          weight_decay: float = 0.0, decoupled_wdecay: int = 0, wema_rate: float = -1.0,
          wema_replace_every: int = 0, confmat: int = 0, save_every: int = 0,
          save_bin: int = 0, save_optim_every: int = 0, network: int = 0, shuffle_gpu: int = 1,
          shuffle_every: int = 1, TC_scale_factor: float = 1.0,  # noqa: N803
          silent: int = 0) -> None:
    driver.train(nb_iter, learning_rate, end_learning_rate, control_interv, momentum,
                 lr_decay, weight_decay, confmat, save_every, save_bin, network, shuffle_gpu,
                 shuffle_every, TC_scale_factor, silent, decoupled_wdecay=decoupled_wdecay,
                 wema_rate=wema_rate, wema_replace_every=wema_replace_every,
                 save_optim_every=save_optim_every)


def forward(saving: int = 1, drop_mode: str = "AVG_MODEL", no_error: int = 1, repeat: int = 1,
            network: int = 0, silent: int = 0, return_output: int = 0):
    """V-1.1 ``forward``: no loss by default; the predictions are returned as an array
    (test size, outputs) only with ``return_output=1``."""
    return driver.forward(saving, drop_mode, no_error, repeat, network, silent, return_output)


def perf_eval(network: int = 0) -> None:
    _perf_eval(network)


def print_arch_tex(path: str, file_name: str, size: int = 1, in_size: int = 1, f_size: int = 1,
                   out_size: int = 1, stride: int = 1, padding: int = 1, in_padding: int = 0,
                   activation: int = 0, bias: int = 0, dropout: int = 0, param_count: int = 0,
                   network: int = 0) -> str:
    return report.print_arch_tex(path, file_name, size, in_size, f_size, out_size, stride,
                                 padding, in_padding, activation, bias, dropout, param_count,
                                 network)


for _f in (free_network, delete_dataset, swap_data_buffers, set_optimizer_param,
           set_frozen_layers, dense, pool, lrn, grn, set_yolo_params, get_network, save, train,
           perf_eval, print_arch_tex):
    if _f.__doc__ is None:
        _f.__doc__ = (f"CIANNA V-1.1 ``{_f.__name__}`` (``network=0`` by default); see "
                      f"``cianna_jax.{_f.__name__}``.")
del _f
