"""Target descriptions: the hardware a network is mapped onto, as frozen dataclasses.

A target is read from a preset (``snnc/targets/presets/<name>.yaml``) or a user's YAML file whose
layout is the dataclass nesting below. Validation collects every problem and raises one
:class:`TargetError` with one line per problem, each naming the key path, what was expected and
what was found.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from snnc.errors import SnncError

PRESET_DIR = Path(__file__).parent / "presets"
#: other names for presets; ``fpga`` is the default FPGA target
ALIASES = {"fpga": "ecp5-25k"}
#: FPGA devices the backends know, with their family
DEVICES = {"ice40-up5k": "ice40", "ecp5-25k": "ecp5", "ecp5-85k": "ecp5"}
ENERGY_EVENTS = ("synop", "neuron_update", "spike_hop")


class TargetError(SnncError):
    """A target description cannot be found, read or validated.

    ``problems`` holds one line per problem (``str(error)`` joins them).
    """

    def __init__(self, message: str, problems: tuple[str, ...] = ()):
        super().__init__(message)
        self.problems = problems or (message,)


@dataclass(frozen=True, slots=True)
class SynapseCost:
    """How the synapses of one input axon are stored in a core's synapse memory.

    ``dense`` (FPGA): an axon owns a row with one weight slot per neuron, ``lanes`` slots packed
    per read, each read rounded up to whole memory words. ``sparse`` (Loihi): an axon owns a chunk
    of its ``n`` synapses, each with weight, target index, delay and tag bits, plus a header,
    rounded up to whole words.
    """

    kind: str
    word_bits: int
    index_bits: int = 0
    delay_bits: int = 0
    tag_bits: int = 0
    header_bits: int = 0

    def axon_bits(
        self, n_synapses: int, neurons_in_core: int, weight_bits: int, lanes: int = 1
    ) -> int:
        """Synapse memory bits one input axon takes in a core.

        Parameters
        ----------
        n_synapses:
            synapses of this axon in the core (0: the axon does not reach the core, 0 bits).
        neurons_in_core:
            dense only: neurons the axon's row spans (all neurons of the core when a core keeps
            one row layout; the neurons of the populations the axon feeds when rows are kept per
            population).
        weight_bits:
            bits per stored weight.
        lanes:
            dense only: weights read per memory cycle (``Target.fpga.lanes``).
        """
        if min(n_synapses, neurons_in_core, weight_bits) < 0 or lanes < 1:
            raise ValueError(
                f"axon_bits({n_synapses}, {neurons_in_core}, {weight_bits}, lanes={lanes}):"
                " counts must be non-negative and lanes positive"
            )
        if n_synapses == 0:
            return 0
        if self.kind == "sparse":
            per = weight_bits + self.index_bits + self.delay_bits + self.tag_bits
            return _ceil_div(n_synapses * per + self.header_bits, self.word_bits) * self.word_bits
        reads = _ceil_div(neurons_in_core, lanes)
        return reads * _ceil_div(lanes * weight_bits, self.word_bits) * self.word_bits


@dataclass(frozen=True, slots=True)
class CoreLimits:
    """What one core holds. Profiles are distinct parameter sets a core can use at once."""

    neurons: int
    input_axons: int
    output_axons: int
    synapse_memory_bits: int
    weight_bits: tuple[int, ...]  #: allowed weight widths, ascending
    state_bits: int
    current_bits: int
    neuron_profiles: int  #: distinct (decay, decay_i, decay mode) per core
    threshold_profiles: int  #: distinct thresholds per core (0: per-neuron, free)
    synapse_formats: int  #: distinct (weight bits, shift) per core
    max_delay: int = 0  #: synaptic delay steps a core applies (0: none)


@dataclass(frozen=True, slots=True)
class FpgaSpec:
    """The FPGA device and the accelerator's build parameters."""

    device: str
    family: str
    lanes: int  #: weights read per memory cycle per core
    neuron_lanes: int  #: neurons updated per cycle per core
    weight_memory: str  #: "spram" | "bram"
    state_memory: str  #: "bram"
    clock_mhz: float
    luts: int
    brams: int
    bram_bits: int
    sprams: int
    spram_bits: int
    dsps: int

    def memory_bits(self, kind: str) -> int:
        """Bits of ``"bram"`` or ``"spram"`` the device has."""
        return self.brams * self.bram_bits if kind == "bram" else self.sprams * self.spram_bits


