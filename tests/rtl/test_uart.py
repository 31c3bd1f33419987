"""The UART host link (snnc/rtl/uart.py) and its host-side codec (snnc/host/link.py).

The RTL runs in Amaranth's simulator against a bit-level model of the line written here: the
host drives ``rx`` bit by bit (optionally with its bit period off by a few percent) and the
``tx`` waveform is recorded and decoded cycle by cycle, so every byte, every bit length and the
documented cycle timings are checked exactly.
"""

from __future__ import annotations

import io
import random
import sys
import types

import numpy as np
import pytest
from amaranth import Module
from amaranth.sim import Simulator

from snnc.errors import BackendError
from snnc.host.link import SerialLink, decode, encode, open_serial, word_bytes
from snnc.rtl.uart import HostLink, UartRx, UartTx

# ----------------------------------------------------------------------------- the line model


def frame_bits(byte: int, stop: int = 1) -> list[int]:
    """8N1 bits of ``byte`` on the line: start, data LSB first, stop."""
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


class Line:
    """Drives a 1-bit input from a testbench, counting the cycles it has waited."""

    def __init__(self, ctx, sig) -> None:
        self.ctx, self.sig, self.t = ctx, sig, 0

    async def hold(self, value: int, until: int) -> None:
        """``sig = value`` in cycles ``t .. until-1``."""
        self.ctx.set(self.sig, value)
        if until > self.t:
            await self.ctx.tick().repeat(until - self.t)
            self.t = until

    async def send(self, frames, period: float) -> list[int]:
        """Send ``frames`` (``(byte, idle_bits_after, stop)``) from cycle ``t`` with bit edges at
        ``round(start + k * period)``; returns the cycle each frame's start bit began."""
        pos, starts = float(self.t), []
        for byte, idle, stop in frames:
            starts.append(self.t)
            for k, b in enumerate(frame_bits(byte, stop)):
                await self.hold(b, round(pos + (k + 1) * period))
            pos += (10 + idle) * period
            await self.hold(1, round(pos))
        return starts


async def offer_all(ctx, port, items, *, start: int, tail: int, takes: list[int]) -> None:
    """From cycle ``start``, offer ``items`` on stream ``port`` back to back (valid held until
    ready); append the cycle each is taken to ``takes``; then idle ``tail`` cycles."""
    await ctx.tick().repeat(start)
    t = start
    for item in items:
        ctx.set(port.valid, 1)
        ctx.set(port.payload, item)
        while not ctx.get(port.ready):
            await ctx.tick()
            t += 1
        takes.append(t)
        await ctx.tick()
        t += 1
    ctx.set(port.valid, 0)
    await ctx.tick().repeat(tail)


def record(sim: Simulator, signals, out: list) -> None:
    """Append the values of ``signals`` (registers) in every cycle to ``out``."""

    async def recorder(ctx) -> None:
        while True:
            out.append(tuple(ctx.get(s) for s in signals))
            await ctx.tick()

    sim.add_testbench(recorder, background=True)


def decode_line(wave: list[int], d: int) -> list[tuple[int, int]]:
    """``(start cycle, byte)`` of every frame on a recorded line; every bit must last exactly
    ``d`` cycles and every stop bit be high."""
    out, i = [], 0
    while i < len(wave):
        if wave[i]:
            i += 1
            continue
        assert i + 10 * d <= len(wave), f"frame at cycle {i} cut off"
        bits = [wave[i + k * d] for k in range(10)]
        for k in range(10):
            assert wave[i + k * d : i + (k + 1) * d] == [bits[k]] * d, (i, k)
        assert bits[9] == 1, f"bad stop bit in the frame at cycle {i}"
        out.append((i, sum(b << j for j, b in enumerate(bits[1:9]))))
        i += 10 * d
    return out


def run(dut, *testbenches, background=()) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    for tb in background:
        sim.add_testbench(tb, background=True)
    sim.run()


