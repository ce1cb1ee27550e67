"""The JAX pure-function path of the mask methods (`spikenm.backends.jax.method_path`,
SPEC S5, S6.0) and its EID credit helpers (`method_path_credit`, S2.1-S2.3, S2.9).

A tiny spiking MLP in plain JAX + optax: the path gives exactly the masks, weight
gradients and states of the method object called on the same arrays (S6.0); Flax
layouts give the transposes of the PyTorch layout; finalized weights are exactly 2:4
(S5.8); compilations are bounded (one per phase for the user's function, none per step);
the module docstring's training loop runs and lowers the loss for spikenm and srste.
"""

from __future__ import annotations

import doctest
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax_helpers import counting_compiles
from spikenm import api, reference
from spikenm.backends.jax import method_path as mp
from spikenm.backends.jax import method_path_credit as mpc
from spikenm.backends.jax.snn_lif import lif_over_time
from spikenm.methods import MethodSetup, MethodState, load_method
from spikenm.methods.spikenm import SpikeNM
from spikenm.reference.snn_conv import conv_weight_block, conv_weight_unblock, im2col
from spikenm.snn import LIFParams

LIF = LIFParams()
T, B, SIZES = LIF.time_steps, 8, (8, 16, 16, 4)
RTOL64 = 4 * np.sqrt(np.finfo(np.float64).eps)  # S0.6


def mlp_params(seed: int = 0, dtype=np.float32) -> dict:
    rng = np.random.default_rng(seed)
    params = {f"fc{i}": {"weight": jnp.asarray(rng.normal(size=(o, k)) / np.sqrt(k), dtype),
                         "bias": jnp.zeros(o, dtype)}
              for i, (k, o) in enumerate(zip(SIZES[:-1], SIZES[1:]))}
    return jax.device_put(params, jax.devices()[0])


def batch(step: int, dtype=np.float32) -> tuple[jax.Array, jax.Array]:
    rng = np.random.default_rng(1000 + step)
    x = rng.uniform(size=(B, SIZES[0]))
    return jnp.asarray(x, dtype), jnp.asarray(rng.integers(0, SIZES[-1], B))


def forward(eff: dict, x: jax.Array, y: jax.Array, probes: dict) -> tuple[jax.Array, dict]:
    h, inputs = jnp.broadcast_to(x, (T,) + x.shape), {}
    for i in range(len(SIZES) - 1):
        path, layer = f"fc{i}/weight", eff[f"fc{i}"]
        inputs[path] = h
        cur = h @ layer["weight"].T + layer["bias"] + probes.get(path, 0.0)
        h = lif_over_time(cur, LIF) if i < len(SIZES) - 2 else cur
    loss = optax.softmax_cross_entropy_with_integer_labels(h.mean(0), y).mean()
    return loss, inputs


def make_step(sp: mp.Sparsity):
    """The user's jitted forward/backward: loss, ``dL/dW_eff`` and the credits."""

    @partial(jax.jit, static_argnames="want_credits")
    def step(params, masks, x, y, decay, want_credits):
        probes = {p: jnp.zeros((T, x.shape[0], w.shape[0]), x.dtype)
                  for p, w in sp.weights(params).items()}
        (loss, inputs), (g_eff, d) = jax.value_and_grad(forward, (0, 3), has_aux=True)(
            sp.apply(params, masks), x, y, probes)
        credits = {p: mpc.dense_credit(inputs[p], d[p], w, decay)
                   for p, w in sp.weights(params).items()} if want_credits else None
        return loss, g_eff, credits

    return step


def assert_same(a: jax.Array, b: jax.Array) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# -- S6.0: the path equals the method object ---------------------------------------------

