"""The fused sampler (SPEC S1.3-S1.5): torch's one-node ``autograd.Function`` in the
``(m, B)`` layout, JAX's ``custom_vjp``, traced temperature and scale in the public api,
and the benchmark module's candidate matrix.  Results only, never timings."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from spikenm.backends.jax import sampler as js
from spikenm.backends.torch import sampler as ts
from spikenm import api
from spikenm.bench import sampler as bench
from spikenm.reference import sampler as ref

PATTERNS = [(1, 4), (2, 4), (3, 4), (4, 4), (2, 8), (4, 8), (8, 16)]


def _close(got: np.ndarray, want: np.ndarray, dtype: np.dtype, scaled: bool) -> None:
    """S0.6: ``|a - b| <= atol + rtol |b|``; gradients scaled by their largest magnitude."""
    rtol = 4 * math.sqrt(np.finfo(dtype).eps)
    if scaled:
        top = max(float(np.abs(want).max()), np.finfo(dtype).tiny)
        got, want = got / top, want / top
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def _data(shape: tuple[int, ...], dtype: np.dtype, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal(shape) * 2).astype(dtype)
    noise = api.gumbel_like(logits, seed + 1)
    cot = rng.standard_normal(shape).astype(dtype)
    return logits, noise, cot


@pytest.mark.parametrize("n,m", PATTERNS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("hard", [True, False])
def test_S1_3_S1_5_torch_node_matches_reference(n: int, m: int, dtype: type, hard: bool,
                                               torch_one_thread: None) -> None:
    """Values (exact for the hard mask) and the logits' gradient ``scale * VJP_s`` of the
    torch autograd node equal the reference within S0.6, also on a 3-d input."""
    logits, noise, cot = _data((3, 2, 4 * m), dtype, 7 * n + m)
    x = torch.from_numpy(logits).requires_grad_()
    y = ts.sample_mask(x, torch.from_numpy(noise), n, m, 0.7, 1.5, hard)
    y.backward(torch.from_numpy(cot))
    want = ref.sample_mask(logits, noise, n, m, 0.7, 1.5, hard)
    if hard:
        np.testing.assert_array_equal(y.detach().numpy(), want)
    else:
        _close(y.detach().numpy(), want, np.dtype(dtype), False)
    grad = ref.sample_mask_vjp(logits, noise, n, m, 0.7, 1.5, hard, cot)
    _close(x.grad.numpy(), grad, np.dtype(dtype), True)
    vjp = ts.sample_mask_vjp(x.detach(), torch.from_numpy(noise), n, m, 0.7, 1.5, hard,
                             torch.from_numpy(cot))
    _close(vjp.numpy(), grad, np.dtype(dtype), True)
    keys = torch.from_numpy(ref.relaxed_topn(logits, n, m, 0.3))
    s = ts.relaxed_topn(torch.from_numpy(logits), n, m, 0.3)
    _close(s.numpy(), keys.numpy(), np.dtype(dtype), False)
    _close(ts.relaxed_topn_vjp(torch.from_numpy(logits), n, m, 0.3, torch.from_numpy(cot))
           .numpy(), ref.relaxed_topn_vjp(logits, n, m, 0.3, cot), np.dtype(dtype), True)


def test_S1_3_S1_5_picked_entries_and_ties(torch_one_thread: None) -> None:
    """The -inf rule of S1.3 (float32 keys spanning more than 87), the tie rule of S1.2
    (lower index wins, ``-0.0 == 0.0``) and the zero gradient through a picked entry."""
    v = torch.tensor([[100.0, 50.0, 0.0, -10.0], [0.0, -0.0, 0.0, 1.0]],
                     requires_grad=True)
    s = ts.relaxed_topn(v, 3, 4, 1.0)
    np.testing.assert_allclose(s.detach().numpy()[0], ref.relaxed_topn(
        v.detach().numpy()[:1], 3, 4, 1.0)[0], rtol=1e-6, atol=1e-6)
    assert s.detach()[0, :3].min() > 0.99
    h = ts.topn_mask(v, 2, 4)
    assert h.tolist() == [[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0]]
    cot = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.0]])
    s.backward(cot)
    want = ref.relaxed_topn_vjp(v.detach().numpy(), 3, 4, 1.0, cot.numpy())
    assert np.isfinite(v.grad.numpy()).all()
    _close(v.grad.numpy(), want, np.dtype(np.float32), True)


def test_S1_2_torch_topn_matches_reference_with_many_ties(torch_one_thread: None) -> None:
    """Hard masks in the (m, B) layout equal the reference exactly on heavily tied keys."""
    rng = np.random.default_rng(3)
    for n, m in PATTERNS + [(3, 32), (1, 256), (200, 256)]:
        v = rng.integers(-2, 3, size=(5, 8 * m)).astype(np.float32)
        np.testing.assert_array_equal(ts.topn_mask(torch.from_numpy(v), n, m).numpy(),
                                      ref.topn_mask(v, n, m))


def test_S1_4_S1_5_torch_node_compiles_fullgraph(torch_one_thread: None) -> None:
    """The node traces under torch.compile(fullgraph=True) for both outputs and both
    entry points, values and gradients equal to eager."""
    torch._dynamo.reset()
    logits, noise, cot = _data((4, 32), np.float32, 11)
    g, c = torch.from_numpy(noise), torch.from_numpy(cot)

    def step(x: torch.Tensor) -> torch.Tensor:
        return ((ts.sample_mask(x, g, 4, 8, 0.5, 2.0, True) * c).sum()
                + (ts.sample_mask(x, g, 2, 4, 0.5, 1.0, False) * c).sum()
                + (ts.relaxed_topn(x, 2, 8, 0.25) * c).sum())

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    x1 = torch.from_numpy(logits).requires_grad_()
    x2 = torch.from_numpy(logits.copy()).requires_grad_()
    y1, y2 = compiled(x1), step(x2)
    y1.backward()
    y2.backward()
    assert torch.equal(y1, y2) and torch.equal(x1.grad, x2.grad)


def test_S1_4_torch_node_under_vmap_and_no_grad(torch_one_thread: None) -> None:
    """torch.func.vmap over the node (forward) and torch.no_grad (no steps kept) give
    the per-example results."""
    logits, noise, _ = _data((3, 16), np.float64, 5)
    x, g = torch.from_numpy(logits), torch.from_numpy(noise)
    batched = torch.func.vmap(lambda a, b: ts.sample_mask(a, b, 2, 4, 0.5, 1.0, False))(x, g)
    with torch.no_grad():
        each = torch.stack([ts.sample_mask(x[i], g[i], 2, 4, 0.5, 1.0, False)
                            for i in range(3)])
    assert torch.equal(batched, each)


def test_S1_5_torch_node_under_func_transforms(torch_one_thread: None) -> None:
    """torch.func.vjp and torch.func.grad through the node give the S1.5 gradient (the
    steps are kept although the transforms hide requires_grad)."""
    logits, noise, cot = _data((2, 16), np.float64, 13)
    x, g, c = torch.from_numpy(logits), torch.from_numpy(noise), torch.from_numpy(cot)
    _, pullback = torch.func.vjp(lambda l: ts.sample_mask(l, g, 2, 4, 0.5, 1.5, True), x)
    want = ref.sample_mask_vjp(logits, noise, 2, 4, 0.5, 1.5, True, cot)
    _close(pullback(c)[0].numpy(), want, np.dtype(np.float64), True)
    grad = torch.func.grad(lambda l: (ts.relaxed_topn(l, 2, 4, 0.5) * c).sum())(x)
    _close(grad.numpy(), ref.relaxed_topn_vjp(logits, 2, 4, 0.5, cot), np.dtype(np.float64),
           True)


@pytest.mark.parametrize("n,m", [(1, 4), (2, 4), (3, 4), (4, 8), (8, 16)])
def test_S1_5_jax_custom_vjp_matches_reference(n: int, m: int) -> None:
    """JAX's custom_vjp gives S1.5's gradient (float32, within S0.6) under jax.jit."""
    logits, noise, cot = _data((2, 4 * m), np.float32, 3 * n + m)
    grad = jax.jit(jax.grad(lambda l: jnp.sum(js.sample_mask(
        l, jnp.asarray(noise), n, m, 0.7, 1.5, True) * jnp.asarray(cot))))
    want = ref.sample_mask_vjp(logits, noise, n, m, 0.7, 1.5, True, cot)
    _close(np.asarray(grad(jnp.asarray(logits))), want, np.dtype(np.float32), True)


def test_S1_5_jax_temperature_cotangent_is_the_derivative() -> None:
    """The custom_vjp's temperature cotangent matches a central difference (float32 with
    a wide step), and it is finite where entries were picked for good (-inf keys)."""
    logits, _, cot = _data((2, 16), np.float32, 21)
    v, c = jnp.asarray(logits), jnp.asarray(cot)

    def f(t: jax.Array) -> jax.Array:
        return jnp.sum(js.relaxed_topn(v, 2, 4, t) * c)

    got = float(jax.grad(f)(jnp.float32(0.8)))
    h = 1e-2
    want = float((f(jnp.float32(0.8 + h)) - f(jnp.float32(0.8 - h))) / (2 * h))
    assert abs(got - want) <= 2e-2 * max(1.0, abs(want))
    picked = jnp.asarray([[100.0, 50.0, 0.0, -10.0]])
    assert np.isfinite(float(jax.grad(
        lambda t: jnp.sum(js.relaxed_topn(picked, 3, 4, t) * jnp.arange(4.0)))(1.0)))


def test_S0_5_api_traced_temperature_compiles_once() -> None:
    """Annealing temperature and scale inside one jax.jit function through the public
    api compiles once for 10 temperatures, and each result equals the eager api's."""
    logits, noise, cot = _data((4, 16), np.float32, 9)
    l, g, c = jnp.asarray(logits), jnp.asarray(noise), jnp.asarray(cot)
    traces: list[int] = []

    @jax.jit
    def step(x: jax.Array, tau: jax.Array) -> tuple[jax.Array, jax.Array]:
        traces.append(1)
        loss = lambda y: jnp.sum(api.sample_mask(y, 2, 4, noise=g, temperature=tau,
                                                 scale=2 * tau) * c)
        return loss(x), jax.grad(loss)(x)

    for k in range(10):
        tau = 0.3 + 0.1 * k
        value, grad = step(l, jnp.float32(tau))
        eager = api.sample_mask(l, 2, 4, noise=g, temperature=tau, scale=2 * tau)
        assert float(value) == pytest.approx(float(jnp.sum(eager * c)), rel=1e-6)
        want = ref.sample_mask_vjp(logits, noise, 2, 4, tau, 2 * tau, True, cot)
        _close(np.asarray(grad), want, np.dtype(np.float32), True)
    assert len(traces) == 1
    probs = jax.jit(lambda s: api.block_probs(l, 4, scale=s))
    loss = jax.jit(lambda s: api.eid_loss(l, jnp.full_like(l, 0.25), 4, scale=s))
    soft = jax.jit(lambda t: api.relaxed_topn(l, 2, 4, temperature=t))
    for s in (0.5, 2.0):
        np.testing.assert_allclose(np.asarray(probs(s)), ref.block_probs(logits, 4, s),
                                   rtol=1.4e-3, atol=1.4e-3)
        assert loss(s).dtype == jnp.float32 and soft(s).dtype == jnp.float32
        np.testing.assert_allclose(float(loss(s)), float(api.eid_loss(
            logits, np.full_like(logits, 0.25), 4, scale=s)), rtol=1.4e-3, atol=1.4e-3)
        np.testing.assert_allclose(np.asarray(soft(s)), ref.relaxed_topn(logits, 2, 4, s),
                                   rtol=1.4e-3, atol=1.4e-3)


