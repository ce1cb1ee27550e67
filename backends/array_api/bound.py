"""A backend object bound to one array-API namespace (`make_backend`).

The module `spikenm.backends.array_api` is itself a backend that reads the namespace
from the arrays it is given; the only member that cannot is ``from_numpy`` without a
``like`` array, where the module uses ``array_api_strict``.  `make_backend(xp)` returns
the same backend with ``from_numpy`` building ``xp`` arrays instead, e.g. to run the
conformance suite on CuPy or Dask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import arrays, eid, gradients, packing, random, sampler


class NamespaceBackend:
    """The array-API backend with ``from_numpy(a)`` (no ``like``) building ``xp`` arrays.

    Every other member is the module-level function, which takes the namespace from its
    arrays.

    Parameters
    ----------
    xp : array-API namespace
        E.g. ``array_api_strict``, ``cupy``, ``array_api_compat.dask.array``.

    Examples
    --------
    >>> import array_api_strict as xp
    >>> import numpy as np
    >>> backend = make_backend(xp)
    >>> backend.topn_mask(backend.from_numpy(np.array([0.3, 0.1, 0.3, 0.2])), 2, 4)
    Array([1., 0., 1., 0.], dtype=array_api_strict.float64)
    """

    name = "array_api"
    differentiable = False

    dtype_name = staticmethod(arrays.dtype_name)
    moveaxis = staticmethod(arrays.moveaxis)
    all_finite = staticmethod(arrays.all_finite)
    to_numpy = staticmethod(arrays.to_numpy)
    gumbel_like = staticmethod(random.gumbel_like)
    topn_mask = staticmethod(sampler.topn_mask)
    relaxed_topn = staticmethod(sampler.relaxed_topn)
    sample_mask = staticmethod(sampler.sample_mask)
    block_probs = staticmethod(sampler.block_probs)
    eligibility_credit = staticmethod(eid.eligibility_credit)
    credit_scores = staticmethod(eid.credit_scores)
    eid_targets = staticmethod(eid.eid_targets)
    eid_loss = staticmethod(eid.eid_loss)
    block_nnz = staticmethod(packing.block_nnz)
    pack = staticmethod(packing.pack)
    unpack = staticmethod(packing.unpack)
    spmm = staticmethod(packing.spmm)
    sample_mask_vjp = staticmethod(gradients.sample_mask_vjp)
    relaxed_topn_vjp = staticmethod(gradients.relaxed_topn_vjp)
    eid_loss_vjp = staticmethod(gradients.eid_loss_vjp)

    def __init__(self, xp: Any) -> None:
        self.xp = xp

    def from_numpy(self, a: np.ndarray, like: Any = None) -> Any:
        """``a`` on ``like``'s namespace and device, or as an ``xp`` array when None."""
        return arrays.from_numpy(a, like=like, xp=self.xp)

    def __repr__(self) -> str:
        return f"NamespaceBackend({getattr(self.xp, '__name__', self.xp)!r})"


def make_backend(xp: Any) -> NamespaceBackend:
    """The array-API backend bound to the namespace ``xp`` (see `NamespaceBackend`).

    Raises
    ------
    TypeError
        When ``xp`` lacks ``asarray`` (not an array-API namespace).

    Examples
    --------
    >>> import array_api_strict
    >>> make_backend(array_api_strict).name
    'array_api'
    """
    if not callable(getattr(xp, "asarray", None)):
        raise TypeError(
            f"make_backend needs an array-API namespace (a module with asarray, e.g. "
            f"array_api_strict or cupy), got {xp!r}"
        )
    return NamespaceBackend(xp)
