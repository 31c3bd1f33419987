#!/usr/bin/env python3
"""Re-run the NIR fixtures in tests/fixtures/nir with numpy only and compare
against the frameworks' own forward output saved next to them.

Needs only numpy + nir (no torch, no SNN framework):

    python tools/check_nir_fixtures.py [--dir tests/fixtures/nir] [-v]

Every neuron node is simulated with the discrete-time update that the
*exporting framework's* forward performs (documented in
tests/fixtures/nir/README.md), parametrised ONLY from the NIR file plus the
framework's integration step dt, which NIR does not store:

    norse        dt = 1e-3   (cells' and norse.torch.to_nir's default)
    rockpool     dt = 1e-3   (LIFTorch default; also recovered from r)
    sinabs       dt = 1       (tau is in time steps)
    spikingjelly dt = 1e-4   (export_to_nir's default)

Arithmetic is float32 and follows each framework's order of operations, so
that spikes match exactly. Exit status is 0 iff every fixture whose NIR file
is expected to be sufficient reproduces the saved output (and hidden-layer)
spikes exactly.
"""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys

import nir
import numpy as np

F32 = np.float32
DT = {"norse": 1e-3, "rockpool": 1e-3, "sinabs": 1.0, "spikingjelly": 1e-4}


def f32(a):
    return np.asarray(a, dtype=F32)


# ----------------------------------------------------------------- synapses
def conv2d(x, node):
    """x: (B, C, H, W) float32; NIR Conv2d (weight (O, C/g, kh, kw))."""
    w = f32(node.weight)
    b = f32(node.bias)
    sh, sw = (int(v) for v in np.broadcast_to(node.stride, 2))
    ph, pw = (int(v) for v in np.broadcast_to(node.padding, 2))
    dh, dw = (int(v) for v in np.broadcast_to(node.dilation, 2))
    if int(node.groups) != 1:
        raise NotImplementedError("groups != 1")
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    O, C, KH, KW = w.shape
    H, W = xp.shape[2], xp.shape[3]
    OH = (H - dh * (KH - 1) - 1) // sh + 1
    OW = (W - dw * (KW - 1) - 1) // sw + 1
    y = np.zeros((x.shape[0], O, OH, OW), F32)
    for i in range(KH):
        for j in range(KW):
            patch = xp[
                :,
                :,
                i * dh : i * dh + sh * (OH - 1) + 1 : sh,
                j * dw : j * dw + sw * (OW - 1) + 1 : sw,
            ]
            y += np.einsum("bchw,oc->bohw", patch, w[:, :, i, j]).astype(F32)
    return y + b[None, :, None, None]


def flatten(x, node):
    """NIR Flatten dims exclude the batch dim; x has a leading batch dim."""
    nd = x.ndim - 1
    s = int(node.start_dim) % nd
    e = int(node.end_dim) % nd
    shp = x.shape[1:]
    new = shp[:s] + (int(np.prod(shp[s : e + 1])),) + shp[e + 1 :]
    return x.reshape((x.shape[0],) + new)


# ------------------------------------------------------------------ neurons
class Neuron:
    """Base: step(x) -> spikes (float32, may be counts for multi-spike)."""

    def __init__(self, node, fw):
        self.node, self.fw = node, fw
        self.state = None