@dataclass(frozen=True, slots=True)
class EnergyTable:
    """Per-event energy in pJ: a frozen mapping kept as sorted ``(name, value)`` pairs."""

    items: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(sorted((k, float(v)) for k, v in self.items)))

    @classmethod
    def of(cls, mapping: Mapping[str, float]) -> EnergyTable:
        return cls(tuple(mapping.items()))

    def get(self, name: str, default: float | None = None) -> float | None:
        return dict(self.items).get(name, default)

    def __getitem__(self, name: str) -> float:
        return dict(self.items)[name]

    def __contains__(self, name: object) -> bool:
        return name in dict(self.items)

    def __iter__(self) -> Iterator[str]:
        return iter(k for k, _ in self.items)

    def as_dict(self) -> dict[str, float]:
        return dict(self.items)


@dataclass(frozen=True, slots=True)
class Target:
    """The hardware a network is compiled for (see the module docstring and the presets)."""

    name: str
    kind: str  #: "fpga" | "loihi"
    cores: int  #: cores per chip
    chips: int
    topology: str  #: "mesh" | "crossbar"
    mesh: tuple[int, int]  #: (width, height) of a chip's core mesh; (cores, 1) for a crossbar
    core: CoreLimits
    synapse_cost: SynapseCost
    router_entries: int  #: routing table entries per core
    multicast: bool
    spike_payload_bits: int = 0  #: graded spikes (0: binary)
    energy_pj: EnergyTable = field(default_factory=EnergyTable)
    fpga: FpgaSpec | None = None
    notes: str = ""
    source: str = ""  #: preset name or file path

    def __post_init__(self) -> None:
        if isinstance(self.energy_pj, Mapping):
            object.__setattr__(self, "energy_pj", EnergyTable.of(self.energy_pj))

    @property
    def total_cores(self) -> int:
        return self.cores * self.chips

    def axon_bits(self, n_synapses: int, neurons_in_core: int, weight_bits: int) -> int:
        """:meth:`SynapseCost.axon_bits` with this target's lanes."""
        lanes = self.fpga.lanes if self.fpga is not None else 1
        return self.synapse_cost.axon_bits(n_synapses, neurons_in_core, weight_bits, lanes)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------------------------------------
# validation: each key has a check (what is expected, and a conversion that returns _BAD)

_BAD = object()


@dataclass(frozen=True)
class _Check:
    expected: str
    convert: Callable[[Any], Any]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int(lo: int, hi: int | None = None) -> _Check:
    named = {0: "a non-negative integer", 1: "a positive integer"}
    expected = f"an integer in {lo}..{hi}" if hi is not None else named[lo]

    def convert(v: Any) -> Any:
        return v if _is_int(v) and v >= lo and (hi is None or v <= hi) else _BAD

    return _Check(expected, convert)


