"""The ``canonicalize`` pass: fold scalings into weights, drop identities, prune dead neurons.

Every rewrite is exact in real arithmetic; folding changes only float32 rounding (none when the
factors are powers of two). Rewrites repeat until none applies, so the pass is idempotent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from itertools import combinations_with_replacement
from typing import ClassVar

import numpy as np

from snnc.errors import IRError, PassError
from snnc.ir import nodes as N
from snnc.ir.graph import Graph
from snnc.ir.verify import verify
from snnc.passes.manager import Pass, PassContext, register

_DENSE = (N.Affine, N.Linear)
_CONV = (N.Conv1d, N.Conv2d)
_CUBA = (N.CubaLI, N.CubaLIF)
_PAD = 1e-5  # relative slack on membrane bounds, so that float32 rounding cannot beat them

Params = dict[str, np.ndarray]


@dataclass(frozen=True)
class PruneRecord:
    """Neurons removed from one population."""

    population: str
    before: int
    never_fire: int
    no_output: int


@dataclass(frozen=True)
class CanonicalizeReport:
    """What ``canonicalize`` changed, and (``notes``) what it left alone and why."""

    pools_folded: int = 0
    pools_scaled: int = 0
    scales_folded: int = 0
    gains_merged: int = 0
    gains_folded: int = 0
    gains_rescaled: int = 0
    chains_folded: int = 0
    identities_dropped: int = 0
    dead_nodes: tuple[str, ...] = ()
    pruned: tuple[PruneRecord, ...] = ()
    notes: tuple[str, ...] = ()

    _TEXT: ClassVar[dict[str, str]] = {
        "pools_folded": "folded {} AvgPool2d into SumPool2d, 1/k into the consumers",
        "pools_scaled": "replaced {} AvgPool2d by SumPool2d + Scale",
        "scales_folded": "folded {} Scale into neighbouring nodes",
        "gains_merged": "merged gain into gain_i in {} CubaLI/CubaLIF population(s)",
        "gains_folded": "folded the input gain of {} population(s) into the layers before",
        "gains_rescaled": "measured the membrane of {} population(s) in units of its input gain "
        "(threshold, bias and reset value divided by the gain)",
        "chains_folded": "folded {} chain(s) of two layers into one",
        "identities_dropped": "dropped {} identity node(s)",
    }

    def text(self) -> str:
        """Human-readable lines, one change or note per line."""
        lines = [t.format(getattr(self, k)) for k, t in self._TEXT.items() if getattr(self, k)]
        if self.dead_nodes:
            lines.append(
                f"removed {len(self.dead_nodes)} node(s) with no path to an output: "
                + ", ".join(self.dead_nodes)
            )
        lines += [
            f"pruned {r.never_fire + r.no_output} of {r.before} neurons in '{r.population}' "
            f"({r.never_fire} can never fire, {r.no_output} never reach an output)"
            for r in self.pruned
        ]
        return "\n".join(lines + list(self.notes) or ["nothing to change"])


@register
@dataclass(frozen=True)
class Canonicalize(Pass):
    """Bring a float graph into the canonical form later passes expect.

    Requires a verified float graph, not quantised (every float parameter float32).

    Ensures: no AvgPool2d (a SumPool2d whose 1/k is folded into its consumers, else followed by a
    Scale); Scales folded into neighbouring layers, neuron gains or thresholds where all their
    consumers can take them; neuron input gains (``gain``; ``gain_i`` for CubaLI/CubaLIF, after
    ``gain`` is merged into it) all ones where the layers feeding the population feed nothing
    else; Affine/Linear chains folded unless that grows the weights; no identity Scale, Delay or
    Flatten, no Flatten chains. With ``prune``: no node without a path to an Output, and 1-D
    LIF/IF/CubaLIF populations between dense layers (never one an Output reads) lose the neurons
    that provably never fire (interval bounds; Input values in ``meta["input_range"]``, default
    [0, 1]) or whose outgoing weights are all zero. Surviving nodes keep their names, origins
    (merged: ``a+b``) and order; ``meta["canonical"]`` is set. With ``fold=False`` only
    AvgPool2d→SumPool2d+Scale, identities and pruning are done. The report
    (``ctx.reports["canonicalize"]``, a :class:`CanonicalizeReport`) says what changed and why
    anything was left.
    """

    name = "canonicalize"
    prune: bool = True
    fold: bool = True

    def run(self, graph: Graph, ctx: PassContext) -> Graph:
        _require_float(graph)
        w, log = _Work(graph), _Log()
        changed = 1
        while changed:
            log.notes = []  # refusals are found again each round: the last round's are current
            changed = _drop_identities(w, log) + _fold_pools(w, log, self.fold)
            if self.fold:
                changed += _fold_scales(w, log) + _fold_gains(w, log) + _fold_chains(w, log)
            if self.prune:
                from snnc.passes.prune import _prune, _remove_dead

                changed += _remove_dead(w, log) + _prune(w, log)
        w.meta["canonical"] = True
        ctx.reports[self.name] = log.report()
        return w.graph()


def _require_float(g: Graph) -> None:
    if g.meta.get("quantized"):
        raise PassError(f"graph '{g.name}' is quantised; run canonicalize before quantize")
    for n, node in g.nodes.items():
        if getattr(node, "partition", ()):
            raise PassError(f"{g.describe(n)} is partitioned; run canonicalize before partition")
        for k, a in g.params[n].items():
            if k not in node.INT_PARAMS and a.dtype != np.float32:
                raise PassError(
                    f"{g.describe(n)}: parameter '{k}' is {a.dtype}; canonicalize "
                    "needs a float graph (float32), run it before quantize"
                )
    try:
        verify(g)
    except IRError as e:
        raise PassError(f"canonicalize needs a valid graph: {e}") from None


@dataclass
class _Log:
    counts: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    pruned: dict[str, list[int]] = field(default_factory=dict)  # name -> [before, silent, mute]

    def report(self) -> CanonicalizeReport:
        recs = tuple(PruneRecord(p, *v) for p, v in self.pruned.items())
        return CanonicalizeReport(
            **self.counts,
            dead_nodes=tuple(self.dead),
            pruned=recs,
            notes=tuple(dict.fromkeys(self.notes)),
        )


class _Work:
    """A mutable copy of a graph that the rewrites edit; ``graph()`` freezes it again."""

    def __init__(self, g: Graph) -> None:
        self.nodes, self.name, self.meta = dict(g.nodes), g.name, dict(g.meta)
        self.inputs = {n: list(s) for n, s in g.inputs.items()}
        self.params = {n: dict(p) for n, p in g.params.items()}
        self._shapes: dict[str, tuple[int, ...]] | None = None

    def graph(self) -> Graph:
        return Graph(self.nodes, self.inputs, self.params, name=self.name, meta=self.meta)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        if self._shapes is None:
            self._shapes = self.graph().shapes()
        return self._shapes

    def users(self, n: str) -> list[str]:
        return [d for d, srcs in self.inputs.items() if n in srcs]

    def desc(self, n: str) -> str:
        return f"'{n}' ({self.nodes[n].kind})"

    def update(self, n: str, node: N.Node | None = None, **arrays: np.ndarray) -> None:
        self.nodes[n] = node or self.nodes[n]
        self.params[n].update({k: _f32(a) for k, a in arrays.items()})
        self._shapes = None

    def remove(self, n: str) -> None:
        """Drop ``n``; its users read its inputs in its place, in their input order."""
        srcs = self.inputs.pop(n)
        del self.nodes[n], self.params[n]
        for d, ins in self.inputs.items():
            self.inputs[d] = [x for s in ins for x in (srcs if s == n else [s])]
        self._shapes = None

    def insert_after(self, n: str, new: str, node: N.Node, **arrays: np.ndarray) -> None:
        """Add ``new`` reading ``n`` right after it in graph order; n's users read ``new``."""
        for d, ins in self.inputs.items():
            self.inputs[d] = [new if s == n else s for s in ins]
        items = list(self.nodes.items())
        i = list(self.nodes).index(n) + 1
        self.nodes = dict([*items[:i], (new, node), *items[i:]])
        self.inputs[new], self.params[new] = [n], {k: _f32(a) for k, a in arrays.items()}
        self._shapes = None


