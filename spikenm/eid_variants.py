"""The EID target variants of SPEC S2.11, composed once from backend primitives.

Every variant turns a running credit ``C`` (block layout: blocks of ``m`` along the last
axis) into the targets its loss compares with the sampler:

* ``global`` (S2.5): ``q = eid_targets(C, m, tau_e)``;
* ``block``: ``q = softmax_block(z / tau_e)`` with the scale-free scores ``z`` of S2.10;
* ``gated``: ``q = softmax_block(kappa * pi + z_g / tau_e)`` with the gated scores;
* ``inclusion``: ``q = relaxed_topn(z, n, m, tau_e) / n``, the first-pick distribution whose
  Gumbel top-``n`` draw keeps the ``n`` target entries (S2.12).

All four go into the loss of S2.6 (gradient S2.7).

The functions here take arrays already in block layout and validated arguments (the
public checks are in `spikenm.api`); they run on the arrays' own backend, so the trainer's
hot path makes no host round trip.
"""

from __future__ import annotations

from typing import Any

from .protocol import Backend

__all__ = ["VARIANTS", "CREDITS", "INCLUSION", "NEEDS_LOGITS", "targets", "check_variant", "check_credit"]

Array = Any

VARIANTS = ("global", "block", "gated", "inclusion")
"""Values of ``eid.variant`` (S2.11)."""
NEEDS_LOGITS = ("gated",)
"""Variants whose targets are built from the logits too (S2.11)."""
INCLUSION = "inclusion"
"""The N-of-M variant (its targets need ``n``)."""
CREDITS = ("abs", "signed")
"""Values of ``eid.credit``: S2.3 (``abs``) or S2.9 (``signed``)."""


def check_variant(name: str, value: Any) -> str:
    """``value`` if it is one of `VARIANTS`, else a `ValueError` naming ``name``."""
    if value not in VARIANTS:
        raise ValueError(f"{name}={value!r} is invalid; expected one of {VARIANTS}")
    return value


def check_credit(name: str, value: Any) -> str:
    """``value`` if it is one of `CREDITS`, else a `ValueError` naming ``name``."""
    if value not in CREDITS:
        raise ValueError(f"{name}={value!r} is invalid; expected one of {CREDITS}")
    return value


def _stop_gradient(be: Backend, x: Array) -> Array:
    stop = getattr(be, "stop_gradient", None)
    return x if stop is None else stop(x)


def targets(be: Backend, variant: str, credits: Array, n: int, m: int, temperature: float,
            logits: Array | None = None, scale: float = 1.0) -> Array:
    """Targets of ``variant`` from the running credit (S2.11); ``logits`` and ``scale``
    are used by ``gated`` only (and required there).  The targets are constants: with
    a differentiable backend no gradient flows into them."""
    if variant == "global":
        return be.eid_targets(credits, m, temperature)
    if variant == "gated":
        if logits is None:
            raise ValueError("eid variant 'gated' needs the logits and the logit scale")
        z = be.credit_scores(credits, m, True)
        v = _stop_gradient(be, logits) * scale + z * (1.0 / temperature)
        return _stop_gradient(be, be.block_probs(v, m, 1.0))
    z = be.credit_scores(credits, m, False)
    if variant == "block":
        return be.block_probs(z, m, 1.0 / temperature)
    if variant == INCLUSION:
        return be.relaxed_topn(z, n, m, temperature) * (1.0 / n)
    raise ValueError(f"eid variant={variant!r} is invalid; expected one of {VARIANTS}")

