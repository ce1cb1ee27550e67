"""Block layout of layer weights (SPEC S0.2).

Blocks run along a layer's input (reduction) dimension:

* Linear weight ``(out, in)``: already ``(..., K)`` with ``K = in``.
* ConvNd weight ``(out, in, *kernel)``: channels-last ``(out, *kernel, in)``.

``to_block_layout`` and ``from_block_layout`` are exact inverses and return views where
the framework allows it.
"""

from __future__ import annotations

from typing import Any

from .dispatch import backend_for
from . import validation as check


def to_block_layout(weight: Any) -> Any:
    """Move the input axis of a Linear/ConvNd weight last.

    Parameters
    ----------
    weight : array, shape ``(out, in)`` or ``(out, in, *kernel)``

    Returns
    -------
    array, shape ``(out, in)`` or ``(out, *kernel, in)``

    Examples
    --------
    >>> import numpy as np
    >>> to_block_layout(np.zeros((8, 16, 3, 3))).shape
    (8, 3, 3, 16)
    """
    check.present(weight=weight)
    be = backend_for(weight=weight)
    if len(weight.shape) < 2:
        raise ValueError(
            f"weight must have at least 2 axes (out, in, *kernel), got shape {tuple(weight.shape)}"
        )
    return weight if len(weight.shape) == 2 else be.moveaxis(weight, 1, -1)


def from_block_layout(blocks: Any) -> Any:
    """Inverse of `to_block_layout`: ``(out, *kernel, in)`` back to ``(out, in, *kernel)``.

    Examples
    --------
    >>> import numpy as np
    >>> from_block_layout(np.zeros((8, 3, 3, 16))).shape
    (8, 16, 3, 3)
    """
    check.present(blocks=blocks)
    be = backend_for(blocks=blocks)
    if len(blocks.shape) < 2:
        raise ValueError(
            f"blocks must have at least 2 axes (out, *kernel, in), got shape {tuple(blocks.shape)}"
        )
    return blocks if len(blocks.shape) == 2 else be.moveaxis(blocks, -1, 1)


def layer_fits(weight: Any, m: int, *, name: str = "weight") -> bool:
    """True when the input dimension of a Linear/ConvNd weight is a multiple of ``m``.

    Use it to decide explicitly which layers to skip; the api itself never skips.
    ``weight`` must be an array of a known framework (``TypeError`` otherwise, S0.5).
    """
    check.present(**{name: weight})
    backend_for(**{name: weight})
    m = check.block_size(m)
    if len(weight.shape) < 2:
        raise ValueError(f"{name} must have at least 2 axes, got shape {tuple(weight.shape)}")
    return weight.shape[1] % m == 0
