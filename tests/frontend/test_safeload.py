"""Tests of snnc.frontend.safeload: safe loading of torch.save files."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import snntorch as snn
import torch

from snnc.errors import FrontendError, UnsafePickleError
from snnc.frontend.safeload import ALLOWED_MODULE_PREFIXES, import_model_def, load_torch_file


def heaviside(x: torch.Tensor) -> torch.Tensor:
    """A user's module-level spike function: pickles as a global outside the allowlist."""
    return (x > 0).float()


def write_marker(path: str) -> None:
    """What a malicious pickle calls: proof that code ran."""
    Path(path).write_text("pwned")


class Evil:
    """Unpickling this calls ``target(arg)``: a payload, e.g. ``os.system`` or ``write_marker``."""

    def __init__(self, target: object, arg: str) -> None:
        self.target, self.arg = target, arg

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return self.target, (self.arg,)


def run_steps(net: torch.nn.Module, x: torch.Tensor, steps: int = 6) -> torch.Tensor:
    """Outputs of a stateful snnTorch net over ``steps`` time steps from reset states."""
    for module in net.modules():
        if hasattr(module, "reset_mem"):  # snnTorch neurons keep hidden state when init_hidden
            module.reset_mem()
    with torch.no_grad():
        return torch.stack([net(x * (t + 1) / steps) for t in range(steps)])


def save(obj: object, path: Path, fmt: str = "zip") -> Path:
    """``torch.save`` in torch's zip format (protocol 2 or 4) or the legacy format."""
    if fmt == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(obj, path, pickle_protocol=4 if fmt == "zip4" else 2)
    return path


# --------------------------------------------------------------------------- whole modules
@pytest.mark.parametrize("fmt", ["zip", "zip4", "legacy"])
def test_snntorch_leaky_sequential_loads_with_identical_outputs(tmp_path: Path, fmt: str) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(5, 8),
        snn.Leaky(beta=0.9, spike_grad=heaviside, init_hidden=True),
        torch.nn.Linear(8, 3),
        snn.Leaky(beta=0.8, threshold=0.5, spike_grad=heaviside, init_hidden=True),
    )
    loaded = load_torch_file(save(net, tmp_path / "net.pt", fmt))
    x = torch.randn(4, 5) * 3
    expected, got = run_steps(net.eval(), x), run_steps(loaded, x)
    assert type(loaded) is torch.nn.Sequential and not loaded.training
    assert expected.sum() > 0 and torch.equal(got, expected)
    # The user's spike function was never imported; a surrogate with the same forward replaced it.
    assert loaded[1].spike_grad is not heaviside and callable(loaded[1].spike_grad)
    # snnTorch's state_function is a bound method of the neuron itself, rebuilt after loading.
    assert loaded[3].state_function == loaded[3]._base_sub


def test_snntorch_synaptic_and_rleaky_load_with_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 6),
        snn.Synaptic(alpha=0.7, beta=0.85, spike_grad=heaviside, init_hidden=True),
        torch.nn.Linear(6, 5),
        snn.RLeaky(
            beta=0.9,
            all_to_all=True,
            linear_features=5,
            init_hidden=True,
            spike_grad=snn.surrogate.Heaviside.apply,
        ),
    )
    loaded = load_torch_file(save(net, tmp_path / "net.pt"))
    x = torch.randn(3, 4) * 4
    expected, got = run_steps(net.eval(), x), run_steps(loaded, x)
    assert expected.sum() > 0 and torch.equal(got, expected)
    assert type(loaded[1]) is snn.Synaptic and type(loaded[3]) is snn.RLeaky
    assert torch.equal(loaded[3].recurrent.weight, net[3].recurrent.weight)
    # An allowed autograd.Function's apply (pickled as getattr(Heaviside, "apply")) is kept.
    assert loaded[3].spike_grad == snn.surrogate.Heaviside.apply


