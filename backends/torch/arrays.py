"""Array plumbing of the PyTorch backend: dtype names, axes, finiteness, host transfer."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["dtype_name", "moveaxis", "all_finite", "to_numpy", "from_numpy", "as_cotangent"]

_BFLOAT16_NAME = "bfloat16"


def dtype_name(x: torch.Tensor) -> str:
    """Canonical dtype name of ``x``: ``'float32'``, ``'bfloat16'``, ``'int8'``, ``'bool'``...

    The name is torch's own without the ``torch.`` prefix; torch prints aliases
    (``torch.half``, ``torch.long``) under their canonical names already.

    Examples
    --------
    >>> dtype_name(torch.zeros(2, dtype=torch.half))
    'float16'
    """
    return str(x.dtype).removeprefix("torch.")


def moveaxis(x: torch.Tensor, source: int, destination: int) -> torch.Tensor:
    """``x`` with axis ``source`` moved to position ``destination`` (a view).

    Examples
    --------
    >>> moveaxis(torch.zeros(2, 3, 4), 0, 2).shape
    torch.Size([3, 4, 2])
    """
    return torch.movedim(x, source, destination)


def _values_unavailable(x: torch.Tensor) -> bool:
    """True when ``x`` carries no concrete values (fake/meta tensors, vmap batches)."""
    if x.device.type == "meta":
        return True
    from torch._subclasses.fake_tensor import is_fake

    if is_fake(x):
        return True
    return bool(torch._C._functorch.is_batchedtensor(x))


def all_finite(x: torch.Tensor) -> bool | None:
    """Whether every entry of ``x`` is finite, as a Python bool.

    Integer and bool tensors are always finite.  Returns ``None`` when the values are
    not available (fake or meta tensors while tracing, tensors batched by ``vmap``), so
    that the caller skips value checks instead of failing inside a transform.  Under
    ``torch.compile`` the conversion to a Python bool is a graph break: the check then
    runs eagerly on concrete values.

    Examples
    --------
    >>> all_finite(torch.tensor([1.0, float("nan")]))
    False
    """
    if not (x.dtype.is_floating_point or x.dtype.is_complex):
        return True
    if _values_unavailable(x):
        return None
    return bool(torch.isfinite(x).all())


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """A host NumPy copy of ``x`` (detached); bfloat16 comes back as its uint16 bits.

    NumPy has no bfloat16, so its bit pattern is viewed as int16 in torch and then as
    uint16 in NumPy: ``to_numpy(x).view(ml_dtypes.bfloat16)`` recovers the values.

    Examples
    --------
    >>> to_numpy(torch.tensor([1.0], dtype=torch.bfloat16))
    array([16256], dtype=uint16)
    """
    t = x.detach().resolve_conj().resolve_neg().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16).copy()
    return t.numpy().copy()


def from_numpy(a: np.ndarray, like: torch.Tensor | None = None) -> torch.Tensor:
    """``a`` as a torch tensor (a copy), on the device of ``like`` when given.

    An ``ml_dtypes.bfloat16`` array becomes a ``torch.bfloat16`` tensor with the same
    bits.

    Examples
    --------
    >>> from_numpy(np.arange(3, dtype=np.int8))
    tensor([0, 1, 2], dtype=torch.int8)
    """
    arr = np.array(a, copy=True, order="C")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    device = None if like is None else like.device
    if arr.dtype.name == _BFLOAT16_NAME:
        bits = torch.from_numpy(arr.view(np.int16))
        return bits.view(torch.bfloat16).to(device=device)
    return torch.from_numpy(arr).to(device=device)


def as_cotangent(cotangent: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    """``cotangent`` as a constant tensor with the dtype and device of ``like``.

    A vector-Jacobian product is taken in the dtype of the function's input, as the
    reference does; Python numbers are accepted for the cotangent of a 0-d loss.

    Examples
    --------
    >>> as_cotangent(2.0, torch.zeros(3, dtype=torch.float64))
    tensor(2., dtype=torch.float64)
    """
    return torch.as_tensor(cotangent, dtype=like.dtype, device=like.device).detach()
