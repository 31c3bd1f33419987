"""The neuron core (snnc/rtl/core.py) against a literal reading of ARCHITECTURE.md §4-§5.

``core_reference`` is the contract in Python: event sums, the neuron step of
``snnc/sim/integer.py`` on ``S``-bit state, and the cycle counts. The RTL runs in Amaranth's
simulator on random images, random event gaps and random back-pressure on the spike output;
spikes, state, accumulators and every take/busy cycle must match exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import numpy as np
import pytest
import torch
from amaranth.sim import Simulator

from snnc.ir import nodes as N
from snnc.rtl.core import NeuronCore
from snnc.rtl.params import (
    AxonEntry,
    CoreImage,
    CoreParams,
    Kind,
    NeuronInit,
    Profile,
    Reset,
    Timing,
)
from snnc.sim.integer import _Neuron

CUBA = (Kind.CUBALIF, Kind.CUBALI)
#: both pipelines of NeuronCore: the short one and ARCHITECTURE.md's (``deep=True``)
DEEP = pytest.mark.parametrize("deep", [False, True], ids=["short", "deep"])

# ----------------------------------------------------------------------------- the contract


def wrap(x: int, bits: int) -> int:
    half = 1 << (bits - 1)
    return ((x + half) & ((1 << bits) - 1)) - half


def _decay(v: int, d: int, shift: bool, f: int) -> int:
    if shift:
        return v if d < 0 else v - (v >> d)
    return (v * d + (1 << (f - 1))) >> f


def neuron_step(pr: Profile, f: int, s_bits: int, ni: NeuronInit, v: int, i: int, s: int, x: int):
    """``snnc/sim/integer.py``'s step with gain 1; ``i``/``v`` clamp where it clamps (when the
    profile saturates), and the stored values wrap to ``S`` bits. Returns (v, i, s)."""
    lo, hi = -(1 << (s_bits - 1)), (1 << (s_bits - 1)) - 1

    def clamp(z: int) -> int:
        return min(max(z, lo), hi) if pr.saturate else z

    def reset(z: int, spk: int) -> int:
        if pr.reset == Reset.SUBTRACT:
            return z - spk * th
        return ni.reset_value if pr.reset == Reset.TO_VALUE and spk else z

    def cmp(z: int) -> int:
        return int(z > th if pr.strict else z >= th)

    th = ni.threshold
    if pr.kind in CUBA:
        i = clamp(_decay(i, pr.decay_i, pr.decay_shift, f) + x + ni.ibias)
        x = i
    vn = v if pr.kind == Kind.IF else _decay(v, pr.decay, pr.decay_shift, f)
    vn = vn + x + ni.bias
    if pr.kind in (Kind.LI, Kind.CUBALI):
        return wrap(clamp(vn), s_bits), wrap(i, s_bits), 0
    if pr.timing == Timing.NEXT_STEP:
        vn = reset(vn, s)
    vn = clamp(vn)
    if pr.timing == Timing.GATED:
        r = int(v > th)
        m = vn - r * th
        spk = cmp(m)
        vn = m - (spk - r) * th
    else:
        spk = cmp(vn)
        if pr.timing == Timing.IMMEDIATE:
            vn = reset(vn, spk)
    return wrap(vn, s_bits), wrap(i, s_bits), spk


@dataclass
class CoreState:
    v: list[int]
    i: list[int]
    s: list[int]
    acc: list[list[int]]

    @classmethod
    def zero(cls, p: CoreParams) -> CoreState:
        n = p.neurons
        return cls([0] * n, [0] * n, [0] * n, [[0] * p.lanes for _ in range(p.groups)])

    def copy(self) -> CoreState:
        return CoreState(list(self.v), list(self.i), list(self.s), [list(a) for a in self.acc])


def core_reference(image: CoreImage, events, commands, state: CoreState | None = None, *,
                   event_extra: int = 2, update_extra: int = 3):  # fmt: skip
    """ARCHITECTURE.md §4-§5 read literally: the events in order, then the update commands.

    Returns ``(spikes, cycles, final_state)``: the core-local indices of the spikes in FIFO
    order; ``cycles`` with the take-to-take cost of each event (``row_len``), of each command
    (``n_groups*P + 3``, command to busy falling), and ``total``: the cycles from taking the
    first item to ``busy`` falling after the last when each is offered as soon as the core can
    take it (a burst of events costs the sum of its ``row_len`` plus 2: table read, last write).
    ``event_extra``/``update_extra`` replace the 2 and 3 (NeuronCore's ``deep`` timing).
    """
    p = image.params
    P, S = p.lanes, p.state_bits
    st = CoreState.zero(p) if state is None else state.copy()
    for a, pay in events:
        e = image.axons[a]
        for k in range(e.row_len):
            word, g = image.weights[e.row_base + k], e.group_base + k
            st.acc[g] = [wrap(st.acc[g][j] + pay * (word[j] << e.shift), S) for j in range(P)]
    spikes = []
    for first, count in commands:
        for g in range(first, first + count):
            for j in range(P):
                n = g * P + j
                ni = image.neurons[n]
                st.v[n], st.i[n], st.s[n] = neuron_step(
                    image.profiles[ni.profile], p.decay_bits, S, ni,
                    st.v[n], st.i[n], st.s[n], st.acc[g][j],
                )  # fmt: skip
                if st.s[n]:
                    spikes.append(n)
            st.acc[g] = [0] * P
    ev = [image.axons[a].row_len for a, _ in events]
    up = [count * P + update_extra for _, count in commands]
    total = (sum(ev) + event_extra if ev else 0) + sum(up)
    cycles = {"events": ev, "updates": up, "total": total}
    return spikes, cycles, st


# ----------------------------------------------------------------------------- random images


def random_profile(rng: random.Random, f: int) -> Profile:
    kind = rng.choice(list(Kind))
    timing = rng.choice(list(Timing))
    reset = Reset.SUBTRACT if timing == Timing.GATED else rng.choice(list(Reset))
    shift = f == 0 or rng.random() < 0.4

    def decay() -> int:
        if shift:
            return rng.randint(-1, 6)
        return rng.choice([rng.randint(0, 1 << f), (1 << f) - rng.randint(0, 1 << (f - 2))])

    return Profile(kind, decay(), decay(), shift, reset, timing, rng.random() < 0.5,
                   rng.random() < 0.5)  # fmt: skip


def random_image(rng: random.Random, *, n: int, lanes: int, wbits: int, sbits: int, f: int,
                 payload_bits: int = 1, profiles=None,
                 max_shift: int = 3) -> CoreImage:  # fmt: skip
    g = n // lanes
    words = rng.randint(g, 2 * g)
    n_axons = rng.randint(4, 12)
    axons = []
    for _ in range(n_axons):
        length = rng.randint(1, min(g, words))
        axons.append(AxonEntry(rng.randint(0, words - length), length,
                               rng.randint(0, g - length), rng.randint(0, max_shift)))  # fmt: skip
    wmax = (1 << (wbits - 1)) - 1
    weights = tuple(
        tuple(rng.randint(-wmax - 1, wmax) if rng.random() < 0.8 else 0 for _ in range(lanes))
        for _ in range(words)
    )
    if profiles is None:
        profiles = [random_profile(rng, f) for _ in range(rng.randint(1, 4))]
        if all(q.kind in (Kind.LI, Kind.CUBALI) for q in profiles):
            profiles[0] = replace(profiles[0], kind=rng.choice([Kind.LIF, Kind.IF, Kind.CUBALIF]))
    scale = (wmax + 1) << (max_shift // 2)
    neurons = [
        NeuronInit(
            threshold=rng.randint(scale // 4, 2 * scale) if rng.random() < 0.9
            else rng.randint(-scale, scale),
            bias=rng.randint(-scale // 4, scale // 4),
            reset_value=rng.randint(-scale, scale // 2),
            ibias=rng.randint(-scale // 8, scale // 8),
            profile=rng.randrange(len(profiles)),
        )
        for _ in range(n)
    ]  # fmt: skip
    for k in rng.sample(range(n), n // 8):  # reset_value == threshold: the comparison's edge
        neurons[k] = replace(neurons[k], reset_value=neurons[k].threshold)
    params = CoreParams(n, lanes, wbits, sbits, n_axons, words, f, payload_bits,
                        max(4, len(profiles)), max_shift)  # fmt: skip
    return CoreImage(params, tuple(axons), weights, tuple(neurons), tuple(profiles))


def random_phases(rng: random.Random, image: CoreImage, steps: int, events: int = 12):
    """Per phase: random events, then updates of random disjoint slices (at least one)."""
    p = image.params
    top = (1 << p.payload_bits) - 1
    phases = []
    for _ in range(steps):
        evs = [(rng.randrange(p.axons), rng.randint(1, top)) for _ in range(rng.randint(0, events))]
        cuts = sorted(rng.sample(range(1, p.groups), rng.randint(0, min(3, p.groups - 1))))
        bounds = [0, *cuts, p.groups]
        slices = [(a, b - a) for a, b in zip(bounds, bounds[1:], strict=False)]
        rng.shuffle(slices)
        phases.append((evs, slices[: rng.randint(1, len(slices))]))
    return phases


# ----------------------------------------------------------------------------- the RTL harness


@dataclass
class Run:
    #: (kind, item, cycle offered, cycle taken)
    takes: list[tuple[str, object, int, int]] = field(default_factory=list)
    busy: list[int] = field(default_factory=list)
    spikes: list[list[int]] = field(default_factory=list)  # per phase
    states: list[CoreState] = field(default_factory=list)  # after each phase
    spike_valid: list[int] = field(default_factory=list)  # cycles a spike is valid
    extra: tuple[int, int] = (2, 3)  # the core's (event_extra, update_extra)


def read_state(ctx, core: NeuronCore) -> CoreState:
    p = core.params
    st = [ctx.get(core.state_data[n]) for n in range(p.neurons)]
    return CoreState(
        [int(x.v) for x in st], [int(x.i) if core.cuba else 0 for x in st], [int(x.s) for x in st],
        [[int(w) for w in ctx.get(core.acc_data[g])] for g in range(p.groups)],
    )  # fmt: skip


class _Driver:
    """The testbench of :func:`run_core`: offers the items, takes spikes, records cycles."""

    def __init__(self, core: NeuronCore, items: list, rng: random.Random, ready: float,
                 max_gap: int, run: Run) -> None:  # fmt: skip
        self.core, self.items, self.rng, self.ready, self.max_gap = core, items, rng, ready, max_gap
        self.run = run
        self.idx = self.earliest = 0
        self.cur = self.snap = None
        self.vstart, self.cmd_phase = 0, -1

    def offer(self, ctx, cyc: int) -> str | None:
        """Set this cycle's item on ``events`` or ``cmd``; a phase's first command waits until
        the core is idle and every spike of the earlier phases is out."""
        core, items = self.core, self.items
        if self.cur is None and self.idx < len(items) and cyc >= self.earliest:
            ph, kind, _ = items[self.idx]
            new_phase = kind == "cmd" and ph != self.cmd_phase
            if not new_phase or not (ctx.get(core.busy) or ctx.get(core.spikes.valid)):
                if new_phase:
                    self.cmd_phase = ph
                    self.run.spikes.append([])
                self.cur, self.vstart = items[self.idx], cyc
        kind = self.cur[1] if self.cur else None
        ctx.set(core.events.valid, kind == "event")
        ctx.set(core.cmd.valid, kind == "cmd")
        if kind == "event":
            ctx.set(core.events.payload, {"axon": self.cur[2][0], "payload": self.cur[2][1]})
        elif kind == "cmd":
            ctx.set(core.cmd.payload, {"first_group": self.cur[2][0], "n_groups": self.cur[2][1]})
        return kind

    def observe(self, ctx, cyc: int, kind: str | None, take_spike: bool) -> int:
        core, run = self.core, self.run
        busy = ctx.get(core.busy)
        run.busy.append(busy)
        if self.snap is not None and cyc > self.snap and not busy:
            run.states.append(read_state(ctx, core))
            self.snap = None
        if ctx.get(core.spikes.valid):
            run.spike_valid.append(cyc)
            if take_spike:
                run.spikes[-1].append(ctx.get(core.spikes.payload))
        stream = core.events if kind == "event" else core.cmd
        if kind is not None and ctx.get(stream.ready):
            run.takes.append((kind, self.cur[2], self.vstart, cyc))
            if self.idx + 1 == len(self.items) or self.items[self.idx + 1][0] != self.cur[0]:
                self.snap = cyc  # the phase's last item: read the state back once idle
            self.idx, self.cur = self.idx + 1, None
            self.earliest = cyc + 1 + self.rng.randint(0, self.max_gap)
        return busy

    async def testbench(self, ctx) -> None:
        for cyc in range(200_000):
            kind = self.offer(ctx, cyc)
            take_spike = self.rng.random() < self.ready
            ctx.set(self.core.spikes.ready, take_spike)
            busy = self.observe(ctx, cyc, kind, take_spike)
            await ctx.tick()
            done = self.idx == len(self.items) and self.snap is None
            if done and not busy and not ctx.get(self.core.spikes.valid):
                return
        raise AssertionError("the core did not finish")


def run_core(image: CoreImage, phases, *, seed: int = 0, ready: float = 0.7,
             max_gap: int = 2, deep: bool = False) -> Run:  # fmt: skip
    """Offer each phase's events, then (once the core and FIFO are idle) its commands.

    An item is offered ``gap`` (random, 0..max_gap) cycles after the cycle following the previous
    take; ``spikes.ready`` is high with probability ``ready`` in each cycle. The state is read
    back in the first cycle ``busy`` is low after a phase's last command.
    """
    core = NeuronCore(image, deep=deep)
    items = []
    for ph, (evs, cmds) in enumerate(phases):
        items += [(ph, "event", e) for e in evs] + [(ph, "cmd", c) for c in cmds]
    run = Run(extra=(core.event_extra, core.update_extra))
    sim = Simulator(core)
    sim.add_clock(1e-6)
    sim.add_testbench(_Driver(core, items, random.Random(seed), ready, max_gap, run).testbench)
    sim.run()
    return run


def expected_timing(image: CoreImage, run: Run) -> tuple[list[int], list[int]]:
    """Per §4/§5: each take's cycle given when it was offered, and the busy trace."""
    P, (ev_extra, up_extra) = image.params.lanes, run.extra
    takes, busy = [], [0] * len(run.busy)
    free = 0  # first cycle the core can take the next item (of the kind of the last take)
    for k, (kind, item, valid, _) in enumerate(run.takes):
        t = max(valid, free) if k else valid
        takes.append(t)
        if kind == "event":
            row = image.axons[item[0]].row_len
            span = row + ev_extra - 1  # busy t+1 .. t+row_len+1: the last write-back
            nxt = run.takes[k + 1][0] if k + 1 < len(run.takes) else None
            free = t + row if nxt == "event" else t + row + ev_extra
        else:
            span = item[1] * P + up_extra - 1
            free = t + item[1] * P + up_extra
        for c in range(t + 1, min(t + span + 1, len(busy))):
            busy[c] = 1
    return takes, busy


def check_run(image: CoreImage, phases, run: Run) -> None:
    state, (ev_extra, up_extra) = None, run.extra
    assert len(run.states) == len(run.spikes) == len(phases)
    for ph, (evs, cmds) in enumerate(phases):
        want, _, state = core_reference(image, evs, cmds, state, event_extra=ev_extra,
                                        update_extra=up_extra)  # fmt: skip
        assert run.spikes[ph] == want, f"phase {ph}: spikes"
        got = run.states[ph]
        assert got.acc == state.acc, f"phase {ph}: accumulators"
        assert (got.v, got.i, got.s) == (state.v, state.i, state.s), f"phase {ph}: state"
        for first, count in cmds:
            assert all(w == [0] * image.params.lanes for w in got.acc[first : first + count])
    takes, busy = expected_timing(image, run)
    assert [t[3] for t in run.takes] == takes
    assert run.busy == busy


# ----------------------------------------------------------------------------- tests

CONFIGS = [  # N, P, W, S, F
    (16, 4, 8, 16, 8), (32, 8, 6, 20, 12), (24, 4, 4, 18, 6), (32, 4, 8, 24, 10),
    (24, 8, 5, 16, 0), (16, 8, 7, 22, 9), (32, 8, 8, 16, 4), (20, 4, 6, 17, 11),
]  # fmt: skip


@DEEP
@pytest.mark.parametrize("seed", range(24))
def test_random_core_matches_reference_spikes_state_and_cycles(seed: int, deep: bool) -> None:
    rng = random.Random(1000 + seed)
    n, lanes, w, s, f = CONFIGS[seed % len(CONFIGS)]
    image = random_image(rng, n=n, lanes=lanes, wbits=w, sbits=s, f=f)
    phases = random_phases(rng, image, steps=6, events=16)
    run = run_core(image, phases, seed=seed, ready=(0.15, 0.5, 0.9, 1.0)[seed % 4],
                   max_gap=(0, 1, 3)[seed % 3], deep=deep)  # fmt: skip
    check_run(image, phases, run)
    assert sum(map(len, run.spikes)) > 0


@DEEP
def test_every_profile_kind_in_one_core_matches_reference(deep: bool) -> None:
    rng = random.Random(7)
    profiles = []
    for kind in Kind:
        for timing in Timing:
            resets = [Reset.SUBTRACT] if timing == Timing.GATED else list(Reset)
            for reset in resets:
                shift = len(profiles) % 2 == 1
                d = rng.randint(-1, 5) if shift else rng.randint(150, 256)
                profiles.append(Profile(kind, d, d // 2 if not shift else 2, shift, reset, timing,
                                        len(profiles) % 3 != 0, len(profiles) % 4 < 2))  # fmt: skip
    for k in range(0, len(profiles), 4):  # four profiles per core
        image = random_image(rng, n=32, lanes=4, wbits=6, sbits=16, f=8,
                             profiles=tuple(profiles[k : k + 4]))  # fmt: skip
        phases = random_phases(rng, image, steps=3, events=8)
        check_run(image, phases, run_core(image, phases, seed=k, ready=0.6, max_gap=1,
                                          deep=deep))  # fmt: skip


@DEEP
@pytest.mark.parametrize("seed", range(4))
def test_saturating_profiles_clamp_current_and_membrane(seed: int, deep: bool) -> None:
    rng = random.Random(50 + seed)
    kinds = [Kind.CUBALIF, Kind.LIF, Kind.IF, Kind.CUBALI]
    timings = [Timing.IMMEDIATE, Timing.GATED, Timing.NEXT_STEP, Timing.IMMEDIATE]
    profiles = tuple(
        Profile(kinds[k], rng.randint(200, 256), rng.randint(200, 256), False, Reset.SUBTRACT,
                timings[(k + seed) % 4], k % 2 == 0, True)
        for k in range(4)
    )  # fmt: skip
    image = random_image(rng, n=16, lanes=4, wbits=8, sbits=12, f=8, profiles=profiles)
    lim = 1 << 11
    ths = [rng.choice([rng.randint(1, 400), lim - 1 - rng.randint(0, 3), -lim + rng.randint(0, 3),
                       -lim // 2 - rng.randint(0, 300)]) for _ in image.neurons]  # fmt: skip
    neurons = tuple(replace(x, threshold=t) for x, t in zip(image.neurons, ths, strict=True))
    image = replace(image, neurons=neurons)
    phases = random_phases(rng, image, steps=6, events=30)
    check_run(image, phases, run_core(image, phases, seed=seed, ready=0.5, deep=deep))


@DEEP
def test_saturating_next_step_subtract_compares_the_clamped_membrane(deep: bool) -> None:
    # thresholds near the top of S bits and a large input: v saturates step after step, and
    # NEXT_STEP subtracts the threshold before the clamp, so the comparison is clamp(v) > th
    p = CoreParams(neurons=8, lanes=4, weight_bits=8, state_bits=12, axons=1, weight_words=2,
                   decay_bits=8, max_shift=3)  # fmt: skip
    hi = (1 << 11) - 1
    profiles = (
        Profile(Kind.LIF, 250, 0, False, Reset.SUBTRACT, Timing.NEXT_STEP, True, True),
        Profile(Kind.LIF, 250, 0, False, Reset.SUBTRACT, Timing.GATED, False, True),
    )
    neurons = tuple(NeuronInit(threshold=hi - n, bias=1500, profile=n % 2) for n in range(8))
    image = CoreImage(p, (AxonEntry(0, 2, 0, 3),), ((127,) * 4, (-128, 127, -128, 127)), neurons,
                      profiles)  # fmt: skip
    phases = [([(0, 1)] * 2, [(0, 2)]) for _ in range(5)]
    run = run_core(image, phases, ready=0.5, deep=deep)
    check_run(image, phases, run)
    assert sum(map(len, run.spikes)) >= 15


@DEEP
def test_graded_payload_multiplies_the_weights(deep: bool) -> None:
    rng = random.Random(3)
    image = random_image(rng, n=16, lanes=4, wbits=6, sbits=20, f=10, payload_bits=4)
    phases = random_phases(rng, image, steps=3)
    check_run(image, phases, run_core(image, phases, seed=3, deep=deep))


@DEEP
def test_back_to_back_costs_row_len_per_event_and_nP_plus_3_per_update(deep: bool) -> None:
    rng = random.Random(11)
    image = random_image(rng, n=32, lanes=8, wbits=8, sbits=16, f=8)
    evs = [(a, 1) for a in rng.choices(range(image.params.axons), k=10)]
    cmds = [(0, 2), (2, 1), (3, 1)]
    run = run_core(image, [(evs, cmds)], ready=1.0, max_gap=0, deep=deep)
    ev_extra, up_extra = run.extra
    assert (ev_extra, up_extra) == ((5, 5) if deep else (2, 3))
    _, cycles, _ = core_reference(image, evs, cmds, event_extra=ev_extra, update_extra=up_extra)
    t = [x[3] for x in run.takes]
    assert np.diff(t[: len(evs)]).tolist() == cycles["events"][:-1]
    # the update waits until the last event is written
    assert t[len(evs)] - t[len(evs) - 1] == cycles["events"][-1] + ev_extra
    assert np.diff(t[len(evs) :]).tolist() == cycles["updates"][:-1]
    fall = next(c for c in range(t[-1] + 1, len(run.busy)) if not run.busy[c])
    assert fall - t[0] == cycles["total"]
    check_run(image, [(evs, cmds)], run)


@DEEP
def test_spike_of_neuron_k_is_valid_in_cycle_c_plus_4_plus_k(deep: bool) -> None:
    p = CoreParams(neurons=16, lanes=4, weight_bits=4, state_bits=16, axons=1, weight_words=1)
    neurons = tuple(NeuronInit(threshold=-1 if n % 3 == 0 else 5) for n in range(16))
    image = CoreImage(p, (AxonEntry(0, 1, 0),), ((0, 0, 0, 0),), neurons, (Profile(),))
    run = run_core(image, [([], [(1, 3)])], ready=1.0, deep=deep)
    c, lat = run.takes[0][3], run.extra[1] + 1  # written in c+3+k, valid the cycle after
    fired = [k for k in range(12) if (4 + k) % 3 == 0]
    assert run.spikes == [[4 + k for k in fired]]
    assert run.spike_valid == [c + lat + k for k in fired]


@DEEP
def test_waiting_command_stops_events_and_waits_for_the_pipeline(deep: bool) -> None:
    rng = random.Random(5)
    image = random_image(rng, n=16, lanes=4, wbits=8, sbits=16, f=8)
    core = NeuronCore(image, deep=deep)
    P = image.params.lanes
    row = [e.row_len for e in image.axons]
    log = {}

    async def tb(ctx):
        ctx.set(core.spikes.ready, 1)
        ctx.set(core.events.valid, 1)
        ctx.set(core.events.payload, {"axon": 0, "payload": 1})
        for cyc in range(200):
            if cyc == 1:  # the command waits while event 0 is in flight
                ctx.set(core.cmd.valid, 1)
                ctx.set(core.cmd.payload, {"first_group": 1, "n_groups": 2})
            if ctx.get(core.events.valid) and ctx.get(core.events.ready):
                log.setdefault("events", []).append(cyc)
            if ctx.get(core.cmd.valid) and ctx.get(core.cmd.ready):
                log["cmd"] = cyc
                await ctx.tick()
                ctx.set(core.cmd.valid, 0)
                continue
            await ctx.tick()

    sim = Simulator(core)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    ev, up = core.event_extra, core.update_extra
    assert log["cmd"] == row[0] + ev
    assert log["events"][:2] == [0, row[0] + ev + 2 * P + up]


# ----------------------------------------------------------------------------- vs snnc.sim.integer


def _node_and_params(pr: Profile, f: int, s: int, neurons) -> tuple[object, dict]:
    cls = {Kind.LIF: N.LIF, Kind.IF: N.IF, Kind.CUBALIF: N.CubaLIF, Kind.LI: N.LI,
           Kind.CUBALI: N.CubaLI}[pr.kind]  # fmt: skip
    kw = dict(decay_bits=0 if pr.decay_shift else f, decay_shift=pr.decay_shift, state_bits=s,
              current_bits=s if pr.kind in CUBA else 0, saturate=pr.saturate)  # fmt: skip
    if cls in (N.LIF, N.IF, N.CubaLIF):
        kw |= dict(reset=_RESETS[pr.reset], timing=_TIMINGS[pr.timing], strict=pr.strict)
    n = len(neurons)
    par = {"gain": np.ones(n), "bias": np.array([x.bias for x in neurons])}
    if cls is not N.IF:
        par["decay"] = np.full(n, pr.decay)
    if cls in (N.LIF, N.IF, N.CubaLIF):
        par["threshold"] = np.array([x.threshold for x in neurons])
        par["reset_value"] = np.array([x.reset_value for x in neurons])
    if pr.kind in CUBA:
        par |= {"decay_i": np.full(n, pr.decay_i), "gain_i": np.ones(n)}
    return cls(**kw), {k: torch.tensor(np.asarray(a, np.int64)) for k, a in par.items()}


_RESETS = {Reset.SUBTRACT: N.ResetMode.SUBTRACT, Reset.TO_VALUE: N.ResetMode.TO_VALUE,
           Reset.NONE: N.ResetMode.NONE}  # fmt: skip
_TIMINGS = {Timing.IMMEDIATE: N.ResetTiming.IMMEDIATE, Timing.NEXT_STEP: N.ResetTiming.NEXT_STEP,
            Timing.GATED: N.ResetTiming.GATED}  # fmt: skip


def _x_of(image: CoreImage, events) -> np.ndarray:
    p = image.params
    x = np.zeros(p.neurons, np.int64)
    for a, pay in events:
        e = image.axons[a]
        for k in range(e.row_len):
            g = e.group_base + k
            x[g * p.lanes : (g + 1) * p.lanes] += pay * (np.array(image.weights[e.row_base + k])
                                                         << e.shift)  # fmt: skip
    return x


def _integer_run(image: CoreImage, phases) -> tuple[list[list[int]], np.ndarray]:
    pr, p = image.profiles[0], image.params
    node, par = _node_and_params(pr, p.decay_bits, p.state_bits, image.neurons)
    neuron = _Neuron("pop", node, par, 1, (p.neurons,))
    ib = np.array([x.ibias for x in image.neurons])
    spikes = []
    for t, (evs, _) in enumerate(phases):
        x = _x_of(image, evs) + (ib if pr.kind in CUBA else 0)
        out = neuron.step(torch.from_numpy(x)[None], t)[0].numpy()
        spikes.append(np.flatnonzero(out).tolist() if pr.kind not in (Kind.LI, Kind.CUBALI)
                      else [])  # fmt: skip
    return spikes, neuron.v[0].numpy()


def _population_image(rng: random.Random, pr: Profile) -> CoreImage:
    image = random_image(rng, n=16, lanes=4, wbits=5, sbits=20, f=10, profiles=(pr,))
    neurons = tuple(replace(x, threshold=abs(x.threshold) + 1) for x in image.neurons)
    return replace(image, neurons=neurons)


@DEEP
@pytest.mark.parametrize("kind", [Kind.LIF, Kind.CUBALIF, Kind.IF])
def test_rtl_population_equals_integer_simulator_neurons(kind: Kind, deep: bool) -> None:
    rng = random.Random(int(kind) + 40)
    pr = Profile(kind, 900, 800, False, Reset.SUBTRACT, Timing.IMMEDIATE, True, False)
    image = _population_image(rng, pr)
    phases = [(evs, [(0, image.params.groups)]) for evs, _ in random_phases(rng, image, 6)]
    run = run_core(image, phases, ready=0.8, deep=deep)
    want, v = _integer_run(image, phases)
    assert run.spikes == want
    assert run.states[-1].v == v.tolist()
    assert sum(map(len, want)) > 0


def test_reference_step_equals_integer_simulator_for_every_profile() -> None:
    rng = random.Random(2)
    for trial in range(300):
        pr = random_profile(rng, 8)
        if pr.kind == Kind.IF:
            pr = replace(pr, decay=0)
        image = _population_image(rng, replace(pr, saturate=pr.saturate or trial % 2 == 0))
        phases = random_phases(rng, image, steps=5)
        phases = [(evs, [(0, image.params.groups)]) for evs, _ in phases]
        want, v = _integer_run(image, phases)
        state = None
        for ph, (evs, cmds) in enumerate(phases):
            spikes, _, state = core_reference(image, evs, cmds, state)
            assert spikes == want[ph], (trial, ph)
        assert state.v == v.tolist(), trial


@DEEP
def test_back_to_back_events_on_one_word_are_forwarded(deep: bool) -> None:
    """Rows of 1 and 2 words on the same groups, taken back to back: every read of a word
    whose write is still pending (1 or 2 cycles away) must see the pending sum."""
    p = CoreParams(neurons=8, lanes=2, weight_bits=6, state_bits=16, axons=3, weight_words=5,
                   decay_bits=8)  # fmt: skip
    weights = ((3, -5), (7, 1), (-2, 4), (9, -9), (5, 6))
    axons = (AxonEntry(0, 1, 0), AxonEntry(1, 2, 0), AxonEntry(3, 2, 1))
    neurons = tuple(NeuronInit(threshold=1000) for _ in range(8))
    image = CoreImage(p, axons, weights, neurons, (Profile(Kind.IF, 0, 0),))
    rng = random.Random(5)
    evs = [(rng.randrange(3), 1) for _ in range(60)]
    run = run_core(image, [(evs, [(0, 4)])], ready=1.0, max_gap=0, deep=deep)
    check_run(image, [(evs, [(0, 4)])], run)
    gaps = np.diff([x[3] for x in run.takes[: len(evs)]])
    assert set(gaps.tolist()) == {1, 2}  # back to back: distances 1 and 2 both occur


@pytest.mark.parametrize("seed", [0, 1])
def test_banked_weight_memory_matches_reference(seed: int, monkeypatch) -> None:
    """A block-RAM weight memory deeper than a bank (banks of 4 words here) is read through
    registered bank outputs with the same timing."""
    import snnc.rtl.core as core_mod

    monkeypatch.setattr(core_mod, "WEIGHT_BANK", 4)
    rng = random.Random(100 + seed)
    image = random_image(rng, n=16, lanes=4, wbits=6, sbits=18, f=8)
    assert image.params.weight_words > 4
    phases = random_phases(rng, image, steps=3)
    check_run(image, phases, run_core(image, phases, seed=seed, ready=0.6, deep=True))