def _rockpool_dt_from_r(tau, r):
    """rockpool exports r = tau*exp(-dt/tau)/dt; solve for dt (bisection)."""
    tau, r = float(tau), float(r)
    lo, hi = 1e-9, 10 * tau
    f = lambda dt: tau * math.exp(-dt / tau) / dt - r  # decreasing in dt
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def make_neuron(node, fw, B, extra):
    dt = DT[fw]
    name = type(node).__name__
    p = {
        k: f32(getattr(node, k))
        for k in ("tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset", "w_in")
        if getattr(node, k, None) is not None
    }
    shape = (B,) + tuple(p["v_threshold"].shape) if "v_threshold" in p else None

    # ------------------------------------------------------------- norse
    if fw == "norse":
        # exporter wrote tau = dt / tau_inv  ->  tau_inv = dt / tau ; per-step factor dt*tau_inv
        if name == "CubaLIF":
            k_mem = F32(dt) * (F32(dt) / p["tau_mem"])
            k_syn = F32(dt) * (F32(dt) / p["tau_syn"])
            st = {"v": np.broadcast_to(p["v_leak"], shape).copy(), "i": np.zeros(shape, F32)}

            def step(x):
                i_new = st["i"] + p["w_in"] * x
                v_dec = st["v"] + k_mem * ((p["v_leak"] - st["v"]) + p["r"] * i_new)
                st["i"] = i_new + (-k_syn * i_new)
                z = (v_dec - p["v_threshold"] > 0).astype(F32)
                st["v"] = (1 - z) * v_dec + z * p["v_reset"]
                return z

            return step
        if name == "LIF":
            k = F32(dt) * (F32(dt) / p["tau"])
            st = {"v": np.broadcast_to(p["v_leak"], shape).copy()}

            def step(x):
                v_dec = st["v"] + k * (p["r"] * x + p["v_leak"] - st["v"])
                z = (v_dec - p["v_threshold"] > 0).astype(F32)
                st["v"] = (1 - z) * v_dec + z * p["v_reset"]
                return z

            return step
        if name == "IF":
            st = {"v": np.broadcast_to(p["v_reset"], shape).copy()}

            def step(x):  # norse ignores dt and r: v += x
                v_new = st["v"] + x
                z = (v_new - p["v_threshold"] > 0).astype(F32)
                st["v"] = (1 - z) * v_new + z * p["v_reset"]
                return z

            return step

    # ----------------------------------------------------------- rockpool
    if fw == "rockpool" and name == "CubaLIF":
        dt_r = _rockpool_dt_from_r(p["tau_mem"].flat[0], p["r"].flat[0])
        assert abs(dt_r - dt) < 1e-6 * dt + 1e-9, f"dt recovered from r = {dt_r}"
        alpha = np.exp(-F32(dt) / p["tau_mem"]).astype(F32)
        beta = np.exp(-F32(dt) / p["tau_syn"]).astype(F32)
        w_rec = extra.get("w_rec", {}).get(extra.get("_key"))  # NOT in the NIR file (dropped)
        st = {"v": np.zeros(shape, F32), "i": np.zeros(shape, F32), "s": np.zeros(shape, F32)}

        def step(x):
            i = st["i"] + p["w_in"] * x
            if w_rec is not None:
                i = i + st["s"] @ w_rec  # rockpool: F.linear(spikes, w_rec.T)
            v = st["v"] * alpha
            i = i * beta
            v = v + i + p["v_leak"]  # v_leak is the exported (always 0) "bias"
            n = (v >= p["v_threshold"]) * np.floor(v / p["v_threshold"])
            n = np.minimum(n, F32(2.0**16)).astype(F32)
            st["v"] = v - n * p["v_threshold"]
            st["i"], st["s"] = i, n
            return n

        return step

    # ------------------------------------------------------------- sinabs
    if fw == "sinabs":
        if name == "LIF":
            alpha = np.exp(F32(-1.0) / p["tau"]).astype(F32)  # dt = 1 step
        elif name == "IF":
            alpha = F32(1.0)
        else:
            raise NotImplementedError(name)
        st = {"v": np.zeros(shape, F32)}

        def step(x):
            if name == "LIF":  # norm_input=True: (1 - alpha) * x ; r (=1) multiplies x
                st["v"] = alpha * st["v"] + (1 - alpha) * (p["r"] * x)
            else:  # IAF: tau=inf, norm_input=False; NIR IF r (=1) multiplies x
                st["v"] = alpha * st["v"] + p["r"] * x
            v = st["v"]
            n = ((v > 0) * np.trunc(v / p["v_threshold"])).astype(F32)  # MultiSpike
            st["v"] = v - n * p["v_threshold"]  # MembraneSubtract (NOT v_reset)
            return n

        return step

    # ------------------------------------------------------- spikingjelly
    if fw == "spikingjelly":
        st = {"v": np.broadcast_to(p["v_reset"], shape).copy()}
        if name == "LIF":
            tau = (p["tau"].astype(np.float64) / dt).astype(F32)  # SJ tau in steps
            decay_input = bool(np.allclose(p["r"], 1.0))
            assert decay_input or np.allclose(p["r"], tau), "r must be 1 or tau"

            def step(x):
                v = st["v"]
                if decay_input:
                    h = v + (x - (v - p["v_leak"])) / tau
                else:
                    h = v - (v - p["v_leak"]) / tau + x
                s = (h >= p["v_threshold"]).astype(F32)
                st["v"] = s * p["v_reset"] + (1 - s) * h
                return s

            return step
        if name == "IF":
            gain = (p["r"].astype(np.float64) * dt).astype(F32)  # r = 1/dt -> 1

            def step(x):
                h = st["v"] + gain * x
                s = (h >= p["v_threshold"]).astype(F32)
                st["v"] = s * p["v_reset"] + (1 - s) * h
                return s

            return step
        if name == "CubaLIF":
            c_decay = (1.0 - dt / p["tau_syn"].astype(np.float64)).astype(F32)
            v_decay = (1.0 - dt / p["tau_mem"].astype(np.float64)).astype(F32)
            # consistency of the exporter's r and w_in with the forward-Euler reading
            assert np.allclose(p["r"], p["tau_mem"] / dt) and np.allclose(
                p["w_in"], p["tau_syn"] / dt
            )
            st["c"] = np.zeros(shape, F32)

            def step(x):
                st["c"] = st["c"] * c_decay + x
                h = st["v"] * v_decay + st["c"]
                s = (h >= p["v_threshold"]).astype(F32)
                st["v"] = s * p["v_reset"] + (1 - s) * h
                return s

            return step

    raise NotImplementedError(f"{fw}: {name}")


