"""Pruning for :mod:`snnc.passes.canonicalize`: neurons that can never fire, or whose spikes
reach nothing, are cut out of their populations and of every layer around them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnc.ir import nodes as N
from snnc.passes.canonicalize import (
    _DENSE,
    _PAD,
    Params,
    _fanout,
    _feeder,
    _Log,
    _Work,
)


def _remove_dead(w: _Work, log: _Log) -> int:
    live, todo = set(), [n for n, node in w.nodes.items() if isinstance(node, N.Output)]
    while todo:
        if (n := todo.pop()) not in live:
            live.add(n)
            todo.extend(w.inputs[n])
    dead = [n for n, node in w.nodes.items() if n not in live and not isinstance(node, N.Input)]
    for n in dead:
        w.remove(n)
    log.dead += dead
    return len(dead)


@dataclass
class _Pop:
    feeds: list[tuple[str, bool]]  # per input edge: the dense layer, and whether via a Delay
    delays: set[str]  # the Delays on the population's input and output edges
    cols: list[str]  # the dense layers reading the population


def _population(w: _Work, n: str) -> _Pop | None:
    """A 1-D spiking population between dense layers that nothing else touches, or None."""
    if not isinstance(w.nodes[n], (N.LIF, N.IF, N.CubaLIF)) or w.params[n]["bias"].ndim != 1:
        return None
    feeds, delays = [], set()
    for s in w.inputs[n]:
        feed = _feeder(w, n, s)
        if feed is None or not isinstance(w.nodes[feed[0]], _DENSE):
            return None
        feeds.append((feed[0], bool(feed[1])))
        delays.update(feed[1])
    fan = _fanout(w, n, (N.Delay,))
    if isinstance(fan, str) or not all(isinstance(w.nodes[c], _DENSE) for c in fan[1]):
        return None  # an Output (or anything else) reads it: its shape must stay
    return _Pop(feeds, delays | set(fan[0][1:]), fan[1]) if fan[1] else None


def _prune(w: _Work, log: _Log) -> int:
    done = 0
    for n in list(w.nodes):
        if (pop := _population(w, n)) is None:
            continue
        size = len(w.params[n]["bias"])
        bounds = _input_bounds(w, pop)
        silent = _never_fires(w.nodes[n], w.params[n], *bounds) if bounds else np.zeros(size, bool)
        mute = np.all([(w.params[c]["weight"] == 0).all(0) for c in pop.cols], axis=0) & ~silent
        if (silent | mute).all():
            silent[0] = mute[0] = False
            log.notes.append(
                f"kept one neuron of '{n}' (none of its neurons can reach an "
                "output) so that the population is not empty"
            )
        if not (silent | mute).any():
            continue
        _cut(w, n, pop, ~(silent | mute))
        rec = log.pruned.setdefault(n, [size, 0, 0])
        rec[1:] = [rec[1] + int(silent.sum()), rec[2] + int(mute.sum())]
        done += 1
    return done


def _cut(w: _Work, n: str, pop: _Pop, keep: np.ndarray) -> None:
    """Remove the neurons not in ``keep``: rows before, columns after (both if recurrent)."""
    for layer in dict.fromkeys(layer for layer, _ in pop.feeds):
        w.update(layer, **{k: a[keep] for k, a in w.params[layer].items()})
    for d in sorted(pop.delays):
        w.update(d, steps=w.params[d]["steps"][keep])
    w.update(n, **{k: a[keep] for k, a in w.params[n].items()})
    for c in pop.cols:
        w.update(c, weight=w.params[c]["weight"][:, keep])


def _src_range(w: _Work, s: str, seen: frozenset[str] = frozenset()) -> tuple[float, float] | None:
    """Bounds of what node ``s`` outputs (spikes: [0, 1]; inputs: meta ``input_range``)."""
    node = w.nodes[s]
    if isinstance(node, N.Input):
        lo, hi = w.meta.get("input_range", (0.0, 1.0))  # type: ignore[misc]
        return float(lo), float(hi)
    if node.spiking:
        return 0.0, 1.0
    if not isinstance(node, (N.Delay, N.Flatten, N.SumPool2d)) or s in seen:
        return None
    rs = [_src_range(w, t, seen | {s}) for t in w.inputs[s]]
    if None in rs:
        return None
    lo, hi = sum(r[0] for r in rs), sum(r[1] for r in rs)  # type: ignore[index]
    k = node.kernel[0] * node.kernel[1] if isinstance(node, N.SumPool2d) else 1
    if isinstance(node, N.Flatten):
        return lo, hi
    return k * min(lo, 0.0), k * max(hi, 0.0)  # Delay: zeros at first; SumPool: zero padding


def _input_bounds(w: _Work, pop: _Pop) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-neuron bounds of the population's input in one step, widened for float rounding."""
    lo = hi = 0.0
    for layer, delayed in pop.feeds:
        rs = [_src_range(w, s) for s in w.inputs[layer]]
        if None in rs:
            return None
        a, b = sum(r[0] for r in rs), sum(r[1] for r in rs)  # type: ignore[index]
        p = w.params[layer]
        wt, bias = p["weight"].astype(np.float64), p.get("bias", np.zeros(1)).astype(np.float64)
        low, high = np.minimum(wt * a, wt * b), np.maximum(wt * a, wt * b)
        neg = np.minimum(low, 0).sum(1) + np.minimum(bias, 0)
        pos = np.maximum(high, 0).sum(1) + np.maximum(bias, 0)
        l, h = low.sum(1) + bias + _PAD * neg, high.sum(1) + bias + _PAD * pos
        if delayed:  # a Delay outputs zeros before its first input arrives
            l, h = np.minimum(l, 0), np.maximum(h, 0)
        lo, hi = lo + l, hi + h
    return lo, hi