@pytest.mark.parametrize("name", ["spikenm", "srste"])
def test_path_gives_the_method_objects_masks_grads_and_state(name: str) -> None:
    """S6.0, S5.3-S5.5, S6.4: step by step through search and fine-tune, the path's
    masks, ``dL/dW`` and state equal ``method.masks/weight_grads/update`` called directly
    on the same arrays keyed by layer ordinal (fc1 is layer 1, S5.1)."""
    total = 6  # spikenm: 5 search steps (S5.8), then one fixed step
    params = mlp_params()
    sp = mp.sparsity(params, 2, 4, total_steps=total, method=name, seed=3)
    assert sp.paths == ("fc1/weight",) and sp.setup.layers == (1,)
    assert sp.weight_paths == ("fc0/weight", "fc1/weight", "fc2/weight")
    method = load_method(name)
    setup = MethodSetup(2, 4, (1,), {1: (16, 16)}, total, 3, "float32", jnp.asarray)
    step_fn = make_step(sp)
    state = sp.init(params)
    direct = method.init(setup, {1: params["fc1"]["weight"]})
    phases = []
    for s in range(total):
        x, y = batch(s)
        w = {1: params["fc1"]["weight"]}
        state, sm = sp.masks(state, params, s)
        direct, dsm = method.masks(setup, direct, w, s)
        phases.append(sm.phase)
        assert sm.phase == dsm.phase
        assert_same(sm.masks["fc1"]["weight"], dsm.masks[1])
        assert sm.masks["fc0"]["weight"] is None and sm.masks["fc2"]["bias"] is None
        assert sm.credit_paths == (("fc1/weight",) if dsm.credit_layers else ())
        _, g_eff, credits = step_fn(params, sm.masks, x, y, sm.decay(LIF.beta),
                                    want_credits=bool(sm.credit_paths))
        grads = sp.weight_grads(sm, params, g_eff)
        dgrads = method.weight_grads(setup, dsm, w, {1: g_eff["fc1"]["weight"]})
        assert_same(grads["fc1"]["weight"], dgrads[1])
        for other in ("fc0", "fc2"):
            assert_same(grads[other]["weight"], g_eff[other]["weight"])
        assert_same(grads["fc1"]["bias"], g_eff["fc1"]["bias"])
        state = sp.update(state, sm, params, g_eff, credits)
        direct = method.update(setup, direct, dsm, w, {1: g_eff["fc1"]["weight"]},
                               {1: credits["fc1/weight"]} if credits else {}, s)
        assert sorted(state.arrays) == sorted(direct.arrays)
        for key in direct.arrays:
            assert_same(state.arrays[key], direct.arrays[key])
        assert dict(state.meta) == dict(direct.meta)
        params = jax.tree.map(lambda p, g: p - 0.5 * g, params, grads)
        params = sp.project(params, sm)
    assert phases == (["search"] * 5 + ["fixed"] if name == "spikenm" else ["srste"] * 6)
    if name == "spikenm":  # the EID credits reached the running credit (S5.5)
        assert "credit/1" in state.arrays and float(state.arrays["credit/1"].sum()) > 0
    final = sp.finalize(state, params)
    api.check_nm(final["fc1"]["weight"], 2, 4)
    assert_same(final["fc1"]["weight"], params["fc1"]["weight"]
                * method.final_masks(setup, direct, {1: params["fc1"]["weight"]})[1])
    assert_same(final["fc0"]["weight"], params["fc0"]["weight"])


def test_float64_params_run_in_float64() -> None:
    """S0.4: float64 leaves make a float64 setup, float64 masks and logits."""
    with jax.enable_x64(True):
        params = mlp_params(dtype=np.float64)
        sp = mp.sparsity(params, 2, 4, total_steps=4)
        state = sp.init(params)
        state, sm = sp.masks(state, params, 0)
        assert sp.setup.dtype == "float64"
        assert sm.masks["fc1"]["weight"].dtype == jnp.float64
        assert state.arrays["logits/1"].dtype == jnp.float64


