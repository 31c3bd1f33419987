"""The FPGA build report (snnc/backends/fpga/report.py): every number recomputed here from the
images, the mapping, the graph's weights and the two simulators; the HTML is well-formed,
self-contained and draws one raster mark per spike."""

from __future__ import annotations

import dataclasses
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from snnc.backends.fpga import build_images
from snnc.backends.fpga.report import FpgaReport, fpga_report, memory_bits
from snnc.build import compile_model
from snnc.errors import BackendError
from snnc.mapping.cores import mapping_of
from snnc.rtl.synth import SynthResult
from snnc.sim.cycle import simulate as cycle_sim
from snnc.sim.integer import simulate as int_sim
from snnc.targets import load_target
from snnc.targets.schema import EnergyTable

from .test_images import tiny_fpga

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"


@dataclasses.dataclass
class Build:
    target: str
    graph: object
    mapping: object
    image: object
    x: np.ndarray
    report: FpgaReport
    cycles: object  #: CycleResult
    record: dict


def _build(target: str, inputs: int = 4) -> Build:
    r = compile_model(DIGITS / "model.pt", target=target)
    m = mapping_of(r.graph)
    image = build_images(r.graph, m, target)
    x = np.load(DIGITS / "sample_input.npy")[:, :inputs]
    rep = fpga_report(r.graph, image, target, x)
    _, rec = int_sim(r.graph, x, record=True)
    return Build(target, r.graph, m, image, x, rep, cycle_sim(image, x, graph=r.graph), rec)


@pytest.fixture(scope="module")
def digits() -> Build:
    return _build("fpga")


@pytest.fixture(scope="module")
def spread(tmp_path_factory) -> Build:
    """The digits over several small cores (48 neurons each)."""
    return _build(tiny_fpga(tmp_path_factory.mktemp("report")), inputs=3)


def _fake_synth(fmax: float) -> SynthResult:
    return SynthResult("ecp5-25k", {}, 12345, 6789, 40, 0, 4, fmax, 100.0)


