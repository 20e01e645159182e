"""Data parallelism: every batch split over several devices, parameters replicated.

A one-axis :class:`jax.sharding.Mesh` (axis ``"batch"``) holds the devices.  Batches are
sharded along their rows (:func:`shard_batch`), parameters and optimizer state are
replicated (:func:`replicate`), and the jitted steps of :mod:`cianna_jax.training` are
called unchanged: XLA's SPMD partitioner runs each device on its rows and all-reduces
the loss sums and the gradients.  The maths is the one-device maths (the loss is still
summed over the whole batch and divided by the allocated batch size B, dropout masks
are drawn for the whole batch from one key), so results match one device up to the
order of floating-point sums.

Functional recipe::

    mesh = parallel.make_mesh()                          # all devices
    params, opt_state = parallel.replicate((params, opt_state), mesh)
    xb, tb = parallel.shard_batch(xb, mesh), parallel.shard_batch(tb, mesh)
    params, opt_state, loss = training.train_step(net, opt, params, opt_state, xb, tb, ...)

or ``training.train_epoch(..., mesh=mesh)``.  On several hosts, call
``jax.distributed.initialize()`` first, use a mesh over all devices and pass the same
full host arrays in every process (each process keeps the rows of its own devices).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "AXIS", "make_mesh", "select_mesh", "cpu_mesh", "nb_devices", "check_batch_size",
    "batch_sharding",
    "replicated", "single_device", "shard_batch", "replicate", "place", "to_host", "context",
]

AXIS = "batch"


def make_mesh(devices: int | Sequence | None = None, *, platform: str | None = None) -> Mesh:
    """A mesh over the ``"batch"`` axis: all visible devices (``None``), the first
    ``devices`` of them (an int), or the given device list.

    ``platform`` ("cpu", "gpu", ...) restricts the visible devices to one backend.
    """
    available = jax.devices(platform) if platform else jax.devices()
    if devices is None:
        chosen = list(available)
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            raise ValueError(f"devices: {devices} devices requested but {len(available)} "
                             f"{available[0].platform} device(s) are visible")
        chosen = list(available[:devices])
    else:
        if isinstance(devices, (str, bytes, bool)) or not isinstance(devices, Iterable):
            raise TypeError(f"devices: expected None, a number of devices or a list of "
                            f"devices (jax.devices()), received {devices!r}")
        chosen = list(devices)
        if not chosen:
            raise ValueError("devices: the device list is empty")
        for d in chosen:
            if not isinstance(d, jax.Device):
                raise TypeError(f"devices: expected jax devices (from jax.devices()), "
                                f"received {d!r}")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"devices: a device is listed twice in {chosen}")
    return Mesh(np.array(chosen), (AXIS,))


def select_mesh(data_parallel: bool | int | None, b_size: int, platform: str) -> Mesh | None:
    """The imperative API's rule for ``init(data_parallel=...)``; ``None`` means one device.

    * ``None`` (auto): on when several ``platform`` devices are visible, over the largest
      number of them that divides ``b_size`` (off when that is 1);
    * ``True``: every visible device; ``False``, 0 or 1: off;
    * an int ``n`` >= 2: the first ``n`` devices.

    An explicit request for more devices than exist, or whose device count does not
    divide ``b_size``, raises ValueError.
    """
    available = len(jax.devices(platform))
    if data_parallel is None:
        n = max(k for k in range(1, min(available, max(b_size, 1)) + 1) if b_size % k == 0)
        return make_mesh(n, platform=platform) if n > 1 else None
    if isinstance(data_parallel, bool):
        n = available if data_parallel else 1
    elif isinstance(data_parallel, (int, np.integer)):
        n = int(data_parallel)
    else:
        raise TypeError(f"data_parallel: expected None, a bool or an int, received "
                        f"{type(data_parallel).__name__}")
    if n < 0:
        raise ValueError(f"data_parallel: expected a number of devices >= 0, received {n}")
    if n > available:
        raise ValueError(f"data_parallel: {n} devices requested but only {available} {platform} "
                         "device(s) are visible")
    if n <= 1:
        return None
    mesh = make_mesh(n, platform=platform)
    check_batch_size(b_size, mesh)
    return mesh


def cpu_mesh() -> Mesh | None:
    """A mesh over the process's CPU devices when the default backend is the CPU and it
    has several (the process was given them: ``jax_num_cpu_devices``, ``cianna-jax
    predict --cpu-devices``), else None.  The detector's prediction
    (``astro.predict.make_predict_fn``) takes it by itself, each device running its own
    tiles; :func:`cianna_jax.training.predict` takes it as its ``mesh``."""
    if jax.default_backend() != "cpu" or len(jax.devices("cpu")) < 2:
        return None
    return make_mesh(platform="cpu")


def nb_devices(mesh: Mesh) -> int:
    """Number of devices a batch is split over."""
    return int(mesh.devices.size)


def check_batch_size(b_size: int, mesh: Mesh, name: str = "b_size") -> None:
    """Raise ValueError, naming the argument ``name``, unless ``b_size`` splits evenly
    over the mesh's devices."""
    n = nb_devices(mesh)
    if b_size % n:
        raise ValueError(f"{name}: a batch of {b_size} rows cannot be split evenly over {n} "
                         f"devices; use a multiple of {n} or fewer devices")


def batch_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Rows (dimension ``axis``) split over the mesh, other dimensions whole."""
    return NamedSharding(mesh, P(*([None] * axis), AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, P())


def single_device(device: jax.Device) -> jax.sharding.Sharding:
    """Everything on ``device`` (``jax.sharding.make_single_device_sharding``; jax 0.12.1
    deprecates building ``SingleDeviceSharding`` directly)."""
    make = getattr(jax.sharding, "make_single_device_sharding", None)
    return make(device) if make is not None else jax.sharding.SingleDeviceSharding(device)


def _put(x, sharding: jax.sharding.Sharding) -> jax.Array:
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    host = np.asarray(x)  # several hosts: every process holds the full array
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def shard_batch(x, mesh: Mesh, axis: int = 0) -> jax.Array:
    """``x`` with dimension ``axis`` (the batch rows) split over the mesh's devices."""
    if x.shape[axis] % nb_devices(mesh):
        raise ValueError(f"x: {x.shape[axis]} rows cannot be split evenly over "
                         f"{nb_devices(mesh)} devices")
    return _put(x, batch_sharding(mesh, axis))


def place(tree, sharding: jax.sharding.Sharding):
    """Every array of the pytree ``tree`` put with ``sharding``; arrays already placed so
    are kept as they are (the same objects, where ``jax.device_put`` returns new ones:
    callers recognise unchanged weights by them)."""
    def put(a):
        if (isinstance(a, jax.Array) and not a.is_deleted()
                and a.sharding.is_equivalent_to(sharding, a.ndim)):
            return a
        return _put(a, sharding)

    return jax.tree_util.tree_map(put, tree)


def replicate(tree, mesh: Mesh):
    """Every array of the pytree ``tree`` copied to all devices of the mesh (arrays
    already replicated there kept, see :func:`place`)."""
    return place(tree, replicated(mesh))


def to_host(x) -> np.ndarray:
    """``x`` as one numpy array, gathering the rows other hosts hold when needed."""
    if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def context(mesh: Mesh | None):
    """``jax.set_mesh(mesh)`` (a null context for None): code traced inside sees the
    mesh, so kernels XLA cannot partition (the Pallas YOLO loss) run per device
    through ``jax.shard_map`` instead of on the gathered batch."""
    return contextlib.nullcontext() if mesh is None else jax.set_mesh(mesh)
