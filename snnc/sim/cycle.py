"""Cycle-accurate model of the FPGA LIF accelerator (``snnc/rtl/ARCHITECTURE.md``).

:func:`simulate` runs an :class:`~snnc.backends.fpga.images.AcceleratorImage` on time-major
input and returns the output spikes (which must equal :func:`snnc.sim.integer.simulate` spike
for spike) and the cycles the RTL takes. It works in two parts:

- *values*, vectorised over the batch: per step and phase, the events a core receives are summed
  into its accumulators with its weight matrix (read back from the axon table and weight memory),
  and the neurons of each update command step with :class:`snnc.sim.integer._Neuron` (one per
  profile, on the core's ``S``-bit arithmetic). An accumulator lane outside its ``acc_width``
  bits at an update, or a membrane overflow of a non-saturating profile, is a
  :class:`SimulationError` (the hardware would wrap);
- *cycles*, per batch element (the counts depend on the input): an event-driven schedule of
  the same events with the timing below.

Cycle accounting (a step's cycles are numbered from its first cycle, 0):

- **Phases.** A step runs phases 0..L_max (L_max: the highest population level). A phase that
  starts in cycle ``s`` spends cycle ``s`` on the *phase start* (the controller broadcasts the
  phase; nothing else happens); its work begins in ``s+1``. Let ``e`` be the last cycle in which
  anything is busy (an update, an event in a core's pipeline, a FIFO entry, the router), or
  ``e = s`` if nothing is. Cycle ``q = e+1`` is the *barrier check* (1 cycle, everything idle)
  and the next phase starts in ``q+1``. A phase takes ``q - s + 1 = (e - s) + 2`` cycles (an
  empty phase: 2); the step's cycles are the sum over its phases; the end-of-step marker goes
  out in the last check cycle.
- **Updates** (§5). A core issues the update commands of the phase's level one after another:
  the first in cycle ``s+1``, each next one ``n_groups*P + 5`` cycles after the previous. For a
  command in cycle ``c``, neuron ``k`` of it (0-based) writes its spike into the core's output
  FIFO in cycle ``c+5+k``; the core is busy ``c .. c+n_groups*P+4`` and ready for events from
  ``c + n_groups*P + 5`` (from ``s+1`` if it has no update in the phase).
- **Events** (§4). A core takes an event in cycle ``t >= max(arrival, ready)``, in FIFO order
  (phase 0: first its next-step FIFO, whose events are all takeable from ``s+1``, then its input
  FIFO); the axon table answers in ``t+1``, weight word ``k`` is read in ``t+1+k``, accumulator
  word ``k`` in ``t+3+k`` and written in ``t+5+k``: the core is busy ``t .. t+row_len+4`` and
  takes its next event at ``t + row_len`` at the earliest. So back-to-back events cost
  ``row_len`` each, and a burst costs the sum of its ``row_len`` plus 5 cycles.
- **Router** (§6). Sources: the output FIFO of each core (a spike written in cycle ``w`` can
  be read from ``w+1``) and, in phase 0, the host's input stream (the step's non-zero input
  elements in element order, all readable from ``s+1``). Each source has a *lookup stage* and a
  *head*: in cycle ``r`` the router reads the source's next spike into the stage if the stage is
  empty at the start of ``r``; the stage passes its spike to the head in the first
  cycle ``h >= r+1`` in which the head is empty (or is emptied by that cycle's arbitration);
  from ``h+1`` on the head's events take part in arbitration. Its events are its
  routing-table lookups: immediate targets, then delayed ones, ``stride`` consecutive axons
  each, plus the host for the output population; a head with no event is dropped in ``h+1``.
  In every cycle each destination port (every core, and the host's output stream) accepts at
  most one event: the first source, counting round-robin from the
  one after the source it last served (the pointer persists across phases and steps of one
  run; sources are cores 0..C-1 then the host), whose head has an event for that port. An event
  granted in cycle ``a`` is in the destination FIFO in ``a+1`` (takeable then): 3 cycles from
  FIFO read to destination FIFO. Immediate events go to the input FIFO, delayed ones to the
  next-step FIFO (drained in the next step's phase 0), spikes for the host to its output
  stream. FIFOs never fill (no backpressure in this model).
- **Idle.** The busy cycles of a phase are: every update's ``c .. c+nP+4``; every event's
  ``t .. t+row_len+4``; a lookup stage from ``r+1`` to ``h``; a head from ``h+1`` to the cycle
  it empties; every granted event until ``a+1``; output-FIFO entries until read.

:func:`memory_port_bound` is §7: per core and step, the sum of ``row_len`` over the events the
core takes plus ``n_groups*P`` over its update commands; the bound is the maximum over cores.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from snnc.backends.fpga.images import HOST, AcceleratorImage, RoutingTable, synapse_matrix
from snnc.errors import SimulationError
from snnc.ir import nodes as N
from snnc.rtl.params import Kind, Profile, Reset, Timing
from snnc.sim.integer import _Neuron

#: a burst of events costs the sum of its ``row_len`` plus this (table read, weight register,
#: weighted-lane register, sum register, write-back)
EVENT_EXTRA = 5
#: an update of n neurons takes ``n + UPDATE_EXTRA`` cycles (read, 3 compute stages, write)
UPDATE_EXTRA = 5

_NODES = {Kind.LIF: N.LIF, Kind.IF: N.IF, Kind.CUBALIF: N.CubaLIF, Kind.LI: N.LI,
          Kind.CUBALI: N.CubaLI}  # fmt: skip
_RESET = {Reset.SUBTRACT: N.ResetMode.SUBTRACT, Reset.TO_VALUE: N.ResetMode.TO_VALUE,
          Reset.NONE: N.ResetMode.NONE}  # fmt: skip
_TIMING = {Timing.IMMEDIATE: N.ResetTiming.IMMEDIATE, Timing.NEXT_STEP: N.ResetTiming.NEXT_STEP,
           Timing.GATED: N.ResetTiming.GATED}  # fmt: skip


@dataclass
class CycleResult:
    output: np.ndarray  #: (T, B, *output shape) int64 spikes in graph order
    cycles: np.ndarray  #: (T, B) cycles of each step
    phase_cycles: np.ndarray  #: (T, B, L_max + 1) cycles of each phase
    events: np.ndarray  #: (T, B, cores) events each core took
    busy: np.ndarray  #: (T, B, cores) cycles each core was not idle
    port_cycles: np.ndarray  #: (T, B, cores) memory-port cycles (sum row_len + updated neurons)
    bound: np.ndarray  #: (T, B) memory-port bound: max over cores of port_cycles
    #: (T, B, cores) most events waiting at once in a core's input FIFO (the depth it needs)
    fifo_peak: np.ndarray

    @property
    def cycles_per_image(self) -> np.ndarray:
        """(B,) cycles of the whole run of each batch element."""
        return self.cycles.sum(axis=0)

    @property
    def ratio(self) -> float:
        """Measured cycles / memory-port bound over the whole run and batch."""
        return float(self.cycles.sum() / max(int(self.bound.sum()), 1))


# ------------------------------------------------------------------------------ input


def _host_input(image: AcceleratorImage, x, graph) -> np.ndarray:
    """(T, B, host elements) int64 payloads in hardware order."""
    if graph is not None:
        from snnc.sim.integer import _quantize_input
        from snnc.sim.reference import _inputs

        xs = {n: _quantize_input(graph, n, v.numpy()).numpy() for n, v in _inputs(graph, x).items()}
    else:
        if not isinstance(x, Mapping):
            if len(image.inputs) != 1:
                raise SimulationError(f"the image has inputs {[p.name for p in image.inputs]}: "
                                      "pass a mapping name -> array")  # fmt: skip
            x = {image.inputs[0].name: x}
        xs = {p.name: _quantize(image, p, x) for p in image.inputs}
    parts = []
    for p in image.inputs:
        a = xs[p.name]
        flat = a.reshape(a.shape[0], a.shape[1], -1)
        parts.append(flat if p.perm is None else flat[:, :, p.perm])
    if len({q.shape[:2] for q in parts}) > 1:
        raise SimulationError("all inputs must share T and B")
    return np.concatenate(parts, axis=2).astype(np.int64)


def _quantize(image: AcceleratorImage, port, x) -> np.ndarray:
    if port.name not in x:
        raise SimulationError(f"no input given for '{port.name}'")
    a = np.asarray(x[port.name])
    if a.ndim != len(port.shape) + 2 or tuple(a.shape[2:]) != port.shape:
        raise SimulationError(f"input for '{port.name}' has shape {a.shape}; expected (T, B, "
                              f"{', '.join(map(str, port.shape))})")  # fmt: skip
    if image.input_encoding == "graded":
        top = (1 << image.input_bits) - 1
        return np.clip(np.rint(a.astype(np.float64) * image.input_scale), 0, top).astype(np.int64)
    if not np.all((a == 0) | (a == 1)):
        raise SimulationError(f"input for '{port.name}' is not binary spikes")
    return a.astype(np.int64)


# ------------------------------------------------------------------------------ tables


def _expand(table: RoutingTable, n_src: int, delayed: bool):
    """(source, port, axon) rows of every event of the table (port HOST: the host)."""
    out = []
    for e in table.delayed if delayed else table.immediate:
        src = np.arange(e.first, e.first + e.count)
        for t in e.targets:
            for j in range(t.stride):
                axon = t.axon + (src - e.first) * t.stride + j
                out.append(np.stack([src, np.full(e.count, t.core), axon], axis=1))
    if not out:
        return np.zeros((0, 3), np.int64)
    rows = np.concatenate(out)
    if rows.size and rows[:, 0].max() >= n_src:
        raise SimulationError("a routing entry covers a source beyond the core")
    return rows


def _node_of(p: Profile, F: int, S: int) -> N.Node:
    kw = dict(decay_bits=0 if p.decay_shift else F, decay_shift=p.decay_shift, state_bits=S,
              current_bits=S, saturate=p.saturate)  # fmt: skip
    if p.kind in (Kind.LIF, Kind.IF, Kind.CUBALIF):
        kw.update(reset=_RESET[p.reset], timing=_TIMING[p.timing], strict=p.strict)
    return _NODES[p.kind](**kw)


class _Group:
    """The neurons of one profile among one core's updates of one level."""

    def __init__(self, core: int, level: int, k: int, prof: Profile, idx: np.ndarray, img, F,
                 S, batch: int) -> None:  # fmt: skip
        inits = [img.neurons[i] for i in idx.tolist()]
        n = idx.size

        def arr(name):
            return torch.tensor([getattr(q, name) for q in inits], dtype=torch.int64)

        per_neuron = img.params.neuron_decays and not prof.decay_shift
        p = {"decay": arr("decay") if per_neuron else torch.full((n,), prof.decay,
                                                                 dtype=torch.int64),
             "decay_i": arr("decay_i") if per_neuron else torch.full((n,), prof.decay_i,
                                                                     dtype=torch.int64),
             "gain": torch.ones(n, dtype=torch.int64), "gain_i": torch.ones(n, dtype=torch.int64),
             "bias": arr("bias"), "threshold": arr("threshold"),
             "reset_value": arr("reset_value")}  # fmt: skip
        self.idx = idx
        self.cuba = prof.kind in (Kind.CUBALIF, Kind.CUBALI)
        self.ibias = arr("ibias").numpy()
        self.neuron = _Neuron(f"core {core} level {level} profile {k}", _node_of(prof, F, S), p,
                              batch, (n,))  # fmt: skip


