"""Sampling-variance metrics of the trainer (SPEC S5.9a, S1.7, S1.9, S5.2)."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace

import numpy as np
import pytest

from spikenm import api, seeds
from spikenm.methods import MethodState
from spikenm.methods.common import CREDIT, LOGITS
from spikenm.train import variance as V
from spikenm.train.config import ConfigError, load_config
from spikenm.train.loop import initial_state, train
from spikenm.train.metrics import progress_line, summary_text
from spikenm.train.setup import build_setup
from spikenm.train.state import LogState, log_state_from_arrays, log_state_to_arrays

from network_helpers import HostCopyCounter

TINY = ["data.name=digits", "model.hidden=32,32", "optim.batch_size=64", "run.quiet=true",
        "run.eval_every=0", "optim.epochs=1", "run.log_every=5"]
MINI = ["data.name=digits", "data.train_limit=128", "data.test_limit=32",
        "model.hidden=16,16", "optim.batch_size=32", "run.quiet=true", "run.eval_every=0",
        "optim.epochs=1", "run.log_every=1", "run.dtype=float64"]


def test_docstring_examples_run() -> None:
    import doctest

    result = doctest.testmod(V, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


def brute_force_inclusion(v: np.ndarray, n: int) -> np.ndarray:
    """The literal S5.9a sum over the m!/(m-n)! ordered picks of every block."""
    out = np.zeros_like(v)
    for b, keys in enumerate(v):
        p = np.exp(keys - keys.max())
        p /= p.sum()
        for order in itertools.permutations(range(len(keys)), n):
            prob, left = 1.0, 1.0
            for i in order:
                prob *= p[i] / left
                left -= p[i]
            for i in order:
                out[b, i] += prob
    return out


# -- exact inclusion probabilities ------------------------------------------------------

@pytest.mark.parametrize("n, m", [(1, 4), (2, 4), (3, 4), (4, 4), (2, 5), (3, 6), (4, 8),
                                  (1, 8)])
def test_exact_inclusion_equals_the_sum_over_ordered_picks_S5_9a(n, m) -> None:
    rng = np.random.default_rng(n * 10 + m)
    logits = rng.normal(size=(3, 2 * m))
    rho, samples = V.inclusion_probabilities(logits, n, m, scale=1.7)
    assert samples == 0 and rho.shape == logits.shape and rho.dtype == np.float64
    expected = brute_force_inclusion(1.7 * logits.reshape(-1, m), n).reshape(logits.shape)
    np.testing.assert_allclose(rho, expected, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rho.reshape(-1, m).sum(1), n, rtol=1e-12)
    assert ((rho >= 0) & (rho <= 1 + 1e-12)).all()


def test_exact_inclusion_closed_forms_S1_7() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 8))
    p = api.block_probs(logits, 4, scale=2.0)
    rho, _ = V.inclusion_probabilities(logits, 1, 4, scale=2.0)
    np.testing.assert_allclose(rho, p, rtol=1e-12)  # n = 1: rho = p
    rho, _ = V.inclusion_probabilities(logits, 2, 4, scale=2.0)
    blocks = p.reshape(-1, 4)
    pair = np.array([[b[i] + sum(b[j] * b[i] / (1 - b[j]) for j in range(4) if j != i)
                      for i in range(4)] for b in blocks])  # S1.7's P({i, j}) summed
    np.testing.assert_allclose(rho.reshape(-1, 4), pair, rtol=1e-12)
    for n, m in [(1, 4), (2, 4), (3, 8), (5, 7), (2, 70)]:
        rho, samples = V.inclusion_probabilities(np.zeros((2, m)), n, m, scale=3.0)
        assert samples == 0
        np.testing.assert_allclose(rho, n / m, rtol=1e-12)  # uniform p: rho = n / m
    for n in (4, 8):  # n = m keeps every entry (8! = 40320 picks, exact all the same)
        rho, samples = V.inclusion_probabilities(rng.normal(size=(2, n)), n, n)
        np.testing.assert_allclose(rho, 1.0, rtol=1e-12)
        assert samples == 0


def test_exact_inclusion_with_zero_and_one_hot_probabilities() -> None:
    """p underflows to exact zeros (and to one-hot) at large logit gaps; rho stays the
    limit of finite logits, with no NaN."""
    logits = np.array([[0.0, -1e4, -1e4, 0.0], [1e4, 0.0, 0.0, 0.0],
                       [1e4, 5e3, 0.0, -3.0]])
    p = api.block_probs(logits, 4)
    assert (p == 0).any() and (p == 1).any()
    rho, _ = V.inclusion_probabilities(logits, 2, 4)
    np.testing.assert_allclose(rho, [[1, 0, 0, 1], [1, 1 / 3, 1 / 3, 1 / 3], [1, 1, 0, 0]],
                               atol=1e-15)
    rho, _ = V.inclusion_probabilities(logits, 3, 4)
    e = math.exp(3.0)
    np.testing.assert_allclose(rho, [[1, 0.5, 0.5, 1], [1, 2 / 3, 2 / 3, 2 / 3],
                                     [1, 1, e / (e + 1), 1 / (e + 1)]], atol=1e-15)
    rho, _ = V.inclusion_probabilities(logits, 1, 4)
    np.testing.assert_allclose(rho, p, rtol=1e-15, atol=1e-300)
    assert V.block_entropy(logits[1:2], 4).tolist() == [[0.0]]  # one-hot: H = 0


def test_exact_inclusion_matches_gumbel_top_n_of_the_sampler_S1_7() -> None:
    """Brute-force Monte Carlo with the library's own noise and top-n (S1.1, S1.2, S1.6)."""
    base = np.array([[1.2, -0.3, 0.4, 2.0, -1.0, 0.1, 0.0, 0.7]])
    for n, m in [(2, 4), (3, 8)]:
        reps = 20000
        tiled = np.tile(base, (reps, 1))
        noise = api.gumbel_like(tiled, 11)
        kept = api.topn_mask(1.5 * tiled + noise, n, m).mean(axis=0)
        rho, _ = V.inclusion_probabilities(base, n, m, scale=1.5)
        se = np.sqrt(rho[0] * (1 - rho[0]) / reps)
        assert (np.abs(kept - rho[0]) <= 4.5 * se + 1e-12).all(), (kept, rho)


