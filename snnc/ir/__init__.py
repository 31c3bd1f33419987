"""The dataflow IR: nodes, graphs, verifier, text form and serialisation."""

from snnc.ir.graph import Graph, arrays_identical, infer_shapes
from snnc.ir.nodes import *  # noqa: F403
from snnc.ir.nodes import NEURON_TYPES, NODE_TYPES, Node, ResetMode, ResetTiming, Shape
from snnc.ir.serialize import load, save
from snnc.ir.text import parse, print_graph
from snnc.ir.verify import verify

__all__ = [
    "Graph", "Node", "NODE_TYPES", "NEURON_TYPES", "ResetMode", "ResetTiming", "Shape",
    "arrays_identical", "infer_shapes", "load", "save", "parse", "print_graph", "verify",
]  # fmt: skip
