"""The full SpikeNM recipe in your own PyTorch model: ``sparsify -> train -> finalize``.

The workflow of ``torch.ao.pruning`` (prepare, train with ``step()``, squash the mask),
driven by the same method objects as the trainer (`spikenm.methods`, SPEC S6.0).  The
default is SpikeNM with EID over ``total_steps`` optimizer steps: the search phase with
its temperature and logit-scale schedules, then fine-tuning with the mask fixed (S5.6,
S5.8).  A spiking network over ``T`` time steps, written by hand or with snnTorch /
Norse (one call per time step) or SpikingJelly (a leading time axis)::

    handle = sparsify(model, 2, 4, total_steps=S)
    for x, y in data:
        out = run_snn(model, x)                            # your forward over T steps
        loss = criterion(out, y) + handle.eid_loss()       # the EID term (S2.6, S5.5)
        opt.zero_grad(); loss.backward(); opt.step()
        handle.step()                                      # logits, credits, phases
    handle.finalize()                                      # plain, exactly n:m weights

A small runnable example:

>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(),
...                       nn.Linear(16, 4))
>>> handle = sparsify(model, 2, 4, total_steps=3)   # masks layer "2" (first/last dense)
>>> sorted(handle.layers), sorted(handle.dense)
(['2'], ['0', '4'])
>>> opt = torch.optim.Adam(model.parameters(), lr=1e-2)  # logits are not in it
>>> for _ in range(3):
...     loss = model(torch.randn(5, 8)).square().mean() + handle.eid_loss()
...     opt.zero_grad(); loss.backward(); opt.step()
...     handle.step()
>>> masks = handle.finalize()
>>> packed = export_packed(model, 2, 4, dense=handle.dense)
>>> sorted(packed), packed["2.weight"].values.shape
(['2.weight'], torch.Size([16, 8]))

What `sparsify` does, per selected ``nn.Linear`` / ``nn.Conv1d`` / ``nn.Conv2d`` /
``nn.Conv3d`` (subclasses included, e.g. SpikingJelly's layers): it registers an
`NMMask` parametrization on ``weight`` (blocks of ``m`` along the input dimension, conv
weights channels last, S0.2) and hooks that collect the EID credits
(`spikenm.backends.torch.nn_credit`).  The method state lives in the returned
`SpikeNMHandle` (`spikenm.backends.torch.nn_handle`, which describes one step), not in
the model: the user's optimizer takes ``model.parameters()`` as usual, and
``handle.state_dict()`` goes into a checkpoint next to ``model.state_dict()``.  A layer
is masked, or listed in `SpikeNMHandle.dense` with the reason it is not; an input size
that is not a multiple of ``m`` is an error unless ``skip_unfit=True``, and then the
layer is listed in `SpikeNMHandle.skipped` and a warning says so.

Layer ordinal ``k`` (the ``index`` of the noise seed ``seed_of(seed, 0, step, k)``,
S5.2) is the position of the layer among all Linear/ConvNd modules of
``model.named_modules()``, masked or not, as the trainer counts the weighted layers of its
network (S4.14), so a model built like a trainer network draws the trainer's masks.

The weight learning rate of the trainer is a cosine over the method's window (S5.6;
ASP restarts it, S6.5): set ``group["lr"] = lr * handle.lr_factor()`` before
``optimizer.step()`` to follow it.  When ``handle.current.reset_optimizer`` is True (the
pruning step of ASP), re-create the weight optimizer before that step's update.

Gradient accumulation and several sequences per step: every forward/backward between two
`SpikeNMHandle.step` calls uses the step's masks; the task gradients of the logits add up
as the weights' do, so add ``handle.eid_loss()`` to every micro-batch loss and scale it
like that loss; the credits of the sequences add up (`nn_credit` says where a sequence
ends; `SpikeNMHandle.new_sequence` ends one by hand).

Data-parallel training (S5.14) under your own ``torch.nn.parallel.DistributedDataParallel``:
call `sparsify` on the model on every process (same arguments, same seed), then wrap
it, ``ddp = DistributedDataParallel(model)``, and run the loop above with ``ddp(x)`` on
each process's shard of the batch.  The masks are the same on every process (the noise
seeds do not depend on the rank, S5.2, and the logits stay identical); DDP averages the
weight gradients, and `SpikeNMHandle.step` averages what the handle collected: the
summed ``G = dL/dW_eff`` of every masked layer (from which the logits' task gradient is
taken) and the per-step inner sums of the EID credits *before* the absolute value
(`nn_credit`), so the logit update and ``handle.state_dict()`` are the same on every
process.  ``handle.step()`` must be called on every process once per step (it holds
collective operations), each process must run the same number of forward calls and
time steps, and the result is that of one process on the concatenated batch when every
process has the same local batch size and the loss is a batch mean (DDP's own rule).
The EID term needs nothing: ``handle.eid_loss()`` is the same on every process.  Save
checkpoints (``model.state_dict()``, ``handle.state_dict()``) from rank 0 only; pass
``distributed=False`` for processes that train separate models.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from spikenm.api import check_nm, layer_fits, pack, to_block_layout
from spikenm.methods.base import Method, MethodSetup
from spikenm.packed import Packed
from spikenm import validation

from .nn_handle import LayerStats, SpikeNMHandle, numpy_to
from .nn_mask import NMMask

__all__ = ["sparsify", "SpikeNMHandle", "LayerStats", "export_packed", "NMMask",
           "SUPPORTED", "resolve_method"]

SUPPORTED: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Module types whose ``weight`` can carry an N:M mask (blocks along the input axis)."""