# -- the Monte Carlo path ------------------------------------------------------------------

def test_monte_carlo_path_agrees_with_exact_within_its_standard_error_S5_9a() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 16))
    assert V.ordered_picks(4, 16) == 43680 > V.EXACT_LIMIT
    assert V.ordered_picks(7, 7) == 5040 == V.EXACT_LIMIT
    rho, samples = V.inclusion_probabilities(logits, 4, 16, scale=2.0, seed=5)
    assert samples == V.MC_DRAWS == 2048
    exact = V.inclusion_exact(2.0 * logits.reshape(-1, 16), 4).reshape(logits.shape)
    se = np.sqrt(exact * (1 - exact) / samples)
    assert (np.abs(rho - exact) <= 4.5 * se + 1e-12).all()
    np.testing.assert_allclose(rho.reshape(-1, 16).sum(1), 4.0)  # exactly n per draw
    again, _ = V.inclusion_probabilities(logits, 4, 16, scale=2.0, seed=5)
    assert np.array_equal(rho, again)  # seeded
    other, _ = V.inclusion_probabilities(logits, 4, 16, scale=2.0, seed=6)
    assert not np.array_equal(rho, other)
    # the forced Monte Carlo path on a small pattern, one-hot blocks included
    small = np.array([[0.3, -0.2, 1.0, 0.0], [1e4, 0.0, 0.0, 0.0]])
    mc, samples = V.inclusion_probabilities(small, 2, 4, seed=1, exact_limit=0)
    exact, _ = V.inclusion_probabilities(small, 2, 4)
    assert samples == 2048
    se = np.sqrt(exact * (1 - exact) / samples)
    assert (np.abs(mc - exact) <= 4.5 * se + 1e-12).all()
    assert mc[1, 0] == 1.0
    mc = V.inclusion_monte_carlo(small.astype(np.float64), 4, 64, seed=1)
    assert (mc == 1.0).all()


