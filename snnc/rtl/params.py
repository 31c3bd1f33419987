"""Frozen configuration of the accelerator: plain integers, no IR (see ARCHITECTURE.md)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


def index_bits(n: int) -> int:
    """Bits of an index in ``range(n)`` (at least 1)."""
    return max(1, (n - 1).bit_length())


class Kind(enum.IntEnum):
    LIF = 0
    IF = 1
    CUBALIF = 2
    LI = 3
    CUBALI = 4


class Reset(enum.IntEnum):
    SUBTRACT = 0
    TO_VALUE = 1
    NONE = 2


class Timing(enum.IntEnum):
    IMMEDIATE = 0
    NEXT_STEP = 1
    GATED = 2


@dataclass(frozen=True)
class Profile:
    """What a population's neurons share (a few registers per core)."""

    kind: Kind = Kind.LIF
    decay: int = 0  #: F-bit multiplier, or shift k (decay_shift; k < 0: no leak)
    decay_i: int = 0
    decay_shift: bool = False
    reset: Reset = Reset.TO_VALUE
    timing: Timing = Timing.IMMEDIATE
    strict: bool = True
    saturate: bool = False


@dataclass(frozen=True)
class CoreParams:
    """Sizes of one neuron core; every memory is sized from these."""

    neurons: int  #: N, a multiple of lanes
    lanes: int  #: P
    weight_bits: int  #: W
    state_bits: int  #: S
    axons: int  #: A
    weight_words: int  #: D
    decay_bits: int = 12  #: F (multiplier decays); 0 when every profile uses shifts
    payload_bits: int = 1
    profiles: int = 4
    max_shift: int = 15  #: largest weight shift an axon may use
    #: width of an accumulator lane; 0: ``state_bits``. The backend sizes it to the largest
    #: sum one step's events can leave in a lane, so that it never wraps
    acc_bits: int = 0
    #: the multiplier decays are per neuron, in the parameter memory, not in the profiles
    #: (the backend's choice when a core's neurons have more distinct decays than profiles)
    neuron_decays: bool = False
    #: "bram": the weights are a ROM in block RAM, filled by the bitstream; "spram": a
    #: single-port RAM (the iCE40 UltraPlus's SPRAM) that the host loads before the first run
    weight_memory: str = "bram"

    def __post_init__(self) -> None:
        if self.lanes < 1 or self.neurons % self.lanes:
            raise ValueError(f"neurons ({self.neurons}) must be a multiple of lanes ({self.lanes})")
        if self.weight_memory not in ("bram", "spram"):
            raise ValueError(f"weight_memory {self.weight_memory!r}: expected 'bram' or 'spram'")
        for name in ("neurons", "weight_bits", "state_bits", "axons", "weight_words"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if not (self.acc_bits == 0 or 2 <= self.acc_bits <= self.state_bits):
            raise ValueError(f"acc_bits {self.acc_bits}: expected 0 or 2..{self.state_bits}")

    @property
    def acc_width(self) -> int:
        """Bits of an accumulator lane (``acc_bits``, or ``state_bits`` when 0)."""
        return self.acc_bits or self.state_bits

    @property
    def groups(self) -> int:
        return self.neurons // self.lanes


@dataclass(frozen=True)
class AxonEntry:
    row_base: int
    row_len: int
    group_base: int
    shift: int = 0


@dataclass(frozen=True)
class NeuronInit:
    threshold: int = 0
    bias: int = 0
    reset_value: int = 0
    ibias: int = 0
    profile: int = 0
    #: multiplier decays of v and i, per neuron (``CoreParams.neuron_decays``; else the profile's)
    decay: int = 0
    decay_i: int = 0


@dataclass(frozen=True)
class CoreImage:
    """Initial memory contents of one core."""

    params: CoreParams
    axons: tuple[AxonEntry, ...]
    weights: tuple[tuple[int, ...], ...]  #: D words of P signed weights each
    neurons: tuple[NeuronInit, ...]  #: N entries
    profiles: tuple[Profile, ...]
    #: update commands of each level: level -> ((first_group, n_groups), ...)
    updates: dict[int, tuple[tuple[int, int], ...]] = field(default_factory=dict)
