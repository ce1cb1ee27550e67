"""What is fixed for a run: data, network graph, masked layers (S5.1), model backend,
method and step budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spikenm.methods import Method, MethodSetup, load_method
from spikenm.registry import model_backend, model_factory
from spikenm.snn import Graph, LIFParams, ModelBackend, build_graph

from .config import ModelConfig, SparsityConfig, TrainConfig
from .data import Dataset, load_dataset

__all__ = ["Setup", "build_setup", "build_network", "masked_layers"]


@dataclass(frozen=True)
class Setup:
    """Everything fixed for a run.

    Attributes
    ----------
    graph : Graph
        The network (`spikenm.snn.archs.build_graph`).
    lif : LIFParams
        The neuron.
    model : ModelBackend
        Created for ``run.device``.
    method : Method
        The mask method; ``method_setup`` its static facts (masked layers, budget).
    param_keys : tuple of str
        Parameter keys in optimizer order; ``weight_decay`` the decay of each (weights
        only, S5.7, S4.13).
    """

    cfg: TrainConfig
    data: Dataset
    graph: Graph
    lif: LIFParams
    model: ModelBackend
    method: Method
    method_setup: MethodSetup
    steps_per_epoch: int
    total_steps: int
    param_keys: tuple[str, ...]
    weight_decay: tuple[float, ...]

    @property
    def layers(self) -> tuple[int, ...]:
        """Layer ordinals of the masked layers."""
        return self.method_setup.layers


def build_network(model: ModelConfig, input_shape: tuple[int, ...], num_classes: int
                  ) -> Graph:
    """The `Graph` of ``model`` for inputs of ``input_shape`` (S4.2, S4.15).

    Examples
    --------
    >>> g = build_network(ModelConfig(hidden=(32,)), (1, 8, 8), 10)
    >>> [n.op for n in g.nodes], g.param_shapes()["layer0.weight"]
    (['flatten', 'linear', 'lif', 'linear'], (32, 64))
    """
    return build_graph(model.arch, tuple(input_shape), num_classes, hidden=model.hidden,
                       channels=model.channels, kernel=model.kernel, pools=model.pools,
                       width=model.width_multiplier)


def masked_layers(graph: Graph, sparsity: SparsityConfig, uses_masks: bool = True
                  ) -> tuple[int, ...]:
    """Layer ordinals that carry an ``n:m`` mask (S5.1): every weighted layer but the
    first and the last (``sparsity.dense_first``/``dense_last``); none when the method
    ``uses_masks`` is False.

    Raises
    ------
    ValueError
        When a layer to mask has an input size that is not a multiple of ``m``, or when
        no layer is left to mask.
    """
    if not uses_masks:
        return ()
    n, m = sparsity.nm
    last = len(graph.layers) - 1
    chosen = []
    for k in range(len(graph.layers)):
        if (k == 0 and sparsity.dense_first) or (k == last and sparsity.dense_last):
            continue
        node = graph.layer_node(k)
        if node.in_features % m:
            raise ValueError(
                f"layer {k} ({node.op}, weight {node.weight_shape()}) has "
                f"{node.in_features} inputs, not a multiple of m={m}; change the width, "
                f"the pattern, or keep that layer dense (sparsity.dense_first/dense_last)")
        chosen.append(k)
    if not chosen:
        raise ValueError(
            f"method {sparsity.method!r} has no layer to mask: the network has "
            f"{len(graph.layers)} weighted layers and dense_first={sparsity.dense_first}, "
            f"dense_last={sparsity.dense_last}; add hidden layers or mask the first/last")
    return tuple(chosen)


def build_setup(cfg: TrainConfig) -> Setup:
    """Load the data, build the network, the model backend (on ``run.device``) and the
    method; only the chosen backend's framework is imported."""
    data = load_dataset(cfg.data)
    graph = build_network(cfg.model, data.input_shape, data.num_classes)
    method = load_method(cfg.sparsity.method, cfg)
    layers = masked_layers(graph, cfg.sparsity, bool(getattr(method, "uses_masks", True)))
    model: Any = (model_backend(cfg.run.backend, cfg.run.device) if cfg.run.devices == 1
                  else model_factory(cfg.run.backend)(cfg.run.device, cfg.run.devices))  # S4.16
    count = data.x_train.shape[0]
    if count < cfg.optim.batch_size:
        raise ValueError(
            f"optim.batch_size={cfg.optim.batch_size} exceeds the {count} training samples")
    spe = count // cfg.optim.batch_size
    total = spe * cfg.optim.epochs
    n, m = cfg.sparsity.nm
    shapes = {k: graph.layer_node(k).weight_shape() for k in layers}
    msetup = MethodSetup(n, m, layers, shapes, total, cfg.run.seed, cfg.run.dtype,
                         model.from_numpy)
    keys = tuple(graph.param_shapes())
    decay = tuple(cfg.optim.weight_decay if key.endswith(".weight") else 0.0 for key in keys)
    return Setup(cfg, data, graph, cfg.lif.params(), model, method, msetup, spe, total, keys,
                 decay)