def test_inclusion_errors() -> None:
    with pytest.raises(ValueError, match="needs a seed"):
        V.inclusion_probabilities(np.zeros((1, 16)), 4, 16)
    with pytest.raises(ValueError, match="NaN or inf"):
        V.inclusion_probabilities(np.array([0.0, np.nan, 0.0, 0.0]), 2, 4)
    with pytest.raises(ValueError, match="multiple of m=4"):
        V.inclusion_probabilities(np.zeros(6), 2, 4)
    with pytest.raises(TypeError, match="float32 or float64"):
        V.inclusion_probabilities(np.zeros(4, np.int64), 2, 4)
    with pytest.raises(TypeError, match="masked array"):
        V.inclusion_probabilities(np.ma.zeros(4), 2, 4)
    with pytest.raises(TypeError, match="NumPy array"):
        V.inclusion_probabilities([0.0, 0.0, 0.0, 0.0], 2, 4)
    with pytest.raises(ValueError, match="scale"):
        V.inclusion_probabilities(np.zeros(4), 2, 4, scale=0.0)
    with pytest.raises(ValueError, match="n must satisfy"):
        V.inclusion_probabilities(np.zeros(4), 5, 4)
    with pytest.raises(ValueError, match="draws=0"):
        V.inclusion_probabilities(np.zeros(16), 4, 16, seed=1, draws=0)
    with pytest.raises(ValueError, match="seed"):
        V.inclusion_probabilities(np.zeros(16), 4, 16, seed=-1)


# -- entropy, masses, splits, pooling ----------------------------------------------------

def test_block_entropy_S1_9() -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(3, 8)).astype(np.float32)
    h = V.block_entropy(logits, 4, scale=2.5)
    p = api.block_probs(logits.astype(np.float64), 4, scale=2.5).reshape(3, 2, 4)
    np.testing.assert_allclose(h, -(p * np.log(p)).sum(-1), rtol=1e-12)
    np.testing.assert_allclose(V.block_entropy(np.zeros((2, 8)), 8), math.log(8))


def test_near_silent_split_and_layer_metrics_S5_9a() -> None:
    logits = np.array([[2.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0],
                       [0.0, 3.0, 0.0, 3.1, 1.0, 1.0, 1.0, 1.0]])
    credit = np.array([[1.0, 1.0, 1.0, 1.0, 1e-6, 0.0, 1e-7, 0.0],
                       [0.5, 0.5, 0.0, 1.0, 2.0, 0.0, 0.0, 0.0]])
    mass = V.block_mass(credit, 4)
    assert mass.tolist() == pytest.approx([4.0, 1.1e-6, 2.0, 2.0])
    silent = V.silent_blocks(mass)
    assert silent.tolist() == [False, True, False, False]
    previous = np.array([[1, 1, 0, 0, 1, 1, 0, 0], [0, 1, 0, 1, 0, 0, 1, 1]], np.uint8)
    out, final, samples = V.layer_sampling(logits, 1.5, 2, 4, mass, previous)
    assert samples == 0 and final.dtype == np.uint8
    assert np.array_equal(final, api.final_mask(logits, 2, 4))  # ties to the lower index
    rho, _ = V.inclusion_probabilities(logits, 2, 4, scale=1.5)
    var = (rho * (1 - rho)).reshape(4, 4)
    fields = out["inclusion_variance"].means("inclusion_variance")
    assert fields["inclusion_variance"] == pytest.approx(var.mean())
    assert fields["inclusion_variance_silent"] == pytest.approx(var[1].mean())
    assert fields["inclusion_variance_active"] == pytest.approx(var[[0, 2, 3]].mean())
    h = V.block_entropy(logits, 4, scale=1.5).reshape(-1)
    ent = out["block_entropy"].means("block_entropy")
    assert ent["block_entropy_silent"] == pytest.approx(h[1])
    flips = out["argmax_flip_rate"].means("argmax_flip_rate")
    # final = [[1,1,0,0, 1,1,0,0], [0,1,0,1, 1,1,0,0]]: 4 flips, all in block 3
    assert flips == {"argmax_flip_rate": 4 / 16, "argmax_flip_rate_active": 4 / 12,
                     "argmax_flip_rate_silent": 0.0}
    out, _, _ = V.layer_sampling(logits, 1.5, 2, 4, mass)
    assert out["argmax_flip_rate"] is None
    with pytest.raises(ValueError, match="blocks"):
        V.layer_sampling(logits, 1.5, 2, 4, mass[:3])
    with pytest.raises(ValueError, match="previous final mask"):
        V.layer_sampling(logits, 1.5, 2, 4, mass, previous[:1])
    assert V.silent_blocks(np.zeros(3)).tolist() == [False, False, False]


