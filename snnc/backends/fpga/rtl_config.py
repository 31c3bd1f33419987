"""From an :class:`~snnc.backends.fpga.images.AcceleratorImage` to the RTL's plain configuration.

:func:`accelerator_config` gives the :class:`~snnc.rtl.top.AcceleratorConfig` of
:class:`~snnc.rtl.top.Accelerator`: the core images as they are, each core's routing table as a
router :class:`~snnc.rtl.router.RouteTable` (the backend's immediate entries, then its delayed
ones: per destination port a spike's events come in that order, as ``snnc/sim/cycle.py``
expands them), the host's input table, and the highest level (the update commands per level
stay in the core images).

:func:`host_words` turns time-major input into the ``host_in`` words of every step and
:func:`output_array` turns the ``host_out`` elements of every step back into the graph's output
(the host side of the protocol in ``snnc/rtl/top.py``).
"""

from __future__ import annotations

import numpy as np

from snnc.backends.fpga.images import HOST, AcceleratorImage, RoutingTable
from snnc.rtl import router as R
from snnc.rtl.top import AcceleratorConfig


def route_table(table: RoutingTable) -> R.RouteTable:
    """The router's table of one backend :class:`RoutingTable` (immediate, then delayed)."""
    runs = []
    for delayed, entries in ((False, table.immediate), (True, table.delayed)):
        for e in entries:
            dests = tuple(
                R.Destination(R.HOST if t.core == HOST else t.core, t.axon, delayed, t.stride)
                for t in e.targets
            )
            runs.append((e.first, e.first + e.count - 1, dests))
    return R.RouteTable.from_runs(runs)


def accelerator_config(image: AcceleratorImage) -> AcceleratorConfig:
    return AcceleratorConfig(
        cores=tuple(image.cores),
        tables=tuple(route_table(t) for t in image.routes),
        host_table=route_table(image.host_routes),
        host_elements=image.host_elements,
        outputs=image.output_size,
        max_level=image.max_level,
    )


def load_words(image: AcceleratorImage) -> list[tuple[int, int, int]]:
    """``(core, addr, data)`` of every weight word, for the ``load`` port of an accelerator
    whose weights are not in the bitstream (``weight_memory = "spram"``); lane j of ``data`` is
    bits ``[j*W, (j+1)*W)``, two's complement."""
    p = image.params
    mask = (1 << p.weight_bits) - 1
    out = []
    for c, core in enumerate(image.cores):
        for a, word in enumerate(core.weights):
            out.append((c, a, sum((w & mask) << (j * p.weight_bits) for j, w in enumerate(word))))
    return out


def host_words(image: AcceleratorImage, x, *, graph=None) -> list[list[list[tuple[int, int]]]]:
    """Per batch element, per step: the ``(element, payload)`` events to send (the step's
    non-zero input elements in element order; the end word is not included).

    ``x`` as for :func:`snnc.sim.cycle.simulate` (quantised the same way)."""
    from snnc.sim.cycle import _host_input

    xs = _host_input(image, x, graph)  # (T, B, elements)
    T, B = xs.shape[:2]
    return [[[(int(e), int(xs[t, b, e])) for e in np.flatnonzero(xs[t, b])] for t in range(T)]
            for b in range(B)]  # fmt: skip


def output_array(image: AcceleratorImage, steps: list[list[int]]) -> np.ndarray:
    """(T, *output shape) int64 spikes in graph order from the output elements of each step."""
    out = np.zeros((len(steps), image.output_size), np.int64)
    for t, els in enumerate(steps):
        for e in els:
            out[t, e] += 1
    if image.output_perm is not None:
        g = np.empty_like(out)
        g[:, image.output_perm] = out
        out = g
    return out.reshape(len(steps), *image.output_shape)
