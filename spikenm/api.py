"""Public, framework-neutral entry points of spikenm.

Every function takes the caller's own arrays (NumPy, PyTorch, JAX, or any array-API
library), validates them (SPEC S0.5; temperatures, scales and values against the dtype's
range, S0.8; a `Packed` wherever one enters, S3.10), runs the backend that owns their type
and returns results of the same type, device and dtype.  Clause ids such as ``S1.2`` refer to
``SPEC.md`` shipped in this package.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import eid_variants
from . import validation as check
from .dispatch import backend_for
from .packed import Packed
from .protocol import Backend
from .layout import from_block_layout, layer_fits, to_block_layout

__all__ = [
    "sample_mask", "gumbel_like", "topn_mask", "relaxed_topn", "block_probs", "final_mask",
    "eligibility_credit", "credit_scores", "eid_targets", "eid_loss",
    "pack", "unpack", "is_nm", "check_nm", "to_cutlass", "from_cutlass", "spmm",
    "save_packed", "load_packed", "Packed",
    "to_block_layout", "from_block_layout", "layer_fits",
]


def _last(be: Backend, x: Any, axis: int) -> Any:
    ndim = len(x.shape)
    return x if axis == ndim - 1 else be.moveaxis(x, axis, ndim - 1)


def _back(be: Backend, x: Any, axis: int) -> Any:
    ndim = len(x.shape)
    return x if axis == ndim - 1 else be.moveaxis(x, ndim - 1, axis)


def _float_blocks(be: Backend, name: str, x: Any, m: int, axis: int, *,
                  values: bool = True) -> int:
    """Common checks for a float block tensor; returns the normalized axis.  With
    ``values=False`` the finiteness check is left to the caller (`_ranged`)."""
    check.float_dtype(be, name, x)
    ax = check.normalize_axis(name, x, axis)
    check.blocks_fit(name, x, m, ax)
    if values:
        check.finite(be, name, x)
    return ax


def _ranged(be: Backend, name: str, x: Any, dtype: str, divisor: float, meaning: str,
            scale: Any = 1.0) -> None:
    """``x`` finite with ``scale * max|x| <= F / (MARGIN * divisor)`` (SPEC S0.8 rule 3);
    only finiteness when ``scale`` or ``divisor`` is traced."""
    if not isinstance(divisor, float):
        check.finite(be, name, x)
        return
    _, big = check.float_range(dtype)
    label = None if isinstance(scale, float) and scale == 1.0 else f"scale * |{name}|"
    check.bounded(be, name, x, big / (check.MARGIN * divisor), dtype, meaning,
                  factor=scale, label=label)


def _key_divisor(temperature: Any) -> Any:
    """``1 / min(1, temperature)``: keys are kept below ``F * min(1, t) / MARGIN`` so that
    they stay finite divided by ``t`` (SPEC S0.8); the traced value itself when traced."""
    return 1.0 / min(1.0, temperature) if isinstance(temperature, float) else temperature


def _size(x: Any) -> int:
    size = 1
    for s in x.shape:
        size *= int(s)
    return size


# -- S1: the mask sampler ---------------------------------------------------------------

def sample_mask(
    logits: Any, n: int, m: int, *, noise: Any, temperature: float = 1.0,
    scale: float = 1.0, hard: bool = True, axis: int = -1,
) -> Any:
    """Sample an N:M mask from M-way basis logits (SPEC S1.1-S1.5).

    Keys ``r = scale * logits + noise``.  The hard mask keeps, in every block of ``m``
    along ``axis``, the ``n`` largest keys (ties: lower index).  The soft mask is the
    successive-softmax relaxation of the same keys at ``temperature``.  With
    ``hard=True`` the values are the hard mask and the gradient is the soft mask's
    (straight-through); with ``hard=False`` the soft mask is returned.

    Parameters
    ----------
    logits : float32/float64 array, shape ``(..., K)`` with ``K % m == 0`` along ``axis``
    n, m : int
        Keep ``n`` of every ``m`` (``1 <= n <= m``, ``m >= 2``).
    noise : array like ``logits``
        Standard Gumbel noise, e.g. from `gumbel_like`.  Explicit so that every backend
        computes the same mask from the same numbers.
    temperature : float > 0
    scale : float > 0
        Logit scale ``kappa``.  Both must be normal numbers of the dtype, with
        ``temperature >= 1024 m / F`` and ``scale * max|logits|``, ``max|noise|`` at most
        ``F * min(1, temperature) / 16`` (S0.8), so that the result is finite.
    hard : bool
    axis : int
        Block axis.

    Returns
    -------
    array like ``logits``

    Examples
    --------
    >>> import numpy as np
    >>> logits = np.zeros((2, 8))
    >>> mask = sample_mask(logits, 2, 4, noise=gumbel_like(logits, seed=0))
    >>> mask.reshape(2, 2, 4).sum(-1)
    array([[2., 2.],
           [2., 2.]])
    """
    n, m = check.pattern(n, m)
    check.present(logits=logits, noise=noise)
    be = backend_for(logits=logits, noise=noise)
    ax = _float_blocks(be, "logits", logits, m, axis, values=False)
    check.same_shape(logits=logits, noise=noise)
    check.same_dtype(be, logits=logits, noise=noise)
    dt = be.dtype_name(logits)
    temperature = check.positive_scalar(be, "temperature", temperature, dt)
    scale = check.positive_scalar(be, "scale", scale, dt)
    if not isinstance(hard, (bool, np.bool_)):
        raise TypeError(f"hard must be a bool, got {hard!r}")
    keys = "the keys of S1.1 divided by the temperature (S1.3)"
    check.temperature_floor("temperature", temperature, dt, m, "the successive softmax of S1.3")
    divisor = _key_divisor(temperature) if isinstance(scale, float) else scale
    _ranged(be, "logits", logits, dt, divisor, keys, scale=scale)
    _ranged(be, "noise", noise, dt, divisor, keys)
    out = be.sample_mask(
        _last(be, logits, ax), _last(be, noise, ax), n, m, temperature, scale, bool(hard)
    )
    return _back(be, out, ax)


def gumbel_like(x: Any, seed: Any) -> Any:
    """Standard Gumbel noise of ``x``'s shape, dtype and framework (SPEC S1.6).

    ``g = -log(-log u)`` with ``u ~ U(0, 1)`` on the open interval, drawn with the
    framework's own generator seeded from ``seed``.  The same seed gives the same
    numbers on the same backend; different backends draw different numbers.

    ``seed`` is a non-negative integer, or, for a JAX ``x`` only, a ``jax.random`` key:
    a typed key of shape ``()`` (``jax.random.key``) or a legacy ``uint32`` key of shape
    ``(2,)`` (``jax.random.PRNGKey``), traced keys inside ``jax.jit`` included.  The
    integer ``s`` and the key ``jax.random.key(s)`` draw the same numbers.

    Raises
    ------
    TypeError
        A ``jax.random`` key with a NumPy, PyTorch or array-API ``x``; a ``jax.Array``
        that is not a key.
    ValueError
        A negative or non-integer seed.

    Examples
    --------
    >>> import numpy as np
    >>> g = gumbel_like(np.zeros((3, 4), dtype=np.float32), seed=7)
    >>> g.shape, g.dtype
    ((3, 4), dtype('float32'))
    """
    check.present(x=x)
    be = backend_for(x=x)
    check.float_dtype(be, "x", x)
    if _is_jax_array(seed):
        if be.name != "jax":
            raise TypeError(
                f"seed is a jax.Array of dtype {seed.dtype} and shape {tuple(seed.shape)}; "
                f"a jax.random key is accepted only with a JAX x, and x is a {be.name} "
                f"array: pass an integer seed")
        return be.gumbel_like(x, seed)
    return be.gumbel_like(x, check.seed(seed))


def _is_jax_array(value: Any) -> bool:
    """``value`` is a ``jax.Array`` (a key candidate for `gumbel_like`), without
    importing JAX when the caller has not."""
    import sys
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(value, jax.Array)


def topn_mask(scores: Any, n: int, m: int, *, axis: int = -1) -> Any:
    """1 for the ``n`` largest scores of every block of ``m``, else 0 (SPEC S1.2).

    Ties go to the lower index.  The result has the dtype of ``scores``.

    Examples
    --------
    >>> import numpy as np
    >>> topn_mask(np.array([0.3, 0.1, 0.3, 0.2]), 2, 4)
    array([1., 0., 1., 0.])
    """
    return _topn("scores", scores, n, m, axis)


def _topn(name: str, x: Any, n: Any, m: Any, axis: Any) -> Any:
    """`topn_mask` of ``x``, named ``name`` in errors."""
    n, m = check.pattern(n, m)
    check.present(**{name: x})
    be = backend_for(**{name: x})
    ax = _float_blocks(be, name, x, m, axis)
    return _back(be, be.topn_mask(_last(be, x, ax), n, m), ax)


def relaxed_topn(scores: Any, n: int, m: int, *, temperature: float, axis: int = -1) -> Any:
    """Successive-softmax relaxation of top-n in every block of ``m`` (SPEC S1.3).

    ``alpha_1 = scores``; for ``j = 1..n``: ``a_j = softmax(alpha_j / temperature)``,
    ``alpha_{j+1} = alpha_j + log(max(1 - a_j, eps))``; returns ``sum_j a_j``.  Each
    block sums to ``n`` up to rounding and tends to the top-n mask as temperature -> 0.

    Examples
    --------
    >>> import numpy as np
    >>> s = relaxed_topn(np.array([3.0, 0.0, 2.0, -1.0]), 2, 4, temperature=0.1)
    >>> np.round(s, 3)
    array([1., 0., 1., 0.])
    """
    n, m = check.pattern(n, m)
    check.present(scores=scores)
    be = backend_for(scores=scores)
    ax = _float_blocks(be, "scores", scores, m, axis, values=False)
    dt = be.dtype_name(scores)
    temperature = check.positive_scalar(be, "temperature", temperature, dt)
    check.temperature_floor("temperature", temperature, dt, m, "the successive softmax of S1.3")
    _ranged(be, "scores", scores, dt, _key_divisor(temperature),
            "the scores divided by the temperature (S1.3)")
    return _back(be, be.relaxed_topn(_last(be, scores, ax), n, m, temperature), ax)


def block_probs(logits: Any, m: int, *, scale: float = 1.0, axis: int = -1) -> Any:
    """Per-block probabilities ``softmax(scale * logits_block)`` (SPEC S1.7).

    Examples
    --------
    >>> import numpy as np
    >>> block_probs(np.zeros(4), 4)
    array([0.25, 0.25, 0.25, 0.25])
    """
    m = check.block_size(m)
    check.present(logits=logits)
    be = backend_for(logits=logits)
    ax = _float_blocks(be, "logits", logits, m, axis, values=False)
    dt = be.dtype_name(logits)
    scale = check.positive_scalar(be, "scale", scale, dt)
    _ranged(be, "logits", logits, dt, 1.0 if isinstance(scale, float) else scale,
            "the softmax of S1.7", scale=scale)
    return _back(be, be.block_probs(_last(be, logits, ax), m, scale), ax)


def final_mask(logits: Any, n: int, m: int, *, axis: int = -1) -> Any:
    """Deterministic mask after training: top-n of the logits per block (SPEC S1.8).

    Examples
    --------
    >>> import numpy as np
    >>> final_mask(np.array([0.5, 2.0, -1.0, 2.0]), 2, 4)
    array([0., 1., 0., 1.])
    """
    return _topn("logits", logits, n, m, axis)


# -- S2: eligibility-inspired distillation ---------------------------------------------

def eligibility_credit(x: Any, d: Any, weight: Any, *, decay: float, signed: bool = False
                       ) -> Any:
    """Time-accumulated eligibility credit of one layer (SPEC S2.1-S2.3, S2.9).

    ``e_0 = 0``, ``e_t = decay * e_{t-1} + x_t``;
    ``c[o, k] = |W[o, k]| * sum_t | sum_b d_t[b, o] * e_t[b, k] |``, or with
    ``signed=True`` ``|W[o, k]| * | sum_t sum_b d_t[b, o] * e_t[b, k] |`` (zero-mean
    contributions cancel).

    Parameters
    ----------
    x : array ``(T, B, K)``
        Layer inputs per time step (spikes, or analog input for the first layer).
    d : array ``(T, B, O)``
        Learning signal ``dL/dI_t`` per time step.
    weight : array ``(O, K)``
        Dense weight (not the masked one, so pruned weights keep a credit).
    decay : float in [0, 1]
        Trace decay, normally the neuron's membrane decay.
    signed : bool
        Sum over time before the absolute value (S2.9).

    Returns
    -------
    array ``(O, K)``, non-negative

    Examples
    --------
    >>> import numpy as np
    >>> x = np.ones((2, 1, 4)); d = np.ones((2, 1, 1)); w = np.full((1, 4), -2.0)
    >>> eligibility_credit(x, d, w, decay=0.5)   # |W| * (1 + 1.5)
    array([[5., 5., 5., 5.]])
    >>> d2 = np.array([[[1.0]], [[-1.0]]])
    >>> eligibility_credit(x, d2, w, decay=0.5, signed=True)   # |W| * |1 - 1.5|
    array([[1., 1., 1., 1.]])
    """
    if not isinstance(signed, bool):
        raise TypeError(f"signed={signed!r} is invalid; expected True or False")
    check.present(x=x, d=d, weight=weight)
    be = backend_for(x=x, d=d, weight=weight)
    for name, arr in (("x", x), ("d", d), ("weight", weight)):
        check.float_dtype(be, name, arr)
    check.same_dtype(be, x=x, d=d, weight=weight)
    check.rank("x", x, 3, "(T, B, K)")
    check.rank("d", d, 3, "(T, B, O)")
    check.rank("weight", weight, 2, "(O, K)")
    (t, b, k), (t2, b2, o), (o2, k2) = x.shape, d.shape, weight.shape
    if (t, b) != (t2, b2) or k != k2 or o != o2:
        raise ValueError(
            f"shapes do not fit x (T, B, K)={tuple(x.shape)}, d (T, B, O)={tuple(d.shape)}, "
            f"weight (O, K)={tuple(weight.shape)}"
        )
    decay = check.unit_interval("decay", decay)
    # |c| <= max|W| * T^2 * B * max|d| * max|x| (the trace is at most T * max|x|): each
    # factor is kept below the cube root of F / (MARGIN * T^2 * B) (SPEC S0.8)
    dt = be.dtype_name(x)
    _, big = check.float_range(dt)
    limit = (big / (check.MARGIN * max(1, t * t * b))) ** (1.0 / 3.0)
    for name, arr in (("x", x), ("d", d), ("weight", weight)):
        check.bounded(be, name, arr, limit, dt, "the credit sums of S2.1-S2.3")
    return be.eligibility_credit(x, d, weight, decay, signed)


def credit_scores(credits: Any, m: int, *, gated: bool = False, axis: int = -1) -> Any:
    """Scale-free block scores of a credit array, optionally gated (SPEC S2.10).

    ``z_i = C_i / mean_block(C)`` (0 in an all-zero block); with ``gated=True`` each
    block is multiplied by ``g_b = E_b / (E_b + E_med)``, ``E_b`` the block's credit mass
    and ``E_med`` the lower median of the masses of all blocks.

    Examples
    --------
    >>> import numpy as np
    >>> credit_scores(np.array([1e-9, 3e-9, 2.0, 6.0]), 2)   # the scale does not matter
    array([0.5, 1.5, 0.5, 1.5])
    """
    if not isinstance(gated, bool):
        raise TypeError(f"gated={gated!r} is invalid; expected True or False")
    m = check.block_size(m)
    check.present(credits=credits)
    be = backend_for(credits=credits)
    ax = _float_blocks(be, "credits", credits, m, axis, values=False)
    _ranged(be, "credits", credits, be.dtype_name(credits), float(m),
            "the block masses of S2.10")
    check.nonnegative(be, "credits", credits)
    return _back(be, be.credit_scores(_last(be, credits, ax), m, gated), ax)


def eid_targets(credits: Any, m: int, *, temperature: float = 1.0, variant: str = "global",
                n: int | None = None, logits: Any = None, scale: float = 1.0,
                axis: int = -1) -> Any:
    """Block-wise targets from credits (SPEC S2.5, S2.11).

    ``variant="global"`` (S2.5): ``z = C / (mean(C) + 1e-12)`` over the whole array, then
    ``q_block = softmax(z_block / temperature)``.  ``"block"``: the same softmax of the
    scale-free block scores of `credit_scores`.  ``"gated"``:
    ``softmax(scale * logits + gated scores / temperature)`` (needs ``logits``, of the
    credits' shape; the targets carry no gradient).  ``"inclusion"``: the ``n``-of-``m``
    inclusion targets ``relaxed_topn(scores, n, m, temperature) / n`` (needs ``n``), the
    first-pick distribution whose Gumbel top-``n`` draw keeps the target set (S2.12).
    Every variant's targets sum to 1 per block and go into `eid_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> eid_targets(np.array([1.0, 1.0, 1.0, 1.0]), 4)
    array([0.25, 0.25, 0.25, 0.25])
    >>> np.round(eid_targets(np.array([4.0, 3.0, 0.0, 1.0]), 4, temperature=0.1,
    ...                      variant="inclusion", n=2), 3)
    array([0.497, 0.503, 0.   , 0.   ])
    """
    eid_variants.check_variant("variant", variant)
    m = check.block_size(m)
    if variant == eid_variants.INCLUSION:
        if n is None:
            raise ValueError("variant='inclusion' needs n, the number kept per block")
        n, m = check.pattern(n, m)
    else:
        n = 1 if n is None else check.pattern(n, m)[0]
    check.present(credits=credits)
    be = backend_for(credits=credits)
    ax = _float_blocks(be, "credits", credits, m, axis, values=False)
    dt = be.dtype_name(credits)
    count = _size(credits)
    _ranged(be, "credits", credits, dt, float(count), "the credit mean of S2.5")
    check.nonnegative(be, "credits", credits)
    temperature = check.normal_in_dtype("temperature", temperature, dt)
    check.temperature_floor("temperature", temperature, dt, count,
                            "the target softmax of S2.5/S2.11")
    pi = None
    if variant in eid_variants.NEEDS_LOGITS:
        if logits is None:
            raise ValueError(f"variant={variant!r} needs logits= (the mask logits, the "
                             f"credits' shape)")
        _float_blocks(be, "logits", logits, m, axis, values=False)
        check.same_shape(credits=credits, logits=logits)
        check.same_dtype(be, credits=credits, logits=logits)
        scale = check.normal_in_dtype("scale", scale, dt)
        _ranged(be, "logits", logits, dt, 1.0, "the gated targets of S2.11", scale=scale)
        pi = _last(be, logits, ax)
    elif logits is not None:
        raise ValueError(f"logits= is used by the variants {eid_variants.NEEDS_LOGITS} "
                         f"only, not {variant!r}")
    q = eid_variants.targets(be, variant, _last(be, credits, ax), n, m, temperature, pi,
                             scale)
    return _back(be, q, ax)


def eid_loss(logits: Any, targets: Any, m: int, *, scale: float = 1.0, axis: int = -1) -> Any:
    """Mean over blocks of ``KL(q_block || p_block)`` with ``p = softmax(scale * logits)``
    (SPEC S2.6).  Gradient flows to ``logits`` only: ``scale * (p - q) / G``.

    Returns a 0-d array of the logits' type and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> float(eid_loss(np.zeros(4), np.full(4, 0.25), 4))
    0.0
    """
    m = check.block_size(m)
    check.present(logits=logits, targets=targets)
    be = backend_for(logits=logits, targets=targets)
    ax = _float_blocks(be, "logits", logits, m, axis, values=False)
    check.same_shape(logits=logits, targets=targets)
    check.same_dtype(be, logits=logits, targets=targets)
    dt = be.dtype_name(logits)
    check.finite(be, "targets", targets)
    check.nonnegative(be, "targets", targets)
    scale = check.positive_scalar(be, "scale", scale, dt)
    # S0.8: the N terms q (log q - log p) stay summable when max q and scale * max|logits|
    # are both at most sqrt(F / (16 N))
    _, big = check.float_range(dt)
    limit = (big / (check.MARGIN * _size(logits))) ** 0.5
    check.bounded(be, "targets", targets, limit, dt, "the loss of S2.6", label="targets")
    check.bounded(be, "logits", logits, limit, dt, "the loss of S2.6", factor=scale,
                  label=None if isinstance(scale, float) and scale == 1.0 else "scale * |logits|")
    return be.eid_loss(_last(be, logits, ax), _last(be, targets, ax), m, scale)



# -- S3: the packed format --------------------------------------------------------------

def _first_bad_block(counts: np.ndarray, n: int) -> tuple[int, ...] | None:
    bad = np.argwhere(counts > n)
    return None if bad.size == 0 else tuple(int(i) for i in bad[0])


def _describe_block(shape: tuple[int, ...], axis: int, m: int, where: tuple[int, ...]) -> str:
    lead = list(where[:-1])
    g = where[-1]
    index: list[Any] = lead[:axis] + [slice(g * m, (g + 1) * m)] + lead[axis:]
    text = ", ".join(f"{s.start}:{s.stop}" if isinstance(s, slice) else str(s) for s in index)
    return f"block {g} at [{text}]"


def _block_counts(be: Backend, x: Any, m: int, ax: int, what: str, name: str) -> np.ndarray:
    kept = _last(be, x, ax)
    counts = be.block_nnz(kept, m)
    return check.concrete(be, name, counts, what)


def _nm_violation(x: Any, n: int, m: int, axis: int, name: str) -> str | None:
    """Message for the first block with more than ``n`` non-zeros, or None."""
    check.present(**{name: x})
    be = backend_for(**{name: x})
    check.real_dtype(be, name, x)
    ax = check.normalize_axis(name, x, axis)
    check.blocks_fit(name, x, m, ax)
    counts = _block_counts(be, x, m, ax, "an N:M check", name)
    where = _first_bad_block(counts, n)
    if where is None:
        return None
    return (
        f"{name} is not {n}:{m} sparse along axis {ax}: "
        f"{_describe_block(tuple(x.shape), ax, m, where)} has {int(counts[where])} "
        f"non-zeros, expected at most {n}"
    )


def check_nm(x: Any, n: int, m: int, *, axis: int = -1, name: str = "x") -> None:
    """Raise ``ValueError`` naming the first block with more than ``n`` non-zeros.

    Examples
    --------
    >>> import numpy as np
    >>> check_nm(np.array([1.0, 0.0, 2.0, 0.0]), 2, 4)
    >>> check_nm(np.array([1.0, 3.0, 2.0, 0.0]), 2, 4)
    Traceback (most recent call last):
    ...
    ValueError: x is not 2:4 sparse along axis 0: block 0 at [0:4] has 3 non-zeros, expected at most 2
    """
    n, m = check.pattern(n, m)
    message = _nm_violation(x, n, m, axis, name)
    if message is not None:
        raise ValueError(message)


def is_nm(x: Any, n: int, m: int, *, axis: int = -1) -> bool:
    """True when every block of ``m`` along ``axis`` has at most ``n`` non-zeros.

    Examples
    --------
    >>> import numpy as np
    >>> is_nm(np.array([1.0, 0.0, 2.0, 0.0]), 2, 4), is_nm(np.ones(4), 2, 4)
    (True, False)
    """
    n, m = check.pattern(n, m)
    return _nm_violation(x, n, m, axis, "x") is None


def pack(w: Any, n: int, m: int, *, mask: Any = None, axis: int = -1) -> Packed:
    """Pack an N:M sparse array (SPEC S3.1-S3.3).

    Without ``mask`` the kept entries are the non-zeros of ``w``; with ``mask`` (0/1,
    same shape) they are the entries where ``mask`` is 1, which packs ``w * mask``.
    A block with more than ``n`` kept entries raises ``ValueError`` naming it; nothing
    is dropped silently.

    Examples
    --------
    >>> import numpy as np
    >>> p = pack(np.array([[0.0, 5.0, 0.0, 7.0]]), 2, 4)
    >>> p.values, p.indices
    (array([[5., 7.]]), array([[1, 3]], dtype=uint8))
    """
    n, m = check.pattern(n, m)
    check.present(w=w)
    be = backend_for(w=w, mask=mask)
    check.real_dtype(be, "w", w)
    if mask is not None:
        check.real_dtype(be, "mask", mask)
    ax = check.normalize_axis("w", w, axis)
    check.blocks_fit("w", w, m, ax)
    if m > 256:
        raise ValueError(f"m={m} does not fit uint8 indices; expected m <= 256")
    if mask is None:
        keep = w
        name, what = "w", "pack"
    else:
        check.same_shape(w=w, mask=mask)
        values = check.concrete(be, "mask", mask, "pack")
        if be.dtype_name(mask) == "bfloat16":  # to_numpy gives the uint16 bit pattern
            values = (values.astype(np.uint32) << 16).view(np.float32)
        binary = (values == 0) | (values == 1)
        if not binary.all():
            bad = values[~binary].flat[0]
            raise ValueError(f"mask must contain only 0 and 1, found {bad.item()!r}")
        keep = mask
        name, what = "mask", "pack"
    def refuse_bad_block() -> None:
        counts = _block_counts(be, keep, m, ax, what, name)
        where = _first_bad_block(counts, n)
        if where is not None:
            raise ValueError(
                f"cannot pack {name} as {n}:{m}: "
                f"{_describe_block(tuple(w.shape), ax, m, where)} keeps "
                f"{int(counts[where])} entries, expected at most {n}"
            )

    if not getattr(be, "pack_checks_blocks", False):
        refuse_bad_block()  # before the backend's pack, which may drop extra entries
    try:
        values, indices = be.pack(_last(be, w, ax), _last(be, keep, ax), n, m)
    except ValueError:
        refuse_bad_block()  # the same message on every backend, in the caller's axes
        raise
    return Packed(values, indices, n, m, tuple(int(s) for s in w.shape), ax)


def unpack(packed: Packed) -> Any:
    """Dense array of ``packed`` in its original shape and axis order (SPEC S3.1).

    ``packed`` is validated first (S3.10: fields, shapes, dtypes, and ``n`` strictly
    increasing indices in ``[0, m)`` per block; checked once per index array).

    Examples
    --------
    >>> import numpy as np
    >>> unpack(pack(np.array([0.0, 5.0, 0.0, 7.0]), 2, 4))
    array([0., 5., 0., 7.])
    """
    be = check.packed(packed)
    dense = be.unpack(packed.values, packed.indices, packed.n, packed.m)
    return _back(be, dense, packed.axis)


def spmm(packed: Packed, x: Any) -> Any:
    """``unpack(packed) @ x`` without materialising the dense matrix where the backend has
    a sparse kernel (the array-API backend builds it, SPEC S0.7; S3.6).

    ``packed`` must be 2-D ``(O, K)`` with blocks along ``K`` (axis 1); ``x`` is ``(K,)``
    or ``(K, P)`` of the values' dtype (spikes as 0/1 of that dtype), or bool spikes on a
    backend that declares ``spmm_bool_input = True`` (the NumPy reference).  For a linear layer ``y = x @ W.T`` use ``spmm(packed, x.T).T``.
    ``packed`` is validated as in `unpack` (S3.10); a `Packed` that passed is remembered,
    so a repeated call pays a dictionary look-up.

    Kernel choice on the NumPy backend (`reference.spmm_kernels.choose_kernel`): the
    event-driven kernel (adds the transposed weight rows of the active inputs only) runs
    when every entry of ``x`` is 0 or 1 -- ``x`` is bool, or one pass over the values
    finds nothing else -- and the fraction of ones is at most 1 for ``P < 16`` (always),
    0.6 for ``16 <= P < 64``, 0.35 for ``P >= 64`` (``P`` is 1 for 1-D ``x``), and every
    stored value is finite (else ``0 * inf`` must give NaN as in the dense product); the
    float kernel runs otherwise.  Both give ``unpack(packed) @ x`` within S3.6's
    tolerance, so the choice never changes the result beyond it.  The event kernel's
    transposed weights (``K * O`` entries of the accumulator dtype) are built on its
    first call for a given pair of packed arrays and cached while they are alive; the
    cached arrays are made read-only, so an in-place change raises instead of using a
    stale view.

    Examples
    --------
    >>> import numpy as np
    >>> p = pack(np.array([[0.0, 5.0, 0.0, 7.0]]), 2, 4)
    >>> spmm(p, np.array([1.0, 1.0, 0.0, 1.0]))
    array([12.])
    """
    check.packed(packed)
    check.present(x=x)
    be = backend_for(values=packed.values, x=x)
    if len(packed.shape) != 2 or packed.axis != 1:
        raise ValueError(
            f"spmm needs a 2-D packed matrix (O, K) with blocks along axis 1, got shape "
            f"{packed.shape} with axis {packed.axis}"
        )
    k = packed.shape[1]
    if len(x.shape) not in (1, 2) or x.shape[0] != k:
        raise ValueError(f"x must have shape ({k},) or ({k}, P), got {tuple(x.shape)}")
    if not (be.dtype_name(x) == "bool" and getattr(be, "spmm_bool_input", False)):
        check.same_dtype(be, values=packed.values, x=x)
    check.finite(be, "x", x)
    return be.spmm(packed.values, packed.indices, packed.n, packed.m, x)


def to_cutlass(packed: Packed, *, dtype: Any = None) -> tuple[Any, Any]:
    """2:4 hardware export in PyTorch's CUTLASS layout (SPEC S3.4).

    Returns ``(values, meta)`` equal, bit for bit, to what
    ``torch.sparse._semi_structured_conversions.sparse_semi_structured_from_dense_cutlass``
    gives on blocks with two non-zeros; other blocks keep the S3.2 padding and decode to
    the same dense matrix.  ``dtype="float16"`` or ``"bfloat16"`` casts float values
    first (float32 alone is refused: it is a 1:2 format in this layout).  ``packed`` is
    validated as in `unpack` first (S3.10).
    """
    from .cutlass import to_cutlass as _impl

    return _impl(packed, dtype=dtype)


def from_cutlass(values: Any, meta: Any) -> Packed:
    """Inverse of `to_cutlass`: a 2:4 `Packed` from CUTLASS ``(values, meta)``."""
    from .cutlass import from_cutlass as _impl

    return _impl(values, meta)


def save_packed(path: Any, packed: Packed) -> None:
    """Write ``packed`` to a versioned, checksummed ``.npz`` container (SPEC S3.5); a
    `Packed` that fails S3.10 raises before anything is written."""
    from .container import save_packed as _impl

    check.packed(packed)
    _impl(check.path("path", path), packed)


def load_packed(path: Any) -> Packed:
    """Read and validate a container written by `save_packed` (SPEC S3.5)."""
    from .container import load_packed as _impl

    return _impl(check.path("path", path))

