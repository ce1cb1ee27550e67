"""The logical packed N:M container (SPEC S3.1-S3.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Packed:
    """A tensor whose blocks of ``m`` entries along ``axis`` keep at most ``n``.

    Attributes
    ----------
    values : array, shape ``(*lead, G * n)``
        Kept entries, ascending index order within each block, same dtype as the dense
        weights.  ``lead`` is ``shape`` without ``axis``, in order; ``G = shape[axis] // m``.
    indices : array of uint8, shape ``(*lead, G * n)``
        Position of each value inside its block, in ``[0, m)``, strictly increasing
        within a block.  Blocks with fewer than ``n`` kept entries are padded with value 0
        at the smallest unused indices (SPEC S3.2).
    n, m : int
        The pattern.
    shape : tuple of int
        Dense (logical) shape, in the caller's axis order.
    axis : int
        Non-negative index of the block axis in ``shape``.

    Notes
    -----
    Construction checks nothing; every public function taking a `Packed` validates it when
    it enters (SPEC S3.10, `spikenm.validation.packed`) and remembers the verdict while the
    index array lives unchanged: NumPy indices are made read-only then, torch tensors are
    re-checked after an in-place change (their version counter), JAX arrays are immutable.
    """

    values: Any
    indices: Any
    n: int
    m: int
    shape: tuple[int, ...]
    axis: int

    @property
    def dtype(self) -> Any:
        return self.values.dtype

    @property
    def density(self) -> float:
        """Fraction of dense entries stored (``n / m``)."""
        return self.n / self.m

    def __repr__(self) -> str:
        return (
            f"Packed(n={self.n}, m={self.m}, shape={self.shape}, axis={self.axis}, "
            f"dtype={self.values.dtype}, values={type(self.values).__module__}."
            f"{type(self.values).__qualname__})"
        )