def test_pooling_is_entry_weighted_across_layers() -> None:
    a = V.SplitSums.of(np.array([1.0, 1.0]), 4, np.array([False, False]))  # 8 entries
    b = V.SplitSums.of(np.array([6.0]), 4, np.array([True]))  # 4 entries
    fields = V.sampling_fields({1: {"inclusion_variance": a, "block_entropy": a,
                                    "argmax_flip_rate": None},
                                2: {"inclusion_variance": b, "block_entropy": b,
                                    "argmax_flip_rate": b}}, 0)
    assert fields["inclusion_variance"] == pytest.approx(8.0 / 12)
    assert fields["inclusion_variance_active"] == pytest.approx(2.0 / 8)
    assert fields["inclusion_variance_silent"] == pytest.approx(6.0 / 4)
    assert fields["argmax_flip_rate"] is None  # missing in layer 1
    assert fields["variance_layers"]["2"]["argmax_flip_rate"] == pytest.approx(1.5)
    assert fields["variance_layers"]["1"]["inclusion_variance_silent"] is None
    empty = V.sampling_fields({}, None)
    assert all(empty[k] is None for k in V.KEYS) and empty["variance_layers"] == {}


def test_gradient_sums() -> None:
    rng = np.random.default_rng(5)
    draws = [rng.normal(size=(3, 4)) + 2.0 for _ in range(6)]
    s = V.gradient_sums(draws)
    g = np.stack(draws)
    assert s.values()["grad_variance"] == pytest.approx(g.var(0, ddof=1).mean())
    assert s.values()["grad_snr"] == pytest.approx(
        (g.mean(0) ** 2).mean() / g.var(0, ddof=1).mean())
    pooled = (s + V.gradient_sums(draws[:2])).values()
    assert pooled["grad_variance"] == pytest.approx(
        (g.var(0, ddof=1).sum() + g[:2].var(0, ddof=1).sum()) / 24)
    same = V.gradient_sums([np.ones(3), np.ones(3)]).values()
    assert same == {"grad_variance": 0.0, "grad_snr": None}
    with pytest.raises(ValueError, match="at least 2 draws"):
        V.gradient_sums([np.ones(3)])
    with pytest.raises(ValueError, match="NaN or inf"):
        V.gradient_sums([np.ones(3), np.array([1.0, np.inf, 0.0])])


# -- configuration and seeds ---------------------------------------------------------------

def test_config_keys_S5_9a() -> None:
    cfg = load_config(None)
    assert cfg.sampler.variance_points == (0.0, 0.25, 0.5, 0.75)
    assert cfg.sampler.variance_draws == 8
    cfg = load_config(None, ["sampler.variance_points=0.1,0.6", "sampler.variance_draws=0"])
    assert cfg.sampler.variance_points == (0.1, 0.6) and cfg.sampler.variance_draws == 0
    for override, needle in [("sampler.variance_points=0,1", "variance_points=(0.0, 1.0)"),
                             ("sampler.variance_points=-0.1", "in [0, 1)"),
                             ("sampler.variance_points=0.5,0.5", "distinct"),
                             ("sampler.variance_points=x", "expected a number"),
                             ("sampler.variance_draws=1", "variance_draws=1"),
                             ("sampler.variance_draws=-2", "0 (off)"),
                             ("sampler.variance_draws=2.5", "expected an integer")]:
        with pytest.raises(ConfigError, match=re_escape(needle)):
            load_config(None, [override])


def re_escape(text: str) -> str:
    import re
    return re.escape(text)


def test_new_seed_streams_are_distinct_S5_2() -> None:
    streams = {seeds.MASK_NOISE, seeds.DATA_ORDER, seeds.POISSON, seeds.RANDOM_MASK,
               seeds.MASKLLM_NOISE}
    assert V.INCLUSION_DRAWS not in streams and V.GRADIENT_NOISE not in streams
    assert V.INCLUSION_DRAWS != V.GRADIENT_NOISE
    assert "INCLUSION_DRAWS" in seeds.__doc__ and "GRADIENT_NOISE" in seeds.__doc__
    train_noise = {seeds.seed_of(0, seeds.MASK_NOISE, s, k) for s in range(4) for k in range(3)}
    measured = {seeds.seed_of(0, V.GRADIENT_NOISE, s, 65536 * j + k)
                for s in range(4) for j in range(8) for k in range(3)}
    assert not train_noise & measured


# -- the trainer -----------------------------------------------------------------------------

