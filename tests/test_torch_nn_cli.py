"""The PyTorch module path reproduces the trainer (SPEC S5, S6.0): a hand-written spiking
MLP trained with ``sparsify`` ends with the trainer's weights and masks in float64 when
both see the same initialization, data order, optimizer and learning-rate schedule.

EID is off here: with it, the module path's EID targets come from the running credit of
the steps before (the EID term is part of the loss before the step's credits exist),
the trainer's from the credit of the step itself, so the two differ by design (S6.0).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikenm import api
from spikenm.backends.torch.nn import sparsify
from spikenm.methods import load_method
from spikenm.snn import init_params
from spikenm.train.config import load_config
from spikenm.train.data import load_dataset
from spikenm.train.encoding import batch_indices, encode
from spikenm.train.loop import train
from spikenm.train.setup import build_network
from spikenm.train.step import weight_lr

from torch_helpers import ATanSpike


pytestmark = pytest.mark.usefixtures("torch_one_thread")


class SpikingMLP(nn.Module):
    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))

    def forward(self, x: torch.Tensor, time_steps: int) -> torch.Tensor:
        x = x.flatten(1)
        v: list[Any] = [0.0] * (len(self.layers) - 1)
        out = 0.0
        for _ in range(time_steps):
            s = x
            for i, layer in enumerate(self.layers[:-1]):
                h = 0.5 * v[i] + layer(s)
                s = ATanSpike.apply(h)
                v[i] = h * (1.0 - s)
            out = out + self.layers[-1](s)
        return out / time_steps  # type: ignore[return-value]


def test_S5_module_path_ends_with_the_trainers_weights_and_masks() -> None:
    cfg = load_config(None, [
        "data.name=digits", "data.train_limit=96", "data.test_limit=40", "model.arch=mlp",
        "model.hidden=32,16", "optim.epochs=2", "optim.batch_size=32", "run.dtype=float64",
        "run.backend=torch", "run.seed=3", "run.quiet=true", "run.eval_every=0",
        "eid.enabled=false", "sampler.logit_lr=0.1"])
    result = train(cfg, stream=None)

    data = load_dataset(cfg.data)
    graph = build_network(cfg.model, data.input_shape, data.num_classes)
    params = init_params(graph, cfg.run.seed, cfg.model.init_gain, "float64")
    model = SpikingMLP([64, 32, 16, 10]).double()
    with torch.no_grad():
        for k, layer in enumerate(model.layers):
            layer.weight.copy_(torch.from_numpy(params[f"layer{k}.weight"]))
            layer.bias.copy_(torch.from_numpy(params[f"layer{k}.bias"]))
    o = cfg.optim
    spe = data.x_train.shape[0] // o.batch_size
    total = spe * o.epochs
    handle = sparsify(model, 2, 4, total_steps=total, seed=cfg.run.seed,
                      method=load_method("spikenm", cfg))
    assert handle.ordinals == {"layers.1": 1}
    opt = torch.optim.Adam(model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), eps=o.eps)
    for step in range(total):
        idx = batch_indices(cfg.run.seed, step, spe, o.batch_size, data.x_train.shape[0])
        x = torch.from_numpy(encode(data.x_train[idx], data.pixel_max, "float64", "direct",
                                    cfg.lif.time_steps, cfg.run.seed, step))
        y = torch.from_numpy(data.y_train[idx])
        loss = F.cross_entropy(model(x, cfg.lif.time_steps), y) + handle.eid_loss()
        opt.zero_grad()
        loss.backward()
        assert handle.lr_factor() * o.lr == pytest.approx(
            weight_lr(o, handle.current.lr_window, total, step), rel=1e-15)
        for group in opt.param_groups:
            group["lr"] = o.lr * handle.lr_factor()
        opt.step()
        handle.step()
    masks = handle.finalize()
    np.testing.assert_array_equal(masks["layers.1"].numpy(), result.masks[1])
    for k, layer in enumerate(model.layers):
        np.testing.assert_allclose(layer.weight.detach().numpy(), result.params[f"layer{k}.weight"],
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(layer.bias.detach().numpy(), result.params[f"layer{k}.bias"],
                                   rtol=1e-9, atol=1e-12)
    api.check_nm(api.to_block_layout(model.layers[1].weight.detach()), 2, 4)
