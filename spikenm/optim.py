"""Optimizers as pure functions over explicit state (SPEC S5.7).

Only operators (``+ - * / **``) are used, so the same code updates NumPy, PyTorch and
JAX arrays.  Python scalars combine with float32 arrays without promotion.

Adam, for the ``k``-th update of an array ``p`` with gradient ``g``:

    g <- g + wd p;  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    p <- p - lr (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps)

SGD with momentum: ``buf <- mu buf + g + wd p``, ``p <- p - lr buf``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

Array = Any


@dataclass(frozen=True)
class OptState:
    """Optimizer state: update count and one tuple of slot arrays per parameter
    (Adam: ``(m, v)``; SGD: ``(buf,)``)."""

    kind: str
    count: int
    slots: tuple[tuple[Array, ...], ...]


def opt_init(kind: str, params: Sequence[Array]) -> OptState:
    """Zero state for ``params`` (``kind``: ``adam`` or ``sgd``)."""
    if kind == "adam":
        return OptState(kind, 0, tuple((p * 0, p * 0) for p in params))
    if kind == "sgd":
        return OptState(kind, 0, tuple((p * 0,) for p in params))
    raise ValueError(f"unknown optimizer {kind!r}; expected 'adam' or 'sgd'")


@dataclass(frozen=True)
class OptHyper:
    """Hyper-parameters of one update (``decay[i]``: weight decay of parameter ``i``)."""

    lr: float
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    momentum: float = 0.9
    decay: tuple[float, ...] = ()


def opt_update(params: Sequence[Array], grads: Sequence[Array], state: OptState,
               hyper: OptHyper) -> tuple[list[Array], OptState]:
    """One update; returns new parameters and state (inputs are not modified)."""
    if len(params) != len(grads) or len(params) != len(state.slots):
        raise ValueError(
            f"{len(params)} parameters, {len(grads)} gradients and {len(state.slots)} "
            f"optimizer slots do not match"
        )
    k = state.count + 1
    decay = hyper.decay or (0.0,) * len(params)
    new_params, new_slots = [], []
    for p, g, slots, wd in zip(params, grads, state.slots, decay):
        if wd:
            g = g + wd * p
        if state.kind == "adam":
            m, v = slots
            m = hyper.beta1 * m + (1.0 - hyper.beta1) * g
            v = hyper.beta2 * v + (1.0 - hyper.beta2) * (g * g)
            m_hat = m / (1.0 - hyper.beta1 ** k)
            v_hat = v / (1.0 - hyper.beta2 ** k)
            new_params.append(p - hyper.lr * m_hat / (v_hat ** 0.5 + hyper.eps))
            new_slots.append((m, v))
        else:
            (buf,) = slots
            buf = hyper.momentum * buf + g
            new_params.append(p - hyper.lr * buf)
            new_slots.append((buf,))
    return new_params, OptState(state.kind, k, tuple(new_slots))
