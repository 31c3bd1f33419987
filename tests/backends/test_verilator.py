"""The C++ Verilator harness (snnc/backends/fpga/verilator.py) against the simulators.

The accelerator's Verilog (``amaranth.back.verilog.convert``) is built once per design and
module; the host words (a clear word between the runs of the batch elements, an end word after
every step) go through :func:`run_harness`, and the decoded output must equal
``snnc.sim.integer`` spike for spike, the ``cycles`` of every end marker ``snnc.sim.cycle``'s.
A tiny hand-written echo module checks ports wider than 64 bits (Verilator's ``VlWide``), the
exact cycle count of the handshakes and the VCD.
"""

from __future__ import annotations

import shutil
import types
from pathlib import Path

import numpy as np
import pytest

from snnc.errors import BackendError, SimulationError

ROOT = Path(__file__).resolve().parents[2]
TOP = "snnc_accelerator"


@pytest.fixture(scope="module")
def verilator_env():
    from snnc.rtl.toolchain import environment, require

    try:
        env = environment()
        require("verilator", env)
    except BackendError as e:
        pytest.skip(str(e))
    for tool in ("make", "c++"):
        if shutil.which(tool, path=env["PATH"]) is None:
            pytest.skip(f"'{tool}' not found: the Verilator harness needs a C++ toolchain")
    return env


class Design(types.SimpleNamespace):
    """A compiled network, its accelerator, Verilog and built harness."""

    def words(self, runs) -> list[int]:
        """host_in words of ``runs`` (per run, per step: events): a clear word between runs."""
        word = self.acc.in_layout.const
        out = []
        for b, run in enumerate(runs):
            out += [word({"end": 1, "clear": 1}).as_value().value] if b else []
            for step in run:
                out += [word({"element": e, "payload": p}).as_value().value for e, p in step]
                out.append(word({"end": 1}).as_value().value)
        return out

    def load(self) -> list[int]:
        from snnc.backends.fpga.rtl_config import load_words

        lay = self.acc.load_layout
        return [lay.const({"core": c, "addr": a, "data": d}).as_value().value
                for c, a, d in load_words(self.img)]  # fmt: skip

    def decode(self, out_words: list[int]) -> tuple[list[list[int]], list[int]]:
        """(output elements per step, cycles field of every end marker)."""
        steps, cycles, cur = [], [], []
        for w in out_words:
            v = self.acc.out_layout.from_bits(w)
            if v.end:
                steps.append(cur)
                cycles.append(int(v.cycles))
                cur = []
            else:
                cur.append(int(v.element))
        assert not cur, "host_out words after the last end marker"
        return steps, cycles


def _design(directory: Path, model, target: str, x, *, trace: bool = False) -> Design:
    from amaranth.back import verilog

    from snnc.backends.fpga.rtl_config import accelerator_config
    from snnc.backends.fpga.verilator import HarnessSpec, build_harness
    from snnc.rtl.top import Accelerator
    from snnc.sim.integer import simulate as int_sim

    from ..rtl.test_top import compiled

    g, img = compiled(model, target)
    acc = Accelerator(accelerator_config(img))
    src = directory / "accelerator.v"
    src.write_text(verilog.convert(acc, name=TOP))
    spec = HarnessSpec.of(acc, TOP)
    exe = build_harness(src, spec, directory / "harness", trace=trace)
    return Design(g=g, img=img, acc=acc, src=src, spec=spec, exe=exe, x=x, want=int_sim(g, x))


def _recurrent(tmp_path_factory, weight_memory: str) -> Design:
    from ..passes.test_quantize import MODES, mlp, spikes
    from ..rtl.test_top import _w, small_target

    d = tmp_path_factory.mktemp(f"verilator_{weight_memory}")
    w1, w2, rec = _w(1)
    model = mlp(w1, w2, threshold=0.5, recurrent=rec, mode=MODES[0])
    target = small_target(d, neurons=4, cores=4, weight_memory=weight_memory)
    return _design(d, model, target, spikes(8, 3, 6, 2, rate=0.5))


