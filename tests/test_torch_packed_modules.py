"""Packed inference modules (backends/torch/packed_modules.py) and torch's host spmm path
(backends/torch/spmm_host.py), SPEC S3.6."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikenm import api
from spikenm.backends.torch import packed_modules as pm
from spikenm.backends.torch import spmm_host
from spikenm.backends.torch.nn import sparsify
from torch_helpers import module_path_steps


def _make_nm(mod: nn.Module, n: int = 2, m: int = 4) -> nn.Module:
    """Zero all but the n largest of every m inputs of ``mod``'s weight, in place."""
    with torch.no_grad():
        blocks = api.to_block_layout(mod.weight)
        keep = api.topn_mask(blocks.abs(), n, m)
        mod.weight.copy_(api.from_block_layout(blocks * keep))
    return mod


def _spikes(*shape: int, rate: float = 0.2, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return (torch.rand(*shape) < rate).to(dtype)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _count_host_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = pm.spmm_on_host

    def counting(*args: object) -> torch.Tensor:
        calls.append(1)
        return real(*args)
    monkeypatch.setattr(pm, "spmm_on_host", counting)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(24,), (1, 24), (5, 24), (3, 2, 24)])
def test_linear_matches_dense_on_spikes_and_floats(shape: tuple[int, ...], dtype: torch.dtype,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    lin = _make_nm(nn.Linear(24, 7).to(dtype))
    packed = pm.pack_model(lin, 2, 4)
    assert isinstance(packed, pm.PackedLinear)
    assert packed.values.shape == (7, 12) and packed.indices.dtype == torch.uint8
    calls = _count_host_calls(monkeypatch)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    with torch.no_grad():
        for x in (_spikes(*shape, dtype=dtype), torch.randn(*shape, dtype=dtype)):
            got = packed(x)
            assert got.shape == lin(x).shape and got.dtype == dtype
            torch.testing.assert_close(got, lin(x), atol=tol, rtol=tol)
    assert len(calls) == 2  # both ran the reference kernels, none fell back


def test_conv2d_and_conv1d_match_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_host_calls(monkeypatch)
    cases = [
        (_make_nm(nn.Conv2d(8, 6, 3, padding=1, stride=2)), _spikes(2, 8, 9, 7)),
        (_make_nm(nn.Conv2d(8, 6, (3, 1), padding="same", dilation=(2, 1), bias=False)),
         torch.randn(2, 8, 6, 5)),
        (_make_nm(nn.Conv2d(4, 5, 2, padding="valid")), _spikes(1, 4, 5, 5)),
        (_make_nm(nn.Conv1d(8, 4, 3, padding=2, dilation=2)), torch.randn(3, 8, 11)),
    ]
    with torch.no_grad():
        for conv, x in cases:
            packed = pm.pack_model(conv, 2, 4)
            assert isinstance(packed, pm.PackedConv)
            torch.testing.assert_close(packed(x), conv(x), atol=1e-5, rtol=1e-5)
    assert len(calls) == len(cases)


def test_gradient_to_the_input_uses_the_dense_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    lin = _make_nm(nn.Linear(16, 4))
    packed = pm.pack_model(lin, 2, 4)
    calls = _count_host_calls(monkeypatch)
    x1 = torch.randn(3, 16, requires_grad=True)
    x2 = x1.detach().clone().requires_grad_()
    packed(x1).square().sum().backward()
    lin(x2).square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    assert not calls
    assert packed.values.grad is None and not packed.bias.requires_grad


def test_sparsify_finalize_pack_model_keeps_the_outputs() -> None:
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 4))
    handle = sparsify(model, 2, 4, total_steps=3)
    x = torch.randn(8, 16)
    module_path_steps(model, handle, x, 3)
    handle.finalize()
    packed = pm.pack_model(model, 2, 4, dense=handle.dense)
    kinds = [type(mod).__name__ for mod in packed]
    assert kinds == ["Linear", "ReLU", "PackedLinear", "ReLU", "Linear"]
    with torch.no_grad():
        torch.testing.assert_close(packed(x), model(x), atol=1e-5, rtol=1e-5)
    assert isinstance(model[2], nn.Linear)  # the original is not changed


