"""The JAX pure-function path of the mask methods: a params pytree in, masks and
gradients out (SPEC S5, S6.0).

`sparsity` picks the weight leaves of a user's parameter pytree (nested dicts of
``jax.Array`` as Flax and Haiku keep them, an Equinox module, lists ...) that carry an
``n:m`` mask and wraps one `spikenm.methods.Method` object (``"spikenm"``, ``"srste"``,
``"asp"`` ... or any import path, `spikenm.methods.load_method`) around them.  Per
optimizer step ``s`` the calls are those of the method (S6.0) with pytrees in place of
the method's dicts keyed by layer ordinal::

    state, sm = sp.masks(state, params, s)                 # masks of step s
    # the user's jitted forward/backward at W_eff = sp.apply(params, sm.masks):
    #   g_eff = dL/dW_eff (a pytree like params), credits from the inputs and dL/dI_t
    grads = sp.weight_grads(sm, params, g_eff)             # dL/dW, for optax
    state = sp.update(state, sm, params, g_eff, credits)   # logits, EID, logit Adam
    params = sp.project(optax.apply_updates(params, updates), sm)   # S5.8
    final = sp.finalize(state, params)                     # exact n:m weights

Where the work runs
-------------------
The forward and backward pass (the user's function) is jitted by the user; it takes the
params and ``sm.masks`` as arguments, so it compiles once for each pytree structure of
the masks (arrays, or ``None`` leaves in a dense phase) and each value of its static
arguments -- in the loop below once for the search and once for the fine-tune phase --
and not once per step.
The method calls (`Sparsity.masks`, `Sparsity.update` ...) run eagerly between the
jitted steps: the methods decide phases and schedules from the Python step number and
derive their noise seeds from it (S5.2), which a trace cannot do.  Their array work is
the JAX backend's kernels, jitted once per shape with temperature and scale as traced
scalars, plus a few element-wise operations; nothing is copied to the host.  After the
first step of a phase, steps compile nothing (tests/test_jax_method_path.py counts it).

Which leaves
------------
A *weight leaf* is a floating ``jax.Array`` whose rank has an entry in ``layout``; the
layout names each axis: ``O`` output, ``I`` input (the block axis, S0.2), other letters
kernel axes.  ``layout="torch"`` (also ``"equinox"``): ``OI`` Linear, ``OIHW`` conv (and
``OIW``, ``OIDHW``); ``layout="flax"``: ``IO`` Dense kernels, ``HWIO`` conv kernels (and
``WIO``, ``DHWIO``); or a dict ``{rank: spec}``.  Masks, gradients, credits and the
final weights keep the leaf's layout; the method sees the framework layout
``(out, in, *kernel)`` of `spikenm.methods.base`.

Weight leaves are ordered as the pytree flattens (fields and list items in order), dict
keys in natural order (``Dense_2`` before ``Dense_10``); a leaf's position is its layer
ordinal (S5.1, the ``index`` of its noise seed, S5.2).  By default every weight leaf
except the first and the last is masked (``dense_first``, ``dense_last``); ``select``
(a collection of path strings, or a predicate ``f(path, leaf) -> bool``) names the
masked leaves instead.  A masked leaf whose input size is not a multiple of ``m`` is a
`ValueError` naming it (S5.1); `Sparsity.paths` lists the masked leaves.  Paths are the
keys joined by ``/``: ``"params/Dense_1/kernel"``, ``"layers/1/weight"``.

State
-----
`Sparsity.init` returns the method's `spikenm.methods.MethodState` on the params'
device.  Importing this module registers `MethodState` as a pytree (its arrays are the
leaves, its counters static), so ``jax.device_put``, ``jax.tree.map`` and checkpoint
libraries take the state as it is.

EID
---
When a step's method wants credits (``sm.credit_paths``), pass ``credits={path: c}``
with ``c`` of the leaf's shape: `spikenm.backends.jax.method_path_credit.dense_credit`
(Dense) or ``op_credit`` (conv) from the layer's inputs and ``dL/dI_t``, with trace decay
``sm.decay(beta)`` and ``signed=sm.signed`` (the method's choice of the S2.3 or the
signed S2.9 credit).  The method folds them into its running credit and adds the EID
gradient to the logits itself (S5.5): nothing is added to the user's loss.

Example loop::

    from functools import partial
    import jax, jax.numpy as jnp, numpy as np, optax
    from spikenm.backends.jax import method_path as mp
    from spikenm.backends.jax.method_path_credit import dense_credit
    from spikenm.backends.jax.snn_lif import lif_over_time
    from spikenm.snn import LIFParams

    lif, S, B, sizes = LIFParams(), 60, 32, (16, 32, 32, 4)   # beta 0.5, T = 4
    T, rng = lif.time_steps, np.random.default_rng(0)
    params = {f"fc{i}": {"weight": jnp.asarray(rng.normal(size=(o, k)) / np.sqrt(k),
                                               jnp.float32),
                         "bias": jnp.zeros(o)}
              for i, (k, o) in enumerate(zip(sizes[:-1], sizes[1:]))}
    dev = jax.devices()[0]
    params = jax.device_put(params, dev)   # committed, as after an update: one compile
    teacher = rng.normal(size=(sizes[0], sizes[-1]))

    def batch(step):
        x = np.random.default_rng(step).uniform(size=(B, sizes[0]))
        return jnp.asarray(x, jnp.float32), jnp.asarray((x @ teacher).argmax(1))

    def forward(eff, x, y, probes):
        # loss, and each masked layer's inputs (T, B, K) for its credit
        h, inputs = jnp.broadcast_to(x, (T,) + x.shape), {}
        for i in range(len(sizes) - 1):
            path, layer = f"fc{i}/weight", eff[f"fc{i}"]
            inputs[path] = h
            cur = h @ layer["weight"].T + layer["bias"] + probes.get(path, 0.0)
            h = lif_over_time(cur, lif) if i < len(sizes) - 2 else cur
        loss = optax.softmax_cross_entropy_with_integer_labels(h.mean(0), y).mean()
        return loss, inputs

    sp = mp.sparsity(params, 2, 4, total_steps=S)     # masks fc1 (S5.1), spikenm + EID
    probes = {p: jnp.zeros((T, B, w.shape[0])) for p, w in sp.weights(params).items()}

    @partial(jax.jit, static_argnames=("want_credits", "signed"))   # one compile per phase
    def step_grads(params, masks, x, y, decay, want_credits, signed):
        (loss, inputs), (g_eff, d) = jax.value_and_grad(forward, (0, 3), has_aux=True)(
            sp.apply(params, masks), x, y, probes)
        credits = {p: dense_credit(inputs[p], d[p], w, decay, signed=signed)
                   for p, w in sp.weights(params).items()} if want_credits else None
        return loss, g_eff, credits

    tx = optax.adam(optax.cosine_decay_schedule(2e-3, S))

    @jax.jit
    def opt_step(grads, opt_state, params):
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state, state, losses = jax.device_put(tx.init(params), dev), sp.init(params), []
    for s in range(S):
        x, y = batch(s)
        state, sm = sp.masks(state, params, s)
        loss, g_eff, credits = step_grads(params, sm.masks, x, y, sm.decay(lif.beta),
                                          want_credits=bool(sm.credit_paths),
                                          signed=sm.signed)
        grads = sp.weight_grads(sm, params, g_eff)
        state = sp.update(state, sm, params, g_eff, credits)
        if sm.reset_optimizer:                         # ASP (S6.5)
            opt_state = jax.device_put(tx.init(params), dev)
        params, opt_state = opt_step(grads, opt_state, params)
        params = sp.project(params, sm)               # S5.8 in a fixed phase
        losses.append(loss)                           # no host copy per step
    final = sp.finalize(state, params)                # fc1 is exactly 2:4

``sm.lr_window`` gives the learning-rate window a method wants (ASP restarts its cosine
schedule after pruning, S6.5); the loop above uses one cosine over all steps.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Collection, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from spikenm import validation
from spikenm.api import to_block_layout
from spikenm.methods import Method, MethodSetup, MethodState, StepMasks, check_method
from spikenm.methods import load_method
from spikenm.methods.flips import step_flips

from .arrays import from_numpy

__all__ = ["LAYOUTS", "PathMasks", "Sparsity", "sparsity"]

LAYOUTS: dict[str, dict[int, str]] = {
    "torch": {2: "OI", 3: "OIW", 4: "OIHW", 5: "OIDHW"},
    "equinox": {2: "OI", 3: "OIW", 4: "OIHW", 5: "OIDHW"},
    "flax": {2: "IO", 3: "WIO", 4: "HWIO", 5: "DHWIO"},
}
"""Named layouts: weight rank -> axis letters (``O`` out, ``I`` in = block axis)."""


# -- MethodState as a pytree ------------------------------------------------------------

def _state_flatten(state: MethodState) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    keys = tuple(sorted(state.arrays))
    meta = tuple(sorted(state.meta.items()))
    return tuple(state.arrays[k] for k in keys), (keys, meta)


def _state_unflatten(aux: tuple[Any, ...], children: Any) -> MethodState:
    keys, meta = aux
    return MethodState(dict(zip(keys, children)), dict(meta))


try:
    jax.tree_util.register_pytree_node(MethodState, _state_flatten, _state_unflatten)
except ValueError:  # already registered (module reloaded)
    pass


# -- layouts and paths --------------------------------------------------------------------

def _check_spec(rank: Any, spec: Any) -> str:
    ok = (isinstance(rank, int) and not isinstance(rank, bool) and rank >= 2
          and isinstance(spec, str) and len(spec) == rank and spec.isalpha()
          and len(set(spec)) == rank and spec.count("O") == 1 and spec.count("I") == 1)
    if not ok:
        raise ValueError(f"layout entry {rank!r}: {spec!r} is invalid; expected rank >= 2 -> "
                         f"a string of that many distinct letters with one 'O' (out) and "
                         f"one 'I' (in, the block axis), e.g. 4: 'OIHW' or 4: 'HWIO'")
    return spec


def _layouts(layout: Any) -> dict[int, str]:
    if isinstance(layout, str):
        if layout not in LAYOUTS:
            raise ValueError(f"layout={layout!r} is unknown; expected one of {list(LAYOUTS)} "
                             f"or a dict rank -> axis letters")
        return dict(LAYOUTS[layout])
    if isinstance(layout, Mapping) and layout:
        return {rank: _check_spec(rank, spec) for rank, spec in layout.items()}
    raise ValueError(f"layout={layout!r} is invalid; expected one of {list(LAYOUTS)} or a "
                     f"non-empty dict rank -> axis letters")


@dataclass(frozen=True)
class _Leaf:
    """A masked leaf: flat index, path, layer ordinal and the permutation to the
    framework layout ``(out, in, *kernel)``."""

    index: int
    path: str
    layer: int
    spec: str

    @property
    def perm(self) -> tuple[int, ...]:
        s = self.spec
        return (s.index("O"), s.index("I")) + tuple(i for i, c in enumerate(s) if c not in "OI")

    def to_framework(self, x: jax.Array) -> jax.Array:
        perm = self.perm
        return x if perm == tuple(range(len(perm))) else jnp.transpose(x, perm)

    def from_framework(self, x: jax.Array) -> jax.Array:
        perm = self.perm
        return x if perm == tuple(range(len(perm))) else jnp.transpose(x, _inverse(perm))

    def framework_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape[i] for i in self.perm)

    def fits(self, x: Any, framework_shape: tuple[int, ...]) -> bool:
        """``x`` is a ``jax.Array`` of this leaf's rank with ``framework_shape`` in the
        framework layout."""
        return (isinstance(x, jax.Array) and x.ndim == len(self.spec)
                and self.framework_shape(x.shape) == tuple(framework_shape))


def _key_name(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _natural(text: str) -> tuple[tuple[int, Any], ...]:
    return tuple((0, int(part)) if part.isdigit() else (1, part)
                 for part in re.split(r"(\d+)", text) if part)


def _order_keys(paths: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Sort keys: per level, dict keys in natural order, other children in flattening
    order (the first flat index under that child)."""
    first: dict[tuple[str, ...], int] = {}
    for i, path in enumerate(paths):
        for j in range(1, len(path) + 1):
            first.setdefault(tuple(repr(k) for k in path[:j]), i)
    out = []
    for path in paths:
        key = []
        for j, k in enumerate(path):
            if isinstance(k, jax.tree_util.DictKey):
                key.append(_natural(str(k.key)))
            else:
                key.append(((0, first[tuple(repr(q) for q in path[:j + 1])]),))
        out.append(tuple(key))
    return out