@pytest.fixture(scope="module")
def bram(verilator_env, tmp_path_factory) -> Design:
    return _recurrent(tmp_path_factory, "bram")


@pytest.fixture(scope="module")
def spram(verilator_env, tmp_path_factory) -> Design:
    return _recurrent(tmp_path_factory, "spram")


def _run_and_check(d: Design, *, load: bool = False):
    from snnc.backends.fpga.rtl_config import host_words, output_array
    from snnc.backends.fpga.verilator import run_harness
    from snnc.sim.cycle import simulate as cycle_sim

    ref = cycle_sim(d.img, d.x, graph=d.g)
    np.testing.assert_array_equal(ref.output, d.want)
    assert d.want.sum() > 0
    runs = host_words(d.img, d.x, graph=d.g)
    T, B = d.x.shape[:2]
    words = d.words(runs)
    limit = 4 * int(ref.cycles.sum()) + 2 * len(words) + 10_000
    r = run_harness(d.exe, d.spec, words=words, load=d.load() if load else [], steps=T * B,
                    max_cycles=limit)  # fmt: skip
    steps, cycles = d.decode(r.out_words)
    assert len(steps) == T * B
    for b in range(B):
        np.testing.assert_array_equal(output_array(d.img, steps[b * T : (b + 1) * T]),
                                      d.want[:, b])  # fmt: skip
    assert cycles == ref.cycles.T.ravel().tolist()
    assert r.cycles >= int(ref.cycles.sum()) + (len(d.load()) if load else 0)
    assert r.cycles < limit and r.seconds > 0
    return r


def test_recurrent_spikes_and_cycles(bram: Design) -> None:
    assert any(t.delayed for t in bram.img.routes) and len(bram.img.cores) >= 3
    assert bram.spec.load_width == 0 and bram.spec.out_end_bit == bram.acc.out_layout["end"].offset
    _run_and_check(bram)


def test_weights_through_the_load_port(spram: Design) -> None:
    from snnc.backends.fpga.rtl_config import host_words, output_array
    from snnc.backends.fpga.verilator import run_harness

    assert spram.acc.loads and spram.spec.load_width == spram.acc.load_layout.size
    _run_and_check(spram, load=True)
    # without the weights the network does not compute its output
    T, B = spram.x.shape[:2]
    r = run_harness(spram.exe, spram.spec, words=spram.words(host_words(spram.img, spram.x,
                    graph=spram.g)), steps=T * B, max_cycles=10**6)  # fmt: skip
    steps, _ = spram.decode(r.out_words)
    got = np.stack([output_array(spram.img, steps[b * T : (b + 1) * T]) for b in range(B)], 1)
    assert not np.array_equal(got, spram.want)


def test_build_is_reused_and_harness_deterministic(bram: Design, tmp_path: Path, monkeypatch):
    import snnc.backends.fpga.verilator as V

    directory = bram.exe.parent.parent
    before = bram.exe.stat().st_mtime_ns, (directory / "build.log").stat().st_mtime_ns

    class Called(Exception):
        pass

    def run(*a, **k):
        raise Called

    monkeypatch.setattr(V, "subprocess", types.SimpleNamespace(run=run, STDOUT=-2))
    copy = tmp_path / "same.v"
    copy.write_bytes(bram.src.read_bytes())
    for src in (bram.src, copy):  # same contents: no verilator run
        assert V.build_harness(src, bram.spec, directory) == bram.exe
    assert (bram.exe.stat().st_mtime_ns, (directory / "build.log").stat().st_mtime_ns) == before
    # other Verilog: a rebuild (in a copy of the build, which the attempt would invalidate)
    other_dir = tmp_path / "other"
    (other_dir / "obj").mkdir(parents=True)
    for f in ("harness.cpp", "obj/" + V._STAMP, "obj/" + bram.exe.name):
        shutil.copy2(directory / f, other_dir / f)
    assert V.build_harness(copy, bram.spec, other_dir) == other_dir / "obj" / bram.exe.name
    copy.write_text(bram.src.read_text() + "\n// changed\n")
    with pytest.raises(Called):
        V.build_harness(copy, bram.spec, other_dir)
    assert not (other_dir / "obj" / V._STAMP).exists()  # a failed build is never reused

    a = V.write_harness(bram.spec, tmp_path / "a").read_bytes()
    assert a == V.write_harness(bram.spec, tmp_path / "b").read_bytes()
    assert a == (directory / "harness.cpp").read_bytes()
    other = V.HarnessSpec(TOP, bram.spec.in_width, bram.spec.out_width, 26, bram.spec.out_end_bit)
    assert V.write_harness(other, tmp_path / "c").read_bytes() != a


