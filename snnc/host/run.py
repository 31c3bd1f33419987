"""Running a batch on an accelerator board over its UART link (``snnc/backends/fpga/board.py``).

:func:`run_on_board` talks to anything with ``send(words)`` and ``receive(count)`` (a
:class:`~snnc.host.link.SerialLink` from :func:`open_board`, or a simulated link in the tests).
It streams step by step, as the link protocol requires (the board holds one link word and one
byte): the load chunks once (when the weights are loaded by the host), then per batch element a
clear word and, per step, the step's words (its events and the end word), after which it reads
words back until the step's end-of-step marker before sending the next step.
"""

from __future__ import annotations

import time

import numpy as np

from snnc.backends.fpga.board import (
    DEFAULT_BAUD,
    LinkFormat,
    link_format,
    load_stream,
    step_streams,
)
from snnc.backends.fpga.images import AcceleratorImage
from snnc.backends.fpga.rtl_config import output_array
from snnc.errors import BackendError
from snnc.host.link import SerialLink, open_serial

__all__ = ["open_board", "run_on_board"]


def open_board(port: str, image: AcceleratorImage, *, baud: int = DEFAULT_BAUD,
               timeout: float = 1.0) -> SerialLink:  # fmt: skip
    """A :class:`SerialLink` to the board on serial ``port`` running ``image`` (link word
    widths from the image; ``timeout``: the port's read timeout in seconds)."""
    fmt = link_format(image)
    return SerialLink(open_serial(port, baud, timeout), fmt.link_width, fmt.out_width)


def _check_widths(link, fmt: LinkFormat) -> None:
    for attr, want, what in (("in_width", fmt.link_width, "sends"),
                             ("out_width", fmt.out_width, "receives")):  # fmt: skip
        have = getattr(link, attr, want)
        if have != want:
            raise BackendError(f"the link {what} {have}-bit words; this accelerator's board "
                               f"link {what} {want}-bit words (see open_board)")  # fmt: skip


def _read_step(link, fmt: LinkFormat, outputs: int, deadline: float | None, where: str):
    """The output elements and the cycles of one step (words up to its end marker)."""
    elements: list[int] = []
    while True:
        try:
            (word,) = link.receive(1)
        except TimeoutError as e:
            raise BackendError(f"{where}: {e}") from e
        element, end, cycles = fmt.out_word(word)
        if end:
            return elements, cycles
        if element >= outputs or len(elements) >= outputs:
            raise BackendError(f"{where}: output word {word:#x} is not a spike of one of the "
                               f"{outputs} outputs; the link is out of step (reset the "
                               f"board)")  # fmt: skip
        elements.append(element)
        if deadline is not None and time.monotonic() > deadline:
            raise BackendError(f"{where}: no end-of-step marker in time")


def run_on_board(
    link, image: AcceleratorImage, x, graph=None, *, timeout: float | None = 10.0,
    load: bool = True, clear_first: bool = True,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Run the batch ``x`` on the board behind ``link``.

    Parameters
    ----------
    link
        Has ``send(words)`` (link words, ``LinkFormat.link_width`` bits) and ``receive(count)
        -> list[int]`` (host_out words); ``in_width``/``out_width`` attributes, when present,
        must match the image's link.
    image : AcceleratorImage
        What the board's bitstream was built from.
    x
        Time-major input ``(T, B, *input shape)`` (or a mapping name -> array), as for
        :func:`snnc.sim.integer.simulate`; with ``graph`` (the compiled graph) its
        quantisation is used.
    timeout : float or None
        Seconds to wait for a step's end-of-step marker (on top of the link's own timeout).
    load : bool
        Send the weights first (when the image's weights are loaded by the host); once per
        power-up is enough, a clear keeps them.
    clear_first : bool
        Send a clear word before the first batch element too (the board may hold the state of
        an earlier run); the clear word costs no cycles of the steps.

    Returns
    -------
    outputs : ndarray
        ``(T, B, *output shape)`` int64 spikes in graph order, as
        :func:`snnc.sim.integer.simulate` gives them.
    cycles : ndarray
        ``(T, B)`` cycles of every step as the accelerator counted them.

    Raises
    ------
    BackendError
        The link's word widths do not match, a read timed out, or the words that came back do
        not follow the protocol.
    """
    fmt = link_format(image)
    _check_widths(link, fmt)
    streams = step_streams(image, x, graph, fmt)
    B = len(streams)
    T = len(streams[0]) if B else 0
    outs = np.zeros((T, B, *image.output_shape), np.int64)
    cycles = np.zeros((T, B), np.int64)
    if load:
        chunks = load_stream(image, fmt)
        if chunks:
            link.send(chunks)
    for b, steps in enumerate(streams):
        if b or clear_first:
            link.send([fmt.clear()])
        elements = []
        for t, words in enumerate(steps):
            deadline = None if timeout is None else time.monotonic() + timeout
            link.send(words)
            els, cycles[t, b] = _read_step(link, fmt, image.output_size, deadline,
                                           f"input {b}, step {t}")  # fmt: skip
            elements.append(els)
        outs[:, b] = output_array(image, elements)
    return outs, cycles