def _number(positive: bool) -> _Check:
    def convert(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return _BAD
        return float(v) if (v > 0 if positive else v >= 0) else _BAD

    return _Check("a positive number" if positive else "a non-negative number", convert)


def _choice(*options: str) -> _Check:
    expected = " or ".join(repr(o) for o in options)
    return _Check(expected, lambda v: v if v in options else _BAD)


def _widths(lo: int, hi: int) -> _Check:
    def convert(v: Any) -> Any:
        if not isinstance(v, list | tuple) or not v:
            return _BAD
        if not all(_is_int(b) and lo <= b <= hi for b in v) or len(set(v)) != len(v):
            return _BAD
        return tuple(sorted(v))

    return _Check(f"a non-empty list of distinct integers in {lo}..{hi}", convert)


def _mesh(v: Any) -> Any:
    if isinstance(v, list | tuple) and len(v) == 2 and all(_is_int(x) and x > 0 for x in v):
        return (v[0], v[1])
    return _BAD


_STR = _Check("a string", lambda v: v if isinstance(v, str) else _BAD)
_NAME = _Check("a non-empty string", lambda v: v if isinstance(v, str) and v.strip() else _BAD)
_BOOL = _Check("true or false", lambda v: v if isinstance(v, bool) else _BAD)
_MESH = _Check("a list [width, height] of two positive integers", _mesh)

_SYNAPSE_COST = {
    "kind": _choice("dense", "sparse"),
    "word_bits": _int(1, 4096),
    "index_bits": _int(0, 32),
    "delay_bits": _int(0, 16),
    "tag_bits": _int(0, 32),
    "header_bits": _int(0, 4096),
}
_CORE = {
    "neurons": _int(1),
    "input_axons": _int(1),
    "output_axons": _int(1),
    "synapse_memory_bits": _int(1),
    "weight_bits": _widths(0, 16),
    "state_bits": _int(1, 64),
    "current_bits": _int(1, 64),
    "neuron_profiles": _int(1),
    "threshold_profiles": _int(0),
    "synapse_formats": _int(1),
    "max_delay": _int(0),
}
_FPGA = {
    "device": _choice(*DEVICES),
    "family": _choice("ice40", "ecp5"),
    "lanes": _int(1, 64),
    "neuron_lanes": _int(1, 64),
    "weight_memory": _choice("spram", "bram"),
    "state_memory": _choice("bram"),
    "clock_mhz": _number(positive=True),
    "luts": _int(1),
    "brams": _int(0),
    "bram_bits": _int(1),
    "sprams": _int(0),
    "spram_bits": _int(0),
    "dsps": _int(0),
}
_ENERGY = {name: _number(positive=False) for name in ENERGY_EVENTS}
_TARGET = {
    "name": _NAME,
    "kind": _choice("fpga", "loihi"),
    "cores": _int(1),
    "chips": _int(1),
    "topology": _choice("mesh", "crossbar"),
    "mesh": _MESH,
    "router_entries": _int(1),
    "multicast": _BOOL,
    "spike_payload_bits": _int(0, 32),
    "notes": _STR,
    "source": _STR,
}
_SECTIONS: dict[str, tuple[Callable[..., Any], dict[str, _Check], str]] = {
    "core": (CoreLimits, _CORE, "core limits"),
    "synapse_cost": (SynapseCost, _SYNAPSE_COST, "synapse cost"),
    "fpga": (FpgaSpec, _FPGA, "FPGA device and accelerator"),
    "energy_pj": (lambda **kw: EnergyTable.of(kw), _ENERGY, "energy per event in pJ"),
}


def _required(cls: type) -> set[str]:
    return {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}


_REQUIRED = {
    "": _required(Target),
    "core": _required(CoreLimits),
    "synapse_cost": _required(SynapseCost),
    "fpga": _required(FpgaSpec),
    "energy_pj": set(),
}


def _show(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Mapping):
        return "a mapping"
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


class _Problems:
    def __init__(self, label: str):
        self.label = label
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        where = f"key '{path}': " if path else ""
        self.lines.append(f"target '{self.label}': {where}{message}")

    def raise_if_any(self) -> None:
        if self.lines:
            raise TargetError("\n".join(self.lines), tuple(self.lines))


def _read(d: Mapping, prefix: str, checks: dict[str, _Check], problems: _Problems) -> dict:
    """Converted values of the valid keys of one mapping; the rest go to ``problems``."""
    allowed = [*checks, *(_SECTIONS if not prefix else ())]
    values: dict[str, Any] = {}
    for key, raw in d.items():
        path = f"{prefix}{key}"
        if key in checks:
            value = checks[key].convert(raw)
            if value is _BAD:
                problems.add(path, f"expected {checks[key].expected}, got {_show(raw)}")
            else:
                values[key] = value
        elif not prefix and key in _SECTIONS:
            if raw is not None:
                values[key] = _read_section(key, raw, problems)
        else:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"expected one of {sorted(allowed)}"
            problems.add(path, f"unknown key; {hint}")
    given = {k for k, v in d.items() if not (k in _SECTIONS and not prefix and v is None)}
    for key in sorted(_REQUIRED[prefix.rstrip(".")] - given):
        what = checks[key].expected if key in checks else f"a mapping ({_SECTIONS[key][2]})"
        problems.add(f"{prefix}{key}", f"missing; expected {what}")
    return values


def _read_section(key: str, raw: Any, problems: _Problems) -> Any:
    factory, checks, what = _SECTIONS[key]
    if not isinstance(raw, Mapping):
        problems.add(key, f"expected a mapping ({what}), got {_show(raw)}")
        return None
    before = len(problems.lines)
    values = _read(raw, f"{key}.", checks, problems)
    return factory(**values) if len(problems.lines) == before else None


def _check_layout(v: dict, problems: _Problems) -> None:
    cores, mesh, topology = v.get("cores"), v.get("mesh"), v.get("topology")
    if cores is None or mesh is None or topology is None:
        return
    w, h = mesh
    if topology == "mesh" and w * h != cores:
        problems.add("mesh", f"expected width x height = cores ({cores}), got {w} x {h} = {w * h}")
    if topology == "crossbar" and (w, h) != (cores, 1):
        problems.add("mesh", f"expected [{cores}, 1] (cores, 1) for a crossbar, got [{w}, {h}]")


def _check_synapse_cost(v: dict, problems: _Problems) -> None:
    cost, core = v.get("synapse_cost"), v.get("core")
    if cost is None:
        return
    if cost.kind == "dense":
        for name in ("index_bits", "delay_bits", "tag_bits", "header_bits"):
            if getattr(cost, name):
                found = getattr(cost, name)
                problems.add(
                    f"synapse_cost.{name}", f"expected 0 for a dense synapse cost, got {found}"
                )
    elif core is not None and cost.index_bits < (need := (core.neurons - 1).bit_length()):
        problems.add(
            "synapse_cost.index_bits",
            f"expected at least {need} bits to name {core.neurons} neurons, got {cost.index_bits}",
        )


def _check_fpga(v: dict, present: bool, problems: _Problems) -> None:
    kind, spec = v.get("kind"), v.get("fpga")
    if kind == "loihi" and present:
        problems.add("fpga", "expected no 'fpga' section for kind 'loihi'")
    if kind == "fpga" and not present:
        problems.add("fpga", f"missing; kind 'fpga' needs an 'fpga' section ({', '.join(_FPGA)})")
    if spec is None:
        return
    if DEVICES[spec.device] != spec.family:
        want, found = DEVICES[spec.device], spec.family
        problems.add("fpga.family", f"expected '{want}' for device {spec.device}, got '{found}'")
    core, cores = v.get("core"), v.get("cores")
    have = spec.memory_bits(spec.weight_memory)
    if core is not None and cores is not None and cores * core.synapse_memory_bits > have:
        need = cores * core.synapse_memory_bits
        problems.add(
            "core.synapse_memory_bits",
            f"expected cores x synapse memory <= the device's {spec.weight_memory} ({have} bits),"
            f" got {cores} x {core.synapse_memory_bits} = {need}",
        )


def target_from_dict(d: Mapping, source: str | None = None) -> Target:
    """Validate a target description (the YAML layout) and build the :class:`Target`.

    ``source`` names it in messages and becomes ``Target.source``; without it, the mapping's own
    ``source`` key is used, so ``target_from_dict(target_to_dict(t)) == t``.
    """
    own = d.get("source") if isinstance(d, Mapping) else None
    label = source or (own if isinstance(own, str) and own else "<dict>")
    problems = _Problems(label)
    if not isinstance(d, Mapping):
        problems.add("", f"expected a mapping of target keys, got {_show(d)}")
        problems.raise_if_any()
    values = _read(d, "", _TARGET, problems)
    _check_layout(values, problems)
    _check_synapse_cost(values, problems)
    _check_fpga(values, d.get("fpga") is not None, problems)
    problems.raise_if_any()
    if source is not None:
        values["source"] = source
    return Target(**values)


def target_to_dict(t: Target) -> dict:
    """The YAML layout of ``t`` (plain dicts, lists and scalars)."""

    def plain(obj: Any) -> dict:
        return {f.name: _plain_value(getattr(obj, f.name)) for f in fields(obj)}

    out = plain(t)
    out["core"], out["synapse_cost"] = plain(t.core), plain(t.synapse_cost)
    out["energy_pj"] = t.energy_pj.as_dict()
    if t.fpga is None:
        del out["fpga"]
    else:
        out["fpga"] = plain(t.fpga)
    return out


def _plain_value(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


# ---------------------------------------------------------------------------------------------
# loading


class _Loader(yaml.SafeLoader):
    """A safe loader that rejects duplicate keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            first = seen.setdefault(key, key_node.start_mark.line)
        except TypeError:
            continue  # unhashable: construct_mapping reports it
        if first != key_node.start_mark.line:
            message = f"duplicate key '{key}' (first given on line {first + 1})"
            raise yaml.constructor.ConstructorError(None, None, message, key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, label: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = getattr(e, "problem", None) or str(e)
        raise TargetError(f"target '{label}': YAML error at {where}: {problem}") from None


def _presets_hint() -> str:
    names = ", ".join(f"{n} (= {ALIASES[n]})" if n in ALIASES else n for n in preset_names())
    return f"presets: {names}; or give the path of a .yaml/.yml file"


def _load_file(path: Path, label: str) -> Target:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetError(f"target '{label}': no such file; {_presets_hint()}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TargetError(f"target '{label}': cannot read the file ({e})") from None
    data = _parse_yaml(text, label)
    if data is None:
        raise TargetError(f"target '{label}': the file is empty; expected a mapping of target keys")
    return target_from_dict(data, label)


@cache
def _load_preset(name: str) -> Target:
    return _load_file(PRESET_DIR / f"{name}.yaml", name)


def preset_names() -> list[str]:
    """Names :func:`load_target` accepts as presets (aliases included), sorted."""
    return sorted([p.stem for p in PRESET_DIR.glob("*.yaml")] + list(ALIASES))


def load_target(spec: str | os.PathLike | Target) -> Target:
    """A preset by name (see :func:`preset_names`) or a ``.yaml``/``.yml`` file by path.

    A :class:`Target` is returned unchanged. A plain name that is no preset is read as a file if
    one exists under that name.
    """
    if isinstance(spec, Target):
        return spec
    if isinstance(spec, os.PathLike):
        return _load_file(Path(spec), os.fspath(spec))
    if not isinstance(spec, str):
        raise TargetError(f"target {_show(spec)}: expected a preset name or a file path")
    name = ALIASES.get(spec, spec)
    is_path = spec.endswith((".yaml", ".yml")) or "/" in spec or os.sep in spec
    if not is_path and (PRESET_DIR / f"{name}.yaml").is_file():
        return _load_preset(name)
    if is_path or Path(spec).is_file():
        return _load_file(Path(spec), spec)
    raise TargetError(f"target '{spec}': no preset of that name; {_presets_hint()}")
