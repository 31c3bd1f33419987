"""One neuron core of the LIF accelerator (ARCHITECTURE.md §2, §4, §5).

The core owns five memories, all with synchronous (non-transparent) read ports, and a spike FIFO:

- axon table ``A x (row_base, row_len, group_base, shift)`` (plus three bits derived from
  ``row_len``: ``<= 1``, ``<= 2``, ``== 0``) and weights ``D x P`` lanes: ROMs (the weights can
  be a RAM loaded by the host instead: ``weight_memory = "spram"``);
- accumulators ``N/P x P`` lanes of ``acc_width`` bits (``S`` unless the backend sizes them to
  the largest sum of one step; one read, one write port);
- state ``N x (v, s[, i])`` (``i`` only when a profile is current-based);
- neuron parameters ``N x (~threshold, bias, reset_value[, ibias][, profile])``: a ROM; it holds
  ``~threshold = -threshold - 1`` so that every threshold term is an addition.

Two pipelines: ``deep=True`` (ARCHITECTURE.md's timing, the one the accelerator builds: every
block-RAM output and both sides of the multipliers are registered, for the clock targets) and
``deep=False`` (two stages fewer; times in brackets below).

**Events** (§4). An event ``(a, p)`` taken in cycle ``t`` reads the axon table; weight word ``k``
of the row is read in ``t+1+k``, accumulator word ``group_base + k`` in ``t+3+k`` [``t+1+k``]
and the lane sums ``acc + p * (w << shift)`` written in ``t+5+k`` [``t+2+k``]. The next event is
taken in ``t+row_len``; a read that misses a pending write of its word gets the written value
through forwarding registers. Accumulators wrap modulo ``2**S``.

**Update** (§5). ``update(first_group, n_groups)`` taken in cycle ``c`` streams the neurons
``first_group*P + k``, ``k < n_groups*P``: their state, parameters and accumulator word are read in
``c+k`` (neuron 0's addresses come from the command itself), computed in three [two] stages and
written and emitted in ``c+5+k`` [``c+3+k``]; ``busy`` falls in ``c + n_groups*P + 5`` [``+ 3``]. A
group's accumulator word is cleared in the cycle after its last lane is read. The arithmetic is
``snnc/sim/integer.py``'s step with ``gain = 1`` and ``x`` the accumulator lane (plus ``ibias`` for
the current of Cuba* kinds): intermediate values are exact (``S + 3`` bits), a saturating profile
clamps ``i`` and ``v`` to ``S`` bits where the simulator clamps, and the stored ``v`` and ``i`` wrap
to ``S`` bits.

**Clear.** A pulse on ``clear`` (with the core idle) writes zeros over state word ``n`` in the
``n``-th cycle after it and over accumulator word ``n`` (``n < N/P``) one cycle later; ``busy``
is high for those ``N`` cycles. The accelerator clears between independent inputs.

A command waiting at ``cmd`` stops the core from taking events; it is taken once every event
write has happened (``busy`` low). Spikes (core-local neuron indices) go into an ``N``-deep FIFO
whose output is valid in the cycle after the write.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.hdl import MemoryData, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from snnc.rtl.fifo import Fifo
from snnc.rtl.params import CoreImage, Kind, Profile, Reset, Timing, index_bits
from snnc.rtl.spram import SinglePortRam

__all__ = ["NeuronCore", "index_bits", "memory_bits", "memory_layouts"]

_CUBA = (Kind.CUBALIF, Kind.CUBALI)
_NO_RW_CHECK = {"no_rw_check": 1}
#: bits beyond S of the exact sums (|decay(v) + decay(i) + x + ibias + bias - 2*th| is below
#: 7 * 2**(S-1) + 4)
_EXTRA = 3
_SPIKING = (Kind.LIF, Kind.IF, Kind.CUBALIF)
#: words per bank of a block-RAM weight memory (1K x 18-bit block RAMs side by side)
WEIGHT_BANK = 1024


def _reg(m: Module, values: dict, prefix: str) -> dict:
    """Registered copies of ``values`` (one pipeline stage). Only ``valid`` has a reset: data
    registers without one are plain flip-flops that Yosys can also pack into DSP blocks."""
    out = {}
    for k, val in values.items():
        out[k] = Signal(val.shape(), name=f"{prefix}_{k}", reset_less=k != "valid")
        m.d.sync += out[k].eq(val)
    return out


class _Profiles:
    """Per-profile constants, looked up by a profile index signal."""

    def __init__(self, profiles: tuple[Profile, ...], count: int) -> None:
        self.items = list(profiles) + [profiles[0]] * (count - len(profiles))

    def flag(self, index, pred) -> object:
        bits = [bool(pred(p)) for p in self.items]
        if all(bits) or not any(bits):
            return Const(int(bits[0]), 1)
        return Const(sum(b << k for k, b in enumerate(bits)), len(bits)).bit_select(index, 1)

    def value(self, index, fn, shape) -> object:
        vals = [fn(p) for p in self.items]
        if len(set(map(repr, vals))) == 1:
            return vals[0] if not isinstance(vals[0], int) else Const(vals[0], shape)
        return Array(Const(v, shape) if isinstance(v, int) else v for v in vals)[index]


def _leaks(p: Profile, current: bool) -> bool:
    """Whether the profile decays v (or, ``current``, i) at all."""
    return p.kind in _CUBA if current else p.kind != Kind.IF


def _mult(p: Profile, current: bool) -> bool:
    """Whether the profile decays v (or i) with the multiplier."""
    return _leaks(p, current) and not p.decay_shift


def _check(image: CoreImage) -> None:
    p = image.params
    g, f = p.groups, p.decay_bits
    if not 1 <= len(image.profiles) <= p.profiles:
        raise ValueError(f"a core holds 1..{p.profiles} profiles, got {len(image.profiles)}")
    for k, pr in enumerate(image.profiles):
        for current, d in ((False, pr.decay), (True, pr.decay_i)):
            if _mult(pr, current) and not (f > 0 and 0 <= d <= (1 << f)):
                raise ValueError(f"profile {k}: multiplier decay {d} outside 0..2**{f} "
                                 "(decay_bits 0 allows shift decays only)")  # fmt: skip
    if len(image.axons) != p.axons or len(image.weights) != p.weight_words:
        raise ValueError("axon table or weight memory does not match the core parameters")
    if len(image.neurons) != p.neurons:
        raise ValueError(f"{len(image.neurons)} neurons given for a core of {p.neurons}")
    for a, e in enumerate(image.axons):
        if not (e.row_base + e.row_len <= p.weight_words and e.group_base + e.row_len <= g
                and 0 <= e.shift <= p.max_shift):  # fmt: skip
            raise ValueError(f"axon {a}: {e} does not fit the weight memory or groups")
    if any(not 0 <= n.profile < len(image.profiles) for n in image.neurons):
        raise ValueError("a neuron names a profile the core does not have")
    if p.neuron_decays and any(not (0 <= n.decay <= 1 << f and 0 <= n.decay_i <= 1 << f)
                               for n in image.neurons):  # fmt: skip
        raise ValueError(f"a neuron's multiplier decay is outside 0..2**{f}")


def memory_layouts(image: CoreImage) -> dict[str, data.Layout]:
    """The word layout of each memory of the core (see the module docstring)."""
    p = image.params
    g, s = p.groups, p.state_bits
    profile_bits = (p.profiles - 1).bit_length()
    state = {"v": signed(s), "s": unsigned(1)}
    par = {"nthreshold": signed(s), "bias": signed(s), "reset_value": signed(s)}
    if any(pr.kind in _CUBA for pr in image.profiles):
        state["i"], par["ibias"] = signed(s), signed(s)
    if p.neuron_decays:  # F+1-bit multipliers, where some profile multiplies
        for key, current in (("decay", False), ("decay_i", True)):
            if any(_mult(pr, current) for pr in image.profiles):
                par[key] = unsigned(p.decay_bits + 1)
    if profile_bits:
        par["profile"] = unsigned(profile_bits)
    return {
        "weights": data.ArrayLayout(signed(p.weight_bits), p.lanes),
        "state": data.StructLayout(state),
        "parameters": data.StructLayout(par),
        "accumulators": data.ArrayLayout(signed(p.acc_width), p.lanes),
        "axon_table": data.StructLayout({
            "row_base": index_bits(p.weight_words),
            "row_len": min(g, p.weight_words).bit_length(),
            "group_base": index_bits(g),
            "shift": max(1, p.max_shift.bit_length()),
            # row_len <= 1, <= 2, == 0: the issue logic reads these bits right after the table
            "single": 1, "double": 1, "empty": 1,
        }),
    }  # fmt: skip


def memory_bits(image: CoreImage) -> dict[str, int]:
    """Bits of each memory of the core: its word width (:func:`memory_layouts`) x its depth."""
    p = image.params
    depth = {"weights": p.weight_words, "state": p.neurons, "parameters": p.neurons,
             "accumulators": p.groups, "axon_table": p.axons}  # fmt: skip
    return {k: lay.size * depth[k] for k, lay in memory_layouts(image).items()}


class NeuronCore(wiring.Component):
    """A neuron core built from a :class:`~snnc.rtl.params.CoreImage`.

    Ports: ``events`` (in, stream of ``{axon, payload}``), ``cmd`` (in, stream of
    ``{first_group, n_groups}``, ``n_groups >= 1``), ``spikes`` (out, stream of core-local neuron
    indices) and ``busy`` (out, a register: an event or an update is in flight, from the cycle
    after it is taken to the cycle of its last memory write; the cycle model's busy interval
    less its first cycle, in which the event still counts in its FIFO and the command at the
    controller), ``clear`` (in, see the module docstring) and, when the parameters'
    ``weight_memory`` is ``"spram"``, ``load`` (in, stream of ``{addr, data}``: weight word
    ``addr`` gets the ``P`` lanes of ``data``, lane j in bits ``[j*W, (j+1)*W)``; ready while
    the core is idle). Such a core's weight memory is a :class:`~snnc.rtl.spram.SinglePortRam`
    (SPRAM on an iCE40 UltraPlus) whose contents the host must load before the first event;
    ``weight_data`` then only describes what to load.

    The memories' contents are :class:`~amaranth.hdl.MemoryData` attributes (``axon_data``,
    ``weight_data``, ``acc_data``, ``state_data``, ``param_data``) for simulation read-back.
    ``event_extra``/``update_extra``: a burst of events costs the sum of its ``row_len`` plus
    ``event_extra`` cycles, an update ``n_groups*P + update_extra`` (2/3, or 3/5 when ``deep``).
    """

    def __init__(self, image: CoreImage, *, deep: bool = True) -> None:
        _check(image)
        p = self.params = image.params
        self.image, self.deep = image, deep
        self.event_extra, self.update_extra = (5, 5) if deep else (2, 3)
        self.cuba = any(pr.kind in _CUBA for pr in image.profiles)
        n, g = p.neurons, p.groups
        self.profile_bits = (p.profiles - 1).bit_length()
        self.event_layout = data.StructLayout(
            {"axon": index_bits(p.axons), "payload": p.payload_bits}
        )
        self.cmd_layout = data.StructLayout(
            {"first_group": index_bits(g), "n_groups": g.bit_length()}
        )
        self.load_layout = data.StructLayout(
            {"addr": index_bits(p.weight_words), "data": p.lanes * p.weight_bits}
        )
        ports = {
            "events": In(stream.Signature(self.event_layout)),
            "cmd": In(stream.Signature(self.cmd_layout)),
            "spikes": Out(stream.Signature(index_bits(n))),
            "busy": Out(1),
            "clear": In(1),
        }  # fmt: skip
        if p.weight_memory == "spram":  # the host writes the weights (words of P lanes)
            ports["load"] = In(stream.Signature(self.load_layout))
        super().__init__(ports)
        lays = memory_layouts(image)
        self.axon_layout, self.state_layout = lays["axon_table"], lays["state"]
        self.param_layout = lays["parameters"]
        par = self.param_layout.members
        self.axon_data = MemoryData(
            shape=self.axon_layout, depth=p.axons,
            init=[{"row_base": e.row_base, "row_len": e.row_len, "group_base": e.group_base,
                   "shift": e.shift, "single": e.row_len <= 1, "double": e.row_len <= 2,
                   "empty": e.row_len == 0} for e in image.axons],
        )  # fmt: skip
        self.weight_data = MemoryData(
            shape=lays["weights"], depth=p.weight_words,
            init=[list(w) for w in image.weights],
        )  # fmt: skip
        self.acc_data = MemoryData(shape=lays["accumulators"], depth=g, init=[])
        self.state_data = MemoryData(shape=self.state_layout, depth=n, init=[])
        self.param_data = MemoryData(
            shape=self.param_layout, depth=n,
            init=[{k: ~ni.threshold if k == "nthreshold" else getattr(ni, k) for k in par}
                  for ni in image.neurons],
        )  # fmt: skip
        self._tab = _Profiles(image.profiles, 1 << self.profile_bits)

    def elaborate(self, platform):
        m = Module()
        m.submodules.axon_table = axons = Memory(data=self.axon_data)
        weights = self._weights(m)
        # no read of these ever uses a word written in the same cycle (the accumulators forward
        # it): Yosys need not emulate read-old-data on a collision
        m.submodules.acc = acc = Memory(data=self.acc_data, attrs=_NO_RW_CHECK)
        m.submodules.state = state = Memory(data=self.state_data, attrs=_NO_RW_CHECK)
        m.submodules.param = param = Memory(data=self.param_data)
        m.submodules.fifo = fifo = Fifo(len(self.spikes.payload), self.params.neurons)
        wiring.connect(m, wiring.flipped(self.spikes), fifo.r)
        acc_r, acc_w = acc.read_port(), acc.write_port()
        # the state clear: a pulse on `clear` (with the core idle) writes zeros to every state
        # word and accumulator word, one address per cycle from the next cycle on
        wiping = Signal()
        wipe_n = Signal(index_bits(self.params.neurons))
        with m.If(self.clear):
            m.d.sync += [wiping.eq(1), wipe_n.eq(0)]
        with m.Elif(wiping):
            m.d.sync += [wipe_n.eq(wipe_n + 1), wiping.eq(wipe_n != self.params.neurons - 1)]
        wipe = (wiping, wipe_n)
        upd_busy, r_go, r_group, clear = self._update(m, state, param, acc_r, fifo, wipe)
        ev_busy = self._events(m, axons, weights, acc_r, acc_w, upd_busy, (r_go, r_group), clear)
        m.d.comb += [self.busy.eq(ev_busy | upd_busy | wiping), self.cmd.ready.eq(~self.busy)]
        return m

    def _weights(self, m: Module):
        """The weight memory's read port: ``addr`` (driven by the event pipeline), ``data``
        (``P`` signed lanes, one cycle later) and ``data_q`` (the same two cycles later, for the
        deep pipeline). A block-RAM weight memory deeper than :data:`WEIGHT_BANK` words is
        split into banks whose outputs are registered before the bank is chosen, so that no
        multiplexer sits behind the block RAMs' slow clock-to-output."""
        p = self.params
        lanes = data.ArrayLayout(signed(p.weight_bits), p.lanes)
        addr = Signal(index_bits(p.weight_words), name="weight_addr")
        if p.weight_memory == "bram" and p.weight_words > WEIGHT_BANK and self.deep:
            return self._banked(m, addr, lanes)
        if p.weight_memory == "bram":
            m.submodules.weights = mem = Memory(data=self.weight_data)
            rp = mem.read_port()
            m.d.comb += rp.addr.eq(addr)
            rdata = rp.data
        else:
            ram = m.submodules.weights = SinglePortRam(p.lanes * p.weight_bits, p.weight_words)
            rdata = data.View(lanes, ram.r_data)
            load = self.load
            write = load.valid & load.ready
            m.d.comb += [
                load.ready.eq(~self.busy),
                ram.addr.eq(Mux(write, load.payload.addr, addr)),
                ram.w_data.eq(load.payload.data), ram.w_en.eq(write),
            ]  # fmt: skip
        q = Signal(lanes, reset_less=True, name="weight_q")
        m.d.sync += q.eq(rdata)
        return _Port(addr, rdata, q)

    def _banked(self, m: Module, addr, lanes) -> _Port:
        p = self.params
        n_banks = -(-p.weight_words // WEIGHT_BANK)
        words = list(self.image.weights)
        bank = Signal(index_bits(n_banks), name="weight_bank")
        # the bank of the word in the output registers: the address two cycles ago
        bank_q, bank_qq = (Signal.like(bank, name=f"weight_bank_{k}") for k in ("q", "qq"))
        m.d.comb += bank.eq(addr[index_bits(WEIGHT_BANK) :])
        m.d.sync += [bank_q.eq(bank), bank_qq.eq(bank_q)]
        regs = []
        for b in range(n_banks):
            chunk = words[b * WEIGHT_BANK : (b + 1) * WEIGHT_BANK]
            mem = m.submodules[f"weights{b}"] = Memory(shape=lanes, depth=len(chunk),
                                                       init=[list(w) for w in chunk])  # fmt: skip
            rp = mem.read_port()
            m.d.comb += rp.addr.eq(addr[: index_bits(WEIGHT_BANK)])
            r = Signal(lanes, reset_less=True, name=f"weight_q{b}")
            m.d.sync += r.eq(rp.data)
            regs.append(r)
        return _Port(addr, None, Array(regs)[bank_qq])

    # ------------------------------------------------------------------------------- events
    # ------------------------------------------------------------------------------- events

    def _weighted(self, word, shift, pay) -> list:
        """Per lane ``pay * (w << shift)``."""
        out = []
        for j in range(self.params.lanes):
            w = word[j] << shift if self.params.max_shift else word[j]
            out.append(Mux(pay[0], w, 0) if self.params.payload_bits == 1 else w * pay)
        return out

    def _events(self, m, axons, weights, acc_r, acc_w, upd_busy, upd_read, clear):
        """The event pipeline; the accumulator write port also clears words for the update.

        ``upd_read``: (valid, group) of the update's accumulator read; ``clear``: (valid, group)
        of the word the update clears (written in the next cycle)."""
        clear, clear_group = clear
        p, lay = self.params, self.axon_layout
        ax, wr = axons.read_port(), weights
        pend = Signal()  # an event was taken last cycle: the axon table answers now
        pay, ipay = (Signal(p.payload_bits, reset_less=True) for _ in range(2))
        active = Signal()  # issuing words 1.. of a row
        word = Signal(lay["row_base"].shape, reset_less=True)
        left = Signal(lay["row_len"].shape, reset_less=True)
        left_single = Signal(reset_less=True)  # left <= 1
        busy = Signal()  # registered: anything of an event in flight
        group = Signal(lay["group_base"].shape, reset_less=True)
        shift = Signal(lay["shift"].shape, reset_less=True)

        take = self.events.valid & self.events.ready
        row = ax.data
        issuing = (pend & ~row.empty) | active
        last = Mux(pend, row.single, left_single)
        cur_word = Mux(pend, row.row_base, word)
        cur_group = Mux(pend, row.group_base, group)
        cur_shift = Mux(pend, row.shift, shift)
        cur_pay = Mux(pend, pay, ipay)
        m.d.comb += [
            ax.addr.eq(self.events.payload.axon),
            # ~issuing | last, from registers and one table bit
            self.events.ready.eq(
                ~upd_busy & ~self.cmd.valid & Mux(pend, row.single, ~active | left_single)
            ),
            wr.addr.eq(cur_word),
        ]
        m.d.sync += [
            pend.eq(take),
            active.eq(issuing & ~last),
            # the increments of the table's fields and of the registers, then the choice: no
            # logic between the table's (slow) output and the carry chains
            word.eq(Mux(pend, row.row_base + 1, word + 1)),
            group.eq(Mux(pend, row.group_base + 1, group + 1)),
            left.eq(Mux(pend, row.row_len - 1, left - 1)),
            left_single.eq((pend & row.double) | (~pend & (left <= 2))), shift.eq(cur_shift),
            ipay.eq(cur_pay),
            pay.eq(self.events.payload.payload),  # used in the cycle after a take
        ]  # fmt: skip

        if self.deep:
            return self._accumulate_deep(m, wr, acc_r, acc_w, issuing, pend, active,
                                         (cur_group, cur_shift, cur_pay), upd_read,
                                         (clear, clear_group))  # fmt: skip
        # the short pipeline: the accumulator word is read in the issue stage
        s = p.acc_width
        add = Signal(data.ArrayLayout(signed(s), p.lanes), reset_less=True)
        rd = {"valid": issuing, "group": cur_group}
        c = _reg(m, {"shift": cur_shift, "pay": Mux(clear, 0, cur_pay)}, "c")
        weighted = self._weighted(wr.data, c["shift"], c["pay"])
        m.d.comb += [add[j].eq(w) for j, w in enumerate(weighted)]
        m.d.sync += busy.eq(pend | active | clear)

        # write stage: registers of the word read in the previous cycle
        c_valid, c_fwd = Signal(), Signal()
        c_group = Signal(lay["group_base"].shape, reset_less=True)
        fwd = Signal(acc_w.data.shape(), reset_less=True)
        m.d.comb += acc_r.addr.eq(Mux(upd_read[0], upd_read[1], rd["group"]))
        m.d.sync += [
            c_valid.eq(rd["valid"] | clear),
            c_group.eq(Mux(clear, clear_group, rd["group"])),
            # the word read now is written this cycle: its new value comes from `fwd`; a clear
            # forwards 0 (with a zero addend)
            c_fwd.eq(clear | (c_valid & (c_group == rd["group"]))),
        ]
        with m.If(clear):
            m.d.sync += fwd.eq(0)
        with m.Else():
            m.d.sync += fwd.eq(acc_w.data)
        # both sums, then the choice: no logic between the memory and the carry chain
        new = [Mux(c_fwd, fwd[j] + add[j], acc_r.data[j] + add[j])[:s] for j in range(p.lanes)]
        m.d.comb += [acc_w.addr.eq(c_group), acc_w.data.eq(Cat(*new)), acc_w.en.eq(c_valid)]
        # = pend | active | c_valid, from registers only (`issuing` is
        # pend | active but for an empty row, which is never routed to the core)
        return busy | pend

    def _accumulate_deep(self, m, wr, acc_r, acc_w, issuing, pend, active, cur, upd_read,
                         clear) -> Value:  # fmt: skip
        """ARCHITECTURE.md's event pipeline after the issue stage (word k of an event taken in
        ``t``): ``t+1+k`` weight read; ``t+2+k`` the weight word is registered (R1 -> R2);
        ``t+3+k`` the weighted lanes are registered and the accumulator word is read;
        ``t+4+k`` the sums (S); ``t+5+k`` the write (W). A read misses the writes of its own
        cycle and of the next one: the sums of S and W are forwarded to it. A clear of the
        update (or the wipe) writes a zero word through W. Returns the busy flag."""
        p, s = self.params, self.params.acc_width
        cur_group, cur_shift, cur_pay = cur
        clear, clear_group = clear
        r1 = _reg(m, {"valid": issuing, "group": cur_group, "shift": cur_shift, "pay": cur_pay},
                  "r1")  # fmt: skip
        r2 = _reg(m, dict(r1), "r2")
        wq = wr.data_q  # the weight word, registered
        lanes = data.ArrayLayout(signed(s), p.lanes)
        add = Signal(lanes, reset_less=True)
        m.d.sync += [add[j].eq(w) for j, w in enumerate(self._weighted(wq, r2["shift"], r2["pay"]))]
        # events and updates never overlap: the event's address whenever one is in R2
        m.d.comb += acc_r.addr.eq(Mux(r2["valid"], r2["group"], upd_read[1]))
        # S: the word read in R2's cycle plus `add`; W: the registered sum being written
        s_valid, w_valid = Signal(), Signal()
        s_group, w_group = (Signal.like(r2["group"], reset_less=True) for _ in range(2))
        new_q, new_qq = Signal(lanes, reset_less=True), Signal(lanes, reset_less=True)
        sel_q, sel_qq = Signal(), Signal()  # the read missed S's sum / W's write
        m.d.sync += [
            s_valid.eq(r2["valid"]), s_group.eq(r2["group"]),
            sel_q.eq(s_valid & (s_group == r2["group"])),
            sel_qq.eq(w_valid & (w_group == r2["group"])),
            new_qq.eq(new_q),
        ]  # fmt: skip
        # two sums, then the choice: no logic between the memory and its carry chain; the
        # forwarded word is chosen from registers before the other
        fwd = [Mux(sel_q, new_q[j], new_qq[j]) for j in range(p.lanes)]
        sums = [Mux(sel_q | sel_qq, fwd[j] + add[j], acc_r.data[j] + add[j])[:s]
                for j in range(p.lanes)]  # fmt: skip
        with m.If(clear):
            m.d.sync += [w_valid.eq(1), w_group.eq(clear_group), new_q.eq(0)]
        with m.Else():
            m.d.sync += [w_valid.eq(s_valid), w_group.eq(s_group), new_q.eq(Cat(*sums))]
        m.d.comb += [acc_w.addr.eq(w_group), acc_w.data.eq(new_q), acc_w.en.eq(w_valid)]
        return Cat(pend, active, r1["valid"], r2["valid"], s_valid, w_valid).any()

    # ------------------------------------------------------------------------------- update

    def _update(self, m, state, param, acc_r, fifo, wipe):
        p = self.params
        lanes, n_bits = p.lanes, index_bits(p.neurons)
        st_r, st_w, pa_r = state.read_port(), state.write_port(), param.read_port()
        active, busy = Signal(), Signal()
        u_last = Signal()  # the neuron of the next cycle is its group's last lane
        u_n = Signal(n_bits, reset_less=True)
        u_left = Signal(p.neurons.bit_length(), reset_less=True)
        u_group = Signal(index_bits(p.groups), reset_less=True)
        u_lane = Signal(index_bits(lanes), reset_less=True)

        go = self.cmd.valid & self.cmd.ready
        cmd = self.cmd.payload
        r_go = go | active
        # each next value for a new command and for a running one, chosen by `go` at the end
        # (`go` depends on `busy` and the command's valid)
        # the read addresses: the running command's, else the waiting command's (reads are
        # harmless; `go` itself, a function of every busy flag, stays off the address paths)
        r_n = Mux(active, u_n, cmd.first_group * lanes)
        r_group = Mux(active, u_group, cmd.first_group)
        n_cmd = cmd.n_groups * lanes
        more = (go & (n_cmd > 1)) | (active & (u_left > 1))
        if lanes > 1:  # a command's first neuron is lane 0, not its group's last
            nxt_lane = Mux(go, 1, Mux(u_last, 0, u_lane + 1))
            nxt_group = Mux(go, cmd.first_group, u_group + u_last)
            nxt_last = Mux(go, lanes == 2, ~u_last & (u_lane == lanes - 2))
        else:
            nxt_lane, nxt_group, nxt_last = 0, r_group + 1, 1
        m.d.sync += [
            active.eq(more),
            u_n.eq(Mux(go, cmd.first_group * lanes + 1, u_n + 1)),
            u_left.eq(Mux(go, n_cmd - 1, u_left - 1)),
            u_lane.eq(nxt_lane), u_group.eq(nxt_group), u_last.eq(more & nxt_last),
        ]  # fmt: skip
        r_lane = Mux(active, u_lane, 0)
        m.d.comb += [st_r.addr.eq(r_n), pa_r.addr.eq(r_n)]

        # stages: E1 = memory outputs; deep: E1 | E2 | E3 | E4 | W, else E1+E2 (step 0, 1) | W
        pipe = [_reg(m, {"valid": r_go, "n": r_n, "lane": r_lane}, "e1")]
        vals = self._step0(st_r.data, pa_r.data, acc_r.data[pipe[0]["lane"]])
        for k, step in enumerate((self._step1, self._step2, self._step3)):
            if self.deep or k > 0:
                pipe.append(_reg(m, {"valid": pipe[-1]["valid"], "n": pipe[-1]["n"]}, f"e{k + 2}"))
                vals = _reg(m, vals, f"e{len(pipe)}")
            vals = step(vals)
        if self.deep:
            pipe.append(_reg(m, {"valid": pipe[-1]["valid"], "n": pipe[-1]["n"]}, "w"))
            vals = _reg(m, vals, "w")
        w = pipe[-1]
        spike = vals["s"]
        v_out = Mux(spike, Mux(vals["rv_s"], vals["rv"], Mux(vals["sub"], vals["vsub"],
                                                              vals["vsat"])),
                    Mux(vals["force"], vals["rv"], vals["vsat"]))  # fmt: skip
        fields = {"v": v_out, "s": spike} | ({"i": vals["i"]} if self.cuba else {})
        wiping, wipe_n = wipe
        m.d.comb += [
            st_w.addr.eq(Mux(wiping, wipe_n, w["n"])), st_w.en.eq(w["valid"] | wiping),
            *(st_w.data[k].eq(Mux(wiping, 0, val)) for k, val in fields.items()),
            fifo.w_en.eq(w["valid"] & spike), fifo.w_data.eq(w["n"]),
        ]  # fmt: skip
        nxt = r_go  # in flight next cycle: what moves into E1 .. W now
        for st in pipe[:-1]:
            nxt = nxt | st["valid"]
        m.d.sync += busy.eq(nxt)  # = active | the stages' valid
        # the clear of a group's word: a register unless lanes == 1 (then with the command)
        clear = u_last if lanes > 1 else r_go
        group = u_group if lanes > 1 else r_group
        # the wipe clears accumulator word n in the cycle after n's state (n < groups)
        wipe_acc = wiping & (wipe_n < p.groups)
        return busy, r_go, r_group, (clear | wipe_acc, Mux(wiping, wipe_n, group))

    def _step0(self, st, pa, x) -> dict:
        """Memory outputs and everything decoded from the profile (registered when ``deep``)."""
        tab = self._tab
        prof = pa.profile if self.profile_bits else Const(0, 1)
        ns = tab.flag(prof, lambda q: q.timing == Timing.NEXT_STEP)
        gated = tab.flag(prof, lambda q: q.timing == Timing.GATED)
        sub = tab.flag(prof, lambda q: q.reset == Reset.SUBTRACT)
        tov = tab.flag(prof, lambda q: q.reset == Reset.TO_VALUE)
        cuba = tab.flag(prof, lambda q: q.kind in _CUBA)
        # the parameter memory holds nth = ~threshold = -threshold - 1, so that every threshold
        # term is an addition (no inverters before the carry chains): y - th - b = y + nth + ~b;
        # y - 2*th - b = y + nth2 + ~b with nth2 = 2*nth + 1
        nth = pa.nthreshold
        nth2 = Cat(Const(1, 1), nth).as_signed()
        c1 = ns & sub & st.s  # NEXT_STEP subtract: v - threshold
        r = {
            "v": st.v, "nth": nth, "bias": pa.bias, "rv": pa.reset_value, "x": x,
            "gated": gated,
            "nstrict": ~tab.flag(prof, lambda q: q.strict),
            "sat": tab.flag(prof, lambda q: q.saturate),
            "spiking": tab.flag(prof, lambda q: q.kind in _SPIKING),
            "c1": c1,
            "T_A": Mux(c1, nth, 0),  # K_A = bias - c1*th = bias + T_A + c1
            "T_B": Mux(c1, nth2, nth),  # K_B = K_A - th = bias + T_B + 1
            "force": ns & tov & st.s,
            "sub": ~ns & (gated | sub),
            # on a spike: reset_value (a NEXT_STEP reset, or IMMEDIATE to-value)
            "rv_s": (ns & tov & st.s) | (~ns & ~gated & tov),
        }  # fmt: skip
        r |= self._decay_operands(prof, st.v, False, pa)
        if self.cuba:
            r |= {"i": st.i, "ibias": pa.ibias, "cuba": cuba, "cibias": Mux(cuba, pa.ibias, 0)}
            r |= self._decay_operands(prof, st.i, True, pa)
        return {k: Value.cast(v) for k, v in r.items()}

    def _decay_operands(self, prof, y, current: bool, pa) -> dict:
        """The multiplier operand d (the profile's, or the neuron's from the parameter memory
        ``pa``) and ``~(y >> k)`` of the profile's decay of v (or i)."""
        tab, f, s, profs = self._tab, self.params.decay_bits, self.params.state_bits, []
        name = "i" if current else "v"
        profs = [q for q in self.image.profiles if q.kind in _CUBA or not current]
        o = {f"{name}_mult": tab.flag(prof, lambda q: _mult(q, current))}
        if any(_mult(q, current) for q in profs) and self.params.neuron_decays:
            o[f"d_{name}"] = pa.decay_i if current else pa.decay
        elif any(_mult(q, current) for q in profs):
            o[f"d_{name}"] = tab.value(prof, lambda q: (q.decay_i if current else q.decay)
                                       if _mult(q, current) else 0, unsigned(f + 1))  # fmt: skip
        if any(not _mult(q, current) for q in profs):

            def amount(q: Profile):
                k = q.decay_i if current else q.decay
                if _mult(q, current) or not _leaks(q, current) or k < 0:
                    return Const(-1, signed(s))  # ~0
                return ~(y >> k)

            o[f"{name}_nsh"] = tab.value(prof, amount, signed(s))
        return o

    def _step1(self, r: dict) -> dict:
        """Offsets with the thresholds and the input folded in; decays (products, shifts)."""
        s = self.params.state_bits
        v, nth, bias, nstrict = r["v"], r["nth"], r["bias"], r["nstrict"]
        nth2 = Cat(Const(1, 1), nth).as_signed()
        rr = r["gated"] & ~_plus(v, nth, 0)[-1]  # GATED: r = v[t-1] > threshold
        # K_C: bias - (1 + r + c1)*th - strict (a spike: v + K_C >= 0); each K also holds the
        # input (x, or x + ibias for Cuba*); decay(v) (and decay(i)) is added in step 2
        offsets = {
            "A": ([bias, r["T_A"]], r["c1"]),
            "B": ([bias, r["T_B"]], Const(1, 1)),
            "C0": ([bias, nth], nstrict),
            "C1": ([bias, nth2], nstrict),
        }
        inp = [r["x"], r["cibias"]] if self.cuba else [r["x"]]
        wide = s + _EXTRA
        k = {n: _sum([*t, *inp, c], wide) for n, (t, c) in offsets.items()}
        # K_C0 / K_C1: r + c1 = 0 / 1 (chosen in step 3: no logic after the carry chains)
        o = {k: r[k] for k in _PASS if k in r}
        o |= {"K_A": k["A"], "K_B": k["B"], "K_C0": k["C0"], "K_C1": k["C1"], "sel": r["c1"] | rr,
              "rr": rr, "s_rv": ~_plus(r["rv"], nth, nstrict)[-1]}  # fmt: skip
        if any(q.saturate for q in self.image.profiles):
            lo, hi = Const(-(1 << (s - 1)), signed(s)), Const((1 << (s - 1)) - 1, signed(s))
            o |= {  # a clamped v: its comparison (for r = 0 / 1) and v - threshold
                "s_hi0": ~_plus(hi, nth, nstrict)[-1], "s_hi1": ~_plus(hi, nth2, nstrict)[-1],
                "s_lo0": ~_plus(lo, nth, nstrict)[-1], "s_lo1": ~_plus(lo, nth2, nstrict)[-1],
                "hi_m": _plus(hi, nth, 1), "lo_m": _plus(lo, nth, 1),
            }  # fmt: skip
            if self.cuba:  # the offsets without the input, for v from a saturated current
                k0 = {n: _sum([*t, c], wide) for n, (t, c) in offsets.items()}
                o |= {f"K0_{n}": val for n, val in k0.items()}
        o |= self._decay(r, "v")
        if self.cuba:
            o |= {"xib": _plus(r["x"], r["ibias"], 0)} | self._decay(r, "i")
        return o

    def _decay(self, r: dict, name: str) -> dict:
        """``{name}_p*``: partial products ``y*d``; ``{name}_sh``: ``y - (y >> k)``."""
        y, o = r[name], {f"{name}_mult": r[f"{name}_mult"]}
        if f"d_{name}" in r:
            d = r[f"d_{name}"]
            if self.params.state_bits > 16:  # two multipliers of <= 17 x (F+1) bits
                o |= {f"{name}_p0": y[:16] * d, f"{name}_p1": y[16:].as_signed() * d}
            else:
                o[f"{name}_p0"] = y * d
        if f"{name}_nsh" in r:
            o[f"{name}_sh"] = _plus(y, r[f"{name}_nsh"], 1)
        return o

    def _decayed(self, r: dict, name: str, current: bool) -> list:
        """Terms whose sum is ``decay(y)``: ``(y*d + 2**(F-1)) >> F`` or ``y - (y >> k)``."""
        f = self.params.decay_bits
        mult, terms = r[f"{name}_mult"], []
        if f"{name}_p0" in r:
            p0, p1 = r[f"{name}_p0"], r.get(f"{name}_p1")
            if p1 is not None and f > 16:
                p0, p1 = p0 + (p1 << 16), None
            # (y*d + 2**(F-1)) >> F: the bit F-1 of y*d rounds up; p1 has no bits below 16
            terms = [p0 >> f, p0[f - 1]] + ([p1 << (16 - f)] if p1 is not None else [])
        if f"{name}_sh" in r:
            if not terms:
                return [r[f"{name}_sh"]]
            terms[0] = Mux(mult, terms[0], r[f"{name}_sh"])
            terms[1:] = [Mux(mult, t, 0) for t in terms[1:]]
        return terms or [r[name]]  # IF only: no decay

    def _step2(self, r: dict) -> dict:
        """The sums v + K_A, v + K_B, v + K_C: ``decay(v)`` (+ ``decay(i)``) + offset + input."""
        s = self.params.state_bits
        lo, hi = -(1 << (s - 1)), (1 << (s - 1)) - 1
        o = {k: r[k] for k in _PASS if k in r}
        dec = self._decayed(r, "v", False)
        if self.cuba:  # i = decay(i) + x + ibias; v = decay(v) + i + bias (the K hold x + ibias)
            dec_i = self._decayed(r, "i", True)
            o["i"] = _sum([*dec_i, r["xib"]], s + _EXTRA)
            dec = [*dec, *(Mux(r["cuba"], t, 0) for t in dec_i)]
        for k in ("A", "B", "C0", "C1"):
            o[f"v{k}"] = _sum([*dec, r[f"K_{k}"]], s + _EXTRA)
            if f"K0_{k}" in r:  # v from a saturated current
                dec_v = self._decayed(r, "v", False)
                o[f"v{k}_hi"] = _sum([*dec_v, r[f"K0_{k}"], Const(hi, signed(s))], s + _EXTRA)
                o[f"v{k}_lo"] = _sum([*dec_v, r[f"K0_{k}"], Const(lo, signed(s))], s + _EXTRA)
        return o

    def _step3(self, r: dict) -> dict:
        """Saturation, comparison, and the candidate membranes of the reset."""
        s = self.params.state_bits
        lo, hi = -(1 << (s - 1)), (1 << (s - 1)) - 1

        def bounds(val):
            top = val[s - 1 :]
            return ~val[-1] & (top != 0), val[-1] & (top != (1 << len(top)) - 1)

        sel = r["sel"]
        va, vb, vc = r["vA"], r["vB"], Mux(sel, r["vC1"], r["vC0"])
        o = {k: r[k] for k in ("rv", "force", "sub", "rv_s")}
        sat = r["sat"]
        if self.cuba:
            i_new = r["i"]
            if "vA_hi" in r:
                i_over, i_under = bounds(r["i"])
                i_over, i_under = i_over & sat & r["cuba"], i_under & sat & r["cuba"]
                i_new = Mux(i_over, hi, Mux(i_under, lo, r["i"]))

                def pick(k):
                    return Mux(i_over, r[f"v{k}_hi"], Mux(i_under, r[f"v{k}_lo"], r[f"v{k}"]))

                va, vb, vc = pick("A"), pick("B"), Mux(sel, pick("C1"), pick("C0"))
            o["i"] = Mux(r["cuba"], i_new, 0)[:s].as_signed()
        spike, vsat, vsub = ~vc.as_signed()[-1], va, vb
        if "s_hi0" in r:
            over, under = bounds(va.as_signed())
            over, under = over & sat, under & sat
            # (a NEXT_STEP subtraction happened before the clamp: only GATED's r counts here)
            rr = r["rr"]
            s_hi, s_lo = Mux(rr, r["s_hi1"], r["s_hi0"]), Mux(rr, r["s_lo1"], r["s_lo0"])
            spike = Mux(over, s_hi, Mux(under, s_lo, spike))
            vsat = Mux(over, hi, Mux(under, lo, va))
            vsub = Mux(over, r["hi_m"], Mux(under, r["lo_m"], vb))
        o["s"] = r["spiking"] & Mux(r["force"], r["s_rv"], spike)
        o["vsat"], o["vsub"] = vsat[:s].as_signed(), vsub[:s].as_signed()
        return o


class _Port:
    """The weight memory seen by the event pipeline: ``addr``, ``data`` (one cycle after the
    address; ``None`` when banked) and ``data_q`` (two cycles after)."""

    def __init__(self, addr, data, data_q) -> None:
        self.addr, self.data, self.data_q = addr, data, data_q


def _extend(t, width: int):
    """``t`` sign- or zero-extended (or truncated) to ``width`` bits, as an unsigned value."""
    t = Value.cast(t)
    if len(t) >= width:
        return t[:width]
    pad = t[-1].replicate(width - len(t)) if t.shape().signed else Const(0, width - len(t))
    return Cat(t, pad)


def _plus(a, b, bit):
    """``a + b + bit`` (signed, exact) with one carry chain: ``(2a + 1 + 2b + bit) >> 1``."""
    width = max(len(Value.cast(a)), len(Value.cast(b))) + 1
    total = Cat(Const(1, 1), _extend(a, width)) + Cat(bit, _extend(b, width))
    return total[1 : width + 1].as_signed()


#: flags and values that steps 1-3 pass on
_PASS = ("rv", "force", "s_rv", "sat", "spiking", "sub", "rv_s", "cuba", "sel", "rr",
         "s_hi0", "s_hi1", "s_lo0", "s_lo1", "hi_m", "lo_m")  # fmt: skip


def _sum(terms: list, width: int):
    """The sum of ``terms`` in ``width`` signed bits (where it is exact): a carry-save tree of
    3:2 compressors, the 1-bit terms in the free low bits of its carry vectors, and one adder."""

    def ext(t):
        return _extend(t, width)

    bits = [t for t in terms if len(t) == 1 and not t.shape().signed]
    vecs = [ext(t) for t in terms if not (len(t) == 1 and not t.shape().signed)]
    while len(vecs) > 2 or len(bits) > 1:
        while len(vecs) < 3:
            vecs.append(Const(0, width))
        a, b, c = vecs[:3]
        low = bits.pop() if bits else Const(0, 1)
        vecs = [*vecs[3:], a ^ b ^ c, Cat(low, ((a & b) | (a & c) | (b & c))[: width - 1])]
    if len(vecs) == 1:
        vecs.append(Const(0, width))
    if bits:  # the carry-in of the last adder: (2a + 1 + 2b + bit) >> 1
        total = Cat(Const(1, 1), vecs[0]) + Cat(bits[0], vecs[1])
        return total[1 : width + 1].as_signed()
    return (vecs[0] + vecs[1])[:width].as_signed()
