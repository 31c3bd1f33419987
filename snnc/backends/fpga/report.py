"""The per-build report of the FPGA backend: what the accelerator holds and what a sample costs.

:func:`fpga_report` runs a sample input through the cycle model (:mod:`snnc.sim.cycle`) and the
integer simulator (:mod:`snnc.sim.integer`) and collects an :class:`FpgaReport`;
:meth:`FpgaReport.text` is a plain-text summary, :meth:`FpgaReport.html` a self-contained page
with hand-written SVG plots (no scripts, no external files).

What the numbers mean
---------------------

*Per core* (:class:`CoreUsage`): ``neurons`` is the sum of the core's slice sizes,
``neurons_padded`` the neurons its update commands cover (slices padded to groups of ``P``
lanes), ``axons`` the axon-table entries in use (a mapping axon that feeds ``k`` slices takes
``k`` entries), ``weight_words`` the weight-memory words the rows take (the sum of ``row_len``),
``updates`` the update commands over all levels, ``routes`` the core's routing-table entries
(immediate and delayed). Capacities are the core's :class:`~snnc.rtl.params.CoreParams` and the
target's ``router_entries``. ``memory_bits`` is :func:`snnc.rtl.core.memory_bits`: each memory's
word layout in the core x its depth (``snnc/rtl/ARCHITECTURE.md`` §2): weights ``D*P*W``; state
``N*(S + 1 [+ S for a current])``; parameters ``N*(3*S [+ S ibias] + profile index bits)``;
accumulators ``N*S``; axon table ``A*(row_base + row_len + group_base + shift + 3 flag bits)``.

*Per population* (:class:`PopulationStats`): ``rate`` is the mean of the integer simulator's
record of the population over steps, sample inputs and neurons (spikes per neuron per step);
``spikes`` the spikes per input.

*Timing* (cycle model, every input a run from reset): cycles per step (mean and max over steps
and inputs); ``bound_ratio`` = all cycles / the memory-port bound (ARCHITECTURE.md §7, the sum
over steps of the busiest core's ``row_len`` + updated neurons), 1.0 being a perfect schedule;
cycles per input = the sum over the ``T`` steps, its mean (and max) over the inputs; latency =
cycles per input / ``clock_mhz`` in µs, at the target's clock (not the synthesised fmax).

*Events per input* (means over the sample inputs):

- ``events_per_input``: events the cores took (one per axon-table entry reached,
  :attr:`CycleResult.events <snnc.sim.cycle.CycleResult.events>`);
- ``synaptic_events``: the synaptic operations of the network, **not** the hardware's lane
  operations: for every block of synapses (source, delay) of every population in the network's
  composed weight matrices (:func:`snnc.mapping.connectivity.build_network`), the non-zero
  values of each source element (spikes, or non-zero graded input) times its fan-out (its
  non-zero synapses in the block); spikes of a delay-``d`` block in the last ``d`` steps are not
  counted (their events would arrive after the run). The padding lanes the accelerator also
  reads (``row_len * P`` per event) are not synaptic events;
- ``neuron_updates``: ``T`` times the neurons of every update command (padding included: the
  hardware updates the whole group);
- ``router_events`` ("spikes routed"): deliveries through the router: the events the cores took
  plus the output population's spikes sent to the host.

*Energy per inference* = ``synaptic_events * synop + neuron_updates * neuron_update +
router_events * spike_hop`` pJ with the target's ``energy_pj`` table, in µJ; the presets'
tables are rough estimates, not measurements, and the report says so (``energy_note``).
"""

from __future__ import annotations

import html as _html
import textwrap
from dataclasses import dataclass, field

import numpy as np

from snnc.errors import BackendError
from snnc.rtl.core import memory_bits

ENERGY_KEYS = ("synop", "neuron_update", "spike_hop")
_MEMORIES = ("weights", "state", "parameters", "accumulators", "axon_table")
_SHORT = ("weights", "state", "params", "acc", "axon table")
_MAX_TEXT_ROWS = 8  #: cores / populations listed in the text summary (the HTML lists all)
_COLOURS = {"neurons": "#4c72b0", "axon entries": "#dd8452", "weight words": "#55a868"}


