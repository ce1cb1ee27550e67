"""Spiking networks in the core: the LIF neuron (`neuron`), networks as graphs of layers
(`graph`, `archs`) and the interface a model backend implements (`model`); SPEC S4.

Nothing here imports a framework: the backends import this package, never the trainer.
"""

from .archs import ARCHS, build_graph, mlp, conv_net, resnet19, vgg11
from .graph import Graph, Node, fold_batch_norm, init_buffers, init_params
from .model import EIDRequest, EvalResult, ModelBackend, StepResult, check_call
from .neuron import LIFParams, lif_step, surrogate

__all__ = ["ARCHS", "build_graph", "mlp", "conv_net", "resnet19", "vgg11", "Graph", "Node",
           "fold_batch_norm", "init_buffers", "init_params", "EIDRequest", "EvalResult",
           "ModelBackend", "StepResult", "check_call", "LIFParams", "lif_step", "surrogate"]
