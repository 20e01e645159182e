"""CIANNA's imperative Python interface as a thin stateful wrapper over the core.

``import cianna_jax as cnn`` gives the documented functions (``init``,
``create_dataset``, ``conv``, ``train``, ``forward``, ``save``, ``load``, ...).  This
module only keeps per-network state (spec, params, optimizer state, datasets,
iteration counter, PRNG key) and delegates all maths to the functional core;
``train``/``forward`` (:mod:`cianna_jax.driver`) and ``save``/``load``
(:mod:`cianna_jax.saving`) work on this state from their own modules.
Unlike CIANNA, bad calls raise Python exceptions and leave every network,
dataset and file as it was.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
import warnings
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from . import console, host_keys, nn, optim, parallel, training, xla_cpu
from .checks import as_flag, as_float, as_int, as_str
from .layers.merge import merge_sources
from .network import Network, Params, check_params, inference_params, make_network, set_pivots
from .precision import Policy, get_policy
from .yolo.config import check_targets, make_config, summary

__all__ = [
    "init", "free_network", "create_dataset", "delete_dataset", "swap_data_buffers",
    "dense", "conv", "pool", "norm", "lrn", "grn", "merge", "linear", "relu", "logistic", "softmax", "YOLO",
    "set_frozen_layers", "get_network", "set_params", "set_yolo_params",
    "get_state", "get_dataset", "check_dataset_targets", "say", "warn_once",
    "sgd", "adam", "rms_prop", "set_optimizer_param", "v11_transform",
    "NetState", "Dataset",
]

DATASET_NAMES = ("TRAIN", "VALID", "TEST", "TRAIN_buf", "VALID_buf", "TEST_buf")
COMP_METHS = ("C_CUDA", "C_BLAS", "C_NAIV")


@dataclass
class Dataset:
    """A dataset kept as one float32 copy on the host (and on the device when
    ``dynamic_load=0``)."""

    x: np.ndarray
    t: np.ndarray
    device: tuple | None = None  # (x, t) device arrays (nb_batch, B, values), padding zeros
    yolo_checked: tuple | None = None  # the YOLO target rules ``t`` was validated against

    @property
    def size(self) -> int:
        return self.x.shape[0]


@dataclass
class NetState:
    """Everything the wrapper remembers about one network."""

    id: int
    in_dims: tuple[int, int, int, int]
    out_dim: int
    bias: float
    b_size: int
    batch_mode: str
    comp_meth: str
    device: object
    dynamic_load: int
    policy: Policy
    inference_only: int
    adv_size: int
    key: jax.Array
    root_key: jax.Array | None = None  # from the seed; epoch keys derive from it
    network: Network | None = None  # validated once per change (layer added, load)
    params: tuple = ()
    yolo_params: dict | None = None  # set_yolo_params keywords
    yolo_cfg: object = None  # YoloConfig once the YOLO layer exists
    iteration: int = 0
    datasets: dict = field(default_factory=lambda: dict.fromkeys(DATASET_NAMES))
    lock: threading.Lock = field(default_factory=threading.Lock)
    frozen: tuple = ()
    optimizer: object = None
    opt_state: object = None
    no_error: int = 0
    perf: dict = field(default_factory=dict)
    mesh: jax.sharding.Mesh | None = None  # data parallel: batches split over its devices
    optim_config: optim.OptimizerConfig | None = None  # V-1.1 optimizer (None: V-1.0 SGD)
    wema: int = 0  # V-1.1 weight EMA: forward and save use the EMA weights
    wema_rate: float = 0.0
    decoupled: bool = False  # V-1.1 decoupled weight decay (AdamW)
    dialect: str = "1.0"  # "1.1": CIANNA V-1.1 behaviour (cianna_jax.v11)
    # (weight arrays, their inference layout) of the last forward pass: see inference_weights
    laid_out: tuple | None = field(default=None, repr=False)

    @property
    def net(self) -> Network:
        if self.network is None:
            return make_network(self.in_dims, (), self.bias)
        return self.network

    @property
    def layers(self) -> tuple:
        return () if self.network is None else self.network.layers

    def set_network(self, net: Network, params) -> None:
        """Install a validated network and its parameters (optimizer state reset)."""
        self.laid_out = None
        self.network = net
        self.params = tuple(params)
        self.yolo_cfg = net.yolo
        self.reset_optimizer()

    def forward_params(self) -> tuple:
        """The weights a forward or a regular save uses: the EMA weights of a ``wema=1``
        network (CIANNA V-1.1), otherwise the training weights."""
        if self.wema and not self.inference_only and self.opt_state is not None:
            ema = optim.get_ema(self.opt_state)
            if ema is not None:
                return tuple(ema)
        return self.params

    def inference_weights(self) -> tuple:
        """:meth:`forward_params` laid out for inference (:func:`network.inference_params`),
        kept while they are the same arrays: JAX arrays are immutable and training puts
        new ones in place, so repeated ``forward`` calls between trainings lay the weights
        out once (the Winograd filters of the wide 3x3 layers on CPU: tens of ms per pass
        on the SDC1 network)."""
        src = self.forward_params()
        leaves = jax.tree_util.tree_leaves(src)
        held = self.laid_out
        if (held is not None and len(held[0]) == len(leaves)
                and all(a is b for a, b in zip(held[0], leaves))):
            return held[1]
        laid = inference_params(self.network, src, self.policy)
        self.laid_out = (leaves, laid)
        return laid

    def epoch_key(self, purpose: int) -> jax.Array:
        """The key of this iteration's randomness (``purpose``: 0 training, 1 shuffling):
        a function of the ``init`` seed and the iteration counter only, so a training
        resumed from a save (same seed) draws exactly what an uninterrupted one does."""
        return host_keys.fold_in(host_keys.fold_in(self.root_key, purpose), self.iteration)

    def next_key(self) -> jax.Array:
        self.key, sub = host_keys.split_list(self.key)
        return sub

    def reset_optimizer(self) -> None:
        self.optimizer = None
        self.opt_state = None

    def put_batch(self, x, axis: int = 0) -> jax.Array:
        """A batch (examples on ``axis``: 0, or 1 for a whole dataset shaped
        (nb_batch, B, ...)) onto the network's devices: split over the mesh when data
        parallel, else on ``device``."""
        if self.mesh is None:
            return jax.device_put(x, self.device)
        return parallel.shard_batch(x, self.mesh, axis=axis)

    def put_params(self, tree):
        """Parameters or optimizer state onto the network's devices (replicated on
        the mesh when data parallel).  Arrays already there are kept as they are (the
        same objects: :meth:`inference_weights` recognises unchanged weights by them)."""
        if self.mesh is None:
            return parallel.place(tree, parallel.single_device(self.device))
        return parallel.replicate(tree, self.mesh)


_NETS: dict[int, NetState] = {}
_SESSION = {"last": None, "banner": False, "warned_cuda": False, "warned_tc": False}


# ----------------------------------------------------------------------------- helpers


_int, _float, _str = as_int, as_float, as_str  # short local names


def get_state(network: int = -1) -> NetState:
    """The state of ``network`` (-1: the last network created)."""
    network = _int(network, "network")
    if network == -1:
        last = _SESSION["last"]
        if last is None or last not in _NETS:
            if _SESSION.get("freed") is not None and _NETS:
                raise RuntimeError(
                    f"network: the default network (id {_SESSION['freed']}, the newest) was "
                    f"freed; pass network=<id> (existing ids: {sorted(_NETS)}) or call init(...)")
            raise RuntimeError("no network: call init(...) first")
        return _NETS[last]
    if network not in _NETS:
        raise ValueError(f"network: no network with id {network}; existing ids: {sorted(_NETS)}")
    return _NETS[network]


def say(text: str, silent=0) -> None:
    """Print ``text`` on CIANNA's console unless ``silent``."""
    if not silent:
        console.write(text)