# ----------------------------------------------------------------------------- UartTx, UartRx


@pytest.mark.parametrize("divisor", [4, 5, 16])
def test_tx_to_rx_back_to_back(divisor: int) -> None:
    rng = random.Random(divisor)
    sent = [rng.randrange(256) for _ in range(40)] + [0x00, 0xFF, 0x55, 0xAA]
    m = Module()
    tx = m.submodules.tx = UartTx(divisor)
    rx = m.submodules.rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got: list[int] = []

    async def producer(ctx) -> None:
        for byte in sent:
            while rng.random() < 0.3:
                ctx.set(tx.data.valid, 0)
                await ctx.tick()
            ctx.set(tx.data.valid, 1)
            ctx.set(tx.data.payload, byte)
            while not ctx.get(tx.data.ready):
                await ctx.tick()
            await ctx.tick()
        ctx.set(tx.data.valid, 0)
        while len(got) < len(sent):
            await ctx.tick()
        await ctx.tick().repeat(20 * divisor)  # nothing more arrives
        assert (ctx.get(rx.overrun), ctx.get(rx.frame_error), ctx.get(rx.data.valid)) == (0, 0, 0)

    async def consumer(ctx) -> None:
        while True:
            ready = rng.random() < 0.5
            ctx.set(rx.data.ready, ready)
            if ready and ctx.get(rx.data.valid):
                got.append(ctx.get(rx.data.payload))
            await ctx.tick()

    run(m, producer, background=[consumer])
    assert got == sent


@pytest.mark.parametrize("divisor", [4, 5, 8])
def test_rx_timing_and_overrun(divisor: int) -> None:
    d, rx = divisor, UartRx(divisor)
    wave: list[tuple[int, int, int]] = []
    starts: list[int] = []

    async def host(ctx) -> None:
        line = Line(ctx, rx.rx)
        await line.hold(1, 3)
        # never taken: the second byte overruns, the first one stays
        starts.extend(await line.send([(0xA5, 0, 1), (0x3C, 0, 1)], d))
        await line.hold(1, line.t + 3 * d)

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    record(sim, [rx.data.valid, rx.data.payload, rx.overrun], wave)
    sim.add_testbench(host)
    sim.run()
    valid = [w[0] for w in wave]
    overrun = [w[2] for w in wave]
    first = starts[0] + 9 * d + d // 2 + 3
    assert valid.index(1) == first
    assert all(valid[first:]) and wave[-1][1] == 0xA5
    assert overrun.index(1) == starts[1] + 9 * d + d // 2 + 3
    assert all(overrun[overrun.index(1) :]) and wave[-1][2] == 1