def _f32(a) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.float32) if a.dtype.kind == "f" else a


def _origin(*nodes: N.Node) -> str:
    return "+".join(dict.fromkeys(o.origin for o in nodes if o.origin))


# ------------------------------------------------------------------------- scaling through nodes


def _fanout(w: _Work, src: str, through: tuple[type, ...]) -> tuple[list[str], list[str]] | str:
    """Where ``src``'s output goes, passing through nodes of the types ``through``.

    Returns ``(carriers, ends)``: ``src`` and the pass-through nodes reached, in the order
    reached, then the first other nodes; or why this fan-out is not closed (a node in it also
    reads another node, or it leads back to ``src``).
    """
    carriers, ends, i = [src], [], 0
    while i < len(carriers):
        for d in w.users(carriers[i]):
            if d == src:
                return "its output comes back to it"
            if d not in carriers and d not in ends:
                (carriers if isinstance(w.nodes[d], through) else ends).append(d)
        i += 1
    for d in carriers[1:] + ends:
        other = [s for s in w.inputs[d] if s not in carriers]
        if other:
            return f"{w.desc(d)} also reads '{other[0]}'"
    return carriers, ends


def _absorb(w: _Work, src: str, factor) -> dict[str, Params] | str:
    """New parameters of the consumers of ``src`` such that they take in a scaling of its
    output by ``factor`` (through Flatten and Delay, which commute with it); or why not."""
    fan = _fanout(w, src, (N.Flatten, N.Delay))
    if isinstance(fan, str):
        return fan
    carriers, ends = fan
    shapes = w.shapes()
    carry = {src: np.broadcast_to(np.asarray(factor, np.float64), shapes[src])}
    for d in carriers[1:]:
        carry[d] = next(carry[s] for s in w.inputs[d] if s in carry).reshape(shapes[d])
    new = {}
    for d in carriers[1:] + ends:
        fs = [carry[s] for s in w.inputs[d]]
        if any(not np.array_equal(f, fs[0]) for f in fs):
            return f"{w.desc(d)} reads it scaled by different factors"
        if d in ends and (new.setdefault(d, _take(w.nodes[d], w.params[d], fs[0]))) is None:
            return f"{w.desc(d)} cannot absorb the factor"
    return new


