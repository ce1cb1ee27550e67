"""The traced JAX flow of SpikeNM (`spikenm.backends.jax.functional`, SPEC S5.15), its
traced schedules (`spikenm.backends.jax.schedules`, S5.5, S5.6) and `gumbel_like` with
a ``jax.random`` key (S1.6).

An Equinox spiking MLP on the shipped digits trains inside one ``jax.jit``ted step with
optax: the step compiles once for search and fine-tune, the loss falls, the weights end
exactly 2:4 (S5.8); the same key repeats the run, another key changes it.  Given the
same noise, the flow's state after every step equals the method object's
(`spikenm.methods.spikenm.SpikeNM`, S6.0) in float64 (S0.6), and the gradient of
`Flow.eid_loss` equals the eager EID gradient (S2.7, S5.5).
"""

from __future__ import annotations

import doctest
import importlib.resources
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from scipy import stats

from jax_helpers import counting_compiles
from spikenm import api
from spikenm.api import from_block_layout, to_block_layout
from spikenm.backends.jax import functional
from spikenm.backends.jax import random as jrandom
from spikenm.backends.jax import schedules as jschedules
from spikenm.backends.jax.snn_lif import lif_over_time
from spikenm.methods import StepMasks, blocks
from spikenm.methods.common import Ramp
from spikenm.methods.spikenm import SpikeNM
from spikenm.schedules import SCHEDULES, schedule_value
from spikenm.snn import LIFParams

RTOL64 = 4 * np.sqrt(np.finfo(np.float64).eps)  # S0.6
LIF = LIFParams()


def nm_exact(w: jax.Array, n: int, m: int) -> bool:
    """Every block of ``m`` along the input axis (``OI`` layout) has at most ``n``
    non-zeros."""
    return bool(api.is_nm(np.asarray(w), n, m))


# -- an Equinox spiking MLP on digits, one jitted step ------------------------------------

class SpikingMLP(eqx.Module):
    """64 -> 32 -> 32 -> 10 Linear layers, LIF between them (S4.3), rate readout."""

    layers: list

    def __init__(self, key: jax.Array) -> None:
        keys = jax.random.split(key, 3)
        sizes = (64, 32, 32, 10)
        self.layers = [eqx.nn.Linear(i, o, key=k) for i, o, k in zip(sizes[:-1], sizes[1:], keys)]

    def __call__(self, x: jax.Array, probes: dict) -> tuple[jax.Array, dict]:
        h, inputs = jnp.broadcast_to(x, (LIF.time_steps,) + x.shape), {}
        for i, layer in enumerate(self.layers):
            path = f"layers/{i}/weight"
            inputs[path] = h
            cur = h @ layer.weight.T + layer.bias + probes.get(path, 0.0)
            h = lif_over_time(cur, LIF) if i < len(self.layers) - 1 else cur
        return h.mean(0), inputs


STEPS, BATCH = 48, 64


def digits() -> tuple[np.ndarray, np.ndarray]:
    data = np.load(importlib.resources.files("spikenm") / "data" / "digits.npz")
    x = data["x_train"].reshape(len(data["x_train"]), -1).astype(np.float32) / 16.0
    return x, data["y_train"]


