"""Loihi-style core configurations: the files ``snnc compile --target loihi1|loihi2`` writes and
``snnc/sim/loihi.py`` executes.

The layout follows the public register-level picture of a Loihi 1 neuro core (nengo-loihi
``hardware/builder.py``): per core, compartment profiles ``cxProfileCfg{decayU, decayV,
refractDelay}``, threshold profiles ``vthProfileCfg{vth}``, one ``cxCfg{bias, biasExp,
vthProfile, cxProfile}`` per compartment, synapse formats ``synapseFmt{wgtExp, wgtBits, idxBits,
isMixed}``, the synapse memory ``synapses{CIdx, Wgt, synFmtId, Dly}``, the synapse map
``synapseMap[axon]{synapsePtr, synapseLen, cxBase}`` and the output axons (source compartment to
chip, core, axon). A chip-level file places the cores and names where the network's inputs
enter and its outputs leave.

Every value is a plain integer in the hardware's own units (REFERENCE: Loihi 1 arithmetic):

- ``Wgt`` is the stored 8-bit weight, already truncated to its format's ``wgtBits`` (a multiple
  of ``2**(8 - wgtBits + isMixed)``); a spike on axon ``a`` adds ``Wgt * payload`` of every
  synapse of ``synapseMap[a]`` to the dendritic sum of compartment ``cxBase + CIdx``, which is
  scaled by ``2**wgtExp`` (floored when negative) and reaches ``u`` as ``a << 6`` one step later
  (after ``Dly`` further steps when delays are used);
- ``decayU``/``decayV`` are the 12-bit decays; ``vth`` the threshold mantissa (the threshold is
  ``vth << 6``); the bias is ``bias << biasExp``;
- ``payload`` is 1 for binary spikes; graded spikes (Loihi 2) carry ``payload_bits`` of payload.

Files: ``<build>/loihi/chip.json`` (:class:`ChipConfig`) and one ``<build>/loihi/cores/
chip<C>_core<K>.json`` per used core (:class:`CoreConfig`); with ``yaml=True`` the same content
is also written as ``.yaml`` beside each. Keys are written in a fixed order, so the same network
gives byte-identical files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from snnc.errors import BackendError

FORMAT = "snnc-loihi-config 1"

# one-letter register names of nengo-loihi, kept on the file for the reader who knows them
_CX_PROFILE_KEYS = {"decay_u": "decayU", "decay_v": "decayV", "refract_delay": "refractDelay"}
_CX_KEYS = {
    "bias": "bias",
    "bias_exp": "biasExp",
    "vth_profile": "vthProfile",
    "cx_profile": "cxProfile",
}
_FMT_KEYS = {
    "wgt_exp": "wgtExp",
    "wgt_bits": "wgtBits",
    "idx_bits": "idxBits",
    "is_mixed": "isMixed",
    "dly_bits": "dlyBits",
}
_MAP_KEYS = {"synapse_ptr": "synapsePtr", "synapse_len": "synapseLen", "cx_base": "cxBase"}
_AXON_KEYS = {"cx": "cx", "chip": "chip", "core": "core", "axon": "axon"}


@dataclass(frozen=True, slots=True)
class CxProfile:
    """``cxProfileCfg``: 12-bit current and voltage decays and the refractory delay."""

    decay_u: int
    decay_v: int
    refract_delay: int = 0


@dataclass(frozen=True, slots=True)
class Compartment:
    """``cxCfg``: bias mantissa and exponent, and which threshold and compartment profile."""

    bias: int
    bias_exp: int
    vth_profile: int
    cx_profile: int


@dataclass(frozen=True, slots=True)
class SynapseFmt:
    """``synapseFmt``: weight exponent and bits, index bits, mixed sign, delay bits."""

    wgt_exp: int
    wgt_bits: int
    idx_bits: int
    is_mixed: bool
    dly_bits: int = 0


@dataclass(frozen=True, slots=True)
class SynapseMapEntry:
    """``synapseMap[axon]``: synapses ``synapse_ptr .. synapse_ptr + synapse_len - 1`` of the
    core's synapse memory, onto compartments ``cx_base + CIdx``."""

    synapse_ptr: int
    synapse_len: int
    cx_base: int


@dataclass(frozen=True, slots=True)
class Synapses:
    """The synapse memory as columns: entry ``k`` is synapse ``k``."""

    cidx: tuple[int, ...] = ()
    wgt: tuple[int, ...] = ()
    fmt: tuple[int, ...] = ()
    dly: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not len(self.cidx) == len(self.wgt) == len(self.fmt) == len(self.dly):
            raise BackendError("synapse columns CIdx, Wgt, synFmtId and Dly differ in length")

    def __len__(self) -> int:
        return len(self.cidx)


@dataclass(frozen=True, slots=True)
class OutputAxon:
    """A spike of compartment ``cx`` is sent to input axon ``axon`` of ``(chip, core)``."""

    cx: int
    chip: int
    core: int
    axon: int