def _take(node: N.Node, p: Params, f: np.ndarray) -> Params | None:
    """Parameters of ``node`` that do what it does to its input scaled by ``f``."""
    if isinstance(node, _DENSE):
        cols = f.reshape(-1, f.shape[-1])
        return {"weight": p["weight"] * cols[0]} if (cols == cols[0]).all() else None
    if isinstance(node, _CONV):
        if (per := _per_channel(f)) is None:
            return None
        wt = p["weight"]
        idx = (np.arange(len(wt))[:, None] // (len(wt) // node.groups)) * wt.shape[1]
        idx = idx + np.arange(wt.shape[1])  # the input channel each filter slice reads
        return {"weight": wt * per[idx].reshape(idx.shape + (1,) * (wt.ndim - 2))}
    if isinstance(node, N.NEURON_TYPES):
        key = "gain_i" if isinstance(node, _CUBA) else "gain"
        return {key: p[key] * f}
    if isinstance(node, N.Threshold) and (f > 0).all():
        return {"threshold": p["threshold"] / f}  # f*x > t  <=>  x > t/f
    return None


def _per_channel(f: np.ndarray) -> np.ndarray | None:
    """The values of a channel-first array that is constant over each channel, or None."""
    r = f.reshape(len(f), -1)
    return r[:, 0] if (r == r[:, :1]).all() else None


def _rows(node: N.Node, p: Params, g: np.ndarray) -> Params | None:
    """Parameters of layer ``node`` with output element ``j`` scaled by ``g[j]``, or None."""
    r = None
    if isinstance(node, _DENSE):
        rows = g.reshape(-1, g.shape[-1])
        r = rows[0] if (rows == rows[0]).all() else None
    elif isinstance(node, _CONV):
        r = _per_channel(g)
    if r is None:
        return None
    return {k: a * r.reshape((-1,) + (1,) * (a.ndim - 1)) for k, a in p.items()}


def _feeder(w: _Work, n: str, s: str) -> tuple[str, list[str]] | None:
    """The node behind input ``s`` of ``n`` past Delays used by this edge alone, with those
    Delays; None when that node also feeds something else."""
    nxt, path = n, []
    while isinstance(w.nodes[s], N.Delay) and len(w.inputs[s]) == 1 and w.users(s) == [nxt]:
        path.append(s)
        nxt, s = s, w.inputs[s][0]
    return (s, path) if w.users(s) == [nxt] else None


# ------------------------------------------------------------------------- the rewrites


def _drop_identities(w: _Work, log: _Log) -> int:
    done = 0
    for n in [n for n in w.nodes if isinstance(w.nodes[n], (N.Flatten, N.Scale, N.Delay))]:
        if n not in w.nodes:  # merged into the Flatten after it
            continue
        node, p, srcs = w.nodes[n], w.params[n], w.inputs[n]
        if isinstance(node, N.Flatten) and _merge_flattens(w, srcs[0], n):
            done += 1
        elif (
            (isinstance(node, N.Flatten) and w.shapes()[n] == w.shapes()[srcs[0]])
            or (isinstance(node, N.Scale) and (p["scale"] == 1).all())
            or (isinstance(node, N.Delay) and not p["steps"].any())
        ):
            w.remove(n)
            done += 1
    log.counts["identities_dropped"] += done
    return done


def _merge_flattens(w: _Work, first: str, second: str) -> bool:
    """Flatten into Flatten becomes one Flatten (named as the second) when one can do both."""
    if not isinstance(w.nodes[first], N.Flatten) or len(w.inputs[second]) != 1:
        return False
    if w.users(first) != [second] or len(w.inputs[first]) != 1:
        return False
    shapes = w.shapes()
    src, out = shapes[w.inputs[first][0]], shapes[second]
    for a, b in combinations_with_replacement(range(len(src)), 2):
        if src[:a] + (int(np.prod(src[a : b + 1])),) + src[b + 1 :] == out:
            origin = _origin(w.nodes[first], w.nodes[second])
            w.remove(first)
            w.update(second, N.Flatten(start_dim=a, end_dim=b, origin=origin))
            return True
    return False


def _fold_pools(w: _Work, log: _Log, fold: bool) -> int:
    pools = [n for n, node in w.nodes.items() if isinstance(node, N.AvgPool2d)]
    for n in pools:
        node = w.nodes[n]
        k = node.kernel[0] * node.kernel[1]
        w.update(n, N.SumPool2d(**node.attrs(), origin=node.origin))
        plan = _absorb(w, n, 1.0 / k) if fold else "folding is off"
        if isinstance(plan, str):
            name, i = f"{n}_scale", 1
            while name in w.nodes:
                name, i = f"{n}_scale{i}", i + 1
            scale = np.full(w.shapes()[n], 1.0 / k)
            w.insert_after(n, name, N.Scale(origin=node.origin), scale=scale)
            log.counts["pools_scaled"] += 1
            continue
        for d, p in plan.items():
            w.update(d, **p)
        log.counts["pools_folded"] += 1
    return len(pools)


def _fold_scales(w: _Work, log: _Log) -> int:
    done = 0
    for n in [n for n, node in w.nodes.items() if isinstance(node, N.Scale)]:
        node = w.nodes[n]
        plan = _absorb(w, n, w.params[n]["scale"])
        if not isinstance(plan, str):
            for d, p in plan.items():
                w.update(d, replace(w.nodes[d], origin=_origin(w.nodes[d], node)), **p)
            w.remove(n)
        elif not _scale_into_producer(w, n):
            log.notes.append(
                f"kept Scale '{n}': {plan}, and the node before it is not a layer feeding only it"
            )
            continue
        done += 1
    log.counts["scales_folded"] += done
    return done


def _scale_into_producer(w: _Work, n: str) -> bool:
    """Fold Scale ``n`` into the rows of the layer before it, when that feeds only ``n``."""
    srcs = w.inputs[n]
    if len(srcs) != 1 or w.users(srcs[0]) != [n]:
        return False
    src = srcs[0]
    g = np.broadcast_to(w.params[n]["scale"].astype(np.float64), w.shapes()[n])
    if (rows := _rows(w.nodes[src], w.params[src], g)) is None:
        return False
    w.update(src, replace(w.nodes[src], origin=_origin(w.nodes[src], w.nodes[n])), **rows)
    w.remove(n)
    return True


def _fold_gains(w: _Work, log: _Log) -> int:
    done = 0
    for n, node in [(n, v) for n, v in w.nodes.items() if isinstance(v, N.NEURON_TYPES)]:
        p = w.params[n]
        if isinstance(node, _CUBA) and (p["gain"] != 1).any():
            # i is linear in x and feeds only v: (gain_i, gain) -> (gain_i*gain, 1) is exact
            w.update(n, gain_i=p["gain_i"].astype(np.float64) * p["gain"], gain=p["gain"] ** 0)
            log.counts["gains_merged"] += 1
            done += 1
        key = "gain_i" if isinstance(node, _CUBA) else "gain"
        g = w.params[n][key].astype(np.float64)
        if (g == 1).all():
            continue
        plan = _gain_plan(w, n, g)
        varies = g.min() != g.max()  # a uniform gain the quantiser takes as it is
        spiking = isinstance(node, (N.LIF, N.IF, N.CubaLIF))
        if isinstance(plan, str) and varies and spiking and (g > 0).all():
            # v' = v / g: the same spikes with unit gain (v is never read out; for Cuba*, i
            # feeds v alone and its gain is the merged one)
            p = w.params[n]
            w.update(n, **{key: g**0}, **{k: p[k].astype(np.float64) / g
                                           for k in ("threshold", "bias", "reset_value")
                                           if k in p})  # fmt: skip
            log.counts["gains_rescaled"] += 1
            done += 1
            continue
        if isinstance(plan, str):
            log.notes.append(f"kept the {key} of '{n}': {plan}")
            continue
        for layer, rows in plan.items():
            w.update(layer, **rows)
        w.update(n, **{key: g**0})
        log.counts["gains_folded"] += 1
        done += 1
    return done


def _gain_plan(w: _Work, n: str, g: np.ndarray) -> dict[str, Params] | str:
    plan = {}
    for s in dict.fromkeys(w.inputs[n]):
        if (feed := _feeder(w, n, s)) is None:
            return f"its input {w.desc(s)} also feeds other nodes"
        layer = feed[0]
        if (rows := _rows(w.nodes[layer], w.params[layer], g)) is None:
            if isinstance(w.nodes[layer], (*_DENSE, *_CONV)):
                return f"it varies within the output channels of {w.desc(layer)}"
            return f"its input {w.desc(layer)} is not an Affine/Linear/Conv layer"
        plan[layer] = rows
    return plan


def _fold_chains(w: _Work, log: _Log) -> int:
    done = 0
    for n2 in [n for n, node in w.nodes.items() if isinstance(node, _DENSE)]:
        n1 = w.inputs[n2][0] if len(w.inputs.get(n2, ())) == 1 else None
        if n1 is None or not isinstance(w.nodes[n1], _DENSE) or w.users(n1) != [n2]:
            continue
        (first, p1), (second, p2) = ((w.nodes[m], w.params[m]) for m in (n1, n2))
        w1, w2 = p1["weight"].astype(np.float64), p2["weight"].astype(np.float64)
        if len(w2) * w1.shape[1] > w1.size + w2.size:
            log.notes.append(
                f"kept '{n1}' -> '{n2}' apart: one layer would have "
                f"{len(w2) * w1.shape[1]:,} weights, the two have "
                f"{w1.size + w2.size:,}"
            )
            continue
        params = {"weight": w2 @ w1}
        if "bias" in p1 or "bias" in p2:
            b1 = p1["bias"] if "bias" in p1 else np.zeros(len(w1))
            params["bias"] = w2 @ b1.astype(np.float64) + p2.get("bias", 0.0)
        w.remove(n1)
        w.params[n2] = {}
        node = (N.Affine if "bias" in params else N.Linear)(origin=_origin(first, second))
        w.update(n2, node, **params)
        done += 1
    log.counts["chains_folded"] += done
    return done
