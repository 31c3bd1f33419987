"""NIR frontend and exporter: NIR's continuous-time graphs to and from the discrete-time IR.

NIR states ODEs; snnc integrates them with forward Euler at a step ``dt`` — the discretisation
every framework's own simulator and exporter uses. For a LIF node
``tau*dv/dt = (v_leak - v) + r*I``:

    decay = 1 - dt/tau,   gain = dt*r/tau,   bias = dt*v_leak/tau

then ``v > v_threshold`` (strict) fires and sets ``v = v_reset`` in the same step. A CubaLIF's
current is updated first and the voltage integrates the new current
(``decay_i = 1 - dt/tau_syn``, ``gain_i = dt*w_in/tau_syn``). ``I``/``IF`` integrate
``dt*r*I``. A Delay of ``d`` seconds is ``d/dt`` steps and must be a whole number of steps.

``dt`` is the user's choice. When neither the user nor the file gives one, snnc uses
:data:`DEFAULT_DT` = 1e-4 s, the step snnTorch's and SpikingJelly's exporters assume
(Norse's is 1e-3, Sinabs's is 1 step).

Cycles carry NIR's implicit one-step delay: snnc inserts an explicit ``Delay`` of one step on
the cycle's first edge out of the node where the cycle is entered (for a recurrent layer, right
after the neuron, so the recurrent weights see the previous step's spikes). A cycle that already
contains a NIR Delay gets none.

NIR cannot say "reset by subtraction", "reset in the next step" or ``>=``. The exporter writes
the nearest NIR (reset to ``v_reset``) and keeps the exact semantics in node metadata
(``snnc.reset``, ``snnc.timing``, ``snnc.strict``), which this frontend reads back.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from snnc.errors import FrontendError, IRError
from snnc.frontend import nir_flavors
from snnc.frontend.nir_flavors import Flavor
from snnc.ir import nodes as N
from snnc.ir.graph import NAME_RE, Graph
from snnc.ir.verify import verify

DEFAULT_DT = 1e-4


def load_nir_file(
    path: str | os.PathLike,
    *,
    dt: float | None = None,
    notes: list[str] | None = None,
    flavor: str | None = None,
) -> Graph:
    """Read a ``.nir`` file (HDF5) and lower it to the IR; see :func:`from_nir`."""
    import nir

    path = Path(path)
    if not path.is_file():
        raise FrontendError(f"{path}: no such file (expected a NIR graph written by nir.write)")
    try:
        g = nir.read(path, type_check=False)  # snnc checks types itself, naming the node
    except Exception as e:  # h5py/nir raise many types on corrupt files
        raise FrontendError(
            f"{path}: not a readable NIR file ({type(e).__name__}: {e}); expected an HDF5 file "
            "written by nir.write"
        ) from None
    return from_nir(g, dt=dt, name=path.stem, source=str(path), notes=notes, flavor=flavor)


def _arr(x, shape=None) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if shape is not None and a.shape != tuple(shape):
        a = np.broadcast_to(a, shape)
    return a


def _meta_str(md: dict, key: str) -> str | None:
    v = md.get(key)
    if v is None:
        return None
    if isinstance(v, np.ndarray):
        v = v.item() if v.shape == () else v.tolist()
    if isinstance(v, bytes):
        v = v.decode()
    return str(v)


class _Lowering:
    """Builds the IR graph from a flattened NIR node dict."""

    def __init__(self, dt: float, where: str, flavor: Flavor) -> None:
        self.dt = dt
        self.flavor = flavor
        self.where = where
        self.nodes: dict[str, N.Node] = {}
        self.params: dict[str, dict[str, np.ndarray]] = {}

    def fail(self, name: str, node, msg: str) -> FrontendError:
        return FrontendError(f"{self.where}: NIR node '{name}' ({type(node).__name__}): {msg}")

    def add(self, name: str, node: N.Node, **params: np.ndarray) -> None:
        self.nodes[name] = node
        self.params[name] = params

    # -------------------------------------------------------------- neurons

    def _finite(self, name, node, **arrays) -> None:
        for k, a in arrays.items():
            if not np.all(np.isfinite(a)):
                raise self.fail(name, node, f"'{k}' has NaN or infinite values")

    def _tau(self, name, node, tau, what="tau") -> np.ndarray:
        tau = _arr(tau)
        self._finite(name, node, **{what: tau})
        if np.any(tau <= 0) or np.any(tau < self.flavor.min_tau(self.dt)):
            raise self.fail(
                name, node,
                f"{what} = {tau.min():g} s is shorter than the time step dt = {self.dt:g} s; "
                "forward Euler would be unstable. Pass the exporter's own step with --dt "
                "(snnTorch/SpikingJelly 1e-4, Norse 1e-3, Sinabs 1) or its --nir-flavor (Norse "
                "writes tau multiplied by dt: --nir-flavor norse)",
            )  # fmt: skip
        return tau

    def _spiking_attrs(self, nirnode) -> dict:
        md = getattr(nirnode, "metadata", {}) or {}
        attrs = {
            "reset": self.flavor.reset or N.ResetMode.TO_VALUE,
            "timing": N.ResetTiming.IMMEDIATE,
            "strict": self.flavor.strict,
        }
        if (r := _meta_str(md, "snnc.reset")) is not None:
            attrs["reset"] = N.ResetMode(r)
        if (t := _meta_str(md, "snnc.timing")) is not None:
            attrs["timing"] = N.ResetTiming(t)
        if (s := _meta_str(md, "snnc.strict")) is not None:
            attrs["strict"] = s.lower() in ("1", "true")
        return attrs

    def neuron(self, name: str, n, origin: str) -> None:  # noqa: C901 - one case per NIR type
        import nir

        dt, fl = self.dt, self.flavor
        if fl.name == "rockpool" and not isinstance(n, nir.CubaLIF):
            raise self.fail(name, n, "with --nir-flavor rockpool only CubaLIF (LIFTorch) is "
                            "understood; other Rockpool neurons are not verified")  # fmt: skip
        if isinstance(n, (nir.LIF, nir.LI)):
            tau = self._tau(name, n, n.tau)
            shape = tau.shape
            r, v_leak = _arr(n.r, shape), _arr(n.v_leak, shape)
            self._finite(name, n, r=r, v_leak=v_leak)
            self._zero_start(name, n, v_leak)
            decay, gain, bias = fl.lif(tau, r, v_leak, dt)
            p = dict(decay=decay, gain=gain, bias=bias)
            if isinstance(n, nir.LI):
                self.add(name, N.LI(origin=origin), **p)
                return
            self._threshold(name, n, origin, N.LIF, shape, p)
        elif isinstance(n, (nir.CubaLIF, nir.CubaLI)):
            tau_syn = self._tau(name, n, n.tau_syn, "tau_syn")
            tau_mem = self._tau(name, n, n.tau_mem, "tau_mem")
            shape = np.broadcast_shapes(tau_syn.shape, tau_mem.shape)
            tau_syn, tau_mem = _arr(tau_syn, shape), _arr(tau_mem, shape)
            r, v_leak, w_in = _arr(n.r, shape), _arr(n.v_leak, shape), _arr(n.w_in, shape)
            self._finite(name, n, r=r, v_leak=v_leak, w_in=w_in)
            self._zero_start(name, n, v_leak)
            keys = ("decay_i", "gain_i", "decay", "gain", "bias")
            p = dict(zip(keys, fl.cuba(tau_syn, tau_mem, r, v_leak, w_in, dt), strict=True))
            if isinstance(n, nir.CubaLI):
                self.add(name, N.CubaLI(origin=origin), **p)
                return
            self._threshold(name, n, origin, N.CubaLIF, shape, p)
        elif isinstance(n, (nir.I, nir.IF)):
            r = _arr(n.r)
            self._finite(name, n, r=r)
            gain = fl.integrator_gain(r, dt)
            if isinstance(n, nir.I):
                self.add(name, N.LI(origin=origin), decay=np.ones_like(r), gain=gain,
                         bias=np.zeros_like(r))  # fmt: skip
                return
            self._threshold(name, n, origin, N.IF, r.shape, dict(gain=gain, bias=0 * r))

    def _zero_start(self, name, n, v_leak) -> None:
        # Norse starts its membrane at v_leak and SpikingJelly at v_reset (= v_leak in its
        # files); the IR's neurons start at 0.
        if self.flavor.name in ("norse", "spikingjelly") and np.any(v_leak != 0):
            raise self.fail(name, n, f"{self.flavor.name} starts the membrane at v_leak = "
                            f"{v_leak.reshape(-1)[0]:g}; snnc's neurons start at 0")  # fmt: skip

    def _threshold(self, name, n, origin, cls, shape, p) -> None:
        th = _arr(n.v_threshold, shape)
        v_reset = np.zeros(shape) if getattr(n, "v_reset", None) is None else _arr(n.v_reset, shape)
        self._finite(name, n, v_threshold=th, v_reset=v_reset)
        try:
            node = cls(origin=origin, **self._spiking_attrs(n))
        except (ValueError, IRError) as e:
            raise self.fail(name, n, f"bad snnc metadata: {e}") from None
        self.add(name, node, **p, threshold=th, reset_value=v_reset)

    # -------------------------------------------------------------- the rest

    def lower(self, name: str, n, origin: str) -> None:  # noqa: C901 - one case per NIR type
        import nir

        if isinstance(n, (nir.LIF, nir.LI, nir.CubaLIF, nir.CubaLI, nir.I, nir.IF)):
            self.neuron(name, n, origin)
        elif isinstance(n, nir.Input):
            shape = self._io(_io_shape(n.input_type, name))
            self.add(name, N.Input(shape=shape, origin=origin))
        elif isinstance(n, nir.Output):
            shape = self._io(_io_shape(n.output_type, name))
            self.add(name, N.Output(shape=shape, origin=origin))
        elif isinstance(n, nir.Affine):
            w, b = _arr(n.weight), _arr(n.bias)
            self._finite(name, n, weight=w, bias=b)
            self.add(name, N.Affine(origin=origin), weight=w, bias=b)
        elif isinstance(n, nir.Linear):
            w = _arr(n.weight)
            self._finite(name, n, weight=w)
            self.add(name, N.Linear(origin=origin), weight=w)
        elif isinstance(n, nir.Scale):
            s = _arr(n.scale)
            self._finite(name, n, scale=s)
            self.add(name, N.Scale(origin=origin), scale=s)
        elif isinstance(n, nir.Threshold):
            th = _arr(n.threshold)
            self._finite(name, n, threshold=th)
            self.add(name, N.Threshold(origin=origin), threshold=th)
        elif isinstance(n, (nir.Conv1d, nir.Conv2d)):
            self.conv(name, n, origin)
        elif isinstance(n, (nir.SumPool2d, nir.AvgPool2d)):
            cls = N.SumPool2d if isinstance(n, nir.SumPool2d) else N.AvgPool2d
            k = _pair(n.kernel_size)
            s = _pair(n.stride) if n.stride is not None else k
            self.add(name, cls(kernel=k, stride=s, padding=_pair(n.padding), origin=origin))
        elif isinstance(n, nir.Flatten):
            self.add(name, N.Flatten(start_dim=int(n.start_dim), end_dim=int(n.end_dim),
                                     origin=origin))  # fmt: skip
        elif isinstance(n, nir.Delay):
            d = _arr(n.delay) / self.dt
            steps = np.rint(d)
            if not np.all(np.isfinite(d)) or np.any(np.abs(d - steps) > 1e-6 * np.maximum(1, d)):
                raise self.fail(
                    name, n, f"delays {np.unique(_arr(n.delay))[:4]} s are not whole multiples "
                    f"of dt = {self.dt:g} s; pass a --dt that divides them",
                )  # fmt: skip
            if np.any(steps < 0):
                raise self.fail(name, n, "negative delays cannot be honoured")
            self.add(name, N.Delay(origin=origin), steps=steps.astype(np.int64))
        else:
            raise self.fail(
                name, n, "node type not supported; snnc reads Input, Output, Affine, Linear, "
                "Scale, Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, Delay, Threshold, "
                "LI, LIF, I, IF, CubaLI, CubaLIF and nested NIRGraphs",
            )  # fmt: skip

    def _io(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        # Norse and Rockpool write the sample's batch (and Rockpool a time) dimension of 1
        while self.flavor.strip_batch and len(shape) > 1 and shape[0] == 1:
            shape = shape[1:]
        return shape

    def conv(self, name, n, origin) -> None:
        import nir

        w = _arr(n.weight)
        self._finite(name, n, weight=w)
        two = isinstance(n, nir.Conv2d)
        k = w.shape[2:]
        dil = _pair(n.dilation) if two else (int(np.asarray(n.dilation).reshape(-1)[0]),)
        pad = n.padding
        if isinstance(pad, str):
            if pad == "valid":
                pad = (0,) * len(k)
            elif pad == "same":
                total = [d * (kk - 1) for d, kk in zip(dil, k, strict=True)]
                if any(t % 2 for t in total):
                    raise self.fail(name, n, "'same' padding with an even kernel is asymmetric")
                pad = tuple(t // 2 for t in total)
            else:
                raise self.fail(name, n, f"padding {pad!r}: expected an int, 'same' or 'valid'")
        bias = getattr(n, "bias", None)
        params = {"weight": w}
        if bias is not None and np.size(bias):
            params["bias"] = _arr(bias, (w.shape[0],))
            self._finite(name, n, bias=params["bias"])
        groups = int(n.groups)
        if two:
            node = N.Conv2d(stride=_pair(n.stride), padding=_pair(pad), dilation=dil,
                            groups=groups, origin=origin)  # fmt: skip
        else:
            node = N.Conv1d(stride=_int1(n.stride), padding=_int1(pad), dilation=dil[0],
                            groups=groups, origin=origin)  # fmt: skip
        self.add(name, node, **params)


def _int1(v) -> int:
    return int(np.asarray(v).reshape(-1)[0])


def _pair(v) -> tuple[int, int]:
    a = np.asarray(v).reshape(-1)
    if a.size == 1:
        return (int(a[0]), int(a[0]))
    return (int(a[0]), int(a[1]))


def _io_shape(t, name: str) -> tuple[int, ...]:
    if isinstance(t, dict):
        if len(t) != 1:
            raise FrontendError(f"NIR node '{name}': expected one port, found {sorted(t)}")
        t = next(iter(t.values()))
    return tuple(int(d) for d in np.asarray(t).reshape(-1))


def _ir_name(nir_name: str, taken: set[str]) -> str:
    base = "".join(c if c.isalnum() or c in "_.-" else "_" for c in nir_name) or "node"
    if not NAME_RE.match(base):
        base = "n" + base
    name, k = base, 1
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def _flatten(g, prefix: str = "") -> tuple[dict, list[tuple[str, str]]]:
    """Inline nested NIRGraphs: names become ``outer.inner``; edges to a subgraph go to its
    Input, edges from it leave from its Output (both then removed as pass-throughs)."""
    import nir

    nodes: dict = {}
    edges: list[tuple[str, str]] = []
    sub_io: dict[str, tuple[list[str], list[str]]] = {}
    for name, node in g.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            inner_nodes, inner_edges = _flatten(node, full + ".")
            nodes.update(inner_nodes)
            edges += inner_edges
            ins = [full + "." + k for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            outs = [full + "." + k for k, v in node.nodes.items() if isinstance(v, nir.Output)]
            sub_io[full] = (ins, outs)
        else:
            nodes[full] = node
    for src, dst in g.edges:
        s, d = prefix + src, prefix + dst
        srcs = sub_io[s][1] if s in sub_io else [s]
        dsts = sub_io[d][0] if d in sub_io else [d]
        if len(srcs) != 1 or len(dsts) != 1:
            raise FrontendError(
                f"NIR edge {src} -> {dst}: a subgraph with several inputs/outputs must be "
                "addressed by port ('graph.input_name')"
            )
        edges.append((srcs[0], dsts[0]))
    if prefix:
        return nodes, edges
    # at top level: remove the Input/Output nodes of inlined subgraphs
    for ins, outs in sub_io.values():
        for io in ins + outs:
            preds = [s for s, d in edges if d == io]
            succs = [d for s, d in edges if s == io]
            edges = [(s, d) for s, d in edges if io not in (s, d)]
            edges += [(p, q) for p in preds for q in succs]
            nodes.pop(io, None)
    return nodes, edges


def _back_edges(names: Iterable[str], inputs: dict[str, list[str]], roots: list[str]):
    """Back edges of a DFS from the roots, each with the edge to cut: ``(head, next)``."""
    succ: dict[str, list[str]] = {n: [] for n in names}
    for d, srcs in inputs.items():
        for s in srcs:
            succ[s].append(d)
    state: dict[str, int] = {}
    stack: list[str] = []
    out: list[tuple[tuple[str, str], tuple[str, str]]] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in succ[n]:
            if state.get(m) == 1:
                head_next = stack[stack.index(m) + 1] if stack.index(m) + 1 < len(stack) else n
                out.append(((n, m), (m, head_next)))
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for r in roots + [n for n in succ if n not in roots]:
        if r not in state:
            visit(r)
    return out


def _choose_reading(g, dt: float | None, flavor: str | None) -> tuple[float, Flavor, list[str]]:
    """The flavor and dt to read ``g`` with, and what to tell the user about the choice."""
    said: list[str] = []
    if flavor is None:
        flavor = nir_flavors.detect(list(g.nodes))
        if flavor is not None:
            said.append(
                f"the node names are those of {flavor}'s exporter: reading it with "
                f"--nir-flavor {flavor} (pass --nir-flavor nir for plain NIR)"
            )
    fl = nir_flavors.get(flavor or "nir")
    if dt is None:
        md_dt = (g.metadata or {}).get("dt")
        if md_dt is not None:
            dt = float(np.asarray(md_dt))
            said.append(
                f"NIR is continuous-time: using dt = {dt:g} s from the file (--dt overrides)"
            )
        else:
            dt = fl.default_dt
            said.append(
                f"NIR is continuous-time: using dt = {dt:g} s, the default of flavor "
                f"'{fl.name}' (pass --dt, or --nir-flavor norse|sinabs|rockpool|spikingjelly "
                "for files from those exporters)"
            )
    if fl.note:
        said.append(fl.note)
    return dt, fl, said


def from_nir(
    g,
    *,
    dt: float | None = None,
    name: str = "nir",
    source: str = "",
    notes: list[str] | None = None,
    flavor: str | None = None,
) -> Graph:
    """Lower a ``nir.NIRGraph`` to an IR graph integrated with step ``dt`` (seconds).

    ``flavor`` names the exporter whose reading of NIR to follow (see
    :mod:`snnc.frontend.nir_flavors`); by default one recognised from the node names, else
    ``nir``. Without ``dt``, the file's ``metadata['dt']`` is used, else the flavor's default
    (:data:`DEFAULT_DT` for plain NIR). ``notes`` (if given) receives what was chosen.
    """
    import nir

    if not isinstance(g, nir.NIRGraph):
        raise FrontendError(f"expected a nir.NIRGraph, got {type(g).__name__}")
    dt, fl, said = _choose_reading(g, dt, flavor)
    if notes is not None:
        notes += said
    if not (np.isfinite(dt) and dt > 0):
        raise FrontendError(f"dt must be a positive number of seconds, got {dt}")
    where = source or "NIR graph"
    flat_nodes, flat_edges = _flatten(g)
    taken: set[str] = set()
    names = {}
    for k in flat_nodes:
        names[k] = _ir_name(k, taken)
        taken.add(names[k])
    low = _Lowering(dt, where, fl)
    for k, node in flat_nodes.items():
        origin = _meta_str(getattr(node, "metadata", {}) or {}, "snnc.origin") or f"nir:{k}"
        low.lower(names[k], node, origin=origin)
    inputs: dict[str, list[str]] = {names[k]: [] for k in flat_nodes}
    for s, d in flat_edges:
        if s not in names or d not in names:
            raise FrontendError(f"{where}: edge {s} -> {d} names a node that does not exist")
        inputs[names[d]].append(names[s])
    _insert_cycle_delays(low, inputs, flat_nodes, names)
    graph = Graph(
        low.nodes, inputs, low.params, name=name,
        meta={"source": "nir", "dt": float(dt), "flavor": fl.name},
    )  # fmt: skip
    try:
        return verify(graph).sorted()
    except IRError as e:
        raise FrontendError(f"{where}: the NIR graph is inconsistent:\n{e}") from None


def _insert_cycle_delays(low: _Lowering, inputs, flat_nodes, names) -> None:
    roots = [n for n, node in low.nodes.items() if isinstance(node, N.Input)]
    for (tail, head), (h, nxt) in _back_edges(low.nodes, inputs, roots):
        if _cycle_has_delay(low, inputs, head, tail):
            continue
        md = getattr(flat_nodes.get(_orig(low, nxt)), "metadata", {}) or {}
        dname = _meta_str(md, "snnc.delay_in") or f"{h}_delay"
        if dname in low.nodes:
            dname = _ir_name(dname, set(low.nodes))
        low.add(dname, N.Delay(origin=f"nir:implicit delay {h}->{nxt}"), steps=None)
        inputs[dname] = [h]
        inputs[nxt] = [dname if s == h else s for s in inputs[nxt]]
        # the recurrent contribution is summed after the feed-forward one (as snnTorch does)
        inputs[head] = [s for s in inputs[head] if s != tail] + [tail]
    for n, node in low.nodes.items():
        if isinstance(node, N.Delay) and low.params[n].get("steps") is None:
            shape = _delay_shape(low, inputs, n)
            low.params[n] = {"steps": np.ones(shape, dtype=np.int64)}


def _orig(low: _Lowering, ir_name: str) -> str:
    return low.nodes[ir_name].origin.removeprefix("nir:")


def _cycle_has_delay(low, inputs, head, tail) -> bool:
    """Whether a Delay lies on some path head -> ... -> tail (the cycle closed by tail->head)."""
    succ: dict[str, list[str]] = {}
    for d, srcs in inputs.items():
        for s in srcs:
            succ.setdefault(s, []).append(d)
    seen, todo = set(), [(head, False)]
    while todo:
        n, has = todo.pop()
        has = has or isinstance(low.nodes[n], N.Delay)
        if n == tail:
            if has:
                return True
            continue
        if (n, has) in seen:
            continue
        seen.add((n, has))
        todo += [(m, has) for m in succ.get(n, [])]
    return False


def _delay_shape(low, inputs, name) -> tuple[int, ...]:
    """Shape of an inserted Delay: that of the neuron population (or node) feeding it."""
    src = inputs[name][0]
    from snnc.ir.graph import shape_problems

    g = Graph({k: v for k, v in low.nodes.items() if k != name}, {
        k: [s for s in v if s != name] for k, v in inputs.items() if k != name
    }, {k: v for k, v in low.params.items() if k != name})  # fmt: skip
    shapes, _ = shape_problems(g)
    if src not in shapes:
        raise FrontendError(f"cannot infer the shape of the recurrent edge out of '{src}'")
    return shapes[src]