_say = say


def warn_once(name: str, message: str, category: type = UserWarning,
              stacklevel: int = 3) -> None:
    """``warnings.warn(message)`` the first time ``name`` is raised in this session."""
    flag = f"warned_{name}"
    if not _SESSION.get(flag):
        warnings.warn(message, category, stacklevel=stacklevel)
        _SESSION[flag] = True


# ----------------------------------------------------------------------------- init


def _device_for(comp_meth: str):
    if comp_meth == "C_CUDA":
        try:
            return jax.devices("gpu")[0]
        except RuntimeError:
            if not _SESSION["warned_cuda"]:
                warnings.warn("comp_meth='C_CUDA' but JAX sees no GPU: running on the CPU",
                              RuntimeWarning, stacklevel=3)
                _SESSION["warned_cuda"] = True
    return jax.devices("cpu")[0]


def init(in_dim, in_nb_ch: int, out_dim: int, bias: float = 0.1, b_size: int = 8,
         comp_meth: str = "C_CUDA", network: int | None = None, dynamic_load: int = 1,
         mixed_precision: str = "off", inference_only: int = 0, no_logo: int = 0,
         adv_size: int = 30, seed: int | None = None,
         data_parallel: bool | int | None = None, optimizer: str | None = None,
         wema: int = 0) -> None:
    """Create a network: input ``in_dim`` ([W, H, D]) with ``in_nb_ch`` channels,
    targets of ``out_dim`` values, input bias ``bias`` and batch size ``b_size``.

    Without ``network`` a new network is created and becomes the default one of
    later calls; ``network=k`` replaces network k.  ``seed`` makes weight init,
    dropout and shuffling reproducible.  ``data_parallel`` splits every batch over
    several devices of the compute backend: ``None`` (default) does so when several
    are visible, over the largest number of them dividing ``b_size``; ``True`` uses
    all, an int that many, ``False``/0/1 one (:func:`cianna_jax.parallel.select_mesh`).
    ``optimizer`` (CIANNA V-1.1, e.g. ``adam()``) selects a V-1.1 optimizer and its
    update rule (gradients divided by the real batch length); ``wema=1`` keeps an EMA of
    the weights for forward and saves (needs ``optimizer``).  Default: V-1.0's SGD.
    """
    xla_cpu.tune(warn=False)  # CPU tuning, only if no backend started and not opted out
    in_dims = nn.in_dims_from(in_dim, in_nb_ch)
    out_dim = _int(out_dim, "out_dim", minimum=1)
    bias = _float(bias, "bias", finite=True)
    b_size = _int(b_size, "b_size")
    comp_meth = _str(comp_meth, "comp_meth")
    if comp_meth not in COMP_METHS:
        raise ValueError(f"comp_meth: expected one of {COMP_METHS}, received {comp_meth!r}")
    policy = get_policy(mixed_precision)
    dynamic_load = _int(dynamic_load, "dynamic_load")
    inference_only = _int(inference_only, "inference_only")
    adv_size = _int(adv_size, "adv_size")
    if network is not None:
        network = _int(network, "network", minimum=0)
    if seed is not None:
        seed = _int(seed, "seed")
    optim_config = None if optimizer is None else optim.parse_optimizer(
        _str(optimizer, "optimizer"))
    wema = as_flag(wema, "wema")
    if wema and optim_config is None:
        raise ValueError("wema: the weight EMA needs a V-1.1 optimizer (optimizer=sgd(), "
                         "adam() or rms_prop())")
    if not _SESSION["banner"]:
        _say(console.banner(bool(no_logo)) + "\n")
        _SESSION["banner"] = True
    if b_size == 1:
        mode = "SGD"
        _say(" Automatically switch to SGD scheme (batch_size = 1)\n")
    elif b_size <= 0:
        mode, b_size = "FULL", 16
        _say(" Undefined batch size -> automatic value is 16\n")
    else:
        mode = "OFF"
    device = _device_for(comp_meth)
    mesh = parallel.select_mesh(data_parallel, b_size, device.platform)
    if network is None:
        network = max(_NETS) + 1 if _NETS else 0
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "little")
    _NETS[network] = NetState(network, in_dims, out_dim, bias, b_size, mode, comp_meth, device,
                              dynamic_load, policy, inference_only, adv_size if adv_size > 0 else 30,
                              host_keys.key(seed), host_keys.fold_in(host_keys.key(seed), 1),
                              mesh=mesh, optim_config=optim_config,
                              wema=int(bool(wema)))
    _SESSION["last"] = network
    _SESSION["freed"] = None
    method = {"C_CUDA": f"CUDA ({policy.name})", "C_BLAS": "BLAS", "C_NAIV": "NAIV"}[comp_meth]
    w, h, d, c = in_dims
    where = "" if mesh is None else f" (data parallel over {parallel.nb_devices(mesh)} devices)"
    _say(f"Network (id: {network}) initialized with : \nInput dimensions: {w}x{h}x{d}x{c} \n"
         f"Output dimension: {out_dim} \nBatch size: {b_size} \nUsing {method} compute method "
         f"on {device.platform.upper()}{where}\nInference only: {inference_only}\n\n")