@pytest.fixture(scope="module")
def digits_run():
    """The flow, the jitted step and a function running the whole training from a key."""
    model = SpikingMLP(jax.random.key(0))
    params0, static = eqx.partition(model, eqx.is_array)
    fl = functional.flow(params0, 2, 4, total_steps=STEPS)
    tx = optax.adam(optax.cosine_decay_schedule(1e-2, STEPS))
    x_all, y_all = digits()

    def loss_fn(eff, probes, x, y):
        out, inputs = eqx.combine(eff, static)(x, probes)
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean(), inputs

    @jax.jit
    def train_step(params, opt_state, fstate, x, y):
        fm = fl.masks(fstate)
        (loss, inputs), (g_eff, d) = jax.value_and_grad(loss_fn, (0, 1), has_aux=True)(
            fl.apply(params, fm.masks), fl.probes(params, LIF.time_steps, x.shape[0]), x, y)
        fstate = fl.update(fstate, fm, params, g_eff, fl.dense_credits(inputs, d, params, LIF.beta))
        updates, opt_state = tx.update(fl.weight_grads(fm, g_eff), opt_state, params)
        params = fl.project(optax.apply_updates(params, updates), fm)
        return params, opt_state, fstate, loss, fm.masks

    def run(key, resume_at=None):
        params, opt_state, fstate = jax.device_put(
            (params0, tx.init(params0), fl.init(params0, key)), jax.devices()[0])
        losses, masks, compiles = [], [], []
        for s in range(STEPS):
            if s == resume_at:  # through host arrays, as a checkpoint holds them
                saved = jax.tree.map(np.asarray, (params, opt_state,
                                                  fstate._replace(key=jax.random.key_data(fstate.key))))
                params, opt_state, fstate = jax.device_put(saved, jax.devices()[0])
                fstate = fstate._replace(key=jax.random.wrap_key_data(fstate.key))
            idx = np.random.default_rng(s).choice(len(x_all), BATCH, replace=False)
            with counting_compiles() as seen:
                params, opt_state, fstate, loss, mk = train_step(
                    params, opt_state, fstate, x_all[idx], y_all[idx])
            compiles.append(len(seen))
            losses.append(loss)
            masks.append(mk.layers[1].weight)
        return params, fstate, np.asarray(losses), masks, compiles

    return fl, train_step, run


def test_equinox_digits_step_compiles_once_and_trains(digits_run) -> None:
    """S5.15: the whole run, search (38 steps) and fine-tune (10), is one compilation of
    the jitted step (none after the first call); the loss falls; the sampled masks are
    exactly 2:4 and change during the search; in the fine-tune phase the mask is fixed
    and the pruned weights stay 0 (S5.8); finalize gives exact 2:4 weights."""
    fl, train_step, run = digits_run
    params, fstate, losses, masks, compiles = run(jax.random.key(1))
    assert fl.paths == ("layers/1/weight",) and fl.search_steps == 38
    assert train_step._cache_size() == 1
    assert compiles[0] >= 1 and sum(compiles[1:]) == 0, compiles
    assert losses[:5].mean() > losses[-5:].mean() + 0.5, losses
    assert all(nm_exact(mk, 2, 4) for mk in masks)
    search, fine = masks[:fl.search_steps], masks[fl.search_steps:]
    assert any(not np.array_equal(search[0], mk) for mk in search[1:])
    assert all(np.array_equal(fine[0], mk) for mk in fine)
    w = params.layers[1].weight
    assert nm_exact(w, 2, 4) and np.array_equal(np.asarray(w) != 0, np.asarray(fine[0]) != 0)
    assert int(fstate.step) == STEPS and int(fstate.logit_steps) == fl.search_steps
    final = fl.finalize(fstate, params)
    assert nm_exact(final.layers[1].weight, 2, 4)
    np.testing.assert_array_equal(np.asarray(final.layers[1].weight), np.asarray(w))
    np.testing.assert_array_equal(np.asarray(fl.final_masks(fstate).layers[1].weight), fine[0])
    for i in (0, 2):  # dense_first / dense_last (S5.1)
        assert final.layers[i].weight is params.layers[i].weight


def test_same_key_same_run_other_key_other_run(digits_run) -> None:
    """S5.15 noise: a run is a function of its key: the same key repeats every loss and
    weight bit for bit, also when the state is saved to host arrays and restored in the
    search phase (S5.12); another key draws other masks from step 0 on.  No new
    compile."""
    fl, train_step, run = digits_run
    a = run(jax.random.key(5))
    b = run(jax.random.key(5), resume_at=20)
    c = run(jax.random.key(6))
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(np.asarray(a[0].layers[1].weight), np.asarray(b[0].layers[1].weight))
    assert not np.array_equal(a[3][0], c[3][0])
    assert not np.array_equal(a[2], c[2])
    assert train_step._cache_size() == 1 and sum(b[4]) == 0 and sum(c[4]) == 0


