"""The accelerator on a development board: its UART link protocol and bitstream builds.

:class:`BoardTop` puts :class:`~snnc.rtl.top.Accelerator` behind a
:class:`~snnc.rtl.uart.HostLink` on the board's USB-serial bridge (``platform.request("uart",
0)``), in the board's default clock domain: no PLL, the accelerator runs at the board's
oscillator (12 MHz on the iCEBreaker, 25 MHz on the ULX3S), and the UART divisor is ``clock //
baud`` (default 115200 baud: 104 on the iCEBreaker, 217 on the ULX3S). LED 0 shows ``running``
(stretched so a step is visible), LED 1 lights on a link error (receiver overrun or framing
error; sticky until reset).

Link protocol
-------------

Let ``W = acc.in_layout.size`` (the bits of a ``host_in`` word) and ``L =
acc.load_layout.size`` (the bits of a ``load`` word). Every word the host sends is a *link word*
of ``W + 1`` bits, travelling as ``ceil((W + 1) / 8)`` bytes, little-endian
(:func:`snnc.host.link.encode`):

- top bit (bit ``W``) 0: bits ``0 .. W-1`` are a ``host_in`` word ``{element, payload, end,
  clear}`` (the host protocol of ``snnc/rtl/top.py``), passed on unchanged;
- top bit 1: bits ``0 .. W-1`` are a *load chunk*. A load word ``{core, addr, data}`` is sent as
  ``K = ceil(L / W)`` chunks, least significant first (chunk ``k`` holds load-word bits ``k*W ..
  k*W + W - 1``, zero-padded above ``L``); after the ``K``-th chunk the board writes the load
  word to the accelerator's ``load`` port. When the weights are in the bitstream
  (``acc.loads`` false) chunks are taken and dropped. A ``host_in`` word that follows load
  chunks waits until the last load word is written, so the two kinds of word keep their order;
  a ``host_in`` word between the chunks of one load word drops the chunks before it (the next
  chunk starts a new load word).

Every ``host_out`` word ``{element, end, cycles}`` goes back as a ``O = acc.out_layout.size``-bit
word (``ceil(O / 8)`` bytes, little-endian): the output spikes of a step, then its end-of-step
marker (``end = 1``, ``cycles`` the step's cycle count).

The link buffers one link word and one byte: the host must not send a step's words before the
previous step's end marker is back (:func:`snnc.host.run.run_on_board` streams step by step).
Between steps the accelerator takes a word per cycle, except after a clear word (about ``N``
cycles, ``N`` the neurons per core): the words sent right after a clear word are safe while ``N
< 30 * divisor`` (three byte times; 3120 cycles on the iCEBreaker, 6510 on the ULX3S at 115200
baud, more than any preset's ``N``).
:func:`host_stream` gives every link word of a batch (load chunks when the weights are loaded,
then per batch element a clear word, except before the first, and its steps' words, each step
closed by an end word); :func:`decode_outputs` turns the words that come back into the output
spikes and the cycles of every step.

Bitstreams
----------

:func:`build_bitstream` builds a :class:`BoardTop` with the amaranth-boards platform of a board
in :data:`BOARDS` and the YoWASP tools (``snnc/rtl/toolchain.py``): Yosys (iCE40: ``synth_ice40
-dsp``; ECP5: ``synth_ecp5`` with its LUT mapping by ``abc -lut 4:7``, as ``snnc/rtl/synth.py``
does, since ``abc9`` crashes inside YoWASP's Yosys on the neuron core), nextpnr with
``--timing-allow-fail --report report.json`` (a missed timing target is a result: ``met`` is
false) and ``icepack`` / ``ecppack``. Every tool's output goes to ``toolchain.log`` in the build
directory. A tool that fails raises :class:`~snnc.errors.BackendError` naming the step, with the
last lines of the log; a design that does not fit the device raises
:class:`~snnc.errors.ResourceError` naming the resource (nextpnr's utilisation, or, before
synthesis, a lower bound on the memory bits the cores need against all the bits the device can
store).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth import Cat, Elaboratable, Module, Signal
from amaranth.lib import io
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_25F_Platform, ULX3S_85F_Platform

from snnc.backends.fpga.images import AcceleratorImage
from snnc.backends.fpga.rtl_config import accelerator_config, host_words, load_words, output_array
from snnc.errors import BackendError, ResourceError
from snnc.rtl.synth import nextpnr_report
from snnc.rtl.toolchain import log_tail
from snnc.rtl.top import Accelerator, AcceleratorConfig
from snnc.rtl.uart import HostLink

__all__ = [
    "BOARDS", "DEFAULT_BAUD", "BitstreamResult", "BoardTop", "LinkFormat", "build_bitstream",
    "decode_outputs", "host_stream", "link_format", "load_stream", "memory_precheck",
    "overflow", "split_steps", "step_streams",
]  # fmt: skip

#: board name -> (amaranth-boards platform class, device family, target preset of its device)
BOARDS = {
    "icebreaker": (ICEBreakerPlatform, "ice40", "ice40-up5k"),
    "ulx3s-25f": (ULX3S_25F_Platform, "ecp5", "ecp5-25k"),
    "ulx3s-85f": (ULX3S_85F_Platform, "ecp5", "ecp5-85k"),
}

DEFAULT_BAUD = 115200
LED_HOLD_S = 0.05  #: how long LED 0 stays lit after a step (s)


# ----------------------------------------------------------------------------- link format


@dataclass(frozen=True)
class LinkFormat:
    """The bit layout of the link words of one accelerator (see the module docstring)."""

    in_width: int  #: W: bits of a host_in word
    out_width: int  #: O: bits of a host_out word
    load_width: int  #: L: bits of a load word
    loads: bool  #: the weights are loaded by the host
    in_fields: dict  #: host_in field -> (offset, width)
    out_fields: dict  #: host_out field -> (offset, width)
    load_fields: dict  #: load field -> (offset, width)

    @property
    def link_width(self) -> int:
        """Bits of a link word the host sends: ``W + 1``."""
        return self.in_width + 1

    @property
    def chunks(self) -> int:
        """Link words per load word: ``ceil(L / W)``."""
        return -(-self.load_width // self.in_width)

    @classmethod
    def of(cls, acc: Accelerator) -> LinkFormat:
        def fields(layout) -> dict:
            return {name: (f.offset, f.width) for name, f in layout}

        return cls(
            acc.in_layout.size, acc.out_layout.size, acc.load_layout.size, acc.loads,
            fields(acc.in_layout), fields(acc.out_layout), fields(acc.load_layout),
        )  # fmt: skip

    def _pack(self, fields: dict, values: dict) -> int:
        word = 0
        for name, v in values.items():
            off, width = fields[name]
            if not 0 <= v < 1 << width:
                raise ValueError(f"{name} = {v} does not fit in {width} bits")
            word |= v << off
        return word

    def event(self, element: int, payload: int) -> int:
        """The link word of one input event."""
        return self._pack(self.in_fields, {"element": element, "payload": payload})

    def end(self) -> int:
        """The link word that ends a step's input (the step starts)."""
        return self._pack(self.in_fields, {"end": 1})

    def clear(self) -> int:
        """The link word that starts a new run (every core's state wiped)."""
        return self._pack(self.in_fields, {"end": 1, "clear": 1})

    def load_chunks(self, core: int, addr: int, data: int) -> list[int]:
        """The link words (load chunks, least significant first) of one load word."""
        word = self._pack(self.load_fields, {"core": core, "addr": addr, "data": data})
        W, mask = self.in_width, (1 << self.in_width) - 1
        return [(1 << W) | ((word >> (k * W)) & mask) for k in range(self.chunks)]

    def out_word(self, word: int) -> tuple[int, int, int]:
        """``(element, end, cycles)`` of a host_out word."""
        fields = (self.out_fields[k] for k in ("element", "end", "cycles"))
        return tuple((word >> off) & ((1 << w) - 1) for off, w in fields)


