"""EID credits of a user's own JAX layers, for `spikenm.backends.jax.method_path`
(SPEC S2.1-S2.3, S2.9, S5.5).

For a layer with dense weight ``W``, inputs ``x_t`` (``t = 1..T``), presynaptic trace
``e_t = lam e_{t-1} + x_t`` (``e_0 = 0``) and learning signal ``d_t = dL/dI_t`` of its
synaptic current ``I_t``::

    c = |W| * sum_t | dW_t |,   dW_t = the weight gradient of the layer at input e_t
                                       and output gradient d_t
    c = |W| * | sum_t dW_t |    (signed=True, S2.9: the method's ``PathMasks.signed``)

For a dense layer ``dW_t[o, k] = sum_b d_t[b, o] e_t[b, k]`` (S2.3); for a convolution it
is the conv weight gradient, which equals S2.3's sum over the unfolded input.  The credit
has the weight's own shape and layout, as `method_path.Sparsity.update` takes it.

Getting ``d_t`` in a JAX forward pass: add a zero *probe* to the layer's current,
``I_t = x_t W_eff^T + b + probe[t]`` with ``probe = jnp.zeros((T, B, O))``, and
differentiate the loss with respect to the probe as well; its gradient is ``d``
(``dL/dI_t``, S2.2), and the forward's value is unchanged.  ``x`` are the layer's inputs,
returned by the forward as auxiliary output.  The ``method_path`` module docstring shows
the whole loop.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp  # noqa: F401 - the docstring examples use it

from spikenm import validation

from .eid import eligibility_credit
from .snn_credit import weight_grad_credit

__all__ = ["dense_credit", "op_credit"]


def _decay(decay: Any) -> Any:
    """A Python number in ``[0, 1]`` (checked), or a JAX array passed through (traced
    values cannot be checked, S0.5)."""
    if isinstance(decay, jax.Array):
        return decay
    return validation.unit_interval("decay", decay)


def _signed(signed: Any) -> bool:
    """``signed`` must be a Python bool (it selects the formula, so it is static)."""
    if not isinstance(signed, bool):
        raise TypeError(f"signed={signed!r} is invalid; expected True or False (a Python "
                        f"bool, static under jax.jit: pass sm.signed as a static argument)")
    return signed


def _rank3(name: str, x: Any, meaning: str) -> None:
    if not isinstance(x, jax.Array):
        raise TypeError(f"{name} must be a jax.Array {meaning}, got {type(x).__name__}")
    if x.ndim != 3:
        raise ValueError(f"{name} must have shape {meaning}, got {tuple(x.shape)}")


def dense_credit(x: jax.Array, d: jax.Array, weight: jax.Array, decay: Any, *,
                 layout: str = "OI", signed: bool = False) -> jax.Array:
    """EID credit of a dense layer (S2.3, or S2.9 with ``signed``), shaped like ``weight``.

    Parameters
    ----------
    x : ``(T, B, K)``
        The layer's inputs per time step.
    d : ``(T, B, O)``
        ``dL/dI_t`` per time step (the gradient of a zero probe added to the current).
    weight : ``(O, K)`` for ``layout="OI"`` (PyTorch, Equinox), ``(K, O)`` for ``"IO"``
        (a Flax ``Dense`` kernel)
        The dense weight (not the masked one, so pruned weights keep a credit).
    decay : float in ``[0, 1]``
        Trace decay ``lam``, normally the neuron's ``beta`` (`PathMasks.decay`).
    signed : bool
        Sum over time before the absolute value (S2.9; `PathMasks.signed`).

    Returns
    -------
    jax.Array of ``weight``'s shape, layout and dtype, non-negative.

    Examples
    --------
    >>> x = jnp.ones((2, 1, 4)); d = jnp.ones((2, 1, 1)); w = jnp.full((1, 4), -2.0)
    >>> dense_credit(x, d, w, 0.5)   # |W| * (1 + 1.5)
    Array([[5., 5., 5., 5.]], dtype=float32)
    >>> dense_credit(x, d, w.T, 0.5, layout="IO").shape
    (4, 1)
    >>> dense_credit(x, jnp.array([[[1.0]], [[-1.0]]]), w, 0.5, signed=True)  # |W| |1 - 1.5|
    Array([[1., 1., 1., 1.]], dtype=float32)
    """
    if layout not in ("OI", "IO"):
        raise ValueError(f"layout={layout!r} is invalid; expected 'OI' (out, in) or 'IO' "
                         f"(in, out)")
    _rank3("x", x, "(T, B, K)")
    _rank3("d", d, "(T, B, O)")
    if not isinstance(weight, jax.Array) or weight.ndim != 2:
        raise ValueError(f"weight must be a 2-d jax.Array in layout {layout!r}, got "
                         f"{getattr(weight, 'shape', type(weight).__name__)}")
    w = weight if layout == "OI" else weight.T
    if x.shape[:2] != d.shape[:2] or w.shape != (d.shape[2], x.shape[2]):
        raise ValueError(f"shapes do not fit: x (T, B, K)={tuple(x.shape)}, d (T, B, O)="
                         f"{tuple(d.shape)}, weight {layout}={tuple(weight.shape)}")
    credit = eligibility_credit(x, d, w, _decay(decay), _signed(signed))
    return credit if layout == "OI" else credit.T


def op_credit(op: Callable[[jax.Array, jax.Array], jax.Array], x: jax.Array,
              d: jax.Array, weight: jax.Array, decay: Any, *,
              signed: bool = False) -> jax.Array:
    """EID credit of a layer whose current is ``I_t = op(x_t, weight)`` (a convolution,
    or any map linear in ``weight``), shaped like ``weight`` (S2.3, or S2.9 with
    ``signed``).

    ``c = |W| * sum_t |g_t|`` with ``g_t`` the VJP of ``w -> op(e_t, w)`` at ``weight``
    applied to ``d_t``: the layer's weight gradient at the trace ``e_t``, computed for all
    ``t`` at once by ``jax.vmap`` (`spikenm.backends.jax.snn_credit.weight_grad_credit`,
    after checking the inputs).  Signed: ``c = |W| * |sum_t g_t|``, one weight gradient
    of ``op`` mapped over the steps.  The layout is whatever ``op`` uses (PyTorch ``OIHW``,
    Flax ``HWIO`` ...).  The bias is not part of ``op``.

    Parameters
    ----------
    op : callable ``(x_t, weight) -> I_t``
        Without bias; ``x_t`` is one time step ``(B, ...)``.
    x : ``(T, B, ...)``
        The layer's inputs per time step.
    d : ``(T, ...)``
        ``dL/dI_t``, each step of ``op``'s output shape.
    weight : array
        The dense weight.
    decay : float in ``[0, 1]``
        Trace decay ``lam``.
    signed : bool
        Sum over time before the absolute value (S2.9; `PathMasks.signed`).

    Examples
    --------
    >>> x = jnp.ones((2, 1, 4)); d = jnp.ones((2, 1, 1)); w = jnp.full((1, 4), -2.0)
    >>> op_credit(lambda x_t, w: x_t @ w.T, x, d, w, 0.5)   # as dense_credit
    Array([[5., 5., 5., 5.]], dtype=float32)
    """
    if not callable(op):
        raise TypeError(f"op must be a callable (x_t, weight) -> I_t, got {op!r}")
    for name, arr in (("x", x), ("d", d), ("weight", weight)):
        if not isinstance(arr, jax.Array):
            raise TypeError(f"{name} must be a jax.Array, got {type(arr).__name__}")
    if x.ndim < 2 or d.ndim < 2 or x.shape[0] != d.shape[0]:
        raise ValueError(f"x {tuple(x.shape)} and d {tuple(d.shape)} must both have a "
                         f"leading time axis of one length T")
    out = jax.eval_shape(op, jax.ShapeDtypeStruct(x.shape[1:], x.dtype), weight)
    if tuple(out.shape) != tuple(d.shape[1:]):
        raise ValueError(f"d has steps of shape {tuple(d.shape[1:])}; op gives currents of "
                         f"shape {tuple(out.shape)}")
    return weight_grad_credit(op, x, d, weight, _decay(decay), _signed(signed))
