"""Sampling-variance metrics of the trainer (SPEC S5.9a).

For a method whose masks are Gumbel top-``n`` draws ``topn(kappa * pi + g)`` from
per-entry logits (the optional `spikenm.methods.base.SampledMasks.sampling_logits`), the
trainer reports at every logging step of the search phase, per masked layer and pooled
over layers (entry-weighted), with ``p = softmax_block(kappa * pi)``:

``inclusion_variance``
    mean over entries of ``rho_i (1 - rho_i)``, where ``rho_i`` is the probability that
    entry ``i`` is among the ``n`` kept by the draw (`inclusion_probabilities`: exact
    when the ``m! / (m - n)!`` ordered picks are at most `EXACT_LIMIT`, otherwise a
    Monte Carlo estimate from `MC_DRAWS` draws; ``inclusion_samples`` says which, 0 for
    exact);
``block_entropy``
    mean over blocks of ``-sum_i p_i log p_i`` (nats, S1.9);
``argmax_flip_rate``
    fraction of the entries of ``final_mask(pi)`` (S1.8) that differ from the previous
    logging step's (None at the first one);

each also over the *active* and the *near-silent* blocks only (``_active``, ``_silent``):
a block is near-silent when its mass ``E_b = sum |C|`` of the method's running credit
``C`` (S2.4, ``credit/k`` of the method state), or for a method without one of the
logging step's ``|dL/dW_eff|`` in block layout, is below `SILENT_FRACTION` times the
layer's mean block mass.  At the steps of `variance_steps` (``sampler.variance_points``
of the search phase) the trainer also measures the logits' task-gradient estimator of
S5.4 at fixed parameters over ``K = sampler.variance_draws`` noise draws on that step's
batch (`gradient_point`): ``grad_variance`` (mean over entries of the variance over the
draws) and ``grad_snr`` (``mean(E[g]^2) / mean(Var[g])``).

The math works on host NumPy copies in float64 and runs only at logging steps (and the
few variance steps), never in a step that does not log.  Random numbers come from
derived seeds (S5.2): the Monte Carlo inclusion draws from stream `INCLUSION_DRAWS`
(``step`` = the logged step, ``index`` = layer), the gradient measurement's noise from
stream `GRADIENT_NOISE` (``index = 65536 * draw + layer``), both distinct from the
training noise, so measuring changes nothing in the training trajectory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from spikenm import api, seeds
from spikenm import validation as check
from spikenm.methods import blocks
from spikenm.methods.common import CREDIT, phase_steps

from .step import step_batch

__all__ = ["EXACT_LIMIT", "MC_DRAWS", "SILENT_FRACTION", "INCLUSION_DRAWS", "GRADIENT_NOISE",
           "METRICS", "KEYS", "GRAD_KEYS", "ordered_picks", "inclusion_probabilities",
           "inclusion_exact", "inclusion_monte_carlo", "block_entropy", "block_mass",
           "silent_blocks", "SplitSums", "layer_sampling", "GradSums", "gradient_sums",
           "sampling_fields", "sampling_record", "search_steps", "variance_steps",
           "gradient_point", "summary_fields"]

Array = Any

EXACT_LIMIT = 5040
"""Largest number of ordered picks ``m! / (m - n)!`` summed exactly (S5.9a)."""
MC_DRAWS = 2048
"""Monte Carlo draws of the inclusion probabilities above `EXACT_LIMIT`."""
SILENT_FRACTION = 1e-3
"""A block is near-silent below this fraction of its layer's mean block mass."""
INCLUSION_DRAWS = 5
"""Seed stream (S5.2) of the Monte Carlo inclusion draws (``index`` = layer)."""
GRADIENT_NOISE = 6
"""Seed stream (S5.2) of the gradient measurement's noise (``index = 65536 * draw + k``)."""
METRICS = ("inclusion_variance", "block_entropy", "argmax_flip_rate")
SPLITS = ("", "_active", "_silent")
KEYS = tuple(f"{metric}{split}" for metric in METRICS for split in SPLITS)
"""The nine sampling keys of a train record and of the summary."""
GRAD_KEYS = ("grad_variance", "grad_snr")
_CHUNK = 1 << 22
"""Largest Monte Carlo temporary, in float64 entries."""


