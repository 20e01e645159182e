"""CIANNA save files <-> (Network, params): the bridge between the file records of
:mod:`cianna_jax.io.cianna_format` and the functional core.

A file written by CIANNA loads with no other configuration than the input bias
(``init(bias=...)``, which CIANNA V-1.0 always gives to the first layer) and gives the
same outputs; a network saved here can be read by CIANNA.

``version="1.1"`` reads and writes CIANNA V-1.1 files (GRN and merge records, grouped
convs, per-channel norms).  There the first layer keeps its own saved bias (V-1.1 has
no input bias), and merge records give the network its branches: every other layer
reads the layer before it, so a network whose other layers branch cannot be saved
(CIANNA's format does not store ``prev_layer``).

A loaded layer passes the checks of the builder that would create it
(:mod:`cianna_jax.nn`: dropout range, sizes, strides, types, activation), then the
network's (:func:`~cianna_jax.network.make_network`: stacking, geometry) and, for a
YOLO output, :func:`~cianna_jax.yolo.config.make_config`'s; any failure is a
:class:`CiannaFormatError` naming the file and the record.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from .. import nn
from ..checks import as_float
from ..layers import layer_type
from ..network import INPUT, Network, Params, check_params, make_network
from ..yolo.config import make_config
from .cianna_format import CiannaFormatError, YoloRecord, read_network, write_network
from .records import record_kind

__all__ = ["Loaded", "load_network", "save_network", "records_to_layers", "layers_to_records",
           "builder_check"]


class Loaded(NamedTuple):
    """Result of :func:`load_network`: the network, its parameters and the YOLO extras
    of YOLO conv records (``{layer index: YoloRecord}``)."""

    net: Network
    params: Params
    yolo: dict[int, YoloRecord]


def builder_check(layer, record=None) -> None:
    """Run the argument checks of ``layer``'s :mod:`cianna_jax.nn` builder on its settings
    (and on the type strings of its ``record``); ValueError/TypeError as the builder
    raises them.  Layer kinds without a builder there are not checked."""
    kind = layer.kind
    if kind == "dense":
        nn.dense(layer.nb_neurons, layer.activation, layer.bias, layer.drop_rate)
    elif kind == "conv":
        nn.conv(layer.f_size, layer.nb_filters, layer.stride, layer.padding, layer.int_padding,
                layer.activation, layer.bias, layer.input_shape, layer.drop_rate,
                nb_groups=layer.nb_groups)
    elif kind == "pool":
        nn.pool(layer.p_size, layer.stride, layer.padding, layer.drop_rate,
                getattr(record, "p_type", layer.p_type), layer.activation, layer.p_global)
    elif kind == "norm":
        nn.norm(getattr(record, "normalization", layer.normalization), layer.activation,
                layer.group_size, layer.set_off, per_channel=layer.per_channel)
    elif kind == "lrn":
        nn.lrn(layer.activation, layer.range, layer.k, layer.alpha, layer.beta)
    elif kind == "grn":
        nn.grn(layer.residual, layer.activation)
    elif kind == "merge":
        nn.merge(getattr(record, "merge_type", layer.merge_type), layer.activation)


def records_to_layers(records, offset: int = 0, after_dense: bool = False, path=None):
    """File records -> (layer specs, params, yolo extras), through each registered layer
    type's ``from_record``; each layer passes its builder's checks (:func:`builder_check`).

    ``offset`` is the index of the first record's layer; ``after_dense`` tells that
    it follows a dense layer (a conv then reads its saved input shape).  Raises
    :class:`CiannaFormatError` naming ``path`` and the record.
    """
    layers, params, yolo = [], [], {}
    for j, rec in enumerate(records):
        kind = None
        try:
            kind = record_kind(rec)
            cls = layer_type(kind)
            prev_dense = layers[-1].kind == "dense" if layers else after_dense
            layer, p = cls.from_record(rec, after_dense=prev_dense)
            builder_check(layer, rec)
        except (ValueError, TypeError) as err:
            raise CiannaFormatError(path, offset + j + 1, str(err),
                                    kind=kind or type(rec).__name__) from None
        layers.append(layer)
        params.append(p)
        if getattr(rec, "yolo", None) is not None:
            yolo[offset + j] = rec.yolo
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


def load_network(path: str | os.PathLike, *, binary: bool = False, bias: float | None = None,
                 in_dims: tuple[int, int, int, int] | None = None, nb_layers: int = 0,
                 nb_skip_layers: int = 0, base: Network | None = None,
                 base_params: Params | None = None, yolo_settings: dict | None = None,
                 yolo_override: bool = True, version: str = "1.0") -> Loaded:
    """Read a CIANNA save file into a network and its parameters.

    ``bias`` is the input bias (CIANNA's ``init(bias=...)``), given to the first
    layer whatever the file says; ``None`` (the default) means 0.1 (V-1.0's default)
    for ``version="1.0"``, and for ``"1.1"`` (no input bias: the first layer keeps its
    own) the bias saved in the first record, or ``base``'s when records are appended to
    it.  ``version`` is the file dialect.  ``in_dims`` (W, H, D, C) loads onto another
    input resolution (channels must match; dense layers after a resolution change will
    not fit).  ``base``/``base_params`` are existing layers the loaded records are
    appended to (CIANNA V-1.0.1 ``load``); ``nb_skip_layers`` records are skipped,
    then ``nb_layers`` are loaded (0 = all; a file holding fewer is refused).  A YOLO
    output layer gets its configuration from the file, merged with ``yolo_settings``
    (``set_yolo_params`` keywords; see :func:`yolo_config_from_record`).  Nothing is
    returned on error.
    """
    if bias is not None:  # the caller's argument, not the file's fault
        as_float(bias, "bias", finite=True)
    if base is not None and base.layers and base_params is None:
        raise ValueError("base_params: required together with base")
    if base is not None and base.layers:
        target = base.output_shape
        input_shape = (target.w, 1, 1, 1) if target.flat else tuple(target[:4])
        net_in = base.in_dims
    else:
        input_shape = None if in_dims is None else tuple(in_dims)
        net_in = None if in_dims is None else tuple(in_dims)
    cfile = read_network(path, binary, input_shape=input_shape, nb_layers=nb_layers,
                         nb_skip_layers=nb_skip_layers, version=version)
    if net_in is None:
        net_in = tuple(cfile.in_shapes[0]) if cfile.in_shapes else tuple(cfile.in_dims)
    if bias is None:
        bias = _default_bias(cfile, base, version)
    offset = len(base.layers) if base is not None else 0
    after_dense = bool(base is not None and base.layers and base.output_shape.flat)
    layers, params, yolo = records_to_layers(cfile.records, offset, after_dense, path)
    inputs = [base.sources(i) for i in range(offset)] if offset else []
    for j, rec in enumerate(cfile.records, offset):
        link = getattr(rec, "sources", None)  # merge records read two earlier layers
        inputs.append(tuple(link(j)) if link is not None else ((j - 1,) if j else (INPUT,)))
    if base is not None and base.layers:
        layers = list(base.layers) + layers
        params = list(base_params) + params
    try:
        net = make_network(net_in, layers, bias, inputs=inputs)
        last = len(layers) - 1
        if last in yolo and layers[last].activation.kind == "YOLO":
            cfg = yolo_config_from_record(yolo[last], net_in[:3], net.output_shape.spatial,
                                          yolo_settings, yolo_override)
            net = make_network(net_in, layers, bias, cfg, inputs=inputs)
        check_params(net, tuple(params))
    except ValueError as err:
        raise CiannaFormatError(path, None, str(err), kind="network") from None
    return Loaded(net, tuple(params), yolo)


def _default_bias(cfile, base: Network | None, version: str) -> float:
    """The input bias ``load_network`` uses when none is given (see there)."""
    if version != "1.1":
        return 0.1
    if base is not None and base.layers:
        return base.input_bias
    saved = getattr(cfile.records[0], "bias", None) if cfile.records else None
    return 0.1 if saved is None else saved


def layers_to_records(net: Network, params: Params, yolo: dict[int, YoloRecord] | None = None):
    """(Network, params) -> file records, in CIANNA's save layout (each layer's
    ``to_record``).  CIANNA files hold stacks: every layer reads the layer before it,
    except layers reading several (a V-1.1 merge), whose record gets the ids of its
    sources relative to it (-1 = the layer just before it).  Another wiring raises
    ValueError (CIANNA's format does not store ``prev_layer``: the network would not
    reload), a layer type without a record TypeError."""
    check_params(net, params)
    for i, layer in enumerate(net.layers):
        src = net.sources(i)
        if getattr(layer, "nb_inputs", 1) > 1:
            if INPUT in src:
                raise ValueError(f"layer {i + 1} ({layer.kind}) reads the network input: "
                                 "CIANNA's save format only links it to earlier layers")
        elif src != ((i - 1,) if i else (INPUT,)):
            raise ValueError(f"layer {i + 1} ({layer.kind}) reads layer(s) {src}: CIANNA's "
                             "save format only holds sequential networks (branches only "
                             "through merge layers), it does not store prev_layer")
    yolo = dict(yolo or {})
    if net.yolo is not None:
        yolo[len(net.layers) - 1] = yolo_record(net.yolo)
    records = []
    for i, (layer, (sin, _)) in enumerate(zip(net.layers, net.shapes)):
        to_record = getattr(layer, "to_record", None)
        if to_record is None:
            raise TypeError(f"layer {i + 1}: layer type {type(layer).__name__!r} has no CIANNA "
                            "save-file record")
        if getattr(layer, "nb_inputs", 1) > 1:
            rel = tuple(s - i for s in net.sources(i))
            records.append(to_record(params[i], sin, yolo.get(i), sources=rel))
        else:
            records.append(to_record(params[i], sin, yolo.get(i)))
    return records


def save_network(path: str | os.PathLike, net: Network, params: Params, *, binary: bool = False,
                 yolo: dict[int, YoloRecord] | None = None, version: str = "1.0") -> None:
    """Write ``net`` and ``params`` as a CIANNA save file (ASCII or binary) of dialect
    ``version`` ("1.0" or "1.1"; V-1.1 layers and options need "1.1", V-1.0's per-group
    norm needs "1.0": ValueError naming the layer otherwise)."""
    write_network(path, net.in_dims, layers_to_records(net, params, yolo), binary,
                  version=version)
