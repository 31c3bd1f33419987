"""The accelerator on a board (snnc/backends/fpga/board.py) and the host's run (snnc/host/run.py).

- The link protocol in Amaranth's simulator: :class:`BoardTop` without a platform (its ``rx`` and
  ``tx`` signals, 4 clock cycles per bit) driven bit by bit by :class:`SimLink`, a link whose
  ``send`` serialises bytes onto ``rx`` and whose ``receive`` decodes ``tx``; the outputs must
  equal ``snnc.sim.integer`` spike for spike and the cycles ``snnc.sim.cycle``'s, with weights in
  the bitstream and loaded through load chunks (``weight_memory = "spram"``).
- :func:`run_on_board` against a replaying fake link (exact words sent, pacing, errors).
- Real bitstreams of a one-core network for the iCEBreaker (iCE40 UP5K, SPRAM weights) and the
  ULX3S 25F (ECP5): about 15 s and 10 s; the named errors (unknown board, a failing tool, a
  design that does not fit: the memory pre-check and nextpnr's utilisation).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest
from amaranth.sim import Simulator

from snnc.backends.fpga.board import (
    BOARDS,
    BoardTop,
    LinkFormat,
    build_bitstream,
    decode_outputs,
    host_stream,
    link_format,
    load_stream,
    overflow,
)
from snnc.backends.fpga.rtl_config import accelerator_config, host_words, load_words
from snnc.errors import BackendError, ResourceError
from snnc.host.link import decode, encode, word_bytes
from snnc.host.run import run_on_board
from snnc.sim.cycle import simulate as cycle_sim
from snnc.sim.integer import simulate as int_sim

from ..passes.test_quantize import MODES, mlp, spikes
from ..rtl.test_top import _w, compiled, small_target
from ..rtl.test_uart import frame_bits

ROOT = Path(__file__).resolve().parents[2]
DIV = 4  # clock cycles per bit in simulation


# ----------------------------------------------------------------------------- simulated link


class SimLink:
    """``send``/``receive`` over the UART pins of a :class:`BoardTop` in Amaranth's simulator.

    ``send`` queues the words' bytes, which a testbench puts on ``rx`` bit by bit, back to back
    (8N1, ``divisor`` cycles per bit); another testbench decodes every frame on ``tx`` (each bit
    sampled in its middle, the stop bit checked). ``receive`` runs the simulation until enough
    bytes are back (``TimeoutError`` after ``max_cycles``)."""

    def __init__(self, top: BoardTop, *, max_cycles: int = 400_000) -> None:
        self.top, self.d = top, top.divisor
        fmt = top.format
        self.in_width, self.out_width = fmt.link_width, fmt.out_width
        self.out_bytes = word_bytes(self.out_width)
        self.to_send: deque[int] = deque()
        self.received: deque[int] = deque()
        self.sent: list[int] = []  # every word sent
        self.errors = 0  # the board's link-error LED, sampled after every byte
        self.cycles, self.max_cycles = 0, max_cycles
        self.sim = Simulator(top)
        self.sim.add_clock(1e-6)
        self.sim.add_testbench(self._rx, background=True)
        self.sim.add_testbench(self._tx, background=True)

    async def _rx(self, ctx) -> None:
        while True:
            if not self.to_send:
                await ctx.tick()
                continue
            for bit in frame_bits(self.to_send.popleft()):
                ctx.set(self.top.rx, bit)
                await ctx.tick().repeat(self.d)

    async def _tx(self, ctx) -> None:
        d, tx = self.d, self.top.tx
        while True:
            await ctx.tick()
            if ctx.get(tx):
                continue
            # the first cycle of a start bit
            await ctx.tick().repeat(d // 2)
            assert ctx.get(tx) == 0, "start bit shorter than half a bit"
            byte = 0
            for k in range(8):
                await ctx.tick().repeat(d)
                byte |= ctx.get(tx) << k
            await ctx.tick().repeat(d)
            assert ctx.get(tx) == 1, "bad stop bit"
            self.received.append(byte)
            self.errors |= ctx.get(self.top.led_error)

    def send(self, words) -> None:
        words = list(words)
        self.sent += words
        self.to_send.extend(encode(words, self.in_width))

    def receive(self, count: int) -> list[int]:
        want = count * self.out_bytes
        while len(self.received) < want:
            if self.cycles >= self.max_cycles:
                raise TimeoutError(f"no reply after {self.cycles} cycles")
            self.cycles += 20 * self.d
            self.sim.run_until(self.cycles * 1e-6)
        return decode(bytes(self.received.popleft() for _ in range(want)), self.out_width)


def _is_step_end(word: int, fmt) -> bool:
    """An end word (not a clear word) of the host_in kind."""
    (end, _), (clear, _) = fmt.in_fields["end"], fmt.in_fields["clear"]
    return not word >> fmt.in_width and (word >> end) & 1 and not (word >> clear) & 1


def _reference(g, img, x):
    want = int_sim(g, x)
    ref = cycle_sim(img, x, graph=g)
    np.testing.assert_array_equal(ref.output, want)
    assert want.sum() > 0
    return want, ref.cycles


def test_link_protocol_in_simulation(tmp_path: Path) -> None:
    """host_stream's bytes onto rx, paced step by step; tx decoded with decode_outputs."""
    w1, w2, rec = _w(1)
    g, img = compiled(mlp(w1, w2, threshold=0.5, recurrent=rec, mode=MODES[0]),
                      small_target(tmp_path))  # fmt: skip
    x = spikes(5, 2, 6, 2, rate=0.5)
    want, cycles = _reference(g, img, x)
    top = BoardTop(accelerator_config(img), divisor=DIV)
    fmt = top.format
    assert not fmt.loads and len(img.cores) == 2
    words = host_stream(img, x, g, fmt=fmt)
    assert load_stream(img, fmt) == [] and words[0] != fmt.clear()
    assert words.count(fmt.clear()) == 1  # between the two batch elements

    link = SimLink(top)
    back: list[int] = []
    seg: list[int] = []
    for w in words:
        seg.append(w)
        if _is_step_end(w, fmt):  # the step starts: read its outputs up to the end marker
            link.send(seg)
            seg = []
            while True:
                (o,) = link.receive(1)
                back.append(o)
                if fmt.out_word(o)[1]:
                    break
    assert seg == [] and link.errors == 0
    outs, got_cycles = decode_outputs(back, img, 5, 2, fmt)
    np.testing.assert_array_equal(outs, want)
    np.testing.assert_array_equal(got_cycles, cycles)