def test_plain_conv_net_loads_with_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(2)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Dropout(0.5),
        torch.nn.Linear(4 * 4 * 4, 10),
    )
    net(torch.randn(8, 1, 8, 8))  # training step: BatchNorm running stats leave their defaults
    net.eval()
    loaded = load_torch_file(save(net, tmp_path / "conv.pt"))
    x = torch.randn(2, 1, 8, 8)
    assert not loaded.training
    assert torch.equal(loaded(x), net(x))
    assert torch.equal(loaded[1].running_mean, net[1].running_mean)


def test_allowed_prefixes_cover_torch_and_the_snn_frameworks() -> None:
    for prefix in (
        "torch",
        "torch.",
        "snntorch.",
        "norse.",
        "spikingjelly.",
        "sinabs.",
        "rockpool.",
    ):
        assert prefix in ALLOWED_MODULE_PREFIXES


# --------------------------------------------------------------------------- malicious files
def test_raw_pickle_calling_os_system_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Evil(os.system, f"touch {marker}"), protocol=2))
    with pytest.raises(UnsafePickleError) as info:
        load_torch_file(path)
    message = str(info.value)
    assert str(path) in message and "system" in message and "--trust-pickle" in message
    assert "Nothing it names was imported or run" in message
    assert not marker.exists()


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_torch_file_with_code_running_reduce_is_refused(tmp_path: Path, fmt: str) -> None:
    marker = tmp_path / "pwned"
    model = torch.nn.Linear(2, 2)
    model.payload = Evil(write_marker, str(marker))  # a plain attribute, pickled with the module
    path = save(model, tmp_path / "evil.pt", fmt)
    with pytest.raises(UnsafePickleError) as info:
        load_torch_file(path)
    assert "write_marker" in str(info.value) and "--trust-pickle" in str(info.value)
    assert not marker.exists()