def test_train_records_and_summary_carry_the_metrics_S5_9a(tmp_path) -> None:
    cfg = load_config(None, TINY + [f"run.out={tmp_path}"])
    result = train(cfg, stream=None)
    setup = build_setup(cfg)
    search = setup.method.search_steps(setup.total_steps)
    assert V.variance_steps(setup) == tuple(math.floor(f * search)
                                            for f in (0, 0.25, 0.5, 0.75))
    records = [r for r in result.records if r["type"] == "train"]
    for r in records:
        for key in V.KEYS + ("inclusion_samples", "variance_layers", "grad_variance",
                             "grad_snr", "grad_step", "grad_points", "flip_rate"):
            assert key in r
        if r["step"] - 1 < search:
            assert 0 < r["inclusion_variance"] <= 0.25 and r["inclusion_samples"] == 0
            assert 0 <= r["block_entropy"] <= math.log(4) + 1e-12
            assert list(r["variance_layers"]) == ["1"]
        else:
            assert all(r[key] is None for key in V.KEYS)
    sampled = [r for r in records if r["inclusion_variance"] is not None]
    assert sampled[0]["argmax_flip_rate"] is None  # nothing to compare with yet
    assert all(0 <= r["argmax_flip_rate"] <= 1 for r in sampled[1:])
    points = [p for r in records for p in r["grad_points"]]
    assert [p["step"] for p in points] == list(V.variance_steps(setup))
    assert all(p["grad_variance"] > 0 and p["grad_snr"] > 0 for p in points)
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["inclusion_variance"] == pytest.approx(
        np.mean([r["inclusion_variance"] for r in sampled]))
    assert s["argmax_flip_rate"] == pytest.approx(
        np.mean([r["argmax_flip_rate"] for r in sampled[1:]]))
    assert s["grad_variance"] == pytest.approx(np.mean([p["grad_variance"] for p in points]))
    assert s["inclusion_samples"] == 0
    detail = s["sampling_variance"]
    assert detail["logging_steps"] == [r["step"] for r in sampled]
    assert detail["last"]["block_entropy"] == sampled[-1]["block_entropy"]
    assert detail["layers"]["1"]["block_entropy"]["last"] == sampled[-1]["block_entropy"]
    assert [p["step"] for p in detail["grad_points"]] == [p["step"] for p in points]
    assert s["flip_rate"] == result.summary["flip_rate"] and s["flip_rate"] > 0
    assert "incvar" in progress_line(sampled[0], 10, 1)
    text = summary_text(result.summary)
    assert "inclusion variance" in text and "logit gradient at 4 points" in text


def test_variance_draws_do_not_change_the_training_trajectory_S5_9a() -> None:
    off = train(load_config(None, TINY + ["sampler.variance_draws=0"]), stream=None)
    on = train(load_config(None, TINY + ["sampler.variance_draws=8"]), stream=None)
    assert off.params.keys() == on.params.keys()
    for key in off.params:
        assert np.array_equal(off.params[key], on.params[key]), key
    assert off.summary["test_acc"] == on.summary["test_acc"]
    assert off.summary["flip_rate"] == on.summary["flip_rate"]
    assert off.summary["inclusion_variance"] == on.summary["inclusion_variance"]
    assert off.summary["grad_variance"] is None and on.summary["grad_variance"] > 0
    assert off.summary["sampling_variance"]["grad_points"] == []


@pytest.mark.parametrize("method", ["srste", "dense", "maskllm"])
def test_methods_without_sampled_logits_report_none(method) -> None:
    result = train(load_config(None, TINY + [f"sparsity.method={method}"]), stream=None)
    for key in V.KEYS + V.GRAD_KEYS + ("inclusion_samples",):
        assert result.summary[key] is None
    assert result.summary["sampling_variance"]["grad_points"] == []
    if method != "dense":
        assert result.summary["flip_rate"] is not None  # S5.9 as before


