"""Pallas GPU kernels for cianna_jax's hot paths.

Each kernel has a plain ``jax.numpy`` reference in ``cianna_jax`` with the same
maths, used on CPU and in tests.  The YOLO loss kernel is the first planned here.
"""

__all__: list[str] = []