# -- NumPy math ---------------------------------------------------------------------------

def ordered_picks(n: int, m: int) -> int:
    """``m! / (m - n)!``, the number of ordered picks of ``n`` of ``m`` entries.

    Examples
    --------
    >>> ordered_picks(2, 4), ordered_picks(4, 8), ordered_picks(4, 16)
    (12, 1680, 43680)
    """
    n, m = check.pattern(n, m)
    return math.perm(m, n)


def _host_blocks(name: str, x: Any, m: int) -> np.ndarray:
    """``x`` (a float NumPy array, last axis a multiple of ``m``, finite) as float64
    blocks ``(G, m)``."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a NumPy masked array; expected a plain ndarray")
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array (a host copy), got "
                        f"{type(x).__name__}")
    if x.dtype.name not in check.FLOAT_DTYPES:
        raise TypeError(f"{name} has dtype {x.dtype.name}; expected float32 or float64")
    if x.ndim < 1 or x.shape[-1] == 0 or x.shape[-1] % m:
        raise ValueError(f"{name} has shape {x.shape}: the last axis must be a positive "
                         f"multiple of m={m}")
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{name} contains NaN or inf (first at index "
                         f"{tuple(int(i) for i in bad)}); expected finite values")
    return x.astype(np.float64).reshape(-1, m)


def inclusion_exact(v: np.ndarray, n: int) -> np.ndarray:
    """Exact ``rho`` of Gumbel top-``n`` for float64 block keys ``v`` ``(G, m)``.

    Sums, over the ordered picks ``(i_1, .., i_n)``, their probability
    ``prod_j exp(v_{i_j}) / sum_{l not in {i_1..i_{j-1}}} exp(v_l)`` (``n`` draws without
    replacement from ``softmax(v)``, S1.7) into every picked entry.  Picks that share
    their first entries share those factors: the sum runs over the sets of the first
    ``j`` picks, each denominator a log-sum-exp over the entries left, so blocks whose
    ``p`` underflows to 0 (one-hot ``p``) stay exact (the entries left after a certain
    pick share the next pick by their own relative logits).
    """
    g, m = v.shape
    reach: dict[int, np.ndarray] = {0: np.ones(g)}  # set of first picks -> probability
    for _ in range(n):
        nxt: dict[int, np.ndarray] = {}
        for taken, prob in reach.items():
            free = [i for i in range(m) if not (taken >> i) & 1]
            vf = v[:, free]
            top = vf.max(axis=1, keepdims=True)
            log_z = top + np.log(np.exp(vf - top).sum(axis=1, keepdims=True))
            pick = prob[:, None] * np.exp(vf - log_z)
            for j, i in enumerate(free):
                key = taken | (1 << i)
                if key in nxt:
                    nxt[key] += pick[:, j]
                else:
                    nxt[key] = pick[:, j].copy()
        reach = nxt
    rho = np.zeros((g, m))
    for taken, prob in reach.items():
        while taken:
            low = taken & -taken
            rho[:, low.bit_length() - 1] += prob
            taken ^= low
    return rho


def inclusion_monte_carlo(v: np.ndarray, n: int, draws: int, seed: int) -> np.ndarray:
    """Monte Carlo ``rho`` of Gumbel top-``n`` for float64 block keys ``v`` ``(G, m)``:
    the share of ``draws`` draws ``topn(v + g)`` keeping each entry, with standard Gumbel
    ``g`` from ``numpy.random.default_rng(seed).gumbel`` (standard error
    ``sqrt(rho (1 - rho) / draws)``)."""
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws={draws!r} is invalid; expected an integer >= 1")
    g, m = v.shape
    rng = np.random.default_rng(check.seed(seed))
    counts = np.zeros(g * m, np.int64)
    base = (np.arange(g) * m)[None, :, None]
    chunk = max(1, min(draws, _CHUNK // max(1, g * m)))
    done = 0
    while done < draws:
        d = min(chunk, draws - done)
        keys = v[None] + rng.gumbel(size=(d, g, m))
        kept = np.argpartition(keys, m - n, axis=-1)[..., m - n:]
        counts += np.bincount((kept + base).ravel(), minlength=g * m)
        done += d
    return counts.reshape(g, m) / draws


def inclusion_probabilities(logits: np.ndarray, n: int, m: int, *, scale: float = 1.0,
                            seed: int | None = None, draws: int = MC_DRAWS,
                            exact_limit: int = EXACT_LIMIT) -> tuple[np.ndarray, int]:
    """``(rho, samples)``: per entry the probability that the draw
    ``topn(scale * logits + g)`` (Gumbel ``g``, S1.1-S1.2) keeps it, in float64 with the
    shape of ``logits`` (block layout, blocks along the last axis), and the number of
    Monte Carlo draws used (0: exact, by `inclusion_exact`, when `ordered_picks` is at
    most ``exact_limit``, and for ``n = m``, where every entry is kept; otherwise
    `inclusion_monte_carlo` with ``draws`` draws, which needs ``seed``).  Each block of
    ``rho`` sums to ``n``.

    Examples
    --------
    >>> rho, samples = inclusion_probabilities(np.zeros(4), 2, 4)
    >>> rho.tolist(), samples
    ([0.5, 0.5, 0.5, 0.5], 0)
    >>> rho, _ = inclusion_probabilities(np.log(np.array([0.7, 0.1, 0.1, 0.1])), 1, 4)
    >>> np.round(rho, 6).tolist()
    [0.7, 0.1, 0.1, 0.1]

    Raises
    ------
    ValueError
        Bad pattern, scale, seed or draws; logits not finite or the last axis not a
        multiple of ``m``; the Monte Carlo path without a seed.
    TypeError
        ``logits`` not a float NumPy array.
    """
    n, m = check.pattern(n, m)
    scale = check.positive("scale", scale)
    v = scale * _host_blocks("logits", logits, m)
    if n == m:  # every entry is kept: exact without any sum
        return np.ones(logits.shape), 0
    if ordered_picks(n, m) <= exact_limit:
        return inclusion_exact(v, n).reshape(logits.shape), 0
    if seed is None:
        raise ValueError(f"{n}:{m} has {ordered_picks(n, m)} ordered picks, above "
                         f"exact_limit={exact_limit}: the Monte Carlo estimate needs a seed")
    return inclusion_monte_carlo(v, n, draws, seed).reshape(logits.shape), draws


def block_entropy(logits: np.ndarray, m: int, *, scale: float = 1.0) -> np.ndarray:
    """``-sum_i p_i log p_i`` (nats) of every block of ``p = block_probs(logits, m,
    scale)`` (S1.7, S1.9), shape ``logits.shape[:-1] + (K // m,)``; ``0 log 0 = 0``.

    Examples
    --------
    >>> np.round(block_entropy(np.zeros(8), 4), 6).tolist()
    [1.386294, 1.386294]
    """
    m = check.block_size(m)
    v = _host_blocks("logits", logits, m)
    p = api.block_probs(v, m, scale=scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1).reshape(logits.shape[:-1] + (logits.shape[-1] // m,))


def block_mass(values: np.ndarray, m: int) -> np.ndarray:
    """``E_b = sum |values|`` over every block of ``m`` along the last axis, flattened to
    ``(G,)``."""
    m = check.block_size(m)
    return np.abs(_host_blocks("values", values, m)).sum(axis=1)


def silent_blocks(mass: np.ndarray) -> np.ndarray:
    """Near-silent blocks of one layer: ``E_b < SILENT_FRACTION * mean(E)`` (bool,
    ``(G,)``; a layer whose mass is all 0 has none, as nothing is below 0).

    Examples
    --------
    >>> silent_blocks(np.array([1.0, 1.0, 1e-5, 0.0])).tolist()
    [False, False, True, True]
    """
    mass = np.asarray(mass, np.float64).reshape(-1)
    return mass < SILENT_FRACTION * mass.mean()


@dataclass(frozen=True)
class SplitSums:
    """Sums of one metric and their weights (entries, or blocks for the entropy) over all
    blocks, the active ones and the near-silent ones; pooled by adding."""

    sums: tuple[float, float, float]
    weights: tuple[int, int, int]

    @staticmethod
    def of(per_block: np.ndarray, weight: int, silent: np.ndarray) -> "SplitSums":
        """From one value per block (a block sum over ``weight`` entries)."""
        per_block = np.asarray(per_block, np.float64).reshape(-1)
        active = ~silent
        count = int(silent.size)
        quiet = int(silent.sum())
        return SplitSums((float(per_block.sum()), float(per_block[active].sum()),
                          float(per_block[silent].sum())),
                         (weight * count, weight * (count - quiet), weight * quiet))

    def __add__(self, other: "SplitSums") -> "SplitSums":
        return SplitSums(tuple(a + b for a, b in zip(self.sums, other.sums)),  # type: ignore
                         tuple(a + b for a, b in zip(self.weights, other.weights)))  # type: ignore

    def means(self, metric: str) -> dict[str, float | None]:
        """``{metric: mean, metric_active: .., metric_silent: ..}`` (None without weight)."""
        return {f"{metric}{split}": (s / w if w else None)
                for split, s, w in zip(SPLITS, self.sums, self.weights)}


def layer_sampling(logits: np.ndarray, scale: float, n: int, m: int, mass: np.ndarray,
                   previous: np.ndarray | None = None, *, seed: int | None = None,
                   draws: int = MC_DRAWS, exact_limit: int = EXACT_LIMIT
                   ) -> tuple[dict[str, SplitSums | None], np.ndarray, int]:
    """The S5.9a metrics of one layer: ``({metric: SplitSums or None}, final, samples)``.

    ``logits`` are the layer's block-layout logits (host copy), ``scale`` the draw's
    ``kappa``, ``mass`` the block masses `block_mass` (``(G,)``) that split the blocks,
    ``previous`` the previous logging step's ``final_mask(logits)`` (None: no
    ``argmax_flip_rate``).  ``final`` is this step's ``final_mask(logits)`` (uint8) for
    the next call; ``samples`` as in `inclusion_probabilities`.
    """
    n, m = check.pattern(n, m)
    rho, samples = inclusion_probabilities(logits, n, m, scale=scale, seed=seed, draws=draws,
                                           exact_limit=exact_limit)
    groups = rho.size // m
    mass = np.asarray(mass, np.float64).reshape(-1)
    if mass.shape != (groups,):
        raise ValueError(f"mass has {mass.size} blocks; the logits {logits.shape} have "
                         f"{groups} blocks of m={m}")
    silent = silent_blocks(mass)
    final = api.final_mask(logits, n, m).astype(np.uint8)
    out: dict[str, SplitSums | None] = {
        "inclusion_variance": SplitSums.of((rho * (1.0 - rho)).reshape(groups, m).sum(1), m,
                                           silent),
        "block_entropy": SplitSums.of(block_entropy(logits, m, scale=scale), 1, silent),
        "argmax_flip_rate": None,
    }
    if previous is not None:
        if previous.shape != final.shape:
            raise ValueError(f"previous final mask has shape {previous.shape}; expected "
                             f"{final.shape}")
        flips = (previous != final).reshape(groups, m).sum(1)
        out["argmax_flip_rate"] = SplitSums.of(flips, m, silent)
    return out, final, samples


def sampling_fields(layers: Mapping[int, Mapping[str, SplitSums | None]],
                    samples: int | None) -> dict[str, Any]:
    """Record fields from per-layer `layer_sampling` sums: the nine `KEYS` pooled over
    the layers (a metric missing in any layer is None), ``inclusion_samples`` and
    ``variance_layers`` (``{str(layer): {key: value}}``); all None / empty for no layer."""
    pooled: dict[str, float | None] = {key: None for key in KEYS}
    per_layer: dict[str, dict[str, Any]] = {}
    for metric in METRICS:
        parts = [layers[k][metric] for k in sorted(layers)]
        if parts and all(p is not None for p in parts):
            total = parts[0]
            for p in parts[1:]:
                total = total + p  # type: ignore[operator]
            pooled.update(total.means(metric))  # type: ignore[union-attr]
    for k in sorted(layers):
        row: dict[str, Any] = {key: None for key in KEYS}
        for metric in METRICS:
            sums = layers[k][metric]
            if sums is not None:
                row.update(sums.means(metric))
        row["inclusion_samples"] = samples
        per_layer[str(k)] = row
    return {**pooled, "inclusion_samples": samples if layers else None,
            "variance_layers": per_layer}


@dataclass(frozen=True)
class GradSums:
    """Sums over the entries of one layer (or pooled) of the variance over draws
    (``ddof = 1``) and of the squared mean over draws, and the entry count."""

    variance: float
    mean_square: float
    count: int

    def __add__(self, other: "GradSums") -> "GradSums":
        return GradSums(self.variance + other.variance, self.mean_square + other.mean_square,
                        self.count + other.count)

    def values(self) -> dict[str, float | None]:
        """``{"grad_variance": mean Var, "grad_snr": mean(E^2) / mean(Var)}`` (SNR None
        when the variance is 0)."""
        return {"grad_variance": self.variance / self.count,
                "grad_snr": self.mean_square / self.variance if self.variance > 0 else None}


def gradient_sums(draws: Sequence[np.ndarray]) -> GradSums:
    """`GradSums` of ``K >= 2`` gradient draws of one layer (equal shapes): ``E[g]`` is the
    mean over the draws and ``Var[g]`` their unbiased variance (``ddof = 1``).

    Examples
    --------
    >>> s = gradient_sums([np.array([1.0, 2.0]), np.array([3.0, 2.0])])
    >>> s.values()
    {'grad_variance': 1.0, 'grad_snr': 4.0}
    """
    if len(draws) < 2:
        raise ValueError(f"the gradient variance needs at least 2 draws, got {len(draws)}")
    g = np.stack([np.asarray(d, np.float64) for d in draws])
    if not np.isfinite(g).all():
        raise ValueError("a gradient draw contains NaN or inf; expected finite values")
    return GradSums(float(g.var(axis=0, ddof=1).sum()), float((g.mean(axis=0) ** 2).sum()),
                    int(g[0].size))


# -- the trainer's side -------------------------------------------------------------------

def _sampling_logits(setup: Any, mstate: Any, step: int) -> dict[int, tuple[Array, float]]:
    fn = getattr(setup.method, "sampling_logits", None)
    found = None if fn is None else fn(setup.method_setup, mstate, step)
    return dict(found) if found else {}


def sampling_record(setup: Any, state: Any, step: int, grads: Mapping[str, Array] | None,
                    previous: Mapping[int, np.ndarray]
                    ) -> tuple[dict[str, Any], dict[int, np.ndarray]]:
    """The S5.9a fields of the train record logged after step ``step`` (0-based: the
    last step of the interval) and the final masks to compare with next time.

    ``state`` is the `spikenm.train.state.TrainState` after that step: the metrics use
    its logits with the scale ``kappa`` of ``step``'s draw
    (``sampling_logits(setup, state.method, step)``), its running credit (``credit/k``)
    for the active/near-silent split, or, for a layer without one, ``|dL/dW_eff|`` from
    ``grads`` (the step's `spikenm.snn.StepResult.grads`).  ``previous`` are the final
    masks of the previous logging step, by layer.  Outside a sampling phase every field
    is None and ``previous`` comes back unchanged.
    """
    found = _sampling_logits(setup, state.method, step)
    if not found:
        return sampling_fields({}, None), dict(previous)
    model, ms = setup.model, setup.method_setup
    credit = state.method.group(CREDIT)
    layers: dict[int, dict[str, SplitSums | None]] = {}
    finals: dict[int, np.ndarray] = dict(previous)
    samples = 0
    for k in sorted(found):
        pi, kappa = found[k]
        logits = np.asarray(model.to_numpy(pi))
        if k in credit:
            source = np.asarray(model.to_numpy(credit[k]))
        elif grads is not None and f"layer{k}.weight" in grads:
            source = api.to_block_layout(np.asarray(model.to_numpy(grads[f"layer{k}.weight"])))
        else:
            raise ValueError(f"layer {k}: the active/near-silent split needs the running "
                             f"credit or the step's gradients, and neither is available")
        if source.shape != logits.shape:
            raise ValueError(f"layer {k}: block masses from shape {source.shape}; the "
                             f"logits have shape {logits.shape}")
        layers[k], finals[k], samples = layer_sampling(
            logits, float(kappa), ms.n, ms.m, block_mass(source, ms.m), previous.get(k),
            seed=seeds.seed_of(ms.seed, INCLUSION_DRAWS, step, k))
    return sampling_fields(layers, samples), finals


def search_steps(setup: Any) -> int:
    """Length of the sampling (search) phase: the method's ``search_steps(S)`` when it has
    one, else ``max(1, round(sparsity.search_fraction * S))`` (S5.8)."""
    fn = getattr(setup.method, "search_steps", None)
    if callable(fn):
        return int(fn(setup.total_steps))
    return phase_steps(setup.cfg.sparsity.search_fraction, setup.total_steps)


def variance_steps(setup: Any) -> tuple[int, ...]:
    """Steps ``floor(f * S_search)`` for ``f`` in ``sampler.variance_points`` (empty when
    ``sampler.variance_draws`` is 0 or the method has no ``sampling_logits``)."""
    sampler = setup.cfg.sampler
    if not sampler.variance_draws or getattr(setup.method, "sampling_logits", None) is None:
        return ()
    search = search_steps(setup)
    return tuple(sorted({math.floor(f * search) for f in sampler.variance_points}))


def gradient_point(setup: Any, state: Any, order_cache: dict[int, np.ndarray],
                   draws: int | None = None) -> dict[str, Any] | None:
    """The gradient-estimator measurement at ``state.step`` (S5.9a), before that step's
    update, or None outside a sampling phase.

    For draw ``j = 0 .. K - 1`` (``K = draws``, default ``sampler.variance_draws``) and
    every sampled layer ``k``: noise ``g = gumbel_like(pi, seed_of(seed, GRADIENT_NOISE,
    s, 65536 * j + k))``, ``h = sample_mask(pi, n, m, noise=g, temperature=tau_s,
    scale=kappa_s, hard=True)`` (``tau_s`` of the method's `StepMasks` of step ``s``,
    other masked layers keep that step's masks), one forward+backward on ``W * h`` with
    the step's batch and buffers, and the task gradient ``kappa_s VJP_s(G * W)`` (S5.4).
    Nothing of ``state`` changes.  Returns ``{"step": s, "grad_variance", "grad_snr",
    "layers": {str(k): {"grad_variance", "grad_snr"}}}`` (pooled entry-weighted).
    """
    k_draws = setup.cfg.sampler.variance_draws if draws is None else draws
    step = state.step
    found = _sampling_logits(setup, state.method, step)
    if not found:
        return None
    model, ms, method = setup.model, setup.method_setup, setup.method
    if max(found) >= 65536 or k_draws >= 65536:
        raise ValueError(f"layer ordinals and variance draws must be below 65536 for the "
                         f"noise index; got layers {sorted(found)} and {k_draws} draws")
    weights = {k: state.params[f"layer{k}.weight"] for k in ms.layers}
    _, sm = method.masks(ms, state.method, weights, step)
    tau = sm.temperature
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"method {method.name!r} reports temperature {tau!r} at step "
                         f"{step}; the gradient measurement needs its sampler's tau > 0")
    x, y = step_batch(setup, step, order_cache)
    grads: dict[int, list[np.ndarray]] = {k: [] for k in found}
    fixed = dict(state.params)  # the step's masks on the layers that are not redrawn
    for k in ms.layers:
        if k in sm.masks and k not in found:
            fixed[f"layer{k}.weight"] = weights[k] * sm.masks[k]
    for j in range(k_draws):
        effective = dict(fixed)
        noise = {}
        for k, (pi, kappa) in found.items():
            noise[k] = blocks.gumbel(pi, seeds.seed_of(ms.seed, GRADIENT_NOISE, step,
                                                       65536 * j + k))
            h = blocks.sample(pi, noise[k], ms.n, ms.m, tau, kappa)
            effective[f"layer{k}.weight"] = weights[k] * api.from_block_layout(h)
        result = model.forward_backward(setup.graph, effective, state.buffers, x, y,
                                        setup.lif, None)
        for k, (pi, kappa) in found.items():
            g_eff = result.grads[f"layer{k}.weight"]
            g = blocks.sample_vjp(pi, noise[k], ms.n, ms.m, tau, kappa,
                                  api.to_block_layout(g_eff * weights[k]))
            grads[k].append(np.asarray(model.to_numpy(g)))
    per_layer = {k: gradient_sums(grads[k]) for k in sorted(grads)}
    total = None
    for sums in per_layer.values():
        total = sums if total is None else total + sums
    assert total is not None
    return {"step": step, **total.values(),
            "layers": {str(k): s.values() for k, s in per_layer.items()}}


def _mean(values: Iterable[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def summary_fields(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Summary entries from the train records of a run (S5.9a).

    Top level: the nine `KEYS`, each the mean over the search's logging steps (the train
    records whose ``inclusion_variance`` is not None) of its pooled value;
    ``inclusion_samples``; ``grad_variance`` and ``grad_snr``, means over the measured
    points.  ``sampling_variance`` holds the details: ``logging_steps``, ``last`` (the
    pooled values of the last such record and its ``step``), ``layers`` (``{str(k):
    {key: {"mean", "last"}}}``) and ``grad_points`` (every measurement with its
    ``step`` and per-layer values).  Methods without sampled masks get None / empty.
    """
    train = [r for r in records if r.get("type") == "train"]
    sampled = [r for r in train if r.get("inclusion_variance") is not None]
    out: dict[str, Any] = {key: _mean(r.get(key) for r in sampled) for key in KEYS}
    out["inclusion_samples"] = sampled[-1].get("inclusion_samples") if sampled else None
    points: dict[int, Mapping[str, Any]] = {}
    for r in train:
        for p in r.get("grad_points") or ():
            points[int(p["step"])] = p
    ordered = [points[s] for s in sorted(points)]
    for key in GRAD_KEYS:
        out[key] = _mean(p.get(key) for p in ordered)
    layers: dict[str, dict[str, dict[str, float | None]]] = {}
    for r in sampled:
        for k in r.get("variance_layers") or {}:
            layers.setdefault(k, {})
    for k in layers:
        rows = [r["variance_layers"][k] for r in sampled if k in (r.get("variance_layers")
                                                                   or {})]
        layers[k] = {key: {"mean": _mean(row.get(key) for row in rows),
                           "last": rows[-1].get(key) if rows else None} for key in KEYS}
    last = sampled[-1] if sampled else None
    out["sampling_variance"] = {
        "logging_steps": [r["step"] for r in sampled],
        "last": None if last is None else {"step": last["step"],
                                           **{key: last.get(key) for key in KEYS}},
        "layers": layers,
        "grad_points": [dict(p) for p in ordered],
    }
    return out
