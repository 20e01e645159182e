"""CIANNA's save and load over the imperative state: network files in the network's
dialect, V-1.1 optimizer-state files.

``save`` and ``load`` are the documented functions (``cnn.save``, ``cnn.load``);
:func:`save_state` and :func:`save_optimizer_state` also serve ``train``'s periodic
saves (:mod:`cianna_jax.driver`).  The files themselves are written and read by
:mod:`cianna_jax.io`; this module checks the state, picks the dialect and installs
what was loaded.  It imports :mod:`cianna_jax.api` (the state), which does not import it.
"""

from __future__ import annotations

import os
import warnings

from . import console, optim, training
from .api import NetState, get_state, say, v11_transform
from .checks import as_flag, as_int
from .io import optim_file
from .io.cianna_format import CiannaFormatError, write_network
from .io.network_file import layers_to_records, load_network

__all__ = ["save", "load", "save_state", "save_optimizer_state"]


def save_state(state: NetState, file, binary: bool) -> None:
    """Write ``state`` to ``file`` (atomic: a failed save keeps the previous file)."""
    if not state.layers:
        raise RuntimeError("save: the network has no layer")
    os.makedirs("net_save", mode=0o700, exist_ok=True)
    folder = os.path.dirname(os.fspath(file))
    if folder and not os.path.isdir(folder):
        raise FileNotFoundError(f"file: folder {folder!r} does not exist")
    records = layers_to_records(state.net, state.forward_params())
    _in_dialect(state, lambda version: write_network(file, state.in_dims, records, binary,
                                                     version=version))


def _in_dialect(state: NetState, fn, *, any_error: bool = False):
    """``fn(version)`` in the network's file dialect; a V-1.0 network holding V-1.1
    layers (``grn``, ``merge``, grouped conv...) uses V-1.1 files, which only they need.
    ``any_error`` (reading): a file that is not a valid V-1.0 file is tried as a V-1.1
    one, and the V-1.0 error is raised if that fails too."""
    try:
        return fn(state.dialect)
    except ValueError as err:
        if state.dialect != "1.0" or not (any_error or "version='1.1'" in str(err)):
            raise
        first = err
    try:
        return fn("1.1")
    except ValueError:
        raise first from None


def save_optimizer_state(state: NetState, file, binary: bool) -> None:
    """Write ``state``'s optimizer state (weights, EMA, buffers) as CIANNA V-1.1's
    optimizer-state file (atomic)."""
    if not state.layers:
        raise RuntimeError("save: the network has no layer")
    if state.optim_config is None:
        raise ValueError("save_optim: the network uses CIANNA V-1.0's SGD, which has no "
                         "optimizer-state file: init(optimizer=...)")
    if state.opt_state is None:
        raise RuntimeError("save_optim: the optimizer has no state yet: train first")
    optim_file.write_optimizer_file(file, state.net, state.params, state.optim_config,
                                    state.opt_state, use_wema=bool(state.wema),
                                    wema_rate=state.wema_rate, binary=binary)


def save(file, network: int = -1, bin: int = 0, save_optim: int = 0) -> None:
    """Save the network in CIANNA's ASCII (``bin=0``) or binary (``bin=1``) format;
    ``save_optim=1`` (V-1.1) writes the optimizer-state file instead (training weights,
    EMA and optimizer buffers, for an exact resume with ``load``)."""
    state = get_state(network)
    file = os.fspath(file)
    binary = bool(as_int(bin, "bin"))
    if as_flag(save_optim, "save_optim"):
        save_optimizer_state(state, file, binary)
    else:
        save_state(state, file, binary)


