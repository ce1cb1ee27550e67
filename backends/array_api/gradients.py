"""The ``*_vjp`` members of the array-API backend: none, the backend is forward-only.

The standard has no automatic differentiation.  The backend declares
``differentiable = False``, so the conformance suite reports the gradient clauses
(S1.4-S1.5, S2.7) as not applicable instead of calling these; a direct call raises.

Examples
--------
>>> sample_mask_vjp(None, None, 2, 4, 1.0, 1.0, True, None)
Traceback (most recent call last):
...
NotImplementedError: the array-API backend is forward-only; use the torch or jax backend for gradients
"""

from __future__ import annotations

from typing import Any

from .namespace import FORWARD_ONLY


def _forward_only(*args: Any, **kwargs: Any) -> Any:
    """Not available: SPEC S1.5 and S2.7 need autodiff or a hand-written backward.

    Raises
    ------
    NotImplementedError
        Always, with `FORWARD_ONLY` as the message.
    """
    raise NotImplementedError(FORWARD_ONLY)


sample_mask_vjp = _forward_only
relaxed_topn_vjp = _forward_only
eid_loss_vjp = _forward_only
