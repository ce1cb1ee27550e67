"""The mask methods as objects (SPEC S6.0-S6.7, S5.3-S5.9): registry, masks, gradients,
final masks, state, and the pieces they share."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spikenm import api, eid_variants
from spikenm.methods import (BUILTIN, MethodSetup, MethodState, StepMasks, check_method,
                             is_import_path, load_method)
from spikenm.methods import blocks, flips, maskllm
from spikenm.methods.common import Ramp, adam_step, block_shape
from spikenm.methods.spikenm import SpikeNM
from spikenm.optim import OptHyper, opt_init, opt_update
from spikenm.reference import eid_loss_vjp, sample_mask_vjp
from spikenm.schedules import schedule_value
from spikenm.train.checkpoint import load_checkpoint, save_checkpoint
from spikenm.train.config import TrainConfig, load_config

SHAPES = {1: (8, 16), 2: (4, 8, 3, 3)}


def _setup(n: int = 2, m: int = 4, total: int = 10, dtype: str = "float64") -> MethodSetup:
    return MethodSetup(n, m, (1, 2), SHAPES, total, 0, dtype, np.asarray)


def _weights(seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: rng.normal(size=s) for k, s in SHAPES.items()}


def _method(name: str, *overrides: str):  # type: ignore[no-untyped-def]
    return load_method(name, load_config(None, list(overrides)))


# -- registry ---------------------------------------------------------------------------

def test_registry_has_one_module_per_builtin_S6_0() -> None:
    assert sorted(BUILTIN) == ["asp", "dense", "maskllm", "random", "spikenm", "srste"]
    for name in BUILTIN:
        method = load_method(name)
        assert method.name == name
        assert check_method(method, name) is method
    assert BUILTIN["random"] == "spikenm.methods.random_mask"  # not the stdlib's random


def test_from_config_of_the_defaults_equals_the_constructor_defaults() -> None:
    for name in BUILTIN:
        assert load_method(name, TrainConfig()) == load_method(name)


def test_from_config_reads_the_sections() -> None:
    m = _method("spikenm", "eid.enabled=false", "sampler.logit_lr=0.2",
                "sparsity.search_fraction=0.5", "eid.momentum=0.5")
    assert (m.eid, m.logit_lr, m.search_fraction, m.eid_momentum) == (False, 0.2, 0.5, 0.5)
    assert _method("srste", "baselines.srste_decay=0.01").decay == 0.01
    assert _method("asp", "baselines.asp_dense_fraction=0.25").dense_fraction == 0.25
    ml = _method("maskllm", "baselines.maskllm_logit_lr=0.01", "baselines.maskllm_scale_end=9")
    assert ml.logit_lr == 0.01 and ml.scale == Ramp(100.0, 9.0, "linear")


@pytest.mark.parametrize("spec, error, needle", [
    ("magic", ValueError, "unknown method 'magic'"),
    ("no_such_module_xyz:METHOD", ValueError, "could not be imported"),
    ("spikenm.methods.dense:NOPE", ValueError, "has no attribute 'NOPE'"),
    ("spikenm.methods.dense", ValueError, "has no attribute 'METHOD'"),
    ("spikenm.methods.common:block_shape", TypeError, "expected a spikenm.methods.Method"),
    ("spikenm.methods.dense:Dense", TypeError, "expected a spikenm.methods.Method"),
    ("math:pi", TypeError, "lacking name"),
])
def test_bad_method_names_are_clear_errors(spec, error, needle) -> None:
    with pytest.raises(error) as info:
        load_method(spec, TrainConfig())
    assert needle in str(info.value)


def test_import_paths_and_config_validation() -> None:
    assert is_import_path("pkg.mod:METHOD") and is_import_path("pkg.mod")
    assert is_import_path("mod:ATTR.inner")
    assert not is_import_path("spikenm") and not is_import_path("a b:c")
    assert load_config(None, ["sparsity.method=pkg.mod:METHOD"]).sparsity.method == \
        "pkg.mod:METHOD"
    # a factory taking the configuration
    method = load_method("spikenm.methods.srste:from_config",
                         load_config(None, ["baselines.srste_decay=0.5"]))
    assert method.decay == 0.5


def test_method_hyper_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="search_fraction=0"):
        SpikeNM(search_fraction=0)
    with pytest.raises(ValueError, match="logit_lr"):
        SpikeNM(logit_lr=-1.0)
    with pytest.raises(ValueError, match="schedule 'step'"):
        Ramp(1.0, 2.0, "step")
    with pytest.raises(ValueError, match="decay"):
        load_method("srste").__class__(decay=-1.0)


# -- per method -------------------------------------------------------------------------

def test_phases_and_lr_windows_S5_8_S6_5() -> None:
    setup, w = _setup(), _weights()

    def phases(name: str) -> list[str]:
        method = load_method(name)
        state = method.init(setup, w)
        out = []
        for s in range(10):
            state, sm = method.masks(setup, state, w, s)
            out.append(sm.phase)
        return out

    assert phases("spikenm") == ["search"] * 8 + ["fixed"] * 2
    assert phases("maskllm") == ["search"] * 8 + ["fixed"] * 2
    assert phases("asp") == ["dense"] * 5 + ["fixed"] * 5
    assert phases("srste") == ["srste"] * 10
    assert phases("random") == ["fixed"] * 10
    assert phases("dense") == ["dense"] * 10
    asp = load_method("asp")
    state = asp.init(setup, w)
    seen = []
    for s in range(10):
        state, sm = asp.masks(setup, state, w, s)
        seen.append((sm.reset_optimizer, sm.lr_window, sm.fixed))
    assert seen[4] == (False, (0, 5), False) and seen[5] == (True, (5, 5), True)
    assert seen[6] == (False, (5, 5), True)  # the optimizer is reset once


def test_asp_without_fine_tuning_steps_is_an_error() -> None:
    with pytest.raises(ValueError, match="asp needs fine-tuning steps"):
        load_method("asp").init(_setup(total=1), _weights())


def test_maskllm_refuses_a_dense_pattern() -> None:
    with pytest.raises(ValueError, match="maskllm needs n < m"):
        load_method("maskllm").init(_setup(4, 4), _weights())


def test_srste_masks_and_gradient_S6_4() -> None:
    setup, w = _setup(), _weights(1)
    method = load_method("srste")
    state = method.init(setup, w)
    state, sm = method.masks(setup, state, w, 0)
    for k in w:
        assert np.array_equal(sm.masks[k], blocks.magnitude_mask(w[k], 2, 4))
        assert np.array_equal(api.to_block_layout(sm.masks[k]), sm.hard[k])
    g = {k: np.random.default_rng(2).normal(size=v.shape) for k, v in w.items()}
    wg = method.weight_grads(setup, sm, w, g)
    for k in w:
        assert np.allclose(wg[k], g[k] + 2e-4 * (1 - sm.masks[k]) * w[k])
    final = method.final_masks(setup, state, w)
    assert np.array_equal(final[2], api.from_block_layout(
        api.topn_mask(np.abs(api.to_block_layout(w[2])), 2, 4)))


@pytest.mark.parametrize("variant", eid_variants.VARIANTS)
def test_spikenm_masks_and_gradients_S5_3_S5_4_S5_5(variant: str) -> None:
    """One update equals the formulas for every EID variant (S2.11), with weight 1."""
    setup, w = _setup(), _weights(2)
    method = SpikeNM(eid_variant=variant, eid_weight=1.0)
    rng = np.random.default_rng(3)
    state = method.init(setup, w)
    assert np.array_equal(state.arrays["logits/2"], np.zeros((4, 3, 3, 8)))
    state, sm = method.masks(setup, state, w, 3)
    search = method.search_steps(10)
    tau = schedule_value("exp", 1.0, 0.2, 3, search)
    kappa = schedule_value("linear", 1.0, 10.0, 3, search)
    assert (sm.temperature, sm.scale, sm.credit_layers) == (tau, kappa, (1, 2))
    for k in w:
        h = api.sample_mask(state.arrays[f"logits/{k}"], 2, 4, noise=sm.aux[k],
                            temperature=tau, scale=kappa)
        assert np.array_equal(sm.masks[k], api.from_block_layout(h))
        assert (api.to_block_layout(sm.masks[k]).reshape(-1, 4).sum(1) == 2).all()
    g = {k: rng.normal(size=v.shape) for k, v in w.items()}
    credits = {k: np.abs(rng.normal(size=block_shape(v.shape))) for k, v in w.items()}
    wg = method.weight_grads(setup, sm, w, g)
    assert all(np.allclose(wg[k], g[k] * sm.masks[k]) for k in w)
    new = method.update(setup, state, sm, w, g, credits, 3)
    tau_e = schedule_value("exp", 1.0, 0.05, 3, search)
    lam = min(1.0, 4 / (0.1 * search))
    grads = {}
    for k in w:
        pi = state.arrays[f"logits/{k}"]
        task = sample_mask_vjp(pi, sm.aux[k], 2, 4, tau, kappa, True,
                               api.to_block_layout(g[k] * w[k]))
        q = api.eid_targets(credits[k], 4, temperature=tau_e, variant=variant, n=2,
                            logits=pi if variant in eid_variants.NEEDS_LOGITS else None,
                            scale=kappa)
        grads[k] = task + lam * eid_loss_vjp(pi, q, 4, kappa, np.array(1.0))
        assert np.array_equal(new.arrays[f"credit/{k}"], credits[k])  # C = c first (S2.4)
    (p1, p2), _ = opt_update([state.arrays["logits/1"], state.arrays["logits/2"]],
                             [grads[1], grads[2]], opt_init("adam", [grads[1], grads[2]]),
                             OptHyper(lr=0.05))
    assert np.allclose(new.arrays["logits/1"], p1) and np.allclose(new.arrays["logits/2"], p2)
    assert new.meta["logit_steps"] == 1
    # the second update folds the credit with momentum 0.9
    state2, sm2 = method.masks(setup, new, w, 4)
    c2 = {k: np.abs(rng.normal(size=block_shape(v.shape))) for k, v in w.items()}
    after = method.update(setup, state2, sm2, w, g, c2, 4)
    assert np.allclose(after.arrays["credit/1"], 0.9 * credits[1] + 0.1 * c2[1])


def test_spikenm_without_eid_requests_no_credits_S6_3() -> None:
    setup, w = _setup(), _weights()
    method = _method("spikenm", "eid.enabled=false")
    state = method.init(setup, w)
    state, sm = method.masks(setup, state, w, 0)
    assert sm.credit_layers == ()
    new = method.update(setup, state, sm, w, {k: np.ones_like(v) for k, v in w.items()},
                        {}, 0)
    assert not new.group("credit/") and method.eid_targets(setup, new, 1) == {}


def test_logit_grads_replace_the_vjp_but_credits_still_fold_S6_0() -> None:
    setup, w = _setup(), _weights(4)
    method = load_method("spikenm")
    state = method.init(setup, w)
    state, sm = method.masks(setup, state, w, 2)
    g = {k: np.ones_like(v) for k, v in w.items()}
    credits = {k: np.ones(block_shape(v.shape)) for k, v in w.items()}
    given = {k: np.full(block_shape(v.shape), 0.5) for k, v in w.items()}
    new = method.update(setup, state, sm, w, g, credits, 2, logit_grads=given)
    expected = adam_step(state, given, method.logit_lr)
    for k in w:
        assert np.array_equal(new.arrays[f"logits/{k}"], expected.arrays[f"logits/{k}"])
        assert np.array_equal(new.arrays[f"credit/{k}"], credits[k])


def test_spikenm_eid_targets_and_differentiable_masks() -> None:
    setup, w = _setup(), _weights(5)
    method = load_method("spikenm")
    state = method.init(setup, w)
    assert method.eid_targets(setup, state, 0) == {}  # before the first credit
    state, sm = method.masks(setup, state, w, 0)
    c = {k: np.abs(np.random.default_rng(k).normal(size=block_shape(v.shape)))
         for k, v in w.items()}
    state = method.update(setup, state, sm, w, {k: np.zeros_like(v) for k, v in w.items()},
                          c, 0)
    search = method.search_steps(10)
    targets = method.eid_targets(setup, state, 1)
    q, lam, kappa = targets[1]
    pi = state.arrays["logits/1"] if method.eid_variant in eid_variants.NEEDS_LOGITS else None
    assert np.allclose(q, api.eid_targets(c[1], 4, temperature=method.eid_temperature.at(
        1, search), variant=method.eid_variant, n=2, logits=pi, scale=method.scale.at(1, search)))
    assert lam == method.eid_weight * min(1.0, 2 / (0.1 * search))
    assert kappa == method.scale.at(1, search)
    assert method.eid_targets(setup, state, search) == {}  # the fixed phase has no EID
    state, sm = method.masks(setup, state, w, 1)
    again = method.masks_from_parameters(setup, sm, method.mask_parameters(state))
    assert all(np.array_equal(again[k], sm.masks[k]) for k in w)


def test_maskllm_soft_mask_and_vjp_match_finite_differences_S6_6() -> None:
    rng = np.random.default_rng(0)
    cands = maskllm.CandidateMatrices.build(2, 4, np.asarray, "float64")
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


def test_maskllm_candidates_and_hard_mask_S6_6() -> None:
    c = maskllm.candidates(2, 4)
    assert c.shape == (6, 4) and (c.sum(axis=1) == 2).all()
    assert c[0].tolist() == [1, 1, 0, 0] and c[-1].tolist() == [0, 0, 1, 1]
    assert maskllm.candidates(4, 8).shape == (math.comb(8, 4), 8)
    assert maskllm.logits_shape((3, 16), 2, 8) == (3, 2 * 28)
    cands = maskllm.CandidateMatrices.build(2, 4, np.asarray, "float64")
    scores = np.array([[0.0, 0.0, 5.0, 0.0, 0.0, 1.0]])
    assert maskllm.hard_mask(scores, cands).tolist() == [[1.0, 0.0, 0.0, 1.0]]


def test_maskllm_method_steps_S6_6() -> None:
    setup, w = _setup(), _weights(6)
    method = load_method("maskllm")
    state = method.init(setup, w)
    assert state.arrays["logits/1"].shape == (8, 4 * 6)
    state, sm = method.masks(setup, state, w, 0)
    assert (sm.temperature, sm.scale) == (4.0, 100.0)
    for k in w:
        assert np.allclose(api.to_block_layout(sm.masks[k]).reshape(-1, 4).sum(-1), 2.0)
        assert (sm.hard[k].reshape(-1, 4).sum(-1) == 2).all()
    g = {k: np.random.default_rng(k).normal(size=v.shape) for k, v in w.items()}
    new = method.update(setup, state, sm, w, g, {}, 0)
    assert not np.array_equal(new.arrays["logits/1"], state.arrays["logits/1"])
    final = method.final_masks(setup, new, w)
    for k in w:
        assert set(np.unique(final[k]).tolist()) <= {0.0, 1.0}
        assert (api.to_block_layout(final[k]).reshape(-1, 4).sum(-1) == 2).all()


def test_random_mask_is_fixed_and_uniform_S6_7() -> None:
    setup, w = _setup(1, 4), _weights()
    method = load_method("random")
    state = method.init(setup, w)
    mask = state.arrays["fixed/2"]
    assert (api.to_block_layout(mask).reshape(-1, 4).sum(1) == 1).all()
    assert np.array_equal(method.init(setup, w).arrays["fixed/2"], mask)
    other = MethodSetup(1, 4, (1, 2), SHAPES, 10, 1, "float64", np.asarray)
    assert not np.array_equal(method.init(other, w).arrays["fixed/2"], mask)
    _, sm = method.masks(setup, state, w, 7)
    assert sm.fixed and np.array_equal(sm.masks[2], mask)
    assert np.array_equal(method.final_masks(setup, state, w)[2], mask)


def test_dense_masks_nothing_S6_1() -> None:
    method = load_method("dense")
    assert method.uses_masks is False
    _, sm = method.masks(_setup(), MethodState(), _weights(), 0)
    assert sm.masks == {} and method.final_masks(_setup(), MethodState(), _weights()) == {}


# -- shared pieces ----------------------------------------------------------------------

def test_flip_count_S5_9() -> None:
    a = np.array([[1.0, 1.0, 0.0, 0.0]])
    b = np.array([[1.0, 0.0, 1.0, 0.0]])
    state = MethodState()
    assert flips.step_flips(state, StepMasks("search", hard={1: a})) == (None, 0)
    state = flips.remember(state, StepMasks("search", hard={1: a}))
    changed, compared = flips.step_flips(state, StepMasks("search", hard={1: b, 2: a}))
    assert float(changed) == 2.0 and compared == 4  # layer 2 has no previous mask yet
    assert flips.step_flips(state, StepMasks("fixed")) == (None, 0)
    assert flips.remember(state, StepMasks("fixed")) is state


def test_blocks_equal_the_checked_api() -> None:
    rng = np.random.default_rng(7)
    pi, noise = rng.normal(size=(4, 8)), rng.gumbel(size=(4, 8))
    c = np.abs(rng.normal(size=(4, 8)))
    assert np.array_equal(blocks.sample(pi, noise, 2, 4, 0.5, 2.0),
                          api.sample_mask(pi, 2, 4, noise=noise, temperature=0.5, scale=2.0))
    assert np.array_equal(blocks.topn(pi, 1, 4), api.topn_mask(pi, 1, 4))
    assert np.array_equal(blocks.targets("global", c, 2, 4, 0.3, None, 1.0),
                          api.eid_targets(c, 4, temperature=0.3))
    assert np.array_equal(blocks.probs(pi, 4, 2.0), api.block_probs(pi, 4, scale=2.0))
    assert np.array_equal(blocks.gumbel(pi, 3), api.gumbel_like(pi, 3))


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


@pytest.mark.parametrize("name", ["spikenm", "maskllm", "srste", "asp", "random"])
def test_state_round_trips_through_a_checkpoint_S5_12(name, tmp_path) -> None:
    """A method state saved after a few steps continues exactly like the original."""
    setup, w = _setup(total=12, dtype="float32"), _weights(8)
    w = {k: v.astype(np.float32) for k, v in w.items()}
    method = load_method(name)
    rng = np.random.default_rng(9)
    grads = [{k: rng.normal(size=v.shape).astype(np.float32) for k, v in w.items()}
             for _ in range(12)]
    credits = [{k: np.abs(rng.normal(size=block_shape(v.shape))).astype(np.float32)
                for k, v in w.items()} for _ in range(12)]

    def run(state: MethodState, start: int, stop: int) -> tuple[MethodState, list]:
        seen = []
        for s in range(start, stop):
            state, sm = method.masks(setup, state, w, s)
            seen.append({k: v.copy() for k, v in sm.masks.items()})
            state = method.update(setup, state, sm, w, grads[s], credits[s], s)
        return state, seen

    full, masks_full = run(method.init(setup, w), 0, 12)
    half, _ = run(method.init(setup, w), 0, 5)
    save_checkpoint(tmp_path / "m.npz", {k: np.asarray(v) for k, v in half.arrays.items()},
                    {"meta": dict(half.meta)})
    arrays, meta = load_checkpoint(tmp_path / "m.npz")
    restored = MethodState(arrays, meta["meta"])
    resumed, masks_resumed = run(restored, 5, 12)
    for a, b in zip(masks_full[5:], masks_resumed):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert sorted(full.arrays) == sorted(resumed.arrays) and full.meta == resumed.meta
    for key in full.arrays:
        assert np.array_equal(full.arrays[key], resumed.arrays[key]), key


@pytest.mark.parametrize("module_name", [
    "spikenm.methods", "spikenm.methods.flips", "spikenm.methods.common",
    "spikenm.methods.maskllm", "spikenm.train.setup", "spikenm.train.step",
    "spikenm.train.config"])
def test_docstring_examples_run(module_name: str) -> None:
    import doctest
    import importlib

    module = importlib.import_module(module_name)
    with np.printoptions(legacy=False):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
