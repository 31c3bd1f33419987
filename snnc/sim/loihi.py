"""Bit-accurate simulator of Loihi 1 core configurations (``snnc/backends/loihi/config.py``).

All values are integers; every compartment of every core advances in lockstep. Per step ``t``
(0-based), for each compartment, with ``>>`` an arithmetic shift (floor)::

    D_f[t] = sum of Wgt * payload over the synapses of format f whose axon carried a spike at
             step t - 1 - Dly                   # input at t-1 or a compartment spike at t-1
    q = sum_f shift(D_f[t], wgtExp_f) << 6      # weight_exp="sum" (Lava): floor of the SUM
    q = sum of shift(Wgt * payload, 6 + wgtExp_f) over those synapses  # "synapse" (nengo-loihi)
    shift(x, e) = x << e  (e >= 0)   or   x >> -e  (e < 0)
    u = sign(u) * ((|u| * (4096 - (decayU + 1))) >> 12) + q
    u = u - 2**24 if u > 2**23;  u = u + 2**24 if u <= -2**23        # one wrap, as Lava
    v = sign(v) * ((|v| * (4096 - decayV)) >> 12) + u + bias  # bias = bias << biasExp (>> if <0)
    v = clip(v, -(2**23 - 1), 2**23 - 1)
    s = v > (vth << 6);  v = 0 where s                          # u keeps its value

With ``input_wrap_21`` the three wraps of nengo-loihi replace Lava's, with
``wrap(x, b) = ((x + 2**b) mod 2**(b + 1)) - 2**b`` (``b`` bits + sign, two's complement)::

    q = wrap(q, 21);  u = wrap(decay(u) + q, 23);  v = decay(v) + wrap(u + bias, 23), clipped

- Lava (lava-nc 0.10.0, ``PyDenseModelBitAcc`` + ``PyLifModelBitAcc``) is the reference; the
  golden files ``tests/fixtures/loihi/*.npz`` confirm it bit for bit: the input of step ``t``
  reaches ``u`` at step ``t + 1`` (Dense buffers one step; ``two_layer.npz``: each Dense adds a
  step); the current decay is ``4096 - (decayU + 1)`` (Lava's ``ds_offset = 1``: decayU 4095
  clears u, 0 still decays it by 4095/4096, ``decays.npz``; so -1 keeps u), the voltage decay
  ``4096 - decayV`` (no offset); decays truncate toward zero (``decays.npz``);
  ``u`` wraps once, ``+2**23`` is kept and ``-2**23`` becomes ``+2**23`` (``u_wrap.npz``); ``v``
  saturates at ``+-(2**23 - 1)`` (``v_saturation.npz``); the spike test is strict
  (``exact_threshold.npz``); a negative weight exponent floors the sum (``weight_exp_m5.npz``).
- ``weight_exp="synapse"`` is nengo-loihi's: its emulator holds each weight on u's scale,
  ``Wgt * 2**(6 + wgtExp)`` (``nengo_loihi/builder/discretize.py`` ``discretize_weights``
  returns ``shift(w, s + weight_exp)`` then ``<< 6``; ``hardware/builder.py`` ``build_synapse``
  writes ``Wgt = weights // synapse_cfg.scale``, ``block.py`` ``SynapseConfig.get_scale`` is
  ``2**(6 + weight_exp)``), and ``emulator/interface.py`` ``SynapseState.update_input`` adds
  those integers per spike (``qb[0, base + indices] += weights``). So the 6 fraction bits below
  ``wgtExp`` are kept: Wgt 3 at wgtExp -2 adds 48 to u where Lava adds ``(3 >> 2) << 6 = 0``.
  Only below wgtExp -6 (which nengo-loihi never builds: ``discretize_synapse`` clamps at -6)
  is each ``Wgt * payload`` floored, per synapse. nengo-loihi has no graded payloads; the
  payload multiplies ``Wgt`` before the shift.
- ``input_wrap_21`` is nengo-loihi's overflow model, ``CompartmentState.update`` in
  ``emulator/interface.py``: ``overflow(q0, bits=Q_BITS)`` on the synaptic input already on u's
  scale, ``overflow(current, bits=U_BITS)`` on u and ``overflow(u2, bits=U_BITS)`` on
  ``u + bias``, with ``Q_BITS = 21``, ``U_BITS = 23`` and ``overflow_signed``
  (``builder/discretize.py``): keep the low ``bits`` bits, subtract ``2**bits`` if bit ``bits``
  is set. So ``+2**23`` becomes ``-2**23`` (Lava keeps it) and ``u + bias`` wraps instead of
  saturating; ``v`` itself only saturates, as in Lava.
- ``refractory=True`` follows nengo-loihi's ``CompartmentState.update``: ``voltage[ref_count >
  0] = 0`` before the spike test, then ``ref_count[spiked] = ref[spiked]`` and ``ref_count =
  max(ref_count - 1, 0)``; a compartment that spikes at step ``t`` with ``refractDelay = r``
  has ``v`` held at 0 (so it cannot spike) at steps ``t+1 .. t+r-1``; ``u`` keeps integrating
  its input. Lava has no refractory period.
- A synapse with ``Dly = d`` delivers ``d`` steps later than with ``Dly = 0`` under every rule
  (nengo-loihi's emulator has no delays: ``CompartmentState.MAX_DELAY = 1``). Compartment
  spikes carry payload 1; graded payloads (``payloadBits > 0``) enter only from the input.
- ``Wgt`` is trusted as stored but checked at load: a multiple of ``2**(8 - wgtBits + isMixed)``
  in ``-256 .. 255`` (mixed) or ``-255 .. 255`` (one sign per synapse as stored: excitatory or
  Lava's inhibitory mirror).

Per core, synapse format, delay (and duplicate (axon, compartment) pair) the synapses form one
axons x compartments matrix, applied once per step to the whole batch; float64 products are
exact while the sums stay below 2**53 (checked from the weights and payload widths, else int64).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from snnc.backends.loihi.config import CoreConfig, LoihiConfig, Semantics
from snnc.errors import SimulationError

_UV = 1 << 23  # u and v are 24-bit
_EXACT = 2.0**53
_DENSE = 0.1  # a weight matrix fuller than this is kept dense


@dataclass
class LoihiResult:
    """What :func:`simulate` returns; arrays are time-major ``(T, B, ...)``."""

    outputs: dict[str, np.ndarray]  # per output port: uint8 spikes (graded chips: int64)
    output: np.ndarray  # the first output port's array
    spikes: dict[str, np.ndarray] = field(default_factory=dict)  # per layer, with record=True
    u: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)  # per core, trace=True
    v: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    synops: int = 0  # synaptic events delivered (spike x synapse)
    spike_count: int = 0  # compartment spikes


@dataclass
class _Group:
    """The synapses of one format, delay and duplicate rank, as an axons x cx matrix."""

    w: np.ndarray | sp.csr_matrix
    dly: int
    slot: int  # which dendritic accumulator (0: exact, already on u's scale)
    floor: int = 0  # > 0: floor each Wgt * payload >> floor ("synapse", wgtExp < -6, graded)


def _decay(x: np.ndarray, d: np.ndarray) -> np.ndarray:
    return np.sign(x) * ((np.abs(x) * d) >> 12)


def _wrap(x: np.ndarray, bits: int) -> np.ndarray:
    """nengo-loihi's ``overflow_signed``: ``x`` in ``bits`` bits + sign, two's complement."""
    return ((x + (1 << bits)) & ((2 << bits) - 1)) - (1 << bits)


class _Core:
    """One core: compartment parameters, synapse matrices, state and dendritic accumulators."""

    def __init__(self, cfg: CoreConfig, sem: Semantics, batch: int, amax: np.ndarray) -> None:
        self.sem, n, self.n_axons = sem, len(cfg.compartments), len(cfg.synapse_map)
        self.n = n
        cxp, vth = _compartments(cfg)
        self.du = 4096 - (np.array([p.decay_u for p in cxp], np.int64) + 1)
        self.dv = 4096 - np.array([p.decay_v for p in cxp], np.int64)
        self.ref = np.array([p.refract_delay for p in cxp], np.int64)
        self.vth = vth << 6
        mant = np.array([c.bias for c in cfg.compartments], np.int64)
        exp = np.array([c.bias_exp for c in cfg.compartments], np.int64)
        self.bias = np.where(exp >= 0, mant << np.maximum(exp, 0), mant >> np.maximum(-exp, 0))
        axon, cx, wgt, fmt, dly = _synapse_table(cfg)
        self.syn_per_axon = np.bincount(axon, minlength=self.n_axons).astype(np.float64)
        self.groups, shifts = _groups(cfg, sem, axon, cx, wgt, fmt, dly, amax)
        self.shifts = shifts  # right shift of each accumulator slot (slot 0: none)
        self.depth = 1 + max((g.dly for g in self.groups), default=0)
        self.acc = np.zeros((self.depth, len(shifts), batch, n), np.int64)
        self.u = np.zeros((batch, n), np.int64)
        self.v = np.zeros((batch, n), np.int64)
        self.wait = np.zeros((batch, n), np.int64)

    def step(self, t: int) -> np.ndarray:
        """Advance the compartments by step ``t``; returns the spikes (B, n) as bool."""
        slot = self.acc[t % self.depth]
        q = slot[0].copy()  # the synaptic input on u's scale
        for k in range(1, len(self.shifts)):
            q += (slot[k] >> self.shifts[k]) << 6
        slot[:] = 0
        if self.sem.input_wrap_21:  # nengo-loihi: overflow(q0, Q_BITS), (current | u2, U_BITS)
            self.u = _wrap(_decay(self.u, self.du) + _wrap(q, 21), 23)
            u2 = _wrap(self.u + self.bias, 23)
        else:
            u = _decay(self.u, self.du) + q
            u = np.where(u > _UV, u - 2 * _UV, u)
            self.u = np.where(u <= -_UV, u + 2 * _UV, u)
            u2 = self.u + self.bias
        v = np.clip(_decay(self.v, self.dv) + u2, 1 - _UV, _UV - 1)
        if self.sem.refractory:
            v[self.wait > 0] = 0
        s = v > self.vth
        v[s] = 0
        self.v = v
        if self.sem.refractory:
            self.wait = np.maximum(np.where(s, self.ref, self.wait) - 1, 0)
        return s

    def send(self, acts: np.ndarray, t: int) -> int:
        """Deliver the axon payloads of step ``t`` (B, n_axons); returns the synaptic events."""
        for g in self.groups:
            if g.floor:
                out = _floored(acts.astype(np.int64), g.w, g.floor)
            else:
                out = acts.astype(g.w.dtype) @ g.w
            self.acc[(t + 1 + g.dly) % self.depth, g.slot] += np.asarray(out, np.int64)
        return int(np.count_nonzero(acts, axis=0) @ self.syn_per_axon)


def _floored(acts: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """``sum_a floor(acts[:, a] * w[a] / 2**k)`` over the active axons, in batch chunks."""
    idx = np.flatnonzero(acts.any(axis=0))
    out = np.zeros((acts.shape[0], w.shape[1]), np.int64)
    if idx.size:
        wa, chunk = w[idx], max(1, (1 << 22) // (idx.size * w.shape[1]))
        for b in range(0, acts.shape[0], chunk):
            out[b : b + chunk] = ((acts[b : b + chunk, idx, None] * wa) >> k).sum(axis=1)
    return out


def _compartments(cfg: CoreConfig) -> tuple[list, np.ndarray]:
    for i, c in enumerate(cfg.compartments):
        if not (0 <= c.cx_profile < len(cfg.cx_profiles)) or not (
            0 <= c.vth_profile < len(cfg.vth_profiles)
        ):
            raise SimulationError(
                f"core {cfg.name}: cxCfg[{i}] names cxProfile {c.cx_profile} and vthProfile "
                f"{c.vth_profile}; expected indices below {len(cfg.cx_profiles)} and "
                f"{len(cfg.vth_profiles)}"
            )
    cxp = [cfg.cx_profiles[c.cx_profile] for c in cfg.compartments]
    vth = np.array([cfg.vth_profiles[c.vth_profile] for c in cfg.compartments], np.int64)
    return cxp, vth


def _synapse_table(cfg: CoreConfig) -> tuple[np.ndarray, ...]:
    """One row per (input axon, synapse of its synapseMap entry): axon, cx, Wgt, format, Dly."""
    s = cfg.synapses
    cidx, wgt, fmt, dly = (np.array(c, np.int64) for c in (s.cidx, s.wgt, s.fmt, s.dly))
    used = [(a, e) for a, e in enumerate(cfg.synapse_map) if e is not None and e.synapse_len]
    for a, e in used:
        if e.synapse_ptr < 0 or e.synapse_ptr + e.synapse_len > len(s):
            raise SimulationError(
                f"core {cfg.name}: synapseMap[{a}] reads synapses {e.synapse_ptr} .. "
                f"{e.synapse_ptr + e.synapse_len - 1}; the synapse memory holds {len(s)}"
            )
    ranges = [np.arange(e.synapse_ptr, e.synapse_ptr + e.synapse_len) for _, e in used]
    k = np.concatenate([np.zeros(0, np.int64), *ranges])
    lens = np.array([e.synapse_len for _, e in used], np.int64)
    axon = np.repeat(np.array([a for a, _ in used], np.int64), lens)
    cx = np.repeat(np.array([e.cx_base for _, e in used], np.int64), lens) + cidx[k]
    bad = (cx < 0) | (cx >= len(cfg.compartments)) | (fmt[k] < 0)
    bad |= (fmt[k] >= len(cfg.synapse_fmts)) | (dly[k] < 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise SimulationError(
            f"core {cfg.name}: synapse {k[i]} (axon {axon[i]}) targets compartment {cx[i]} "
            f"with synFmtId {fmt[k][i]} and Dly {dly[k][i]}; expected a compartment below "
            f"{len(cfg.compartments)}, a format below {len(cfg.synapse_fmts)} and Dly >= 0"
        )
    _check_weights(cfg, wgt[k], fmt[k], k)
    return axon, cx, wgt[k], fmt[k], dly[k]


def _check_weights(cfg: CoreConfig, wgt: np.ndarray, fmt: np.ndarray, k: np.ndarray) -> None:
    for f_id, f in enumerate(cfg.synapse_fmts):
        m = fmt == f_id
        lo, step = (-256 if f.is_mixed else -255), 1 << max(0, 8 - f.wgt_bits + int(f.is_mixed))
        bad = (wgt[m] < lo) | (wgt[m] > 255) | (wgt[m] % step != 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise SimulationError(
                f"core {cfg.name}: synapse {k[m][i]} has Wgt {wgt[m][i]}, not representable in "
                f"synapseFmt {f_id} (wgtBits {f.wgt_bits}, isMixed {int(f.is_mixed)}): expected "
                f"a multiple of {step} in {lo} .. 255"
            )


def _groups(cfg, sem, axon, cx, wgt, fmt, dly, amax) -> tuple[list[_Group], list[int]]:
    """Split the synapses into matrices; returns them and the right shift of each slot."""
    order = np.lexsort((cx, axon, dly, fmt))
    key = np.stack([fmt, dly, axon, cx])[:, order]
    same = np.r_[False, (np.diff(key, axis=1) == 0).all(axis=0)] if order.size else order > 0
    idx = np.arange(order.size)
    rank = np.empty_like(order)
    rank[order] = idx - np.maximum.accumulate(np.where(same, 0, idx))
    binary = bool(np.all(amax <= 1))
    groups, shifts, slot_of = [], [0], {}
    for f_id, d, r in np.unique(np.stack([fmt, dly, rank], axis=1), axis=0).tolist():
        m = (fmt == f_id) & (dly == d) & (rank == r)
        e, w, slot, floor = cfg.synapse_fmts[f_id].wgt_exp, wgt[m], 0, 0
        k = 6 + e  # onto u's scale: Wgt * 2**(6 + wgtExp)
        if sem.weight_exp == "sum" and e < 0:  # Lava: (D >> -wgtExp) << 6 in step()
            slot = slot_of.setdefault(f_id, len(shifts))
            shifts += [-e] if slot == len(shifts) else []
        elif k >= 0:
            w = w << k
        elif binary:  # nengo-loihi below wgtExp -6: floor per synapse
            w = w >> -k
        else:
            floor = -k
        dense = np.zeros((len(cfg.synapse_map), len(cfg.compartments)), np.int64)
        dense[axon[m], cx[m]] = w
        bound = float((np.abs(dense).astype(np.float64).T @ amax).max(initial=0.0))
        mat = dense if floor or bound >= _EXACT else dense.astype(np.float64)
        if not floor and np.count_nonzero(mat) < _DENSE * mat.size:
            mat = sp.csr_matrix(mat)
        groups.append(_Group(mat, d, slot, floor))
    return groups, shifts


def simulate(
    config: LoihiConfig,
    x: np.ndarray,
    *,
    record: bool = False,
    trace: bool = False,
    semantics: Semantics | None = None,
) -> LoihiResult:
    """Run a Loihi configuration on a batch of spike trains, bit-exactly.

    Parameters
    ----------
    config : LoihiConfig
        The chip and core files, as :func:`snnc.backends.loihi.config.read` returns them.
    x : np.ndarray
        Time-major input ``(T, B, *shape)`` or ``(T, size)`` (then ``B = 1``); trailing dims
        are flattened and split over the chip's input ports in order. Binary 0/1 spikes when
        ``payloadBits`` is 0, else integer payloads ``0 .. 2**payloadBits - 1``.
    record : bool
        Also return every layer's spikes (``LoihiResult.spikes``).
    trace : bool
        Also return ``u`` and ``v`` of every core after each step.
    semantics : Semantics, optional
        Rules where the references differ; ``None`` uses ``config.chip.semantics``.

    Returns
    -------
    LoihiResult
        Output spikes per port ``(T, B, size)``, optional records, synaptic events and spikes.

    Raises
    ------
    SimulationError
        Input of the wrong size or values, or a configuration that cannot run (an index out of
        range, a ``Wgt`` not representable in its synapse format).
    """
    chip, sem = config.chip, semantics or config.chip.semantics
    xs = _inputs(config, x)
    T, B = xs.shape[:2]
    keys = sorted(config.cores)
    r_in, r_cx = _routes(config, keys)
    pmax = 1 if chip.payload_bits == 0 else (1 << chip.payload_bits) - 1
    cores = []
    for j, k in enumerate(keys):
        amax = np.asarray(r_in[j].sum(axis=0)).ravel() * float(pmax)
        for _, r in r_cx[j]:
            amax = amax + np.asarray(r.sum(axis=0)).ravel()
        cores.append(_Core(config.cores[k], sem, B, amax))
    outs = _output_map(config, keys)
    dtype = np.uint8 if chip.payload_bits == 0 else np.int64
    res = LoihiResult({p.name: np.zeros((T, B, p.size), dtype) for p in chip.outputs}, np.array([]))
    keep = [np.zeros((T, B, c.n), np.uint8) for c in cores] if record else []
    if trace:
        res.u = {k: np.zeros((T, B, c.n), np.int64) for k, c in zip(keys, cores, strict=True)}
        res.v = {k: np.zeros((T, B, c.n), np.int64) for k, c in zip(keys, cores, strict=True)}
    for t in range(T):
        s = [c.step(t) for c in cores]
        for name, i, e, cx in outs:
            res.outputs[name][t][:, e] = s[i][:, cx]
        for j, k in enumerate(keys):
            res.spike_count += int(np.count_nonzero(s[j]))
            if record:
                keep[j][t] = s[j]
            if trace:
                res.u[k][t], res.v[k][t] = cores[j].u, cores[j].v
        sf = [si.astype(np.float64) for si in s]
        for j, c in enumerate(cores):
            acts = np.asarray(np.asarray(xs[t], np.float64) @ r_in[j]).reshape(B, c.n_axons)
            for i, r in r_cx[j]:
                acts = acts + np.asarray(sf[i] @ r)
            res.synops += c.send(acts, t)
    if record:
        res.spikes = _layers(config, keys, keep, T, B)
    res.output = next(iter(res.outputs.values()), np.zeros((T, B, 0), dtype))
    return res


def _inputs(config: LoihiConfig, x: np.ndarray) -> np.ndarray:
    """Validate the input; returns it as ``(T, B, size)``."""
    ports = config.chip.inputs
    size = sum(p.size for p in ports)
    names = " + ".join(f"'{p.name}' ({p.size})" for p in ports) or "none"
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[:, None]
    if x.ndim < 3 or int(np.prod(x.shape[2:])) != size:
        raise SimulationError(
            f"input of shape {x.shape}: expected (T, B, {size}) or (T, {size}) values per step "
            f"for the chip's input ports {names}"
        )
    x = x.reshape(x.shape[0], x.shape[1], size)
    bits = config.chip.payload_bits
    top = 1 if bits == 0 else (1 << bits) - 1
    if x.dtype == bool:
        return x
    bad = (x < 0) | (x > top)
    if not np.issubdtype(x.dtype, np.integer):
        bad |= ~(x == np.floor(x))  # also NaN
    if bad.any():
        t, b, e = np.unravel_index(int(np.argmax(bad)), bad.shape)
        edges = np.cumsum([p.size for p in ports])
        port = ports[int(np.searchsorted(edges, e, side="right"))]
        what = "binary spikes (0 or 1)" if bits == 0 else f"integer payloads 0 .. {top}"
        raise SimulationError(
            f"input port '{port.name}': value {x[t, b, e].item()!r} at step {t}, batch {b}, "
            f"element {e}; this chip (payloadBits {bits}) takes {what}"
        )
    return x


def _core_index(config: LoihiConfig, keys: list, where: tuple, what: str, n: str) -> int:
    """Position of the core ``where[:2]`` in ``keys``, checking ``where[2]`` against its
    ``n`` ("axons" or "cx")."""
    chip, core, k = where
    if (chip, core) not in config.cores:
        raise SimulationError(f"{what}: chip {chip} core {core} is not in the configuration")
    c = config.cores[chip, core]
    top = len(c.synapse_map) if n == "axons" else len(c.compartments)
    if not 0 <= k < top:
        raise SimulationError(
            f"{what}: {n[:-1] if n == 'axons' else n} {k} of core {c.name} is out of range; "
            f"expected 0 .. {top - 1}"
        )
    return keys.index((chip, core))


def _routes(config: LoihiConfig, keys: list) -> tuple[list, list]:
    """Per destination core: the input routing (size, axons) and [(source, (cx, axons))]."""
    n_ax = [len(config.cores[k].synapse_map) for k in keys]
    size = sum(p.size for p in config.chip.inputs)
    rows: list[list[int]] = [[] for _ in keys]
    cols: list[list[int]] = [[] for _ in keys]
    e0 = 0
    for p in config.chip.inputs:
        for e, dests in enumerate(p.where):
            for d in dests:
                j = _core_index(config, keys, d, f"input port '{p.name}' element {e}", "axons")
                rows[j].append(e0 + e)
                cols[j].append(d[2])
        e0 += p.size
    r_in = [_csr(rows[j], cols[j], (size, n_ax[j])) for j in range(len(keys))]
    pairs: dict[tuple[int, int], tuple[list[int], list[int]]] = {}
    for i, k in enumerate(keys):
        c = config.cores[k]
        for a in c.axons:
            if not 0 <= a.cx < len(c.compartments):
                raise SimulationError(
                    f"core {c.name}: an output axon leaves compartment {a.cx}; the core has "
                    f"{len(c.compartments)}"
                )
            j = _core_index(config, keys, (a.chip, a.core, a.axon), f"core {c.name}", "axons")
            src, dst = pairs.setdefault((i, j), ([], []))
            src.append(a.cx)
            dst.append(a.axon)
    r_cx: list[list] = [[] for _ in keys]
    for (i, j), (src, dst) in sorted(pairs.items()):
        n_i = len(config.cores[keys[i]].compartments)
        r_cx[j].append((i, _csr(src, dst, (n_i, n_ax[j]))))
    return r_in, r_cx


def _csr(rows: list[int], cols: list[int], shape: tuple[int, int]) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)


def _output_map(config: LoihiConfig, keys: list) -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    """Per output port and core: (port, core position, port elements, compartments)."""
    out = []
    for p in config.chip.outputs:
        parts: dict[int, tuple[list[int], list[int]]] = {}
        for e, w in enumerate(p.where):
            if len(w) != 1:
                raise SimulationError(
                    f"output port '{p.name}' element {e}: expected one (chip, core, cx), got "
                    f"{len(w)}"
                )
            j = _core_index(config, keys, w[0], f"output port '{p.name}' element {e}", "cx")
            parts.setdefault(j, ([], []))[0].append(e)
            parts[j][1].append(w[0][2])
        out += [(p.name, j, np.array(e), np.array(c)) for j, (e, c) in sorted(parts.items())]
    return out


def _layers(config: LoihiConfig, keys: list, keep: list, T: int, B: int) -> dict:
    """Each layer's spikes ``(T, B, n)``, gathered from the cores that hold it."""
    spans: dict[str, list] = {}
    for ref in config.chip.cores:
        for name, first, stop, cx in ref.layers:
            spans.setdefault(name, []).append((keys.index((ref.chip, ref.core)), first, stop, cx))
    out = {}
    for name, parts in spans.items():
        a = np.zeros((T, B, max(stop for _, _, stop, _ in parts)), np.uint8)
        for j, first, stop, cx in parts:
            a[:, :, first:stop] = keep[j][:, :, cx : cx + stop - first]
        out[name] = a
    return out