class _Tables:
    """Per core: weights, row lengths, routing matrices, update groups; shared by all runs."""

    def __init__(self, image: AcceleratorImage) -> None:
        self.image = image
        self.C = len(image.cores)
        self.P = image.params.lanes
        self.S = image.params.state_bits
        self.A = image.params.acc_width  # accumulator lanes
        self.W = [synapse_matrix(image, c) for c in range(self.C)]
        self.row_len = [np.array([a.row_len for a in ci.axons], np.int64) for ci in image.cores]
        self.n_axons = [len(ci.axons) for ci in image.cores]
        self.axon_off = np.concatenate([[0], np.cumsum(self.n_axons)]).astype(np.int64)
        self.rl_all = np.concatenate(self.row_len) if self.C else np.zeros(0, np.int64)
        n_total = int(self.axon_off[-1])
        N_ = image.params.neurons
        self.imm = [self._matrix(t, N_, False, n_total) for t in image.routes]
        self.dly = [self._matrix(t, N_, True, n_total) for t in image.routes]
        self.out = [self._host_matrix(t, N_) for t in image.routes]
        nh = image.host_elements
        self.host_imm = self._matrix(image.host_routes, nh, False, n_total)
        self.host_dly = self._matrix(image.host_routes, nh, True, n_total)
        self.exp = [self._expansions(c, image.routes[c], N_) for c in range(self.C)]
        self.host_exp = self._expansions(self.C, image.host_routes, nh)

    def _matrix(self, table, n_src: int, delayed: bool, n_total: int) -> sp.csr_matrix:
        rows = _expand(table, n_src, delayed)
        rows = rows[rows[:, 1] != HOST]
        cols = self.axon_off[rows[:, 1]] + rows[:, 2]
        if rows.size and np.any(rows[:, 2] >= np.asarray(self.n_axons)[rows[:, 1]]):
            raise SimulationError("a routing entry reaches beyond a core's axon table")
        return sp.csr_matrix((np.ones(len(rows), np.int64), (rows[:, 0], cols)),
                             shape=(n_src, n_total))  # fmt: skip

    def _host_matrix(self, table, n_src: int) -> sp.csr_matrix:
        rows = _expand(table, n_src, False)
        rows = rows[rows[:, 1] == HOST]
        return sp.csr_matrix((np.ones(len(rows), np.int64), (rows[:, 0], rows[:, 2])),
                             shape=(n_src, self.image.output_size))  # fmt: skip

    def _expansions(self, src: int, table, n_src: int) -> dict[int, tuple]:
        """Per source neuron with events: ((port, ((row_len, delayed), ...)), ...)."""
        per: dict[int, dict[int, list]] = {}
        for delayed in (False, True):
            for s, core, axon in _expand(table, n_src, delayed).tolist():
                port = self.C if core == HOST else core
                rl = 0 if core == HOST else int(self.row_len[core][axon])
                per.setdefault(s, {}).setdefault(port, []).append((rl, delayed))
        return {s: tuple((p, tuple(ev)) for p, ev in d.items()) for s, d in per.items()}