def test_run_on_board_loads_weights_in_simulation(tmp_path: Path) -> None:
    """weight_memory = spram: the load chunks of every weight word go first, then the steps."""
    w1, w2, rec = _w(5)
    g, img = compiled(mlp(w1, w2, threshold=0.5, recurrent=rec),
                      small_target(tmp_path, weight_memory="spram", words=64))  # fmt: skip
    x = spikes(4, 2, 6, 7, 0.6)
    want, cycles = _reference(g, img, x)
    top = BoardTop(accelerator_config(img), divisor=DIV)
    fmt = top.format
    assert fmt.loads and fmt.chunks > 1
    link = SimLink(top)
    # a stray partial load word: the host_in word after it resyncs the chunk count
    link.send(fmt.load_chunks(1, 3, 0x7F7F)[:2] + [fmt.clear()])
    outs, got_cycles = run_on_board(link, img, x, g)
    np.testing.assert_array_equal(outs, want)
    np.testing.assert_array_equal(got_cycles, cycles)
    n_load = len(load_words(img)) * fmt.chunks
    assert link.sent[3 : 3 + n_load] == load_stream(img, fmt)
    assert link.sent[3:] == host_stream(img, x, g, clear_first=True)
    assert link.errors == 0 and not link.received


def test_load_chunks_reassemble() -> None:
    """Chunks hold the load word least significant first, W bits each, top bit set."""

    fmt = LinkFormat(
        in_width=6, out_width=40, load_width=25, loads=True,
        in_fields={"element": (0, 3), "payload": (3, 1), "end": (4, 1), "clear": (5, 1)},
        out_fields={"element": (0, 2), "end": (2, 1), "cycles": (3, 32)},
        load_fields={"core": (0, 1), "addr": (1, 8), "data": (9, 16)},
    )  # fmt: skip
    chunks = fmt.load_chunks(1, 0xA5, 0xBEEF)
    assert len(chunks) == fmt.chunks == 5 and all(c >> 6 == 1 for c in chunks)
    word = sum((c & 63) << (6 * k) for k, c in enumerate(chunks))
    assert word == 1 | 0xA5 << 1 | 0xBEEF << 9
    assert fmt.clear() == 0b110000 and fmt.end() == 0b010000 and fmt.event(5, 1) == 0b001101
    assert fmt.out_word(1 | 1 << 2 | 77 << 3) == (1, 1, 77)
    with pytest.raises(ValueError):
        fmt.event(8, 1)