# -- layouts (S0.2) ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["spikenm", "srste"])
def test_flax_layout_gives_the_transposed_masks_and_grads(name: str) -> None:
    """S0.2: a Flax pytree (Dense kernel ``(in, out)``, Conv kernel ``HWIO``) gets the
    transposes of the masks, ``dL/dW`` and final weights of the same weights in the
    PyTorch layout (``(out, in)``, ``OIHW``), and the same state from transposed
    credits; blocks run along ``in`` in both."""
    rng = np.random.default_rng(5)
    conv = jnp.asarray(rng.normal(size=(4, 8, 3, 3)), jnp.float32)    # OIHW
    dense = jnp.asarray(rng.normal(size=(6, 12)), jnp.float32)        # (out, in)
    torch_p = {"conv": conv, "dense": dense}
    flax_p = {"params": {"Conv_0": {"kernel": jnp.transpose(conv, (2, 3, 1, 0))},
                         "Dense_0": {"kernel": dense.T, "bias": jnp.zeros(6)}}}
    kw = dict(total_steps=3, method=name, seed=1)
    sp_t = mp.sparsity(torch_p, 2, 4, select=["conv", "dense"], **kw)
    sp_f = mp.sparsity(flax_p, 2, 4, layout="flax",
                       select=lambda path, leaf: path.endswith("kernel"), **kw)
    assert sp_f.paths == ("params/Conv_0/kernel", "params/Dense_0/kernel")
    assert sp_t.setup.weight_shapes == sp_f.setup.weight_shapes == {0: (4, 8, 3, 3),
                                                                    1: (6, 12)}
    st_t, st_f = sp_t.init(torch_p), sp_f.init(flax_p)
    st_t, sm_t = sp_t.masks(st_t, torch_p, 0)
    st_f, sm_f = sp_f.masks(st_f, flax_p, 0)
    mt, mf = sm_t.masks, sm_f.masks["params"]
    assert_same(mf["Conv_0"]["kernel"], jnp.transpose(mt["conv"], (2, 3, 1, 0)))
    assert_same(mf["Dense_0"]["kernel"], mt["dense"].T)
    assert mf["Dense_0"]["bias"] is None
    g_conv = jnp.asarray(rng.normal(size=conv.shape), jnp.float32)
    g_dense = jnp.asarray(rng.normal(size=dense.shape), jnp.float32)
    g_t = {"conv": g_conv, "dense": g_dense}
    g_f = {"params": {"Conv_0": {"kernel": jnp.transpose(g_conv, (2, 3, 1, 0))},
                      "Dense_0": {"kernel": g_dense.T, "bias": jnp.ones(6)}}}
    dw_t, dw_f = sp_t.weight_grads(sm_t, torch_p, g_t), sp_f.weight_grads(sm_f, flax_p, g_f)
    assert_same(dw_f["params"]["Conv_0"]["kernel"], jnp.transpose(dw_t["conv"], (2, 3, 1, 0)))
    assert_same(dw_f["params"]["Dense_0"]["kernel"], dw_t["dense"].T)
    assert_same(dw_f["params"]["Dense_0"]["bias"], jnp.ones(6))
    c_conv = jnp.asarray(rng.uniform(size=conv.shape), jnp.float32)
    c_dense = jnp.asarray(rng.uniform(size=dense.shape), jnp.float32)
    st_t = sp_t.update(st_t, sm_t, torch_p, g_t, {"conv": c_conv, "dense": c_dense})
    st_f = sp_f.update(st_f, sm_f, flax_p, g_f, {
        "params/Conv_0/kernel": jnp.transpose(c_conv, (2, 3, 1, 0)),
        "params/Dense_0/kernel": c_dense.T})
    if name == "spikenm":  # credits in block layout (out, kh, kw, in), S0.2
        assert_same(st_f.arrays["credit/0"], jnp.transpose(c_conv, (0, 2, 3, 1)))
    for key in st_t.arrays:
        assert_same(st_f.arrays[key], st_t.arrays[key])
    fin_t, fin_f = sp_t.finalize(st_t, torch_p), sp_f.finalize(st_f, flax_p)
    api.check_nm(api.to_block_layout(fin_t["conv"]), 2, 4)
    api.check_nm(fin_f["params"]["Conv_0"]["kernel"], 2, 4, axis=2)
    api.check_nm(fin_f["params"]["Dense_0"]["kernel"], 2, 4, axis=0)
    assert_same(fin_f["params"]["Conv_0"]["kernel"], jnp.transpose(fin_t["conv"], (2, 3, 1, 0)))


