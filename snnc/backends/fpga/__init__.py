"""The FPGA LIF accelerator backend: memory images of the cores (``snnc/rtl/ARCHITECTURE.md``)."""

from snnc.backends.fpga.images import (
    AcceleratorImage,
    CoreLayout,
    InputPort,
    RouteEntry,
    RouteTarget,
    RoutingTable,
    SliceLayout,
    build_images,
    population_levels,
    synapse_matrix,
)

__all__ = [
    "AcceleratorImage", "CoreLayout", "InputPort", "RouteEntry", "RouteTarget", "RoutingTable",
    "SliceLayout", "build_images", "population_levels", "synapse_matrix",
]  # fmt: skip
