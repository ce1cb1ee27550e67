"""The packed N:M format on torch tensors (SPEC S3.1-S3.3, S3.6), for every real dtype.

Only elementwise ops, cumulative sums, ``scatter`` and ``gather`` are used (no sort, no
top-k).  `pack` and `unpack` move the values as a signed-integer view of their bits, so
every real dtype (float16, bfloat16, unsigned integers that torch computes little with,
bool) comes back bit for bit, ``-0.0`` and NaN payloads included, on every device.
"""

from __future__ import annotations

import torch

from .blocks import from_blocks, to_blocks

__all__ = ["block_nnz", "pack", "unpack", "spmm"]

_GATHER_BUDGET = 1 << 22
"""Largest number of gathered ``x`` entries `spmm` holds at once."""

_FLOAT_ACCUMULATOR = {torch.float16: torch.float32, torch.bfloat16: torch.float32}
"""`spmm` computes 16-bit floats in float32; other floats in their own dtype."""


def _accumulator(dtype: torch.dtype) -> torch.dtype:
    """dtype `spmm` multiplies and sums in for values of ``dtype``."""
    if dtype.is_floating_point:
        return _FLOAT_ACCUMULATOR.get(dtype, dtype)
    return torch.int64


_BITS = {1: torch.int8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
"""Signed integer dtype with the item size of a value dtype (for moving bits)."""


def _bits(x: torch.Tensor) -> torch.Tensor:
    """``x`` viewed as signed integers of its item size (no copy)."""
    return x.view(_BITS[x.element_size()])


def block_nnz(x: torch.Tensor, m: int) -> torch.Tensor:
    """Number of non-zeros in each block of ``m`` along the last axis.

    Returns an int64 tensor of shape ``(..., K // m)``.

    Examples
    --------
    >>> block_nnz(torch.tensor([0.0, 5.0, 0.0, 7.0, 1.0, 1.0, 1.0, 0.0]), 4)
    tensor([2, 3])
    """
    return torch.sum(to_blocks(x != 0, m), dim=-1)


def _slots(kept: torch.Tensor, n: int) -> torch.Tensor:
    """Output slot of every block entry, ``n`` for entries that are not stored.

    A block stores its kept entries plus its ``n - nnz`` lowest-index unkept ones (the
    padding of SPEC S3.2); the ``n`` stored entries take slots ``0..n-1`` in ascending
    index order.
    """
    nnz = torch.sum(kept, dim=-1, keepdim=True)
    unkept_upto = torch.cumsum(~kept, dim=-1)
    stored = kept | (unkept_upto <= n - nnz)
    slot = torch.cumsum(stored, dim=-1) - 1
    return torch.where(stored, slot, n)


def pack(
    w: torch.Tensor, keep: torch.Tensor, n: int, m: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)`` of the entries of ``w`` where ``keep != 0`` (SPEC S3.1-S3.3).

    In every block of ``m`` the ``nnz <= n`` kept entries (checked by the caller) are
    stored with their values, and the block is padded with value 0 at its ``n - nnz``
    smallest unused indices; the ``n`` indices of a block are ascending.  ``values``
    has ``w``'s dtype, ``indices`` is uint8, both of shape ``(..., G * n)``.

    Entries are scattered into ``n + 1`` slots per block; slot ``n`` collects the
    entries that are not stored and is dropped.

    Examples
    --------
    >>> w = torch.tensor([[0.0, 5.0, 0.0, 7.0, 0.0, 0.0, 3.0, 0.0]])
    >>> pack(w, w, 2, 4)
    (tensor([[5., 7., 0., 3.]]), tensor([[1, 3, 0, 2]], dtype=torch.uint8))
    """
    kept = to_blocks(keep != 0, m)
    slot = _slots(kept, n)
    position = torch.arange(m, device=w.device).expand(kept.shape)
    lead = kept.shape[:-1]
    indices = torch.zeros((*lead, n + 1), dtype=torch.int64, device=w.device)
    indices = indices.scatter(-1, slot, position)[..., :n]
    source = to_blocks(_bits(w), m).masked_fill(~kept, 0)
    values = torch.gather(source, -1, indices).view(w.dtype)
    return from_blocks(values), from_blocks(indices.to(torch.uint8))


def unpack(values: torch.Tensor, indices: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Dense ``(..., G * m)`` tensor with ``values`` scattered to their ``indices`` in
    zeros (SPEC S3.1): ``dense[..., g*m + indices[..., g*n + j]] = values[..., g*n + j]``;
    dtype and device of ``values``, bits of the values unchanged.

    Examples
    --------
    >>> unpack(torch.tensor([5.0, 7.0]), torch.tensor([1, 3], dtype=torch.uint8), 2, 4)
    tensor([0., 5., 0., 7.])
    """
    vals = to_blocks(_bits(values), n)
    idx = to_blocks(indices, n).to(torch.int64)
    dense = torch.zeros((*vals.shape[:-1], m), dtype=vals.dtype, device=values.device)
    return from_blocks(dense.scatter(-1, idx, vals).view(values.dtype))


def spmm(
    values: torch.Tensor, indices: torch.Tensor, n: int, m: int, x: torch.Tensor,
) -> torch.Tensor:
    """``unpack(values, indices) @ x`` for a packed ``(O, K)`` matrix, without the dense
    matrix (SPEC S3.6).

    ``y[o, p] = sum_s values[o, s] * x[col[o, s], p]`` with ``col[o, g*n + j] =
    g*m + indices[o, g*n + j]``: only the stored entries are multiplied.  Rows of the
    output are processed in chunks so that at most about ``2**22`` gathered entries of
    ``x`` are held at once.  Products and sums use torch's elementwise ops, so every
    dtype works: float16 and bfloat16 are computed in float32, integers and bool in
    int64, and the result is cast back to the dtype of ``values`` (integers wrap modulo
    ``2**bits``, like an integer matmul).

    Parameters
    ----------
    values, indices : torch.Tensor ``(O, G * n)``
    x : torch.Tensor ``(K,)`` or ``(K, P)``

    Returns
    -------
    torch.Tensor ``(O,)`` or ``(O, P)``, dtype of ``values``

    Examples
    --------
    >>> spmm(torch.tensor([[5.0, 7.0]]), torch.tensor([[1, 3]], dtype=torch.uint8), 2, 4,
    ...      torch.tensor([1.0, 1.0, 0.0, 1.0]))
    tensor([12.])
    """
    acc = _accumulator(values.dtype)
    rows, stored = values.shape
    base = torch.arange(stored, device=values.device) // n * m
    col = base + indices.to(torch.int64)
    weights = values.to(acc)
    columns = x.reshape(x.shape[0], -1).to(acc)
    width = columns.shape[1]
    chunk = max(1, _GATHER_BUDGET // max(1, stored * width))
    parts = []
    for start in range(0, rows, chunk):
        gathered = columns[col[start : start + chunk]]
        products = weights[start : start + chunk, :, None] * gathered
        parts.append(torch.sum(products, dim=1).to(values.dtype))
    out = torch.cat(parts, dim=0) if parts else values.new_zeros((0, width))
    return out.reshape(rows) if x.ndim == 1 else out
