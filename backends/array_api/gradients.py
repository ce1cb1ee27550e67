"""The ``*_vjp`` members of the array-API backend: none, the backend is forward-only.

The standard has no automatic differentiation.  The backend declares
``differentiable = False``, so the conformance suite reports the gradient clauses
(S1.4-S1.5, S2.7) as not applicable instead of calling these; a direct call raises.
"""

from __future__ import annotations

from typing import Any

from .namespace import FORWARD_ONLY


def sample_mask_vjp(
    logits: Any, noise: Any, n: int, m: int,
    temperature: float, scale: float, hard: bool, cotangent: Any,
) -> Any:
    """Not available (SPEC S1.5 needs autodiff or a hand-written backward).

    Raises
    ------
    NotImplementedError
        Always.

    Examples
    --------
    >>> sample_mask_vjp(None, None, 2, 4, 1.0, 1.0, True, None)
    Traceback (most recent call last):
    ...
    NotImplementedError: the array-API backend is forward-only; use the torch or jax backend for gradients
    """
    raise NotImplementedError(FORWARD_ONLY)


def relaxed_topn_vjp(
    scores: Any, n: int, m: int, temperature: float, cotangent: Any,
) -> Any:
    """Not available (SPEC S1.5).

    Raises
    ------
    NotImplementedError
        Always.

    Examples
    --------
    >>> relaxed_topn_vjp(None, 2, 4, 1.0, None)
    Traceback (most recent call last):
    ...
    NotImplementedError: the array-API backend is forward-only; use the torch or jax backend for gradients
    """
    raise NotImplementedError(FORWARD_ONLY)


def eid_loss_vjp(
    logits: Any, targets: Any, m: int, scale: float, cotangent: Any,
) -> Any:
    """Not available (SPEC S2.7).

    Raises
    ------
    NotImplementedError
        Always.

    Examples
    --------
    >>> eid_loss_vjp(None, None, 4, 1.0, None)
    Traceback (most recent call last):
    ...
    NotImplementedError: the array-API backend is forward-only; use the torch or jax backend for gradients
    """
    raise NotImplementedError(FORWARD_ONLY)