# ----------------------------------------------------------------------------- replaying fake


class ReplayLink:
    """Answers each step's end word with that step's recorded host_out words; anything read
    before its step was sent is a timeout (the host must pace itself)."""

    def __init__(self, fmt, steps: list[list[int]], in_width=None, garbage=False) -> None:
        self.fmt, self.steps = fmt, deque(steps)
        self.in_width = fmt.link_width if in_width is None else in_width
        self.out_width = fmt.out_width
        self.ready: deque[int] = deque()
        self.sent: list[int] = []
        self.garbage = garbage

    def send(self, words) -> None:
        for w in words:
            self.sent.append(w)
            if _is_step_end(w, self.fmt) and self.steps and not self.garbage:
                self.ready.extend(self.steps.popleft())

    def receive(self, count: int) -> list[int]:
        if self.garbage:
            return [(1 << self.out_width) - 1 - (1 << self.fmt.out_fields["end"][0])] * count
        if len(self.ready) < count:
            raise TimeoutError("read before the step was sent")
        return [self.ready.popleft() for _ in range(count)]


def _recorded(img, want, cycles, fmt) -> list[list[int]]:
    """The host_out words of every step (batch elements one after the other) from the
    integer simulator's output (graph order) and the cycle model's cycles."""
    (eo, _), (endo, _), (co, _) = (fmt.out_fields[k] for k in ("element", "end", "cycles"))
    T, B = cycles.shape
    flat = want.reshape(T, B, -1)
    perm = img.output_perm if img.output_perm is not None else np.arange(flat.shape[2])
    steps = []
    for b in range(B):
        for t in range(T):
            els = [e for e in range(flat.shape[2]) for _ in range(flat[t, b, perm[e]])]
            steps.append([e << eo for e in els] + [1 << endo | int(cycles[t, b]) << co])
    return steps


def test_run_on_board_against_a_replay(tmp_path: Path) -> None:
    w1, w2, rec = _w(2)
    g, img = compiled(mlp(w1, w2, threshold=0.5, recurrent=rec), small_target(tmp_path))
    x = spikes(6, 3, 6, 3, rate=0.5)
    want, cycles = _reference(g, img, x)
    fmt = link_format(img)
    link = ReplayLink(fmt, _recorded(img, want, cycles, fmt))
    outs, got = run_on_board(link, img, x, g)
    np.testing.assert_array_equal(outs, want)
    np.testing.assert_array_equal(got, cycles)
    assert link.sent == host_stream(img, x, g, clear_first=True) and not link.steps
    # the events of every step, each step closed by an end word
    n_events = sum(len(s) for steps in host_words(img, x, graph=g) for s in steps)
    assert len(link.sent) == n_events + 6 * 3 + 3
    # decode_outputs reads the same words
    flat = [w for s in _recorded(img, want, cycles, fmt) for w in s]
    outs2, cyc2 = decode_outputs(flat, img, 6, 3)
    np.testing.assert_array_equal(outs2, want)
    np.testing.assert_array_equal(cyc2, cycles)
    with pytest.raises(BackendError, match="expected 12 steps"):
        decode_outputs(flat, img, 4, 3)

    with pytest.raises(BackendError, match="19-bit words"):
        run_on_board(ReplayLink(fmt, [], in_width=19), img, x, g)
    with pytest.raises(BackendError, match="out of step"):
        run_on_board(ReplayLink(fmt, [], garbage=True), img, x, g)
    short = ReplayLink(fmt, _recorded(img, want, cycles, fmt)[:2])
    with pytest.raises(BackendError, match="input 0, step 2: read before"):
        run_on_board(short, img, x, g)


def test_open_board_uses_the_link_widths(tmp_path: Path, monkeypatch) -> None:
    import snnc.host.run as run

    opened = {}
    monkeypatch.setattr(run, "open_serial", lambda port, baud, timeout: opened.update(
        port=port, baud=baud, timeout=timeout) or object())  # fmt: skip
    img = _one_core(tmp_path, "spram")
    link = run.open_board("/dev/ttyUSB1", img, timeout=2.0)
    fmt = link_format(img)
    assert (link.in_width, link.out_width) == (fmt.link_width, fmt.out_width)
    assert opened == {"port": "/dev/ttyUSB1", "baud": 115200, "timeout": 2.0}


# ----------------------------------------------------------------------------- bitstreams


def _one_core(tmp_path: Path, weight_memory: str):
    w1, w2, _ = _w(0)
    tg = small_target(tmp_path, cores=1, neurons=16, words=64, weight_memory=weight_memory)
    return compiled(mlp(w1, w2, threshold=0.5), tg)[1]