def test_custom_layout_dict_names_the_block_axis() -> None:
    """S0.2: ``layout={rank: letters}``; the ``I`` axis is the block axis."""
    w = jnp.asarray(np.random.default_rng(2).normal(size=(8, 6)), jnp.float32)  # (in, out)
    sp = mp.sparsity({"w": w}, 2, 4, 2, method="srste", select=["w"], layout={2: "IO"})
    _, sm = sp.masks(sp.init({"w": w}), {"w": w}, 0)
    api.check_nm(sm.masks["w"], 2, 4, axis=0)
    assert_same(sm.masks["w"], api.topn_mask(jnp.abs(w), 2, 4, axis=0))


# -- which leaves (S5.1) -----------------------------------------------------------------

def test_default_selection_keeps_first_and_last_dense_in_natural_order() -> None:
    """S5.1: Flax-style names ``Dense_0 .. Dense_10`` are layers in natural order, so
    ``Dense_10`` (not ``Dense_9``) is the last, kept dense; biases are never masked."""
    params = {"params": {f"Dense_{i}": {"kernel": jnp.ones((8, 8)), "bias": jnp.ones(8)}
                         for i in range(11)}}
    sp = mp.sparsity(params, 2, 4, 10, layout="flax")
    assert sp.weight_paths == tuple(f"params/Dense_{i}/kernel" for i in range(11))
    assert sp.paths == tuple(f"params/Dense_{i}/kernel" for i in range(1, 10))
    assert sp.setup.layers == tuple(range(1, 10))
    only_last = mp.sparsity(params, 2, 4, 10, layout="flax", dense_first=False)
    assert only_last.paths[0] == "params/Dense_0/kernel" and len(only_last.paths) == 10


def test_sequences_keep_their_order() -> None:
    """S5.1: list items (Equinox's ``layers``) keep their flattening order."""
    layers = [{"weight": jnp.ones((8, 4))}] + [{"weight": jnp.ones((8, 8))}
                                               for _ in range(10)] + [{"weight": jnp.ones((2, 8))}]
    sp = mp.sparsity({"layers": layers}, 2, 4, 10)
    assert sp.paths == tuple(f"layers/{i}/weight" for i in range(1, 11))


def test_dense_method_masks_nothing() -> None:
    """S6.1: ``dense`` selects no leaf; every call passes the params through."""
    params = mlp_params()
    sp = mp.sparsity(params, 2, 4, 3, method="dense")
    assert sp.paths == () and sp.setup.layers == ()
    state, sm = sp.masks(sp.init(params), params, 0)
    assert sm.phase == "dense" and all(v is None for v in jax.tree.leaves(
        sm.masks, is_leaf=lambda v: v is None))
    assert_same(sp.apply(params, sm.masks)["fc1"]["weight"], params["fc1"]["weight"])
    assert_same(sp.finalize(state, params)["fc1"]["weight"], params["fc1"]["weight"])


def test_asp_phases_reset_and_fixed_projection() -> None:
    """S6.5, S5.8: ASP's dense phase has no masks; the pruning step asks for an optimizer
    reset; ``project`` keeps pruned weights exactly 0 in the fixed phase."""
    params = mlp_params()
    sp = mp.sparsity(params, 2, 4, 4, method="asp")
    state = sp.init(params)
    state, sm = sp.masks(state, params, 1)
    assert sm.phase == "dense" and sm.masks["fc1"]["weight"] is None and sm.lr_window == (0, 2)
    assert sp.project(params, sm) is params
    state, sm = sp.masks(state, params, 2)
    assert sm.fixed and sm.reset_optimizer and sm.lr_window == (2, 2)
    moved = jax.tree.map(lambda p: p + 1.0, params)
    kept = sp.project(moved, sm)
    assert_same(kept["fc1"]["weight"], moved["fc1"]["weight"] * sm.masks["fc1"]["weight"])
    api.check_nm(kept["fc1"]["weight"], 2, 4)
    assert_same(kept["fc0"]["weight"], moved["fc0"]["weight"])
    state, sm3 = sp.masks(state, moved, 3)
    assert not sm3.reset_optimizer
    assert_same(sm3.masks["fc1"]["weight"], sm.masks["fc1"]["weight"])


