"""The processor XLA compiles for on this host: its model and widest vector unit.

XLA's CPU backend compiles for the host's own instruction set, and the rules that choose
between two forms of a layer on CPU were measured on machines with AVX-512 and with AVX2
only, which did not agree everywhere (:func:`cianna_jax.layers.winograd.pays`: on AVX2,
Winograd also paid on larger maps).  :func:`vector_unit` tells them which kind this is.  Read from Linux's ``/proc/cpuinfo`` once per process; elsewhere the unit is
unknown (None) and the rules keep their AVX-512 measurements.  Nothing is set.
"""

from __future__ import annotations

import functools
import platform

__all__ = ["VECTOR_ISAS", "BF16_UNITS", "parse_cpuinfo", "cpu_info", "vector_unit"]

#: (flag in ``/proc/cpuinfo``, name) of vector instruction sets, widest first
VECTOR_ISAS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"),
               ("asimd", "NEON"))


#: (flag in ``/proc/cpuinfo``, name) of bfloat16 arithmetic in hardware (x86's AVX-512
#: and AMX tile extensions, Arm's BF16): what CIANNA's BF16C_FP32A mode could run on.
#: XLA's CPU convolutions do not use them (measured on an Intel Xeon with AMX:
#: benchmarks/README.md, fifty-sixth session)
BF16_UNITS = (("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX-BF16"), ("bf16", "BF16"))


def parse_cpuinfo(text: str) -> dict:
    """``{"model", "vector_isa", "bf16"}`` from the text of Linux's ``/proc/cpuinfo``:
    the first processor's model name, its widest vector unit (a name of
    :data:`VECTOR_ISAS`), None for what the text does not say, and the names of its
    bfloat16 units (:data:`BF16_UNITS`, a tuple, empty without any)."""
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and model is None:
            model = value.strip() or None
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    isa = next((name for flag, name in VECTOR_ISAS if flag in flags), None)
    bf16 = tuple(name for flag, name in BF16_UNITS if flag in flags)
    return dict(model=model, vector_isa=isa, bf16=bf16)


def cpu_info() -> dict:
    """This machine's processor model, widest vector unit and bfloat16 units
    (:func:`parse_cpuinfo` of ``/proc/cpuinfo``; elsewhere the platform's processor name
    and no units)."""
    return dict(_host())


@functools.cache
def _host() -> tuple:
    try:
        with open("/proc/cpuinfo") as f:
            info = parse_cpuinfo(f.read())
    except OSError:
        info = parse_cpuinfo("")  # nothing known
    if info["model"] is None:
        info["model"] = platform.processor() or None
    return tuple(info.items())


def vector_unit() -> str | None:
    """The widest vector unit of this host's processor ("AVX-512", "AVX2", ...), None
    where unknown."""
    return cpu_info()["vector_isa"]
