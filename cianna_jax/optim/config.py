"""CIANNA V-1.1 optimizer strings: the ``sgd()``, ``adam()``, ``rms_prop()`` helpers, their
parser and ``set_optimizer_param``'s rules, on a frozen :class:`OptimizerConfig`."""

from __future__ import annotations

import dataclasses
import math
import operator
import re
import warnings
from typing import Any

import numpy as np

__all__ = ["sgd", "adam", "rms_prop", "OptimizerConfig", "parse_optimizer",
           "update_optimizer_config", "MOMENTUM_THRESHOLD"]

#: CIANNA allocates and uses a velocity buffer only for ``momentum >= 0.01`` (float32).
MOMENTUM_THRESHOLD = 0.01
_KINDS = ("SGD", "ADAM", "RMSprop")


def sgd(momentum: float = 0.0) -> str:
    """CIANNA's ``sgd()`` helper: the string ``"SGD_mom%f"``."""
    return "SGD_mom%f" % momentum


def adam(beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8,
         ams_grad: int = 0) -> str:
    """CIANNA's ``adam()`` helper: ``"ADAM_b1%f_b2%f_eps%g_ams%d"`` (AdamW is
    ``adam()`` plus ``train(weight_decay=..., decoupled_wdecay=1)``)."""
    return "ADAM_b1%f_b2%f_eps%g_ams%d" % (beta1, beta2, epsilon, operator.index(ams_grad))


def rms_prop(alpha: float = 0.99, momentum: float = 0.0, epsilon: float = 1e-8,
             centered: int = 0) -> str:
    """CIANNA's ``rms_prop()`` helper: ``"RMSprop_a%f_mom%f_eps%g_cent%d"``."""
    return "RMSprop_a%f_mom%f_eps%g_cent%d" % (alpha, momentum, epsilon,
                                               operator.index(centered))


# part key -> (field, is_int), per kind: the keys of CIANNA's documented strings
_PARTS = {
    "SGD": {"mom": ("momentum", False)},
    "ADAM": {"b1": ("beta1", False), "b2": ("beta2", False), "eps": ("epsilon", False),
             "ams": ("ams_grad", True)},
    "RMSprop": {"a": ("alpha", False), "mom": ("momentum", False), "eps": ("epsilon", False),
                "cent": ("centered", True)},
}
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")


_FIELDS = {"SGD": ("momentum",), "ADAM": ("beta1", "beta2", "epsilon", "ams_grad"),
           "RMSprop": ("alpha", "momentum", "epsilon", "centered")}


@dataclasses.dataclass(frozen=True, repr=False)
class OptimizerConfig:
    """One CIANNA V-1.1 optimizer and its parameters (defaults: CIANNA's).

    ``kind`` is "SGD", "ADAM" or "RMSprop"; SGD uses ``momentum``; ADAM ``beta1``,
    ``beta2``, ``epsilon``, ``ams_grad``; RMSprop ``alpha``, ``momentum``, ``epsilon``,
    ``centered``.  The other fields keep their defaults and are ignored.  The numbers
    are kept as CIANNA keeps them, float32 values (``momentum=0.9`` holds
    ``float(np.float32(0.9))``), so a config read from a binary file equals the parsed
    string.
    """

    kind: str = "SGD"
    momentum: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    ams_grad: int = 0
    alpha: float = 0.99
    centered: int = 0

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"optimizer kind {self.kind!r}: expected one of {_KINDS}")
        for name in ("momentum", "beta1", "beta2", "epsilon", "alpha"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise TypeError(f"optimizer {name}: expected a number, received {v!r}")
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"optimizer {name}: expected a finite value >= 0, received {v}")
            object.__setattr__(self, name, float(np.float32(v)))
        for name in ("beta1", "beta2"):
            if getattr(self, name) >= 1:
                raise ValueError(f"optimizer {name}: expected a value < 1, received "
                                 f"{getattr(self, name)} (bias correction divides by 1-beta^t)")
        if self.alpha > 1:
            raise ValueError(f"optimizer alpha: expected a value <= 1, received {self.alpha}")
        for name in ("ams_grad", "centered"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"optimizer {name}: expected an int, received {v!r}")
            object.__setattr__(self, name, int(v))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k):g}" for k in _FIELDS[self.kind])
        return f"OptimizerConfig({self.kind!r}, {fields})"

    @property
    def has_velocity(self) -> bool:
        """Whether CIANNA keeps a velocity buffer (SGD/RMSprop with momentum >= 0.01)."""
        return self.kind != "ADAM" and bool(self.momentum >= np.float32(MOMENTUM_THRESHOLD))

    @property
    def buffer_names(self) -> tuple[str, ...]:
        """The optimizer buffers of one layer, in the order of CIANNA's state files."""
        if self.kind == "SGD":
            return ("velocity",) if self.has_velocity else ()
        if self.kind == "ADAM":
            return ("opt_step", "first_mom", "second_mom") + (
                ("max_second_mom",) if self.ams_grad > 0 else ())
        return (("sqrt_avg",) + (("velocity",) if self.has_velocity else ())
                + (("grad_avg",) if self.centered > 0 else ()))

    def to_string(self) -> str:
        """The string CIANNA's helper (``sgd()``, ``adam()``, ``rms_prop()``) gives."""
        if self.kind == "SGD":
            return sgd(self.momentum)
        if self.kind == "ADAM":
            return adam(self.beta1, self.beta2, self.epsilon, self.ams_grad)
        return rms_prop(self.alpha, self.momentum, self.epsilon, self.centered)

    def header_string(self) -> str:
        """The config line of CIANNA's ASCII optimizer-state file: ``%g`` of the float32
        values, no newline (CIANNA writes "\\n" after the ADAM and RMSprop lines but none
        after the SGD one, see the spec)."""
        def g(v):
            return "%g" % v
        if self.kind == "SGD":
            return f"SGD_mom{g(self.momentum)}"
        if self.kind == "ADAM":
            return (f"ADAM_b1{g(self.beta1)}_b2{g(self.beta2)}_eps{g(self.epsilon)}"
                    f"_ams{self.ams_grad}")
        return (f"RMSprop_a{g(self.alpha)}_mom{g(self.momentum)}_eps{g(self.epsilon)}"
                f"_cent{self.centered}")