@pytest.mark.parametrize("name", ["maskllm", "random"])
def test_other_builtin_methods_run_through_the_path(name: str) -> None:
    """S6.6, S6.7: MaskLLM (search, then fixed) and the fixed random mask run through the
    same calls and end exactly 2:4."""
    params = mlp_params()
    sp = mp.sparsity(params, 2, 4, 5, method=name)
    state, phases = sp.init(params), []
    for s in range(5):
        state, sm = sp.masks(state, params, s)
        ones = jax.tree.map(jnp.ones_like, params)
        grads = sp.weight_grads(sm, params, ones)
        assert_same(grads["fc1"]["weight"], sm.masks["fc1"]["weight"])  # G * mask
        state = sp.update(state, sm, params, ones)
        phases.append(sm.phase)
    assert phases == (["search"] * 4 + ["fixed"] if name == "maskllm" else ["fixed"] * 5)
    api.check_nm(sp.finalize(state, params)["fc1"]["weight"], 2, 4)


# -- compilations ------------------------------------------------------------------------

def test_compilations_are_one_per_phase_and_none_per_step() -> None:
    """The user's jitted step compiles once per phase (search with credits, fine-tune
    without); after the first steps of a phase no step compiles anything, the eager
    method calls included (temperature and scale are traced scalars)."""
    total = 12  # 10 search steps, 2 fixed (S5.8)
    params = mlp_params(seed=4)
    sp = mp.sparsity(params, 2, 4, total_steps=total, seed=7)
    step_fn = make_step(sp)
    tx = optax.adam(1e-2)

    @jax.jit
    def opt_step(grads, opt_state, params):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    state = sp.init(params)
    opt_state = jax.device_put(tx.init(params), jax.devices()[0])
    per_step = []
    for s in range(total):
        with counting_compiles() as seen:
            x, y = batch(s)
            state, sm = sp.masks(state, params, s)
            _, g_eff, credits = step_fn(params, sm.masks, x, y, sm.decay(LIF.beta),
                                        want_credits=bool(sm.credit_paths))
            sp.flips(state, sm)
            state = sp.update(state, sm, params, g_eff, credits)
            params, opt_state = opt_step(sp.weight_grads(sm, params, g_eff), opt_state,
                                         params)
            params = sp.project(params, sm)
            jax.block_until_ready((params, state))
        per_step.append(len(seen))
    assert step_fn._cache_size() == 2 and opt_step._cache_size() == 1
    assert per_step[2:10] == [0] * 8 and per_step[11] == 0, per_step


# -- EID credits (S2.1-S2.3, S5.5) -------------------------------------------------------

@pytest.mark.parametrize("signed", [False, True], ids=["abs", "signed"])
def test_dense_credit_equals_the_reference_in_both_layouts(signed: bool) -> None:
    """S2.3 / S2.9: `dense_credit` is `spikenm.reference.eligibility_credit` in the ``OI``
    layout and its transpose in ``IO``; `op_credit` of a dense map agrees."""
    rng = np.random.default_rng(9)
    x, d, w = rng.uniform(size=(3, 5, 8)), rng.normal(size=(3, 5, 6)), rng.normal(size=(6, 8))
    want = reference.eligibility_credit(x, d, w, 0.7, signed)
    with jax.enable_x64(True):
        xj, dj, wj = (jnp.asarray(a) for a in (x, d, w))
        got = mpc.dense_credit(xj, dj, wj, 0.7, signed=signed)
        np.testing.assert_allclose(np.asarray(got), want, rtol=RTOL64, atol=RTOL64 * want.max())
        assert_same(mpc.dense_credit(xj, dj, wj.T, 0.7, layout="IO", signed=signed), got.T)
        via_op = mpc.op_credit(lambda x_t, w_: x_t @ w_.T, xj, dj, wj, 0.7, signed=signed)
        np.testing.assert_allclose(np.asarray(via_op), want, rtol=RTOL64,
                                   atol=RTOL64 * want.max())
    if signed:   # never above S2.3, and a different quantity
        plain = reference.eligibility_credit(x, d, w, 0.7)
        assert np.all(want <= plain + 1e-14) and not np.allclose(want, plain)


