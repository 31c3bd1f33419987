"""snnTorch and plain torch frontend: ``from_torch(module) -> Graph``.

The module's ``forward`` runs once, in eval mode and without gradients, on a zero input while a
recording ``TorchFunctionMode`` and forward hooks watch it (a concrete trace: Python control flow
just runs). Tensors that depend on the input are *symbolic*: each maps, by object identity, to a
``_Val`` saying how it was made (the input; output ``i`` of the ``k``-th call of a layer; a
tensor function between layers). Known layers are leaves whose insides are not recorded. A layer
called once per time step becomes one IR node, and every step must be wired like the first.

Three kinds of ``forward`` are accepted. (a) One time step per call (``nn.Sequential``,
``init_hidden=True``): input ``(B, *input_shape)``. (b) A loop over ``x[step]`` of a time-major
input ``(T, B, *input_shape)``. (c) A loop that presents the same ``x`` at every step. (b) and
(c) must return ``torch.stack`` of one spike tensor per step (the first spiking output is taken;
membrane recordings are ignored). The IR graph is one time step; for (c) its input is ``x``
repeated over time. The network is compiled as in eval mode: BatchNorm uses its running
statistics (folded into the Linear/Conv before it) and Dropout is off. A neuron's state starts
at zero; an initial state passed to it must be zero.

Neurons keep snnTorch's own forward semantics, not those of its (lossy) NIR exporter:
``mem = beta.clamp(0, 1)*mem + input``, then ``spk = mem - threshold > 0``; ``_reset_rule``
maps ``reset_mechanism`` x ``reset_delay`` to the IR's ResetMode and ResetTiming. A model whose
output is a membrane rather than spikes is refused.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from snnc.errors import FrontendError, IRError
from snnc.ir import nodes as N
from snnc.ir.graph import NAME_RE, Graph
from snnc.ir.verify import verify

try:
    import snntorch as snn
except ImportError:  # plain torch models do not need snnTorch
    snn = None
from snnc.frontend.torch_trace import (
    _NEURONS,
    _SKIPPED,
    _Call,
    _check_steps,
    _err,
    _pick_output,
    _run,
    _TimeMajor,
    _Trace,
    _Val,
    _walk,
    snn,
)


def _ir_name(path: str) -> str:
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in path.replace(".", "_"))
    return name if NAME_RE.match(name) else "l" + name


def _f32(t, path: str, what: str) -> np.ndarray:
    t = torch.as_tensor(t).detach()
    if t.ndim and t.dtype != torch.float32:  # a 0-d tensor is cast to float32 by torch as well
        raise _err(path, f"{what} is {t.dtype}; snnc compiles float32 models (model.float())")
    return t.to(torch.float32).cpu().numpy().copy()


def _broadcast(t, pop: tuple[int, ...], what: str, path: str) -> np.ndarray:
    """A neuron parameter as torch broadcasts it against ``(B, *pop)``, without the batch."""
    a = _f32(t, path, what)
    a = a[0] if a.ndim == len(pop) + 1 and a.shape[0] == 1 else a
    try:
        return np.ascontiguousarray(np.broadcast_to(a, pop), dtype=np.float32)
    except ValueError:
        raise _err(path, f"{what} of shape {a.shape} does not fit the population {pop}") from None


def _check_neuron(mod: nn.Module, path: str) -> str:
    """Refuse options snnc cannot honour; returns the reset mechanism snnTorch really uses."""
    where = f"layer '{path}' ({type(mod).__name__})"
    gsf = torch.as_tensor(getattr(mod, "graded_spikes_factor", 1.0)).detach()
    probe = torch.tensor([-1.0, -1e-30, 0.0, 1e-30, 1.0])
    with torch.no_grad():
        step_fn = torch.equal(mod.spike_grad(probe).float(), (probe > 0).float())
    mech = ("subtract", "zero", "none")[int(mod.reset_mechanism_val)]
    fn = getattr(mod.state_function, "__name__", "?")
    why = next((msg for bad, msg in [
        (mod.inhibition, "inhibition=True (only the strongest neuron may fire) has no IR "
         "equivalent"),
        (mod.state_quant, "state_quant quantises the membrane inside snnTorch's forward; compile "
         "the float model and let snnc quantise it"),
        (not bool(torch.all(gsf == 1)), f"graded_spikes_factor={gsf.tolist()} makes graded "
         "spikes; the IR's spikes are 0/1"),
        (not step_fn, "spike_grad's forward is not the step function (mem - threshold > 0)"),
        (fn != {"subtract": "_base_sub", "zero": "_base_zero", "none": "_base_int"}[mech],
         f"reset_mechanism was changed to '{mech}' after construction, but snnTorch still "
         f"integrates with {fn}; build the layer with the reset it should have"),
    ] if bad), None)  # fmt: skip
    if why:
        raise FrontendError(f"{where}: {why}")
    return mech


def _reset_rule(mod, mech: str, th: np.ndarray, path: str) -> tuple[N.ResetMode, N.ResetTiming]:
    """snnTorch's reset, exactly (see ResetTiming).

    subtract: ``mem = beta*mem + x - s[t-1]*threshold`` (NEXT_STEP); with ``reset_delay=False``
    snnTorch subtracts again in the step of the spike, guarded against a double reset (GATED).
    zero: Leaky zeroes ``mem`` before the decay, which is a reset right after the spike
    (IMMEDIATE); Synaptic and RLeaky zero the next step's integrated value, input included
    (NEXT_STEP). With ``reset_delay=False`` all zero right after the spike, provided every
    threshold is > 0 (so that a zeroed membrane never counts as above threshold).
    """
    R, T = N.ResetMode, N.ResetTiming
    if mech == "none":
        return R.NONE, T.IMMEDIATE
    if mech == "subtract":
        return R.SUBTRACT, T.NEXT_STEP if mod.reset_delay else T.GATED
    if not mod.reset_delay and not np.all(th > 0):
        raise _err(path, "reset_mechanism='zero' with reset_delay=False needs thresholds > 0")
    leaky = isinstance(mod, snn.Leaky) or not mod.reset_delay
    return R.TO_VALUE, T.IMMEDIATE if leaky else T.NEXT_STEP


def _conv(mod: nn.Module, path: str, origin: str) -> N.Node:
    pad = mod.padding
    if mod.padding_mode != "zeros":
        raise _err(path, f"padding_mode='{mod.padding_mode}' is not supported (only zeros)")
    if isinstance(pad, str):  # 'same' (stride 1) or 'valid'
        total = [d * (k - 1) * (pad == "same") for k, d in zip(mod.kernel_size, mod.dilation,
                                                                 strict=True)]  # fmt: skip
        if any(t % 2 for t in total):
            raise _err(path, f"padding='same' is asymmetric for kernel {mod.kernel_size}")
        pad = tuple(t // 2 for t in total)
    if isinstance(mod, nn.Conv1d):
        return N.Conv1d(stride=mod.stride[0], padding=pad[0], dilation=mod.dilation[0],
                        groups=mod.groups, origin=origin)  # fmt: skip
    return N.Conv2d(stride=mod.stride, padding=pad, dilation=mod.dilation, groups=mod.groups,
                    origin=origin)  # fmt: skip


def _avgpool(mod: nn.AvgPool2d, call: _Call, origin: str) -> N.Node:
    k, s, p = ((v, v) if isinstance(v, int) else tuple(v)
               for v in (mod.kernel_size, mod.stride or mod.kernel_size, mod.padding))  # fmt: skip
    node = N.AvgPool2d(kernel=k, stride=s, padding=p, origin=origin)
    why = None
    if mod.divisor_override:
        why = "divisor_override divides by a fixed number, the IR's AvgPool2d by the window size"
    elif not mod.count_include_pad and any(p):
        why = "count_include_pad=False divides border windows by fewer elements than kh*kw"
    elif node.infer_shape(call.in_shape, {}) != call.out_shape:
        why = "ceil_mode=True adds partial windows the IR's AvgPool2d does not have"
    if why:
        raise FrontendError(f"layer '{call.path}' (AvgPool2d): {why}")
    return node


def _fold_bn(w: np.ndarray, b: np.ndarray | None, bn: nn.Module, path: str):
    """Fold eval-mode BatchNorm into the weights before it, in float64, then round once."""
    if bn.running_mean is None:
        raise _err(path, "BatchNorm without running statistics normalises each batch by itself")
    f64 = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    n = bn.num_features
    gamma, beta = (f64(bn.weight), f64(bn.bias)) if bn.affine else (np.ones(n), np.zeros(n))
    s = gamma / np.sqrt(f64(bn.running_var) + bn.eps)
    w64 = w.astype(np.float64) * s.reshape(-1, *[1] * (w.ndim - 1))
    b64 = ((0.0 if b is None else b.astype(np.float64)) - f64(bn.running_mean)) * s + beta
    return w64.astype(np.float32), b64.astype(np.float32)


class _Builder:
    """Folds the trace into IR nodes, emitted from the output backwards (dead layers drop out)."""

    def __init__(self, tr: _Trace) -> None:
        self.tr = tr
        self.nodes: dict[str, N.Node] = {"input": N.Input(shape=tr.shape, origin="torch:input")}
        self.inputs: dict[str, list[str]] = {}
        self.params: dict[str, dict[str, np.ndarray]] = {}
        self.expect: dict[str, tuple[int, ...]] = {}  # traced shapes, to check the IR against
        self.memo: dict[tuple, tuple[str, ...]] = {}
        self.summed: dict[tuple, str] = {}
        self.taken = {"input", "output"}
        self.names = {p: self._unique(_ir_name(p)) for p in tr.calls}
        self.users: dict[tuple, set] = {}  # value key -> keys of what reads it
        for path, calls in tr.calls.items():
            self.users.setdefault(calls[0].x.key, set()).add(("layer", path))
        for v in tr.ops:
            for a in v.args:
                self.users.setdefault(a.key, set()).add(v.key)

    def _unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def add(self, name, node, srcs, params, shape) -> str:
        self.nodes[name], self.inputs[name], self.params[name] = node, list(srcs), params
        self.expect[name] = shape
        return name

    def emit(self, v: _Val) -> tuple[str, ...]:
        """IR node names whose sum is ``v`` (several for a sum nothing had to form)."""
        if v.key not in self.memo:
            self.memo[v.key] = self._emit(v)
        return self.memo[v.key]

    def _emit(self, v: _Val) -> tuple[str, ...]:
        if v.op == "input":
            return ("input",)
        if v.op == "call":
            return (self._call(v),)
        if v.op == "add":  # left to right, as torch adds; a right-hand sum is formed first
            return self.emit(v.args[0]) + (self.single(v.args[1]),)
        if v.op == "stack":
            raise FrontendError(
                f"'{v.path or type(self.tr.root).__name__ + '.forward'}': a torch.stack is used "
                "inside the network; stack only the spikes forward returns"
            )
        name = self._unique(f"{_ir_name(v.path)}_{v.op}" if v.path else v.op)
        origin = f"torch:{v.path + '.' if v.path else ''}{v.op}"
        if v.op == "flatten":
            node, params = N.Flatten(start_dim=v.attrs[0], end_dim=v.attrs[1], origin=origin), {}
        else:
            scale = np.frombuffer(v.attrs[1], np.float32).reshape(v.attrs[0])
            node, params = N.Scale(origin=origin), {"scale": scale}
        return (self.add(name, node, self.emit(v.args[0]), params, v.shape),)

    def single(self, v: _Val) -> str:
        """One node carrying ``v``. A sum is formed by an identity Scale, as torch forms it
        before a neuron adds it to its membrane (the IR adds a neuron's inputs one by one)."""
        names = self.emit(v)
        if len(names) > 1 and v.key not in self.summed:
            name = self._unique(f"{_ir_name(v.path)}_add" if v.path else "add")
            origin = f"torch:{v.path + '.' if v.path else ''}add"
            one = {"scale": np.ones(v.shape, np.float32)}
            self.summed[v.key] = self.add(name, N.Scale(origin=origin), names, one, v.shape)
        return names[0] if len(names) == 1 else self.summed[v.key]

    def _call(self, v: _Val) -> str:
        path, index = v.attrs
        call = self.tr.calls[path][0]
        if isinstance(call.module, _NEURONS):
            if index:
                raise _err(path, f"its state (output {index}) feeds a layer; only spikes may")
            return self._neuron(call)
        if not isinstance(call.module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self._layer(call, self.names[path], f"torch:{path}", None)
        src = call.x
        if not (src.op == "call" and isinstance(src.call.module, (nn.Linear, nn.Conv1d, nn.Conv2d))
                and self.users[src.key] == {("layer", path)}):  # fmt: skip
            raise _err(path, "BatchNorm folds only into a Linear/Conv that feeds nothing else")
        prod = src.attrs[0]
        return self._layer(src.call, self.names[prod], f"torch:{prod}+{path}", call.module)

    def _layer(self, call: _Call, name: str, origin: str, bn: nn.Module | None) -> str:
        mod, path, params = call.module, call.path, {}
        if isinstance(mod, nn.Flatten):
            nd = len(call.in_shape)
            s, e = mod.start_dim % (nd + 1), mod.end_dim % (nd + 1)
            if s == 0:
                raise _err(path, "Flatten(start_dim=0) merges the batch into the features")
            node = N.Flatten(start_dim=s - 1, end_dim=-1 if e == nd else e - 1, origin=origin)
        elif isinstance(mod, nn.AvgPool2d):
            node = _avgpool(mod, call, origin)
        else:
            w = _f32(mod.weight, path, "weight")
            b = None if mod.bias is None else _f32(mod.bias, path, "bias")
            if bn is not None:
                w, b = _fold_bn(w, b, bn, path)
            if isinstance(mod, nn.Linear):
                node = N.Affine(origin=origin) if b is not None else N.Linear(origin=origin)
            else:
                node = _conv(mod, path, origin)
            params = {"weight": w} if b is None else {"weight": w, "bias": b}
        return self.add(name, node, self.emit(call.x), params, call.out_shape)

    def _neuron(self, call: _Call) -> str:
        mod, path, pop = call.module, call.path, call.in_shape
        src = self.single(call.x)
        mech = _check_neuron(mod, path)
        th = _broadcast(mod.threshold, pop, "threshold", path)
        reset, timing = _reset_rule(mod, mech, th, path)
        ones, zeros = np.ones(pop, np.float32), np.zeros(pop, np.float32)
        decay = _broadcast(mod.beta.detach().clamp(0, 1), pop, "beta", path)
        p = {"decay": decay, "gain": ones, "bias": zeros, "threshold": th, "reset_value": zeros}
        kw = dict(reset=reset, timing=timing, strict=True, origin=f"torch:{path}")
        if isinstance(mod, snn.Synaptic):
            alpha = _broadcast(mod.alpha.detach().clamp(0, 1), pop, "alpha", path)
            node, p = N.CubaLIF(**kw), {"decay_i": alpha, "gain_i": ones, **p}
        else:
            node = N.LIF(**kw)
        name = self.add(self.names[path], node, [src], p, pop)
        if isinstance(mod, snn.RLeaky):
            self._recurrence(mod, name, path, pop)
        return name

    def _recurrence(self, mod: nn.Module, lif: str, path: str, pop: tuple[int, ...]) -> None:
        """lif -> Delay(1) -> recurrent map -> lif. The map comes after the delay: at t=0
        snnTorch applies it to zero spikes (giving its bias). It is the lif's second input:
        snnTorch computes (beta*mem + input) + recurrent(spk)."""
        delay = self._unique(f"{lif}_rec_delay")
        steps = {"steps": np.ones(pop, np.int64)}
        self.add(delay, N.Delay(origin=f"torch:{path}"), [lif], steps, pop)
        r, origin = mod.recurrent, f"torch:{path}.recurrent"
        if isinstance(r, (nn.Linear, nn.Conv2d)):
            node = N.Affine(origin=origin) if isinstance(r, nn.Linear) else _conv(r, path, origin)
            p = {"weight": _f32(r.weight, path, "recurrent weight"),
                 "bias": _f32(r.bias, path, "recurrent bias")}  # fmt: skip
        else:  # one-to-one: spk * V
            node, p = N.Scale(origin=origin), {"scale": _broadcast(r.V, pop, "V", path)}
        self.inputs[lif].append(self.add(self._unique(f"{lif}_rec"), node, [delay], p, pop))

    def build(self, out: _Val, name: str) -> Graph:
        src = self.single(out)
        self.add("output", N.Output(shape=out.shape, origin="torch:output"), [src], {}, out.shape)
        meta = {"source": "torch", "frontend": "snntorch"}
        try:
            graph = verify(Graph(self.nodes, self.inputs, self.params, name=name, meta=meta))
            shapes = graph.shapes()
        except IRError as e:
            raise FrontendError(f"internal error: invalid IR from the torch model: {e}") from e
        wrong = {n: (shapes[n], s) for n, s in self.expect.items() if shapes[n] != s}
        if wrong:
            raise FrontendError(f"internal error: IR shapes differ from the traced ones: {wrong}")
        return graph


def _input_shape(module: nn.Module, input_shape) -> tuple[int, ...]:
    if input_shape is not None:
        shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
            raise FrontendError(f"input_shape must be positive integers, got {input_shape!r}")
        return shape
    first = next((m for _, m, leaf in _walk(module) if leaf and not isinstance(m, _SKIPPED)), None)
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    raise FrontendError(
        f"cannot infer the input shape of '{type(module).__name__}': its first layer is "
        f"{type(first).__name__}, not nn.Linear; give the shape without batch and time "
        "(input_shape=..., on the command line --input-shape, e.g. 1,8,8)"
    )


def from_torch(
    module: nn.Module, input_shape: tuple[int, ...] | None = None, *, name: str = "model"
) -> Graph:
    """Compile a trained snnTorch / plain torch module into an IR graph.

    Parameters
    ----------
    module
        An ``nn.Sequential`` or a module whose ``forward`` is traceable (see the module
        docstring). It runs once on a zero input; its states and train/eval flags are restored.
    input_shape
        The input's shape without batch and time; inferred from a first ``nn.Linear`` if None.
    name
        The graph's name.

    Returns
    -------
    Graph
        Nodes named after the torch module paths (``net.3`` -> ``net_3``, ``0`` -> ``l0``) with
        ``origin="torch:<path>"``, an Input ``input`` and an Output ``output`` fed by the output
        spikes; float32 parameters of the shapes the nodes require.

    Raises
    ------
    FrontendError
        Naming the layer, for anything that cannot be compiled exactly.
    """
    if not isinstance(module, nn.Module):
        raise FrontendError(f"from_torch needs a torch.nn.Module, got {type(module).__name__}")
    shape = _input_shape(module, input_shape)
    try:
        tr, result = _run(module, shape, time_major=False)
    except _TimeMajor:
        tr = None
    if tr is None:  # outside the except block: errors of this run are not "during handling"
        tr, result = _run(module, shape, time_major=True)
    out = _pick_output(tr, result, _check_steps(tr))
    return _Builder(tr).build(out, name)
