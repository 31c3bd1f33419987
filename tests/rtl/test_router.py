# amaranth: UnusedElaboratable=no
"""The crossbar router (snnc/rtl/router.py) against ARCHITECTURE.md §6 and sim/cycle.py.

``reference`` is the timing rule of the router's docstring in Python, cycle by cycle, with
back-pressure. The RTL runs in Amaranth's simulator on random tables (2-4 cores, multicast,
strides, delayed and host destinations, an optional host source), random spike streams with
gaps and random stalls on every output; every take, event and ``busy`` cycle must match the
reference, and independently: each expected event arrives exactly once, in order per
(source, output), and ``busy`` is high exactly while a spike or event is inside. Without
back-pressure the reference must equal the cycle model's router (``snnc.sim.cycle._route``).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snnc.rtl.router import HOST, Destination, Router, RouteTable

BLOCK = 16  #: axons (and output elements) of a destination reserved for each source


@dataclass
class Setup:
    cores: int
    neurons: int
    tables: list[RouteTable]  #: per source: cores, then the host's input if present
    host_in: bool
    outputs: int
    payload_bits: int
    deep: bool = False

    @property
    def sources(self) -> int:
        return len(self.tables)

    def router(self) -> Router:
        c = self.cores
        return Router(self.tables[:c], neurons=self.neurons, axons=BLOCK * self.sources,
                      payload_bits=self.payload_bits,
                      host_table=self.tables[c] if self.host_in else None,
                      host_elements=self.neurons, outputs=self.outputs, deep=self.deep)  # fmt: skip

    def streams(self) -> list[tuple[int, int]]:
        """Output streams as (port, kind): kind 0 immediate, 1 delayed (port C: the host)."""
        out = [(p, k) for p in range(self.cores) for k in (0, 1)]
        return out + ([(self.cores, 0)] if self.outputs else [])

    def events(self, s: int, n: int) -> list[tuple[int, int, int]]:
        """(port, kind, axon) of a spike of neuron ``n`` of source ``s``, in table order."""
        return [(self.cores if core == HOST else core, int(d), a)
                for core, a, d in self.tables[s].lookup(n)]  # fmt: skip


# ----------------------------------------------------------------------------- the contract


def reference(setup: Setup, spikes, ready, cycles: int):
    """The router's timing rule. ``spikes[s]``: (readable cycle, neuron, payload) in order;
    ``ready[(port, kind)](t)``. Returns take cycles per source, per stream the events
    (valid from, taken, axon, payload) and busy per cycle."""
    n_src = setup.sources
    rr = [0] * (setup.cores + 1)
    nxt = [0] * n_src
    heads: list[dict | None] = [None] * n_src  # {"r": cycle it entered, "q": port -> events}
    stage: list[tuple | None] = [None] * n_src  # deep: (read cycle, neuron, payload)
    regs: dict[tuple[int, int], tuple | None] = {o: None for o in setup.streams()}
    takes: list[list[int]] = [[] for _ in range(n_src)]
    out: dict[tuple[int, int], list] = {o: [] for o in regs}
    busy = []
    for t in range(cycles):
        busy.append(any(x is not None for x in [*heads, *stage, *regs.values()]))
        free = {o: r is None or ready[o](t) for o, r in regs.items()}
        new = {}
        for o, r in regs.items():
            if r is not None and ready[o](t):
                out[o].append((r[0], t, r[1], r[2]))
                new[o] = None
        new.update(_arbitrate(heads, rr, free, t))
        for s, h in enumerate(heads):
            if h and h["r"] < t and not any(h["q"].values()):
                heads[s] = None
            stage_full = stage[s] is not None  # deep: ready is the stage's register
            if heads[s] is None and stage[s] is not None and stage[s][0] < t:
                heads[s] = _head(setup, s, t, *stage[s][1:])
                stage[s] = None
            waiting = stage_full if setup.deep else heads[s]
            if not waiting and nxt[s] < len(spikes[s]) and spikes[s][nxt[s]][0] <= t:
                _, n, pay = spikes[s][nxt[s]]
                if setup.deep:
                    stage[s] = (t, n, pay)
                else:
                    heads[s] = _head(setup, s, t, n, pay)
                takes[s].append(t)
                nxt[s] += 1
        regs.update(new)
    return takes, out, busy


def _head(setup: Setup, s: int, t: int, n: int, pay: int) -> dict:
    """A head entered in ``t``: per port its events (kind, axon, payload) in table order."""
    q: dict[int, deque] = {}
    for p, kind, a in setup.events(s, n):
        q.setdefault(p, deque()).append((kind, a, pay if p < setup.cores else 1))  # host: none
    return {"r": t, "q": q}


def _arbitrate(heads: list, rr: list[int], free: dict, t: int) -> dict:
    """Per port one grant, round-robin from ``rr[port]``: the new output registers."""
    new = {}
    for p in range(len(rr)):
        cands = [s for s, h in enumerate(heads)
                 if h and h["r"] < t and h["q"].get(p) and free[(p, h["q"][p][0][0])]]  # fmt: skip
        if cands:
            s = min(cands, key=lambda j: (j - rr[p]) % len(heads))
            rr[p] = (s + 1) % len(heads)
            kind, axon, pay = heads[s]["q"][p].popleft()
            new[(p, kind)] = (t + 1, axon, pay)
    return new


# ----------------------------------------------------------------------------- the RTL


def run_rtl(setup: Setup, spikes, ready, cycles: int):
    """Drive the router as ``reference`` describes; same return value."""
    dut = setup.router()
    C = setup.cores
    ins = [dut.spikes_in[s] for s in range(C)] + ([dut.host_in] if setup.host_in else [])
    outs = {(p, k): (dut.host_out if p == C else (dut.delayed_out if k else dut.events_out)[p])
            for p, k in setup.streams()}  # fmt: skip
    takes: list[list[int]] = [[] for _ in ins]
    got: dict[tuple[int, int], list] = {o: [] for o in outs}
    busy: list[bool] = []

    async def tb(ctx):
        nxt = [0] * len(ins)
        since = {o: None for o in outs}
        for t in range(cycles):
            for o, port in outs.items():
                ctx.set(port.ready, ready[o](t))
            offered = []
            for s, port in enumerate(ins):
                ok = nxt[s] < len(spikes[s]) and spikes[s][nxt[s]][0] <= t
                offered.append(ok)
                ctx.set(port.valid, ok)
                if ok:
                    _, n, pay = spikes[s][nxt[s]]
                    if s < C:
                        ctx.set(port.payload, n)
                    else:
                        ctx.set(port.payload, {"element": n, "payload": pay})
            busy.append(bool(ctx.get(dut.busy)))
            for s, port in enumerate(ins):
                if offered[s] and ctx.get(port.ready):
                    takes[s].append(t)
                    nxt[s] += 1
            for o, port in outs.items():
                if ctx.get(port.valid):
                    since[o] = t if since[o] is None else since[o]
                    if ready[o](t):
                        pl = ctx.get(port.payload)
                        a, pay = (pl, 1) if o[0] == C else (pl.axon, pl.payload)
                        got[o].append((since[o], t, a, pay))
                        since[o] = None
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return takes, got, busy


# ----------------------------------------------------------------------------- random setups


@st.composite
def tables(draw, setup_cores: int, sources: int, s: int, neurons: int, outputs: int):
    entries, n = [], draw(st.integers(0, 2))
    while n < neurons:
        last = min(neurons - 1, n + draw(st.integers(0, 3)))
        count = last - n + 1
        dests = []
        for _ in range(draw(st.integers(0, 3))):
            core = draw(st.sampled_from(list(range(setup_cores)) + ([HOST] if outputs else [])))
            stride = 1 if core == HOST else draw(st.integers(1, 3))
            base = s * BLOCK + draw(st.integers(0, BLOCK - count * stride))
            dests.append(Destination(core, base, core != HOST and draw(st.booleans()), stride))
        entries.append((n, last, tuple(dests)))
        n = last + 1 + draw(st.integers(0, 2))
    return RouteTable(tuple(entries))


@st.composite
def setups(draw, max_cores: int = 4) -> Setup:
    c = draw(st.integers(2, max_cores))
    host_in, host_out = draw(st.booleans()), draw(st.booleans())
    neurons = draw(st.sampled_from([4, 6, 8]))
    n_src = c + host_in
    outputs = BLOCK * n_src if host_out else 0
    tabs = [draw(tables(c, n_src, s, neurons, outputs)) for s in range(n_src)]
    return Setup(c, neurons, tabs, host_in, outputs, draw(st.sampled_from([1, 3])))


@st.composite
def spike_streams(draw, setup: Setup, max_spikes: int = 10):
    out = []
    for s in range(setup.sources):
        t, seq = 0, []
        for _ in range(draw(st.integers(0, max_spikes))):
            t += draw(st.one_of(st.integers(0, 2), st.integers(0, 30)))
            pay = draw(st.integers(1, (1 << setup.payload_bits) - 1)) if s >= setup.cores else 1
            seq.append((t, draw(st.integers(0, setup.neurons - 1)), pay))
        out.append(seq)
    return out


@st.composite
def stalls(draw, setup: Setup):
    """Per stream a ready pattern: runs of ready / not ready (some long), then always ready."""
    pats = {}
    for o in setup.streams():
        cycles = []
        for _ in range(draw(st.integers(0, 6))):
            cycles += [True] * draw(st.integers(0, 6))
            cycles += [False] * draw(st.one_of(st.integers(1, 4), st.integers(20, 60)))
        pats[o] = cycles
    return pats


def _pattern(bits: list[bool]):
    return lambda t: t >= len(bits) or bits[t]


def _always(t: int) -> bool:
    return True


def _cycles(spikes, pats=None) -> int:
    last = max((seq[-1][0] for seq in spikes if seq), default=0)
    stall = max((len(b) for b in (pats or {}).values()), default=0)
    n = sum(len(seq) for seq in spikes)
    return last + stall + 4 * n * 3 + 12


# ----------------------------------------------------------------------------- checks


def check_delivery(setup: Setup, spikes, takes, got, busy) -> dict[tuple[int, int], int]:
    """Exactly once, right output and axon, order per (source, output), busy iff inside.
    Returns per (source, spike) with events the cycle its first event was valid."""
    C = setup.cores
    assert [len(x) for x in takes] == [len(seq) for seq in spikes], "a spike was never taken"
    expect: dict[tuple, list] = {}
    for s, seq in enumerate(spikes):
        for i, (_, n, pay) in enumerate(seq):
            for p, kind, a in setup.events(s, n):
                w = pay if p < C else 1  # cores send payload 1; host_out has no payload
                expect.setdefault((s, (p, kind)), []).append((a, w, i))
    seen: dict[tuple, list] = {}
    for o, evs in got.items():
        for valid, taken, a, pay in evs:
            assert valid <= taken
            seen.setdefault((a // BLOCK, o), []).append((a, pay, valid, taken))
    assert set(seen) <= set(expect), "an event went to a stream its source never routes to"
    last: dict[tuple[int, int], tuple[int, int]] = {}  # (source, spike) -> (last valid, taken)
    first: dict[tuple[int, int], int] = {}
    for key, want in expect.items():
        have = seen.get(key, [])
        assert [(a, p) for a, p, _, _ in have] == [(a, p) for a, p, _ in want], key
        for (_, _, valid, taken), (_, _, i) in zip(have, want, strict=True):
            v, tk = last.get((key[0], i), (0, 0))
            last[(key[0], i)] = (max(v, valid), max(tk, taken))
            first[(key[0], i)] = min(first.get((key[0], i), valid), valid)
    inside = []  # per spike: cycles it is inside the router
    for s, rs in enumerate(takes):
        f = -1  # the cycle the source's previous head emptied
        for i, r in enumerate(rs):
            if (s, i) in last:  # head until its last grant (valid - 1), then output registers
                f = last[(s, i)][0] - 1
                inside.append((r + 1, last[(s, i)][1]))
            else:  # no event: dropped in its first cycle in the head
                f = max(r + 2, f + 1) if setup.deep else r + 1
                inside.append((r + 1, f))
    for t, b in enumerate(busy):
        assert b == any(a <= t <= z for a, z in inside), f"busy is {b} in cycle {t}"
    return first


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("deep", [False, True])
def test_single_spike_reaches_destinations_latency_cycles_after_read(deep):
    table = RouteTable(((0, 3, (Destination(1, 5), Destination(0, 2, True))),))
    setup = Setup(2, 4, [table, RouteTable()], False, 0, 1, deep)
    spikes = [[(3, 2, 1)], []]
    takes, got, busy = run_rtl(setup, spikes, {o: _always for o in setup.streams()}, 10)
    assert setup.router().latency == 2 + deep
    assert takes == [[3], []]
    v = 5 + deep  # read in 3, in the head from 4 (5 when deep), valid one cycle after the grant
    assert got[(1, 0)] == [(v, v, 7, 1)] and got[(0, 1)] == [(v, v, 4, 1)]
    assert busy == [False] * 4 + [True] * (2 + deep) + [False] * (4 - deep)


def test_multicast_to_one_core_is_one_event_per_cycle():
    table = RouteTable(((0, 1, (Destination(0, 0, False, 2), Destination(0, 8, True))),))
    setup = Setup(2, 4, [table, table], False, 0, 1)
    spikes = [[(1, 1, 1)], [(1, 0, 1)]]
    takes, got, _ = run_rtl(setup, spikes, {o: _always for o in setup.streams()}, 12)
    assert takes == [[1], [1]]
    # sources 0 and 1 alternate on core 0 (round-robin from source 0), 1 event per cycle
    assert [(v, a) for v, _, a, _ in got[(0, 0)]] == [(3, 2), (4, 0), (5, 3), (6, 1)]
    assert [(v, a) for v, _, a, _ in got[(0, 1)]] == [(7, 9), (8, 8)]


def test_from_runs_concatenates_overlapping_runs_in_order():
    t = RouteTable.from_runs([(0, 5, [(0, 10, False, 2)]), (3, 7, [(1, 0)]),
                              (0, 5, [(1, 20, True)])])  # fmt: skip
    for n in range(9):
        want = [(0, 10 + 2 * n, False), (0, 11 + 2 * n, False)] if n <= 5 else []
        want += [(1, n - 3, False)] if 3 <= n <= 7 else []
        want += [(1, 20 + n, True)] if n <= 5 else []
        assert t.lookup(n) == want
    assert [(e.first, e.last) for e in t.entries] == [(0, 2), (3, 5), (6, 7)]


def test_tables_out_of_range_are_refused():
    with pytest.raises(ValueError, match="sorted"):
        RouteTable(((2, 3, ()), (3, 4, ())))
    with pytest.raises(ValueError, match="beyond"):
        Router([RouteTable(((0, 3, (Destination(0, 14),)),))], neurons=4, axons=16)
    with pytest.raises(ValueError, match="cores"):
        Router([RouteTable(((0, 0, (Destination(1, 0),)),))], neurons=4, axons=16)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.parametrize("deep", [False, True])
@given(data=st.data())
def test_router_matches_rule_and_delivers_under_backpressure(deep, data):
    setup = replace(data.draw(setups()), deep=deep)
    spikes = data.draw(spike_streams(setup))
    pats = data.draw(stalls(setup))
    ready = {o: _pattern(b) for o, b in pats.items()}
    cycles = _cycles(spikes, pats)
    rtl = run_rtl(setup, spikes, ready, cycles)
    assert rtl == reference(setup, spikes, ready, cycles)
    check_delivery(setup, spikes, *rtl)
    assert not rtl[2][-1]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.parametrize("deep", [False, True])
@given(data=st.data())
def test_latency_without_backpressure_matches_rtl_and_cycle_model(deep, data):
    setup = replace(data.draw(setups()), deep=deep)
    spikes = data.draw(spike_streams(setup, max_spikes=14))
    ready = {o: _always for o in setup.streams()}
    cycles = _cycles(spikes)
    takes, got, busy = run_rtl(setup, spikes, ready, cycles)
    assert (takes, got, busy) == reference(setup, spikes, ready, cycles)
    first = check_delivery(setup, spikes, takes, got, busy)
    for evs in got.values():  # no back-pressure: every event is taken the cycle it is valid
        assert all(v == t for v, t, _, _ in evs)
    # measured: FIFO read -> first event valid; exactly the latency when nothing contends
    lat = [v - takes[s][i] for (s, i), v in first.items()]
    assert all(x >= 2 + deep for x in lat) and (not lat or min(lat) == 2 + deep)
    assert not busy[-1]
    if deep:  # the cycle model has the accelerator's (deep) router
        assert_cycle_model_agrees(setup, spikes, got, busy)


def assert_cycle_model_agrees(setup: Setup, spikes, got, busy) -> None:
    """``snnc.sim.cycle._route``: arrival = the cycle an event is valid on the RTL's output,
    and its last busy cycle of the router = the RTL's last cycle with ``busy`` high."""
    cycle = pytest.importorskip("snnc.sim.cycle")
    C = setup.cores
    sources = [[] for _ in range(C + 1)]
    for s, seq in enumerate(spikes):
        for r, n, _ in seq:
            per: dict[int, list] = {}
            for p, kind, a in setup.events(s, n):
                per.setdefault(p, []).append((a, bool(kind)))
            sources[s].append((r, tuple((p, tuple(ev)) for p, ev in per.items())))
    arrivals, last = cycle._route(sources, C + 1, [0] * (C + 1))
    assert max((t for t, b in enumerate(busy) if b), default=-1) == last
    for p in range(C + 1):
        rtl = sorted((v, a, bool(k)) for (q, k), evs in got.items() if q == p
                     for v, _, a, _ in evs)  # fmt: skip
        assert rtl == sorted(arrivals[p]), f"port {p}"
