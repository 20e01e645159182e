"""File input/output for cianna_jax (CIANNA model file formats)."""

from .cianna_format import (
    STRING_FIELD_SIZE,
    CiannaFile,
    CiannaFormatError,
    ConvRecord,
    DenseRecord,
    LRNRecord,
    NormRecord,
    PoolRecord,
    Record,
    YoloRecord,
    output_shape,
    param_shapes,
    propagate_shapes,
    read_network,
    write_network,
)

__all__ = [
    "STRING_FIELD_SIZE",
    "CiannaFile",
    "CiannaFormatError",
    "ConvRecord",
    "DenseRecord",
    "LRNRecord",
    "NormRecord",
    "PoolRecord",
    "Record",
    "YoloRecord",
    "output_shape",
    "param_shapes",
    "propagate_shapes",
    "read_network",
    "write_network",
]