def test_state_dict_round_trip_and_in_place_change_is_not_stale() -> None:
    lin = _make_nm(nn.Linear(8, 3))
    a = pm.pack_model(lin, 2, 4)
    b = pm.pack_model(_make_nm(nn.Linear(8, 3)), 2, 4)
    b.load_state_dict(a.state_dict())
    x = _spikes(4, 8, rate=0.5)
    with torch.no_grad():
        torch.testing.assert_close(b(x), a(x))
        before = a(x)
        a.values.mul_(2.0)  # in place: the cached host views must not be reused
        torch.testing.assert_close(a(x) - a.bias, 2 * (before - a.bias))
        xg = x.clone()
    torch.testing.assert_close(a(xg.requires_grad_()).detach() - a.bias,
                               2 * (before - a.bias))  # dense fallback sees it too


def test_refusals_name_the_layer() -> None:
    not_nm = nn.Sequential(nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"0.weight is not 2:4.*list '0' in dense="):
        pm.pack_model(not_nm, 2, 4)
    for mod, match in ((_make_nm(nn.Conv3d(4, 2, 1)), "Conv3d"),
                       (_make_nm(nn.Conv2d(8, 4, 1, groups=2)), "groups=2"),
                       (_make_nm(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect")),
                        "padding_mode='reflect'"),
                       (_make_nm(nn.Conv2d(4, 4, 2, padding="same")), "asymmetrically")):
        with pytest.raises(ValueError, match=match):
            pm.pack_model(nn.Sequential(mod), 2, 4)
    packed = pm.pack_model(_make_nm(nn.Linear(8, 3)), 2, 4)
    with pytest.raises(ValueError, match=r"8 features.*\(2, 6\)"):
        packed(torch.zeros(2, 6))
    conv = pm.pack_model(_make_nm(nn.Conv2d(4, 2, 1)), 2, 4)
    with pytest.raises(ValueError, match=r"\(batch, 4, \*spatial\)"):
        conv(torch.zeros(1, 3, 2, 2))
    with pytest.raises(TypeError, match="Packed"):
        pm.PackedLinear(torch.zeros(3, 8), None)  # type: ignore[arg-type]


def test_torch_api_spmm_runs_the_reference_kernels_on_cpu() -> None:
    w = torch.randn(12, 16)
    w[:, 1::2] = 0
    p = api.pack(w, 2, 4)
    dense = api.unpack(p)
    for x in (_spikes(16), _spikes(16, 5), _spikes(5, 16).T, torch.randn(16, 3),
              _spikes(16, 70, rate=0.5)):
        torch.testing.assert_close(api.spmm(p, x), dense @ x, atol=1e-5, rtol=1e-5)
    assert spmm_host.runs_on_host(p.values, p.indices, torch.zeros(16))
    assert not spmm_host.runs_on_host(p.values.half(), p.indices, torch.zeros(16).half())
    v1 = spmm_host.host_view(p.values)
    assert spmm_host.host_view(p.values) is v1  # cached: the event kernel's cache hits


def test_to_sparse_semi_structured_refusals_on_this_machine() -> None:
    w = torch.randn(32, 64).half()
    w[:, 1::2] = 0
    p = api.pack(w, 2, 4)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="need a CUDA device; got 'cpu'"):
            pm.to_sparse_semi_structured(p, "cpu")
        with pytest.raises(ValueError, match="CUDA available: False"):
            pm.to_sparse_semi_structured(p)
    with pytest.raises(ValueError, match="2-D 2:4 weight"):
        pm.to_sparse_semi_structured(api.pack(w, 4, 8))
    with pytest.raises(TypeError, match="Packed"):
        pm.to_sparse_semi_structured(w)  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_to_sparse_semi_structured_on_cuda() -> None:
    w = torch.randn(64, 128).half()
    w[:, 1::2] = 0
    sparse = pm.to_sparse_semi_structured(api.pack(w, 2, 4))
    x = torch.randn(128, 16).half().cuda()
    torch.testing.assert_close(torch.mm(sparse, x).cpu(), (w.cuda() @ x).cpu(),
                               atol=1e-2, rtol=1e-2)