@pytest.mark.parametrize("flax_layout", [False, True])
def test_op_credit_of_a_conv_equals_the_reference_im2col_credit(flax_layout: bool) -> None:
    """S2.3 / S2.9: for a conv, `op_credit` equals the credit of the unfolded (im2col)
    input in block layout, in ``OIHW`` (NCHW inputs) and ``HWIO`` (NHWC inputs), abs and
    signed."""
    rng = np.random.default_rng(11)
    t, n, c, h, o, k = 3, 2, 4, 5, 3, 3
    x = (rng.uniform(size=(t, n, h, h, c)) < 0.4).astype(np.float64)   # NHWC
    w = rng.normal(size=(o, c, k, k))                                   # OIHW
    d = rng.normal(size=(t, n, h, h, o))                                # padding 1, stride 1
    cols = np.stack([im2col(x[i], k, 1, 1)[0] for i in range(t)])
    want = {signed: conv_weight_unblock(reference.eligibility_credit(
        cols, d.reshape(t, n * h * h, o), conv_weight_block(w), 0.5, signed), w.shape)
        for signed in (False, True)}
    assert not np.allclose(want[False], want[True])
    with jax.enable_x64(True):
        if flax_layout:
            dims = ("NHWC", "HWIO", "NHWC")
            xs, ds, ws = jnp.asarray(x), jnp.asarray(d), jnp.asarray(w.transpose(2, 3, 1, 0))
        else:
            dims = ("NCHW", "OIHW", "NCHW")
            xs = jnp.asarray(x.transpose(0, 1, 4, 2, 3))
            ds, ws = jnp.asarray(d.transpose(0, 1, 4, 2, 3)), jnp.asarray(w)

        def conv(x_t, w_):
            return jax.lax.conv_general_dilated(x_t, w_, (1, 1), ((1, 1), (1, 1)),
                                                dimension_numbers=dims,
                                                precision=jax.lax.Precision.HIGHEST)

        for signed in (False, True):
            got = np.asarray(mpc.op_credit(conv, xs, ds, ws, 0.5, signed=signed))
            if flax_layout:
                got = got.transpose(3, 2, 0, 1)
            np.testing.assert_allclose(got, want[signed], rtol=RTOL64,
                                       atol=RTOL64 * np.abs(want[signed]).max())


def test_credits_feed_the_running_credit_and_missing_ones_warn_once() -> None:
    """S5.5: credits given to `update` (leaf layout) become the running credit (``C = c``
    at the first update); credits the method asks for but that are missing are warned
    about once."""
    params = mlp_params()
    sp = mp.sparsity(params, 2, 4, 10)
    state = sp.init(params)
    state, sm = sp.masks(state, params, 0)
    zeros = jax.tree.map(jnp.zeros_like, params)
    c = jnp.asarray(np.random.default_rng(3).uniform(size=(16, 16)), jnp.float32)
    after = sp.update(state, sm, params, zeros, {"fc1/weight": c})
    assert_same(after.arrays["credit/1"], c)
    with pytest.warns(UserWarning, match=r"EID credits of \['fc1/weight'\]"):
        sp.update(state, sm, params, zeros)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sp.update(state, sm, params, zeros)
    off = mp.sparsity(params, 2, 4, 10, method=SpikeNM(eid=False))
    _, sm_off = off.masks(off.init(params), params, 0)
    assert sm_off.credit_paths == () and sm_off.decay(0.9) == 0.9


def test_signed_credit_is_the_methods_choice_S2_9() -> None:
    """S2.9, S5.5: ``SpikeNM(eid_credit="signed")`` makes ``sm.signed`` true in the search
    phase (false by default and in the fine-tune phase); the user's credits with
    ``signed=sm.signed`` are the reference's signed `eligibility_credit` of the layer's
    inputs and ``dL/dI_t``, and become the running credit at the first update."""
    with jax.enable_x64(True):
        params = mlp_params(dtype=np.float64)
        sp = mp.sparsity(params, 2, 4, total_steps=5, method=SpikeNM(eid_credit="signed"))
        state, sm = sp.masks(sp.init(params), params, 0)
        assert sm.signed and sm.credit_paths == ("fc1/weight",)
        plain = mp.sparsity(params, 2, 4, total_steps=5)
        assert not plain.masks(plain.init(params), params, 0)[1].signed
        assert not sp.masks(state, params, 4)[1].signed            # fixed phase
        x, y = batch(0, np.float64)
        probes = {p: jnp.zeros((T, B, w.shape[0])) for p, w in sp.weights(params).items()}
        (_, inputs), (g_eff, d) = jax.value_and_grad(forward, (0, 3), has_aux=True)(
            sp.apply(params, sm.masks), x, y, probes)
        w = params["fc1"]["weight"]
        got = mpc.dense_credit(inputs["fc1/weight"], d["fc1/weight"], w, sm.decay(LIF.beta),
                               signed=sm.signed)
        args = [np.asarray(a) for a in (inputs["fc1/weight"], d["fc1/weight"], w)]
        want = reference.eligibility_credit(*args, LIF.beta, True)
        assert float(want.max()) > 0
        assert not np.allclose(want, reference.eligibility_credit(*args, LIF.beta))
        np.testing.assert_allclose(np.asarray(got), want, rtol=RTOL64,
                                   atol=RTOL64 * want.max())
        after = sp.update(state, sm, params, g_eff, {"fc1/weight": got})
        assert_same(after.arrays["credit/1"], got)


