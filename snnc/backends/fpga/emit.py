"""What ``snnc compile --target <fpga>`` writes beside the IR in the build directory.

- ``rtl/snnc_accelerator.v``: the accelerator (``snnc/rtl/top.py``) as Verilog, module
  ``snnc_accelerator`` (ports ``clk``, ``rst``, ``host_in__*``, ``host_out__*``, ``load__*``
  when the weights are loaded by the host, and the counters); deterministic: the same compiled
  graph and target give the same bytes (no source locations).
- ``rtl/accelerator.json``: how to talk to it: the bit fields of the ``host_in``, ``host_out``
  and ``load`` words, the core parameters, cores, input elements, outputs, levels, clock and
  device.
- ``mem/``: the memory contents, one word per line in hex (``$readmemh``): per core
  ``coreC_weights.hex`` (``P*W``-bit words, lane j in bits ``[j*W, (j+1)*W)``),
  ``coreC_axons.hex`` (``row_base, row_len, group_base, shift``, one entry per line as four
  hex fields), ``coreC_neurons.hex`` (``threshold, bias, reset_value, ibias, profile``, signed
  values as hex of their ``S``-bit two's complement); and, when the weights are not in the
  bitstream (``weight_memory: spram``), ``load.hex``: every ``load`` word the host sends.

The Verilog embeds the same contents as initial values; the files are for inspection, for other
toolchains and for the host.
"""

from __future__ import annotations

import json
from pathlib import Path

from snnc.backends.fpga.images import AcceleratorImage, build_images
from snnc.errors import BackendError

__all__ = ["TOP", "accelerator", "emit", "image_of", "interface"]

TOP = "snnc_accelerator"


def image_of(graph, target) -> AcceleratorImage:
    """The memory images of a compiled (partitioned, placed, routed) graph."""
    from snnc.mapping.cores import mapping_of

    return build_images(graph, mapping_of(graph), target)


def accelerator(image: AcceleratorImage):
    from snnc.backends.fpga.rtl_config import accelerator_config
    from snnc.rtl.top import Accelerator

    return Accelerator(accelerator_config(image))


def _fields(layout) -> dict[str, list[int]]:
    return {name: [f.offset, f.width] for name, f in layout}


def interface(acc, image: AcceleratorImage, target) -> dict:
    """The contents of ``rtl/accelerator.json``."""
    p = image.params
    return {
        "top": TOP,
        "host_in": {"width": acc.in_layout.size, "fields": _fields(acc.in_layout)},
        "host_out": {"width": acc.out_layout.size, "fields": _fields(acc.out_layout)},
        "load": (
            {"width": acc.load_layout.size, "fields": _fields(acc.load_layout)}
            if acc.loads
            else None
        ),  # fmt: skip
        "params": {k: getattr(p, k) for k in p.__dataclass_fields__},
        "cores": len(image.cores),
        "host_elements": image.host_elements,
        "outputs": image.output_size,
        "max_level": image.max_level,
        "target": image.target,
        "device": target.fpga.device,
        "clock_mhz": target.fpga.clock_mhz,
    }


def _hex(value: int, bits: int) -> str:
    return format(value & ((1 << bits) - 1), f"0{max(1, -(-bits // 4))}x")


def _memory_files(image: AcceleratorImage, mem: Path) -> None:
    p = image.params
    wbits = p.lanes * p.weight_bits
    mask = (1 << p.weight_bits) - 1
    for c, core in enumerate(image.cores):
        words = [sum((w & mask) << (j * p.weight_bits) for j, w in enumerate(row))
                 for row in core.weights]  # fmt: skip
        (mem / f"core{c}_weights.hex").write_text("".join(_hex(w, wbits) + "\n" for w in words))
        (mem / f"core{c}_axons.hex").write_text("".join(
            f"{a.row_base:x} {a.row_len:x} {a.group_base:x} {a.shift:x}\n" for a in core.axons
        ))  # fmt: skip
        s = p.state_bits
        (mem / f"core{c}_neurons.hex").write_text("".join(
            f"{_hex(n.threshold, s)} {_hex(n.bias, s)} {_hex(n.reset_value, s)} "
            f"{_hex(n.ibias, s)} {n.profile:x}\n" for n in core.neurons
        ))  # fmt: skip


def emit(graph, target, directory: Path) -> tuple[AcceleratorImage, object]:
    """Write ``rtl/`` and ``mem/`` for a compiled graph into ``directory`` (a build being
    assembled). Returns the image and the accelerator component."""
    from amaranth.back import verilog

    from snnc.backends.fpga.rtl_config import load_words

    image = image_of(graph, target)
    acc = accelerator(image)
    rtl, mem = Path(directory) / "rtl", Path(directory) / "mem"
    rtl.mkdir(parents=True, exist_ok=True)
    mem.mkdir(parents=True, exist_ok=True)
    try:
        text = verilog.convert(acc, name=TOP, emit_src=False)
    except Exception as e:  # Amaranth runs Yosys (its wheel, or $YOSYS) to write Verilog
        raise BackendError(f"writing the accelerator's Verilog failed ({type(e).__name__}: "
                           f"{str(e).strip() or 'no message'}); if the environment variable "
                           "YOSYS is set, it must name a working yosys") from None  # fmt: skip
    (rtl / f"{TOP}.v").write_text(text)
    (rtl / "accelerator.json").write_text(
        json.dumps(interface(acc, image, target), indent=1, sort_keys=True) + "\n"
    )
    _memory_files(image, mem)
    if acc.loads:
        lay = acc.load_layout
        words = [lay.const({"core": c, "addr": a, "data": d}).as_value().value
                 for c, a, d in load_words(image)]  # fmt: skip
        (mem / "load.hex").write_text("".join(_hex(w, lay.size) + "\n" for w in words))
    return image, acc