def parse_optimizer(text: str) -> OptimizerConfig:
    """Parse a CIANNA optimizer string strictly: ``KIND`` then ``_<key><number>`` parts
    (any order, each at most once); missing parts take CIANNA's defaults.

    Accepts ``"SGD"``, ``"ADAM"``, ``"RMSprop"`` alone, the helpers' forms
    (``"ADAM_b10.900000_b20.999000_eps1e-08_ams0"``) and the ``%g`` forms of the state
    files.  Anything else raises ``ValueError`` naming the bad part.
    """
    if not isinstance(text, str):
        raise TypeError(f"optimizer: expected a string, received {type(text).__name__}")
    kind, *parts = text.split("_")
    if kind not in _PARTS:
        raise ValueError(f"optimizer {text!r}: unknown type {kind!r} (expected SGD, ADAM or "
                         "RMSprop, e.g. from sgd(), adam(), rms_prop())")
    keys = _PARTS[kind]
    allowed = ", ".join("_" + k for k in keys)
    pattern = re.compile("(" + "|".join(sorted(keys, key=len, reverse=True)) + ")(.*)")
    values: dict[str, Any] = {}
    for part in parts:
        m = pattern.fullmatch(part)
        if m is None:
            raise ValueError(f"optimizer {text!r}: unknown part {'_' + part!r} ({kind} "
                             f"accepts {allowed})")
        key, raw = m.groups()
        field, is_int = keys[key]
        if field in values:
            raise ValueError(f"optimizer {text!r}: part '_{key}' given twice")
        if not (_INT if is_int else _FLOAT).fullmatch(raw):
            what = "an integer" if is_int else "a number"
            raise ValueError(f"optimizer {text!r}: part {'_' + part!r} needs {what} "
                             f"after '_{key}', received {raw!r}")
        values[field] = int(raw) if is_int else float(raw)
    try:
        return OptimizerConfig(kind, **values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"optimizer {text!r}: {err}") from None


def update_optimizer_config(old: OptimizerConfig, text: str,
                            has_layers: bool) -> OptimizerConfig:
    """CIANNA's ``set_optimizer_param``: the config ``text`` gives (missing parts take
    CIANNA's defaults again, as the original does), under its rules.

    The type cannot change (``ValueError``).  Once layers exist their buffers are
    allocated, so momentum cannot be switched on (from < 0.01 to >= 0.01) and ams_grad /
    centered cannot be switched on or off: such a change is refused with a
    ``UserWarning`` and the old value kept, the other fields taking their new values.
    (The original compares RMSprop's new momentum with ``centered``, and SGD's with a
    value it has just reset to 0; here both compare the right fields.)
    """
    new = parse_optimizer(text)
    if new.kind != old.kind:
        raise ValueError(f"Cannot change optimizer type after init ({old.kind} -> {new.kind})")
    if not has_layers:
        return new
    keep = {}
    if new.has_velocity and not old.has_velocity:
        keep["momentum"] = old.momentum
    if new.kind == "ADAM" and (new.ams_grad > 0) != (old.ams_grad > 0):
        keep["ams_grad"] = old.ams_grad
    if new.kind == "RMSprop" and (new.centered > 0) != (old.centered > 0):
        keep["centered"] = old.centered
    for name, value in keep.items():
        warnings.warn(f"{new.kind} {name} cannot be switched after some layers have been "
                      f"initialized: keeping {name}={value}", UserWarning, stacklevel=2)
    return dataclasses.replace(new, **keep)
