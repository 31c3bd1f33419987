"""Per-core limits of a Loihi target (REFERENCE: Loihi 1 per-core limits), checked on the
configuration files' content: compartments, input and output axons, synapse memory (the
target's synapse cost, the partitioner's), profile and format counts, and every register field's
range. :func:`violations` lists every broken limit, naming the core and the numbers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnc.backends.loihi import formats as F
from snnc.backends.loihi.config import CoreConfig, LoihiConfig


@dataclass(frozen=True)
class CoreUse:
    """What one core configuration uses of the target's per-core limits."""

    chip: int
    core: int
    compartments: int
    input_axons: int
    output_axons: int
    synapses: int
    synapse_bits: int
    cx_profiles: int
    vth_profiles: int
    synapse_formats: int
    max_delay: int


def synapse_bits(core: CoreConfig, t) -> int:
    """Synapse memory bits with the target's cost model (the partitioner's): per input axon, one
    chunk per weight width of its synapses."""
    s = core.synapses
    if not len(s):
        return 0
    wbits = np.array([f.wgt_bits for f in core.synapse_fmts], np.int64)[np.asarray(s.fmt)]
    axon = np.zeros(len(s), np.int64)
    for a, e in enumerate(core.synapse_map):
        if e is not None:
            axon[e.synapse_ptr : e.synapse_ptr + e.synapse_len] = a
    pairs, counts = np.unique(np.stack([axon, wbits], axis=1), axis=0, return_counts=True)
    n_cx = len(core.compartments)
    return sum(t.axon_bits(int(c), n_cx, int(b)) for (_, b), c in zip(pairs, counts, strict=True))


def core_usage(core: CoreConfig, t) -> CoreUse:
    dly = core.synapses.dly
    return CoreUse(
        core.chip, core.core, len(core.compartments), len(core.synapse_map), len(core.axons),
        len(core.synapses), synapse_bits(core, t), len(core.cx_profiles),
        len(core.vth_profiles), len(core.synapse_fmts), max(dly, default=0),
    )  # fmt: skip


def _limits(t) -> list[tuple[str, str, int]]:
    c = t.core
    return [
        ("compartments", "compartments", c.neurons),
        ("input axons", "input_axons", c.input_axons),
        ("output axons", "output_axons", c.output_axons),
        ("synapse memory bits", "synapse_bits", c.synapse_memory_bits),
        ("compartment profiles", "cx_profiles", c.neuron_profiles),
        ("threshold profiles", "vth_profiles", c.threshold_profiles or 1 << 62),
        ("synapse formats", "synapse_formats", c.synapse_formats),
        ("synaptic delay", "max_delay", c.max_delay),
    ]


def _field_problems(core: CoreConfig) -> list[str]:
    """Register values outside their fields."""
    bad = []
    checks = [
        ("vth", [v for v in core.vth_profiles], F.VTH_MIN, F.VTH_MAX),
        ("decayU/decayV", [x for p in core.cx_profiles for x in (p.decay_u, p.decay_v)], 0,
         F.DECAY_MAX),
        ("bias", [c.bias for c in core.compartments], -F.BIAS_MANT_MAX, F.BIAS_MANT_MAX),
        ("biasExp", [c.bias_exp for c in core.compartments], 0, F.BIAS_EXP_MAX),
        ("wgtExp", [f.wgt_exp for f in core.synapse_fmts], F.WGT_EXP_MIN, F.WGT_EXP_MAX),
        ("Wgt", list(core.synapses.wgt), -256, 255),
    ]  # fmt: skip
    for what, vals, lo, hi in checks:
        if vals and (min(vals) < lo or max(vals) > hi):
            bad.append(f"{what} {min(vals)}..{max(vals)} outside {lo}..{hi}")
    for f in core.synapse_fmts:
        if f.wgt_bits not in range(1, 9):
            bad.append(f"synapse format with {f.wgt_bits}-bit weights")
    n_cx = len(core.compartments)
    for a, e in enumerate(core.synapse_map):
        if e is None or not e.synapse_len:
            continue
        end = e.synapse_ptr + e.synapse_len
        if (
            end > len(core.synapses)
            or e.cx_base + max(core.synapses.cidx[e.synapse_ptr : end]) >= n_cx
        ):
            bad.append(f"input axon {a} reaches outside the synapse memory or compartments")
            break
    return bad


def violations(config: LoihiConfig, target) -> list[str]:
    """Every limit of ``target`` the configuration breaks, one line each (naming core, limit,
    used / allowed); empty when it fits."""
    from snnc.targets import load_target

    t = load_target(target)
    out = []
    for (chip, core), cfg in sorted(config.cores.items()):
        name = f"chip {chip} core {core}"
        if not (0 <= chip < t.chips and 0 <= core < t.cores):
            out.append(f"{name}: outside the target's {t.chips} chip(s) x {t.cores} cores")
        use = core_usage(cfg, t)
        for what, attr, lim in _limits(t):
            if getattr(use, attr) > lim:
                out.append(f"{name}: {what} {getattr(use, attr):,} / {lim:,}")
        out += [f"{name}: {p}" for p in _field_problems(cfg)]
        for a in cfg.axons:
            dest = config.cores.get((a.chip, a.core))
            if dest is None or a.axon >= len(dest.synapse_map):
                out.append(f"{name}: output axon of compartment {a.cx} goes to chip {a.chip} "
                           f"core {a.core} axon {a.axon}, which does not exist")  # fmt: skip
                break
    return out