@dataclass(frozen=True)
class CoreUsage:
    """What one core holds (see the module docstring)."""

    index: int
    neurons: int  #: sum of the slice sizes
    neuron_capacity: int
    neurons_padded: int  #: neurons the update commands cover (slices padded to lanes)
    axons: int  #: axon-table entries in use
    axon_capacity: int
    weight_words: int  #: sum of row_len over the axon table
    weight_capacity: int
    updates: int  #: update commands over all levels
    routes: int  #: routing-table entries (immediate + delayed)
    route_capacity: int
    memory_bits: dict[str, int]  #: weights, state, parameters, accumulators, axon_table
    events: float  #: events taken per input (mean over the sample)
    fifo_peak: int  #: most events waiting in the input FIFO at once (max over the sample)

    def percent(self) -> dict[str, float]:
        """Neurons, axons and weight words in % of capacity."""
        return {"neurons": 100.0 * self.neurons / self.neuron_capacity,
                "axon entries": 100.0 * self.axons / self.axon_capacity,
                "weight words": 100.0 * self.weight_words / self.weight_capacity}  # fmt: skip


@dataclass(frozen=True)
class PopulationStats:
    name: str
    size: int
    cores: tuple[int, ...]  #: cores holding a slice of it
    level: int  #: update phase (ARCHITECTURE.md: input 0, then 1 + highest source level)
    rate: float  #: spikes per neuron per step, mean over the sample
    spikes: float  #: spikes per input, mean over the sample


