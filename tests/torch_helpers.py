"""Helpers for tests of the PyTorch paths: a hand-written spike, independent of the
backends, and a few module-path steps."""

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


def module_path_steps(model: torch.nn.Module, handle: Any, x: torch.Tensor, steps: int,
                      lr: float = 0.1) -> None:
    """``steps`` SGD steps of the module path on the loss ``mean(model(x)^2)`` plus the
    EID term, each closed by ``handle.step()``."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = model(x).square().mean() + handle.eid_loss()
        opt.zero_grad()
        loss.backward()
        opt.step()
        handle.step()