def _is_weight(x: Any, layouts: Mapping[int, str]) -> bool:
    return isinstance(x, jax.Array) and x.ndim in layouts and jnp.issubdtype(
        x.dtype, jnp.floating)


# -- the step's masks ---------------------------------------------------------------------

@dataclass(frozen=True)
class PathMasks:
    """The masks of one step as a pytree, and what `Sparsity` needs back.

    Attributes
    ----------
    step : int
        The optimizer step ``s``.
    masks : pytree
        Like the params: the mask of each masked leaf in the leaf's layout, ``None``
        elsewhere (all ``None`` in a ``"dense"`` phase).  Pass it into the jitted
        function and apply it there with `Sparsity.apply`.
    method : StepMasks
        The method's own step record (noise, schedules, hard block masks ...).
    credit_paths : tuple of str
        Masked leaves whose EID credits `Sparsity.update` wants from this step.
    """

    step: int
    masks: Any
    method: StepMasks
    credit_paths: tuple[str, ...]

    @property
    def phase(self) -> str:
        """``"dense"``, ``"search"``, ``"fixed"`` or a method's own (`StepMasks.phase`)."""
        return self.method.phase

    @property
    def fixed(self) -> bool:
        """True in a fixed-mask phase (S5.8): `Sparsity.project` then zeroes the pruned
        weights after each update."""
        return self.method.fixed

    @property
    def reset_optimizer(self) -> bool:
        """True on the step where the weight optimizer must restart (ASP, S6.5)."""
        return self.method.reset_optimizer

    @property
    def lr_window(self) -> tuple[int, int] | None:
        """``(start, length)`` of the learning-rate schedule this step lies in (S5.6)."""
        return self.method.lr_window

    @property
    def temperature(self) -> float:
        """The sampler temperature ``tau_s`` of the step (0 where unused)."""
        return self.method.temperature

    @property
    def scale(self) -> float:
        """The logit scale ``kappa_s`` of the step (0 where unused)."""
        return self.method.scale

    def decay(self, beta: float) -> float:
        """Trace decay ``lam`` of this step's credits: the method's ``eid_decay``, or the
        neuron's ``beta`` when the method leaves it to the neuron (S5.5)."""
        return beta if self.method.eid_decay < 0 else self.method.eid_decay

    @property
    def signed(self) -> bool:
        """Whether this step's credits are the signed ones of S2.9 (the method's
        ``eid_signed``): pass it as ``signed=`` to the credit functions of
        `spikenm.backends.jax.method_path_credit` (a static argument under ``jax.jit``)."""
        return bool(self.method.eid_signed)