def test_S0_5_api_array_scalars_are_checked() -> None:
    """A concrete 0-d JAX temperature is validated like a number; a traced one keeps the
    arrays' dtype; wrong shapes, dtypes and frameworks raise."""
    l = jnp.zeros((2, 8), jnp.float32)
    g = jnp.asarray(api.gumbel_like(np.zeros((2, 8), np.float32), 0))
    with pytest.raises(ValueError, match="temperature must be finite and > 0"):
        api.sample_mask(l, 2, 4, noise=g, temperature=jnp.float32(-1.0))
    with pytest.raises(ValueError, match="scale must be finite and > 0, got nan"):
        api.sample_mask(l, 2, 4, noise=g, scale=jnp.float32(np.nan))
    with pytest.raises(ValueError, match="0-d array"):
        api.sample_mask(l, 2, 4, noise=g, temperature=jnp.ones(2))
    with pytest.raises(TypeError, match="bool"):
        api.sample_mask(l, 2, 4, noise=g, temperature=jnp.array(True))
    with pytest.raises(TypeError, match="temperature must be a real number"):
        api.sample_mask(np.zeros((2, 8)), 2, 4, noise=np.zeros((2, 8)),
                        temperature=jnp.float32(0.5))
    with pytest.raises(TypeError, match="0-d jax array"):
        api.sample_mask(l, 2, 4, noise=g, temperature=np.full((), 0.5))
    out = jax.jit(lambda t: api.sample_mask(l, 2, 4, noise=g, temperature=t, hard=False))(
        jnp.asarray(0.5, jnp.float32))
    assert out.dtype == jnp.float32
    assert api.sample_mask(l, 2, 4, noise=g, temperature=jnp.float32(0.5)).dtype == l.dtype


def test_bench_candidates_are_every_n_of_m_mask() -> None:
    """The MaskLLM-style contender's candidate matrix holds each n-of-m mask once."""
    for n, m in [(2, 4), (4, 8), (8, 16)]:
        p = bench.candidates(n, m)
        assert p.shape == (math.comb(m, n), m) and (p.sum(1) == n).all()
        assert len({row.tobytes() for row in p}) == p.shape[0]