# ------------------------------------------------------------------------------ values


@dataclass
class _StepRecord:
    host: np.ndarray  #: (B, host elements) bool: non-zero input elements
    spikes: dict[tuple[int, int], np.ndarray]  #: (level, core) -> (B, N) bool


class _Values:
    """Neuron state, accumulators and next-step events of a batch; one step at a time."""

    def __init__(self, tb: _Tables, batch: int) -> None:
        self.tb, self.B = tb, batch
        img = tb.image
        F = img.params.decay_bits
        self.acc = [np.zeros((batch, img.params.neurons), np.int64) for _ in range(tb.C)]
        self.pending = np.zeros((batch, int(tb.axon_off[-1])), np.int64)
        self.groups: dict[tuple[int, int], list[_Group]] = {}
        for c, ci in enumerate(img.cores):
            for level, cmds in ci.updates.items():
                idx = np.concatenate([np.arange(g * tb.P, (g + n) * tb.P) for g, n in cmds])
                prof = np.array([ci.neurons[i].profile for i in idx.tolist()], np.int64)
                self.groups[(level, c)] = [
                    _Group(c, level, k, ci.profiles[k], idx[prof == k], ci, F, tb.S, batch)
                    for k in np.unique(prof).tolist()
                ]
        self.port = np.zeros((batch, tb.C), np.int64)

    def _deliver(self, events: np.ndarray) -> None:
        tb = self.tb
        for c in range(tb.C):
            seg = events[:, tb.axon_off[c] : tb.axon_off[c + 1]]
            if seg.any():
                self.acc[c] += (tb.W[c].T @ seg.T).T
                self.port[:, c] += (seg != 0) @ tb.row_len[c]

    def step(self, t: int, x: np.ndarray) -> tuple[np.ndarray, _StepRecord]:
        tb, img = self.tb, self.tb.image
        self.port[:] = 0
        events = self.pending + (tb.host_imm.T @ x.T).T
        self.pending = np.asarray((tb.host_dly.T @ x.T).T)
        self._deliver(events)
        rec = _StepRecord(x != 0, {})
        out = np.zeros((self.B, img.output_size), np.int64)
        for level in range(1, img.max_level + 1):
            imm = np.zeros_like(self.pending)
            for c in range(tb.C):
                if (level, c) not in self.groups:
                    continue
                s = self._update(t, level, c)
                rec.spikes[(level, c)] = s.astype(bool)
                imm += np.asarray((tb.imm[c].T @ s.T).T)
                self.pending += np.asarray((tb.dly[c].T @ s.T).T)
                out += np.asarray((tb.out[c].T @ s.T).T)
            self._deliver(imm)
        return out, rec

    def _update(self, t: int, level: int, c: int) -> np.ndarray:
        tb = self.tb
        acc = self.acc[c]
        s = np.zeros_like(acc)
        lo, hi = -(1 << (tb.A - 1)), (1 << (tb.A - 1)) - 1
        for g in self.groups[(level, c)]:
            x = acc[:, g.idx]
            if x.size and (x.min() < lo or x.max() > hi):
                big = int(np.abs(x).max())
                raise SimulationError(f"step {t}: an accumulator of core {c} reached {big}, "
                                      f"beyond the {tb.A}-bit lanes")  # fmt: skip
            if g.cuba:
                x = x + g.ibias
            s[:, g.idx] = g.neuron.step(torch.from_numpy(x), t).numpy()
            acc[:, g.idx] = 0
            self.port[:, c] += g.idx.size
        return s


