"""The network as hardware sees it: populations of neurons and the synapses between them.

A quantised IR graph is a dataflow of layers; a neuromorphic core instead stores, for each
*input axon* (one source neuron, or one element of the graph's input), the synapses it drives
in the core. This module composes every path ``source -> [Flatten, SumPool2d, Delay]* ->
weight layer -> [Flatten, SumPool2d, Delay]* -> population`` into one sparse integer matrix
per (source, delay): ``x[t] = sum_blocks M @ s_source[t - delay] + input_bias``, where ``x``
is exactly the input sum the integer simulator gives the population. Affine/Conv biases that
reach a population through such a path become its per-neuron ``input_bias``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from snnc.errors import PassError
from snnc.ir import nodes as N
from snnc.ir.graph import Graph

PASS_THROUGH = (N.Flatten, N.SumPool2d, N.Delay)
WEIGHTED = (N.Affine, N.Linear, N.Conv1d, N.Conv2d)


@dataclass
class Block:
    """Synapses from one source (population or Input) with one delay into a population."""

    source: str
    delay: int
    matrix: sp.csr_matrix  #: (target neurons, source elements), integer weights
    layer: str  #: the weight layer these synapses come from ("" for a pool-only path)


@dataclass
class Population:
    """A neuron population (or a Threshold), flattened to 1-D."""

    name: str
    node: N.Node
    shape: tuple[int, ...]
    params: dict[str, np.ndarray]
    input_bias: np.ndarray
    blocks: list[Block] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass
class Network:
    """All populations, the graph's inputs and its output, in evaluation order."""

    populations: dict[str, Population]
    inputs: dict[str, tuple[int, ...]]  #: Input node name -> shape
    output: str  #: the population (or Input) the Output node reads
    order: list[str]  #: populations in evaluation order within a step
    #: source name -> the graph's flat index of each of its hardware neurons (None: same order)
    perm: dict[str, np.ndarray | None] = field(default_factory=dict)

    def to_hardware(self, name: str, values: np.ndarray) -> np.ndarray:
        """(B, n) values in the graph's flat order -> the hardware's neuron order."""
        p = self.perm.get(name)
        return values if p is None else values[:, p]

    def to_graph(self, name: str, values: np.ndarray) -> np.ndarray:
        p = self.perm.get(name)
        if p is None:
            return values
        out = np.empty_like(values)
        out[:, p] = values
        return out

    def source_size(self, name: str) -> int:
        if name in self.populations:
            return self.populations[name].size
        return int(np.prod(self.inputs[name], dtype=np.int64))


def _layer_matrix(node: N.Node, params, in_shape, out_shape) -> sp.csr_matrix:
    """The layer as a sparse (out elements, in elements) matrix."""
    n_in = int(np.prod(in_shape, dtype=np.int64))
    n_out = int(np.prod(out_shape, dtype=np.int64))
    if isinstance(node, (N.Affine, N.Linear)):
        if len(in_shape) != 1:
            raise PassError(f"Affine/Linear over a {len(in_shape)}-D input is not mappable")
        return sp.csr_matrix(params["weight"].astype(np.int64))
    if isinstance(node, (N.Flatten, N.Delay)):
        return sp.identity(n_in, dtype=np.int64, format="csr")
    if isinstance(node, N.SumPool2d):
        return _window_matrix(np.ones((1, 1, *node.kernel), np.int64), in_shape, out_shape,
                              node.stride, node.padding, (1, 1), depthwise=True)  # fmt: skip
    if isinstance(node, N.Conv2d):
        w = params["weight"].astype(np.int64)
        return _window_matrix(
            w, in_shape, out_shape, node.stride, node.padding, node.dilation, groups=node.groups
        )
    if isinstance(node, N.Conv1d):
        w = params["weight"].astype(np.int64)[:, :, None, :]
        return _window_matrix(w, (in_shape[0], 1, in_shape[1]), (out_shape[0], 1, out_shape[1]),
                              (1, node.stride), (0, node.padding), (1, node.dilation),
                              groups=node.groups)  # fmt: skip
    raise PassError(f"{node.kind} cannot be mapped to synapses")  # pragma: no cover
    _ = n_out


def _window_matrix(w, in_shape, out_shape, stride, padding, dilation, *, groups=1,
                   depthwise=False) -> sp.csr_matrix:  # fmt: skip
    """Sparse matrix of a 2-D convolution (or, depthwise with unit weights, a sum pool)."""
    c_in, h, wd = in_shape
    c_out, oh, ow = out_shape
    kh, kw = w.shape[2:]
    oy, ox = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
    rows, cols, vals = [], [], []
    per_group_out = c_out // groups
    for ky in range(kh):
        for kx in range(kw):
            iy = oy * stride[0] - padding[0] + ky * dilation[0]
            ix = ox * stride[1] - padding[1] + kx * dilation[1]
            ok = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < wd)
            pos_out = (oy * ow + ox)[ok]
            pos_in = (iy * wd + ix)[ok]
            if depthwise:
                for c in range(c_out):
                    rows.append(c * oh * ow + pos_out)
                    cols.append(c * h * wd + pos_in)
                    vals.append(np.full(pos_out.size, w[0, 0, ky, kx]))
                continue
            for co in range(c_out):
                g = co // per_group_out
                for k in range(w.shape[1]):
                    ci = g * w.shape[1] + k
                    if w[co, k, ky, kx] == 0:
                        continue
                    rows.append(co * oh * ow + pos_out)
                    cols.append(ci * h * wd + pos_in)
                    vals.append(np.full(pos_out.size, w[co, k, ky, kx]))
    n_out, n_in = c_out * oh * ow, c_in * h * wd
    if not rows:
        return sp.csr_matrix((n_out, n_in), dtype=np.int64)
    m = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_out, n_in), dtype=np.int64)  # fmt: skip
    return m.tocsr()


