"""The backend protocol: what an array framework must provide to run the spikenm core.

`spikenm.api` validates every argument, moves the block axis last and then calls one
of these methods.  A backend therefore never re-validates; it may assume:

* the block axis is the last axis and its length ``K`` is a multiple of ``m``;
* ``1 <= n <= m``, ``m >= 2``, temperatures/scales are finite Python floats ``> 0``;
* floating inputs of the math functions are float32 or float64 and share one dtype;
* paired arrays have matching shapes.

A third-party backend is any object with these attributes (a module works).  Run
``python -m spikenm.conformance --backend package.module:OBJECT`` to validate it.  To
have `spikenm.api` dispatch its arrays to it, give it the optional type test
``owns(x) -> bool`` and register it (`spikenm.registry.register`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

Array = Any
"""An array of the backend's own type (``np.ndarray``, ``torch.Tensor``, ``jax.Array``...)."""


@runtime_checkable
class Backend(Protocol):
    """Operations a backend provides.  All block operations work on the last axis."""

    name: str
    differentiable: bool
    """False for forward-only backends: the conformance suite then reports the gradient
    clauses as not applicable instead of running the ``*_vjp`` methods."""

    # -- array plumbing ---------------------------------------------------------------
    def dtype_name(self, x: Array) -> str:
        """Canonical dtype name: 'float16', 'bfloat16', 'float32', 'float64', 'int8',
        'uint8', 'int16', 'int32', 'int64', 'bool', ..."""

    def moveaxis(self, x: Array, source: int, destination: int) -> Array: ...

    def all_finite(self, x: Array) -> bool | None:
        """True/False for concrete arrays, None when values are not available (tracing)."""

    def to_numpy(self, x: Array) -> np.ndarray:
        """A NumPy copy of ``x``.  bfloat16 arrives as its uint16 bit pattern."""

    def from_numpy(self, a: np.ndarray, like: Array | None = None) -> Array:
        """``a`` as an array of this backend, on the device of ``like`` (default device
        when ``like`` is None).  Used by the conformance suite to build inputs."""

    # -- random -----------------------------------------------------------------------
    def gumbel_like(self, x: Array, seed: int) -> Array:
        """Standard Gumbel noise ``-log(-log u)``, ``u ~ U(0, 1)`` open, shape/dtype of x."""

    # -- sampler (SPEC S1) ----------------------------------------------------------
    def topn_mask(self, scores: Array, n: int, m: int) -> Array: ...

    def relaxed_topn(self, scores: Array, n: int, m: int, temperature: float) -> Array: ...

    def sample_mask(
        self, logits: Array, noise: Array, n: int, m: int,
        temperature: float, scale: float, hard: bool,
    ) -> Array: ...

    def block_probs(self, logits: Array, m: int, scale: float) -> Array: ...

    # -- EID (SPEC S2) --------------------------------------------------------------
    def eligibility_credit(self, x: Array, d: Array, weight: Array, decay: float,
                           signed: bool = False) -> Array:
        """S2.3 credit; ``signed=True`` sums over time before the absolute value (S2.9)."""

    def credit_scores(self, credits: Array, m: int, gated: bool) -> Array:
        """Scale-free block scores ``C / mean_block(C)``, optionally gated (S2.10)."""

    def eid_targets(self, credits: Array, m: int, temperature: float) -> Array: ...

    def eid_loss(self, logits: Array, targets: Array, m: int, scale: float) -> Array: ...

    # -- packed format (SPEC S3) ----------------------------------------------------
    def block_nnz(self, x: Array, m: int) -> Array:
        """Number of non-zeros in each block: shape ``(..., K // m)``, an integer dtype."""

    def pack(self, w: Array, keep: Array, n: int, m: int) -> tuple[Array, Array]:
        """``(values, indices)`` of the entries where ``keep`` is non-zero (at most n per
        block, checked by the caller), padded as SPEC S3.2 says."""

    def unpack(self, values: Array, indices: Array, n: int, m: int) -> Array: ...

    def spmm(self, values: Array, indices: Array, n: int, m: int, x: Array) -> Array:
        """``unpack(values, indices) @ x`` for 2-D packed ``(O, K)`` and ``x`` ``(K,)`` or
        ``(K, P)``."""

    # -- vector-Jacobian products (for gradient checks) ------------------------------
    def sample_mask_vjp(
        self, logits: Array, noise: Array, n: int, m: int,
        temperature: float, scale: float, hard: bool, cotangent: Array,
    ) -> Array: ...

    def relaxed_topn_vjp(
        self, scores: Array, n: int, m: int, temperature: float, cotangent: Array,
    ) -> Array: ...

    def eid_loss_vjp(
        self, logits: Array, targets: Array, m: int, scale: float, cotangent: Array,
    ) -> Array: ...


REQUIRED = tuple(
    name for name in Backend.__dict__
    if not name.startswith("_") and callable(Backend.__dict__[name])
) + ("name",)
OPTIONAL = ("differentiable", "owns", "stop_gradient", "spmm_bool_input", "pack_checks_blocks")
"""Optional members: ``differentiable`` (default True), ``owns(x)``, the type test
`spikenm.registry.owner_of` asks (``isinstance``, so subclasses count), and
``stop_gradient(x)`` (default: ``x`` itself), which a differentiable backend gives so that
targets built from logits (S2.11 ``gated``) receive no gradient, and ``spmm_bool_input``
(default False): True when ``spmm`` takes bool spikes for ``x`` (S3.6), and
``pack_checks_blocks`` (default False): True when ``pack`` itself raises ``ValueError`` on
a block keeping more than ``n`` (S3.3), so `spikenm.api.pack` skips its own count pass
(it still names the block, in the caller's axes, after such an error)."""


def missing_members(backend: object) -> list[str]:
    """Names from the protocol that ``backend`` lacks (empty when it is complete)."""
    return [name for name in REQUIRED if not hasattr(backend, name)]
