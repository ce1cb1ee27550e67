"""SpikeNM as pure functions inside ``jax.jit``: sampler, EID and schedules on a traced
step (SPEC S5.15).

`flow` picks the masked weight leaves of a params pytree as `method_path.sparsity`
does (same layouts, ``select``, ``dense_first``/``dense_last``, S5.1) and returns a
`Flow`: static facts plus pure functions of pytrees of arrays.  The method state is a
`FlowState`, a plain pytree of arrays -- the step counter, the noise key, the logits
and their Adam moments, the running EID credit -- so the whole training step, masks,
forward, backward, logit update and optax update, is one jitted function that compiles
once for the whole run.  The phase (search or fine-tune, S5.8), the temperature and
scale (S5.6) and the EID weight and target temperature (S5.5) are computed from the
traced step (`spikenm.backends.jax.schedules`, ``lax.cond``), not from a Python int.

Per step (inside one ``jax.jit``)::

    fm = fl.masks(fstate)                                 # masks of step fstate.step
    # loss at W_eff = fl.apply(params, fm.masks); G = dL/dW_eff; credits from the
    # layers' inputs and dL/dI_t (fl.probes, fl.dense_credits)
    fstate = fl.update(fstate, fm, params, G, credits)   # logits: S5.4 + EID S5.5, Adam
    updates, opt = tx.update(fl.weight_grads(fm, G), opt, params)          # optax
    params = fl.project(optax.apply_updates(params, updates), fm)          # S5.8
    ...
    final = fl.finalize(fstate, params)                   # exact n:m weights

Noise
-----
The noise of step ``s`` and masked layer ``k`` (its layer ordinal) is
``gumbel_like(pi, fold_in(fold_in(fold_in(key, 0), s), k))`` with the run key given to
`Flow.init` (a ``jax.random`` key, or an int for `random.prng_key`): a function of
``(key, step, layer)``, not of generator state, so a state restored from a checkpoint
draws what an uninterrupted run draws, and data-parallel workers with one key draw one
mask (the properties of S5.2).  The numbers differ from the host-seeded stream of
S5.2 that `method_path` and the trainer use (``seed_of(seed, 0, s, k)``): the same
distribution (standard Gumbel, S1.6) and the same formulas (S1.1-S1.5, S2, S5.3-S5.8)
on other draws, so runs agree in distribution, not number by number.  Given the
same noise the flow's update is the method object's (`spikenm.methods.spikenm.SpikeNM`,
S6.0) up to rounding (tests/test_jax_functional.py checks it in float64).
`FlowState.key` is a typed key: store ``jax.random.key_data(state.key)`` where a
checkpoint holds plain arrays and restore it with ``jax.random.wrap_key_data``.

EID
---
With ``eid=True`` (the default method) `Flow.update` needs the credit of every masked
leaf, in the leaf's own shape: `Flow.dense_credits` for dense layers from the inputs and
the gradients of zero probes added to the currents (`Flow.probes`), or
`spikenm.backends.jax.method_path_credit.op_credit` for a convolution, with trace decay
`Flow.decay` and ``signed=Flow.signed``.  The update folds them into the running credit
(S2.4) and adds ``lambda_s * d eid_loss / d pi`` (S2.6, S2.7) to the logits' gradient;
`Flow.eid_loss` is that term as a function of the logits, for callers that
differentiate it themselves.  In the fine-tune phase credits are ignored.

Example (an Equinox spiking MLP with optax; ``layers/1/weight`` is masked 2:4)::

    import equinox as eqx, jax, jax.numpy as jnp, numpy as np, optax
    from spikenm.backends.jax import functional
    from spikenm.backends.jax.snn_lif import lif_over_time
    from spikenm.snn import LIFParams

    lif, S, B = LIFParams(), 40, 32                       # beta 0.5, T = 4 steps
    keys = jax.random.split(jax.random.key(0), 3)
    model = [eqx.nn.Linear(16, 32, key=keys[0]), eqx.nn.Linear(32, 32, key=keys[1]),
             eqx.nn.Linear(32, 4, key=keys[2])]
    params, static = eqx.partition(model, eqx.is_array)
    fl = functional.flow(params, 2, 4, total_steps=S)     # spikenm + EID (S5.15)
    tx = optax.adam(optax.cosine_decay_schedule(1e-2, S))
    teacher = np.random.default_rng(0).normal(size=(16, 4))

    def loss_fn(eff, probes, x, y):
        h, inputs = jnp.broadcast_to(x, (lif.time_steps,) + x.shape), {}
        for i, layer in enumerate(eqx.combine(eff, static)):
            inputs[f"{i}/weight"] = h
            cur = h @ layer.weight.T + layer.bias + probes.get(f"{i}/weight", 0.0)
            h = lif_over_time(cur, lif) if i < 2 else cur
        return optax.softmax_cross_entropy_with_integer_labels(h.mean(0), y).mean(), inputs

    @jax.jit                                              # compiles once for all S steps
    def train_step(params, opt_state, fstate, x, y):
        fm = fl.masks(fstate)
        (loss, inputs), (g_eff, d) = jax.value_and_grad(loss_fn, (0, 1), has_aux=True)(
            fl.apply(params, fm.masks), fl.probes(params, lif.time_steps, B), x, y)
        credits = fl.dense_credits(inputs, d, params, lif.beta)
        fstate = fl.update(fstate, fm, params, g_eff, credits)
        updates, opt_state = tx.update(fl.weight_grads(fm, g_eff), opt_state, params)
        return fl.project(optax.apply_updates(params, updates), fm), opt_state, fstate, loss

    opt_state, fstate = tx.init(params), fl.init(params, jax.random.key(1))
    losses = []
    for s in range(S):
        x = np.random.default_rng(s).uniform(size=(B, 16)).astype(np.float32)
        params, opt_state, fstate, loss = train_step(params, opt_state, fstate, x,
                                                     (x @ teacher).argmax(1))
        losses.append(loss)
    final = fl.finalize(fstate, params)                   # final[1].weight is exactly 2:4

(A list of layers flattens to the paths ``0/weight``, ``1/weight`` ...; the weights of
an ``eqx.Module`` with a ``layers`` field are ``layers/1/weight``.)  The method is a
`spikenm.methods.spikenm.SpikeNM` with any settings (``SpikeNM(eid=False)``, other EID
variants, schedules); other methods run eagerly through `method_path`.  The flow keeps
no mask history, so the flip rate of S5.9 is left to the caller (compare ``fm.masks``
of consecutive steps); steps past ``total_steps`` stay in the fine-tune phase.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from spikenm import validation
from spikenm.api import from_block_layout, to_block_layout
from spikenm.methods import MethodState, load_method
from spikenm.methods import blocks
from spikenm.methods.common import CREDIT, LOGITS, MOMENT1, MOMENT2
from spikenm.methods.spikenm import SpikeNM
from spikenm.optim import OptHyper, OptState, opt_update
from spikenm.seeds import MASK_NOISE

from . import method_path
from .eid import eid_loss as _eid_loss
from .method_path_credit import dense_credit
from .random import as_key, gumbel_like, is_key
from .schedules import traced_schedule, traced_warmup

__all__ = ["Flow", "FlowMasks", "FlowState", "flow"]


class FlowState(NamedTuple):
    """The method state of a `Flow`: a pytree of arrays (S5.15).

    Attributes
    ----------
    step : int32 array ``()``
        The optimizer step ``s`` of the next `Flow.masks`.
    key : typed ``jax.random`` key ``()``
        The run key of the noise (module docstring).
    logits, moment1, moment2 : dict path -> array
        The logits ``pi`` of every masked leaf (block layout, S0.2) and their Adam
        moments (S5.7).
    logit_steps : int32 array ``()``
        The Adam updates of the logits so far.
    credit : dict path -> array
        The running EID credit (S2.4, block layout); empty without EID.
    credited : bool array ``()``
        Whether ``credit`` holds a credit yet (the first one is taken as it is).
    """

    step: jax.Array
    key: jax.Array
    logits: dict[str, jax.Array]
    moment1: dict[str, jax.Array]
    moment2: dict[str, jax.Array]
    logit_steps: jax.Array
    credit: dict[str, jax.Array]
    credited: jax.Array


class FlowMasks(NamedTuple):
    """The masks of one step and what `Flow.update` needs back (a pytree).

    Attributes
    ----------
    masks : pytree
        Like the params: the mask of each masked leaf in the leaf's layout (exactly
        ``n:m``), ``None`` elsewhere.
    search : bool array ``()``
        True in the search phase (sampled masks), False in the fine-tune phase (the
        fixed mask ``topn(pi)``, S5.8).
    noise : dict path -> array
        The step's Gumbel noise (block layout; zeros in the fine-tune phase).
    temperature, scale : array ``()``
        ``tau_s`` and ``kappa_s`` (0 in the fine-tune phase).
    """

    masks: Any
    search: jax.Array
    noise: dict[str, jax.Array]
    temperature: jax.Array
    scale: jax.Array


class Flow:
    """SpikeNM over the masked leaves of a params pytree, as pure jittable functions
    (module docstring).  Built by `flow`.

    Attributes
    ----------
    method : SpikeNM
        The method object (its settings; its own calls are not used).
    setup : MethodSetup
        Pattern, layer ordinals, shapes, ``total_steps``, dtype.
    paths : tuple of str
        The masked leaves, in layer order.
    search_steps : int
        ``S_search`` (S5.8).
    """

    def __init__(self, sp: method_path.Sparsity) -> None:
        self._sp = sp
        self.method: SpikeNM = sp.method
        self.setup = sp.setup
        self.paths = sp.paths
        self.search_steps = self.method.search_steps(self.setup.total_steps)
        self._leaves = {leaf.path: leaf for leaf in sp._leaves}

    def __repr__(self) -> str:
        s = self.setup
        return (f"Flow(n={s.n}, m={s.m}, total_steps={s.total_steps}, "
                f"search_steps={self.search_steps}, eid={self.method.eid}, "
                f"paths={list(self.paths)})")

    # -- state ----------------------------------------------------------------------------
    def init(self, params: Any, key: Any) -> FlowState:
        """The state before step 0: logits and moments 0 (S5.7), no credit, ``key`` (a
        ``jax.random`` key, a legacy ``uint32 (2,)`` key or an int seed) as run key.
        Its leaves are committed to the params' device when the params are committed,
        uncommitted when they are not: ``jax.jit`` compiles a step again when its first
        call mixes committed and uncommitted arguments (its outputs are committed then)."""
        mstate = self._sp.init(params)  # the method's initial logits (0) and moments
        zero = {p: jnp.zeros(mstate.arrays[f"{LOGITS}{leaf.layer}"].shape, self.setup.dtype)
                for p, leaf in self._leaves.items()}
        state = FlowState(
            step=jnp.zeros((), jnp.int32),
            key=as_key(key if is_key(key) else validation.seed(key)), logits=dict(zero),
            moment1=dict(zero), moment2=dict(zero), logit_steps=jnp.zeros((), jnp.int32),
            credit=dict(zero) if self.method.eid else {}, credited=jnp.zeros((), bool))
        weight = next(iter(self.weights(params).values()))
        if getattr(weight, "committed", False):
            # committed like the params: a jitted step whose inputs are all committed, or
            # all uncommitted, compiles once (a mix compiles again on the second call)
            state = jax.device_put(state, weight.sharding)
        return state

    def method_state(self, state: FlowState) -> MethodState:
        """``state`` as the method object's `MethodState` (keys ``logits/k`` ...,
        `spikenm.methods.common`); eager: it reads ``logit_steps`` on the host."""
        arrays: dict[str, jax.Array] = {}
        for p, leaf in self._leaves.items():
            k = leaf.layer
            arrays[f"{LOGITS}{k}"] = state.logits[p]
            arrays[f"{MOMENT1}{k}"] = state.moment1[p]
            arrays[f"{MOMENT2}{k}"] = state.moment2[p]
            if self.method.eid and bool(state.credited):
                arrays[f"{CREDIT}{k}"] = state.credit[p]
        return MethodState(arrays, {"logit_steps": int(state.logit_steps)})

    # -- schedules ------------------------------------------------------------------------
    def schedules(self, step: Any) -> dict[str, jax.Array]:
        """``temperature`` ``tau_s``, ``scale`` ``kappa_s`` (S5.6), ``eid_temperature``
        ``tau_e(s)`` and ``eid_weight`` ``lambda_s`` (S5.5) at the traced ``step``, in
        JAX's default float dtype (their search-phase values; the fine-tune phase does
        not use them)."""
        meth, search = self.method, self.search_steps
        out = {name: traced_schedule(r.kind, r.start, r.end, step, search)
               for name, r in (("temperature", meth.temperature), ("scale", meth.scale),
                               ("eid_temperature", meth.eid_temperature))}
        weight = meth.eid_weight if meth.eid else 0.0
        out["eid_weight"] = weight * traced_warmup(step, meth.eid_warmup_fraction * search)
        return out

    def _scalars(self, step: jax.Array) -> dict[str, jax.Array]:
        dtype = jnp.dtype(self.setup.dtype)
        return {k: v.astype(dtype) for k, v in self.schedules(step).items()}

    # -- masks ----------------------------------------------------------------------------
    def masks(self, state: FlowState) -> FlowMasks:
        """The masks of step ``state.step``: in the search phase
        ``sample_mask(pi, n, m, noise=g, temperature=tau_s, scale=kappa_s, hard=True)``
        (S5.3), in the fine-tune phase ``topn(pi)`` (S5.8), chosen by ``lax.cond``."""
        n, m = self.setup.n, self.setup.m
        step = state.step
        search = step < self.search_steps
        sc = self._scalars(step)
        tau, kappa = sc["temperature"], sc["scale"]

        def sampled(_: None) -> tuple[dict, dict]:
            hard, noise = {}, {}
            stream = jax.random.fold_in(jax.random.fold_in(state.key, MASK_NOISE), step)
            for p, leaf in self._leaves.items():
                pi = state.logits[p]
                g = gumbel_like(pi, jax.random.fold_in(stream, leaf.layer))
                hard[p], noise[p] = blocks.sample(pi, g, n, m, tau, kappa), g
            return hard, noise

        def fixed(_: None) -> tuple[dict, dict]:
            return ({p: blocks.topn(pi, n, m) for p, pi in state.logits.items()},
                    {p: jnp.zeros_like(pi) for p, pi in state.logits.items()})

        hard, noise = lax.cond(search, sampled, fixed, None)
        zero = jnp.zeros((), tau.dtype)
        return FlowMasks(self._from_blocks(hard), search, noise,
                         jnp.where(search, tau, zero), jnp.where(search, kappa, zero))

    def _from_blocks(self, by_path: Mapping[str, jax.Array]) -> Any:
        """Block-layout arrays by path -> a pytree like the params (leaf layouts)."""
        return self._sp._tree({self._leaves[p].layer: from_block_layout(v)
                               for p, v in by_path.items()})

    def _to_blocks(self, tree: Any, what: str) -> dict[str, jax.Array]:
        """The masked leaves of ``tree`` (checked against the params' shapes) in block
        layout, by path."""
        by_layer = self._sp._framework(tree, what)
        return {p: to_block_layout(by_layer[leaf.layer]) for p, leaf in self._leaves.items()}

    def apply(self, params: Any, masks: Any) -> Any:
        """``W_eff = W * mask`` at the masked leaves (`method_path.Sparsity.apply`)."""
        return self._sp.apply(params, masks)

    def weights(self, params: Any) -> dict[str, jax.Array]:
        """The masked leaves of ``params`` by path, in their own layout."""
        return self._sp.weights(params)

    def weight_grads(self, fm: FlowMasks, grads: Any) -> Any:
        """``dL/dW = G * mask`` at the masked leaves (S5.4, S5.8), ``grads`` elsewhere:
        the gradients for the weight optimizer."""
        return self._sp.apply(grads, _check_fm(fm).masks)

    def project(self, params: Any, fm: FlowMasks) -> Any:
        """``params`` after an optimizer update: in the fine-tune phase the masked leaves
        times the mask, so pruned weights stay exactly 0 (S5.8); unchanged in the search
        phase."""
        fm = _check_fm(fm)
        masked = self._sp.apply(params, fm.masks)
        return jax.tree_util.tree_map(lambda w, wm: jnp.where(fm.search, w, wm),
                                      params, masked)

    # -- EID ------------------------------------------------------------------------------
    @property
    def signed(self) -> bool:
        """The method's credit: signed (S2.9) or not (S2.3); a static ``signed=``."""
        return self.method.eid_credit == "signed"

    def decay(self, beta: float) -> float:
        """Trace decay ``lam`` of the credits: the method's ``eid_decay``, or the
        neuron's ``beta`` when it is negative (S5.5)."""
        return beta if self.method.eid_decay < 0 else self.method.eid_decay

    def probes(self, params: Any, time_steps: int, batch: int) -> dict[str, jax.Array]:
        """Zero probes ``(T, B, O)`` for the currents of the dense masked leaves: add
        ``probes[path]`` to the layer's current and differentiate the loss by them too;
        their gradient is ``dL/dI_t`` (`method_path_credit`).

        Raises
        ------
        ValueError
            A masked leaf that is not a dense (2-d) weight: use
            `method_path_credit.op_credit` with its own probe.
        """
        out = {}
        for p, w in self.weights(params).items():
            self._dense(p)
            out[p] = jnp.zeros((time_steps, batch, self.setup.weight_shapes[
                self._leaves[p].layer][0]), w.dtype)
        return out

    def dense_credits(self, inputs: Mapping[str, jax.Array], d: Mapping[str, jax.Array],
                      params: Any, beta: float) -> dict[str, jax.Array]:
        """The credit of every dense masked leaf (`method_path_credit.dense_credit`, S2.3
        or S2.9) from its inputs ``inputs[path]`` ``(T, B, K)`` and ``d[path] = dL/dI_t``
        ``(T, B, O)``, with decay ``decay(beta)`` and the method's ``signed``.

        Raises
        ------
        ValueError
            A masked leaf missing from ``inputs`` or ``d``, or not a dense weight.
        """
        out = {}
        for p, w in self.weights(params).items():
            layout = self._dense(p)
            for name, given in (("inputs", inputs), ("d", d)):
                if p not in given:
                    raise ValueError(f"{name} has no entry for the masked leaf {p!r}; "
                                     f"expected one for each of {list(self.paths)}")
            out[p] = dense_credit(inputs[p], d[p], w, self.decay(beta), layout=layout,
                                  signed=self.signed)
        return out

    def _dense(self, path: str) -> str:
        spec = self._leaves[path].spec
        if len(spec) != 2:
            raise ValueError(f"masked leaf {path!r} ({spec}) is not a dense weight; compute "
                             f"its credit with method_path_credit.op_credit")
        return spec

    def _credits(self, credits: Any) -> dict[str, jax.Array]:
        if not self.method.eid:
            return {}
        if not isinstance(credits, Mapping):
            raise ValueError(
                f"credits={type(credits).__name__} is invalid; method spikenm with EID needs "
                f"a dict path -> credit for each of {list(self.paths)} "
                f"(Flow.dense_credits), or build the flow with SpikeNM(eid=False)")
        unknown = [p for p in credits if p not in self._leaves]
        missing = [p for p in self.paths if p not in credits]
        if unknown or missing:
            raise ValueError(f"credits have the paths {sorted(credits)}; expected exactly "
                             f"{list(self.paths)} (missing {missing}, unknown {unknown})")
        out = {}
        for p, leaf in self._leaves.items():
            c = credits[p]
            if not leaf.fits(c, self.setup.weight_shapes[leaf.layer]):
                raise ValueError(f"credits[{p!r}] is {getattr(c, 'shape', type(c).__name__)}; "
                                 f"expected a jax.Array of the leaf's shape")
            out[p] = to_block_layout(leaf.to_framework(c))
        return out

    def _targets(self, credit: Mapping[str, jax.Array], logits: Mapping[str, jax.Array],
                 sc: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """The EID targets of the method's variant from the running credit (S2.11)."""
        n, m = self.setup.n, self.setup.m
        return {p: self.method._targets(credit[p], logits[p], n, m, sc["eid_temperature"],
                                        sc["scale"]) for p in self.paths}

    def eid_loss(self, logits: Mapping[str, jax.Array], state: FlowState) -> jax.Array:
        """``lambda_s * sum_l eid_loss(pi_l, q_l, m, kappa_s)`` (S2.6, S5.5) at step
        ``state.step`` with the targets ``q_l`` of ``state.credit`` (constants) and
        ``logits`` by path (differentiate by them; ``state.logits`` for the state's own).
        Its gradient is the EID part `update` adds.  0 in the fine-tune phase, without EID
        and before the first credit."""
        if not self.method.eid:
            return jnp.zeros((), self.setup.dtype)
        sc = self._scalars(state.step)
        q = self._targets(state.credit, logits, sc)
        total = sum(_eid_loss(logits[p], q[p], self.setup.m, sc["scale"])
                    for p in self.paths)
        on = (state.step < self.search_steps) & state.credited
        return jnp.where(on, sc["eid_weight"] * total, jnp.zeros_like(total))

    # -- the update -----------------------------------------------------------------------
    def update(self, state: FlowState, fm: FlowMasks, params: Any, grads: Any,
               credits: Mapping[str, jax.Array] | None = None) -> FlowState:
        """The state after the backward pass of step ``state.step``, with the counter
        advanced.  In the search phase: the running credit ``C <- mu C + (1 - mu) c``
        (``C = c`` first, S2.4), the logits' gradient
        ``sample_mask_vjp(pi, g, n, m, tau_s, kappa_s, True, G * W)`` (S5.4)
        ``+ lambda_s * eid_loss_vjp(pi, q, m, kappa_s, 1)`` (S5.5) and one Adam step
        (S5.7); in the fine-tune phase only the counter moves.

        Parameters
        ----------
        grads : pytree
            ``G = dL/dW_eff`` like the params.
        credits : dict path -> array
            The credit of every masked leaf in its own shape (required with EID,
            ignored without; not used in the fine-tune phase).
        """
        fm = _check_fm(fm)
        n, m = self.setup.n, self.setup.m
        meth = self.method
        c = self._credits(credits)
        w = self._to_blocks(params, "params")
        g = self._to_blocks(grads, "grads")
        sc = self._scalars(state.step)

        def search(st: FlowState) -> FlowState:
            running, credited = st.credit, st.credited
            if meth.eid:
                mu = meth.eid_momentum
                running = {p: jnp.where(st.credited, mu * st.credit[p] + (1.0 - mu) * c[p],
                                        c[p]) for p in self.paths}
                credited = jnp.ones((), bool)
                q = self._targets(running, st.logits, sc)
            out = []
            for p in self.paths:
                pi = st.logits[p]
                gp = blocks.sample_vjp(pi, fm.noise[p], n, m, fm.temperature, fm.scale,
                                       g[p] * w[p])
                if meth.eid:
                    gp = gp + sc["eid_weight"] * blocks.eid_vjp(pi, q[p], m, fm.scale)
                out.append(gp)
            opt = OptState("adam", st.logit_steps,
                           tuple((st.moment1[p], st.moment2[p]) for p in self.paths))
            new, opt = opt_update([st.logits[p] for p in self.paths], out, opt,
                                  OptHyper(lr=meth.logit_lr))
            slots = dict(zip(self.paths, opt.slots))
            return st._replace(
                logits=dict(zip(self.paths, new)),
                moment1={p: slots[p][0] for p in self.paths},
                moment2={p: slots[p][1] for p in self.paths},
                logit_steps=jnp.asarray(opt.count, jnp.int32), credit=running,
                credited=credited)

        state = lax.cond(fm.search, search, lambda st: st, state)
        return state._replace(step=state.step + 1)

    # -- the end --------------------------------------------------------------------------
    def final_masks(self, state: FlowState) -> Any:
        """``topn(pi)`` of every masked leaf (S1.8, S5.8) as a pytree like the params:
        the fine-tune phase's mask (the logits do not change after the search)."""
        n, m = self.setup.n, self.setup.m
        return self._from_blocks({p: blocks.topn(pi, n, m) for p, pi in state.logits.items()})

    def finalize(self, state: FlowState, params: Any) -> Any:
        """The trained weights ``W * final_mask`` at the masked leaves: exactly ``n:m``
        (S5.8); other leaves unchanged."""
        return self._sp.apply(params, self.final_masks(state))


def _check_fm(fm: Any) -> FlowMasks:
    if not isinstance(fm, FlowMasks):
        raise TypeError(f"expected the FlowMasks returned by Flow.masks, got "
                        f"{type(fm).__name__}")
    return fm


def flow(params: Any, n: int, m: int, total_steps: int, *,
         method: str | SpikeNM = "spikenm", select: Any = None, layout: Any = "torch",
         dense_first: bool = True, dense_last: bool = True) -> Flow:
    """A `Flow` of SpikeNM over the masked leaves of ``params`` (S5.15).

    The leaves, their layouts and the checks are those of `method_path.sparsity`
    (S5.1): ``params`` is read for its structure, shapes, dtype and device only.

    Parameters
    ----------
    params : pytree
        The model's parameters (``jax.Array`` leaves; ``eqx.partition(model,
        eqx.is_array)[0]`` for an Equinox model).
    n, m : int
        The pattern (S0.1).
    total_steps : int
        ``S``: the search phase is its first ``S_search`` steps (S5.8).
    method : "spikenm" or SpikeNM
        SpikeNM with its default settings, or a `spikenm.methods.spikenm.SpikeNM`.
    select, layout, dense_first, dense_last
        As for `method_path.sparsity`.

    Raises
    ------
    TypeError
        ``method`` is not SpikeNM (other methods decide their steps on the host: use
        `method_path.sparsity`); the errors of `method_path.sparsity`.
    ValueError
        The errors of `method_path.sparsity` (a masked leaf whose input size is not a
        multiple of ``m``, nothing to mask, a bad layout or step budget).

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> params = {"fc0": jnp.ones((8, 4)), "fc1": jnp.ones((8, 8)), "fc2": jnp.ones((2, 8))}
    >>> fl = flow(params, 2, 4, total_steps=10)
    >>> fl.paths, fl.search_steps
    (('fc1',), 8)
    >>> fm = jax.jit(fl.masks)(fl.init(params, jax.random.key(0)))
    >>> fm.masks["fc1"].reshape(8, 2, 4).sum(-1).min().item(), fm.masks["fc0"] is None
    (2.0, True)
    """
    meth = load_method(method) if isinstance(method, str) else method
    if not isinstance(meth, SpikeNM):
        raise TypeError(f"method={method!r} is not SpikeNM; the traced flow runs SpikeNM "
                        f"(any settings) only: use method_path.sparsity for other methods")
    sp = method_path.sparsity(params, n, m, total_steps, method=meth, select=select,
                              layout=layout, dense_first=dense_first, dense_last=dense_last)
    return Flow(sp)