@dataclass(frozen=True, slots=True)
class CoreConfig:
    """One neuro core's configuration."""

    chip: int
    core: int
    cx_profiles: tuple[CxProfile, ...]
    vth_profiles: tuple[int, ...]
    compartments: tuple[Compartment, ...]
    synapse_fmts: tuple[SynapseFmt, ...]
    synapses: Synapses
    synapse_map: tuple[SynapseMapEntry | None, ...]  # indexed by input axon; None = unused
    axons: tuple[OutputAxon, ...]

    @property
    def name(self) -> str:
        return f"chip{self.chip}_core{self.core}"

    def to_dict(self) -> dict[str, Any]:
        s = self.synapses
        return {
            "chip": self.chip,
            "core": self.core,
            "cxProfileCfg": [_named(p, _CX_PROFILE_KEYS) for p in self.cx_profiles],
            "vthProfileCfg": [{"vth": v} for v in self.vth_profiles],
            "cxCfg": [_named(c, _CX_KEYS) for c in self.compartments],
            "synapseFmt": [_named(f, _FMT_KEYS) for f in self.synapse_fmts],
            "synapses": {
                "CIdx": list(s.cidx),
                "Wgt": list(s.wgt),
                "synFmtId": list(s.fmt),
                "Dly": list(s.dly),
            },
            "synapseMap": [
                {"axon": a, **_named(e, _MAP_KEYS)}
                for a, e in enumerate(self.synapse_map)
                if e is not None
            ],
            "inputAxons": len(self.synapse_map),
            "axons": [_named(a, _AXON_KEYS) for a in self.axons],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "core") -> CoreConfig:
        try:
            smap: list[SynapseMapEntry | None] = [None] * int(d["inputAxons"])
            for e in d["synapseMap"]:
                smap[int(e["axon"])] = _unnamed(SynapseMapEntry, e, _MAP_KEYS)
            s = d["synapses"]
            return cls(
                chip=int(d["chip"]),
                core=int(d["core"]),
                cx_profiles=tuple(
                    _unnamed(CxProfile, p, _CX_PROFILE_KEYS) for p in d["cxProfileCfg"]
                ),
                vth_profiles=tuple(int(p["vth"]) for p in d["vthProfileCfg"]),
                compartments=tuple(_unnamed(Compartment, c, _CX_KEYS) for c in d["cxCfg"]),
                synapse_fmts=tuple(_unnamed(SynapseFmt, f, _FMT_KEYS) for f in d["synapseFmt"]),
                synapses=Synapses(
                    *(tuple(int(v) for v in s[k]) for k in ("CIdx", "Wgt", "synFmtId", "Dly"))
                ),
                synapse_map=tuple(smap),
                axons=tuple(_unnamed(OutputAxon, a, _AXON_KEYS) for a in d["axons"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise BackendError(
                f"{where}: not a Loihi core configuration ({e!r}); "
                "rebuild it with snnc compile --target loihi1"
            ) from None


@dataclass(frozen=True, slots=True)
class CoreRef:
    """A used core, its file and the compartments it holds per layer."""

    chip: int
    core: int
    file: str
    layers: tuple[tuple[str, int, int, int], ...]  # (layer, first neuron, stop, first cx)


@dataclass(frozen=True, slots=True)
class Port:
    """A network input or output. For an input, ``where[e]`` lists the ``(chip, core, axon)``
    its element ``e`` drives; for an output, ``where[e]`` is the one ``(chip, core, cx)``."""

    name: str
    size: int
    where: tuple[tuple[tuple[int, int, int], ...], ...]


@dataclass(frozen=True, slots=True)
class Semantics:
    """Rules on which the open references disagree (REFERENCE: Loihi 1 semantics). Defaults are
    lava-nc 0.10.0's."""

    #: "sum": the exponent scales each format's dendritic sum (Lava); "synapse": each synapse
    #: adds Wgt * 2**(6 + wgtExp) (nengo-loihi's emulator)
    weight_exp: str = "sum"
    #: nengo-loihi's overflow model: the u-scaled input wraps at 21 bits + sign, u and u + bias
    #: at 23 bits + sign (two's complement); off: Lava's one wrap of u and saturating v
    input_wrap_21: bool = False
    refractory: bool = False  # honour refractDelay (nengo-loihi); Lava has none

    def __post_init__(self) -> None:
        if self.weight_exp not in ("sum", "synapse"):
            raise BackendError(f"weight_exp rule {self.weight_exp!r}: expected 'sum' or 'synapse'")


@dataclass(frozen=True, slots=True)
class ChipConfig:
    """The chip-level file: target, placement, inputs, outputs, routes between chips."""

    target: str
    chips: int
    cores_per_chip: int
    payload_bits: int  # 0: binary spikes
    cores: tuple[CoreRef, ...]
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    layers: tuple[tuple[str, int], ...]  # (layer, depth): its spikes lag the input by depth steps
    semantics: Semantics = field(default_factory=Semantics)

    def to_dict(self, routes: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """``routes``: :func:`routes` of the cores (written for the reader, not read back)."""
        return {
            "format": FORMAT,
            "target": self.target,
            "chips": self.chips,
            "coresPerChip": self.cores_per_chip,
            "payloadBits": self.payload_bits,
            "semantics": asdict(self.semantics),
            "cores": [
                {
                    "chip": c.chip,
                    "core": c.core,
                    "file": c.file,
                    "layers": [list(x) for x in c.layers],
                }
                for c in self.cores
            ],
            "inputs": [_port(p) for p in self.inputs],
            "outputs": [_port(p) for p in self.outputs],
            "layers": [list(x) for x in self.layers],
            "routes": list(routes),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "chip.json") -> ChipConfig:
        if d.get("format") != FORMAT:
            raise BackendError(
                f"{where}: format {d.get('format')!r}, expected {FORMAT!r}; "
                "rebuild it with snnc compile --target loihi1"
            )
        try:
            return cls(
                target=str(d["target"]),
                chips=int(d["chips"]),
                cores_per_chip=int(d["coresPerChip"]),
                payload_bits=int(d["payloadBits"]),
                cores=tuple(
                    CoreRef(
                        int(c["chip"]),
                        int(c["core"]),
                        str(c["file"]),
                        tuple((str(a), int(b), int(e), int(x)) for a, b, e, x in c["layers"]),
                    )
                    for c in d["cores"]
                ),
                inputs=tuple(_unport(p) for p in d["inputs"]),
                outputs=tuple(_unport(p) for p in d["outputs"]),
                layers=tuple((str(n), int(k)) for n, k in d["layers"]),
                semantics=Semantics(**d.get("semantics", {})),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise BackendError(
                f"{where}: not a Loihi chip configuration ({e!r}); "
                "rebuild it with snnc compile --target loihi1"
            ) from None


@dataclass(frozen=True, slots=True)
class LoihiConfig:
    """A whole configuration: the chip file and its cores, keyed by ``(chip, core)``."""

    chip: ChipConfig
    cores: Mapping[tuple[int, int], CoreConfig]


def routes(config: LoihiConfig) -> list[dict[str, Any]]:
    """Spike traffic between cores: per (source core, destination core) the number of output
    axons, and whether it crosses chips."""
    n: dict[tuple[int, int, int, int], int] = {}
    for (chip, core), c in sorted(config.cores.items()):
        for a in c.axons:
            key = (chip, core, a.chip, a.core)
            n[key] = n.get(key, 0) + 1
    return [
        {"from": [a, b], "to": [c, d], "axons": k, "interChip": a != c}
        for (a, b, c, d), k in sorted(n.items())
    ]


def write(config: LoihiConfig, directory: Path, *, yaml_too: bool = False) -> list[Path]:
    """Write ``chip.json`` and ``cores/*.json`` (and ``.yaml`` beside each) under ``directory``;
    returns the files written."""
    directory = Path(directory)
    (directory / "cores").mkdir(parents=True, exist_ok=True)
    out = []
    docs = [(directory / "chip", config.chip.to_dict(routes(config)))]
    for ref in config.chip.cores:
        docs.append(
            (directory / ref.file.removesuffix(".json"), config.cores[ref.chip, ref.core].to_dict())
        )
    for stem, doc in docs:
        p = stem.with_suffix(".json")
        p.write_text(json.dumps(doc, indent=1) + "\n")
        out.append(p)
        if yaml_too:
            p = stem.with_suffix(".yaml")
            p.write_text(yaml.safe_dump(doc, sort_keys=False, width=100))
            out.append(p)
    return out


def read(directory: Path) -> LoihiConfig:
    """Read a configuration written by :func:`write` (``directory`` holds ``chip.json``)."""
    directory = Path(directory)
    chip_file = directory / "chip.json"
    if not chip_file.is_file():
        raise BackendError(
            f"{directory}: no chip.json; is this the loihi/ folder of a build "
            "made with snnc compile --target loihi1?"
        )
    chip = ChipConfig.from_dict(_load(chip_file), str(chip_file))
    cores = {}
    for ref in chip.cores:
        f = directory / ref.file
        if not f.is_file():
            raise BackendError(f"{chip_file}: core file {ref.file} is missing")
        cores[ref.chip, ref.core] = CoreConfig.from_dict(_load(f), str(f))
    return LoihiConfig(chip, cores)


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BackendError(f"{path}: cannot read it as JSON ({e})") from None


def _named(obj: Any, keys: Mapping[str, str]) -> dict[str, Any]:
    return {reg: getattr(obj, attr) for attr, reg in keys.items()}


def _unnamed(cls: type, d: Mapping[str, Any], keys: Mapping[str, str]):
    kw = {attr: d[reg] for attr, reg in keys.items() if reg in d}
    return cls(**{k: (bool(v) if isinstance(v, bool) else int(v)) for k, v in kw.items()})


def _port(p: Port) -> dict[str, Any]:
    return {"name": p.name, "size": p.size, "where": [[list(x) for x in w] for w in p.where]}


def _unport(d: Mapping[str, Any]) -> Port:
    where: Sequence = d["where"]
    return Port(
        str(d["name"]),
        int(d["size"]),
        tuple(tuple((int(a), int(b), int(c)) for a, b, c in w) for w in where),
    )
