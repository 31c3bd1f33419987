"""The host's side of the accelerator's UART link (``snnc/rtl/uart.py``, :class:`HostLink`).

Every word of ``width`` bits travels as ``word_bytes(width) = ceil(width/8)`` bytes,
little-endian (byte 0 holds bits 0..7). :func:`encode` sends words the accelerator takes on
``host_in``; :func:`decode` reads words it sends from ``host_out`` (zero-padded; the bits above
``width`` are ignored). The line is 8N1 at the accelerator's clock / ``divisor`` baud; the host
paces itself (the link holds one waiting word and one byte: see ``snnc/rtl/uart.py``).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Protocol

from snnc.errors import BackendError

__all__ = ["SerialLink", "decode", "encode", "open_serial", "word_bytes"]


def word_bytes(width: int) -> int:
    """Bytes per word of ``width`` bits on the link: ``ceil(width / 8)``."""
    if isinstance(width, bool) or operator.index(width) < 1:
        raise ValueError(f"word width must be an integer >= 1, got {width!r}")
    return -(-operator.index(width) // 8)


def encode(words: Iterable[int], width: int) -> bytes:
    """The bytes of ``words`` (each ``0 <= word < 2**width``), ``word_bytes(width)`` per word.

    Raises
    ------
    ValueError
        If a word does not fit in ``width`` unsigned bits (negative or too large).
    """
    nb, width = word_bytes(width), operator.index(width)
    out = bytearray()
    for k, w in enumerate(words):
        w = operator.index(w)  # also numpy integers; floats are a TypeError
        if not 0 <= w < 1 << width:
            raise ValueError(f"word {k} = {w} does not fit in {width} unsigned bits "
                             f"(0 .. {(1 << width) - 1})")  # fmt: skip
        out += w.to_bytes(nb, "little")
    return bytes(out)


def decode(data: bytes, width: int) -> list[int]:
    """The words of ``data``, ``word_bytes(width)`` bytes each; bits above ``width`` dropped.

    Raises
    ------
    ValueError
        If ``len(data)`` is not a multiple of ``word_bytes(width)``.
    """
    nb, width = word_bytes(width), operator.index(width)
    data = bytes(data)
    if len(data) % nb:
        raise ValueError(f"{len(data)} bytes are not a whole number of {width}-bit words "
                         f"({nb} bytes each)")  # fmt: skip
    mask = (1 << width) - 1
    return [int.from_bytes(data[i : i + nb], "little") & mask for i in range(0, len(data), nb)]


class Port(Protocol):
    """What :class:`SerialLink` needs of its port (a pyserial ``Serial`` has it): ``write``
    writes all the bytes, ``read(n)`` blocks until ``n`` bytes or its timeout."""

    def write(self, data: bytes, /) -> int | None: ...

    def read(self, size: int, /) -> bytes: ...


class SerialLink:
    """Words to and from an accelerator over a byte port.

    Parameters
    ----------
    port : Port
        A file-like object with ``write(bytes)`` and ``read(n) -> bytes`` (a pyserial
        ``Serial`` from :func:`open_serial`, or a test double). ``read`` returning fewer than
        ``n`` bytes means a timeout. ``flush()`` and ``close()`` are called when present.
    in_width, out_width : int
        Bits of the accelerator's ``host_in`` / ``host_out`` words.
    """

    def __init__(self, port: Port, in_width: int, out_width: int) -> None:
        self.port = port
        self.in_width, self.out_width = in_width, out_width
        self.in_bytes, self.out_bytes = word_bytes(in_width), word_bytes(out_width)

    def send(self, words: Iterable[int]) -> None:
        """Write ``words`` (``host_in`` words, ``0 <= word < 2**in_width``)."""
        self.port.write(encode(words, self.in_width))
        flush = getattr(self.port, "flush", None)
        if flush is not None:
            flush()

    def receive(self, count: int) -> list[int]:
        """Read exactly ``count`` ``host_out`` words.

        Raises
        ------
        TimeoutError
            If the port returns fewer bytes than ``count`` words take.
        """
        want = count * self.out_bytes
        if want == 0:
            return []
        data = self.port.read(want)
        if len(data) < want:
            raise TimeoutError(
                f"serial link: expected {count} {self.out_width}-bit words ({want} bytes), got "
                f"{len(data)} bytes before the port's read timed out; is the accelerator "
                f"running and the baud rate right?"
            )
        return decode(data[:want], self.out_width)

    def close(self) -> None:
        """Close the port (when it has ``close``)."""
        close = getattr(self.port, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> SerialLink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_serial(port: str, baud: int, timeout: float = 1.0):
    """Open ``port`` 8N1 at ``baud`` with pyserial; ``read`` times out after ``timeout`` s.

    Raises
    ------
    BackendError
        If pyserial is not installed or the port cannot be opened.
    """
    try:
        import serial  # pyserial: optional, only the hardware link needs it
    except ImportError as e:
        raise BackendError(
            f"cannot open serial port {port!r}: the Python package pyserial is not installed "
            f"(pip install pyserial)"
        ) from e
    try:
        return serial.Serial(port, baudrate=baud, bytesize=serial.EIGHTBITS,
                             parity=serial.PARITY_NONE, stopbits=serial.STOPBITS_ONE,
                             timeout=timeout)  # fmt: skip
    except (serial.SerialException, OSError, ValueError) as e:
        raise BackendError(f"cannot open serial port {port!r} at {baud} baud: {e}") from e