def test_gradient_point_is_the_S5_4_task_gradient_over_fresh_noise() -> None:
    from spikenm.methods import blocks

    cfg = load_config(None, MINI + ["sampler.variance_draws=3"])
    setup = build_setup(cfg)
    state = initial_state(setup)
    cache: dict[int, np.ndarray] = {}
    from spikenm.train.step import step_batch, train_step
    state, _ = train_step(setup, state, cache)  # logits away from 0
    point = V.gradient_point(setup, state, cache)
    ms, model = setup.method_setup, setup.model
    (k,) = ms.layers
    pi = state.method.arrays[f"{LOGITS}{k}"]
    search = setup.method.search_steps(setup.total_steps)
    tau = setup.method.temperature.at(1, search)
    kappa = setup.method.scale.at(1, search)
    x, y = step_batch(setup, 1, {})
    w = state.params[f"layer{k}.weight"]
    draws = []
    for j in range(3):
        g = api.gumbel_like(pi, seeds.seed_of(cfg.run.seed, 6, 1, 65536 * j + k))
        h = api.sample_mask(pi, 2, 4, noise=g, temperature=tau, scale=kappa, hard=True)
        params = {**state.params, f"layer{k}.weight": w * api.from_block_layout(h)}
        r = model.forward_backward(setup.graph, params, state.buffers, x, y, setup.lif, None)
        cot = api.to_block_layout(r.grads[f"layer{k}.weight"] * w)
        draws.append(blocks.sample_vjp(pi, g, 2, 4, tau, kappa, cot))
    g = np.stack(draws)
    assert point["step"] == 1
    assert point["grad_variance"] == pytest.approx(g.var(0, ddof=1).mean(), rel=1e-12)
    assert point["grad_snr"] == pytest.approx(
        (g.mean(0) ** 2).mean() / g.var(0, ddof=1).mean(), rel=1e-12)
    assert point["layers"][str(k)]["grad_variance"] == point["grad_variance"]
    # the step's own batch: the training step 1 sees the same x
    from spikenm.train.encoding import batch_indices
    idx = batch_indices(cfg.run.seed, 1, setup.steps_per_epoch, 32, 128, {})
    assert np.array_equal(y, setup.data.y_train[idx])
    # outside the search phase there is nothing to measure
    late = replace(state, step=setup.total_steps - 1)
    assert V.gradient_point(setup, late, cache) is None


def test_split_uses_running_credit_or_the_step_gradients_S5_9a() -> None:
    setup = build_setup(load_config(None, MINI))
    state = initial_state(setup)
    (k,) = setup.layers
    pi = np.random.default_rng(0).normal(size=state.method.arrays[f"{LOGITS}{k}"].shape)
    credit = np.ones_like(pi)
    credit[:, :4] = 0.0  # the first block of every row is silent
    arrays = {**state.method.arrays, f"{LOGITS}{k}": pi, f"{CREDIT}{k}": credit}
    state = replace(state, method=MethodState(arrays, dict(state.method.meta)))
    fields, finals = V.sampling_record(setup, state, 0, None, {})
    groups = pi.size // 4
    rows = pi.shape[0]
    expected = V.inclusion_probabilities(pi, 2, 4, scale=1.0)[0]
    var = (expected * (1 - expected)).reshape(rows, -1, 4)
    assert fields["inclusion_variance_silent"] == pytest.approx(var[:, 0].mean())
    assert fields["inclusion_variance_active"] == pytest.approx(var[:, 1:].mean())
    assert np.array_equal(finals[k], api.final_mask(pi, 2, 4).astype(np.uint8))
    assert groups > rows
    # without a running credit: |dL/dW_eff| of the step (framework layout)
    no_credit = {key: v for key, v in arrays.items() if not key.startswith(CREDIT)}
    state = replace(state, method=MethodState(no_credit, dict(state.method.meta)))
    grads = {f"layer{k}.weight": api.from_block_layout(-credit)}
    again, _ = V.sampling_record(setup, state, 0, grads, finals)
    assert again["inclusion_variance_silent"] == fields["inclusion_variance_silent"]
    assert again["argmax_flip_rate"] == 0.0
    with pytest.raises(ValueError, match="running credit or the step's gradients"):
        V.sampling_record(setup, state, 0, None, {})


def test_resume_writes_the_records_of_an_uninterrupted_run_S5_12(tmp_path) -> None:
    common = TINY + ["optim.epochs=2", "run.log_every=7", "run.checkpoint_every=3",
                     "sparsity.pattern=4:16", "eid.enabled=false"]
    full = train(load_config(None, common + [f"run.out={tmp_path / 'a'}"]), stream=None)
    cfg_b = load_config(None, common + [f"run.out={tmp_path / 'b'}"])
    train(cfg_b, stop_after=10, stream=None)  # mid-interval, after a gradient point
    resumed = train(cfg_b, resume=True, stream=None)

    def lines(folder):  # type: ignore[no-untyped-def]
        out = []
        for line in (tmp_path / folder / "metrics.jsonl").read_text().splitlines():
            r = json.loads(line)
            r.pop("ms_per_step", None)
            r.pop("seconds", None)
            out.append(r)
        return out

    a, b = lines("a"), lines("b")
    assert a == b
    assert any(r.get("argmax_flip_rate") is not None for r in a)
    assert full.summary["inclusion_samples"] == 2048
    for key in V.KEYS + V.GRAD_KEYS:
        assert full.summary[key] == resumed.summary[key], key