def test_cycle_limit(bram: Design) -> None:
    from snnc.backends.fpga.rtl_config import host_words
    from snnc.backends.fpga.verilator import run_harness

    words = bram.words(host_words(bram.img, bram.x, graph=bram.g))
    with pytest.raises(SimulationError, match="max_cycles = 50.*cycle limit"):
        run_harness(bram.exe, bram.spec, words=words, steps=24, max_cycles=50)
    with pytest.raises(SimulationError, match="without trace"):
        run_harness(bram.exe, bram.spec, words=words, steps=1, max_cycles=10**5,
                    vcd=Path("never.vcd"))  # fmt: skip
    with pytest.raises(ValueError, match="does not fit"):
        run_harness(bram.exe, bram.spec, words=[1 << bram.spec.in_width], steps=0, max_cycles=9)


def test_digits_throughput(verilator_env, tmp_path: Path) -> None:
    """The shipped digits MLP on the ``fpga`` preset, 16 images x 20 steps: correct output (the
    speed is printed, not checked)."""
    from snnc.backends.fpga.rtl_config import host_words, output_array
    from snnc.backends.fpga.verilator import run_harness

    x = np.load(ROOT / "examples" / "digits" / "sample_input.npy")[:, :16]
    d = _design(tmp_path, ROOT / "examples" / "digits" / "model.pt", "fpga", x)
    T, B = x.shape[:2]
    r = run_harness(d.exe, d.spec, words=d.words(host_words(d.img, x, graph=d.g)),
                    steps=T * B, max_cycles=10**8)  # fmt: skip
    steps, _ = d.decode(r.out_words)
    for b in range(B):
        np.testing.assert_array_equal(output_array(d.img, steps[b * T : (b + 1) * T]),
                                      d.want[:, b])  # fmt: skip
    rate = r.cycles / max(r.seconds, 1e-9) / 1e6
    print(f"\ndigits ({len(d.img.cores)} core(s)), {B} x {T} steps: {r.cycles} cycles in "
          f"{r.seconds:.4f} s = {rate:.2f} M cycles/s")  # fmt: skip


# --- wide ports: a hand-written echo module -------------------------------------------------------


def _echo(n: int, n_load: int) -> str:
    """A one-word buffer with ``n``-bit host_in, ``n+1``-bit host_out and an ``n_load``-bit load
    port: host_out = {end = the word's top bit, word ^ key}; key = XOR of the loaded words
    (zero-extended or truncated to ``n`` bits)."""
    key = (f"{{{n - n_load}'b0, key}}" if n > n_load else
           "key" if n == n_load else f"key[{n - 1}:0]")  # fmt: skip
    return f"""module echo (
  input clk, input rst,
  input [{n - 1}:0] host_in__payload, input host_in__valid, output host_in__ready,
  output [{n}:0] host_out__payload, output host_out__valid, input host_out__ready,
  input [{n_load - 1}:0] load__payload, input load__valid, output load__ready
);
  reg full = 1'b0;
  reg [{n - 1}:0] buf_ = 0;
  reg [{n_load - 1}:0] key = 0;
  wire [{n - 1}:0] kx = {key};
  assign host_in__ready = !full;
  assign load__ready = 1'b1;
  assign host_out__valid = full;
  assign host_out__payload = {{buf_[{n - 1}], buf_ ^ kx}};
  always @(posedge clk) begin
    if (rst) begin
      full <= 1'b0;
      key <= 0;
    end else begin
      if (load__valid) key <= key ^ load__payload;
      if (full && host_out__ready) full <= 1'b0;
      if (host_in__valid && !full) begin
        full <= 1'b1;
        buf_ <= host_in__payload;
      end
    end
  end
endmodule
"""


