#!/usr/bin/env python3
"""Generate NIR fixtures written by the NIR exporters of real SNN frameworks.

Run this INSIDE a separate virtual environment that has the frameworks
installed (see tests/fixtures/nir/README.md for the exact recipe):

    /tmp/fxvenv/bin/python tools/make_nir_fixtures.py [--out tests/fixtures/nir]
        [--only norse,rockpool,sinabs,spikingjelly]

For every (framework, net) pair it
  * builds a small network with fixed parameters (seeded numpy RNG, so the
    base weights are identical across frameworks; a per-net gain is searched
    so that hidden and output neurons fire ~5-40 % of the time),
  * exports it with the framework's OWN NIR exporter and writes
    ``<framework>_<net>.nir`` with ``nir.write``,
  * runs the framework's own stateful forward step by step on a fixed binary
    spike input and writes ``<framework>_<net>.npz`` with
      input  float32 (T, B, *in_shape)   time-major
      output float32 (T, B, *out_shape)  time-major, framework output
      hidden float32 (T, B, *hid_shape)  spikes of the first neuron layer
      note   str      what the forward is
      gain   float    the weight gain chosen
Failures are caught and printed (and summarised at the end); the script keeps
going. The README documents them.

The frameworks are NOT needed to read the fixtures; tools/check_nir_fixtures.py
re-implements the forwards with numpy + nir only.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
import warnings

import numpy as np

warnings.filterwarnings("ignore")

T, B = 20, 4
RATE = 0.3
GAINS = [2 ** (k / 2) for k in range(-12, 15)]  # 1/64 .. 128


# ---------------------------------------------------------------- shared data
def make_inputs():
    rng = np.random.default_rng(20240601)
    x_mlp = (rng.random((T, B, 6)) < RATE).astype(np.float32)
    rng = np.random.default_rng(20240602)
    x_conv = (rng.random((T, B, 1, 6, 6)) < RATE).astype(np.float32)
    return x_mlp, x_conv


def base_weights():
    """Identical base weights for every framework (gain applied later)."""
    rng = np.random.default_rng(7)
    return {
        "w1": rng.uniform(-0.4, 1.0, (5, 6)).astype(np.float32),
        "b1": rng.uniform(-0.1, 0.1, (5,)).astype(np.float32),
        "w2": rng.uniform(-0.4, 1.0, (3, 5)).astype(np.float32),
        "b2": rng.uniform(-0.1, 0.1, (3,)).astype(np.float32),
        "wc": rng.uniform(-0.4, 1.0, (2, 1, 3, 3)).astype(np.float32),
        "bc": rng.uniform(-0.1, 0.1, (2,)).astype(np.float32),
        "wf": rng.uniform(-0.4, 1.0, (3, 32)).astype(np.float32),
        "bf": rng.uniform(-0.1, 0.1, (3,)).astype(np.float32),
        "wrec": rng.uniform(-0.5, 0.5, (5, 5)).astype(np.float32),
    }


def rate(s):
    s = np.asarray(s)
    return float((s > 0).mean())


def choose_gain(run, label):
    """run(gain) -> (hidden, output) numpy arrays. Pick gain with rates near 0.2."""
    best = None
    for g in GAINS:
        hid, out = run(g)
        rh, ro = rate(hid), rate(out)
        if rh == 0 or ro == 0:
            score = 1e9 - g  # prefer larger gain while silent
        else:
            score = max(abs(math.log(rh / 0.2)), abs(math.log(ro / 0.2)))
        if best is None or score < best[0]:
            best = (score, g, rh, ro)
    _, g, rh, ro = best
    ok = 0.05 <= rh <= 0.40 and 0.05 <= ro <= 0.40
    print(
        f"  [{label}] gain={g:.4g} hidden rate={rh:.3f} output rate={ro:.3f}"
        f"{'' if ok else '  (OUTSIDE 5-40% target)'}"
    )
    return g


def save(outdir, name, graph, x, out, hid, note, gain, extra=None):
    import nir

    path = os.path.join(outdir, name + ".nir")
    # compression=None: nir.write's default gzip turns every tiny array into a
    # chunked dataset and more than doubles the file size; contents are identical.
    fixup = ""
    try:
        nir.write(path, graph, compression=None)
    except Exception as e:  # noqa: BLE001
        # nir 1.0.8 cannot serialise a node whose input_type / input_shape is None
        # (norse's and sinabs' Conv2d(input_shape=None), sinabs' Flatten(input_type=None)).
        # Fill them in with nir's own type inference and retry; record that we did.
        if os.path.exists(path):
            os.remove(path)
        try:
            graph.infer_types()
            nir.write(path, graph, compression=None)
        except Exception as e2:  # noqa: BLE001
            if os.path.exists(path):
                os.remove(path)
            raise RuntimeError(
                f"nir.write failed ({type(e).__name__}: {e}); the fallback "
                f"graph.infer_types() failed too ({type(e2).__name__}: {e2})"
            ) from None
        fixup = (
            f"raw exporter graph not writable by nir.write ({type(e).__name__}: {e}); "
            f"written after nir's graph.infer_types() (fills Conv input_shape/input_type, "
            f"Flatten input_type only)"
        )
        print(f"  NOTE {name}.nir: {fixup}")
    # read back to make sure the file is loadable by plain nir
    try:
        nir.read(path)
    except Exception as e:  # noqa: BLE001
        nir.read(path, type_check=False)
        print(
            f"  NOTE {name}.nir: nir.read() type check fails ({e}); "
            f"nir.read(path, type_check=False) works"
        )
    d = dict(
        input=np.asarray(x, dtype=np.float32),
        output=np.asarray(out, dtype=np.float32),
        hidden=np.asarray(hid, dtype=np.float32),
        note=np.array(note),
        gain=np.array(gain, dtype=np.float64),
        export_fixup=np.array(fixup),
    )
    if extra:
        d.update(extra)
    np.savez_compressed(os.path.join(outdir, name + ".npz"), **d)
    print(
        f"  wrote {name}.nir ({os.path.getsize(path)} B), {name}.npz; "
        f"output spikes total={float(np.sum(out))}, max per step={float(np.max(out))}"
    )


class Hook:
    """Collect the (first) output tensor of a module at every call."""

    def __init__(self, module):
        self.vals = []
        self.h = module.register_forward_hook(self)

    def __call__(self, mod, inp, out):
        if isinstance(out, tuple):
            out = out[0]
        self.vals.append(out.detach().cpu().numpy().copy())

    def stacked(self):
        self.h.remove()
        return np.stack(self.vals)


# ---------------------------------------------------------------------- Norse
def norse_nets(outdir, x_mlp, x_conv, W, fail):
    import norse
    import norse.torch as nt
    import torch
    from norse.torch import LIFBoxParameters, LIFParameters
    from norse.torch.functional.iaf import IAFParameters

    dt = 0.001  # norse default dt of the cells and of to_nir

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    tau_mem_h = np.array([0.010, 0.012, 0.015, 0.020, 0.008], np.float32)
    tau_syn_h = np.array([0.005, 0.004, 0.006, 0.005, 0.003], np.float32)
    vth_h = np.array([1.0, 0.9, 1.1, 1.0, 0.8], np.float32)
    tau_mem_o = np.array([0.010, 0.015, 0.012], np.float32)
    tau_syn_o = np.array([0.005, 0.005, 0.004], np.float32)
    vth_o = np.array([1.0, 1.2, 0.9], np.float32)

    def lin(w, b, g):
        m = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            m.weight.copy_(t(w * g))
            m.bias.copy_(t(b * g))
        return m

    def cell(kind, tm, ts, vth):
        if kind == "lif":
            return nt.LIFCell(
                LIFParameters(
                    tau_syn_inv=t(1.0 / ts),
                    tau_mem_inv=t(1.0 / tm),
                    v_leak=t(np.zeros_like(tm)),
                    v_th=t(vth),
                    v_reset=t(np.zeros_like(tm)),
                )
            )
        if kind == "lifbox":
            return nt.LIFBoxCell(
                LIFBoxParameters(
                    tau_mem_inv=t(1.0 / tm),
                    v_leak=t(np.zeros_like(tm)),
                    v_th=t(vth),
                    v_reset=t(np.zeros_like(tm)),
                )
            )
        if kind == "iaf":
            return nt.IAFCell(IAFParameters(v_th=t(vth), v_reset=t(np.zeros_like(vth))))
        raise ValueError(kind)

    def build_mlp(kind, g):
        return nt.SequentialState(
            lin(W["w1"], W["b1"], g),
            cell(kind, tau_mem_h, tau_syn_h, vth_h),
            lin(W["w2"], W["b2"], g),
            cell(kind, tau_mem_o, tau_syn_o, vth_o),
        )

    conv_shape = (2, 4, 4)
    rng = np.random.default_rng(11)
    tm_c = rng.uniform(0.008, 0.02, conv_shape).astype(np.float32)
    ts_c = rng.uniform(0.003, 0.006, conv_shape).astype(np.float32)
    vth_c = rng.uniform(0.8, 1.2, conv_shape).astype(np.float32)

    def conv(g):
        m = torch.nn.Conv2d(1, 2, 3)
        with torch.no_grad():
            m.weight.copy_(t(W["wc"] * g))
            m.bias.copy_(t(W["bc"] * g))
        return m

    def build_conv(kind, g, flatten=True):
        mods = [conv(g), cell(kind, tm_c, ts_c, vth_c)]
        if flatten:
            mods += [
                torch.nn.Flatten(),
                lin(W["wf"], W["bf"], g),
                cell(kind, tau_mem_o, tau_syn_o, vth_o),
            ]
        return nt.SequentialState(*mods)

    def run(model, x):
        hook = Hook(model[1])
        state = None
        outs = []
        with torch.no_grad():
            for k in range(x.shape[0]):
                o, state = model(torch.as_tensor(x[k]), state)
                outs.append(o.detach().numpy().copy())
        return hook.stacked(), np.stack(outs)

    specs = [
        ("mlp", lambda g: build_mlp("lif", g), x_mlp, "LIFCell (-> nir.CubaLIF)"),
        ("mlp_box", lambda g: build_mlp("lifbox", g), x_mlp, "LIFBoxCell (-> nir.LIF)"),
        ("mlp_if", lambda g: build_mlp("iaf", g), x_mlp, "IAFCell (-> nir.IF)"),
        ("conv", lambda g: build_conv("lif", g), x_conv, "Conv2d+LIFCell+Flatten+Linear+LIFCell"),
        (
            "conv_noflat",
            lambda g: build_conv("lifbox", g, flatten=False),
            x_conv,
            "Conv2d(1->2,k3)+LIFBoxCell only (norse's exporter has no Flatten mapping)",
        ),
    ]
    for name, build, x, desc in specs:
        full = f"norse_{name}"
        print(f"norse {name}: {desc}")
        try:
            g = choose_gain(lambda g: run(build(g), x), full)
            model = build(g)
            hid, out = run(model, x)
            # sample with batch 1, as norse's own tests do: norse.to_nir(m, torch.randn(1, N))
            graph = norse.torch.to_nir(model, torch.as_tensor(x[0, :1]))
            note = (
                f"norse {norse.__version__ if hasattr(norse, '__version__') else ''} "
                f"norse.torch.SequentialState of torch.nn layers and {desc}; "
                f"called once per time step: out, state = model(x[t], state), state=None at t=0; "
                f"cells use default dt={dt}; exported with norse.torch.to_nir(model, x[0, :1]) (dt={dt}). "
                f"hidden = spikes of model[1]."
            )
            save(outdir, full, graph, x, out, hid, note, g)
        except Exception as e:  # noqa: BLE001
            fail(full, e)


# ------------------------------------------------------------------- Rockpool
def rockpool_nets(outdir, x_mlp, x_conv, W, fail):
    import rockpool
    import torch
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch
    from rockpool.nn.modules.torch.nir import to_nir

    dt = 1e-3  # LIFTorch default dt
    tau_mem_h = np.array([0.010, 0.012, 0.015, 0.020, 0.008], np.float32)
    tau_syn_h = np.array([0.005, 0.004, 0.006, 0.005, 0.003], np.float32)
    vth_h = np.array([1.0, 0.9, 1.1, 1.0, 0.8], np.float32)
    tau_mem_o = np.array([0.010, 0.015, 0.012], np.float32)
    tau_syn_o = np.array([0.005, 0.005, 0.004], np.float32)
    vth_o = np.array([1.0, 1.2, 0.9], np.float32)

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    def build(g, rec=False):
        # LinearTorch weight has shape (Nin, Nout): y = x @ W + b
        l1 = LinearTorch((6, 5), weight=t(W["w1"].T * g), bias=t(W["b1"] * g), has_bias=True)
        kw = dict(has_rec=True, w_rec=t(W["wrec"] * g)) if rec else {}
        n1 = LIFTorch(
            5, tau_mem=t(tau_mem_h), tau_syn=t(tau_syn_h), threshold=t(vth_h), dt=dt, **kw
        )
        l2 = LinearTorch((5, 3), weight=t(W["w2"].T * g), bias=t(W["b2"] * g), has_bias=True)
        n2 = LIFTorch(3, tau_mem=t(tau_mem_o), tau_syn=t(tau_syn_o), threshold=t(vth_o), dt=dt)
        return Sequential(l1, n1, l2, n2)

    def run(net, x):
        """Step by step, one batch element at a time (see README: rockpool keeps
        only batch element 0 of its state between calls)."""
        outs = np.zeros((x.shape[0], x.shape[1], 3), np.float32)
        hids = np.zeros((x.shape[0], x.shape[1], 5), np.float32)
        with torch.no_grad():
            for b in range(x.shape[1]):
                net.reset_state()
                for k in range(x.shape[0]):
                    inp = torch.as_tensor(x[k, b][None, None, :])  # (batch=1, time=1, 6)
                    o, _, rec = net(inp, record=True)
                    outs[k, b] = o.detach().numpy()[0, 0]
                    key = [kk for kk in rec if "1_" in kk and isinstance(rec[kk], dict)][0]
                    hids[k, b] = rec[key]["spikes"].detach().numpy()[0, 0]
        return hids, outs

    def run_batched(net, x):
        net.reset_state()
        with torch.no_grad():
            o, _, _ = net(torch.as_tensor(np.ascontiguousarray(x.transpose(1, 0, 2))))
        return o.detach().numpy().transpose(1, 0, 2)

    for name, rec in [("mlp", False), ("rec", True)]:
        full = f"rockpool_{name}"
        print(f"rockpool {name}")
        try:
            g = choose_gain(lambda g: run(build(g, rec), x_mlp), full)
            net = build(g, rec)
            hid, out = run(net, x_mlp)
            ob = run_batched(net, x_mlp)
            same = bool(np.array_equal(ob, out))
            print(f"  one evolve() call over (B,T,N) == stepwise per-sample: {same}")
            net.reset_state()
            graph = to_nir(net)  # default sample_data = zeros((1, size_in))
            note = (
                f"rockpool {rockpool.__version__}: rockpool.nn.combinators.Sequential(LinearTorch(6,5,has_bias=True), "
                f"LIFTorch(5{', has_rec=True' if rec else ''}), LinearTorch(5,3,has_bias=True), LIFTorch(3)), dt={dt}, "
                f"default spike_generation_fn=StepPWL (multi-spike: output is a spike COUNT per step). "
                f"Run one batch element at a time, one step per call (net(x[b,t][None,None]) with state kept "
                f"between calls, reset_state() between batch elements); equals one batched evolve: {same}. "
                f"Exported with rockpool.nn.modules.torch.nir.to_nir(net) (default sample zeros(1,6)). hidden = spikes of LIFTorch #1."
                + (
                    " NOTE: the exporter DROPS w_rec (stored here as npz 'w_rec', shape (Nout,Nin) used as "
                    "i += s[t-1] @ w_rec)."
                    if rec
                    else ""
                )
            )
            extra = {"w_rec": (W["wrec"] * g).astype(np.float32)} if rec else None
            save(outdir, full, graph, x_mlp, out, hid, note, g, extra)
        except Exception as e:  # noqa: BLE001
            fail(full, e)

    full = "rockpool_conv"
    fail(
        full,
        NotImplementedError(
            "rockpool's to_nir (_extract_rockpool_module) maps only ExpSynTorch, LIFTorch, LinearTorch, "
            "LIFNeuronTorch; there is no Conv2d/Flatten mapping, so no conv fixture"
        ),
        tb=False,
    )


# --------------------------------------------------------------------- Sinabs
def sinabs_nets(outdir, x_mlp, x_conv, W, fail):
    import sinabs
    import sinabs.layers as sl
    import torch
    from torch import nn

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    tau_h = np.array([4.0, 6.0, 8.0, 10.0, 5.0], np.float32)  # in time STEPS
    vth_h = np.array([1.0, 0.9, 1.1, 1.0, 0.8], np.float32)
    tau_o = np.array([5.0, 8.0, 6.0], np.float32)
    vth_o = np.array([1.0, 1.2, 0.9], np.float32)
    rng = np.random.default_rng(12)
    tau_c = rng.uniform(3.0, 10.0, (2, 4, 4)).astype(np.float32)
    vth_c = rng.uniform(0.8, 1.2, (2, 4, 4)).astype(np.float32)

    def lin(w, b, g):
        m = nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            m.weight.copy_(t(w * g))
            m.bias.copy_(t(b * g))
        return m

    def lif(tau, vth):
        return sl.LIFSqueeze(tau_mem=t(tau), spike_threshold=t(vth), batch_size=B)

    def iaf(vth):
        return sl.IAFSqueeze(spike_threshold=t(vth), batch_size=B)

    def build_mlp(kind, g):
        if kind == "lif":
            return nn.Sequential(
                lin(W["w1"], W["b1"], g),
                lif(tau_h, vth_h),
                lin(W["w2"], W["b2"], g),
                lif(tau_o, vth_o),
            )
        return nn.Sequential(
            lin(W["w1"], W["b1"], g), iaf(vth_h), lin(W["w2"], W["b2"], g), iaf(vth_o)
        )

    def build_conv(g):
        c = nn.Conv2d(1, 2, 3)
        with torch.no_grad():
            c.weight.copy_(t(W["wc"] * g))
            c.bias.copy_(t(W["bc"] * g))
        return nn.Sequential(
            c, lif(tau_c, vth_c), nn.Flatten(), lin(W["wf"], W["bf"], g), lif(tau_o, vth_o)
        )

    def run(model, x):
        for m in model.modules():
            if isinstance(m, sl.StatefulLayer):
                m.reset_states()
        hook = Hook(model[1])
        outs = []
        with torch.no_grad():
            for k in range(x.shape[0]):
                # *Squeeze layers take (B*T, ...) with T=1 here: one call per time step
                outs.append(model(torch.as_tensor(x[k])).numpy().copy())
        return hook.stacked(), np.stack(outs)

    specs = [
        (
            "mlp",
            lambda g: build_mlp("lif", g),
            x_mlp,
            "LIFSqueeze(tau_mem per neuron, spike_threshold per neuron)",
        ),
        ("mlp_if", lambda g: build_mlp("iaf", g), x_mlp, "IAFSqueeze(spike_threshold per neuron)"),
        ("conv", build_conv, x_conv, "Conv2d(1->2,k3)+LIFSqueeze+Flatten+Linear(32->3)+LIFSqueeze"),
    ]
    for name, build, x, desc in specs:
        full = f"sinabs_{name}"
        print(f"sinabs {name}: {desc}")
        try:
            g = choose_gain(lambda g: run(build(g), x), full)
            model = build(g)
            hid, out = run(model, x)
            # to_nir runs the model once on the sample -> reset afterwards (not needed here)
            graph = sinabs.to_nir(model, torch.as_tensor(x[0]))
            note = (
                f"sinabs {sinabs.__version__}: torch.nn.Sequential with sinabs.layers {desc}, "
                f"batch_size={B}; default spike_fn=MultiSpike (output is a spike COUNT), "
                f"reset_fn=MembraneSubtract, norm_input=True (LIF), min_v_mem=None. Called once per "
                f"time step with x[t] of shape (B,...), states reset to 0 before t=0. Exported with "
                f"sinabs.to_nir(model, x[0]). hidden = spikes of model[1]."
            )
            save(outdir, full, graph, x, out, hid, note, g)
        except Exception as e:  # noqa: BLE001
            fail(full, e)


# --------------------------------------------------------------- SpikingJelly
def spikingjelly_nets(outdir, x_mlp, x_conv, W, fail):
    from importlib.metadata import version as _v

    import torch
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange import export_to_nir
    from torch import nn

    sj_version = _v("spikingjelly")
    DT = 1e-4  # export_to_nir default dt

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32))

    def lin(w, b, g):
        m = layer.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            m.weight.copy_(t(w * g))
            m.bias.copy_(t(b * g))
        return m

    def node(kind, which, **kw):
        if kind == "lif":
            tau, vth = (2.0, 1.0) if which == "h" else (3.0, 0.9)
            return neuron.LIFNode(tau=tau, v_threshold=vth, **kw)
        if kind == "lif_nodecay":
            tau, vth = (2.0, 1.0) if which == "h" else (3.0, 0.9)
            return neuron.LIFNode(tau=tau, v_threshold=vth, decay_input=False, **kw)
        if kind == "if":
            return neuron.IFNode(v_threshold=1.0 if which == "h" else 0.9, **kw)
        if kind == "cuba":
            return neuron.CUBALIFNode(
                c_decay=0.5 if which == "h" else 0.6,
                v_decay=0.75 if which == "h" else 0.8,
                v_threshold=1.0 if which == "h" else 0.9,
                **kw,
            )
        if kind == "lif_soft":
            return neuron.LIFNode(tau=2.0, v_threshold=1.0, v_reset=None, **kw)
        raise ValueError(kind)

    def build_mlp(kind, g):
        return nn.Sequential(
            lin(W["w1"], W["b1"], g), node(kind, "h"), lin(W["w2"], W["b2"], g), node(kind, "o")
        )

    def build_conv(g):
        c = layer.Conv2d(1, 2, 3)
        with torch.no_grad():
            c.weight.copy_(t(W["wc"] * g))
            c.bias.copy_(t(W["bc"] * g))
        return nn.Sequential(
            c, node("lif", "h"), layer.Flatten(), lin(W["wf"], W["bf"], g), node("lif", "o")
        )

    def run(model, x):
        functional.reset_net(model)
        hook = Hook(model[1])
        outs = []
        with torch.no_grad():
            for k in range(x.shape[0]):  # step_mode='s': one call per step, input (B, ...)
                outs.append(model(torch.as_tensor(x[k])).numpy().copy())
        functional.reset_net(model)
        return hook.stacked(), np.stack(outs)

    specs = [
        (
            "mlp",
            lambda g: build_mlp("lif", g),
            x_mlp,
            "LIFNode(tau=2.0/3.0, decay_input=True, v_reset=0.0)",
        ),
        (
            "mlp_nodecay",
            lambda g: build_mlp("lif_nodecay", g),
            x_mlp,
            "LIFNode(tau=2.0/3.0, decay_input=False, v_reset=0.0)",
        ),
        ("mlp_if", lambda g: build_mlp("if", g), x_mlp, "IFNode(v_reset=0.0)"),
        (
            "mlp_cuba",
            lambda g: build_mlp("cuba", g),
            x_mlp,
            "CUBALIFNode(c_decay, v_decay, v_reset=0.0)",
        ),
        ("conv", build_conv, x_conv, "Conv2d(1->2,k3)+LIFNode+Flatten+Linear(32->3)+LIFNode"),
        (
            "mlp_softreset",
            lambda g: build_mlp("lif_soft", g),
            x_mlp,
            "LIFNode(v_reset=None) soft reset",
        ),
    ]
    for name, build, x, desc in specs:
        full = f"spikingjelly_{name}"
        print(f"spikingjelly {name}: {desc}")
        try:
            g = choose_gain(lambda g: run(build(g), x), full)
            model = build(g)
            hid, out = run(model, x)
            graph = export_to_nir(model, torch.as_tensor(x[0]), dt=DT)
            functional.reset_net(model)
            note = (
                f"spikingjelly {sj_version}: torch.nn.Sequential of spikingjelly.activation_based.layer.* "
                f"and neuron {desc}, step_mode='s', surrogate default; functional.reset_net before t=0, "
                f"then one call per time step with x[t] of shape (B,...). Exported with "
                f"spikingjelly.activation_based.nir_exchange.export_to_nir(model, x[0], dt={DT}). "
                f"hidden = spikes of model[1]."
            )
            save(outdir, full, graph, x, out, hid, note, g)
        except Exception as e:  # noqa: BLE001
            fail(full, e)


# ----------------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "fixtures", "nir"))
    ap.add_argument("--only", default="norse,rockpool,sinabs,spikingjelly")
    args = ap.parse_args()
    outdir = os.path.abspath(args.out)
    os.makedirs(outdir, exist_ok=True)

    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)

    x_mlp, x_conv = make_inputs()
    W = base_weights()
    failures = []

    def fail(name, exc, tb=True):
        msg = f"{type(exc).__name__}: {exc}"
        print(f"  FAILED {name}: {msg}")
        if tb:
            traceback.print_exc(limit=3)
        failures.append(f"{name}\t{msg}")

    runners = {
        "norse": norse_nets,
        "rockpool": rockpool_nets,
        "sinabs": sinabs_nets,
        "spikingjelly": spikingjelly_nets,
    }
    for fw in args.only.split(","):
        print(f"===== {fw}")
        try:
            runners[fw](outdir, x_mlp, x_conv, W, fail)
        except Exception as e:  # noqa: BLE001  (import failure etc.)
            fail(fw, e)

    print(f"===== {len(failures)} failure(s) (document them in tests/fixtures/nir/README.md):")
    for line in failures:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