# ------------------------------------------------------------------------------ cycles


def _route(sources: list[list[tuple[int, tuple]]], n_ports: int, rr: list[int]):
    """The router over one phase. ``sources[i]``: (readable cycle, expansion) in FIFO order.

    Returns per port the granted events ``(arrival cycle, row_len, delayed)`` and the last
    cycle the router is busy (-1: never)."""
    n_src = len(sources)
    arrivals: list[list[tuple[int, int, bool]]] = [[] for _ in range(n_ports)]
    nxt = [0] * n_src
    remaining = sum(len(s) for s in sources)
    heads: dict[int, tuple[int, dict[int, deque]]] = {}
    stages: dict[int, tuple[int, tuple]] = {}  # the lookup stage: (read cycle, expansion)
    last, c = -1, 0
    while heads or stages or remaining:
        full: set[int] = set()  # stages full at the start of the cycle
        if not heads and not stages:
            c = max(c, min(s[nxt[i]][0] for i, s in enumerate(sources) if nxt[i] < len(s)))
        else:
            wants: dict[int, list[int]] = {}
            for i, (load, q) in heads.items():
                if load < c:
                    for port in q:
                        wants.setdefault(port, []).append(i)
            for port, cands in wants.items():
                i = (
                    cands[0]
                    if len(cands) == 1
                    else min(cands, key=lambda j: (j - rr[port]) % n_src)
                )
                rr[port] = (i + 1) % n_src
                q = heads[i][1]
                rl, delayed = q[port].popleft()
                if not q[port]:
                    del q[port]
                arrivals[port].append((c + 1, rl, delayed))
                last = c + 1
            for i in [i for i, (load, q) in heads.items() if load < c and not q]:
                del heads[i]
                last = max(last, c)
            # the lookup stage passes its spike on into an empty (or emptied) head; a stage
            # that does so is still full for this cycle's read (ready is its register)
            full = set(stages)
            for i in [i for i, (r, _) in stages.items() if r < c and i not in heads]:
                heads[i] = (c, {p: deque(ev) for p, ev in stages.pop(i)[1]})
                last = max(last, c + 1)
        for i, s in enumerate(sources):
            if i not in full and i not in stages and nxt[i] < len(s) and s[nxt[i]][0] <= c:
                stages[i] = (c, s[nxt[i]][1])
                nxt[i] += 1
                remaining -= 1
                last = max(last, c + 1)
        c += 1
    return arrivals, last