def free_network(network: int = 0) -> None:
    """Drop a network with its datasets, layers and optimizer state; its id becomes free.

    Freeing the default network (the newest) leaves no default: later calls must name
    their ``network=`` (CIANNA's default would point at the freed one) until ``init``.
    """
    state = get_state(network)
    del _NETS[state.id]
    if _SESSION["last"] == state.id:
        _SESSION["last"] = None
        _SESSION["freed"] = state.id


# ----------------------------------------------------------------------------- datasets


def _check_dataset_name(dataset, allowed=DATASET_NAMES) -> str:
    dataset = _str(dataset, "dataset")
    if dataset not in allowed:
        raise ValueError(f"dataset: expected one of {allowed}, received {dataset!r}")
    return dataset


def _as_table(arr, name: str, rows: int, cols: int, allow_nonfinite: bool = False) -> np.ndarray:
    """The first ``rows`` rows of ``arr`` (exactly ``cols`` wide) as a float32 copy;
    NaN and inf are refused (first bad row and column named) unless ``allow_nonfinite``."""
    a = np.asarray(arr)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected a numeric array, received dtype {a.dtype}")
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (examples, values), received shape "
                         f"{a.shape}")
    if a.shape[0] < rows or a.shape[1] != cols:
        raise ValueError(f"{name}: expected shape ({rows}, {cols}) (at least {rows} rows, exactly "
                         f"{cols} values per row), received {a.shape}")
    with np.errstate(over="ignore"):
        out = np.array(a[:rows], dtype=np.float32, order="C", copy=True)
    if not allow_nonfinite:
        bad = ~np.isfinite(out)
        if bad.any():
            r, c = (int(v) for v in np.argwhere(bad)[0])
            found = a[r, c].item()
            why = "" if not np.isfinite(found) else " (overflows float32)"
            raise ValueError(f"{name}: non-finite value {found!r}{why} at row {r}, column {c} "
                             f"({int(bad.sum())} such value(s) in the first {rows} rows); "
                             "replace them (e.g. np.nan_to_num) or pass allow_nonfinite=1 "
                             "to keep them")
    return out


