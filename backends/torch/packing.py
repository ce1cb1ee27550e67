"""The packed N:M format on torch tensors (SPEC S3.1-S3.3, S3.6), for every real dtype.

On CPU tensors `block_nnz`, `pack` and `unpack` run the reference backend's fused Numba
kernels on the tensors' memory (zero-copy NumPy views of the bits, results wrapped with
``torch.from_numpy``): one pass per block instead of the dozen tensor ops of the device
path, and the same bits.  On other devices only elementwise ops, cumulative sums,
``scatter`` and ``gather`` are used (no sort, no top-k), so the tensors stay on their
device.  Either way `pack` and `unpack` move the values as an integer view of their
bits, so every real dtype (float16, bfloat16, unsigned integers that torch computes
little with, bool) comes back bit for bit, ``-0.0`` and NaN payloads included.
"""

from __future__ import annotations

import numpy as np
import torch

from spikenm.reference import packing as host

from .blocks import from_blocks, to_blocks
from .spmm_host import runs_on_host, spmm_on_host

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


def _on_host(*tensors: torch.Tensor) -> bool:
    """Whether every tensor is a plain strided CPU tensor with memory (then the reference
    kernels run on it); not while ``torch.compile`` traces, nor for the wrapped tensors
    of ``torch.func`` transforms or tensor subclasses such as fake tensors."""
    if torch.compiler.is_compiling():
        return False
    return all(
        t.device.type == "cpu" and t.layout == torch.strided
        and type(t) in (torch.Tensor, torch.nn.Parameter)
        and not torch._C._functorch.is_functorch_wrapped_tensor(t)  # noqa: SLF001
        for t in tensors
    )


def _host_bits(x: torch.Tensor) -> np.ndarray:
    """Flat unsigned NumPy view of the bits of a CPU tensor (a copy only when ``x`` is
    not contiguous)."""
    flat = _bits(x.detach().contiguous()).reshape(-1).numpy()
    return flat.view(f"u{flat.dtype.itemsize}")


def _magnitude(dtype: torch.dtype) -> np.generic:
    """`spikenm.reference.packing.magnitude` of a torch dtype (S3.3 ``!= 0`` on bits)."""
    size = torch.empty((), dtype=dtype).element_size()
    kind = "f" if dtype.is_floating_point else "u"
    return host.magnitude(np.dtype(f"{kind}{size}"))


def _from_host(bits: np.ndarray, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """Tensor of ``dtype`` and ``shape`` over the unsigned NumPy ``bits`` (no copy)."""
    signed = bits.view(f"i{bits.dtype.itemsize}")
    return torch.from_numpy(signed).view(dtype).reshape(shape)


def block_nnz(x: torch.Tensor, m: int) -> torch.Tensor:
    """Number of non-zeros in each block of ``m`` along the last axis.

    Returns an int64 tensor of shape ``(..., K // m)``; on CPU computed by the reference
    kernel on the tensor's bits.

    Examples
    --------
    >>> block_nnz(torch.tensor([0.0, 5.0, 0.0, 7.0, 1.0, 1.0, 1.0, 0.0]), 4)
    tensor([2, 3])
    """
    if _on_host(x):
        counts = host.nnz_bits(_host_bits(x), _magnitude(x.dtype), m)
        return torch.from_numpy(counts).reshape(*x.shape[:-1], x.shape[-1] // m)
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

    On CPU this is the reference backend's fused kernel (`spikenm.reference.packing.
    pack_bits`), which also raises ``ValueError`` on a block keeping more than ``n``.
    On other devices entries are scattered into ``n + 1`` slots per block; slot ``n``
    collects the entries that are not stored and is dropped.

    Examples
    --------
    >>> w = torch.tensor([[0.0, 5.0, 0.0, 7.0, 0.0, 0.0, 3.0, 0.0]])
    >>> pack(w, w, 2, 4)
    (tensor([[5., 7., 0., 3.]]), tensor([[1, 3, 0, 2]], dtype=torch.uint8))
    """
    if _on_host(w, keep):
        return _pack_on_host(w, keep, n, m)
    return _pack_on_device(w, keep, n, m)


def _pack_on_device(
    w: torch.Tensor, keep: torch.Tensor, n: int, m: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`pack` by tensor ops (any device, traceable by ``torch.compile``)."""
    kept = to_blocks(keep != 0, m)
    slot = _slots(kept, n)
    position = torch.arange(m, device=w.device).expand(kept.shape)
    lead = kept.shape[:-1]
    indices = torch.zeros((*lead, n + 1), dtype=torch.int64, device=w.device)
    indices = indices.scatter(-1, slot, position)[..., :n]
    source = to_blocks(_bits(w), m).masked_fill(~kept, 0)
    values = torch.gather(source, -1, indices).view(w.dtype)
    return from_blocks(values), from_blocks(indices.to(torch.uint8))


def _pack_on_host(
    w: torch.Tensor, keep: torch.Tensor, n: int, m: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`pack` of CPU tensors by the reference kernel."""
    bits = _host_bits(w)
    keep_bits = bits if keep is w else _host_bits(keep)
    values, indices, bad = host.pack_bits(bits, keep_bits, _magnitude(keep.dtype), n, m)
    k = w.shape[-1]
    if bad >= 0:
        raise host.pack_error(bad, k, n, m)
    shape = (*w.shape[:-1], k // m * n)
    return _from_host(values, w.dtype, shape), torch.from_numpy(indices).reshape(shape)


def unpack(values: torch.Tensor, indices: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Dense ``(..., G * m)`` tensor with ``values`` scattered to their ``indices`` in
    zeros (SPEC S3.1): ``dense[..., g*m + indices[..., g*n + j]] = values[..., g*n + j]``;
    dtype and device of ``values``, bits of the values unchanged.

    Examples
    --------
    >>> unpack(torch.tensor([5.0, 7.0]), torch.tensor([1, 3], dtype=torch.uint8), 2, 4)
    tensor([0., 5., 0., 7.])

    On CPU the reference kernel writes each block once and raises ``ValueError`` naming
    the first index ``>= m``.
    """
    if _on_host(values, indices):
        width = values.shape[-1]
        idx = indices.detach().contiguous().reshape(-1).numpy()
        dense, bad = host.unpack_bits(_host_bits(values), idx, n, m)
        if bad >= 0:
            raise host.bad_index_error(idx.reshape(-1, width), bad, n, m)
        return _from_host(dense, values.dtype, (*values.shape[:-1], width // n * m))
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
    g*m + indices[o, g*n + j]``.  float32/float64 CPU tensors run the reference kernels
    (`spikenm.backends.torch.spmm_host`: the event-driven kernel for 0/1 ``x``, SPEC
    S3.6).  Elsewhere only the stored entries are multiplied.  Rows of the
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
    if _on_host(values, indices, x) and runs_on_host(values, indices, x):
        return spmm_on_host(values, indices, n, m, x)
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
