"""Hypothesis strategies that build random, valid IR graphs."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from snnc.ir import Graph
from snnc.ir import nodes as N

SPECIAL = [0.0, -0.0, 1.0, -1.0, 1e-38, 1e-45, 3.4e38, 0.1, 0.9]


@st.composite
def arrays(draw, shape, lo=-4.0, hi=4.0, dtype=np.float32):
    size = int(np.prod(shape, dtype=np.int64))
    kind = draw(st.sampled_from(["random", "splat", "special"]))
    if kind == "splat":
        return np.full(shape, draw(st.floats(lo, hi)), dtype=dtype)
    if kind == "special":
        vals = draw(st.lists(st.sampled_from(SPECIAL), min_size=size, max_size=size))
        return np.array(vals, dtype=dtype).reshape(shape)
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(dtype)


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,8}", fullmatch=True)
origins = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def _neuron(draw, shape):
    cls = draw(st.sampled_from([N.LIF, N.IF, N.CubaLIF, N.LI, N.CubaLI]))
    kw = {}
    if cls in (N.LIF, N.IF, N.CubaLIF):
        reset = draw(st.sampled_from(list(N.ResetMode)))
        timings = [N.ResetTiming.IMMEDIATE, N.ResetTiming.NEXT_STEP]
        if reset is N.ResetMode.SUBTRACT:
            timings.append(N.ResetTiming.GATED)
        kw = dict(reset=reset, timing=draw(st.sampled_from(timings)), strict=draw(st.booleans()))
    params = {}
    for p in cls.PARAMS:
        lo, hi = (
            (0.0, 1.0) if p.startswith("decay") else (0.1, 2.0) if p == "threshold" else (-1, 1)
        )
        params[p] = draw(arrays(shape, lo, hi))
    return cls(**kw), params


@st.composite
def graphs(draw, max_layers: int = 5) -> Graph:
    """A random chain of layers, optionally with a recurrent edge through a one-step Delay."""
    nodes: dict = {}
    inputs: dict = {}
    params: dict = {}
    used: set[str] = set()

    def fresh(prefix: str) -> str:
        base = draw(names) if draw(st.booleans()) else prefix
        name, k = base, 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        return name

    conv = draw(st.booleans())
    shape = (draw(st.integers(1, 2)), draw(st.integers(3, 5)), draw(st.integers(3, 5))) if conv \
        else (draw(st.integers(1, 6)),)  # fmt: skip
    prev = fresh("input")
    nodes[prev] = N.Input(shape=shape, origin=draw(origins))
    for _ in range(draw(st.integers(1, max_layers))):
        name = fresh("layer")
        origin = draw(origins)
        if len(shape) == 3:
            options = ["conv", "pool", "neuron", "flatten"] if min(shape[1:]) >= 2 else \
                ["neuron", "flatten"]  # fmt: skip
            choice = draw(st.sampled_from(options))
            if choice == "conv":
                c_out, k = draw(st.integers(1, 3)), draw(st.integers(1, 2))
                node = N.Conv2d(stride=(1, 1), padding=(draw(st.integers(0, 1)),) * 2,
                                origin=origin)  # fmt: skip
                p = {"weight": draw(arrays((c_out, shape[0], k, k)))}
                if draw(st.booleans()):
                    p["bias"] = draw(arrays((c_out,)))
            elif choice == "pool":
                cls = draw(st.sampled_from([N.SumPool2d, N.AvgPool2d]))
                node, p = cls(kernel=(2, 2), stride=(1, 1), origin=origin), {}
            elif choice == "flatten":
                node, p = N.Flatten(start_dim=0, end_dim=-1, origin=origin), {}
            else:
                node, p = _neuron(draw, shape)
                node = type(node)(**{**node.attrs(), "origin": origin})
        else:
            choice = draw(st.sampled_from(["affine", "linear", "scale", "neuron", "delay", "thr"]))
            if choice in ("affine", "linear"):
                n_out = draw(st.integers(1, 6))
                node = N.Affine(origin=origin) if choice == "affine" else N.Linear(origin=origin)
                p = {"weight": draw(arrays((n_out, shape[0])))}
                if choice == "affine":
                    p["bias"] = draw(arrays((n_out,)))
            elif choice == "scale":
                node, p = N.Scale(origin=origin), {"scale": draw(arrays(shape))}
            elif choice == "delay":
                steps = np.array(draw(st.lists(st.integers(0, 3), min_size=shape[0],
                                               max_size=shape[0])), dtype=np.int64)  # fmt: skip
                node, p = N.Delay(origin=origin), {"steps": steps}
            elif choice == "thr":
                node, p = N.Threshold(origin=origin), {"threshold": draw(arrays(shape))}
            else:
                node, p = _neuron(draw, shape)
                node = type(node)(**{**node.attrs(), "origin": origin})
        nodes[name] = node
        params[name] = p
        inputs[name] = [prev]
        shape = node.infer_shape(shape, p)
        if isinstance(node, N.NEURON_TYPES) and len(shape) == 1 and draw(st.booleans()):
            d, r = fresh("delay"), fresh("rec")
            nodes[d] = N.Delay()
            params[d] = {"steps": np.ones(shape, dtype=np.int64)}
            inputs[d] = [name]
            nodes[r] = N.Linear()
            params[r] = {"weight": draw(arrays((shape[0], shape[0])))}
            inputs[r] = [d]
            inputs[name].append(r)
        prev = name
    out = fresh("output")
    nodes[out] = N.Output(shape=shape)
    inputs[out] = [prev]
    meta = draw(st.dictionaries(st.from_regex(r"[a-z_]{1,6}", fullmatch=True),
                                st.one_of(st.floats(allow_nan=False), st.text(max_size=5),
                                          st.integers(-10, 10)), max_size=3))  # fmt: skip
    return Graph(nodes, inputs, params, name=draw(st.text(max_size=8)), meta=meta)