# ------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize("which", ["digits", "spread"])
def test_core_usage_is_the_mapping_and_the_images(which, request) -> None:
    b: Build = request.getfixturevalue(which)
    rep, img = b.report, b.image
    assert rep.cores_used == sum(1 for c in b.mapping.cores if c.slices)
    assert rep.cores_used == (1 if which == "digits" else 4)
    assert rep.cores_available == load_target(b.target).total_cores == (2 if which == "digits"
                                                                         else 8)  # fmt: skip
    assert [c.index for c in rep.cores] == list(range(len(img.cores)))
    P = img.params.lanes
    for cu, core in zip(rep.cores, b.mapping.cores, strict=True):
        ci = img.cores[cu.index]
        assert cu.neurons == sum(s.stop - s.start for s in core.slices)
        assert cu.neurons_padded == sum(-(-(s.stop - s.start) // P) * P for s in core.slices)
        assert cu.neuron_capacity == img.params.neurons
        assert cu.axons == sum(1 for a in ci.axons if a.row_len > 0)
        assert cu.axon_capacity == img.params.axons == len(ci.axons)
        assert cu.weight_words == sum(a.row_len for a in ci.axons)
        assert cu.weight_capacity == img.params.weight_words
        assert cu.updates == sum(len(v) for v in ci.updates.values())
        assert cu.routes == len(img.routes[cu.index].immediate) + len(img.routes[cu.index].delayed)
        assert cu.events == b.cycles.events[:, :, cu.index].sum() / b.x.shape[1]
        assert cu.fifo_peak == b.cycles.fifo_peak[:, :, cu.index].max()
    if which == "digits":
        c0 = rep.cores[0]
        assert (c0.neurons, c0.neurons_padded, c0.axons, c0.weight_words, c0.updates) == (
            138, 144, 192, 640, 2)  # fmt: skip
        assert c0.percent()["neurons"] == 100 * 138 / 256


def test_memory_bits_are_the_rtl_memories(digits) -> None:
    from snnc.rtl.core import NeuronCore

    ci = digits.image.cores[0]
    p = ci.params
    core = NeuronCore(ci)
    got = memory_bits(ci)
    assert got == digits.report.cores[0].memory_bits
    assert got["weights"] == p.weight_words * p.lanes * p.weight_bits
    assert got["axon_table"] == core.axon_layout.size * p.axons
    assert got["state"] == core.state_layout.size * p.neurons
    assert got["parameters"] == core.param_layout.size * p.neurons
    assert got["accumulators"] == p.groups * p.lanes * p.acc_width < p.groups * p.lanes * 24


def test_timing_is_the_cycle_model(digits) -> None:
    rep, cr = digits.report, digits.cycles
    T, B = digits.x.shape[:2]
    clock = load_target("fpga").fpga.clock_mhz
    assert (rep.steps, rep.inputs, rep.clock_mhz) == (T, B, clock)
    assert rep.cycles_per_step_mean == cr.cycles.mean()
    assert rep.cycles_per_step_max == cr.cycles.max()
    per_input = cr.cycles.sum(axis=0)
    assert rep.cycles_per_input == per_input.mean()
    assert rep.cycles_per_input_max == per_input.max()
    assert rep.latency_us == rep.cycles_per_input / clock
    assert rep.bound_ratio == cr.cycles.sum() / cr.bound.sum()
    assert rep.events_per_input == cr.events.sum() / B


def test_rates_are_the_integer_record(digits) -> None:
    rep, rec = digits.report, digits.record
    B = digits.x.shape[1]
    assert [(p.name, p.size, p.cores, p.level) for p in rep.populations] == [
        ("l1", 128, (0,), 1), ("l3", 10, (0,), 2)]  # fmt: skip
    for p in rep.populations:
        assert digits.graph.nodes[p.name].spiking
        assert p.rate == rec[p.name].mean()
        assert p.spikes == rec[p.name].sum() / B
    assert 0 < min(p.rate for p in rep.populations)


def test_spread_populations_name_their_cores(spread) -> None:
    for p in spread.report.populations:
        cores = sorted({c for c, _ in spread.mapping.slices_of(p.name)})
        assert p.cores == tuple(cores)
        assert p.rate == spread.record[p.name].mean()
    assert len(spread.report.populations[0].cores) > 1


def test_energy_is_the_stated_formula(digits) -> None:
    rep, rec, cr, g = digits.report, digits.record, digits.cycles, digits.graph
    T, B = digits.x.shape[:2]
    # fan-out of each input element / l1 neuron: its non-zero weights in l0 / l2 (Affine)
    fan0 = np.count_nonzero(g.params["l0"]["weight"], axis=0)
    fan1 = np.count_nonzero(g.params["l2"]["weight"], axis=0)
    x_nz = (digits.x != 0).sum(axis=(0, 1))
    l1 = rec["l1"].sum(axis=(0, 1))
    syn = (int(x_nz @ fan0) + int(l1 @ fan1)) / B
    assert rep.synaptic_events == syn
    upd = T * (16 + 2) * 8  # l1: 16 groups of 8, l3: 2 groups (padded)
    assert rep.neuron_updates == upd
    # every non-zero input element with synapses is one event into core 0, every l1 spike one;
    # l3's spikes go to the host
    events = int(x_nz[fan0 > 0].sum()) + int(l1.sum())
    assert cr.events.sum() == events
    hops = (events + int(rec["l3"].sum())) / B
    assert rep.router_events == hops
    e = load_target("fpga").energy_pj
    pj = syn * e["synop"] + upd * e["neuron_update"] + hops * e["spike_hop"]
    assert rep.energy_uj == pytest.approx(pj / 1e6, rel=1e-12)
    assert rep.energy_pj == e.as_dict()
    for v in e.as_dict().values():
        assert f"{v:g} pJ" in rep.energy_note
    assert "rough estimates, not measurements" in rep.energy_note


def test_no_energy_table_and_refused_targets(digits) -> None:
    t = dataclasses.replace(load_target("fpga"), energy_pj=EnergyTable())
    rep = fpga_report(digits.graph, digits.image, t, digits.x[:4, :1])
    assert rep.energy_uj is None
    assert "n/a (no energy table)" in rep.text()
    assert "no synop, neuron_update, spike_hop" in rep.energy_note
    with pytest.raises(BackendError, match="not an FPGA target"):
        fpga_report(digits.graph, digits.image, "loihi1", digits.x)
    with pytest.raises(BackendError, match="built for target 'ecp5-25k', not 'ice40-up5k'"):
        fpga_report(digits.graph, digits.image, "ice40-up5k", digits.x)


# ------------------------------------------------------------------------------ text


def test_text_summary(digits) -> None:
    text = digits.report.text()
    lines = text.splitlines()
    assert len(lines) < 40
    rep = digits.report
    want = [
        "FPGA report: target ecp5-25k (ecp5-25k), clock 100 MHz",
        "cores           1 of 2 used",
        f"cycles/step     mean {rep.cycles_per_step_mean:,.1f}, max {rep.cycles_per_step_max:,}",
        f"latency/input   {rep.latency_us:,.2f} µs at 100 MHz",
        f"energy/infer.   {rep.energy_uj:.4g} µJ (estimate)",
        f"sample          4 input(s) x {digits.x.shape[0]} steps",
    ]
    for w in want:
        assert w in lines
    assert any(ln.startswith("   0  138/256 53.9%") for ln in lines)
    assert any(ln.startswith("l1") and "0.2" in ln for ln in lines)
    assert "rough estimates, not measurements" in " ".join(lines)
    assert "synthesis" not in text


@pytest.mark.parametrize("fmax, verdict", [(87.25, "MISSED"), (112.5, "met")])
def test_synthesis_figures(digits, fmax, verdict) -> None:
    synth = _fake_synth(fmax)
    if verdict == "MISSED":  # once through fpga_report itself
        rep = fpga_report(digits.graph, digits.image, "fpga", digits.x[:3, :1], synth=synth)
    else:
        rep = dataclasses.replace(digits.report, synth=synth)
    assert rep.synth is synth
    text = rep.text()
    assert "synthesis       ecp5-25k: 12,345 LUTs, 6,789 FFs, 40 RAM blocks, 0 SPRAM, 4 DSP" in text
    assert f"fmax {fmax:.1f} MHz vs target 100 MHz: {verdict}" in text
    assert ("MISSED" in text) == (verdict == "MISSED")
    page = rep.html()
    assert f"fmax {fmax:.1f} MHz vs target 100 MHz: {verdict}" in page
    assert len(text.splitlines()) < 40


# ------------------------------------------------------------------------------ HTML

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "wbr", "source"}


class Checker(HTMLParser):
    """Nesting of every element (void ones aside), the <svg> plots and their spike marks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.svgs: list[str] = []  #: aria-label of each <svg>
        self.spikes: list[int] = []  #: spike marks per <svg>
        self.decl = ""

    def handle_decl(self, decl: str) -> None:
        self.decl = decl

    def handle_starttag(self, tag, attrs) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "svg":
            self.svgs.append(a.get("aria-label", ""))
            self.spikes.append(0)
        if tag == "rect" and a.get("class") == "spike":
            self.spikes[-1] += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()


def _check(page: str) -> Checker:
    c = Checker()
    c.feed(page)
    c.close()
    assert not c.errors and not c.stack, (c.errors, c.stack)
    assert c.decl.lower() == "doctype html"
    return c


def test_html_is_well_formed_and_self_contained(digits) -> None:
    page = digits.report.html()
    c = _check(page)
    assert c.svgs == ["utilisation per core", "firing rate per population",
                      "spike raster of input 0"]  # fmt: skip
    assert page.count("<svg") == 3
    names = {t for t, _ in c.tags}
    assert {"html", "head", "body", "title", "table", "svg"} <= names
    assert not names & {"script", "link", "img", "iframe", "object"}
    for _, a in c.tags:
        assert not {"src", "href", "onload", "onclick"} & set(a)
    assert "http://www.w3.org/2000/svg" in page and "http" not in page.replace(
        "http://www.w3.org/2000/svg", "")  # fmt: skip
    # the utilisation plot: 3 bars per core; the rate plot: 1 per population
    bars = [a for t, a in c.tags if t == "rect" and a.get("class") == "bar"]
    assert len(bars) == 3 * len(digits.report.cores) + len(digits.report.populations)
    for p in digits.report.populations:
        assert f"<td>{p.name}</td><td>{p.size}</td>" in page
    assert "0.2327" in page or f"{digits.report.populations[0].rate:.4f}" in page


def test_raster_marks_every_spike_of_input_0(digits) -> None:
    rec = digits.record
    raster = digits.report.raster
    assert list(raster) == ["l1", "l3"]
    for name, a in raster.items():
        np.testing.assert_array_equal(a, rec[name][:, 0])
    c = _check(digits.report.html())
    want = sum(int(rec[n][:, 0].sum()) for n in ("l1", "l3"))
    assert want > 0
    assert c.spikes == [0, 0, want]
    # an explicit raster: input 1's l3 only; an empty one: no raster plot
    own = {"l3": rec["l3"][:, 1]}
    c = _check(digits.report.html(raster=own))
    assert c.spikes[-1] == int(rec["l3"][:, 1].sum())
    c = _check(digits.report.html(raster={}))
    assert len(c.svgs) == 2


def test_spread_html_has_a_bar_group_per_core(spread) -> None:
    c = _check(spread.report.html())
    bars = [a for t, a in c.tags if t == "rect" and a.get("class") == "bar"]
    assert len(bars) == 3 * len(spread.report.cores) + len(spread.report.populations)
    want = sum(int(spread.record[p.name][:, 0].sum()) for p in spread.report.populations)
    assert c.spikes[-1] == want
    assert len(spread.report.text().splitlines()) < 40


def test_synaptic_events_of_a_conv_net_in_pixel_major_order(tmp_path) -> None:
    """Conv populations are held pixel-major: the fan-out of each source element is still its
    own (recomputed here with a conv of the non-zero masks and the pool windows)."""
    import torch

    from ..passes.test_partition import conv_net
    from .test_images import compiled

    target = tiny_fpga(tmp_path, neurons=16)
    g, m = compiled(conv_net(3), target)
    img = build_images(g, m, target)
    x = (np.random.default_rng(0).random((6, 3, 2, 6, 6)) < 0.4).astype(np.float32)
    rep = fpga_report(g, img, target, x)
    _, rec = int_sim(g, x, record=True)
    mask = torch.tensor((g.params["conv"]["weight"] != 0).astype(np.float64))
    xs = torch.tensor((x != 0).reshape(-1, 2, 6, 6).astype(np.float64))
    syn0 = int(torch.nn.functional.conv2d(xs, mask).sum().item())
    fan = np.count_nonzero(g.params["fc"]["weight"], axis=0).reshape(3, 2, 2)  # pooled (c,y,x)
    fan_l1 = fan.repeat(2, axis=1).repeat(2, axis=2)  # each l1 neuron's 2x2 pool window
    syn1 = int((rec["l1"].sum(axis=(0, 1)) * fan_l1).sum())
    assert rep.synaptic_events == (syn0 + syn1) / 3
    got = [(p.name, p.size, len(p.cores)) for p in rep.populations]
    assert got == [("l1", 48, 3), ("l2", 5, 1)]
    assert rep.raster["l1"].shape == (6, 48)
    np.testing.assert_array_equal(rep.raster["l1"], rec["l1"][:, 0].reshape(6, -1))
    assert _check(rep.html()).spikes[-1] == int(rec["l1"][:, 0].sum() + rec["l2"][:, 0].sum())