def _busy_union(intervals: list[tuple[int, int]]) -> int:
    total, end = 0, None
    for a, b in sorted(intervals):
        if end is None or a > end:
            total += b - a + 1
            end = b
        elif b > end:
            total += b - end
            end = b
    return total


@dataclass
class _Phase:
    """What one phase of one step did, accumulated over the step."""

    busy: list[list[tuple[int, int]]]  #: per core: busy intervals (inclusive)
    events: np.ndarray  #: per core: events taken
    port: np.ndarray  #: per core: memory-port cycles
    fifo: np.ndarray  #: per core: peak input-FIFO occupancy


def _consume(queue: list[tuple[int, int]], ready: int, pre: int, acc: _Phase, c: int) -> int:
    """A core takes ``queue`` ((takeable cycle, row_len), FIFO order) from ``ready`` on; the
    first ``pre`` come from the next-step FIFO. Returns the last busy cycle (-1: none)."""
    t, end, takes = ready, -1, []
    for a, rl in queue:
        t = max(t, a)
        acc.busy[c].append((t, t + rl + EVENT_EXTRA - 1))
        takes.append(t)
        end = t + rl + EVENT_EXTRA - 1
        t += rl
        acc.port[c] += rl
    acc.events[c] += len(queue)
    if len(queue) > pre:
        arr = np.array([a for a, _ in queue[pre:]])
        taken = np.searchsorted(np.array(takes[pre:]), arr, side="left")
        acc.fifo[c] = max(acc.fifo[c], int((np.arange(1, arr.size + 1) - taken).max()))
    return end