def link_format(image_or_acc) -> LinkFormat:
    """The :class:`LinkFormat` of an :class:`AcceleratorImage` (or an :class:`Accelerator`, a
    :class:`BoardTop`, an :class:`AcceleratorConfig`)."""
    if isinstance(image_or_acc, LinkFormat):
        return image_or_acc
    if isinstance(image_or_acc, BoardTop):
        return image_or_acc.format
    if isinstance(image_or_acc, AcceleratorImage):
        image_or_acc = accelerator_config(image_or_acc)
    if isinstance(image_or_acc, AcceleratorConfig):
        image_or_acc = Accelerator(image_or_acc)  # only the layouts: nothing is elaborated
        image_or_acc._MustUse__used = True  # no UnusedElaboratable warning
    return LinkFormat.of(image_or_acc)


# ----------------------------------------------------------------------------- the board top


class BoardTop(Elaboratable):
    """The accelerator behind a UART host link (protocol: the module docstring).

    Parameters
    ----------
    config : AcceleratorConfig
        The accelerator (:func:`~snnc.backends.fpga.rtl_config.accelerator_config`).
    baud : int
        Baud rate; the divisor is ``platform.default_clk_frequency // baud``.
    divisor : int, optional
        Clock cycles per bit, instead of deriving it from ``baud`` (simulation).

    When elaborated for a platform with resources (an amaranth-boards platform), ``rx`` and
    ``tx`` are the board's ``uart`` 0 and the LEDs are ``led`` 0 and 1. Elaborated without a
    platform (simulation), the link is on the signals :attr:`rx` (in, idle high) and :attr:`tx`
    (out), and ``divisor`` must be given; :attr:`led_running` and :attr:`led_error` are the LED
    drivers.
    """

    def __init__(self, config: AcceleratorConfig, *, baud: int = DEFAULT_BAUD,
                 divisor: int | None = None) -> None:  # fmt: skip
        self.config, self.baud, self.divisor = config, baud, divisor
        self.acc = Accelerator(config)
        self.format = LinkFormat.of(self.acc)
        self.rx = Signal(init=1)
        self.tx = Signal(init=1)
        self.led_running = Signal()
        self.led_error = Signal()

    def divisor_for(self, platform) -> int:
        if self.divisor is not None:
            return self.divisor
        clock = getattr(platform, "default_clk_frequency", None)
        if clock is None:
            raise BackendError("BoardTop without a platform clock needs divisor=")
        return int(clock) // self.baud

    def elaborate(self, platform):
        m = Module()
        fmt = self.format
        W, L = fmt.in_width, fmt.load_width
        acc = m.submodules.acc = self.acc
        divisor = self.divisor_for(platform)
        link = m.submodules.link = HostLink(fmt.link_width, fmt.out_width, divisor)

        if platform is not None and hasattr(platform, "request"):
            uart = platform.request("uart", 0, dir="-")
            rx = m.submodules.rx_buf = io.Buffer("i", uart.rx)
            tx = m.submodules.tx_buf = io.Buffer("o", uart.tx)
            m.d.comb += [link.rx.eq(rx.i), tx.o.eq(link.tx)]
            for k, drive in enumerate((self.led_running, self.led_error)):
                led = m.submodules[f"led{k}"] = io.Buffer("o", platform.request("led", k, dir="-"))
                m.d.comb += led.o.eq(drive)
        else:
            m.d.comb += [link.rx.eq(self.rx), self.tx.eq(link.tx)]

        # link words in: host_in words pass through, load chunks are assembled
        word = link.host_in.payload
        is_chunk = word[W]
        K = fmt.chunks
        buf = Signal(K * W, reset_less=True)  # chunks shift in at the top
        got = Signal(range(K))  # chunks of the current load word taken
        pending = Signal()  # an assembled load word waits for the load port
        m.d.comb += acc.host_in.payload.eq(word[:W])
        with m.If(is_chunk):
            m.d.comb += link.host_in.ready.eq(~pending)
        with m.Else():
            m.d.comb += [acc.host_in.valid.eq(link.host_in.valid & ~pending),
                         link.host_in.ready.eq(acc.host_in.ready & ~pending)]  # fmt: skip
        with m.If(link.host_in.valid & link.host_in.ready & is_chunk):
            m.d.sync += buf.eq(Cat(buf[W:], word[:W]))
            with m.If(got == K - 1):
                m.d.sync += [got.eq(0), pending.eq(int(acc.loads))]
            with m.Else():
                m.d.sync += got.eq(got + 1)
        with m.If(link.host_in.valid & link.host_in.ready & ~is_chunk):
            m.d.sync += got.eq(0)  # resync: a load word's chunks are consecutive
        if acc.loads:
            m.d.comb += [acc.load.valid.eq(pending), acc.load.payload.eq(buf[:L])]
            with m.If(acc.load.valid & acc.load.ready):
                m.d.sync += pending.eq(0)

        # host_out words back
        m.d.comb += [link.host_out.valid.eq(acc.host_out.valid),
                     link.host_out.payload.eq(acc.host_out.payload),
                     acc.host_out.ready.eq(link.host_out.ready)]  # fmt: skip

        # LEDs: running, stretched; a sticky link error
        clock = getattr(platform, "default_clk_frequency", None)
        hold = max(1, int(clock * LED_HOLD_S)) if clock else 1
        stretch = Signal(range(hold + 1))
        with m.If(acc.running):
            m.d.sync += stretch.eq(hold)
        with m.Elif(stretch != 0):
            m.d.sync += stretch.eq(stretch - 1)
        m.d.comb += [self.led_running.eq(acc.running | (stretch != 0)),
                     self.led_error.eq(link.overrun | link.frame_error)]  # fmt: skip
        return m


