"""lava-dl's netx HDF5 network description (``loihi/network.net``) of a lowered network.

Written as lava-dl's ``lava.lib.dl.netx.hdf5.Network`` reads it (and as slayer's
``export_hdf5`` writes it): a top-level group ``layer`` with one group per layer, named ``0``,
``1``, ... in order. Layer ``0`` is ``type`` ``input`` with its flat ``shape``; each following
layer is ``type`` ``dense`` with ``shape`` ``[n]``, ``weight`` ``(n, n_in)`` (the integer weight a
spike adds to the dendritic sum: ``Wgt * 2**wgtExp``, which netx re-splits into mantissa and
exponent), ``bias`` (the mantissa at netx's fixed bias exponent 6; only when some bias is not 0; a
LIF/IF bias the configuration carries into u through the bias compartment goes here too,
acting from step 0 as Lava's neuron bias does)
and a group ``neuron`` with ``type`` ``CUBA``, ``iDecay`` (netx sets Lava's ``du`` to
``iDecay - 1``), ``vDecay``, ``vThMant``, ``refDelay`` 1 and ``gradedSpike`` false. Strings are
fixed-length ASCII arrays of one element, as slayer writes them. Nothing else is written: netx
reads nothing else for these layers.

netx describes a chain of layers with one ``du``, ``dv`` and ``vth`` each, weights that fit 8 bits
and a sign, no synaptic delay and no bias exponent but 6. Other networks (skip connections,
recurrence, several inputs, per-neuron thresholds or decays) are refused with the reason; the
build then says so in ``summary.txt`` and writes no ``network.net``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from snnc.backends.loihi import formats as F
from snnc.backends.loihi.layer import merged_inputs
from snnc.backends.loihi.lower import Lowering
from snnc.errors import BackendError

__all__ = ["export_netx", "netx_layers"]


def _refuse(msg: str) -> BackendError:
    return BackendError(f"netx export: {msg}")


def _chain(net) -> list[str]:
    if len(net.inputs) != 1:
        raise _refuse(f"netx takes one input; the network has {len(net.inputs)}")
    prev = next(iter(net.inputs))
    for name in net.order:
        keys = {(b.source, b.delay) for b in net.populations[name].blocks}
        if keys != {(prev, 0)}:
            raise _refuse(f"netx describes a chain of layers; '{name}' reads "
                          f"{sorted(keys)} instead of only '{prev}' without delay")  # fmt: skip
        prev = name
    if prev != net.output:
        raise _refuse(f"the output '{net.output}' is not the last layer of the chain")
    return list(net.order)


def _one(values: np.ndarray, what: str, layer: str) -> int:
    vals = np.unique(values)
    if vals.size != 1:
        raise _refuse(f"layer '{layer}' has {vals.size} different {what} values; netx takes one "
                      "per layer (quantize with granularity=layer)")  # fmt: skip
    return int(vals[0])


def _graph_order(net, name: str, src: str, w: np.ndarray) -> np.ndarray:
    rows, cols = net.perm.get(name), net.perm.get(src)
    out = np.zeros_like(w)
    r = np.arange(w.shape[0]) if rows is None else rows
    c = np.arange(w.shape[1]) if cols is None else cols
    out[np.ix_(r, c)] = w
    return out


def netx_layers(low: Lowering, net) -> list[dict]:
    """The layers as netx reads them (plain arrays); BackendError when netx cannot say it."""
    layers = _chain(net)
    src = next(iter(net.inputs))
    out: list[dict] = [{"type": "input", "shape": np.array([net.source_size(src)])}]
    for name in layers:
        p, pop = low.layers[name], net.populations[name]
        if p.current_bias_format is not None and not p.bias_in_u:
            raise _refuse(f"layer '{name}' adds a bias to its current through the bias "
                          "compartment's synapses; netx has biases on v only")  # fmt: skip
        m = merged_inputs(pop, p.gain)[src, 0].toarray().astype(np.int64)
        w = m << p.k if p.k >= 0 else m >> -p.k
        if p.k < 0 and np.any(w << -p.k != m):
            raise _refuse(f"layer '{name}' has weights below one dendritic unit (scale 2^{p.k})")
        if w.size and (int(w.min()) < -256 or int(w.max()) > (254 if w.min() < 0 else 255)):
            raise _refuse(f"layer '{name}' adds {int(w.min())}..{int(w.max())} per spike; netx "
                          "weights are 8 bits and a sign")  # fmt: skip
        if p.bias_in_u and p.register_bias is None:
            raise _refuse(f"layer '{name}' has biases the bias register cannot hold at its "
                          f"scale 2^{p.k} (the configuration has them as synapses)")  # fmt: skip
        mant, exp = p.register_bias if p.bias_in_u else (p.bias, p.bias_exp)
        bias = mant.astype(np.int64) << exp.astype(np.int64)
        if np.any(bias % 64) or np.any(np.abs(bias // 64) > F.BIAS_MANT_MAX):
            raise _refuse(f"layer '{name}' has biases netx cannot hold at its bias exponent 6")
        layer = {
            "type": "dense",
            "shape": np.array([pop.size]),
            "weight": _graph_order(net, name, src, w),
            "neuron": {
                "type": "CUBA",
                "iDecay": _one(p.decay_u, "decayU", name) + 1,
                "vDecay": _one(p.decay_v, "decayV", name),
                "vThMant": _one(p.vth, "vth", name),
                "refDelay": 1,
                "gradedSpike": False,
            },
        }
        if np.any(bias):
            b = bias // 64
            layer["bias"] = b if net.perm.get(name) is None else b[np.argsort(net.perm[name])]
        out.append(layer)
        src = name
    return out


def _put(group, key: str, value) -> None:
    if isinstance(value, dict):
        sub = group.create_group(key)
        for k, v in value.items():
            _put(sub, k, v)
    elif isinstance(value, str):
        group.create_dataset(key, (1,), "S10", [value.encode("ascii")])
    else:
        group.create_dataset(key, data=value)


def export_netx(low: Lowering, net, path: Path) -> list[dict]:
    """Write ``path`` (the netx HDF5 file); returns the layers written."""
    import h5py

    layers = netx_layers(low, net)
    with h5py.File(path, "w") as f:
        top = f.create_group("layer")
        for i, layer in enumerate(layers):
            g = top.create_group(str(i))
            for k, v in layer.items():
                _put(g, k, v)
    return layers