@dataclass
class FpgaReport:
    """The numbers of one build on one sample input (see the module docstring)."""

    target: str
    device: str
    clock_mhz: float
    cores_used: int  #: cores holding at least one slice
    cores_available: int
    cores: list[CoreUsage]
    populations: list[PopulationStats]
    steps: int  #: T of the sample
    inputs: int  #: B of the sample
    cycles_per_step_mean: float
    cycles_per_step_max: int
    bound_ratio: float  #: cycles / memory-port bound over the sample
    cycles_per_input: float  #: mean over the inputs of the sum over the T steps
    cycles_per_input_max: int
    latency_us: float  #: cycles_per_input / clock_mhz
    events_per_input: float  #: events the cores took
    synaptic_events: float  #: per input: source non-zeros x fan-out
    neuron_updates: float  #: per input: T x neurons of the update commands
    router_events: float  #: per input: deliveries through the router ("spikes routed")
    energy_pj: dict[str, float]  #: the target's energy table
    energy_uj: float | None  #: per inference; None when the table lacks an entry
    energy_note: str  #: the assumption behind energy_uj
    synth: object | None = None  #: a snnc.rtl.synth.SynthResult
    #: population -> (T, n) 0/1 spikes of input 0 (graph flat order), the HTML's raster
    raster: dict[str, np.ndarray] | None = field(default=None, repr=False)

    # -------------------------------------------------------------------------------- text

    def text(self) -> str:
        """An aligned plain-text summary (one screen)."""
        lines = [f"FPGA report: target {self.target} ({self.device}), clock "
                 f"{_num(self.clock_mhz)} MHz",
                 f"cores           {self.cores_used} of {self.cores_available} used"]  # fmt: skip
        lines += self._core_lines()
        lines += self._memory_lines()
        lines += self._population_lines()
        lines += [
            f"sample          {self.inputs} input(s) x {self.steps} steps",
            f"cycles/step     mean {self.cycles_per_step_mean:,.1f}, max "
            f"{self.cycles_per_step_max:,}",
            f"port bound      cycles / memory-port bound = {self.bound_ratio:.3f}",
            f"cycles/input    {self.cycles_per_input:,.1f} (max {self.cycles_per_input_max:,})",
            f"latency/input   {self.latency_us:,.2f} µs at {_num(self.clock_mhz)} MHz",
            f"events/input    {self.events_per_input:,.1f} taken by cores, "
            f"{self.router_events:,.1f} routed",
            f"synaptic ev.    {self.synaptic_events:,.1f} per input (source spikes x fan-out)",
            f"neuron updates  {self.neuron_updates:,.1f} per input (T x updated neurons)",
            f"energy/infer.   {_energy(self.energy_uj)}",
            *textwrap.wrap(self.energy_note, 96, initial_indent="  ", subsequent_indent="  "),
        ]
        if self.synth is not None:
            res, fmax = _synth_line(self.synth).split("; ")
            lines += [f"synthesis       {res}", f"                {fmax}"]
        return "\n".join(lines) + "\n"

    def _core_lines(self) -> list[str]:
        out = [f"{'core':>4}  {'neurons':<17} {'padded':>6}  {'axon entries':<17} "
               f"{'weight words':<19} {'updates':>7}  routes"]  # fmt: skip
        for c in self.cores[:_MAX_TEXT_ROWS]:
            pc = c.percent()
            out.append(
                f"{c.index:>4}  {_frac(c.neurons, c.neuron_capacity, pc['neurons']):<17} "
                f"{c.neurons_padded:>6}  {_frac(c.axons, c.axon_capacity, pc['axon entries']):<17} "
                f"{_frac(c.weight_words, c.weight_capacity, pc['weight words']):<19} "
                f"{c.updates:>7}  {c.routes}/{c.route_capacity}"
            )
        if len(self.cores) > _MAX_TEXT_ROWS:
            out.append(f"      ... {len(self.cores) - _MAX_TEXT_ROWS} more cores (see the HTML)")
        return out

    def _memory_lines(self) -> list[str]:
        groups: dict[tuple, list[int]] = {}
        for c in self.cores:
            groups.setdefault(tuple(c.memory_bits[k] for k in _MEMORIES), []).append(c.index)
        out = []
        for bits, idx in groups.items():
            who = "per core" if len(groups) == 1 else "cores " + ",".join(map(str, idx))
            parts = "  ".join(f"{k} {b:,}" for k, b in zip(_SHORT, bits, strict=True))
            out.append(f"memory bits     {who}: {parts}")
        return out

    def _population_lines(self) -> list[str]:
        out = [f"{'population':<16}{'size':>8}  {'cores':<10}{'level':>5}  "
               f"{'rate':>8}  spikes/input"]  # fmt: skip
        for p in self.populations[:_MAX_TEXT_ROWS]:
            out.append(f"{p.name[:15]:<16}{p.size:>8}  {_cores(p.cores):<10}{p.level:>5}  "
                       f"{p.rate:>8.4f}  {p.spikes:,.1f}")  # fmt: skip
        if len(self.populations) > _MAX_TEXT_ROWS:
            more = len(self.populations) - _MAX_TEXT_ROWS
            out.append(f"... {more} more populations (see the HTML)")
        return out

    # -------------------------------------------------------------------------------- HTML

    def html(self, raster: dict[str, np.ndarray] | None = None) -> str:
        """A self-contained HTML5 page: the summary tables and SVG plots (utilisation per
        core, firing rate per population, and a spike raster of ``raster`` (population ->
        (T, n) 0/1), by default the report's own raster of sample input 0)."""
        raster = self.raster if raster is None else raster
        e = _html.escape
        body = [f"<h1>FPGA build report: {e(self.target)}</h1>",
                "<h2>Summary</h2>", _table(["quantity", "value"], self._summary_rows()),
                f'<p class="note">{e(self.energy_note)}</p>',
                "<h2>Cores</h2>", _table(_CORE_HEAD, [self._core_row(c) for c in self.cores]),
                "<h2>Memories per core (bits)</h2>",
                _table(["core", *(k.replace("_", " ") for k in _MEMORIES)],
                       [[str(c.index), *(f"{c.memory_bits[k]:,}" for k in _MEMORIES)]
                        for c in self.cores]),
                "<h2>Populations</h2>", _table(_POP_HEAD, [_pop_row(p) for p in self.populations]),
                "<h2>Utilisation per core</h2>", utilisation_svg(self.cores),
                "<h2>Firing rate per population</h2>", rates_svg(self.populations)]  # fmt: skip
        if raster:
            body += ["<h2>Spike raster of input 0</h2>", raster_svg(raster)]
        return _PAGE.format(title=e(f"snnc FPGA report: {self.target}"), body="\n".join(body))

    def _summary_rows(self) -> list[list[str]]:
        rows = [["target", f"{self.target} ({self.device})"],
                ["clock", f"{_num(self.clock_mhz)} MHz"],
                ["cores used", f"{self.cores_used} of {self.cores_available}"],
                ["sample", f"{self.inputs} input(s) x {self.steps} steps"],
                ["cycles per step", f"mean {self.cycles_per_step_mean:,.1f}, max "
                                    f"{self.cycles_per_step_max:,}"],
                ["cycles / memory-port bound", f"{self.bound_ratio:.3f}"],
                ["cycles per input", f"{self.cycles_per_input:,.1f} (max "
                                     f"{self.cycles_per_input_max:,})"],
                ["latency per input", f"{self.latency_us:,.2f} µs at {_num(self.clock_mhz)} MHz"],
                ["events per input", f"{self.events_per_input:,.1f} taken by cores"],
                ["router deliveries per input", f"{self.router_events:,.1f}"],
                ["synaptic events per input", f"{self.synaptic_events:,.1f}"],
                ["neuron updates per input", f"{self.neuron_updates:,.1f}"],
                ["energy per inference", _energy(self.energy_uj)]]  # fmt: skip
        if self.synth is not None:
            rows.append(["synthesis", _synth_line(self.synth)])
        return rows

    @staticmethod
    def _core_row(c: CoreUsage) -> list[str]:
        pc = c.percent()
        return [str(c.index), _frac(c.neurons, c.neuron_capacity, pc["neurons"]),
                str(c.neurons_padded), _frac(c.axons, c.axon_capacity, pc["axon entries"]),
                _frac(c.weight_words, c.weight_capacity, pc["weight words"]), str(c.updates),
                f"{c.routes}/{c.route_capacity}", f"{c.events:,.1f}", str(c.fifo_peak)]  # fmt: skip