# -- the flow equals the method object (same noise) ---------------------------------------

PARAMS_SHAPES = {"fc0": (8, 4), "fc1": (8, 8), "conv": (4, 8, 3, 3), "fc2": (2, 8)}


@pytest.mark.parametrize("method, select", [
    (SpikeNM(), ["fc1", "conv"]),
    (SpikeNM(eid_variant="inclusion", eid_credit="signed", eid_warmup_fraction=0.0,
             temperature=Ramp(1.0, 0.1, "cosine"), scale=Ramp(1.0, 4.0, "exp"),
             eid_weight=1.0), ["fc1"]),
], ids=["default", "inclusion-signed"])
def test_flow_state_equals_the_method_objects_with_the_same_noise(method: SpikeNM,
                                                                   select: list) -> None:
    """S5.15 (S6.0, S5.3-S5.8, float64): step by step through search and fine-tune, with
    the flow's noise given to `SpikeNM.update`, the flow's masks, logits, Adam moments,
    running credit and counter equal the method object's (rtol S0.6); the traced
    temperature and scale equal the host schedules; a conv leaf (OIHW) and a dense one."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        params = {k: jnp.asarray(rng.normal(size=s)) for k, s in PARAMS_SHAPES.items()}
        total = 6
        fl = functional.flow(params, 2, 4, total_steps=total, method=method, select=select)
        setup, meth, search = fl.setup, fl.method, fl.search_steps
        fs = fl.init(params, jax.random.key(3))
        ms = fl.method_state(fs)
        masks_j, update_j = jax.jit(fl.masks), jax.jit(fl.update)
        weights = fl._sp._framework(params, "params")
        for s in range(total):
            fm = masks_j(fs)
            grads = jax.tree.map(lambda w: jnp.asarray(rng.normal(size=w.shape)), params)
            credits = {p: jnp.asarray(rng.uniform(size=w.shape))
                       for p, w in fl.weights(params).items()}
            if s < search:
                tau, kappa = meth.temperature.at(s, search), meth.scale.at(s, search)
                np.testing.assert_allclose(float(fm.temperature), tau, rtol=RTOL64)
                np.testing.assert_allclose(float(fm.scale), kappa, rtol=RTOL64)
                noise = {fl._leaves[p].layer: fm.noise[p] for p in fl.paths}
                hard = {k: blocks.sample(ms.arrays[f"logits/{k}"], g, 2, 4, tau, kappa)
                        for k, g in noise.items()}
                sm = StepMasks("search", {k: from_block_layout(h) for k, h in hard.items()},
                               hard, noise, tau, kappa, credit_layers=setup.layers,
                               eid_signed=method.eid_credit == "signed")
            else:
                assert not bool(fm.search) and float(fm.temperature) == 0.0
                ms, sm = meth.masks(setup, ms, weights, s)
            got_masks = fl._sp._framework(fm.masks, "masks")
            for k in setup.layers:
                np.testing.assert_array_equal(np.asarray(got_masks[k]), np.asarray(sm.masks[k]))
            c = {fl._leaves[p].layer: to_block_layout(fl._leaves[p].to_framework(v))
                 for p, v in credits.items()}
            ms = meth.update(setup, ms, sm, weights, fl._sp._framework(grads, "grads"), c, s)
            fs = update_j(fs, fm, params, grads, credits)
            got = fl.method_state(fs)
            assert got.meta["logit_steps"] == ms.meta["logit_steps"] == min(s + 1, search)
            assert int(fs.step) == s + 1
            for key, value in got.arrays.items():
                assert value.dtype == jnp.float64
                np.testing.assert_allclose(np.asarray(value), np.asarray(ms.arrays[key]),
                                           rtol=RTOL64, atol=1e-12, err_msg=f"{key} step {s}")
        assert masks_j._cache_size() == 1 and update_j._cache_size() == 1


def test_eid_loss_gradient_equals_the_eager_eid_gradient() -> None:
    """S5.15 EID (S2.6, S2.7, S5.5, float64): ``jax.grad`` of `Flow.eid_loss` by the
    logits equals ``lambda_s * eid_loss_vjp(pi, q, m, kappa_s, 1)`` with the eager
    method's targets (`SpikeNM._targets`) of the same running credit, and the eager
    schedules, at several steps; it is 0 before the first credit, in the fine-tune
    phase and without EID."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        params = {k: jnp.asarray(rng.normal(size=s)) for k, s in PARAMS_SHAPES.items()}
        total = 20
        for variant in ("gated",):  # the default; the others: the test above
            meth = SpikeNM(eid_variant=variant)
            fl = functional.flow(params, 2, 4, total_steps=total, method=meth,
                                 select=["fc1", "fc2"])
            search = fl.search_steps
            fs = fl.init(params, 0)
            logits = {p: jnp.asarray(rng.normal(size=v.shape)) for p, v in fs.logits.items()}
            credit = {p: jnp.asarray(rng.uniform(size=v.shape)) for p, v in fs.logits.items()}
            grad = jax.jit(jax.grad(fl.eid_loss))
            for s in (0, 1, 7, search - 1):
                st = fs._replace(step=jnp.int32(s), logits=logits, credit=credit,
                                 credited=jnp.ones((), bool))
                got = grad(logits, st)
                lam = meth.eid_lambda(s, search)
                tau_e, kappa = meth.eid_temperature.at(s, search), meth.scale.at(s, search)
                for p in fl.paths:
                    q = meth._targets(credit[p], logits[p], 2, 4, tau_e, kappa)
                    want = lam * blocks.eid_vjp(logits[p], q, 4, kappa)
                    np.testing.assert_allclose(np.asarray(got[p]), np.asarray(want),
                                               rtol=RTOL64, atol=1e-15, err_msg=f"{p} {s}")
                    assert float(jnp.abs(got[p]).max()) > 0
            st = fs._replace(step=jnp.int32(search), logits=logits, credit=credit,
                             credited=jnp.ones((), bool))
            assert float(fl.eid_loss(logits, st)) == 0.0
            assert float(fl.eid_loss(logits, fs._replace(logits=logits, credit=credit))) == 0.0
        off = functional.flow(params, 2, 4, total_steps=total, method=SpikeNM(eid=False),
                              select=["fc1"])
        fs = off.init(params, 0)
        assert fs.credit == {} and float(off.eid_loss(fs.logits, fs)) == 0.0