def test_trust_pickle_does_run_the_payload(tmp_path: Path) -> None:
    # The counterpart of the test above: the same kind of file does run code when trusted.
    marker = tmp_path / "pwned"
    path = save({"x": Evil(write_marker, str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(FrontendError, match="holds a dict with keys"):
        load_torch_file(path, trust_pickle=True)
    assert marker.read_text() == "pwned"


def _str(text: str) -> bytes:
    return b"X" + struct.pack("<I", len(text)) + text.encode()


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _call(func: bytes, arg: str) -> bytes:
    """Protocol-2 pickle calling ``func(arg)``."""
    return b"\x80\x02" + func + _str(arg) + b"\x85R."


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("__builtin__", "__import__"),
        ("subprocess", "Popen"),
        ("posix", "system"),
        ("torch.serialization", "load"),
        ("torch", "load"),
        ("torch", "os"),
        ("torch.fx.graph_module", "reduce_graph_module"),
        ("torch.nn.modules.module", "OrderedDict.fromkeys"),
    ],
)
def test_dangerous_globals_are_refused_when_called(tmp_path: Path, module: str, name: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(_call(_global(module, name), f"touch {marker}"))
    with pytest.raises(UnsafePickleError, match="--trust-pickle") as info:
        load_torch_file(path)
    assert f"{module.replace('__builtin__', 'builtins')}.{name}" in str(info.value)
    assert not marker.exists()


def test_attribute_paths_through_allowed_modules_are_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    getattr_ = _global("__builtin__", "getattr")  # protocol 2 spelling of builtins.getattr
    cases = {
        # getattr(torch.os, "system")("touch ...")
        "getattr": getattr_ + _global("torch", "os") + _str("system") + b"\x86R",
        # getattr(torch.nn.Linear, "__subclasses__")(...): the classic escape to any class
        "dunder": getattr_ + _global("torch.nn", "Linear") + _str("__subclasses__") + b"\x86R",
    }
    for label, func in cases.items():
        path = tmp_path / f"{label}.pt"
        path.write_bytes(_call(func, f"touch {marker}"))
        with pytest.raises(UnsafePickleError, match=r"refused to unpickle getattr\(") as info:
            load_torch_file(path)
        assert "--trust-pickle" in str(info.value)
    # Protocol 4 names a dotted attribute path directly (STACK_GLOBAL).
    dotted = b"\x80\x04" + _str("torch") + _str("os.system") + b"\x93" + _str(f"touch {marker}")
    (tmp_path / "dotted.pt").write_bytes(dotted + b"\x85R.")
    with pytest.raises(UnsafePickleError, match=r"torch\.os\.system"):
        load_torch_file(tmp_path / "dotted.pt")
    assert not marker.exists()


@pytest.mark.parametrize(
    "body",
    [b")\x81", b"(i__main__\nNet\n", b"(c__main__\nNet\no"],
    ids=["NEWOBJ", "INST", "OBJ"],
)
def test_instantiating_a_refused_class_raises(tmp_path: Path, body: bytes) -> None:
    prefix = b"\x80\x02" + _global("__main__", "Net") if body.startswith(b")") else b""
    path = tmp_path / "net.pt"
    path.write_bytes(prefix + body + b".")
    with pytest.raises(UnsafePickleError, match=r"__main__\.Net.*--model-def.*--trust-pickle"):
        load_torch_file(path)


def test_placeholder_cannot_be_rewired_by_build(tmp_path: Path) -> None:
    # BUILD with slot state would setattr(Net, "__new__", OrderedDict) before NEWOBJ calls it.
    slots = b"N}" + _str("__new__") + _global("collections", "OrderedDict") + b"s\x86b"
    path = tmp_path / "net.pt"
    path.write_bytes(b"\x80\x02" + _global("__main__", "Net") + slots + b")\x81.")
    with pytest.raises(UnsafePickleError, match=r"__main__\.Net"):
        load_torch_file(path)


def test_refused_module_is_never_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "sneaky_mod.py").write_text(f"open({str(marker)!r}, 'w').close()\nX = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "evil.pt"
    path.write_bytes(_call(_global("sneaky_mod", "X"), "arg"))
    with pytest.raises(UnsafePickleError):
        load_torch_file(path)
    assert "sneaky_mod" not in sys.modules and not marker.exists()


def test_surviving_refused_value_is_reported_with_its_attribute(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    model[0].act = json.dumps  # only stored, never called while unpickling
    model.hooks = [torch.load]
    with pytest.raises(UnsafePickleError) as info:
        load_torch_file(save(model, tmp_path / "m.pt"))
    assert "model.0.act refers to json.dumps" in str(info.value)
    model[0].act = None
    hooks = r"model\.hooks\[0\] refers to torch\.serialization\.load"
    with pytest.raises(UnsafePickleError, match=hooks):
        load_torch_file(save(model, tmp_path / "m.pt"))
    # Only a module's own methods are rebuilt (snnTorch's state_function), not other objects'.
    del model.hooks
    model.append(torch.nn.Linear(2, 2))
    model[0].other = model[1].forward
    with pytest.raises(UnsafePickleError, match=r"model\.0\.other refers to getattr\(<Linear>"):
        load_torch_file(save(model, tmp_path / "m.pt"))


@pytest.mark.skipif(importlib.util.find_spec("norse") is not None, reason="norse is installed")
def test_missing_framework_is_refused_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "norse.pt"
    path.write_bytes(b"\x80\x02" + _global("norse.torch.module.lif", "LIFCell") + b")\x81.")
    with pytest.raises(FrontendError, match="norse is not installed"):
        load_torch_file(path)
    assert "norse" not in sys.modules


# --------------------------------------------------------------------------- user classes
NET_SOURCE = """
import torch

class Net(torch.nn.Module):
    def __init__(self, n_out: int = 3):
        super().__init__()
        self.fc = torch.nn.Linear(4, n_out)

    def forward(self, x):
        return torch.relu(self.fc(x)) * 2 - 1
"""


@pytest.fixture
def user_net(tmp_path: Path) -> Iterator[tuple[type, Path, str]]:
    """``Net`` imported from ``tmp_path/<unique>.py`` under that module name, then forgotten."""
    name = f"usernet_{abs(hash(str(tmp_path)))}"
    file = tmp_path / f"{name}.py"
    file.write_text(NET_SOURCE)
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    try:
        yield module.Net, file, name
    finally:
        sys.modules.pop(name, None)


@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_user_class_is_refused_then_loaded_with_model_def_or_trust(
    tmp_path: Path, user_net: tuple[type, Path, str], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    net_cls, file, name = user_net
    torch.manual_seed(3)
    net = net_cls()
    path = save(net, tmp_path / "net.pt", fmt)
    del sys.modules[name]  # as in a fresh process: the class is only in the file
    with pytest.raises(UnsafePickleError) as info:
        load_torch_file(path)
    message = str(info.value)
    for fragment in (str(path), f"{name}.Net", "Nothing it names", "--model-def", "--trust-pickle"):
        assert fragment in message
    assert name not in sys.modules  # refused without importing

    x = torch.randn(5, 4)
    loaded = load_torch_file(path, model_def=f"{file}:Net")
    assert type(loaded).__name__ == "Net" and not loaded.training
    assert torch.equal(loaded(x), net(x))

    monkeypatch.syspath_prepend(str(tmp_path))
    trusted = load_torch_file(path, trust_pickle=True)
    assert type(trusted).__module__ == name and torch.equal(trusted(x), net(x))


def test_main_class_resolves_to_model_def(
    tmp_path: Path, user_net: tuple[type, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    net_cls, file, _ = user_net
    monkeypatch.setattr(net_cls, "__module__", "__main__")  # as if defined in the user's script
    monkeypatch.setattr(sys.modules["__main__"], "Net", net_cls, raising=False)
    net = net_cls()
    path = save(net, tmp_path / "net.pt")
    monkeypatch.delattr(sys.modules["__main__"], "Net")
    with pytest.raises(UnsafePickleError, match=r"__main__\.Net"):
        load_torch_file(path)
    loaded = load_torch_file(path, model_def=f"{file}:Net")
    x = torch.randn(2, 4)
    assert type(loaded) is not net_cls and torch.equal(loaded(x), net(x))


# --------------------------------------------------------------------------- state dicts
def test_state_dict_loads_with_model_def(tmp_path: Path, user_net: tuple[type, Path, str]) -> None:
    net_cls, file, _ = user_net
    net = net_cls()
    path = save(net.state_dict(), tmp_path / "sd.pt")
    loaded = load_torch_file(path, model_def=f"{file}:Net")
    x = torch.randn(3, 4)
    assert type(loaded).__name__ == "Net" and not loaded.training
    assert torch.equal(loaded(x), net(x))
    with pytest.raises(FrontendError, match="--model-def") as info:
        load_torch_file(path)
    assert "state dict" in str(info.value) and str(path) in str(info.value)


def test_mismatched_state_dict_lists_keys_and_shapes(
    tmp_path: Path, user_net: tuple[type, Path, str]
) -> None:
    net_cls, _, _ = user_net
    path = save(net_cls().state_dict(), tmp_path / "sd.pt")
    other = tmp_path / "other.py"
    other.write_text(
        "import torch\n"
        "class Wider(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.fc = torch.nn.Linear(4, 5)\n"
        "        self.head = torch.nn.Linear(5, 1)\n"
        "class Renamed(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.body = torch.nn.Linear(4, 3)\n"
        "class NeedsArgs(torch.nn.Module):\n"
        "    def __init__(self, width, depth=2):\n"
        "        super().__init__()\n"
    )
    with pytest.raises(FrontendError) as info:
        load_torch_file(path, model_def=f"{other}:Wider")
    message = str(info.value)
    assert "missing keys: head.weight, head.bias" in message
    assert "fc.weight (3, 4) in file vs (5, 4) in model" in message
    with pytest.raises(FrontendError) as info:
        load_torch_file(path, model_def=f"{other}:Renamed")
    assert "missing keys: body.weight, body.bias" in str(info.value)
    assert "unexpected keys: fc.weight, fc.bias" in str(info.value)
    with pytest.raises(FrontendError, match=r"NeedsArgs\(\) needs arguments \(width\)"):
        load_torch_file(path, model_def=f"{other}:NeedsArgs")


def test_model_def_spec_errors_name_the_spec(tmp_path: Path) -> None:
    (tmp_path / "defs_helper.py").write_text("import torch\nBase = torch.nn.Module\n")
    good = tmp_path / "defs.py"  # imports its neighbour: its directory is on sys.path meanwhile
    good.write_text(
        "from defs_helper import Base\nclass NotModule:\n    pass\nclass M(Base):\n    pass\n"
    )
    broken = tmp_path / "broken.py"
    broken.write_text("raise ValueError('boom')\n")
    text = tmp_path / "model.txt"
    text.write_text("class M: pass\n")
    cases = {
        "no_colon.py": "expected 'path/file.py:ClassName'",
        f"{tmp_path}/missing.py:Net": "is not a file",
        f"{good}:Missing": "defines no Missing (its torch.nn.Module classes: M)",
        f"{good}:NotModule": "is not a torch.nn.Module subclass",
        f"{broken}:Net": "failed: ValueError: boom",
        f"{text}:M": "is not a Python source file",
    }
    for spec, fragment in cases.items():
        with pytest.raises(FrontendError) as info:
            import_model_def(spec)
        assert spec in str(info.value) and fragment in str(info.value)
    path_before = list(sys.path)
    assert import_model_def(f"{good}:M").__name__ == "M"
    assert sys.path == path_before
    sys.modules.pop("defs_helper", None)


# --------------------------------------------------------------------------- bad files
def test_bad_files_raise_frontend_error_naming_the_file(tmp_path: Path) -> None:
    real = save(torch.nn.Linear(20, 20), tmp_path / "real.pt").read_bytes()
    legacy = save(torch.nn.Linear(20, 20), tmp_path / "legacy.pt", "legacy").read_bytes()
    noise = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
    contents = {
        "truncated.pt": real[: len(real) // 2],
        "truncated_legacy.pt": legacy[: len(legacy) // 2],
        "random.pt": bytes(noise.tolist()),
        "text.pt": b"hello, I am not a model\n",
    }
    for name, data in contents.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "dir.pt").mkdir()
    expected = dict.fromkeys(contents, "not a PyTorch file")
    expected |= {"empty.pt": "is empty", "missing.pt": "no such file", "dir.pt": "is a directory"}
    for name, fragment in expected.items():
        with pytest.raises(FrontendError) as info:
            load_torch_file(tmp_path / name)
        assert type(info.value) is FrontendError, name
        assert str(tmp_path / name) in str(info.value) and fragment in str(info.value), name
        assert "expected a .pt/.pth written by torch.save" in str(info.value)


def test_other_contents_are_described(tmp_path: Path) -> None:
    cases = {
        "tensor.pt": (torch.zeros(2, 3), "holds a tensor of shape (2, 3)"),
        "ckpt.pt": (
            {"model": torch.nn.Linear(1, 1), "epoch": 3},
            "holds a dict with keys ['model', 'epoch'] (a module under 'model'",
        ),
    }
    for name, (obj, fragment) in cases.items():
        with pytest.raises(FrontendError) as info:
            load_torch_file(save(obj, tmp_path / name))
        assert fragment in str(info.value) and "expected a whole torch.nn.Module" in str(info.value)
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    torch.jit.save(scripted, str(tmp_path / "ts.pt"))
    with pytest.raises(FrontendError, match="TorchScript"):
        load_torch_file(tmp_path / "ts.pt")