# ----------------------------------------------------------------------------- host side


def load_stream(image: AcceleratorImage, fmt: LinkFormat | None = None) -> list[int]:
    """The load chunks of every weight word (empty when the weights are in the bitstream)."""
    fmt = link_format(image) if fmt is None else fmt
    if not fmt.loads:
        return []
    return [w for c, a, d in load_words(image) for w in fmt.load_chunks(c, a, d)]


def step_streams(image: AcceleratorImage, x, graph=None,
                 fmt: LinkFormat | None = None) -> list[list[list[int]]]:  # fmt: skip
    """Per batch element, per step: the step's link words (its events, then the end word).

    ``x`` as for :func:`snnc.sim.cycle.simulate` (time-major, quantised the same way)."""
    fmt = link_format(image) if fmt is None else fmt
    end = fmt.end()
    return [[[fmt.event(e, p) for e, p in step] + [end] for step in steps]
            for steps in host_words(image, x, graph=graph)]  # fmt: skip


def host_stream(image: AcceleratorImage, x, graph=None, *, fmt: LinkFormat | None = None,
                load: bool = True, clear_first: bool = False) -> list[int]:  # fmt: skip
    """Every link word of a batch: the load chunks (``load`` and the weights are loaded), then
    per batch element a clear word (not before the first unless ``clear_first``) and its steps'
    words, each step ended by an end word."""
    fmt = link_format(image) if fmt is None else fmt
    words = load_stream(image, fmt) if load else []
    for b, steps in enumerate(step_streams(image, x, graph, fmt)):
        if b or clear_first:
            words.append(fmt.clear())
        for step in steps:
            words += step
    return words