def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _patterns(arg: str, value: Iterable[str] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError(f"{arg} must be a collection of layer names, got the string {value!r}; "
                        f"write {arg}=[{value!r}]")
    out = tuple(value)
    for p in out:
        if not isinstance(p, str):
            raise TypeError(f"{arg} must hold layer names (str), got {p!r}")
    return out


def _check_patterns(arg: str, patterns: tuple[str, ...], candidates: list[str],
                    model: nn.Module) -> None:
    """Every name or glob pattern must match a supported layer."""
    modules = dict(model.named_modules())
    for p in patterns:
        if any(fnmatch.fnmatchcase(c, p) for c in candidates):
            continue
        if p in modules:
            raise ValueError(
                f"{arg} names {p!r}, a {type(modules[p]).__name__}; only "
                f"{', '.join(t.__name__ for t in SUPPORTED)} layers can be masked"
            )
        raise ValueError(
            f"{arg} entry {p!r} matches no Linear/ConvNd layer; the model has {candidates}"
        )


def _weight(module: nn.Module) -> torch.Tensor:
    """``module.weight`` as a tensor (the parametrized value when there is a parametrization)."""
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"{type(module).__name__}.weight is a {type(weight).__name__}, not a tensor")
    return weight


def _describe(name: str, module: nn.Module) -> str:
    return f"layer {name!r} ({type(module).__name__}, weight {tuple(_weight(module).shape)})"


def resolve_method(method: Any) -> Method:
    """A `spikenm.methods.base.Method` from a registry name (``"spikenm"``, ``"srste"``
    ...), an import path ``package.module:ATTRIBUTE`` (`spikenm.methods.load_method`,
    the constructor defaults of the trainer's configuration) or a method object.

    Raises
    ------
    TypeError
        An object that is not a method (names the missing calls).
    ValueError
        An unknown name or import path; a method that masks no layer (``dense``).
    """
    from spikenm.methods import check_method, load_method

    if isinstance(method, str):
        method = load_method(method)
    else:
        method = check_method(method, type(method).__name__)
    if not getattr(method, "uses_masks", True):
        raise ValueError(f"method {method.name!r} masks no layer; train the model without "
                         f"sparsify")
    return method  # type: ignore[no-any-return]


def _steps(total_steps: Any) -> int:
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be the number of optimizer steps of the run, an "
                         f"integer >= 1, got {total_steps!r}")
    return total_steps


