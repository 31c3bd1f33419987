"""Synthesis and place-and-route of an Amaranth design with the YoWASP toolchain, for figures.

``synthesize(design, device)`` converts the design to Verilog, runs Yosys (``synth_ice40`` /
``synth_ecp5``) and nextpnr with the device's timing target, and returns the resources nextpnr
reports and the fmax it achieved. A missed timing target is a result, not an error: nextpnr
exits non-zero then, and the report says ``met = False`` with the frequency reached.

A design with wide ports does not fit a package's pins; :class:`PinWrapper` drives such a design
from a shift register fed by one input pin and folds its outputs into one output pin, which keeps
every gate alive for synthesis.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import Cat, Elaboratable, Module, Signal, Value

from snnc.errors import BackendError
from snnc.rtl.toolchain import environment, log_tail

DEVICES = {
    "ice40-up5k": ("ice40", ["--up5k", "--package", "sg48"], 48.0),
    "ecp5-25k": ("ecp5", ["--25k", "--package", "CABGA381", "--speed", "6"], 100.0),
    "ecp5-85k": ("ecp5", ["--85k", "--package", "CABGA381", "--speed", "6"], 100.0),
}
#: the ``device`` a platform of each device reports (what ``snnc.rtl.spram.uses_spram`` reads)
PLATFORM_DEVICES = {"ice40-up5k": "iCE40UP5K", "ecp5-25k": "LFE5U-25F", "ecp5-85k": "LFE5U-85F"}
CELLS = {
    "ice40": {"luts": "ICESTORM_LC", "ram": "ICESTORM_RAM", "spram": "ICESTORM_SPRAM",
              "dsp": "ICESTORM_DSP"},
    "ecp5": {"luts": "TRELLIS_COMB", "ff": "TRELLIS_FF", "ram": "DP16KD", "dsp": "MULT18X18D"},
}  # fmt: skip


@dataclass(frozen=True)
class SynthResult:
    device: str
    cells: dict  #: cell type -> (used, available)
    luts: int
    flip_flops: int
    ram_blocks: int
    spram: int
    dsp: int
    fmax_mhz: float
    target_mhz: float

    @property
    def met(self) -> bool:
        return self.fmax_mhz >= self.target_mhz

    @classmethod
    def of(cls, device: str, family: str, util: dict, fmax: float, target: float) -> SynthResult:
        """From nextpnr's utilisation (cell type -> (used, available)) and fmax."""
        names = CELLS[family]

        def used(key: str) -> int:
            return util.get(names.get(key, ""), (0, 0))[0]

        # an iCE40 logic cell holds a LUT and a flip-flop; nextpnr reports cells, not flip-flops
        ff = used("ff") if family == "ecp5" else -1
        return cls(device, util, used("luts"), ff, used("ram"), used("spram"), used("dsp"),
                   float(fmax), target)  # fmt: skip

    def line(self) -> str:
        ok = "met" if self.met else "MISSED"
        ffs = f"{self.flip_flops} FFs" if self.flip_flops >= 0 else "FFs in the cells"
        return (f"{self.device}: {self.luts} LUTs, {ffs}, {self.ram_blocks} RAM "
                f"blocks, {self.spram} SPRAM, {self.dsp} DSP; fmax {self.fmax_mhz:.1f} MHz "
                f"(target {self.target_mhz:.0f} MHz: {ok})")  # fmt: skip


class PinWrapper(Elaboratable):
    """Feeds every input of ``inner``'s flattened signature from a shift register on one pin and
    XORs every output into one pin (only for synthesis figures)."""

    def __init__(self, inner, inputs: list[Signal], outputs: list[Signal]) -> None:
        self.inner, self.inputs, self.outputs = inner, inputs, outputs
        self.pin_in = Signal()
        self.pin_out = Signal()

    @classmethod
    def around(cls, component) -> PinWrapper:
        """Every port of a ``wiring.Component``: its inputs from the pin, its outputs folded."""
        from amaranth.lib import wiring

        ins, outs = [], []
        for _, member, value in component.signature.flatten(component):
            (ins if member.flow == wiring.In else outs).append(value)
        return cls(component, ins, outs)

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = self.inner
        ins = [Value.cast(s) for s in self.inputs]
        width = sum(len(s) for s in ins)
        shift = Signal(max(width, 1))
        m.d.sync += shift.eq(Cat(self.pin_in, shift[:-1]))
        pos = 0
        for s in ins:
            m.d.comb += s.eq(shift[pos : pos + len(s)])
            pos += len(s)
        folded = Signal()
        outs = [Value.cast(s) for s in self.outputs]
        m.d.comb += folded.eq(Cat(*outs).xor() if outs else 0)
        m.d.sync += self.pin_out.eq(folded)
        return m


