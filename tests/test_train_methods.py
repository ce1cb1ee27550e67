"""Method pieces (SPEC S5.4, S5.7, S6.4, S6.6): MaskLLM relaxation and its gradient, the
optimizers, phases and the flip rate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spikenm import api
from spikenm.reference import snn
from spikenm.train import maskllm, methods
from spikenm.train.config import load_config
from spikenm.train.model_backend import LayerParams
from spikenm.optim import OptHyper, opt_init, opt_update


def test_candidates_S6_6() -> None:
    c = maskllm.candidates(2, 4)
    assert c.shape == (6, 4) and (c.sum(axis=1) == 2).all()
    assert c[0].tolist() == [1, 1, 0, 0] and c[-1].tolist() == [0, 0, 1, 1]
    assert maskllm.candidates(4, 8).shape == (math.comb(8, 4), 8)
    assert maskllm.logits_shape((3, 16), 2, 8) == (3, 2 * 28)


def test_maskllm_soft_mask_and_vjp_match_finite_differences() -> None:
    rng = np.random.default_rng(0)
    cands = maskllm.CandidateMatrices(2, 4, np.asarray, "float64")
    phi = rng.normal(size=(3, 2 * 6))
    noise = rng.gumbel(size=phi.shape)
    cot = rng.normal(size=(3, 8))
    tau, kappa = 0.7, 1.3
    mask, y = maskllm.soft_mask(phi, noise, cands, tau, kappa)
    assert np.allclose(mask.reshape(3, 2, 4).sum(-1), 2.0)
    grad = maskllm.soft_mask_vjp(y, cot, cands, tau, kappa)
    eps = 1e-6
    for idx in [(0, 0), (1, 5), (2, 11), (2, 7)]:
        p, m = phi.copy(), phi.copy()
        p[idx] += eps
        m[idx] -= eps
        fd = ((maskllm.soft_mask(p, noise, cands, tau, kappa)[0] * cot).sum()
              - (maskllm.soft_mask(m, noise, cands, tau, kappa)[0] * cot).sum()) / (2 * eps)
        assert abs(fd - grad[idx]) < 1e-7


def test_maskllm_hard_mask_is_the_best_candidate() -> None:
    cands = maskllm.CandidateMatrices(2, 4, np.asarray, "float64")
    scores = np.array([[0.0, 0.0, 5.0, 0.0, 0.0, 1.0]])
    assert maskllm.hard_mask(scores, cands).tolist() == [[1.0, 0.0, 0.0, 1.0]]


def test_adam_matches_the_formula_S5_7() -> None:
    p, g = np.array([1.0, -2.0]), np.array([0.5, 0.1])
    state = opt_init("adam", [p])
    (p1,), state = opt_update([p], [g], state, OptHyper(lr=0.1, decay=(0.01,)))
    g2 = g + 0.01 * p
    m, v = 0.1 * g2, 0.001 * g2 * g2
    expected = p - 0.1 * (m / 0.1) / (np.sqrt(v / 0.001) + 1e-8)
    assert np.allclose(p1, expected) and state.count == 1
    sgd = opt_init("sgd", [p])
    (q,), sgd = opt_update([p], [g], sgd, OptHyper(lr=0.5, momentum=0.9))
    (q,), sgd = opt_update([q], [g], sgd, OptHyper(lr=0.5, momentum=0.9))
    assert np.allclose(q, p - 0.5 * g - 0.5 * 1.9 * g)
    with pytest.raises(ValueError, match="unknown optimizer"):
        opt_init("lion", [p])


def _ctx(method: str, pattern: str = "2:4", epochs: int = 2):  # type: ignore[no-untyped-def]
    cfg = load_config(None, [f"sparsity.method={method}", f"sparsity.pattern={pattern}",
                             f"optim.epochs={epochs}"])
    return methods.make_context(cfg, snn, (1,), {1: (8, 16)}, total_steps=10)


def test_phases_S5_8_S6_5() -> None:
    assert [methods.phase_of(_ctx("spikenm"), s) for s in (0, 7, 8, 9)] == \
        ["search", "search", "fixed", "fixed"]
    assert [methods.phase_of(_ctx("asp"), s) for s in (0, 4, 5)] == ["dense", "dense", "fixed"]
    assert methods.phase_of(_ctx("srste"), 3) == "srste"
    assert methods.phase_of(_ctx("random"), 0) == "fixed"
    assert methods.phase_of(_ctx("dense"), 0) == "dense"


def test_srste_gradient_S6_4() -> None:
    ctx = _ctx("srste")
    rng = np.random.default_rng(1)
    w = rng.normal(size=(8, 16))
    params = [LayerParams(np.zeros((16, 4)), np.zeros(16)), LayerParams(w, np.zeros(8))]
    state = methods.init_mask_state(ctx)
    state, sm = methods.prepare_masks(ctx, state, params, 0)
    mask = sm.masks[1]
    assert np.array_equal(mask, api.topn_mask(np.abs(w), 2, 4))
    g = rng.normal(size=w.shape)
    grads = (LayerParams(np.zeros((16, 4)), np.zeros(16)), LayerParams(g, np.zeros(8)))
    wg, lg, _ = methods.mask_gradients(ctx, state, sm, params, grads, {}, 0)
    assert np.allclose(wg[1].weight, g + 2e-4 * (1 - mask) * w) and lg == {}


def test_spikenm_masks_and_gradients_S5_3_S5_4_S5_5() -> None:
    ctx = _ctx("spikenm")
    rng = np.random.default_rng(2)
    w = rng.normal(size=(8, 16))
    params = [LayerParams(np.zeros((16, 4)), np.zeros(16)), LayerParams(w, np.zeros(8))]
    state = methods.init_mask_state(ctx)
    assert np.array_equal(state.logits[1], np.zeros((8, 16)))
    state, sm = methods.prepare_masks(ctx, state, params, 3)
    h = sm.masks[1]
    assert (h.reshape(-1, 4).sum(1) == 2).all()
    g = rng.normal(size=w.shape)
    grads = (LayerParams(np.zeros((16, 4)), np.zeros(16)), LayerParams(g, np.zeros(8)))
    credits = {1: np.abs(rng.normal(size=w.shape))}
    wg, lg, new = methods.mask_gradients(ctx, state, sm, params, grads, credits, 3)
    assert np.allclose(wg[1].weight, g * h)
    from spikenm.reference import sample_mask_vjp, eid_loss_vjp
    task = sample_mask_vjp(state.logits[1], sm.aux[1], 2, 4, sm.temperature, sm.scale, True,
                           g * w)
    from spikenm.schedules import schedule_value
    tau_e = schedule_value("exp", 1.0, 0.05, 3, ctx.search_steps)
    q = api.eid_targets(credits[1], 4, temperature=tau_e)
    lam = min(1.0, 4 / (0.1 * ctx.search_steps))
    eid = eid_loss_vjp(state.logits[1], q, 4, sm.scale, np.array(1.0))
    assert np.allclose(lg[1], task + lam * eid)
    assert np.array_equal(new.credits[1], credits[1])  # C = c at the first update (S2.4)


def test_flip_count_S5_9() -> None:
    state = methods.MaskState()
    a = np.array([[1.0, 1.0, 0.0, 0.0]])
    b = np.array([[1.0, 0.0, 1.0, 0.0]])
    sm = methods.StepMasks("search", {}, {1: a}, {})
    changed, total, state = methods.flip_count(state, sm)
    assert (changed, total) == (0.0, 0)
    changed, total, state = methods.flip_count(state, methods.StepMasks("search", {}, {1: b}, {}))
    assert (changed, total) == (2.0, 4)


def test_random_mask_is_fixed_and_uniform_S6_7() -> None:
    ctx = _ctx("random", "1:4")
    state = methods.init_mask_state(ctx)
    mask = state.fixed[1]
    assert (mask.reshape(-1, 4).sum(1) == 1).all()
    again = methods.init_mask_state(ctx)
    assert np.array_equal(again.fixed[1], mask)