def sparsify(
    model: nn.Module, n: int, m: int, *, total_steps: int, method: Any = "spikenm",
    include: Iterable[str] | None = None, exclude: Iterable[str] = (),
    dense_first: bool = True, dense_last: bool = True, skip_unfit: bool = False,
    seed: int = 0, time_steps: int | None = None, eid_decay: float | None = None,
    progress: bool | None = None, distributed: bool | None = None,
) -> SpikeNMHandle:
    """Give the Linear/ConvNd layers of ``model`` learnable ``n:m`` masks, trained by
    ``method`` over ``total_steps`` optimizer steps (SPEC S5, S6).

    Parameters
    ----------
    model : nn.Module
        Changed in place: the selected weights become parametrized and hooked.
    n, m : int
        The pattern (SPEC S0.1).
    total_steps : int
        ``S``, the optimizer steps of the run: the phases and schedules of the method
        span them (S5.6, S5.8), as the trainer's ``epochs * floor(N_train / B)``.
    method : str or Method
        ``"spikenm"`` (default: SpikeNM with EID, the trainer's default hyper-parameters),
        any other registry name (``"srste"``, ``"asp"``, ``"maskllm"``, ``"random"``), an
        import path ``package.module:ATTRIBUTE``, or a method object (e.g.
        ``spikenm.methods.spikenm.SpikeNM(logit_lr=0.1)``).
    include : collection of str, optional
        Module names (as in ``model.named_modules()``) or ``fnmatch`` patterns of the
        layers that may be masked; default: every supported layer.
    exclude : collection of str
        Names or patterns of layers to keep dense.  Every entry of ``include`` and
        ``exclude`` must match a supported layer (a typo is an error, not a no-op).
    dense_first, dense_last : bool
        Keep the first / last supported layer (in module order) dense (S5.1).
    skip_unfit : bool
        Keep layers whose input size is not a multiple of ``m`` dense (listed in
        `SpikeNMHandle.skipped`, with a warning) instead of raising.
    seed : int
        Run seed of the mask noise ``seed_of(seed, 0, step, k)`` (S5.2).
    time_steps : int, optional
        How the EID hooks read time (`spikenm.backends.torch.nn_credit`): None (default)
        for time steps as repeated calls, or a leading time axis ``(T, B, ...)``; ``T``
        when every call holds ``T`` steps, as ``(T, B, ...)`` or flattened ``(T * B,
        ...)``.
    eid_decay : float, optional
        Trace decay ``lam`` of the credits (S2.1), normally the neurons' membrane decay
        ``beta``; default: the method's, else 0.5 (the default LIF ``beta``).
    progress : bool, optional
        A progress bar over the ``total_steps`` (rate and time left, advanced by
        `SpikeNMHandle.step`) on stderr: None (default) shows it when stderr is a
        terminal, True always, False never; `SpikeNMHandle.progress` gives the same
        figures as text for your own log lines.
    distributed : bool, optional
        Reduce each step over the processes of ``torch.distributed`` (S5.14, the module
        docstring's "Data-parallel training"): None (default) does so when the default
        process group is initialized with several processes at `SpikeNMHandle.step`,
        True requires it, False never does (processes that train separately).

    Returns
    -------
    SpikeNMHandle

    Raises
    ------
    ValueError
        Bad pattern or ``total_steps``; an ``include``/``exclude`` entry that matches no
        supported layer; an ``include`` name that ``dense_first``/``dense_last`` would
        drop; a layer whose input size is not a multiple of ``m`` (without
        ``skip_unfit``); an already parametrized or uninitialised (lazy) weight; masked
        weights on several devices or dtypes; no layer left to mask.
    TypeError
        A weight that is not float32/float64 (SPEC S0.4); bad argument types.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3),
    ...                           torch.nn.Flatten(), torch.nn.LazyLinear(4))
    >>> _ = net(torch.zeros(1, 3, 8, 8))            # materialise the lazy layer
    >>> h = sparsify(net, 2, 4, total_steps=100)
    >>> h.ordinals, h.logit_parameters()[0].shape   # logits: (out, k, k, in)
    ({'1': 1}, torch.Size([8, 3, 3, 8]))
    """
    n, m = validation.pattern(n, m)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    total_steps = _steps(total_steps)
    seed = validation.seed(seed)
    method = resolve_method(method)
    if eid_decay is not None:
        eid_decay = validation.unit_interval("eid_decay", eid_decay)
    inc = _patterns("include", include)
    exc = _patterns("exclude", exclude) or ()
    candidates = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, SUPPORTED)]
    names = [name for name, _ in candidates]
    if not candidates:
        raise ValueError(f"model ({type(model).__name__}) has no Linear/ConvNd layer to mask")
    for arg, pats in (("include", inc or ()), ("exclude", exc)):
        _check_patterns(arg, pats, names, model)
    last = len(candidates) - 1
    chosen: list[tuple[int, str, nn.Module]] = []
    dense: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for index, (name, mod) in enumerate(candidates):
        edge = ("first", "dense_first") if index == 0 and dense_first else (
            ("last", "dense_last") if index == last and dense_last else None)
        if inc is not None and not _matches(name, inc):
            dense[name] = "not matched by include"
        elif _matches(name, exc):
            dense[name] = "matched by exclude"
        elif edge is not None:
            if inc is not None and name in inc:
                raise ValueError(
                    f"include names {name!r}, the {edge[0]} layer, but {edge[1]}=True keeps "
                    f"it dense; pass {edge[1]}=False to mask it"
                )
            dense[name] = f"{edge[0]} layer ({edge[1]}=True)"
        else:
            _check_weight(name, mod)
            if layer_fits(_weight(mod), m, name=name):
                chosen.append((index, name, mod))
                continue
            reason = (f"{_describe(name, mod)} has {_weight(mod).shape[1]} inputs, not a "
                      f"multiple of m={m}")
            if not skip_unfit:
                raise ValueError(
                    f"{reason}; change the width or the pattern, exclude the layer "
                    f"(exclude=[{name!r}]) or pass skip_unfit=True to keep it dense"
                )
            skipped[name] = reason
            dense[name] = f"skipped: {reason}"
    if not chosen:
        raise ValueError(
            f"no layer left to mask among {names} (dense: {dense}); adjust include/exclude "
            f"or dense_first/dense_last"
        )
    kinds = {(str(_weight(mod).dtype), str(_weight(mod).device)) for _, _, mod in chosen}
    if len(kinds) > 1:
        raise ValueError(f"the masked weights have several dtypes/devices {sorted(kinds)}; "
                         f"move the model to one device and dtype first")
    if skipped:
        warnings.warn(
            f"sparsify keeps {len(skipped)} layer(s) dense because their input size is not "
            f"a multiple of m={m}: {'; '.join(skipped.values())}",
            UserWarning, stacklevel=2,
        )
    first = _weight(chosen[0][2])
    setup = MethodSetup(
        n=n, m=m, layers=tuple(index for index, _, _ in chosen),
        weight_shapes={index: tuple(_weight(mod).shape) for index, _, mod in chosen},
        total_steps=total_steps, seed=seed,
        dtype="float64" if first.dtype == torch.float64 else "float32",
        from_numpy=numpy_to(first.device))
    layers = {name: mod for _, name, mod in chosen}
    ordinals = {name: index for index, name, _ in chosen}
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress={progress!r} is invalid; expected None, True or False")
    handle = SpikeNMHandle(n, m, method, setup, layers, ordinals, dense, skipped,
                           time_steps, eid_decay, progress, distributed)
    for index, name, mod in chosen:
        mask = NMMask(handle, index, n, m)
        mask.train(mod.training)
        parametrize.register_parametrization(mod, "weight", mask, unsafe=True)
    return handle