# -------------------------------------------------------------------- graph
def topo_order(graph):
    preds = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        preds[b].append(a)
    order, seen = [], set()

    def visit(k):
        if k in seen:
            return
        seen.add(k)
        for q in preds[k]:
            visit(q)
        order.append(k)

    for k in graph.nodes:
        visit(k)
    return order, preds


def simulate(graph, fw, x, extra):
    """x: (T, B, *in_shape). Returns (output (T,B,...), {node: spikes})."""
    T, B = x.shape[:2]
    order, preds = topo_order(graph)
    neurons = {}
    for k in order:
        n = graph.nodes[k]
        if isinstance(n, (nir.LIF, nir.CubaLIF, nir.IF)):
            neurons[k] = make_neuron(n, fw, B, dict(extra, _key=k))
    outs, rec = [], {k: [] for k in neurons}
    for t in range(T):
        val = {}
        for k in order:
            n = graph.nodes[k]
            if isinstance(n, nir.Input):
                val[k] = f32(x[t])
                continue
            inp = None
            for q in preds[k]:
                inp = val[q] if inp is None else inp + val[q]
            if isinstance(n, nir.Output):
                val[k] = inp
            elif isinstance(n, nir.Affine):
                val[k] = (inp @ f32(n.weight).T + f32(n.bias)).astype(F32)
            elif isinstance(n, nir.Linear):
                val[k] = (inp @ f32(n.weight).T).astype(F32)
            elif isinstance(n, nir.Conv2d):
                val[k] = conv2d(inp, n)
            elif isinstance(n, nir.Flatten):
                val[k] = flatten(inp, n)
            elif k in neurons:
                val[k] = neurons[k](inp)
                rec[k].append(val[k])
            else:
                raise NotImplementedError(type(n).__name__)
        outs.append(val[[k for k in order if isinstance(graph.nodes[k], nir.Output)][0]])
    return np.stack(outs), {k: np.stack(v) for k, v in rec.items()}


# --------------------------------------------------------------------- main
def check(path_nir, verbose=False):
    base = os.path.basename(path_nir)[:-4]
    fw = base.split("_")[0]
    data = np.load(path_nir[:-4] + ".npz")
    graph = nir.read(path_nir, type_check=False)  # norse/rockpool Input has a batch dim
    x, y = data["input"], data["output"]
    hidden = data["hidden"] if "hidden" in data.files else None
    results = []

    def run(extra, label):
        out, rec = simulate(graph, fw, x, extra)
        first = next(iter(rec.values()))
        ok_o = np.array_equal(out, y)
        ok_h = hidden is None or np.array_equal(first, hidden)
        msg = (
            f"{base:32s} {label:14s} output {'EXACT' if ok_o else 'MISMATCH'}"
            f" ({int(np.sum(out != y))}/{y.size} differ, {float(y.sum()):g} spikes)"
            f"  hidden {'EXACT' if ok_h else 'MISMATCH'}"
        )
        print(msg)
        return ok_o and ok_h

    if "w_rec" in data.files:
        # rockpool_rec: the NIR file alone cannot reproduce it (w_rec dropped by the exporter)
        nir_only = run({}, "[NIR only]")
        # the recurrent LIFTorch is the first neuron node of the graph
        order, _ = topo_order(graph)
        first = [k for k in order if isinstance(graph.nodes[k], nir.CubaLIF)][0]
        with_rec = run({"w_rec": {first: f32(data["w_rec"])}}, "[+npz w_rec]")
        results.append(with_rec and not nir_only)
        if nir_only:
            print("   unexpected: NIR-only run matched although w_rec was dropped")
    else:
        results.append(run({}, ""))
    if verbose:
        print("   note:", str(data["note"]))
        if "export_fixup" in data.files and str(data["export_fixup"]):
            print("   export fixup:", str(data["export_fixup"]))
    return all(results)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=os.path.join(here, "..", "tests", "fixtures", "nir"))
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument(
        "--float64",
        action="store_true",
        help="simulate in float64 instead of float32 (robustness check)",
    )
    args = ap.parse_args()
    if args.float64:
        global F32
        F32 = np.float64
    files = sorted(glob.glob(os.path.join(args.dir, "*.nir")))
    if not files:
        print("no fixtures found in", args.dir)
        return 1
    ok = [check(f, args.verbose) for f in files]
    print(f"{sum(ok)} passed, {len(ok) - sum(ok)} failed")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