@dataclass(frozen=True)
class _Device:
    """Stands in for an amaranth-boards platform during conversion: only its ``device``."""

    device: str


def _run(cmd: list[str], cwd: Path, env: dict, log: Path, check: bool = True) -> int:
    with open(log, "ab") as f:
        r = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if check and r.returncode != 0:
        raise BackendError(f"{cmd[0]} failed (log {log}):\n" + log_tail(log))
    return r.returncode


def _script(family: str) -> str:
    """The Yosys script. iCE40: ``synth_ice40 -dsp`` (the UP5K's SB_MAC16 multipliers). ECP5:
    ``synth_ecp5`` with its LUT mapping done by ``abc -lut 4:7`` instead of ``abc9``, which
    crashes inside YoWASP's Yosys 0.70 on the neuron core (no message, exit status 1)."""
    if family == "ice40":
        return "read_verilog top.v\nsynth_ice40 -top top -dsp -json top.json\n"
    return ("read_verilog top.v\n"
            "synth_lattice -family ecp5 -top top -run begin:map_luts\n"
            "techmap -map +/lattice/latches_map.v\n"
            "abc -lut 4:7 -dress\nclean\n"
            "synth_lattice -family ecp5 -top top -run map_cells:\n"
            "write_json top.json\n")  # fmt: skip


def synthesize(design, ports: list[Signal], device: str, *, freq_mhz: float | None = None,
               workdir: Path | None = None) -> SynthResult:  # fmt: skip
    """Synthesise and place-and-route ``design`` (top-level ``ports``) for ``device``."""
    from amaranth.back import verilog

    if device not in DEVICES:
        raise BackendError(f"unknown device {device!r}; expected one of {', '.join(DEVICES)}")
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix=".snnc-synth-", dir=Path.cwd()) as tmp:
            return synthesize(design, ports, device, freq_mhz=freq_mhz, workdir=Path(tmp))
    family, args, default = DEVICES[device]
    freq = freq_mhz or default
    env = environment()
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    # the platform tells the design which device primitives it may use (SPRAM on the UP5K)
    plat = _Device(PLATFORM_DEVICES.get(device, ""))
    (work / "top.v").write_text(verilog.convert(design, ports=ports, name="top", platform=plat))
    log = work / "toolchain.log"
    # YoWASP sees only relative paths below its working directory
    (work / "synth.ys").write_text(_script(family))
    _run([env["YOSYS"], "-q", "-s", "synth.ys"], work, env, log)
    nextpnr = env["NEXTPNR_ICE40" if family == "ice40" else "NEXTPNR_ECP5"]
    _run([nextpnr, *args, "--json", "top.json", "--freq", str(freq), "--report", "report.json",
          "--seed", "1"], work, env, log, check=False)  # fmt: skip
    if not (work / "report.json").exists():
        raise BackendError("nextpnr failed:\n" + log_tail(log))
    util, fmax = nextpnr_report(work / "report.json")
    return SynthResult.of(device, family, util, fmax, freq)


def nextpnr_report(path: Path) -> tuple[dict, float]:
    """Utilisation (cell type -> (used, available)) and the lowest achieved fmax (MHz) of a
    nextpnr ``--report`` file."""
    rep = json.loads(Path(path).read_text())
    util = {k: (v["used"], v["available"]) for k, v in rep.get("utilization", {}).items()}
    fmax = min((c["achieved"] for c in rep.get("fmax", {}).values()), default=0.0)
    return util, float(fmax)
