"""A hand-written spike for tests of the PyTorch paths, independent of the backends."""

from __future__ import annotations

import math
from typing import Any

import torch


class ATanSpike(torch.autograd.Function):
    """``S = [H >= 1]`` with the ATan surrogate of S4.4 (``theta = 1``, ``alpha = 2``)."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(h)
        return (h >= 1.0).to(h.dtype)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (h,) = ctx.saved_tensors
        return g / (1.0 + (math.pi * (h - 1.0)) ** 2)