# -- the path -----------------------------------------------------------------------------

class Sparsity:
    """One mask method over the masked leaves of a params pytree (module docstring).

    Built by `sparsity`.  Every call takes and returns pytrees of the structure of the
    params it was built on; a different structure is a `ValueError`.

    Attributes
    ----------
    method : Method
        The method object.
    setup : MethodSetup
        Its static facts; ``setup.layers`` are the layer ordinals of `paths`.
    paths : tuple of str
        The masked leaves, in layer order.
    weight_paths : tuple of str
        Every weight leaf in layer order (position = layer ordinal).
    """

    def __init__(self, method: Method, setup: MethodSetup, treedef: Any,
                 leaves: tuple[_Leaf, ...], weight_paths: tuple[str, ...]) -> None:
        self.method, self.setup, self._treedef, self._leaves = method, setup, treedef, leaves
        self.weight_paths = weight_paths
        self.paths = tuple(leaf.path for leaf in leaves)
        self._by_layer = {leaf.layer: leaf for leaf in leaves}
        self._by_path = {leaf.path: leaf for leaf in leaves}
        self._warned_credits = False

    def __repr__(self) -> str:
        return (f"Sparsity(method={self.method.name!r}, n={self.setup.n}, m={self.setup.m}, "
                f"total_steps={self.setup.total_steps}, paths={list(self.paths)})")

    # -- pytree plumbing ------------------------------------------------------------------
    def _flat(self, tree: Any, what: str) -> list[Any]:
        try:
            return self._treedef.flatten_up_to(tree)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{what} does not have the structure of the params this "
                             f"Sparsity was built on ({exc})") from exc

    def _tree(self, by_layer: Mapping[int, jax.Array], base: list[Any] | None = None) -> Any:
        flat = list(base) if base is not None else [None] * self._treedef.num_leaves
        for k, value in by_layer.items():
            leaf = self._by_layer[k]
            flat[leaf.index] = leaf.from_framework(value)
        return jax.tree_util.tree_unflatten(self._treedef, flat)

    def _framework(self, tree: Any, what: str) -> dict[int, jax.Array]:
        flat = self._flat(tree, what)
        out = {}
        for leaf in self._leaves:
            x = flat[leaf.index]
            expected = self.setup.weight_shapes[leaf.layer]
            if not leaf.fits(x, expected):
                raise ValueError(
                    f"{what}[{leaf.path!r}] is {getattr(x, 'shape', type(x).__name__)}; "
                    f"expected a jax.Array of shape "
                    f"{tuple(expected[i] for i in _inverse(leaf.perm))} ({leaf.spec})")
            out[leaf.layer] = leaf.to_framework(x)
        return out

    def weights(self, params: Any) -> dict[str, jax.Array]:
        """The masked leaves of ``params`` by path, in their own layout (works inside
        ``jax.jit``)."""
        flat = self._flat(params, "params")
        return {leaf.path: flat[leaf.index] for leaf in self._leaves}

    def _check_step(self, step: Any) -> int:
        total = self.setup.total_steps
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < total:
            raise ValueError(f"step={step!r} is invalid; expected an int in "
                             f"[0, {total - 1}] (total_steps={total})")
        return step

    def _check_sm(self, sm: Any) -> PathMasks:
        if not isinstance(sm, PathMasks):
            raise TypeError(f"expected the PathMasks returned by Sparsity.masks, got "
                            f"{type(sm).__name__}")
        return sm

    # -- the method's calls ---------------------------------------------------------------
    def init(self, params: Any) -> MethodState:
        """The method's state before step 0 (a pytree of arrays on the params' device)."""
        return self.method.init(self.setup, self._framework(params, "params"))

    def masks(self, state: MethodState, params: Any, step: int
              ) -> tuple[MethodState, PathMasks]:
        """``(state, sm)``: the masks of ``step`` (``method.masks``); the state changes
        when a fixed phase begins, so keep the returned one."""
        step = self._check_step(step)
        state, sm = self.method.masks(self.setup, state, self._framework(params, "params"),
                                      step)
        wanted = tuple(self._by_layer[k].path for k in sm.credit_layers)
        return state, PathMasks(step, self._tree(sm.masks), sm, wanted)

    def apply(self, params: Any, masks: Any) -> Any:
        """``W_eff = W * mask`` at the masked leaves, other leaves as they are; pure and
        jittable (use it inside the jitted forward)."""
        flat = self._flat(params, "params")
        mflat = self._flat(masks, "masks")
        return jax.tree_util.tree_unflatten(
            self._treedef, [w if mk is None else w * mk for w, mk in zip(flat, mflat)])

    def weight_grads(self, sm: PathMasks, params: Any, grads: Any) -> Any:
        """``dL/dW`` for the optimizer: the method's ``weight_grads`` of ``G = dL/dW_eff``
        at the masked leaves (S5.4, S6.4), ``grads`` as they are elsewhere."""
        sm = self._check_sm(sm)
        g = self._framework(grads, "grads")
        dw = self.method.weight_grads(self.setup, sm.method,
                                      self._framework(params, "params"), g)
        return self._tree(dw, self._flat(grads, "grads"))

    def update(self, state: MethodState, sm: PathMasks, params: Any, grads: Any,
               credits: Mapping[str, jax.Array] | None = None) -> MethodState:
        """The state after the backward pass of ``sm.step`` (``method.update``): logit
        gradients by the method's VJP of ``G * W``, EID from ``credits``, its optimizer.

        Parameters
        ----------
        grads : pytree
            ``dL/dW_eff`` as the user's autodiff returns it (the same as for
            `weight_grads`).
        credits : dict path -> array, optional
            EID credits of the masked leaves, each of its leaf's shape and layout
            (`spikenm.backends.jax.method_path_credit`).  Missing ones that
            ``sm.credit_paths`` asks for are warned about once and left out.
        """
        sm = self._check_sm(sm)
        by_layer = self._credits(sm, credits)
        return self.method.update(self.setup, state, sm.method,
                                  self._framework(params, "params"),
                                  self._framework(grads, "grads"), by_layer, sm.step)

    def _credits(self, sm: PathMasks, credits: Mapping[str, jax.Array] | None
                 ) -> dict[int, jax.Array]:
        credits = {} if credits is None else credits
        if not isinstance(credits, Mapping):
            raise TypeError(f"credits must be a dict path -> array, got "
                            f"{type(credits).__name__}")
        out = {}
        for path, c in credits.items():
            leaf = self._by_path.get(path)
            if leaf is None:
                raise ValueError(f"credits[{path!r}]: not a masked leaf; expected one of "
                                 f"{list(self.paths)}")
            shape = self.setup.weight_shapes[leaf.layer]
            if not leaf.fits(c, shape):
                raise ValueError(f"credits[{path!r}] is "
                                 f"{getattr(c, 'shape', type(c).__name__)}; expected a "
                                 f"jax.Array of the leaf's shape")
            out[leaf.layer] = to_block_layout(leaf.to_framework(c))
        missing = [p for p in sm.credit_paths if p not in credits]
        if missing and not self._warned_credits:
            self._warned_credits = True
            warnings.warn(
                f"method {self.method.name!r} asks for EID credits of {missing} at step "
                f"{sm.step} and none were given, so its EID term is left out; pass "
                f"credits= to Sparsity.update (method_path_credit.dense_credit/op_credit), "
                f"or use a method without EID (spikenm.methods.spikenm.SpikeNM(eid=False))",
                UserWarning, stacklevel=3)
        return out

    def project(self, params: Any, sm: PathMasks) -> Any:
        """``params`` after an optimizer update: in a fixed-mask phase the masked leaves
        times the mask, so pruned weights stay exactly 0 (S5.8); otherwise unchanged.
        Equal to ``apply(params, sm.masks)`` when ``sm.fixed``."""
        sm = self._check_sm(sm)
        return self.apply(params, sm.masks) if sm.fixed else params

    def flips(self, state: MethodState, sm: PathMasks) -> tuple[jax.Array | None, int]:
        """``(changed, compared)`` mask entries of this step against the last one, pooled
        over the masked leaves (S5.9; call before `update`).  ``changed`` is a device
        array, or None when there is no previous step to compare."""
        return step_flips(state, self._check_sm(sm).method)

    def final_masks(self, state: MethodState, params: Any) -> Any:
        """The masks the trained model ends with (``method.final_masks``, S5.8), as a
        pytree like `PathMasks.masks`."""
        return self._tree(self.method.final_masks(self.setup, state,
                                                  self._framework(params, "params")))

    def finalize(self, state: MethodState, params: Any) -> Any:
        """The trained weights: ``W * final_mask`` at the masked leaves (exact ``n:m``,
        S5.8), other leaves unchanged."""
        return self.apply(params, self.final_masks(state, params))