def _to_device(state: NetState, ds: Dataset) -> Dataset:
    """``ds`` with a device copy shaped (nb_batch, B, ...): batch j is one slice,
    already split over the mesh's devices when data parallel."""
    b = state.b_size
    nb = -(-ds.size // b)
    x = training.pad_batch(ds.x, nb * b).reshape((nb, b) + ds.x.shape[1:])
    t = training.pad_batch(ds.t, nb * b).reshape(nb, b, -1)
    return dataclasses.replace(ds, device=(state.put_batch(x, axis=1),
                                           state.put_batch(t, axis=1)))


def _target_rules(state: NetState):
    """(key, config) of the YOLO target rules in force, or None before set_yolo_params."""
    if state.yolo_params is None or state.yolo_params.get("max_nb_obj_per_image", 0) <= 0:
        return None
    cfg = state.yolo_cfg or make_config(state.in_dims[:3], (1, 1, 1), **state.yolo_params)
    return (cfg.target_len, cfg.max_nb_obj_per_image, cfg.nb_class, cfg.target_box_len), cfg


def check_dataset_targets(state: NetState, name: str, ds: Dataset) -> None:
    """Validate ``ds``'s YOLO targets against the rules in force (once per rule set):
    datasets created before ``set_yolo_params`` are checked here, before use."""
    rules = _target_rules(state)
    if rules is None or ds.yolo_checked == rules[0]:
        return
    try:
        check_targets(ds.t, rules[1])
    except ValueError as err:
        raise ValueError(f"dataset {name}: target: {err} (the targets do not follow the YOLO "
                         f"settings; create the dataset again with valid targets)") from None
    ds.yolo_checked = rules[0]


def create_dataset(dataset: str, size: int, input, target, network: int = -1,
                   silent: int = 0, allow_nonfinite: int = 0) -> None:
    """Create ``dataset`` (TRAIN, VALID, TEST or their ``_buf``) from ``size`` rows of
    ``input`` (examples, C*D*H*W) and ``target`` (examples, out_dim).

    The inputs are copied once to float32 channel-last images (the core's layout);
    with ``dynamic_load=0`` they are also put on the device.  An existing dataset of
    that name is replaced.  Rows must have exactly the network's widths; NaN or inf
    values are refused, naming the first one, unless ``allow_nonfinite=1`` (not in
    CIANNA; such values make the loss NaN, which ``train`` then refuses).
    """
    state = get_state(network)
    dataset = _check_dataset_name(dataset)
    size = _int(size, "size", minimum=1)
    allow = bool(as_flag(allow_nonfinite, "allow_nonfinite"))
    w, h, d, c = state.in_dims
    x = _as_table(input, "input", size, w * h * d * c, allow)
    # once, here: CIANNA's channel-major rows -> channel-last images (N, D, H, W, C)
    x = np.ascontiguousarray(np.moveaxis(x.reshape(size, c, d, h, w), 1, -1))
    t = _as_table(target, "target", size, state.out_dim, allow)
    ds = Dataset(x, t)
    check_dataset_targets(state, dataset, ds)
    if state.dynamic_load == 0:
        ds = _to_device(state, ds)
    with state.lock:
        state.datasets[dataset] = ds
    label = {"TRAIN": "train set", "VALID": "valid set", "TEST": "test set",
             "TRAIN_buf": "train buffer set", "VALID_buf": "valid buffer set",
             "TEST_buf": "test buffer set"}[dataset]
    nb_batch = (size - 1) // state.b_size + 1
    _say(f"Setting {label}\ninput dim :{w * h * d * c},Creating dataset with size {size} "
         f"(nb_batch = {nb_batch}) ... Done !\n\n", silent)


def delete_dataset(dataset: str, network: int = -1, silent: int = 0) -> None:
    """Forget ``dataset``; deleting one that does not exist is harmless."""
    state = get_state(network)
    dataset = _check_dataset_name(dataset)
    with state.lock:
        state.datasets[dataset] = None
    label = dataset.lower().replace("_buf", " buffer")
    _say(f"Deleting {label} set\n", silent)


def swap_data_buffers(dataset: str, network: int = -1) -> None:
    """Exchange ``dataset`` and ``dataset + "_buf"`` (O(1), thread-safe); an empty
    buffer is refused (the swap would silently leave ``dataset`` empty)."""
    state = get_state(network)
    dataset = _check_dataset_name(dataset, ("TRAIN", "VALID", "TEST"))
    with state.lock:
        buf = dataset + "_buf"
        if state.datasets[buf] is None:
            raise RuntimeError(f"swap_data_buffers: {buf} is empty: fill it with "
                               f"create_dataset({buf!r}, ...) before swapping")
        state.datasets[dataset], state.datasets[buf] = state.datasets[buf], state.datasets[dataset]


def get_dataset(state: NetState, name: str) -> Dataset:
    with state.lock:
        ds = state.datasets[name]
    if ds is None:
        raise RuntimeError(f"dataset {name} does not exist: call create_dataset({name!r}, ...)")
    return ds


# ----------------------------------------------------------------------------- layers


def _source(state: NetState, prev_layer) -> int:
    """CIANNA's ``prev_layer``: -1 the current last layer (or the input), >= 0 that
    layer, <= -2 the network input."""
    prev_layer = _int(prev_layer, "prev_layer")
    n = len(state.layers)
    if prev_layer == -1:
        return n - 1 if n else -1
    if prev_layer <= -2:
        return -1
    if prev_layer >= n:
        raise ValueError(f"prev_layer: the network has {n} layers (ids 0..{n - 1}), received "
                         f"{prev_layer}")
    return prev_layer


def _add_layer(state: NetState, spec, prev_layer, silent, sources=None) -> int:
    """Append ``spec`` reading ``prev_layer`` (or the absolute ``sources``); on any error
    the network is unchanged."""
    sources = (_source(state, prev_layer),) if sources is None else tuple(sources)
    src = sources[0]
    n = len(state.layers)
    old = state.net
    inputs = tuple(old.sources(i) for i in range(n)) + (sources,)
    bias = state.bias
    if state.dialect == "1.1" and not n:  # V-1.1: the first layer keeps its own bias
        own = getattr(spec, "bias", None)
        bias = spec.activation.default_bias if own is None else own
    net = make_network(state.in_dims, [*old.layers, spec], bias, inputs=inputs)
    if spec.activation.kind == "YOLO":
        if state.yolo_params is None:
            raise RuntimeError("a YOLO layer needs set_yolo_params(...) first")
        cfg = make_config(state.in_dims[:3], net.output_shape.spatial, **state.yolo_params)
        net = make_network(state.in_dims, [*old.layers, spec], bias, cfg, inputs=inputs)
    layer = net.layers[-1]
    in_shape, out_shape = net.shapes[-1]
    params, _ = layer.init(state.next_key(), in_shape)
    new_params = set_pivots(net, state.params + (params,), layers=(src,))
    state.bias = bias
    state.set_network(net, new_params)
    _say(console.layer_summary(n, layer, in_shape, out_shape, state.b_size), silent)
    return n


def dense(nb_neurons: int, activation: str = "RELU", bias: float | None = None,
          prev_layer: int = -1, drop_rate: float = 0.0, strict_size: int = 0,
          init_fct: str = "xavier", init_scaling: float | None = None, network: int = -1,
          silent: int = 0) -> int:
    """Append a dense layer; returns its index."""
    state = get_state(network)
    spec = nn.dense(nb_neurons, activation, bias, drop_rate, strict_size, init_fct, init_scaling)
    return _add_layer(state, spec, prev_layer, silent)


def conv(f_size, nb_filters: int, stride=None, padding=None, int_padding=None,
         activation: str = "RELU", bias: float | None = None, prev_layer: int = -1,
         input_shape=None, drop_rate: float = 0.0, init_fct: str = "xavier",
         init_scaling: float | None = None, network: int = -1, silent: int = 0,
         nb_groups: int = 1) -> int:
    """Append a convolution layer (sizes in (W, H, D) order); returns its index.
    ``nb_groups`` (CIANNA V-1.1): grouped convolution (``nb_filters`` and the input
    channels divisible by it; equal to both: depthwise)."""
    state = get_state(network)
    spec = nn.conv(f_size, nb_filters, stride, padding, int_padding, activation, bias,
                   input_shape, drop_rate, init_fct, init_scaling, nb_groups=nb_groups)
    return _add_layer(state, spec, prev_layer, silent)


def pool(p_size=None, stride=None, padding=None, prev_layer: int = -1, drop_rate: float = 0.0,
         p_type: str = "MAX", activation: str = "LIN", p_global: int = 0, network: int = -1,
         silent: int = 0) -> int:
    """Append a pooling layer (default size 2 where the input is > 1); returns its index."""
    state = get_state(network)
    spec = nn.pool(p_size, stride, padding, drop_rate, p_type, activation, p_global)
    return _add_layer(state, spec, prev_layer, silent)


def norm(normalization: str = "GN", activation: str = "LIN", prev_layer: int = -1,
         group_size: int = 8, set_off: int = 0, network: int = -1, silent: int = 0,
         gamma_init: float | None = None, per_channel: int = 0) -> int:
    """Append a group-normalisation layer; returns its index.

    A ``group_size`` larger than the channel count falls back to layer normalisation
    (group_size = channels) with a warning, as CIANNA V-1.0.1 does.  ``per_channel=1``
    is CIANNA V-1.1's norm (one gamma and beta per channel), ``gamma_init`` the initial
    gamma.
    """
    state = get_state(network)
    group_size = _int(group_size, "group_size", minimum=1)
    if state.layers:
        channels = state.net.output_shape.c
        if group_size > channels and not state.net.output_shape.flat:
            warnings.warn(f"group_size {group_size} is larger than the number of channels "
                          f"({channels}): falling back to layer normalization", stacklevel=2)
            group_size = channels
    spec = nn.norm(normalization, activation, group_size, set_off, gamma_init=gamma_init,
                   per_channel=bool(as_flag(per_channel, "per_channel")))
    return _add_layer(state, spec, prev_layer, silent)


def grn(residual: int = 1, activation: str = "LIN", prev_layer: int = -1,
        gamma_init: float = 1.0, network: int = -1, silent: int = 0) -> int:
    """Append a global response normalisation layer (CIANNA V-1.1); returns its index."""
    state = get_state(network)
    return _add_layer(state, nn.grn(residual, activation, gamma_init), prev_layer, silent)


def merge(prev_layer_a: int = -1, prev_layer_b: int = -1, merge_type: str = "ADD",
          activation: str = "LIN", network: int = -1, silent: int = 0) -> int:
    """Append a merge layer (CIANNA V-1.1) of two earlier layers: "ADD" (same shapes) or
    "CONCAT" (channels of A then B).  Negative ids count back from the merge (-1 = the
    layer just before it), ids >= 0 are absolute; returns its index."""
    state = get_state(network)
    spec = nn.merge(merge_type, activation)
    sources = merge_sources(_int(prev_layer_a, "prev_layer_a"), _int(prev_layer_b,
                                                                     "prev_layer_b"),
                            len(state.layers))
    return _add_layer(state, spec, -1, silent, sources=sources)


def lrn(activation: str = "LIN", prev_layer: int = -1, range: int = 5, k: float = 1.0,
        alpha: float = 1.0, beta: float = 0.5, network: int = -1, silent: int = 0) -> int:
    """Append a local response normalisation layer; returns its index."""
    state = get_state(network)
    spec = nn.lrn(activation, range, k, alpha, beta)
    return _add_layer(state, spec, prev_layer, silent)


def set_frozen_layers(froz_array, network: int = -1) -> None:
    """Freeze layer i when ``froz_array[i]`` is non-zero (its weights are not updated)."""
    state = get_state(network)
    if isinstance(froz_array, (str, bytes)):
        raise TypeError(f"froz_array: expected a list or array of 0/1 flags, received "
                        f"{froz_array!r}")
    flags = np.asarray(froz_array)
    if flags.dtype.kind not in "biu" or flags.ndim > 1:
        raise TypeError(f"froz_array: expected a 1-D list or array of int or bool flags, "
                        f"received {froz_array!r}")
    flags = flags.ravel()
    if flags.size > len(state.layers):
        raise ValueError(f"froz_array: {flags.size} flags for {len(state.layers)} layers")
    state.frozen = tuple(int(i) for i in np.flatnonzero(flags))
    if state.optim_config is not None and state.opt_state is not None:
        # V-1.1: the buffers and the EMA are kept, only the masks change
        state.opt_state = optim.set_v11_masks(
            state.opt_state, optim.v11_masks(state.net, state.params, state.frozen))
    else:
        state.reset_optimizer()


# ----------------------------------------------------------------------------- activations


def linear(*_args, **_kwargs) -> str:
    """The linear activation string, ``"LIN"``."""
    return "LIN"


def relu(saturation: float = 800.0, leaking: float = 0.05) -> str:
    """``"RELU_S<saturation>_L<leaking>"`` with 2 decimals (CIANNA's precision)."""
    return f"RELU_S{_float(saturation, 'saturation'):.2f}_L{_float(leaking, 'leaking'):.2f}"


def logistic(saturation: float = 6.0, beta: float = 1.0) -> str:
    """``"LOGI_S<saturation>_B<beta>"`` with 2 decimals (CIANNA's precision)."""
    return f"LOGI_S{_float(saturation, 'saturation'):.2f}_B{_float(beta, 'beta'):.2f}"


def softmax(*_args, **_kwargs) -> str:
    """The softmax activation string, ``"SMAX"``."""
    return "SMAX"


def YOLO(*_args, **_kwargs) -> str:  # noqa: N802  (CIANNA's documented name)
    """The YOLO activation string, ``"YOLO"``."""
    return "YOLO"


# ----------------------------------------------------------------------------- escape hatch


def get_network(network: int = -1) -> tuple[Network, Params]:
    """``(spec, params)`` of a network, for the functional API (``cianna_jax.apply``)."""
    state = get_state(network)
    if not state.layers:
        raise RuntimeError("get_network: the network has no layer yet")
    return state.net, state.params


def set_params(params: Params, network: int = -1) -> None:
    """Replace a network's parameters (same shapes); resets the momentum buffers."""
    state = get_state(network)
    params = tuple(jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), p)
                   for p in params)
    check_params(state.net, params)
    state.params = params
    state.reset_optimizer()  # momentum restarts; the compiled step is kept