def test_rx_frame_error_and_glitch() -> None:
    d, rx = 8, UartRx(8)
    got: list[tuple[int, int]] = []
    flags: dict[str, int] = {}

    async def host(ctx) -> None:
        line = Line(ctx, rx.rx)
        await line.hold(1, 5)
        await line.hold(0, 5 + d // 2 - 2)  # shorter than half a bit: not a start bit
        await line.hold(1, 5 + 12 * d)  # a frame started by the glitch would be 0xFF
        flags["after_glitch"] = ctx.get(rx.frame_error)
        await line.send([(0x81, 0, 0)], d)  # stop bit low: dropped
        await line.hold(0, line.t + 12 * d)  # the line stays low (a break): one error
        await line.hold(1, line.t + 2 * d)
        flags["after_break"] = ctx.get(rx.frame_error)
        await line.send([(0x5A, 2, 1)], d)  # received after the error
        flags["end"] = ctx.get(rx.frame_error) + 2 * ctx.get(rx.overrun)

    async def consumer(ctx) -> None:
        ctx.set(rx.data.ready, 1)
        t = 0
        while True:
            if ctx.get(rx.data.valid):
                got.append((t, ctx.get(rx.data.payload)))
            await ctx.tick()
            t += 1

    run(rx, host, background=[consumer])
    assert flags == {"after_glitch": 0, "after_break": 1, "end": 1}
    assert [b for _, b in got] == [0x5A]


def test_tx_timing() -> None:
    d, tx = 4, UartTx(4)
    wave: list[tuple[int]] = []
    takes: list[int] = []

    async def producer(ctx) -> None:
        await offer_all(ctx, tx.data, (0x96, 0x0F), start=2, tail=25 * d, takes=takes)

    sim = Simulator(tx)
    sim.add_clock(1e-6)
    record(sim, [tx.tx], wave)
    sim.add_testbench(producer)
    sim.run()
    line = [w[0] for w in wave]
    assert takes == [2, 2 + 10 * d]
    assert line[:3] == [1, 1, 1]
    bits = [b for byte in (0x96, 0x0F) for b in frame_bits(byte) for _ in range(d)]
    assert line[3 : 3 + 20 * d] == bits
    assert set(line[3 + 20 * d :]) == {1}
    assert decode_line(line, d) == [(3, 0x96), (3 + 10 * d, 0x0F)]


# ----------------------------------------------------------------------------- HostLink


@pytest.mark.parametrize("widths", [(13, 13), (20, 9)], ids=["13-13", "20-9"])
@pytest.mark.parametrize("divisor,speed", [(4, 1.0), (4, 0.98), (8, 1.02), (8, 0.98), (16, 1.02)],
                         ids=["d4", "d4-fast", "d8-slow", "d8-fast", "d16-slow"])  # fmt: skip
def test_host_link_loopback(widths: tuple[int, int], divisor: int, speed: float) -> None:
    """Words from a bit-level host go through HostLink, a loop-back with random readiness
    (truncating to ``out_width``) and back out on ``tx``."""
    in_width, out_width = widths
    d = divisor
    rng = random.Random(in_width * 1000 + d + int(speed * 100))
    words = [0, (1 << in_width) - 1] + [rng.randrange(1 << in_width) for _ in range(30)]
    expected = [w & ((1 << out_width) - 1) for w in words]
    link = HostLink(in_width, out_width, d)
    nin = word_bytes(in_width)
    wave: list[tuple[int]] = []
    forwarded: list[int] = []
    flags: dict[str, int] = {}

    async def host(ctx) -> None:
        line = Line(ctx, link.rx)
        await line.hold(1, 7)
        data = encode(words, in_width)
        frames = [(b, 0 if (k + 1) % nin else rng.randint(1, 3), 1) for k, b in enumerate(data)]
        await line.send(frames, d * speed)  # back to back within a word, 1-3 bits between
        deadline = line.t + 30 * d * word_bytes(out_width)  # a lost word must not hang
        while len(forwarded) < len(words) and line.t < deadline:
            await line.hold(1, line.t + 1)
        await line.hold(1, line.t + 12 * d * word_bytes(out_width))
        flags.update(overrun=ctx.get(link.overrun), frame_error=ctx.get(link.frame_error),
                     host_in_valid=ctx.get(link.host_in.valid))  # fmt: skip

    async def loopback(ctx) -> None:
        held = None
        while True:
            if held is None:
                ready = rng.random() < 0.5
                ctx.set(link.host_out.valid, 0)
                ctx.set(link.host_in.ready, ready)
                if ready and ctx.get(link.host_in.valid):
                    held = ctx.get(link.host_in.payload)
            else:
                ctx.set(link.host_in.ready, 0)
                ctx.set(link.host_out.valid, 1)
                ctx.set(link.host_out.payload, held & ((1 << out_width) - 1))
                if ctx.get(link.host_out.ready):
                    forwarded.append(held)
                    held = None
            await ctx.tick()

    sim = Simulator(link)
    sim.add_clock(1e-6)
    record(sim, [link.tx], wave)
    sim.add_testbench(host)
    sim.add_testbench(loopback, background=True)
    sim.run()
    assert forwarded == words
    assert flags == {"overrun": 0, "frame_error": 0, "host_in_valid": 0}
    received = bytes(b for _, b in decode_line([w[0] for w in wave], d))
    assert received == encode(expected, out_width)
    assert decode(received, out_width) == expected


def test_host_link_assembly_timing_and_overrun() -> None:
    """Exact host_in timing; while a word waits one more byte waits in the receiver and the
    next one is lost; pad bits of the last byte are ignored."""
    d, link = 4, HostLink(12, 8, 4)
    seen: list[tuple[int, int, int]] = []
    starts: list[int] = []
    taken: list[int] = []

    async def host(ctx) -> None:
        line = Line(ctx, link.rx)
        await line.hold(1, 2)
        # word 0x234 with pad bits 0xF0 set, then 0x78 (kept) and 0x9A (lost)
        starts.extend(await line.send([(0x34, 0, 1), (0xF2, 0, 1), (0x78, 0, 1), (0x9A, 0, 1)], d))
        await line.hold(1, line.t + 2 * d)
        ctx.set(link.host_in.ready, 1)
        taken.append(ctx.get(link.host_in.payload))  # valid: checked from the record
        await line.hold(1, line.t + 1)
        ctx.set(link.host_in.ready, 0)
        await line.hold(1, line.t + 2 * d)
        assert not ctx.get(link.host_in.valid)  # 0x78 alone: half a word
        await line.send([(0xBC, 1, 1)], d)
        ctx.set(link.host_in.ready, 1)
        taken.append(ctx.get(link.host_in.payload))
        await line.hold(1, line.t + 1)

    sim = Simulator(link)
    sim.add_clock(1e-6)
    record(sim, [link.host_in.valid, link.overrun, link.frame_error], seen)
    sim.add_testbench(host)
    sim.run()
    valid = [s[0] for s in seen]
    overrun = [s[1] for s in seen]
    assert valid.index(1) == starts[1] + 9 * d + d // 2 + 4
    assert overrun.index(1) == starts[3] + 9 * d + d // 2 + 3
    assert taken == [0x234, 0xC78]
    assert valid[-1] == 0 and overrun[-1] == 1 and {s[2] for s in seen} == {0}


def test_host_link_transmit_timing() -> None:
    """Words taken whenever offered go out with no gap: byte j's start bit from t + 2 + 10*d*j."""
    d, link = 4, HostLink(4, 16, 4)
    words = [0xBEEF, 0x0102, 0x8000]
    wave: list[tuple[int]] = []
    takes: list[int] = []

    async def producer(ctx) -> None:
        await offer_all(ctx, link.host_out, words, start=3, tail=35 * d, takes=takes)

    sim = Simulator(link)
    sim.add_clock(1e-6)
    record(sim, [link.tx], wave)
    sim.add_testbench(producer)
    sim.run()
    assert takes == [3, 3 + 1 + 10 * d, 3 + 1 + 30 * d]
    frames = decode_line([w[0] for w in wave], d)
    assert frames == [(3 + 2 + 10 * d * j, b) for j, b in enumerate(encode(words, 16))]
    assert decode(bytes(b for _, b in frames), 16) == words


# ----------------------------------------------------------------------------- host codec


def test_word_bytes() -> None:
    widths = (1, 7, 8, 9, 13, 16, 17, 20, 24, 25)
    assert [word_bytes(w) for w in widths] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    for bad in (0, -3, True):
        with pytest.raises(ValueError, match="width"):
            word_bytes(bad)


def test_encode_decode_exact() -> None:
    assert encode([0x1234, 0x0001, 0x1FFF], 13) == b"\x34\x12\x01\x00\xff\x1f"
    assert encode([0xABCDE], 20) == b"\xde\xbc\x0a"
    assert encode(np.array([7, 255], dtype=np.uint16), 8) == b"\x07\xff"
    assert encode([], 9) == b""
    assert decode(b"\x34\xf2", 12) == [0x234]  # pad bits ignored
    assert decode(b"\xde\xbc\xfa\x01\x00\x00", 20) == [0xABCDE, 1]
    assert decode(b"", 5) == []


def test_encode_decode_errors() -> None:
    with pytest.raises(ValueError, match=r"word 1 = 8192 does not fit in 13 unsigned bits"):
        encode([5, 1 << 13], 13)
    with pytest.raises(ValueError, match=r"word 0 = -1 does not fit in 13 unsigned bits"):
        encode([-1], 13)
    with pytest.raises(TypeError):
        encode([1.0], 13)
    with pytest.raises(ValueError, match=r"3 bytes are not a whole number of 13-bit words"):
        decode(b"\x00\x01\x02", 13)


@pytest.mark.parametrize("width", [1, 8, 9, 13, 20, 32, 33])
def test_codec_round_trip(width: int) -> None:
    rng = random.Random(width)
    words = [rng.randrange(1 << width) for _ in range(50)] + [0, (1 << width) - 1]
    data = encode(words, width)
    assert len(data) == len(words) * word_bytes(width)
    assert decode(data, width) == words


class FakePort:
    """A byte port: ``write`` collects, ``read`` serves ``incoming`` (short at its end, like a
    pyserial read that times out)."""

    def __init__(self, incoming: bytes) -> None:
        self.written = bytearray()
        self.incoming = io.BytesIO(incoming)
        self.flushes = self.closed = 0

    def write(self, data: bytes) -> int:
        self.written += data
        return len(data)

    def read(self, n: int) -> bytes:
        return self.incoming.read(n)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed += 1


def test_serial_link() -> None:
    port = FakePort(encode([0x1FF, 0x000, 0x155], 9) + b"\x07")
    with SerialLink(port, 20, 9) as link:
        link.send([0xABCDE, 1])
        assert bytes(port.written) == b"\xde\xbc\x0a\x01\x00\x00" and port.flushes == 1
        assert link.receive(0) == []
        assert link.receive(2) == [0x1FF, 0x000]
        assert link.receive(1) == [0x155]
        with pytest.raises(TimeoutError, match=r"expected 2 9-bit words \(4 bytes\), got 1 bytes"):
            link.receive(2)
    assert port.closed == 1
    # a bare port with only write/read (no flush, no close)
    bare = types.SimpleNamespace(write=bytearray().extend, read=io.BytesIO(b"\x05").read)
    bare_link = SerialLink(bare, 3, 3)
    bare_link.send([5])
    assert bare_link.receive(1) == [5]
    bare_link.close()


def test_open_serial_without_pyserial(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "serial", None)  # import serial -> ImportError
    with pytest.raises(BackendError, match=r"'/dev/ttyFAKE0'.*pyserial is not installed"):
        open_serial("/dev/ttyFAKE0", 115200)


def _fake_pyserial(fail: bool) -> types.ModuleType:
    mod = types.ModuleType("serial")

    class SerialException(OSError):
        pass

    class Serial:
        def __init__(self, port, **kwargs) -> None:
            if fail:
                raise SerialException(f"could not open port {port}: No such file or directory")
            self.port, self.kwargs = port, kwargs

    mod.SerialException, mod.Serial = SerialException, Serial
    mod.EIGHTBITS, mod.PARITY_NONE, mod.STOPBITS_ONE = 8, "N", 1
    return mod


def test_open_serial_errors_and_settings(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "serial", _fake_pyserial(fail=True))
    with pytest.raises(BackendError, match=r"cannot open serial port 'COM9' at 9600 baud"):
        open_serial("COM9", 9600)
    monkeypatch.setitem(sys.modules, "serial", _fake_pyserial(fail=False))
    port = open_serial("/dev/ttyUSB1", 115200, timeout=0.5)
    assert port.port == "/dev/ttyUSB1"
    assert port.kwargs == {"baudrate": 115200, "bytesize": 8, "parity": "N", "stopbits": 1,
                           "timeout": 0.5}  # fmt: skip