def _inverse(perm: tuple[int, ...]) -> list[int]:
    out = [0] * len(perm)
    for i, p in enumerate(perm):
        out[p] = i
    return out


def _select(select: Any, weights: list[tuple[str, Any]], all_paths: dict[str, Any],
            dense_first: bool, dense_last: bool, uses_masks: bool) -> list[int]:
    """Positions (in ``weights``) of the masked leaves."""
    if not uses_masks:
        return []
    if select is None:
        last = len(weights) - 1
        chosen = [i for i in range(len(weights))
                  if not ((i == 0 and dense_first) or (i == last and dense_last))]
        if not chosen:
            raise ValueError(
                f"no weight leaf to mask: the params have {len(weights)} weight leaves "
                f"({[p for p, _ in weights]}) and dense_first={dense_first}, "
                f"dense_last={dense_last}; pass select= or mask the first/last")
        return chosen
    position = {p: i for i, (p, _) in enumerate(weights)}
    if callable(select):
        names = [p for p, x in all_paths.items() if select(p, x)]
    elif isinstance(select, Collection) and not isinstance(select, (str, bytes)):
        names = list(select)
        for name in names:
            if name not in all_paths:
                raise ValueError(f"select names {name!r}, which is not a leaf of the params; "
                                 f"weight leaves: {[p for p, _ in weights]}")
    else:
        raise TypeError(f"select={select!r} is invalid; expected None, a collection of "
                        f"path strings or a predicate f(path, leaf) -> bool")
    for name in names:
        if name not in position:
            x = all_paths[name]
            raise ValueError(
                f"select chose {name!r} of shape {getattr(x, 'shape', type(x).__name__)}, "
                f"which is not a weight leaf (a floating jax.Array whose rank the layout "
                f"names)")
    if not names:
        raise ValueError(f"select={select!r} chose no leaf; weight leaves: "
                         f"{[p for p, _ in weights]}")
    return sorted({position[name] for name in names})