_CORE_HEAD = ["core", "neurons", "padded", "axon entries", "weight words", "updates",
              "routes", "events/input", "FIFO peak"]  # fmt: skip
_POP_HEAD = ["population", "size", "cores", "level", "rate (spikes/neuron/step)", "spikes/input"]


def _pop_row(p: PopulationStats) -> list[str]:
    return [p.name, str(p.size), _cores(p.cores), str(p.level), f"{p.rate:.4f}",
            f"{p.spikes:,.1f}"]  # fmt: skip


# ------------------------------------------------------------------------------ formatting


def _num(v: float) -> str:
    return f"{v:g}"


def _frac(used: int, cap: int, pct: float) -> str:
    return f"{used}/{cap} {pct:.1f}%"


def _cores(cores: tuple[int, ...]) -> str:
    if len(cores) <= 3:
        return ",".join(map(str, cores))
    return f"{cores[0]}..{cores[-1]} ({len(cores)})"


def _energy(uj: float | None) -> str:
    return "n/a (no energy table)" if uj is None else f"{uj:.4g} µJ (estimate)"


def _synth_line(s) -> str:
    ffs = f"{s.flip_flops:,} FFs" if s.flip_flops >= 0 else "FFs in the logic cells"
    ok = "met" if s.met else "MISSED"
    return (f"{s.device}: {s.luts:,} LUTs, {ffs}, {s.ram_blocks} RAM blocks, {s.spram} SPRAM, "
            f"{s.dsp} DSP; fmax {s.fmax_mhz:.1f} MHz vs target {s.target_mhz:g} MHz: "
            f"{ok}")  # fmt: skip


def _table(head: list[str], rows: list[list[str]]) -> str:
    e = _html.escape
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in r) + "</tr>\n" for r in rows)
    return f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; max-width: 72em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }}