def test_log_state_round_trip() -> None:
    log = LogState({"loss": 1.5, "correct": 3, "count": 4, "steps": 2, "changed": 2.0,
                    "compared": 8}, ({"step": 3, "grad_variance": 0.5},),
                   {2: np.array([[1, 0]], np.uint8)})
    arrays, meta = log_state_to_arrays(log)
    back = log_state_from_arrays(arrays, json.loads(json.dumps(meta)))
    assert back.sums == log.sums and back.grad_points == log.grad_points
    assert np.array_equal(back.argmax_previous[2], log.argmax_previous[2])
    assert log_state_from_arrays({}, None) == LogState()
    with pytest.raises(ValueError, match="log/argmax/2"):
        log_state_from_arrays({}, meta)


def test_logging_makes_host_copies_only_at_logging_and_variance_steps(monkeypatch) -> None:
    """Steps that neither log nor measure copy nothing to the host (S4.16)."""
    from spikenm.train import loop

    seen: list[tuple[int, int]] = []
    real_build, real_step = loop.build_setup, loop.train_step

    def build(cfg):  # type: ignore[no-untyped-def]
        setup = real_build(cfg)
        return replace(setup, model=HostCopyCounter(setup.model))

    def step(setup, state, cache):  # type: ignore[no-untyped-def]
        seen.append((state.step, setup.model.copies))
        return real_step(setup, state, cache)

    monkeypatch.setattr(loop, "build_setup", build)
    monkeypatch.setattr(loop, "train_step", step)
    cfg = load_config(None, TINY + ["run.log_every=4", "sampler.variance_points=0.5"])
    train(cfg, stream=None)
    setup = real_build(cfg)
    (measured,) = V.variance_steps(setup)
    search = setup.method.search_steps(setup.total_steps)
    logged = {s for s in range(1, setup.total_steps + 1)
              if s % 4 == 0 or s % setup.steps_per_epoch == 0}
    assert len(seen) == setup.total_steps
    for (s, before), (_, after) in zip(seen, seen[1:]):
        copied = after - before  # train_step(s), the log after it, a measurement at s + 1
        if (s + 1 in logged and s < search) or s + 1 == measured:
            assert copied > 0, s
        else:
            assert copied == 0, s


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_torch_and_jax_trainers_report_the_metrics(backend) -> None:
    import jax  # noqa: F401  (a missing framework must fail, not skip)
    import torch  # noqa: F401

    small = MINI + ["run.dtype=float32"]
    cfg = load_config(None, small + [f"run.backend={backend}", "sampler.variance_draws=2",
                                     "sampler.variance_points=0,0.5"])
    result = train(cfg, stream=None)
    s = result.summary
    assert s["backend"] == backend and s["inclusion_samples"] == 0
    assert 0 < s["inclusion_variance"] <= 0.25 and s["block_entropy"] > 0
    assert s["argmax_flip_rate"] is not None
    assert s["grad_variance"] > 0 and len(s["sampling_variance"]["grad_points"]) == 2
    # the same logits give the same metrics as on the reference backend
    setup = build_setup(cfg)
    state = initial_state(setup)
    (k,) = setup.layers
    rng = np.random.default_rng(2)
    pi = rng.normal(size=state.method.arrays[f"{LOGITS}{k}"].shape).astype(np.float32)
    credit = rng.random(pi.shape).astype(np.float32)
    arrays = {**state.method.arrays, f"{LOGITS}{k}": setup.model.from_numpy(pi),
              f"{CREDIT}{k}": setup.model.from_numpy(credit)}
    state = replace(state, method=MethodState(arrays, dict(state.method.meta)))
    fields, _ = V.sampling_record(setup, state, 0, None, {})
    ref = build_setup(load_config(None, small))
    ref_state = initial_state(ref)
    ref_arrays = {**ref_state.method.arrays, f"{LOGITS}{k}": pi, f"{CREDIT}{k}": credit}
    ref_state = replace(ref_state, method=MethodState(ref_arrays, dict(ref_state.method.meta)))
    expected, _ = V.sampling_record(ref, ref_state, 0, None, {})
    assert fields == expected