def _never_fires(node: N.Node, p: Params, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """True for neurons whose membrane provably stays at or below threshold (below: non-strict).

    Interval arithmetic from a zero state: per step ``v <= decay*v + max(gain*x) + bias``,
    hence ``v <= max(0, m)/(1 - decay)`` for ``0 <= decay < 1``, and ``v <= 0`` when ``m <= 0``.
    CubaLIF bounds its current the same way first.
    """
    q = {k: a.astype(np.float64) for k, a in p.items()}
    if isinstance(node, N.CubaLIF):
        glo, ghi = _scaled(q["gain_i"], lo, hi)
        lo, hi = -_settle(q["decay_i"], -glo), _settle(q["decay_i"], ghi)
    inc_lo, inc_hi = _scaled(q["gain"], lo, hi)
    decay = np.ones_like(q["bias"]) if isinstance(node, N.IF) else q["decay"]
    top = _settle(decay, inc_hi + q["bias"] + _PAD * (np.maximum(inc_hi, 0) + abs(q["bias"])))
    size = _settle(decay, np.maximum(abs(inc_lo), abs(inc_hi)) + abs(q["bias"]))
    with np.errstate(invalid="ignore"):  # rounding in the leaky sum, relative to its size
        top = np.where(top > 0, top + _PAD * size / np.maximum(1 - decay, _PAD), top)
    return top <= q["threshold"] if node.strict else top < q["threshold"]


def _scaled(g: np.ndarray, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``g*x`` for ``lo <= x <= hi`` (the bounds may be infinite; 0*inf = 0)."""
    with np.errstate(invalid="ignore"):
        a, b = np.where(g == 0, 0.0, g * lo), np.where(g == 0, 0.0, g * hi)
    return np.minimum(a, b), np.maximum(a, b)


def _settle(decay: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Upper bound of ``u[t] = decay*u[t-1] + m[t]`` from ``u = 0`` when every ``m[t] <= m``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        leaky = np.maximum(m, 0) / (1 - decay)
    stays = (decay >= 0) & (m <= 0)
    return np.where(stays, 0.0, np.where((decay >= 0) & (decay < 1), leaky, np.inf))
