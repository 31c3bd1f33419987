"""How each framework's NIR exporter means its numbers (``--nir-flavor``).

NIR states continuous-time ODEs, but the exporters write parameters that reproduce their own
discrete-time forward only under their own reading (the fixtures in ``tests/fixtures/nir`` and
their README document each one). A flavor turns a file's neuron parameters into the IR's
discrete-time ones so that snnc computes what the framework computed:

``nir`` / ``snntorch``
    Forward Euler at ``dt`` (default 1e-4 s): ``decay = 1 - dt/tau``, ``gain = dt*r/tau``,
    reset to ``v_reset`` in the step of the spike, ``>``. snnTorch's exporter writes its
    subtract reset as a reset to zero: that loss cannot be undone from the file.
``spikingjelly``
    As ``nir`` (dt 1e-4 s) but the threshold test is ``>=``.
``norse``
    Norse 1.1 writes ``tau`` as ``dt*tau`` (norse#411): ``a = dt**2/tau``, ``decay = 1 - a``;
    a CubaLIF's input jumps into the current (``gain_i = w_in``); IF adds its input undivided.
    dt 1e-3 s. Input/Output shapes carry a batch dimension, which is dropped.
``sinabs``
    dt = 1 step, exact exponential ``decay = exp(-1/tau)``, ``gain = 1 - decay``, IF adds its
    input; subtract reset, ``>=``.
``rockpool``
    CubaLIF only: ``decay_i = gain_i = exp(-dt/tau_syn)``, ``decay = exp(-dt/tau_mem)``,
    ``gain = 1``; subtract reset, ``>=``; dt 1e-3 s.

Sinabs and Rockpool neurons emit several spikes in one step when the membrane reaches twice the
threshold; the IR's neurons emit one and subtract the threshold once. snnc says so when it
reads such a file; the result is exact whenever no membrane reaches twice its threshold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from snnc.ir.nodes import ResetMode

MULTI_SPIKE_NOTE = (
    "{name} neurons emit several spikes per step when the membrane reaches twice the threshold "
    "(MultiSpike); snnc's neurons emit one and subtract the threshold once, so results differ "
    "only where a membrane reaches 2x threshold in one step (use single-spike neurons in "
    "{name} for an exact match)"
)


@dataclass(frozen=True)
class Flavor:
    """One exporter's reading of NIR neuron parameters."""

    name: str
    default_dt: float
    strict: bool = True
    reset: ResetMode | None = None  #: None: NIR's reset to v_reset
    strip_batch: bool = False
    note: str = ""

    def lif(self, tau, r, v_leak, dt):
        """``(decay, gain, bias)`` of a LIF/LI node."""
        if self.name == "norse":
            a = dt * dt / tau
            return 1 - a, a * r, a * v_leak
        if self.name == "sinabs":
            decay = np.exp(-dt / tau)
            return decay, (1 - decay) * r, (1 - decay) * v_leak
        return 1 - dt / tau, dt * r / tau, dt * v_leak / tau

    def cuba(self, tau_syn, tau_mem, r, v_leak, w_in, dt):
        """``(decay_i, gain_i, decay, gain, bias)`` of a CubaLIF/CubaLI node."""
        if self.name == "norse":
            a_s, a_m = dt * dt / tau_syn, dt * dt / tau_mem
            return 1 - a_s, w_in, 1 - a_m, a_m * r, a_m * v_leak
        if self.name == "rockpool":
            beta, alpha = np.exp(-dt / tau_syn), np.exp(-dt / tau_mem)
            return beta, beta * w_in, alpha, np.ones_like(alpha), np.zeros_like(alpha)
        return (1 - dt / tau_syn, dt * w_in / tau_syn, 1 - dt / tau_mem, dt * r / tau_mem,
                dt * v_leak / tau_mem)  # fmt: skip

    def integrator_gain(self, r, dt):
        """``gain`` of an I/IF node."""
        if self.name in ("norse", "sinabs"):
            return r
        return dt * r

    def min_tau(self, dt: float) -> float:
        """Shortest time constant Euler integration stays stable for."""
        if self.name == "norse":
            return dt * dt
        if self.name in ("sinabs", "rockpool"):
            return 0.0  # exact exponentials are stable for any tau > 0
        return dt


FLAVORS = {
    f.name: f
    for f in (
        Flavor("nir", 1e-4),
        Flavor("snntorch", 1e-4, note=(
            "snnTorch's exporter writes its default subtract reset as a reset to zero; the file "
            "is simulated as it says (reset to v_reset). Load the .pt to keep snnTorch's reset")),
        Flavor("spikingjelly", 1e-4, strict=False),
        Flavor("norse", 1e-3, strip_batch=True),
        Flavor("sinabs", 1.0, strict=False, reset=ResetMode.SUBTRACT,
               note=MULTI_SPIKE_NOTE.format(name="Sinabs")),
        Flavor("rockpool", 1e-3, strict=False, reset=ResetMode.SUBTRACT, strip_batch=True,
               note=MULTI_SPIKE_NOTE.format(name="Rockpool") + "; Rockpool's exporter drops "
               "LIFTorch biases and recurrent weights (has_rec=True), which no reader can restore"),
    )
}  # fmt: skip


def detect(node_names: list[str]) -> str | None:
    """A flavor recognised from an exporter's node naming, or None."""
    if node_names and all(re.fullmatch(r"\d+_\w+Torch|input|output", n) for n in node_names):
        return "rockpool"
    if "input_1" in node_names and all(re.fullmatch(r"_\d+|input_\d+|output", n)
                                       for n in node_names):  # fmt: skip
        return "spikingjelly"
    return None


def get(name: str) -> Flavor:
    from snnc.errors import FrontendError

    if name not in FLAVORS:
        raise FrontendError(f"unknown NIR flavor {name!r}; expected one of {', '.join(FLAVORS)}")
    return FLAVORS[name]