def test_without_eid_and_flax_layout() -> None:
    """S5.15: ``SpikeNM(eid=False)`` updates without credits; with ``layout="flax"``
    (``IO`` kernels) probes are ``(T, B, O)`` and credits have the kernel's shape;
    the initial state's leaves are committed exactly when the params are (so a jitted
    step's first call does not mix them)."""
    rng = np.random.default_rng(2)
    params = {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)},
              "Dense_1": {"kernel": jnp.asarray(rng.normal(size=(8, 8)), jnp.float32)},
              "Dense_2": {"kernel": jnp.asarray(rng.normal(size=(8, 2)), jnp.float32)}}
    path = "Dense_1/kernel"
    fm = None
    for eid in (True, False):
        fl = functional.flow(params, 2, 4, 4, method=SpikeNM(eid=eid), layout="flax")
        fs = fl.init(params, jax.random.PRNGKey(0))
        assert not any(leaf.committed for leaf in jax.tree.leaves(fs))
        committed = fl.init(jax.device_put(params, jax.devices()[0]), 0)
        assert all(leaf.committed for leaf in jax.tree.leaves(committed))
        assert fs.key.dtype == jax.random.key(0).dtype
        fm = fl.masks(fs) if fm is None else fm  # the same masks: eid does not change them
        mask = fm.masks["Dense_1"]["kernel"]
        assert mask.shape == (8, 8) and fm.masks["Dense_0"]["kernel"] is None
        assert nm_exact(mask.T, 2, 4)
        probes = fl.probes(params, 3, 5)
        assert probes[path].shape == (3, 5, 8)
        x, d = jnp.ones((3, 5, 8)), jnp.ones((3, 5, 8))
        credits = fl.dense_credits({path: x}, {path: d}, params, 0.5) if eid else None
        grads = jax.tree.map(jnp.ones_like, params)
        fs2 = fl.update(fs, fm, params, grads, credits)
        assert int(fs2.step) == 1 and int(fs2.logit_steps) == 1
        assert not np.array_equal(np.asarray(fs2.logits[path]), np.asarray(fs.logits[path]))
        assert bool(fs2.credited) is eid


