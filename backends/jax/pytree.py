"""`spikenm.packed.Packed` as a JAX pytree, so a packed weight passes through
``jax.jit``, ``jax.vmap``, ``jax.tree_util`` and optimizer state like any array pair."""

from __future__ import annotations

import jax

from spikenm.packed import Packed

__all__ = ["register_packed"]

DATA_FIELDS = ("values", "indices")
"""Children of the pytree node: the arrays."""

META_FIELDS = ("n", "m", "shape", "axis")
"""Static (hashable) auxiliary data: part of the tree structure, hence of jit's cache key."""


def register_packed() -> None:
    """Register `Packed` with ``jax.tree_util`` (idempotent).

    ``values`` and ``indices`` are the leaves; ``n``, ``m``, ``shape`` and ``axis`` are
    static.  Called when the JAX backend is imported.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> register_packed()
    >>> p = Packed(jnp.ones(2), jnp.array([0, 1], jnp.uint8), 2, 4, (4,), 0)
    >>> len(jax.tree_util.tree_leaves(p))
    2
    """
    try:
        jax.tree_util.register_dataclass(
            Packed, data_fields=list(DATA_FIELDS), meta_fields=list(META_FIELDS)
        )
    except ValueError as exc:
        if "Duplicate" not in str(exc):
            raise
