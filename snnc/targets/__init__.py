"""Target descriptions: the hardware snnc maps a network onto (FPGA accelerators, Loihi cores).

``load_target("loihi1")`` reads a preset; ``load_target("my.yaml")`` a user's file. See
:mod:`snnc.targets.schema` for the fields and ``presets/*.yaml`` for the numbers and their sources.
"""

from snnc.targets.schema import (
    ALIASES,
    DEVICES,
    ENERGY_EVENTS,
    CoreLimits,
    EnergyTable,
    FpgaSpec,
    SynapseCost,
    Target,
    TargetError,
    load_target,
    preset_names,
    target_from_dict,
    target_to_dict,
)

__all__ = [
    "ALIASES",
    "DEVICES",
    "ENERGY_EVENTS",
    "CoreLimits",
    "EnergyTable",
    "FpgaSpec",
    "SynapseCost",
    "Target",
    "TargetError",
    "load_target",
    "preset_names",
    "target_from_dict",
    "target_to_dict",
]