# -- state and diagnostics ---------------------------------------------------------------

def test_state_is_a_pytree_and_flips_are_counted() -> None:
    """S6.0: the method state flattens to its arrays (jax.tree tools, device_put) and
    rebuilds with its counters; `flips` counts S5.9's changed entries."""
    params = mlp_params()
    sp = mp.sparsity(params, 2, 4, 10)
    state = sp.init(params)
    state, sm = sp.masks(state, params, 0)
    assert sp.flips(state, sm) == (None, 0)
    state = sp.update(state, sm, params, jax.tree.map(jnp.ones_like, params),
                      {"fc1/weight": jnp.ones((16, 16))})
    leaves, treedef = jax.tree.flatten(state)
    assert len(leaves) == len(state.arrays)
    again = jax.tree.unflatten(treedef, leaves)
    assert isinstance(again, MethodState) and dict(again.meta) == {"logit_steps": 1}
    state, sm = sp.masks(state, params, 1)
    changed, compared = sp.flips(state, sm)
    prev = state.arrays["previous/1"]
    assert compared == 256 and float(changed) == float(jnp.abs(sm.method.hard[1] - prev).sum())


# -- errors (S0.5, S5.1) -----------------------------------------------------------------

def test_bad_input_is_refused_with_a_clear_error() -> None:
    params = mlp_params()
    with pytest.raises(ValueError, match=r"'fc1/weight' of shape \(16, 18\).*not a multiple"):
        mp.sparsity({**params, "fc1": {"weight": jnp.ones((16, 18))}}, 2, 4, 5)
    with pytest.raises(TypeError, match="'fc1/weight' is a NumPy array"):
        mp.sparsity({**params, "fc1": {"weight": np.ones((16, 16), np.float32)}}, 2, 4, 5)
    with pytest.raises(ValueError, match="no weight leaf to mask"):
        mp.sparsity({"a": jnp.ones((4, 4)), "b": jnp.ones((4, 4))}, 2, 4, 5)
    with pytest.raises(ValueError, match="'nope'.*not a leaf"):
        mp.sparsity(params, 2, 4, 5, select=["nope"])
    with pytest.raises(ValueError, match="'fc1/bias'.*not a weight leaf"):
        mp.sparsity(params, 2, 4, 5, select=["fc1/bias"])
    with pytest.raises(ValueError, match="chose no leaf"):
        mp.sparsity(params, 2, 4, 5, select=lambda path, leaf: False)
    with pytest.raises(TypeError, match="select="):
        mp.sparsity(params, 2, 4, 5, select="fc1/weight")
    with pytest.raises(ValueError, match="layout='keras' is unknown"):
        mp.sparsity(params, 2, 4, 5, layout="keras")
    with pytest.raises(ValueError, match="one 'O'"):
        mp.sparsity(params, 2, 4, 5, layout={2: "AB"})
    with pytest.raises(ValueError, match="total_steps=0"):
        mp.sparsity(params, 2, 4, 0)
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        mp.sparsity(params, 2, 4, 5, method="nope")
    with pytest.raises(TypeError, match="dtypes"):
        mp.sparsity({"a": jnp.ones((4, 4)), "b": jnp.ones((4, 4), jnp.bfloat16)}, 2, 4, 5,
                    select=["a", "b"])
    sp = mp.sparsity(params, 2, 4, 5)
    state = sp.init(params)
    with pytest.raises(ValueError, match=r"step=5 is invalid; expected an int in \[0, 4\]"):
        sp.masks(state, params, 5)
    state, sm = sp.masks(state, params, 0)
    with pytest.raises(ValueError, match="structure of the params"):
        sp.apply({"fc0": params["fc0"]}, sm.masks)
    with pytest.raises(ValueError, match=r"params\['fc1/weight'\]"):
        sp.masks(state, {**params, "fc1": {"weight": jnp.ones((16, 8)), "bias": jnp.ones(16)}}, 1)
    with pytest.raises(ValueError, match=r"credits\['fc0/weight'\]: not a masked leaf"):
        sp.update(state, sm, params, params, {"fc0/weight": jnp.ones((16, 8))})
    with pytest.raises(ValueError, match=r"credits\['fc1/weight'\] is \(4,\)"):
        sp.update(state, sm, params, params, {"fc1/weight": jnp.ones(4)})
    with pytest.raises(TypeError, match="PathMasks"):
        sp.weight_grads(sm.method, params, params)
    with pytest.raises(ValueError, match="d has steps of shape"):
        mpc.op_credit(lambda x_t, w: x_t @ w.T, jnp.ones((2, 1, 4)), jnp.ones((2, 1, 3)),
                  jnp.ones((1, 4)), 0.5)
    with pytest.raises(ValueError, match="decay must be in"):
        mpc.dense_credit(jnp.ones((2, 1, 4)), jnp.ones((2, 1, 1)), jnp.ones((1, 4)), 1.5)
    with pytest.raises(ValueError, match="shapes do not fit"):
        mpc.dense_credit(jnp.ones((2, 1, 4)), jnp.ones((2, 1, 1)), jnp.ones((1, 4)), 0.5,
                     layout="IO")
    with pytest.raises(TypeError, match=r"signed='yes' is invalid; expected True or False"):
        mpc.dense_credit(jnp.ones((2, 1, 4)), jnp.ones((2, 1, 1)), jnp.ones((1, 4)), 0.5,
                         signed="yes")
    with pytest.raises(TypeError, match=r"signed=1 is invalid"):
        mpc.op_credit(lambda x_t, w: x_t @ w.T, jnp.ones((2, 1, 4)), jnp.ones((2, 1, 1)),
                      jnp.ones((1, 4)), 0.5, signed=1)