def load(file, iteration: int, network: int = -1, nb_layers: int = 0, nb_skip_layers: int = 0,
         bin: int = 0, silent: int = 0) -> None:
    """Load layers from a CIANNA save file and set the iteration counter.

    Records are appended to the network's existing layers (CIANNA V-1.0.1); the first
    ``nb_skip_layers`` records are skipped, then ``nb_layers`` are loaded (0 = all).
    On any error nothing changes.
    """
    state = get_state(network)
    iteration = as_int(iteration, "iteration", minimum=0)
    nb_layers = as_int(nb_layers, "nb_layers", minimum=0)
    nb_skip_layers = max(0, as_int(nb_skip_layers, "nb_skip_layers"))
    binary = bool(as_int(bin, "bin"))
    if optim_file.is_optimizer_file(file, binary):
        _load_optimizer_state(state, optim_file.read_optimizer_file(
            file, binary, in_dims=state.in_dims), iteration, silent)
        return
    base = state.net if state.layers else None
    settings = state.yolo_params
    override = not (settings or {}).get("no_override", 0)
    try:
        loaded = _in_dialect(state, lambda version: load_network(
            file, binary=binary, bias=None if state.dialect == "1.1" else state.bias,
            in_dims=state.in_dims, nb_layers=nb_layers, nb_skip_layers=nb_skip_layers,
            base=base, base_params=state.params if base else None, yolo_settings=settings,
            yolo_override=override, version=version), any_error=True)
    except CiannaFormatError as err:
        if base is not None:  # the likely cause: a load meant for a fresh network
            err.add_note(f"the file's layers were appended after the network's "
                         f"{len(state.layers)} existing layers, as CIANNA does; to rebuild "
                         "the saved network, load it into a network with no layers (a new "
                         "init)")
        raise
    first_new = len(state.layers)
    if loaded.yolo and loaded.net.yolo is not None:
        if settings is None:
            warnings.warn("loading a YOLO layer with no prior call to set_yolo_params: the "
                          "saved geometry and default settings are used", stacklevel=2)
        elif override:
            cfg = loaded.net.yolo
            say(" WARNING: Overriding the following YOLO parameters from save file:\n"
                f" Nboxes = {cfg.nb_box}, Nclasses = {cfg.nb_class}, Nparams = "
                f"{cfg.nb_param}\n Nb dim fitted : {cfg.fit_dim}\n", silent)
    state.bias = float(loaded.net.input_bias)
    state.set_network(loaded.net, state.put_params(tuple(loaded.params)))
    state.iteration = iteration
    for i in range(first_new, len(state.layers)):
        sin, sout = loaded.net.shapes[i]
        say(console.layer_summary(i, state.layers[i], sin, sout, state.b_size, loading=True),
            silent)


def _load_optimizer_state(state: NetState, of, iteration: int, silent) -> None:
    """Install a CIANNA V-1.1 optimizer-state file (weights, EMA, optimizer buffers):
    the file's optimizer is used; a network that has layers must have the same layers,
    the same optimizer kind and the same ``wema``.  Everything is built before the state
    changes."""
    if tuple(of.net.in_dims) != tuple(state.in_dims):
        raise ValueError(f"file: the network input is {of.net.in_dims}, init declared "
                         f"{state.in_dims}")
    if state.layers:
        if state.net.layers != of.net.layers or state.net.inputs != of.net.inputs:
            raise ValueError("file: its layers differ from the network's (load an "
                             "optimizer-state file into a fresh network or the same one)")
        if state.optim_config is None or state.optim_config.kind != of.config.kind:
            raise ValueError(f"file: its optimizer is {of.config.kind}, the network's is "
                             f"{getattr(state.optim_config, 'kind', 'V-1.0 SGD')}")
        if bool(state.wema) != bool(of.use_wema):
            raise ValueError(f"file: use_wema {int(of.use_wema)} differs from the network's "
                             f"wema={state.wema}")
    config = of.config
    optimizer = v11_transform(config, bool(state.decoupled), bool(of.use_wema))
    params = tuple(state.put_params(tuple(of.params)))
    opt_state = training.init_state(optimizer, params)
    opt_state = optim.set_v11_masks(opt_state, optim.v11_masks(of.net, params, state.frozen))
    opt_state = state.put_params(optim.set_optimizer_buffers(config, opt_state, of.buffers))
    state.bias = float(of.net.input_bias)
    state.set_network(of.net, params)
    state.optim_config, state.wema, state.wema_rate = config, int(bool(of.use_wema)), \
        float(of.wema_rate)
    state.optimizer, state.opt_state = optimizer, opt_state
    state.iteration = iteration
    say(f"Loaded the optimizer state ({config.to_string()}, use_wema {int(of.use_wema)}) "
        f"of {len(of.net.layers)} layers\n", silent)
