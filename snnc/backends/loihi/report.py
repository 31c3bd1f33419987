"""The Loihi build's ``summary.txt``: cores, per-core use against every limit, layers and their
formats, representation errors and the semantic changes the hardware forces."""

from __future__ import annotations

from snnc.backends.loihi.config import routes
from snnc.backends.loihi.lower import Lowering

__all__ = ["summary"]


def _cores(low: Lowering) -> list[str]:
    t, cfg = low.target, low.config
    c = t.core
    chips = sorted({u.chip for u in low.usage})
    lines = [
        f"Loihi configuration for '{t.name}': {len(low.usage)} of {t.total_cores} cores used "
        f"({t.cores} per chip), on {len(chips)} of {t.chips} chip(s)",
        "per core (used / limit):",
        f"  {'chip':>4} {'core':>4} {'compartments':>12} {'in axons':>11} {'out axons':>11} "
        f"{'synapse bits':>21} {'cx prof':>7} {'vth prof':>8} {'formats':>7} {'delay':>6}  "
        "layers",
    ]  # fmt: skip
    names = {(r.chip, r.core): ",".join(dict.fromkeys(x[0] for x in r.layers))
             for r in cfg.chip.cores}  # fmt: skip
    for u in low.usage:
        cells = [
            (u.compartments, c.neurons, 12), (u.input_axons, c.input_axons, 11),
            (u.output_axons, c.output_axons, 11), (u.synapse_bits, c.synapse_memory_bits, 21),
            (u.cx_profiles, c.neuron_profiles, 7), (u.vth_profiles, c.threshold_profiles, 8),
            (u.synapse_formats, c.synapse_formats, 7), (u.max_delay, c.max_delay, 6),
        ]  # fmt: skip
        row = " ".join(f"{f'{used:,}/' + (f'{lim:,}' if lim else '-'):>{w}}"
                       for used, lim, w in cells)  # fmt: skip
        lines.append(f"  {u.chip:>4} {u.core:>4} {row}  {names[u.chip, u.core]}")
    for b in low.bias_compartments:
        lines.append(f"always-on bias compartment: chip {b.chip} core {b.core} compartment {b.cx} "
                     f"(vth {b.vth}, bias {b.bias} << {b.bias_exp}), an input axon of "
                     f"{len(b.targets)} core(s)")  # fmt: skip
    inter = [r for r in routes(cfg) if r["interChip"]]
    if t.chips > 1 or inter:
        n = sum(r["axons"] for r in inter)
        lines.append(f"routes between chips: {len(inter)} core pair(s), {n} output axon(s)")
    return lines


def _layers(low: Lowering) -> list[str]:
    lines = ["layers (depth: steps its spikes lag the IR's; scale: 1 IR unit = 2^(K+6) v units):"]
    for p in low.layers.values():
        vth = sorted(set(p.vth.tolist()))
        vth_s = str(vth[0]) if len(vth) == 1 else f"{vth[0]}..{vth[-1]} ({len(vth)} values)"
        fmts = "; ".join(
            f"from {src}{f' (IR delay {d})' if d else ''}: {f.wgt_bits}-bit "
            f"{'mixed' if f.is_mixed else 'excitatory'}, wgtExp {f.wgt_exp(p.k)}, "
            f"Dly {p.delays[src, d]}"
            for (src, d), f in p.formats.items()
        )
        f = p.current_bias_format
        if f is not None:
            what = "bias" if p.bias_in_u else "input bias"
            fmts += (f"{'; ' if fmts else ''}{what} into u from the bias compartment: "
                     f"{f.wgt_bits}-bit {'mixed' if f.is_mixed else 'excitatory'}, wgtExp "
                     f"{f.wgt_exp(p.k)}, Dly {p.current_bias_dly}")  # fmt: skip
        du = sorted(set(p.decay_u.tolist()))
        dv = sorted(set(p.decay_v.tolist()))
        lines.append(
            f"  {p.name:<14} {p.kind:<8} {p.vth.size:>6} neurons  depth {p.depth}  K {p.k:+d}  "
            f"vth {vth_s}  decayU {_few(du)}  decayV {_few(dv)}"
        )
        lines.append(f"  {'':<14} synapses {fmts or 'none'}")
    return lines


def _few(vals: list[int]) -> str:
    return "/".join(map(str, vals[:3])) + ("..." if len(vals) > 3 else "")


def summary(low: Lowering, *, netx: str = "") -> str:
    """The text of ``summary.txt``. ``netx``: what became of the netx export."""
    lines = _cores(low)
    lines += _layers(low)
    lines.append("representation errors (max abs, max relative; weights are exact by design):")
    lines += ["  " + e.line() for p in low.layers.values() for e in p.errors]
    changes = low.semantic_changes
    lines.append(f"semantic changes the hardware forces ({len(changes)} warning(s)):")
    lines += [f"  warning: {w}" for w in changes]
    if netx:
        lines.append(f"netx: {netx}")
        moved = [p.name for p in low.layers.values() if p.bias_in_u]
        if moved and netx.startswith("loihi/network.net written"):
            names = ", ".join(f"'{n}'" for n in moved)
            lines.append(f"netx: network.net carries the biases of {names} in the neuron bias "
                         "(acting from step 0, as Lava does), while the configuration delays "
                         "them to the input's arrival (bias compartment synapses)")  # fmt: skip
    if low.target.notes:
        lines.append(f"target notes: {' '.join(low.target.notes.split())}")
    return "\n".join(lines) + "\n"