# ----------------------------------------------------------------------------- YOLO


def set_yolo_params(nb_box: int = 0, nb_class: int = 0, nb_param: int = 0,
                    max_nb_obj_per_image: int = 0, prior_size=None, prior_noobj_prob=None,
                    error_scales=None, slopes_and_maxes=None, param_ind_scales=None,
                    IoU_limits=None, fit_parts=None, IoU_type: str = "GIoU",  # noqa: N803
                    strict_box_size: int = 0, prior_dist_type: str = "SIZE", fit_dim: int = 0,
                    rand_startup: int = 64000, rand_prob_best_box_assoc: float = 0.0,
                    rand_prob: float = 0.0, min_prior_forced_scaling: float = 0.0,
                    class_softmax: int = 0, diff_flag: int = 0, error_type: str = "natural",
                    no_override: int = 0, raw_output: int = 0, network: int = -1,
                    silent: int = 0, yolo_kernel: str = "auto") -> int:
    """Configure the YOLO output of a network (before its YOLO layer is built or loaded).

    Returns ``nb_box * (8 + nb_class + nb_param)``, the filter count of the YOLO conv
    layer.  Raises instead of exiting on invalid settings; a second call on a network
    whose YOLO layer exists is refused, as in CIANNA.  ``yolo_kernel`` (not in CIANNA)
    picks the loss implementation: "auto" (the Pallas kernel on a GPU where it was
    measured faster, see ``yolo.resolve_kernel``), "pallas" or "xla".
    """
    state = get_state(network)
    if state.yolo_cfg is not None:
        raise RuntimeError("set_yolo_params: updating an existing YOLO layer is not supported")
    kw = dict(nb_box=nb_box, nb_class=nb_class, nb_param=nb_param,
              max_nb_obj_per_image=max_nb_obj_per_image, prior_size=prior_size,
              prior_noobj_prob=prior_noobj_prob, error_scales=error_scales,
              slopes_and_maxes=slopes_and_maxes, param_ind_scales=param_ind_scales,
              IoU_limits=IoU_limits, fit_parts=fit_parts, IoU_type=IoU_type,
              strict_box_size=strict_box_size, prior_dist_type=prior_dist_type, fit_dim=fit_dim,
              rand_startup=rand_startup, rand_prob_best_box_assoc=rand_prob_best_box_assoc,
              rand_prob=rand_prob, min_prior_forced_scaling=min_prior_forced_scaling,
              class_softmax=class_softmax, diff_flag=diff_flag, error_type=error_type,
              no_override=no_override, raw_output=raw_output, kernel=yolo_kernel)
    cfg = make_config(state.in_dims[:3], (1, 1, 1), **kw)  # validates; grid comes later
    if cfg.max_nb_obj_per_image > 0 and cfg.target_len != state.out_dim:
        raise ValueError(
            f"max_nb_obj_per_image: targets of 1 + {cfg.max_nb_obj_per_image}*(7 + nb_param + "
            f"diff_flag) = {cfg.target_len} values are expected, but init declared out_dim="
            f"{state.out_dim}")
    state.yolo_params = kw
    _say(summary(cfg) + "\n", silent)
    _check_existing_targets(state)
    return cfg.nb_filters