def sparsity(params: Any, n: int, m: int, total_steps: int, *,
             method: str | Method = "spikenm", select: Any = None, layout: Any = "torch",
             dense_first: bool = True, dense_last: bool = True, seed: int = 0) -> Sparsity:
    """A `Sparsity` driving ``method`` over the masked leaves of ``params``.

    Parameters
    ----------
    params : pytree
        The model's parameters (``jax.Array`` leaves); only its structure, shapes, dtype
        and device are read.
    n, m : int
        The pattern (S0.1).
    total_steps : int
        ``S``, the optimizer steps of the run: the method's phases and schedules span it
        (S5.6, S5.8).
    method : str or Method
        A registry name or import path (`spikenm.methods.load_method`, default
        settings), or a method object (e.g. ``SpikeNM(eid=False)``).
    select : collection of str or callable, optional
        The masked leaves by path, or a predicate ``f(path, leaf) -> bool`` over every
        leaf; default: every weight leaf but the first and the last.  With ``select``
        the masked leaves are exactly those chosen (``dense_first``/``dense_last`` are
        not used); ignored by a method that never masks (``dense``).
    layout : str or dict
        ``"torch"``/``"equinox"``, ``"flax"``, or ``{rank: axis letters}`` (module
        docstring).
    dense_first, dense_last : bool
        Keep the first/last weight leaf dense (S5.1) when ``select`` is None.
    seed : int
        Run seed of the method's noise (S5.2).

    Raises
    ------
    ValueError
        A masked leaf whose input size is not a multiple of ``m``, nothing to mask, an
        unknown path or layout, a bad step budget.
    TypeError
        Masked leaves of different or non-float32/float64 dtypes; a NumPy weight leaf;
        a bad ``method`` or ``select``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> params = {"fc0": jnp.ones((8, 4)), "fc1": jnp.ones((8, 8)), "fc2": jnp.ones((2, 8))}
    >>> sparsity(params, 2, 4, total_steps=10).paths
    ('fc1',)
    >>> sparsity({"Dense_0": {"kernel": jnp.ones((4, 8))}}, 2, 4, 10, select=["Dense_0/kernel"],
    ...          layout="flax").setup.weight_shapes
    {0: (8, 4)}
    """
    n, m = validation.pattern(n, m)
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps={total_steps!r} is invalid; expected an int >= 1")
    seed = validation.seed(seed)
    for name, flag in (("dense_first", dense_first), ("dense_last", dense_last)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name}={flag!r} is invalid; expected True or False")
    meth = load_method(method) if isinstance(method, str) else check_method(method, repr(method))
    layouts = _layouts(layout)

    pairs, treedef = jax.tree_util.tree_flatten_with_path(params)
    paths = ["/".join(_key_name(k) for k in p) for p, _ in pairs]
    if len(set(paths)) != len(paths):
        raise ValueError("the params have leaves whose joined paths coincide; give them "
                         "distinct keys")
    all_paths = {p: x for p, (_, x) in zip(paths, pairs)}
    for path, x in all_paths.items():
        if isinstance(x, np.ndarray) and x.ndim in layouts and np.issubdtype(x.dtype,
                                                                              np.floating):
            raise TypeError(f"params leaf {path!r} is a NumPy array of shape {x.shape}; "
                            f"expected jax.Array leaves (jnp.asarray), so that no weight "
                            f"is left out of the masking")
    order = _order_keys([p for p, _ in pairs])
    weight_idx = sorted((i for i, (_, x) in enumerate(pairs) if _is_weight(x, layouts)),
                        key=lambda i: order[i])
    weights = [(paths[i], pairs[i][1]) for i in weight_idx]
    chosen = _select(select, weights, all_paths, dense_first, dense_last,
                     bool(getattr(meth, "uses_masks", True)))

    leaves = []
    for pos in chosen:
        index = weight_idx[pos]
        path, x = paths[index], pairs[index][1]
        spec = layouts[x.ndim]
        leaf = _Leaf(index, path, pos, spec)
        fan_in = x.shape[spec.index("I")]
        if fan_in % m:
            raise ValueError(
                f"weight {path!r} of shape {tuple(x.shape)} (layout {spec}) has input size "
                f"{fan_in}, not a multiple of m={m}; keep it dense (select=) or change the "
                f"pattern (S5.1)")
        leaves.append(leaf)
    dtypes = {jnp.dtype(pairs[leaf.index][1].dtype).name for leaf in leaves}
    if dtypes - {"float32", "float64"} or len(dtypes) > 1:
        raise TypeError(f"masked leaves have dtypes {sorted(dtypes)}; expected one of "
                        f"float32 or float64 for all (S0.4)")
    first = pairs[leaves[0].index][1] if leaves else None
    setup = MethodSetup(
        n, m, tuple(leaf.layer for leaf in leaves),
        {leaf.layer: leaf.framework_shape(pairs[leaf.index][1].shape) for leaf in leaves},
        total_steps, seed, dtypes.pop() if dtypes else "float32",
        lambda a: from_numpy(a, like=first))
    return Sparsity(meth, setup, treedef, tuple(leaves), tuple(p for p, _ in weights))