# -- the module docstring's loop: training improves the loss ---------------------------

def docstring_loop() -> str:
    doc = mp.__doc__
    lines = doc[doc.index("Example loop::"):].splitlines()[1:]
    code = []
    for line in lines:
        if line.strip() and not line.startswith("    "):
            break
        code.append(line[4:])
    return "\n".join(code)


@pytest.mark.parametrize("name", ["spikenm", "srste"])
def test_docstring_training_loop_lowers_the_loss_and_ends_exact_2_4(name: str) -> None:
    """S5, S6.2, S6.4: the module's example loop (plain JAX + optax, EID credits from
    probes) trains: the mean loss of the last 10 of 60 steps is below that of the first
    10; fc1 ends exactly 2:4; the user's functions compiled once per phase."""
    source = docstring_loop()
    call = "mp.sparsity(params, 2, 4, total_steps=S)"
    assert call in source
    ns: dict = {}
    exec(compile(source.replace(call, f"mp.sparsity(params, 2, 4, total_steps=S, "
                                      f"method={name!r})"), "method_path example", "exec"), ns)
    losses = np.array([float(v) for v in ns["losses"]])
    assert losses[-10:].mean() < losses[:10].mean() - 0.1, losses
    api.check_nm(ns["final"]["fc1"]["weight"], 2, 4)
    assert ns["step_grads"]._cache_size() == (2 if name == "spikenm" else 1)
    assert ns["opt_step"]._cache_size() == 1


@pytest.mark.parametrize("module", [mp, mpc])
def test_docstring_examples_run(module) -> None:
    """The ``>>>`` examples of both modules run and print what they show."""
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