def _check_existing_targets(state: NetState) -> None:
    """Datasets created before the YOLO settings were known: validate them now and
    warn about the invalid ones (``train``/``forward`` refuse them until recreated)."""
    for name, ds in state.datasets.items():
        if ds is None:
            continue
        try:
            check_dataset_targets(state, name, ds)
        except ValueError as err:
            warnings.warn(str(err), UserWarning, stacklevel=3)


# ----------------------------------------------------------------------------- optimizers

sgd, adam, rms_prop = optim.sgd, optim.adam, optim.rms_prop


@functools.lru_cache(maxsize=64)
def v11_transform(config: optim.OptimizerConfig, decoupled: bool, use_wema: bool):
    """One shared V-1.1 optimizer per (config, static flags): its numbers live in the
    state, so the jitted step compiles once per network and not once per ``train``."""
    return optim.make_v11_optimizer(config, decoupled=decoupled, use_wema=use_wema)


def set_optimizer_param(param: str, network: int = -1) -> None:
    """Change the numbers of the network's V-1.1 optimizer from an optimizer string
    (CIANNA V-1.1): the type cannot change, and momentum / ams_grad / centered cannot be
    switched on once layers exist (a warning, the old value is kept)."""
    state = get_state(network)
    if state.optim_config is None:
        raise RuntimeError("set_optimizer_param: the network has no V-1.1 optimizer: "
                           "init(optimizer=...)")
    config = optim.update_optimizer_config(state.optim_config, _str(param, "param"),
                                           bool(state.layers))
    if state.opt_state is not None:
        state.opt_state = optim.set_config(state.opt_state, config)
        state.optimizer = v11_transform(config, bool(state.decoupled), bool(state.wema))
    state.optim_config = config