def test_flow_errors() -> None:
    """S5.15: a method other than SpikeNM, missing/unknown/mis-shaped credits with EID,
    a record that is not `FlowMasks`, probes of a conv leaf and a bad key are clear
    errors naming the value."""
    params = {k: jnp.zeros(s) for k, s in PARAMS_SHAPES.items()}
    with pytest.raises(TypeError, match=r"method='srste' is not SpikeNM.*method_path\.sparsity"):
        functional.flow(params, 2, 4, 10, method="srste")
    fl = functional.flow(params, 2, 4, 10, select=["fc1", "conv"])
    fs = fl.init(params, 0)
    fm = functional.FlowMasks(None, jnp.ones((), bool), {}, jnp.ones(()), jnp.ones(()))
    good = {p: jnp.zeros(w.shape) for p, w in fl.weights(params).items()}
    with pytest.raises(ValueError, match=r"needs a dict path -> credit for each of \['conv', 'fc1'\]"):
        fl.update(fs, fm, params, params, None)
    with pytest.raises(ValueError, match=r"missing \['conv'\], unknown \['nope'\]"):
        fl.update(fs, fm, params, params, {"fc1": good["fc1"], "nope": good["fc1"]})
    with pytest.raises(ValueError, match=r"credits\['fc1'\] is \(8, 4\); expected"):
        fl.update(fs, fm, params, params, {**good, "fc1": jnp.zeros((8, 4))})
    with pytest.raises(TypeError, match="expected the FlowMasks returned by Flow.masks, got dict"):
        fl.update(fs, {}, params, params, good)
    with pytest.raises(ValueError, match=r"masked leaf 'conv' \(OIHW\) is not a dense weight"):
        fl.probes(params, 2, 3)
    with pytest.raises(ValueError, match=r"inputs has no entry for the masked leaf 'fc1'"):
        functional.flow(params, 2, 4, 10, select=["fc1"]).dense_credits({}, {}, params, 0.5)
    with pytest.raises(ValueError, match=r"seed must be a non-negative integer, got 'abc'"):
        fl.init(params, "abc")
    with pytest.raises(ValueError, match=r"structure of the params"):
        fl.init({"fc1": params["fc1"]}, 0)


# -- traced schedules (S5.5, S5.6) -----------------------------------------------------------