th {{ background: #f0f0f0; }}
td {{ font-variant-numeric: tabular-nums; }}
.note {{ font-size: 0.9em; color: #555; }}
svg {{ display: block; margin: 0.5em 0 1.5em; }}
svg text {{ font-family: sans-serif; font-size: 11px; fill: #222; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


# ------------------------------------------------------------------------------ SVG


def _f(v: float) -> str:
    """A coordinate: 2 decimals at most."""
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def _svg(width: float, height: float, label: str, parts: list[str]) -> str:
    e = _html.escape
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_f(width)}" height="{_f(height)}" '
            f'viewBox="0 0 {_f(width)} {_f(height)}" role="img" aria-label="{e(label)}">\n'
            + "\n".join(parts) + "\n</svg>")  # fmt: skip


def _text(x: float, y: float, s: str, anchor: str = "start", extra: str = "") -> str:
    return (f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{extra}>'
            f"{_html.escape(s)}</text>")  # fmt: skip


def _x_axis(x0: float, y0: float, width: float, height: float, ticks, fmt) -> list[str]:
    """Vertical grid lines at ``ticks`` (fractions of ``width``) labelled ``fmt(tick)``."""
    out = []
    for t in ticks:
        x = x0 + t * width
        out.append(f'<line x1="{_f(x)}" y1="{_f(y0)}" x2="{_f(x)}" y2="{_f(y0 + height)}" '
                   'stroke="#ddd"/>')  # fmt: skip
        out.append(_text(x, y0 + height + 13, fmt(t), "middle"))
    return out


def utilisation_svg(cores: list[CoreUsage]) -> str:
    """Grouped horizontal bars: per core, neurons, axon entries and weight words in % of
    capacity."""
    left, width, bar, gap = 70.0, 420.0, 11.0, 12.0
    top = 28.0
    group = 3 * bar + gap
    height = max(len(cores), 1) * group
    parts = []
    for i, (name, colour) in enumerate(_COLOURS.items()):
        x = left + i * 130
        parts.append(f'<rect x="{_f(x)}" y="6" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(x + 14, 15, name))
    parts += _x_axis(left, top, width, height, [0, 0.25, 0.5, 0.75, 1.0],
                     lambda t: f"{round(t * 100)}%")  # fmt: skip
    for k, c in enumerate(cores):
        y = top + k * group
        parts.append(_text(left - 6, y + 1.5 * bar + 4, f"core {c.index}", "end"))
        for j, (name, pct) in enumerate(c.percent().items()):
            w = width * min(max(pct, 0.0), 100.0) / 100.0
            yy = y + j * bar
            parts.append(f'<rect class="bar" x="{_f(left)}" y="{_f(yy)}" width="{_f(w)}" '
                         f'height="{_f(bar - 1)}" fill="{_COLOURS[name]}"><title>core '
                         f"{c.index} {name}: {pct:.1f}%</title></rect>")  # fmt: skip
            parts.append(_text(left + w + 4, yy + bar - 2, f"{pct:.1f}%"))
    parts.append(_text(left + width / 2, top + height + 28, "% of the core's capacity", "middle"))
    return _svg(left + width + 60, top + height + 36, "utilisation per core", parts)


def _nice_scale(v: float) -> tuple[float, list[float]]:
    """The smallest of 1, 2, 5 x 10^k at least ``v`` (1 when v <= 0) and round ticks on it,
    as fractions of it."""
    if v <= 0:
        return 1.0, [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    base = 10.0 ** np.floor(np.log10(v))
    m = next(m for m in (1, 2, 5, 10) if m * base >= v * (1 - 1e-12))
    ticks = [0, 0.25, 0.5, 0.75, 1.0] if m == 2 else [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    return m * base, ticks


def rates_svg(pops: list[PopulationStats]) -> str:
    """Horizontal bars: the mean firing rate (spikes/neuron/step) of each population."""
    left, width, bar = 120.0, 400.0, 16.0
    top = 10.0
    height = max(len(pops), 1) * (bar + 6)
    top_v, ticks = _nice_scale(max((p.rate for p in pops), default=0.0))
    parts = _x_axis(left, top, width, height, ticks, lambda t: f"{t * top_v:.3g}")
    for k, p in enumerate(pops):
        y = top + k * (bar + 6) + 3
        w = width * p.rate / top_v
        parts.append(_text(left - 6, y + bar - 4, p.name[:18], "end"))
        parts.append(f'<rect class="bar" x="{_f(left)}" y="{_f(y)}" width="{_f(w)}" '
                     f'height="{_f(bar)}" fill="#4c72b0"><title>{_html.escape(p.name)}: '
                     f"{p.rate:.4f} spikes/neuron/step</title></rect>")  # fmt: skip
        parts.append(_text(left + w + 4, y + bar - 4, f"{p.rate:.4f}"))
    parts.append(_text(left + width / 2, top + height + 28, "spikes per neuron per step",
                       "middle"))  # fmt: skip
    return _svg(left + width + 70, top + height + 36, "firing rate per population", parts)


def raster_svg(raster: dict[str, np.ndarray]) -> str:
    """A spike raster: x = step, y = neuron, populations stacked top to bottom with their
    names; one ``<rect class="spike">`` per spike."""
    arrs = {k: np.asarray(v).reshape(np.shape(v)[0], -1) for k, v in raster.items()}
    T = max((a.shape[0] for a in arrs.values()), default=0)
    n = sum(a.shape[1] for a in arrs.values())
    left, width, top = 120.0, 600.0, 10.0
    height = float(min(max(3 * n, 120), 640))
    dx, dy = width / max(T, 1), height / max(n, 1)
    mw, mh = min(max(0.8 * dx, 1.0), max(2 * dy, 2.0)), max(0.85 * dy, 0.6)
    step = max(1, int(_nice_scale(T / 10)[0]))
    ticks = [(t + 0.5) / max(T, 1) for t in range(0, T, step)]
    parts = _x_axis(left, top, width, height, ticks, lambda f: str(round(f * T - 0.5)))
    row = 0
    for i, (name, a) in enumerate(arrs.items()):
        y0, h = top + row * dy, a.shape[1] * dy
        if i % 2:
            parts.append(f'<rect x="{_f(left)}" y="{_f(y0)}" width="{_f(width)}" '
                         f'height="{_f(h)}" fill="#f3f3f3"/>')  # fmt: skip
        parts.append(f'<line x1="{_f(left - 4)}" y1="{_f(y0)}" x2="{_f(left + width)}" '
                     f'y2="{_f(y0)}" stroke="#999"/>')  # fmt: skip
        parts.append(_text(left - 6, y0 + h / 2 + 4, f"{name[:14]} ({a.shape[1]})", "end"))
        t_idx, n_idx = np.nonzero(a)
        spikes = [f'<rect class="spike" x="{_f(left + t * dx + (dx - mw) / 2)}" '
                  f'y="{_f(y0 + k * dy)}" width="{_f(mw)}" height="{_f(mh)}"/>'
                  for t, k in zip(t_idx.tolist(), n_idx.tolist(), strict=True)]  # fmt: skip
        parts.append('<g fill="#222">' + "".join(spikes) + "</g>")
        row += a.shape[1]
    parts.append(_text(left + width / 2, top + height + 28, "step", "middle"))
    parts.append(_text(-(top + height / 2), 14, "neuron", "middle", ' transform="rotate(-90)"'))
    return _svg(left + width + 20, top + height + 36, "spike raster of input 0", parts)


# ------------------------------------------------------------------------------ numbers


def _core_usage(image, c: int, route_capacity: int, cr) -> CoreUsage:
    img, lay = image.cores[c], image.layouts[c]
    p = img.params
    return CoreUsage(
        index=c, neurons=sum(s.size for s in lay.slices), neuron_capacity=p.neurons,
        neurons_padded=sum(s.n_groups for s in lay.slices) * p.lanes,
        axons=int(np.sum(lay.axon_count)), axon_capacity=p.axons,
        weight_words=sum(a.row_len for a in img.axons), weight_capacity=p.weight_words,
        updates=sum(len(v) for v in img.updates.values()), routes=image.routes[c].entries,
        route_capacity=route_capacity, memory_bits=memory_bits(img),
        events=float(cr.events[:, :, c].sum() / cr.events.shape[1]),
        fifo_peak=int(cr.fifo_peak[:, :, c].max(initial=0)),
    )  # fmt: skip


def _flat(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.reshape(a.shape[0], a.shape[1], -1)


def synaptic_events(net, record: dict[str, np.ndarray]) -> int:
    """Synaptic operations of the whole sample: per block, each source element's non-zero
    values (steps that a delay-d block delivers within the run) times its fan-out."""
    total = 0
    for pop in net.populations.values():
        for b in pop.blocks:
            s = _flat(record[b.source]) != 0  # (T, B, n) graph order
            perm = net.perm.get(b.source)
            if perm is not None:
                s = s[:, :, perm]
            s = s[: s.shape[0] - b.delay] if b.delay else s
            fan = np.diff(b.matrix.tocsc().indptr).astype(np.int64)
            total += int(s.sum(axis=(0, 1)).astype(np.int64) @ fan)
    return total


def _populations(image, record, B: int) -> list[PopulationStats]:
    cores: dict[str, list[int]] = {}
    for lay in image.layouts:
        for s in lay.slices:
            held = cores.setdefault(s.population, [])
            if s.core not in held:
                held.append(s.core)
    out = []
    for name in sorted(cores, key=lambda n: image.levels[n]):
        r = _flat(record[name])
        out.append(PopulationStats(name, r.shape[2], tuple(sorted(cores[name])),
                                   image.levels[name], float(r.mean()),
                                   float(r.sum() / B)))  # fmt: skip
    return out


def _energy_of(t, syn: float, upd: float, hops: float) -> tuple[float | None, str]:
    table = t.energy_pj.as_dict()
    missing = [k for k in ENERGY_KEYS if k not in table]
    if missing:
        return None, (f"no energy estimate: the target's energy table has no "
                      f"{', '.join(missing)}")  # fmt: skip
    pj = syn * table["synop"] + upd * table["neuron_update"] + hops * table["spike_hop"]
    note = (f"energy = synaptic events x {table['synop']:g} pJ + neuron updates x "
            f"{table['neuron_update']:g} pJ + router deliveries x {table['spike_hop']:g} pJ "
            f"(target '{t.name}' energy table): rough estimates, not measurements")  # fmt: skip
    return pj * 1e-6, note


def fpga_report(graph, image, target, x, *, synth=None) -> FpgaReport:
    """The report of ``image`` (built from the compiled ``graph``) for ``target`` (a
    :class:`~snnc.targets.schema.Target` or preset name / path) on the sample ``x``, time-major
    ``(T, B, *input shape)`` as the simulators take it. ``synth``: an optional
    :class:`~snnc.rtl.synth.SynthResult` to include."""
    from snnc.mapping.connectivity import build_network
    from snnc.sim.cycle import simulate as cycle_simulate
    from snnc.sim.integer import simulate as int_simulate
    from snnc.targets import load_target

    t = load_target(target)
    if t.fpga is None:
        raise BackendError(f"FPGA report: target '{t.name}' is not an FPGA target")
    if t.name != image.target:
        raise BackendError(f"FPGA report: the image was built for target '{image.target}', not "
                           f"'{t.name}'")  # fmt: skip
    cr = cycle_simulate(image, x, graph=graph)
    _, record = int_simulate(graph, x, record=True)
    T, B = cr.cycles.shape
    pops = _populations(image, record, B)
    syn = synaptic_events(build_network(graph), record) / B
    updated = sum(n * image.params.lanes for ci in image.cores for cmds in ci.updates.values()
                  for _, n in cmds)  # fmt: skip
    upd = float(T * updated)
    out_spikes = float(_flat(record[image.output]).sum() / B)
    events = float(cr.events.sum() / B)
    hops = events + out_spikes
    energy, note = _energy_of(t, syn, upd, hops)
    per_input = cr.cycles_per_image
    cores = [_core_usage(image, c, t.router_entries, cr) for c in range(len(image.cores))]
    return FpgaReport(
        target=t.name, device=t.fpga.device, clock_mhz=float(t.fpga.clock_mhz),
        cores_used=sum(1 for lay in image.layouts if lay.slices),
        cores_available=t.total_cores, cores=cores, populations=pops, steps=T, inputs=B,
        cycles_per_step_mean=float(cr.cycles.mean()), cycles_per_step_max=int(cr.cycles.max()),
        bound_ratio=cr.ratio, cycles_per_input=float(per_input.mean()),
        cycles_per_input_max=int(per_input.max()),
        latency_us=float(per_input.mean()) / float(t.fpga.clock_mhz),
        events_per_input=events, synaptic_events=float(syn), neuron_updates=upd,
        router_events=hops, energy_pj=t.energy_pj.as_dict(), energy_uj=energy, energy_note=note,
        synth=synth,
        raster={p.name: (_flat(record[p.name])[:, 0] != 0).astype(np.uint8) for p in pops},
    )  # fmt: skip
