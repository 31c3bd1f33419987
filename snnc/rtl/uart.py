"""The accelerator's UART host link: an 8N1 receiver and transmitter and :class:`HostLink`.

Line format
-----------

8N1, idle high: a start bit (0), eight data bits, least significant first, and a stop bit (1),
each ``divisor`` clock cycles long (``divisor >= 4``; baud rate = clock / ``divisor``).

**Receiver** (:class:`UartRx`). ``rx`` goes through a two-flop synchroniser, so the receiver
sees the line two cycles late. In its idle state the first cycle in which it sees the line low
starts a frame: if ``rx`` is first low in cycle ``e``, bit ``k`` (0 the start bit, 1..8 the data
bits, 9 the stop bit) is the value ``rx`` had in cycle ``e + k*divisor + divisor//2`` (the middle
of the bit; the sample is taken in cycle ``e + 2 + k*divisor + divisor//2``). A start bit that
reads high there is a glitch: the receiver goes back to idle. A good byte is valid on ``data``
from cycle ``e + 9*divisor + divisor//2 + 3`` until taken. A byte whose stop bit is sampled while
``data`` still holds an untaken byte (valid and not ready in that cycle) is dropped and sets the
sticky ``overrun``; a stop bit that reads low drops the byte, sets the sticky ``frame_error`` and
the receiver waits for the line to go high before it looks for a start bit (a break is one
error). Both flags are cleared only by the domain reset. After the stop bit's sample the
receiver is idle again: a start bit that begins in or after cycle ``e + 9*divisor + divisor//2 +
1`` is detected on time, an earlier one late by the difference. So a sender whose bit period is
``p`` cycles (edges at ``round(k*p)``) is received correctly when ``9*divisor + divisor//2`` lies
in ``[9*p, 10*p)`` (the stop bit's sample falls in the stop bit: ``p`` within about -5 % / +5.5 %
of ``divisor``), and, when it sends bytes back to back, ``10*p >= 9*divisor + divisor//2 + 1``
(-2.5 % at ``divisor = 4``, -4.4 % at 16). On hardware the asynchronous ``rx`` adds up to one
cycle of uncertainty to ``e``.

**Transmitter** (:class:`UartTx`). ``tx`` is a register (init 1). A byte taken from ``data`` in
cycle ``t`` puts the start bit on ``tx`` in cycles ``t+1 .. t+divisor``, data bit ``k`` in
``t+1+(k+1)*divisor ..`` and the stop bit in ``t+1+9*divisor .. t+10*divisor``. ``data.ready``
is high when the transmitter is idle and in the last cycle of a stop bit, so a stream of bytes
goes out back to back, one every ``10*divisor`` cycles.

Host protocol (:class:`HostLink`)
---------------------------------

The host sends every ``host_in`` word as ``ceil(in_width/8)`` bytes, little-endian (byte 0
holds bits 0..7 of the word); the bits of the last byte above ``in_width`` are ignored. The link
assembles the bytes into a word and offers it on ``host_in`` in the cycle after its last byte is
taken from the receiver (``e + 9*divisor + divisor//2 + 4`` for a last byte whose start bit
begins in ``e``, when no word is waiting) and holds it until taken. While a word waits, the next
byte stays in the receiver's ``data`` register (back-pressure), and a byte whose stop bit is
sampled while that one still waits is lost (``overrun``). So the link holds one word and one
byte: the host paces itself to the rate at which ``host_in`` is taken. There is no resync: a
lost byte (``overrun``, ``frame_error``) shifts the byte count of every later word until the
domain reset, which also clears the flags.

Every word taken from ``host_out`` goes out as ``ceil(out_width/8)`` bytes, little-endian,
zero-padded above ``out_width``. A word taken in cycle ``t`` while the link is idle has its
byte ``j`` start bit on ``tx`` from cycle ``t + 2 + 10*divisor*j``; ``host_out.ready`` is high
while the link is idle and in the cycle the word's last byte goes to the transmitter, so words
taken whenever offered go out with no gap between bytes. ``snnc/host/link.py`` is the host's
side of this protocol.
"""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["HostLink", "UartRx", "UartTx"]


def _word_bytes(width: int) -> int:
    """Bytes per word of ``width`` bits on the link: ``ceil(width / 8)``."""
    return -(-width // 8)


def _check_divisor(divisor: int) -> int:
    if not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"UART divisor must be an integer >= 4 (clock cycles per bit), got "
                         f"{divisor!r}")  # fmt: skip
    return divisor