def split_steps(words, fmt: LinkFormat) -> list[tuple[list[int], int]]:
    """``(output elements, cycles)`` of every step in a sequence of host_out words (a trailing
    incomplete step is an error)."""
    steps, cur = [], []
    for w in words:
        element, end, cycles = fmt.out_word(int(w))
        if end:
            steps.append((cur, cycles))
            cur = []
        else:
            cur.append(element)
    if cur:
        raise BackendError(f"{len(cur)} output words after the last end-of-step marker")
    return steps


def decode_outputs(words, image: AcceleratorImage, T: int, B: int,
                   fmt: LinkFormat | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Outputs ``(T, B, *output shape)`` int64 spikes in graph order (as
    :func:`snnc.sim.integer.simulate` gives them) and cycles ``(T, B)`` from the host_out words
    of a batch (``T`` steps per batch element, elements one after the other)."""
    fmt = link_format(image) if fmt is None else fmt
    steps = split_steps(words, fmt)
    if len(steps) != T * B:
        raise BackendError(f"expected {T * B} steps ({T} steps x {B} inputs), got {len(steps)} "
                           f"end-of-step markers")  # fmt: skip
    outs = np.zeros((T, B, *image.output_shape), np.int64)
    cycles = np.zeros((T, B), np.int64)
    for b in range(B):
        part = steps[b * T : (b + 1) * T]
        outs[:, b] = output_array(image, [els for els, _ in part])
        cycles[:, b] = [c for _, c in part]
    return outs, cycles


# ----------------------------------------------------------------------------- bitstreams


@dataclass(frozen=True)
class BitstreamResult:
    board: str
    path: Path  #: the bitstream: ``top.bin`` (iCE40) or ``top.bit`` (ECP5)
    utilisation: dict  #: nextpnr cell type -> (used, available)
    fmax_mhz: float  #: nextpnr's achieved fmax of the board clock
    target_mhz: float  #: the board clock
    met: bool  #: fmax_mhz >= target_mhz
    log: Path  #: every tool's output
    seconds: float  #: wall time of the build
    divisor: int  #: UART clock cycles per bit
    baud: int

    def line(self) -> str:
        ok = "met" if self.met else "MISSED"
        used = ", ".join(f"{k} {u}/{a}" for k, (u, a) in sorted(self.utilisation.items()) if u)
        return (f"{self.board}: {self.path.name}; {used}; fmax {self.fmax_mhz:.1f} MHz (board "
                f"clock {self.target_mhz:.0f} MHz: {ok}); {self.seconds:.0f} s")  # fmt: skip


#: friendly names of nextpnr's cell types, for the errors
RESOURCE_NAMES = {
    "ICESTORM_LC": "logic cells", "ICESTORM_RAM": "block RAM (EBR)", "ICESTORM_SPRAM": "SPRAM",
    "ICESTORM_DSP": "DSP (SB_MAC16)", "SB_IO": "I/O", "TRELLIS_COMB": "LUTs",
    "TRELLIS_FF": "flip-flops", "TRELLIS_RAMW": "distributed RAM", "DP16KD": "block RAM (EBR)",
    "MULT18X18D": "multipliers", "TRELLIS_IO": "I/O", "TRELLIS_SLICE": "slices",
}  # fmt: skip
_UTIL_LINE = re.compile(r"^Info:\s+([A-Za-z0-9_]+):\s+(\d+)\s*/\s*(\d+)\s+\d+%", re.M)
_NO_BELS = re.compile(r"no BELs remaining to implement cell type '([A-Za-z0-9_]+)'")


def _board(board: str):
    if board not in BOARDS:
        raise BackendError(f"unknown board {board!r}; expected one of {', '.join(BOARDS)}")
    return BOARDS[board]


def overflow(log_text: str, device: str = "the device") -> ResourceError | None:
    """The :class:`ResourceError` of a nextpnr log whose design does not fit, or None."""
    util: dict[str, tuple[int, int]] = {}
    for name, used, avail in _UTIL_LINE.findall(log_text):
        util[name] = (int(used), int(avail))
    over = [(k, u, a) for k, (u, a) in util.items() if u > a]
    m = _NO_BELS.search(log_text)
    if m and not any(k == m.group(1) for k, _, _ in over):
        u, a = util.get(m.group(1), (-1, -1))
        over.append((m.group(1), u, a))
    if not over:
        return None
    parts = [f"{RESOURCE_NAMES.get(k, k)} ({k}): {u} used / {a} available" if u >= 0 else
             f"{RESOURCE_NAMES.get(k, k)} ({k}): no room left" for k, u, a in over]  # fmt: skip
    return ResourceError(
        f"the design does not fit {device}: "
        + "; ".join(parts)
        + "; compile for fewer or smaller cores, or pick a bigger board"
    )


def memory_precheck(image: AcceleratorImage, board: str) -> None:
    """Raise :class:`ResourceError` if the cores' memories cannot fit the board's device in any
    mapping: a lower bound (the bits of every core memory; SPRAM blocks for SPRAM weights on an
    iCE40 UltraPlus) against all the bits the device can store (every block RAM bit, every
    flip-flop and, on the ECP5, 16 bits of distributed RAM per LUT)."""
    from snnc.backends.fpga.report import memory_bits
    from snnc.rtl.spram import SPRAM_DEPTH, SPRAM_WIDTH
    from snnc.targets import load_target

    _, family, preset = _board(board)
    f = load_target(preset).fpga
    p = image.params
    spram = p.weight_memory == "spram" and family == "ice40"
    bits = 0
    for core in image.cores:
        mb = memory_bits(core)
        bits += sum(mb.values()) - (mb["weights"] if spram else 0)
    if spram:
        per_core = -(-(p.lanes * p.weight_bits) // SPRAM_WIDTH) * -(-p.weight_words // SPRAM_DEPTH)
        blocks = len(image.cores) * per_core
        if blocks > f.sprams:
            raise ResourceError(
                f"the design does not fit the {preset} of board {board}: SPRAM: {blocks} blocks "
                f"used / {f.sprams} available for the weights of {len(image.cores)} core(s)"
            )
    per_lut = 1 + (16 if family == "ecp5" else 0)
    avail = f.brams * f.bram_bits + f.luts * per_lut
    if bits > avail:
        raise ResourceError(
            f"the design does not fit the {preset} of board {board}: memory bits: {bits} used by "
            f"the cores' memories / at most {avail} available ({f.brams} block RAMs x "
            f"{f.bram_bits} bits + {f.luts} LUTs x {per_lut}); compile for fewer or smaller "
            f"cores, or pick a bigger board"
        )  # fmt: skip


def _overrides(family: str, name: str) -> dict:
    opts = {"nextpnr_opts": "--timing-allow-fail --report report.json --seed 1",
            "verbose": True}  # fmt: skip
    if family == "ice40":
        opts["synth_opts"] = "-dsp"
    else:  # abc9 crashes in YoWASP's Yosys on the neuron core: map LUTs with abc
        opts["synth_opts"] = "-run begin:map_luts"
        opts["script_after_synth"] = (
            "techmap -map +/lattice/latches_map.v\nabc -lut 4:7 -dress\nclean\n"
            f"synth_ecp5 -top {name} -run map_cells:"
        )
    return opts


_STEPS = {"yosys": "synthesis (yosys)", "nextpnr-ice40": "place and route (nextpnr-ice40)",
          "nextpnr-ecp5": "place and route (nextpnr-ecp5)", "icepack": "packing (icepack)",
          "ecppack": "packing (ecppack)"}  # fmt: skip


def _run_steps(commands: list[list[str]], work: Path, env: dict, log: Path, where: str) -> None:
    for argv in commands:
        tool = argv[0]
        exe = env.get(tool.upper().replace("-", "_"), tool)
        with open(log, "ab") as f:
            f.write(f"\n$ {' '.join([tool, *argv[1:]])}\n".encode())
            f.flush()
            try:
                r = subprocess.run([exe, *argv[1:]], cwd=work, env=env, stdout=f,
                                   stderr=subprocess.STDOUT)  # fmt: skip
            except OSError as e:
                raise BackendError(f"{_STEPS.get(tool, tool)} for {where}: cannot run {exe}: "
                                   f"{e}") from e  # fmt: skip
        if r.returncode == 0:
            continue
        if tool.startswith("nextpnr"):
            err = overflow(log.read_text(errors="replace"), where)
            if err is not None:
                raise err
        raise BackendError(f"{_STEPS.get(tool, tool)} failed for {where} (exit status "
                           f"{r.returncode}; log {log}):\n{log_tail(log)}")  # fmt: skip


def build_bitstream(
    image: AcceleratorImage, board: str, directory: Path, *, baud: int = DEFAULT_BAUD,
    precheck: bool = True,
) -> BitstreamResult:  # fmt: skip
    """Build the bitstream of ``image`` on ``board`` (a key of :data:`BOARDS`) in ``directory``.

    Raises
    ------
    BackendError
        Unknown board, a baud rate the board clock cannot make, or a tool that fails (the
        message names the step and shows the end of the log).
    ResourceError
        The design does not fit the board's device (``precheck``: the memory lower bound of
        :func:`memory_precheck` first, before any synthesis).
    """
    from snnc.rtl.toolchain import environment

    cls, family, _ = _board(board)
    start = time.monotonic()
    if precheck:
        memory_precheck(image, board)
    platform = cls()
    clock = float(platform.default_clk_frequency)
    divisor = int(clock) // baud
    if divisor < 4:
        raise BackendError(f"{baud} baud is too fast for the {clock / 1e6:g} MHz clock of board "
                           f"{board} (at most {int(clock) // 4} baud)")  # fmt: skip
    work = Path(directory)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "toolchain.log"
    log.write_text("")
    for stale in ("report.json", "top.bin", "top.bit"):
        (work / stale).unlink(missing_ok=True)
    top = BoardTop(accelerator_config(image), baud=baud)
    where = f"board {board} ({platform.device})"
    try:
        plan = platform.prepare(top, name="top", **_overrides(family, "top"))
    except Exception as e:  # elaboration or RTLIL conversion
        raise BackendError(f"elaborating the design for {where} failed: {e}") from e
    plan.extract(str(work))
    commands = json.loads((work / "build_top.json").read_text())["commands"]
    _run_steps(commands, work, environment(), log, where)

    util, fmax = nextpnr_report(work / "report.json")
    path = work / ("top.bin" if family == "ice40" else "top.bit")
    if not path.exists() or path.stat().st_size == 0:
        raise BackendError(f"packing for {where} wrote no bitstream {path} (log {log}):\n"
                           f"{log_tail(log)}")  # fmt: skip
    target = clock / 1e6
    return BitstreamResult(board, path, util, float(fmax), target, float(fmax) >= target, log,
                           time.monotonic() - start, divisor, baud)  # fmt: skip