def _check_weight(name: str, mod: nn.Module) -> None:
    if parametrize.is_parametrized(mod, "weight"):
        raise ValueError(
            f"layer {name!r} already has a parametrization on its weight; finalize the "
            f"previous sparsify handle (or remove the parametrization) first"
        )
    if isinstance(mod.weight, nn.parameter.UninitializedParameter):
        raise ValueError(
            f"layer {name!r} ({type(mod).__name__}) is lazy and not initialised yet; run one "
            f"forward pass before sparsify"
        )
    if _weight(mod).dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"layer {name!r} has a {_weight(mod).dtype} weight; the sampler needs float32 or "
            f"float64 (SPEC S0.4): cast the model with model.float() first"
        )


def export_packed(model: nn.Module, n: int, m: int, *, dense: Iterable[str] = ()
                  ) -> dict[str, Packed]:
    """Pack the N:M weights of a finalized model (SPEC S3).

    Every Linear/ConvNd layer of ``model`` must either be named in ``dense`` (kept out of
    the result on purpose; pass ``handle.dense``) or have an ``n:m``-sparse weight
    (checked with `spikenm.api.check_nm`): a layer that is neither is an error, never
    dropped.

    Returns
    -------
    dict str -> Packed
        Keyed by the parameter name (``"<module>.weight"``, as in the ``state_dict``);
        torch arrays, dense shape in the weight's own layout, blocks along ``axis=1``.

    Raises
    ------
    ValueError
        A layer still parametrized (call ``handle.finalize()`` first), a weight that is
        not ``n:m``, or a ``dense`` name that is not a Linear/ConvNd layer.
    """
    n, m = validation.pattern(n, m)
    dense_names = _patterns("dense", dense) or ()
    candidates = [(name, mod) for name, mod in model.named_modules() if isinstance(mod, SUPPORTED)]
    known = {name for name, _ in candidates}
    unknown = [d for d in dense_names if d not in known]
    if unknown:
        raise ValueError(
            f"dense names {unknown}, which are not Linear/ConvNd layers of the model; "
            f"its layers are {sorted(known)}"
        )
    out: dict[str, Packed] = {}
    for name, mod in candidates:
        if name in dense_names:
            continue
        if parametrize.is_parametrized(mod, "weight"):
            raise ValueError(
                f"layer {name!r} is still parametrized; call handle.finalize() before "
                f"export_packed"
            )
        weight = _weight(mod).detach()
        if not layer_fits(weight, m, name=name):
            raise ValueError(
                f"{_describe(name, mod)} has {weight.shape[1]} inputs, not a multiple of "
                f"m={m}; list it in dense= to export the model without it"
            )
        try:
            check_nm(to_block_layout(weight), n, m, name=f"{name}.weight")
        except ValueError as exc:
            raise ValueError(f"{exc}; list {name!r} in dense= if it is dense on purpose") from None
        out[f"{name}.weight"] = pack(weight, n, m, axis=1)
    return out