class _Timing:
    """The cycle schedule of one run (one batch element)."""

    def __init__(self, tb: _Tables) -> None:
        self.tb = tb
        self.rr = [0] * (tb.C + 1)
        self.next_fifo: list[list[int]] = [[] for _ in range(tb.C)]

    def _updates(self, rec, b: int, level: int, c: int, s: int, sources, acc: _Phase):
        """Issue core ``c``'s commands of ``level`` from ``s+1``; returns (ready, last busy)."""
        tb = self.tb
        cmds = tb.image.cores[c].updates.get(level, ()) if level else ()
        t_cmd, end = s + 1, s
        for g, n in cmds:
            lo, length = g * tb.P, n * tb.P
            fired = np.flatnonzero(rec.spikes[(level, c)][b, lo : lo + length]).tolist()
            exp = tb.exp[c]
            sources[c].extend((t_cmd + UPDATE_EXTRA + 1 + k, exp.get(lo + k, ())) for k in fired)
            acc.busy[c].append((t_cmd, t_cmd + length + UPDATE_EXTRA - 1))
            acc.port[c] += length
            end = t_cmd + length + UPDATE_EXTRA - 1
            t_cmd += length + UPDATE_EXTRA
        return t_cmd, end

    def step(self, rec: _StepRecord, b: int):
        tb = self.tb
        C = tb.C
        s, phases = 0, []
        acc = _Phase([[] for _ in range(C)], *(np.zeros(C, np.int64) for _ in range(3)))
        new_fifo: list[list[int]] = [[] for _ in range(C)]
        for level in range(tb.image.max_level + 1):
            sources: list[list[tuple[int, tuple]]] = [[] for _ in range(C + 1)]
            first: list[list[int]] = [[] for _ in range(C)]
            if level == 0:
                # the host sends the non-zero elements that have routes, in element order
                host = np.flatnonzero(rec.host[b]).tolist()
                sources[C] = [(s + 1, tb.host_exp[e]) for e in host if e in tb.host_exp]
                first = self.next_fifo
            ready, end = [s + 1] * C, s
            for c in range(C):
                ready[c], e = self._updates(rec, b, level, c, s, sources, acc)
                end = max(end, e)
            arrivals, last = _route(sources, C + 1, self.rr)
            end = max(end, last)
            for c in range(C):
                queue = [(s + 1, rl) for rl in first[c]]
                queue += [(a, rl) for a, rl, delayed in arrivals[c] if not delayed]
                new_fifo[c] += [rl for _, rl, delayed in arrivals[c] if delayed]
                end = max(end, _consume(queue, ready[c], len(first[c]), acc, c))
            q = end + 1
            phases.append(q - s + 1)
            s = q + 1
        self.next_fifo = new_fifo
        busy = np.array([_busy_union(x) for x in acc.busy], np.int64)
        return phases, acc.events, busy, acc.port, acc.fifo