class UartRx(wiring.Component):
    """8N1 receiver, ``divisor`` clock cycles per bit (timing: the module docstring).

    Ports: ``rx`` (In(1), idle high), ``data`` (Out(stream.Signature(8))), sticky ``overrun``
    and ``frame_error`` (Out(1)).
    """

    def __init__(self, divisor: int) -> None:
        self.divisor = _check_divisor(divisor)
        super().__init__({"rx": In(1, init=1), "data": Out(stream.Signature(8)),
                          "overrun": Out(1), "frame_error": Out(1)})  # fmt: skip

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        meta, line = Signal(init=1), Signal(init=1)  # the two-flop synchroniser
        count = Signal(range(d))  # cycles to the next sample
        bit = Signal(range(10))  # the bit sampled next: 0 start, 1..8 data, 9 stop
        shift = Signal(8, reset_less=True)
        m.d.sync += [meta.eq(self.rx), line.eq(meta)]

        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        with m.FSM():
            with m.State("idle"):
                with m.If(~line):
                    m.d.sync += [count.eq(d // 2 - 1), bit.eq(0)]
                    m.next = "frame"
            with m.State("frame"):
                with m.If(count != 0):
                    m.d.sync += count.eq(count - 1)
                with m.Else():
                    m.d.sync += [count.eq(d - 1), bit.eq(bit + 1), shift.eq(Cat(shift[1:], line))]
                    with m.If(bit == 0):
                        with m.If(line):
                            m.next = "idle"  # a glitch, not a start bit
                    with m.Elif(bit == 9):
                        with m.If(~line):
                            m.d.sync += self.frame_error.eq(1)
                            m.next = "break"
                        with m.Else():
                            with m.If(self.data.valid & ~self.data.ready):
                                m.d.sync += self.overrun.eq(1)
                            with m.Else():
                                m.d.sync += [self.data.payload.eq(shift), self.data.valid.eq(1)]
                            m.next = "idle"
            with m.State("break"):
                with m.If(line):
                    m.next = "idle"
        return m


class UartTx(wiring.Component):
    """8N1 transmitter, ``divisor`` clock cycles per bit (timing: the module docstring).

    Ports: ``data`` (In(stream.Signature(8))), ``tx`` (Out(1), a register, idle high).
    """

    def __init__(self, divisor: int) -> None:
        self.divisor = _check_divisor(divisor)
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        busy = Signal()
        count = Signal(range(d))  # cycles left of the bit on tx, minus one
        left = Signal(range(10))  # bits still to put on tx after the current one
        shift = Signal(9, reset_less=True)  # those bits, next first
        last = busy & (count == 0) & (left == 0)
        m.d.comb += self.data.ready.eq(~busy | last)

        with m.If(busy):
            with m.If(count != 0):
                m.d.sync += count.eq(count - 1)
            with m.Elif(left != 0):
                m.d.sync += [self.tx.eq(shift[0]), shift.eq(shift[1:]), left.eq(left - 1),
                             count.eq(d - 1)]  # fmt: skip
            with m.Else():
                m.d.sync += busy.eq(0)
        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [self.tx.eq(0), shift.eq(Cat(self.data.payload, 1)), left.eq(9),
                         count.eq(d - 1), busy.eq(1)]  # fmt: skip
        return m


class HostLink(wiring.Component):
    """The host's UART link: bytes on ``rx`` to ``host_in`` words, ``host_out`` words to bytes
    on ``tx`` (protocol and timing: the module docstring).

    Parameters
    ----------
    in_width, out_width : int
        Bits of a ``host_in`` / ``host_out`` word (>= 1).
    divisor : int
        Clock cycles per bit (>= 4).

    Ports: ``rx`` (In(1)), ``tx`` (Out(1)), ``host_in`` (Out(stream.Signature(in_width))),
    ``host_out`` (In(stream.Signature(out_width))), sticky ``overrun`` and ``frame_error``
    (Out(1)) of the receiver.
    """

    def __init__(self, in_width: int, out_width: int, divisor: int) -> None:
        for name, width in (("in_width", in_width), ("out_width", out_width)):
            if not isinstance(width, int) or width < 1:
                raise ValueError(f"HostLink {name} must be an integer >= 1, got {width!r}")
        self.in_width, self.out_width = in_width, out_width
        self.divisor = _check_divisor(divisor)
        self.in_bytes, self.out_bytes = _word_bytes(in_width), _word_bytes(out_width)
        super().__init__({
            "rx": In(1, init=1), "tx": Out(1, init=1),
            "host_in": Out(stream.Signature(in_width)),
            "host_out": In(stream.Signature(out_width)),
            "overrun": Out(1), "frame_error": Out(1),
        })  # fmt: skip

    def elaborate(self, platform):
        m = Module()
        urx = m.submodules.uart_rx = UartRx(self.divisor)
        utx = m.submodules.uart_tx = UartTx(self.divisor)
        m.d.comb += [
            urx.rx.eq(self.rx), self.tx.eq(utx.tx),
            self.overrun.eq(urx.overrun), self.frame_error.eq(urx.frame_error),
        ]  # fmt: skip

        # bytes -> host_in: shift each byte in at the top; after in_bytes bytes, byte 0 is at
        # bits 0..7
        hin, nin = self.host_in, self.in_bytes
        word = Signal(8 * nin, reset_less=True)
        got = Signal(range(nin))  # bytes of the current word received
        m.d.comb += [urx.data.ready.eq(~hin.valid | hin.ready),
                     hin.payload.eq(word[: self.in_width])]  # fmt: skip
        with m.If(hin.valid & hin.ready):
            m.d.sync += hin.valid.eq(0)
        with m.If(urx.data.valid & urx.data.ready):
            m.d.sync += word.eq(Cat(word[8:], urx.data.payload))
            with m.If(got == nin - 1):
                m.d.sync += [got.eq(0), hin.valid.eq(1)]
            with m.Else():
                m.d.sync += got.eq(got + 1)

        # host_out -> bytes, byte 0 first
        hout, nout = self.host_out, self.out_bytes
        buf = Signal(8 * nout, reset_less=True)
        sent = Signal(range(nout))  # bytes of the current word sent
        busy = Signal()
        byte_taken = utx.data.valid & utx.data.ready
        m.d.comb += [
            utx.data.valid.eq(busy), utx.data.payload.eq(buf[:8]),
            hout.ready.eq(~busy | (byte_taken & (sent == nout - 1))),
        ]  # fmt: skip
        with m.If(byte_taken):
            m.d.sync += [buf.eq(buf[8:]), sent.eq(sent + 1)]
            with m.If(sent == nout - 1):
                m.d.sync += [busy.eq(0), sent.eq(0)]
        with m.If(hout.valid & hout.ready):
            m.d.sync += [buf.eq(hout.payload), busy.eq(1), sent.eq(0)]
        return m