WIDTHS = [(100, 70), (127, 33), (64, 100)]  # host_in, load; host_out = host_in + 1
_echoes: dict = {}


@pytest.fixture(scope="module")
def echo(verilator_env, tmp_path_factory):
    """Build (once per module) the echo module of given widths, with or without trace."""
    from snnc.backends.fpga.verilator import HarnessSpec, build_harness

    def get(n: int, n_load: int, trace: bool = False):
        if (n, n_load, trace) not in _echoes:
            d = tmp_path_factory.mktemp(f"echo_{n}_{n_load}")
            src = d / "echo.v"
            src.write_text(_echo(n, n_load))
            spec = HarnessSpec("echo", n, n + 1, n_load, n)
            _echoes[n, n_load, trace] = spec, build_harness(src, spec, d, trace=trace)
        return _echoes[n, n_load, trace]

    yield get
    _echoes.clear()


@pytest.mark.parametrize(("n", "n_load"), WIDTHS, ids=[f"{a}_{b}" for a, b in WIDTHS])
def test_wide_ports(echo, n: int, n_load: int) -> None:
    from snnc.backends.fpga.verilator import run_harness

    spec, exe = echo(n, n_load)
    rng = np.random.default_rng(n)
    rand = lambda bits: int.from_bytes(rng.bytes(bits // 8 + 1), "little") % (1 << bits)  # noqa: E731
    load = [rand(n_load) for _ in range(5)] + [(1 << n_load) - 1]
    words = [rand(n) for _ in range(40)] + [(1 << n) - 1]  # the last one is an end marker
    key = 0
    for w in load:
        key ^= w
    want = [(w >> (n - 1)) << n | (w ^ (key & ((1 << n) - 1))) for w in words]
    steps = sum(w >> (n - 1) for w in words)
    r = run_harness(exe, spec, words=words, load=load, steps=steps, max_cycles=1000)
    assert r.out_words == want
    # a load word per cycle; a host word in, then out, every two cycles
    assert r.cycles == len(load) + 2 * len(words)


def test_vcd(echo, tmp_path: Path) -> None:
    from snnc.backends.fpga.verilator import run_harness

    spec, exe = echo(100, 70, trace=True)
    assert exe.parent.name == "obj_trace"
    vcd = tmp_path / "echo.vcd"
    r = run_harness(exe, spec, words=[1 << 99], load=[3], steps=1, max_cycles=100, vcd=vcd)
    assert r.out_words == [(1 << 100) | (1 << 99) | 3] and r.cycles == 3
    text = vcd.read_text()
    assert "$enddefinitions" in text
    assert any(ln.split()[-2:] == ["clk", "$end"] for ln in text.splitlines() if "$var" in ln)


def test_errors(verilator_env, tmp_path: Path) -> None:
    from snnc.backends.fpga.verilator import HarnessSpec, build_harness

    spec = HarnessSpec("echo", 8, 9, 0, 8)
    missing = tmp_path / "nowhere" / "missing_design.v"
    with pytest.raises(BackendError, match="missing_design.v"):
        build_harness(missing, spec, tmp_path / "b")
    bad = tmp_path / "bad.v"
    bad.write_text("module echo(input clk);\n  this is not verilog\nendmodule\n")
    with pytest.raises(BackendError, match=r"(?s)verilating.*bad\.v") as e:
        build_harness(bad, spec, tmp_path / "b")
    assert "build.log" in str(e.value) and (tmp_path / "b" / "build.log").is_file()
    wrong = tmp_path / "wrong.v"  # verilates, but has none of the ports the harness drives
    wrong.write_text("module echo(input clk, input rst);\nendmodule\n")
    with pytest.raises(BackendError, match="compiling") as e:
        build_harness(wrong, spec, tmp_path / "w")
    assert "host_in" in str(e.value)
    with pytest.raises(ValueError, match="identifier"):
        HarnessSpec("not a name", 8, 9, 0, 8)