@pytest.mark.parametrize(
    ("board", "weight_memory", "luts", "bitstream"),
    [("icebreaker", "spram", "ICESTORM_LC", "top.bin"),
     ("ulx3s-25f", "bram", "TRELLIS_COMB", "top.bit")],
)  # fmt: skip
def test_bitstream(tmp_path: Path, board: str, weight_memory: str, luts: str, bitstream: str):
    """A one-core network: about 15 s (iCE40) and 10 s (ECP5) with the YoWASP tools."""
    img = _one_core(tmp_path, weight_memory)
    r = build_bitstream(img, board, tmp_path / "build")
    assert r.path == tmp_path / "build" / bitstream and r.path.stat().st_size > 0
    assert r.utilisation[luts][0] > 0 and r.fmax_mhz > 0 and r.met
    assert r.target_mhz == {"icebreaker": 12.0, "ulx3s-25f": 25.0}[board]
    assert r.divisor == int(r.target_mhz * 1e6) // 115200
    assert "Device utilisation" in r.log.read_text()
    if board == "icebreaker":
        assert r.utilisation["ICESTORM_SPRAM"][0] == 1  # the weights, loaded by the host
    assert board in r.line()


def test_unknown_board_and_bad_baud(tmp_path: Path) -> None:
    img = _one_core(tmp_path, "bram")
    with pytest.raises(BackendError, match="unknown board 'de10'.*icebreaker, ulx3s-25f"):
        build_bitstream(img, "de10", tmp_path / "b")
    with pytest.raises(BackendError, match="too fast"):
        build_bitstream(img, "icebreaker", tmp_path / "b", baud=6_000_000)
    assert set(BOARDS) == {"icebreaker", "ulx3s-25f", "ulx3s-85f"}


def test_failing_tool_names_the_step(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("YOSYS", "false")
    with pytest.raises(BackendError, match=r"synthesis \(yosys\) failed .*icebreaker"):
        build_bitstream(_one_core(tmp_path, "bram"), "icebreaker", tmp_path / "b")
    assert (tmp_path / "b" / "toolchain.log").exists()


def test_mnist_does_not_fit_the_icebreaker(tmp_path: Path) -> None:
    """Two 256-neuron ECP5 cores with their weights in block RAM: caught before synthesis."""
    from snnc.backends.fpga import build_images
    from snnc.build import compile_model
    from snnc.mapping.cores import mapping_of

    r = compile_model(ROOT / "examples" / "mnist" / "model.pt", target="ecp5-25k")
    img = build_images(r.graph, mapping_of(r.graph), "ecp5-25k")
    with pytest.raises(ResourceError, match=r"memory bits: \d+ used .* / at most 128160"):
        build_bitstream(img, "icebreaker", tmp_path / "b")


def test_too_many_logic_cells(tmp_path: Path) -> None:
    """Five tiny cores pass the memory pre-check but not nextpnr (about 15 s): well over the
    UP5K's logic cells and over its 8 DSPs."""
    w1, w2, rec = _w(3, n_hid=12, n_out=6)
    g, img = compiled(mlp(w1, w2, threshold=0.4, recurrent=rec),
                      small_target(tmp_path, neurons=4, cores=8))  # fmt: skip
    assert len(img.cores) == 5
    with pytest.raises(ResourceError, match=r"logic cells \(ICESTORM_LC\): \d+ used / 5280 avail"):
        build_bitstream(img, "icebreaker", tmp_path / "b")


def test_overflow_parses_nextpnr_logs() -> None:
    log = ("Info: Device utilisation:\n"
           "Info: \t          TRELLIS_IO:     7/  197     3%\n"
           "Info: \t              DP16KD:    80/   56   142%\n"
           "Info: \t        TRELLIS_COMB: 30000/24288   123%\n")  # fmt: skip
    e = overflow(log, "board ulx3s-25f")
    assert isinstance(e, ResourceError)
    assert "block RAM (EBR) (DP16KD): 80 used / 56 available" in str(e)
    assert "LUTs (TRELLIS_COMB): 30000 used / 24288" in str(e) and "TRELLIS_IO" not in str(e)
    assert overflow("Info:  ICESTORM_LC:  10/ 5280  0%\n") is None
    e = overflow("ERROR: Unable to place cell 'x', no BELs remaining to implement cell type "
                 "'ICESTORM_DSP'\n")  # fmt: skip
    assert "ICESTORM_DSP" in str(e)
