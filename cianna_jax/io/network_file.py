"""CIANNA save files <-> (Network, params): the bridge between the file records of
:mod:`cianna_jax.io.cianna_format` and the functional core.

A file written by CIANNA loads with no other configuration than the input bias
(``init(bias=...)``, which CIANNA always gives to the first layer) and gives the
same outputs; a network saved here can be read by CIANNA.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from ..activations import parse_activation
from ..layers import LRN, Conv, Dense, Norm, Pool
from ..layers.common import Shape
from ..network import Network, Params, check_params, make_network
from .cianna_format import (
    CiannaFormatError,
    ConvRecord,
    DenseRecord,
    LRNRecord,
    NormRecord,
    PoolRecord,
    YoloRecord,
    read_network,
    write_network,
)

__all__ = ["Loaded", "load_network", "save_network", "records_to_layers", "layers_to_records"]


class Loaded(NamedTuple):
    """Result of :func:`load_network`: the network, its parameters and the YOLO extras
    of YOLO conv records (``{layer index: YoloRecord}``)."""

    net: Network
    params: Params
    yolo: dict[int, YoloRecord]


def _activation(text: str, where: str):
    try:
        return parse_activation(text)
    except ValueError as err:
        raise CiannaFormatError(f"{where}: {err}") from None


def records_to_layers(records, offset: int = 0, after_dense: bool = False):
    """File records -> (layer specs, params, yolo extras).

    ``offset`` is the index of the first record's layer; ``after_dense`` tells that
    it follows a dense layer (a conv then reads its saved input shape).
    """
    layers, params, yolo = [], [], {}
    for j, rec in enumerate(records):
        where = f"record {j + 1}"
        act = _activation(rec.activation, where)
        if isinstance(rec, DenseRecord):
            layers.append(Dense(rec.nb_neurons, act, float(rec.bias), float(rec.dropout)))
            params.append({"w": jnp.asarray(rec.weights, jnp.float32)})
        elif isinstance(rec, ConvRecord):
            prev_dense = isinstance(layers[-1], Dense) if layers else after_dense
            layers.append(Conv(tuple(rec.f_size), rec.nb_filters, act, float(rec.bias),
                               tuple(rec.stride), tuple(rec.padding), tuple(rec.int_padding),
                               tuple(rec.in_dims) if prev_dense else None, float(rec.dropout)))
            params.append({"w": jnp.asarray(rec.weights, jnp.float32)})
            if rec.yolo is not None:
                yolo[offset + j] = rec.yolo
        elif isinstance(rec, PoolRecord):
            layers.append(Pool(tuple(rec.p_size), act, tuple(rec.stride), tuple(rec.padding),
                               "AVG" if rec.p_type.startswith("AVG") else "MAX",
                               int(rec.p_global), float(rec.dropout)))
            params.append({})
        elif isinstance(rec, NormRecord):
            layers.append(Norm(act, int(rec.group_size), int(rec.set_off), "GN"))
            params.append({"gamma": jnp.asarray(rec.gamma, jnp.float32),
                           "beta": jnp.asarray(rec.beta, jnp.float32)})
        elif isinstance(rec, LRNRecord):
            layers.append(LRN(act, int(rec.range), float(rec.k), float(rec.alpha),
                              float(rec.beta)))
            params.append({})
        else:
            raise CiannaFormatError(f"{where}: unknown record type {type(rec).__name__}")
    return layers, params, yolo


def yolo_record(cfg) -> YoloRecord:
    """The YOLO extras CIANNA saves with a YOLO conv layer (unfloored priors, slopes)."""
    priors = np.asarray(cfg.prior_size, np.float32).reshape(cfg.nb_box, 3).T
    return YoloRecord(cfg.nb_box, cfg.nb_class, cfg.nb_param, cfg.fit_dim, cfg.class_softmax,
                      priors, np.asarray(cfg.slopes_and_maxes, np.float32).reshape(6, 3))


def yolo_config_from_record(rec: YoloRecord, in_dim, grid, settings: dict | None = None,
                            override: bool = True):
    """The YOLO configuration of a loaded YOLO layer.

    ``settings`` are ``set_yolo_params`` keywords; unless ``override`` is False (CIANNA's
    ``no_override=1``), the geometry saved in the file (box/class/param counts,
    fit_dim, class_softmax, priors, slopes) replaces theirs.
    """
    from ..yolo.config import make_config

    kw = dict(settings or {})
    if override or not kw:
        kw.update(nb_box=rec.nb_box, nb_class=rec.nb_class, nb_param=rec.nb_param,
                  fit_dim=rec.fit_dim, class_softmax=rec.class_softmax,
                  prior_size=np.asarray(rec.priors, np.float32),
                  slopes_and_maxes=np.asarray(rec.slopes, np.float32))
        for name, size in (("prior_noobj_prob", rec.nb_box), ("param_ind_scales", rec.nb_param)):
            if kw.get(name) is not None and np.asarray(kw[name]).shape != (size,):
                kw.pop(name)
    return make_config(in_dim, grid, **kw)


def load_network(path: str | os.PathLike, *, binary: bool = False, bias: float = 0.1,
                 in_dims: tuple[int, int, int, int] | None = None, nb_layers: int = 0,
                 nb_skip_layers: int = 0, base: Network | None = None,
                 base_params: Params | None = None, yolo_settings: dict | None = None,
                 yolo_override: bool = True) -> Loaded:
    """Read a CIANNA save file into a network and its parameters.

    ``bias`` is the input bias (CIANNA's ``init(bias=...)``), given to the first
    layer whatever the file says.  ``in_dims`` (W, H, D, C) loads onto another input
    resolution (channels must match; dense layers after a resolution change will
    not fit).  ``base``/``base_params`` are existing layers the loaded records are
    appended to (CIANNA V-1.0.1 ``load``); ``nb_skip_layers`` records are skipped,
    then ``nb_layers`` are loaded (0 = all).  A YOLO output layer gets its
    configuration from the file, merged with ``yolo_settings`` (``set_yolo_params``
    keywords; see :func:`yolo_config_from_record`).  Nothing is returned on error.
    """
    if base is not None and base.layers:
        target = base.output_shape
        input_shape = (target.w, 1, 1, 1) if target.flat else tuple(target[:4])
        net_in = base.in_dims
    else:
        input_shape = None if in_dims is None else tuple(in_dims)
        net_in = None if in_dims is None else tuple(in_dims)
    cfile = read_network(path, binary, input_shape=input_shape, nb_layers=nb_layers,
                         nb_skip_layers=nb_skip_layers)
    if net_in is None:
        net_in = tuple(cfile.in_shapes[0]) if cfile.in_shapes else tuple(cfile.in_dims)
    offset = len(base.layers) if base is not None else 0
    after_dense = bool(base is not None and base.layers and isinstance(base.layers[-1], Dense))
    layers, params, yolo = records_to_layers(cfile.records, offset, after_dense)
    if base is not None and base.layers:
        layers = list(base.layers) + layers
        if base_params is None:
            raise ValueError("base_params: required together with base")
        params = list(base_params) + params
    try:
        net = make_network(net_in, layers, bias)
        last = len(layers) - 1
        if last in yolo and layers[last].activation.kind == "YOLO":
            cfg = yolo_config_from_record(yolo[last], net_in[:3], net.output_shape.spatial,
                                          yolo_settings, yolo_override)
            net = make_network(net_in, layers, bias, cfg)
        check_params(net, tuple(params))
    except ValueError as err:
        raise CiannaFormatError(f"{os.fspath(path)}: {err}") from None
    return Loaded(net, tuple(params), yolo)


def layers_to_records(net: Network, params: Params, yolo: dict[int, YoloRecord] | None = None):
    """(Network, params) -> file records, in CIANNA's save layout."""
    check_params(net, params)
    yolo = dict(yolo or {})
    if net.yolo is not None:
        yolo[len(net.layers) - 1] = yolo_record(net.yolo)
    records = []
    for i, (layer, (sin, _)) in enumerate(zip(net.layers, net.shapes)):
        act = layer.activation.name
        p = params[i]
        if isinstance(layer, Dense):
            records.append(DenseRecord(layer.nb_neurons, layer.drop_rate, layer.bias, act,
                                       np.asarray(p["w"], np.float32)))
        elif isinstance(layer, Conv):
            src: Shape = layer.map_input(sin)
            records.append(ConvRecord(layer.nb_filters, layer.f_size, layer.stride,
                                      layer.padding, layer.int_padding,
                                      (src.w, src.h, src.d, src.c), layer.drop_rate, layer.bias,
                                      act, yolo.get(i), np.asarray(p["w"], np.float32)))
        elif isinstance(layer, Pool):
            size, stride, pad = layer.geometry(sin)
            records.append(PoolRecord(size, stride, pad, layer.p_global, layer.drop_rate,
                                      layer.p_type, act))
        elif isinstance(layer, Norm):
            records.append(NormRecord("GN", layer.group_size, layer.set_off, act,
                                      np.asarray(p["gamma"], np.float32),
                                      np.asarray(p["beta"], np.float32)))
        elif isinstance(layer, LRN):
            records.append(LRNRecord(layer.range, layer.k, layer.alpha, layer.beta, act))
    return records


def save_network(path: str | os.PathLike, net: Network, params: Params, *, binary: bool = False,
                 yolo: dict[int, YoloRecord] | None = None) -> None:
    """Write ``net`` and ``params`` as a CIANNA save file (ASCII or binary)."""
    write_network(path, net.in_dims, layers_to_records(net, params, yolo), binary)