# ------------------------------------------------------------------------------ entry points


def _run(image: AcceleratorImage, x, graph, timing: bool) -> CycleResult:
    xs = _host_input(image, x, graph)
    T, B = xs.shape[:2]
    tb = _Tables(image)
    vals = _Values(tb, B)
    runs = [_Timing(tb) for _ in range(B)] if timing else []
    n_ph = image.max_level + 1
    C = tb.C
    outs = []
    cycles = np.zeros((T, B), np.int64)
    phase = np.zeros((T, B, n_ph), np.int64)
    events, busy = np.zeros((T, B, C), np.int64), np.zeros((T, B, C), np.int64)
    port, fifo = np.zeros((T, B, C), np.int64), np.zeros((T, B, C), np.int64)
    for t in range(T):
        out, rec = vals.step(t, xs[t])
        port[t] = vals.port
        for b, run in enumerate(runs):
            ph, ev, bz, pc, ff = run.step(rec, b)
            phase[t, b], events[t, b], busy[t, b], fifo[t, b] = ph, ev, bz, ff
            cycles[t, b] = sum(ph)
            if not np.array_equal(pc, vals.port[b]):  # pragma: no cover - internal consistency
                raise SimulationError(f"step {t}: scheduled port cycles {pc} != {vals.port[b]}")
        if image.output_perm is not None:
            g = np.empty_like(out)
            g[:, image.output_perm] = out
            out = g
        outs.append(out.reshape(B, *image.output_shape))
    bound = port.max(axis=2) if C else np.zeros((T, B), np.int64)
    return CycleResult(np.stack(outs), cycles, phase, events, busy, port, bound, fifo)


def simulate(image: AcceleratorImage, x, *, graph=None) -> CycleResult:
    """Run ``image`` on time-major input ``(T, B, *input shape)`` (or a mapping name -> array).

    Input is given as to :func:`snnc.sim.integer.simulate`; with ``graph`` (the compiled graph)
    its input checks and quantisation are used, otherwise the image's. Every batch element is
    an independent run from reset. See the module docstring for the cycle accounting.
    """
    return _run(image, x, graph, timing=True)


def memory_port_bound(image: AcceleratorImage, x, *, graph=None) -> np.ndarray:
    """(T, B) memory-port bound of every step (ARCHITECTURE.md §7)."""
    return _run(image, x, graph, timing=False).bound