def _delay_of(g: Graph, name: str) -> int:
    steps = g.params[name]["steps"]
    if steps.size and int(steps.min()) != int(steps.max()):
        raise PassError(f"{g.describe(name)}: per-element delays are not mappable to cores; "
                        "every element must share one delay")  # fmt: skip
    return int(steps.reshape(-1)[0]) if steps.size else 0


def _paths(g: Graph, pop: str):
    """Yield (source, delay, matrix, bias-vector-or-None, layer) for every input path of pop."""
    shapes = g.shapes()

    def walk(n: str, post: sp.csr_matrix, delay: int, layer: str, bias):
        node = g.nodes[n]
        if isinstance(node, N.Input) or node.spiking:
            yield n, delay, post, bias, layer
            return
        if isinstance(node, WEIGHTED) and layer:
            raise PassError(f"{g.describe(pop)}: two weight layers in a row on one input path "
                            f"({layer}, {n}); run canonicalize to fold them")  # fmt: skip
        if not isinstance(node, (*PASS_THROUGH, *WEIGHTED)):
            raise PassError(f"{g.describe(pop)}: its input path passes {g.describe(n)}, which "
                            "a core cannot compute")  # fmt: skip
        in_shape = shapes[g.inputs[n][0]]
        m = _layer_matrix(node, g.params[n], in_shape, shapes[n])
        d = delay + (_delay_of(g, n) if isinstance(node, N.Delay) else 0)
        if isinstance(node, WEIGHTED):
            b = g.params[n].get("bias")
            if b is not None:
                b = np.asarray(b, np.int64)
                full = np.repeat(b, int(np.prod(shapes[n], dtype=np.int64)) // b.size)
                bias = (bias if bias is not None else 0) + post @ full
            layer = n
        for src in g.inputs[n]:
            yield from walk(src, (post @ m).tocsr(), d, layer, bias)

    size = int(np.prod(shapes[pop], dtype=np.int64))
    for src in g.inputs[pop]:
        yield from walk(src, sp.identity(size, dtype=np.int64, format="csr"), 0, "", None)


def pixel_major(shape: tuple[int, ...]) -> np.ndarray | None:
    """For a (C, H, W) population, the flat (c, y, x) index of each neuron in (y, x, c) order.

    Cores hold contiguous ranges of neurons; in this order a range is a band of rows across all
    channels, so a conv layer is tiled by spatial region, each tile reading only its halo of the
    layer below and feeding few cores of the layer above.
    """
    if len(shape) != 3:
        return None
    return np.arange(int(np.prod(shape))).reshape(shape).transpose(1, 2, 0).reshape(-1)


def build_network(g: Graph) -> Network:
    """Compose a quantised graph's layers into per-population synapse blocks.

    Populations of shape (C, H, W), and such inputs, are held in pixel-major order (see
    :func:`pixel_major`); ``Network.perm`` maps back.
    """
    if not g.meta.get("quantized"):
        raise PassError("mapping to cores needs a quantised graph (run quantize first)")
    shapes = g.shapes()
    pops: dict[str, Population] = {}
    for n, node in g.nodes.items():
        if not isinstance(node, (*N.NEURON_TYPES, N.Threshold)):
            continue
        size = int(np.prod(shapes[n], dtype=np.int64))
        params = {k: np.asarray(a).reshape(-1) for k, a in g.params[n].items()}
        pop = Population(n, node, shapes[n], params, np.zeros(size, np.int64))
        merged: dict[tuple[str, int, str], sp.csr_matrix] = {}
        for src, delay, m, bias, layer in _paths(g, n):
            key = (src, delay, layer)
            merged[key] = m if key not in merged else (merged[key] + m).tocsr()
            if bias is not None:
                pop.input_bias = pop.input_bias + np.asarray(bias, np.int64).reshape(-1)
        for (src, delay, layer), m in merged.items():
            m = m.tocsr()
            m.eliminate_zeros()
            pop.blocks.append(Block(src, delay, m, layer))
        pops[n] = pop
    order = [n for n in g.topo_order() if n in pops]
    out_src = g.inputs[g.output_names[0]][0]
    while out_src not in pops and out_src not in g.input_names:
        out_src = g.inputs[out_src][0]  # an Output read through Flatten
    inputs = {n: shapes[n] for n in g.input_names}
    perm = {n: pixel_major(shapes[n]) for n in [*pops, *inputs]}
    for pop in pops.values():
        p = perm[pop.name]
        if p is not None:
            pop.params = {k: v[p] for k, v in pop.params.items()}
            pop.input_bias = pop.input_bias[p]
        for b in pop.blocks:
            m = b.matrix if p is None else b.matrix[p]
            q = perm[b.source]
            b.matrix = (m if q is None else m[:, q]).tocsr()
    return Network(pops, inputs, out_src, order, perm)