@pytest.mark.parametrize("x64", [True, False])
def test_traced_schedules_equal_schedule_value(x64: bool) -> None:
    """S5.15 (S5.6, S5.5): `traced_schedule` at a traced step equals
    `spikenm.schedules.schedule_value` for every kind at steps inside, at the end of and
    past the phase (float64 rtol S0.6, float32 rtol 1e-6), from one compilation; the
    warm-up equals `warmup_factor`; `Flow.schedules` equals the method's host values."""
    from spikenm.schedules import warmup_factor

    rtol = RTOL64 if x64 else 1e-6
    with jax.enable_x64(x64):
        length = 9
        fn = jax.jit(jschedules.traced_schedule, static_argnums=(0, 1, 2, 4))
        base = fn._cache_size()  # jit's cache of the function is shared by its wrappers
        for kind in SCHEDULES:
            for step in (0, 1, 3, 7, 8, 9, 50):
                got = fn(kind, 2.0, 0.05, jnp.int32(step), length)
                assert got.dtype == (jnp.float64 if x64 else jnp.float32)
                np.testing.assert_allclose(float(got), schedule_value(kind, 2.0, 0.05, step, length),
                                           rtol=rtol)
            assert fn._cache_size() == base + SCHEDULES.index(kind) + 1  # per kind, not step
        for step in (0, 2, 5, 30):
            np.testing.assert_allclose(float(jschedules.traced_warmup(jnp.int32(step), 6.5)),
                                       warmup_factor(step, 6.5), rtol=rtol)
        assert float(jschedules.traced_warmup(jnp.int32(3), 0.0)) == 1.0
        params = {k: jnp.zeros(s) for k, s in PARAMS_SHAPES.items()}
        meth = SpikeNM(temperature=Ramp(1.0, 0.3, "cosine"))
        fl = functional.flow(params, 2, 4, 40, method=meth, select=["fc1"])
        sched = jax.jit(fl.schedules)
        base = sched._cache_size()
        for step in (0, 5, fl.search_steps - 1):
            sc = sched(jnp.int32(step))
            for name, ramp in (("temperature", meth.temperature), ("scale", meth.scale),
                               ("eid_temperature", meth.eid_temperature)):
                np.testing.assert_allclose(float(sc[name]), ramp.at(step, fl.search_steps),
                                           rtol=rtol)
            np.testing.assert_allclose(float(sc["eid_weight"]),
                                       meth.eid_lambda(step, fl.search_steps), rtol=rtol)
        assert sched._cache_size() == base + 1
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        jschedules.traced_schedule("step", 1.0, 2.0, 0, 3)
    with pytest.raises(ValueError, match="schedule length must be an int >= 1, got 0"):
        jschedules.traced_schedule("linear", 1.0, 2.0, 0, 0)
    with pytest.raises(ValueError, match="an exp schedule needs start and end > 0"):
        jschedules.traced_schedule("exp", 0.0, 2.0, 0, 3)


# -- gumbel_like with a jax.random key (S1.6) ------------------------------------------------

def test_gumbel_like_takes_a_jax_key() -> None:
    """S1.6: for a JAX ``x`` the seed may be a typed key or a legacy ``uint32 (2,)`` key:
    ``jax.random.key(s)``, ``PRNGKey(s)`` and the int ``s`` draw the same numbers (and
    the key data of `prng_key` of a 64-bit seed the seed's numbers); traced keys work
    inside ``jax.jit``; other keys give other numbers; the int path is unchanged."""
    x = jnp.zeros((4, 8), jnp.float32)
    for s in (0, 7, 2**32 - 1):
        by_int = api.gumbel_like(x, s)
        np.testing.assert_array_equal(np.asarray(api.gumbel_like(x, jax.random.key(s))), by_int)
        np.testing.assert_array_equal(np.asarray(api.gumbel_like(x, jax.random.PRNGKey(s))), by_int)
        np.testing.assert_array_equal(np.asarray(by_int), np.asarray(jrandom.gumbel_like(x, s)))
    big = 2**40 + 3
    np.testing.assert_array_equal(
        np.asarray(api.gumbel_like(x, jax.random.key_data(jrandom.prng_key(big)))),
        np.asarray(api.gumbel_like(x, big)))
    key = jax.random.key(11)
    traced = jax.jit(lambda k: api.gumbel_like(x, jax.random.fold_in(k, 2)))(key)
    np.testing.assert_array_equal(np.asarray(traced),
                                  np.asarray(api.gumbel_like(x, jax.random.fold_in(key, 2))))
    assert not np.array_equal(np.asarray(api.gumbel_like(x, jax.random.key(1))),
                              np.asarray(api.gumbel_like(x, jax.random.key(2))))
    with jax.enable_x64(True):
        g = api.gumbel_like(jnp.zeros(3, jnp.float64), jax.random.key(0))
        assert g.dtype == jnp.float64 and bool(jnp.isfinite(g).all())


def test_gumbel_like_key_draws_standard_gumbel() -> None:
    """S1.6: noise drawn from a key is standard Gumbel (KS test against
    ``F(g) = exp(-exp(-g))``)."""
    g = np.asarray(api.gumbel_like(jnp.zeros(20000), jax.random.key(123)), np.float64)
    assert stats.kstest(g, stats.gumbel_r.cdf).pvalue > 1e-3


@pytest.mark.parametrize("make", [lambda: np.zeros(8, np.float32), lambda: torch.zeros(8)],
                         ids=["numpy", "torch"])
def test_gumbel_like_key_with_other_backends_is_a_type_error(make) -> None:
    """S1.6: a ``jax.random`` key with a NumPy or PyTorch ``x`` is a `TypeError` naming
    the key and the backend; bad keys for a JAX ``x`` are clear errors too."""
    x = make()
    name = "numpy" if isinstance(x, np.ndarray) else "torch"
    with pytest.raises(TypeError, match=rf"^seed is a jax\.Array of dtype key<fry> and shape \(\); "
                                        rf"a jax\.random key is accepted only with a JAX x, and x "
                                        rf"is a {name} array: pass an integer seed$"):
        api.gumbel_like(x, jax.random.key(0))
    with pytest.raises(TypeError, match=r"jax\.random key is accepted only with a JAX x"):
        api.gumbel_like(x, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(api.gumbel_like(x, 3)), np.asarray(api.gumbel_like(x, 3)))


def test_gumbel_like_bad_jax_keys() -> None:
    """S1.6: a ``jax.Array`` that is no key (an int32 step, a float array) is a
    `TypeError`; an array of several typed keys a `ValueError`."""
    x = jnp.zeros(4)
    with pytest.raises(TypeError, match=r"^seed is a jax\.Array of shape \(\) and dtype int32; "
                                        r"expected an int, a typed jax\.random key"):
        api.gumbel_like(x, jnp.int32(3))
    with pytest.raises(TypeError, match=r"shape \(2,\) and dtype float32"):
        api.gumbel_like(x, jnp.zeros(2))
    with pytest.raises(ValueError, match=r"seed is an array of keys of shape \(2,\); expected one key"):
        api.gumbel_like(x, jax.random.split(jax.random.key(0)))


# -- documentation ---------------------------------------------------------------------------

def test_docstring_examples() -> None:
    """The examples of the new modules run and print what they show."""
    for module in (functional, jschedules, jrandom):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_module_docstring_example_trains_with_one_compile() -> None:
    """S5.15: the module docstring's Equinox example runs: its jitted step compiled once
    for the 40 steps, the loss falls, ``final[1].weight`` is exactly 2:4."""
    text = functional.__doc__.split("Example (an Equinox")[1].split("::\n", 1)[1]
    source = textwrap.dedent(text.split("\n(A list")[0])
    ns: dict = {}
    exec(compile(source, "functional example", "exec"), ns)
    losses = np.asarray(ns["losses"])
    assert ns["train_step"]._cache_size() == 1
    assert losses[:5].mean() > losses[-5:].mean() + 0.2, losses
    assert nm_exact(ns["final"][1].weight, 2, 4)
    assert ns["final"][0].weight is ns["params"][0].weight
