"""Load ``.pt``/``.pth`` files without letting them run code.

``torch.save(model)`` pickles, and unpickling can call any function the file names. By default
snnc unpickles with a restricted ``find_class``: classes of torch and of the supported SNN
frameworks load; any other global becomes an inert placeholder that raises
:class:`~snnc.errors.UnsafePickleError` if the pickle calls it. State dicts go through torch's own
``weights_only`` loader. ``trust_pickle=True`` is plain ``torch.load``.
"""

from __future__ import annotations

import _compat_pickle
import enum
import hashlib
import importlib
import importlib.util
import inspect
import os
import pickle
import re
import sys
import types
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from snnc.errors import FrontendError, SnncError, UnsafePickleError

_FRAMEWORKS = ("torch", "snntorch", "norse", "spikingjelly", "sinabs", "rockpool")
ALLOWED_MODULE_PREFIXES: tuple[str, ...] = tuple(p for f in _FRAMEWORKS for p in (f, f + "."))
"""Modules whose classes may be unpickled: entries ending in "." are prefixes, others exact."""

# Classes of torch itself are narrowed further: torch.fx, torch.jit, torch._dynamo and friends
# hold nn.Module subclasses whose constructors or methods generate code or write files.
_TORCH_CLASS_MODULES = ("torch", "torch._tensor", "torch.storage", "torch.nn.", "torch.ao.nn.")
# fmt: off
_SAFE_TYPES = (torch.nn.Module, torch.Tensor, torch.autograd.Function, torch.Size, torch.dtype,
               torch.device, torch.layout, torch.memory_format, torch.storage.TypedStorage,
               torch.UntypedStorage)
# fmt: on
# What torch.save output calls to rebuild tensors, parameters, sets and bytes: the core of
# torch's own weights_only allowlist. builtins.getattr is handled apart (_deferred_getattr).
_ALLOWED_CALLABLES = frozenset(
    tuple(qualified.rsplit(".", 1))
    for qualified in """
        torch._utils._rebuild_tensor torch._utils._rebuild_tensor_v2 torch._utils._rebuild_tensor_v3
        torch._utils._rebuild_parameter torch._utils._rebuild_parameter_with_state
        torch._tensor._rebuild_from_type_v2 torch.serialization._get_layout
        collections.OrderedDict builtins.set builtins.frozenset builtins.complex _codecs.encode
    """.split()
)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_EXPECTED = "expected a .pt/.pth written by torch.save"


def _matches(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module.startswith(p) if p.endswith(".") else module == p for p in prefixes)


def _is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def _is_allowed_class(obj: Any) -> bool:
    """Whether ``obj`` is a class of an allowed framework that is safe to rebuild."""
    module = getattr(obj, "__module__", None)
    if not isinstance(obj, type) or not isinstance(module, str):
        return False
    if not _matches(module, ALLOWED_MODULE_PREFIXES):
        return False
    if module.split(".")[0] == "torch":
        return _matches(module, _TORCH_CLASS_MODULES) and issubclass(obj, _SAFE_TYPES)
    # Norse keeps neuron parameters in NamedTuples; their constructors only build a tuple.
    namedtuple = issubclass(obj, tuple) and hasattr(obj, "_fields")
    return issubclass(obj, (*_SAFE_TYPES, enum.Enum)) or namedtuple


def _hint(name: str) -> str:
    # Only a class-like name can be the user's own model class.
    model_def = (
        f"If it is your own model class, pass --model-def path/to/file.py:{name} to load the "
        "class from your source file. "
        if name[:1].isupper()
        else ""
    )
    return (
        "snnc unpickles only classes of torch and of the supported SNN frameworks "
        f"({', '.join(_FRAMEWORKS)}). Nothing it names was imported or run. {model_def}If you "
        "trust this file, pass --trust-pickle (plain torch.load: it runs whatever code the file "
        "carries)."
    )


class _RefusedMeta(type):
    """Metaclass of placeholders: calling one (REDUCE, INST, OBJ) raises instead of running."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError(cls._snnc_message)

    def __setattr__(cls, name: str, value: Any) -> None:
        # BUILD could otherwise plant a __new__ that NEWOBJ would then call.
        raise UnsafePickleError(cls._snnc_message)

    __delattr__ = __setattr__  # type: ignore[assignment]


def _refuse_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    # NEWOBJ calls cls.__new__(cls) directly, bypassing the metaclass __call__.
    raise UnsafePickleError(cls._snnc_message)  # type: ignore[attr-defined]


def _placeholder(file: str, what: str, name: str, attr: tuple[Any, Any] | None = None) -> type:
    """Stand-in for a refused global; ``attr`` records a deferred ``getattr(obj, name)``."""
    message = f"{file}: refused to unpickle {what}: {_hint(name)}"
    body = dict(
        __new__=_refuse_new,
        __slots__=(),
        _snnc_what=what,
        _snnc_name=name,
        _snnc_message=message,
        _snnc_attr=attr,
    )
    return _RefusedMeta("RefusedGlobal", (), body)


def _is_placeholder(obj: Any) -> bool:
    return isinstance(obj, _RefusedMeta)


class _Resolver:
    """The restricted ``find_class`` for one file, and the model-def classes it may use."""

    def __init__(self, file: str, model_classes: Mapping[str, type]) -> None:
        self.file, self.model_classes = file, model_classes

    def find_class(self, module: str, name: str) -> Any:
        # Protocol 2 (torch.save's default) spells builtins as Python 2's __builtin__.
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) == ("builtins", "getattr"):
            return self._deferred_getattr
        if (module, name) in _ALLOWED_CALLABLES and module in sys.modules:  # loaded by torch
            obj = vars(sys.modules[module]).get(name)
            if obj is not None:
                return obj
        if not _matches(module, ALLOWED_MODULE_PREFIXES) and name in self.model_classes:
            return self.model_classes[name]
        obj = self._lookup(module, name) if _IDENT.match(name) else None  # dots: attribute paths
        torch_values = (torch.dtype, torch.layout, torch.memory_format)  # e.g. torch.float32
        if _is_allowed_class(obj) or (module == "torch" and isinstance(obj, torch_values)):
            return obj
        return _placeholder(self.file, f"{module}.{name}", name)

    def _lookup(self, module: str, name: str) -> Any:
        """Find ``module.name`` importing nothing outside the allowed frameworks."""
        parts = module.split(".")
        if not _matches(module, ALLOWED_MODULE_PREFIXES) or not all(
            _IDENT.match(p) and not _is_dunder(p) for p in parts
        ):
            return None
        if module not in sys.modules:
            if parts[0] == "torch" and not _matches(module, _TORCH_CLASS_MODULES):
                return None
            # find_spec of a top-level name searches the path and imports nothing.
            if parts[0] not in sys.modules and importlib.util.find_spec(parts[0]) is None:
                raise FrontendError(
                    f"{self.file}: needs {module}.{name}, but {parts[0]} is not "
                    "installed; install it to load this file"
                )
            try:
                importlib.import_module(module)
            except ImportError:
                return None  # no such submodule: refused like any unknown global
            except Exception as exc:  # a broken framework install
                raise FrontendError(
                    f"{self.file}: importing {module} failed: {_reason(exc)}"
                ) from exc
        # The module's __dict__, not getattr: a module __getattr__ may import lazily.
        return getattr(sys.modules.get(module), "__dict__", {}).get(name)

    def _deferred_getattr(self, obj: Any, name: Any, *default: Any) -> type:
        # Resolved only after loading (_resolve_attr), so the pickle can never call the result.
        if _is_placeholder(obj):
            inner = obj._snnc_what
        elif isinstance(obj, type):
            inner = f"{obj.__module__}.{obj.__qualname__}"
        else:
            inner = f"<{type(obj).__name__}>"
        return _placeholder(self.file, f"getattr({inner}, {name!r})", str(name), (obj, name))

    def pickle_module(self) -> types.SimpleNamespace:
        """A stand-in for the ``pickle`` module as ``torch.load(pickle_module=...)`` uses it."""
        resolver = self

        class Unpickler(pickle.Unpickler):  # torch.load subclasses this, calls super().find_class
            def find_class(self, module: str, name: str) -> Any:
                return resolver.find_class(module, name)

        def load(file: Any, **kwargs: Any) -> Any:  # the legacy format calls pickle_module.load
            return Unpickler(file, **kwargs).load()

        return types.SimpleNamespace(
            __name__=f"{__name__}.restricted", Unpickler=Unpickler, load=load
        )


def _resolve_attr(attr: tuple[Any, Any], owner: Any, model_mod: str | None) -> Any:
    """Value of a deferred ``getattr(obj, name)`` if it is harmless, else None."""
    obj, name = attr
    if not isinstance(name, str) or not _IDENT.match(name) or _is_dunder(name):
        return None
    if _is_placeholder(obj):  # a chain, e.g. Outer.Inner.apply pickled with protocol 2
        obj = _resolve_attr(obj._snnc_attr, None, model_mod) if obj._snnc_attr else None
    if obj is None:
        return None
    static = inspect.getattr_static(obj if isinstance(obj, type) else type(obj), name, None)
    if obj is owner and isinstance(static, types.FunctionType):
        # The module's own method, e.g. snnTorch's ``state_function = self._base_sub``. Bound
        # from the class: the instance __dict__ (the pickle's data) must not shadow it.
        if _matches(static.__module__ or "", ALLOWED_MODULE_PREFIXES) or (
            static.__module__ == model_mod
        ):
            return types.MethodType(static, owner)
    if isinstance(obj, type) and (_is_allowed_class(obj) or obj.__module__ == model_mod):
        if _is_allowed_class(static):  # a nested class
            return static
        if name == "apply" and issubclass(obj, torch.autograd.Function):  # spike_grad=Fn.apply
            return getattr(obj, name)
    return None


def _resolve(value: Any, owner: torch.nn.Module, key: str, model_mod: str | None) -> Any:
    resolved = _resolve_attr(value._snnc_attr, owner, model_mod) if value._snnc_attr else None
    if resolved is not None:
        return resolved
    snntorch_neuron = any(c.__module__.split(".")[0] == "snntorch" for c in type(owner).__mro__)
    if key == "spike_grad" and snntorch_neuron:
        # Often a user's function in __main__. Every snnTorch surrogate computes (x > 0) forward;
        # the surrogate only shapes gradients, which inference never uses.
        import snntorch.surrogate

        return snntorch.surrogate.atan()
    return value  # left in place: the walk refuses it, naming the attribute


def _fix_and_check(model: torch.nn.Module, file: str, model_mod: str | None) -> None:
    """Resolve deferred attributes, replace lost surrogates, refuse any other placeholder."""
    seen: set[int] = set()
    stack: list[tuple[Any, str]] = [(model, "model")]  # not recursive: pickles nest deeply
    while stack:
        obj, where = stack.pop()
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, type(None))):
            continue
        seen.add(id(obj))
        if _is_placeholder(obj):
            raise UnsafePickleError(
                f"{file}: {where} refers to {obj._snnc_what}, which snnc does not load: "
                f"{_hint(obj._snnc_name)}"
            )
        if isinstance(obj, (type, types.FunctionType, types.MethodType, types.BuiltinMethodType)):
            continue
        items: list[tuple[str, Any]] = []
        if isinstance(obj, torch.nn.Module):
            state = vars(obj)
            for key, value in list(state.items()):
                if _is_placeholder(value):
                    state[key] = _resolve(value, obj, key, model_mod)
                if key in ("_modules", "_parameters", "_buffers") and isinstance(value, dict):
                    items += [(f"{where}.{k}", v) for k, v in value.items()]  # model.0.weight
                else:
                    items.append((f"{where}.{key}", state[key]))
        elif isinstance(obj, Mapping):
            items = [(f"{where}[{k!r}]", v) for k, v in obj.items()] + [(where, k) for k in obj]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            items = [(f"{where}[{i}]", v) for i, v in enumerate(obj)]
        else:  # tensors (python attributes), allowed framework objects
            items = [(f"{where}.{k}", v) for k, v in getattr(obj, "__dict__", {}).items()]
        stack.extend(reversed([(v, w) for w, v in items]))


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else '(no message)'}"


def _torch_load(file: str, **kwargs: Any) -> Any:
    try:
        with warnings.catch_warnings():
            # Source-change and legacy-format warnings concern training, not what snnc loads.
            warnings.simplefilter("ignore")
            return torch.load(file, map_location="cpu", **kwargs)
    except SnncError:
        raise
    except Exception as exc:  # torch and pickle raise anything from EOFError to RuntimeError
        raise FrontendError(f"{file}: not a PyTorch file ({_EXPECTED}): {_reason(exc)}") from exc


def _check_file(file: str) -> None:
    path = Path(file)
    try:
        problem = (
            "no such file"
            if not path.exists()
            else "is a directory"
            if path.is_dir()
            else "is empty"
            if path.stat().st_size == 0
            else ""
        )
    except (OSError, ValueError) as exc:  # unreadable directory, NUL in the name
        problem = f"cannot be read: {_reason(exc)}"
    if problem:
        raise FrontendError(f"{file}: {problem} ({_EXPECTED})")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return  # not a zip (legacy format or garbage): torch.load reports it
    if any(n.count("/") == 1 and n.endswith("/constants.pkl") for n in names):
        # torch.load would hand this to torch.jit.load; snnc needs the Python module.
        raise FrontendError(
            f"{file}: is a TorchScript archive (torch.jit.save); snnc needs "
            "torch.save(model) or torch.save(model.state_dict())"
        )


def load_torch_file(
    path: str | os.PathLike[str], *, trust_pickle: bool = False, model_def: str | None = None
) -> torch.nn.Module:
    """Load a whole module, or a state dict into the class named by ``model_def``.

    Parameters
    ----------
    path
        A file written by ``torch.save`` (zip or legacy format).
    trust_pickle
        Use plain ``torch.load(weights_only=False)``, which runs any code the file carries.
    model_def
        ``'path/file.py:ClassName'``: the class a state dict is loaded into, and the class a
        pickled global of that name (e.g. ``__main__.ClassName``) resolves to.

    Returns
    -------
    torch.nn.Module
        The module, on the CPU and in eval mode.

    Raises
    ------
    UnsafePickleError
        The file names code that is not allowed; nothing it names was imported or run.
    FrontendError
        The file is missing, corrupt or holds something else, or ``model_def`` is unusable.
    """
    file = os.fspath(path)
    _check_file(file)
    model_cls = import_model_def(model_def) if model_def else None
    model_mod = model_cls.__module__ if model_cls else None
    obj: Any = _NOT_LOADED
    if trust_pickle:
        obj = _torch_load(file, weights_only=False)
    else:
        try:  # torch's own safe loader: enough for state dicts
            obj = _torch_load(file, weights_only=True)
        except FrontendError:
            pass  # a whole module, or a bad file: the restricted unpickler will tell
    if obj is _NOT_LOADED:
        classes = _module_classes(model_mod) if model_mod else {}
        if model_cls is not None and model_def is not None:
            classes[model_def.rpartition(":")[2]] = model_cls
        resolver = _Resolver(file, classes)
        obj = _torch_load(file, weights_only=False, pickle_module=resolver.pickle_module())
    try:
        return _to_module(obj, file, model_cls, model_def, trust_pickle)
    except SnncError:
        raise
    except Exception as exc:  # e.g. a module rebuilt without its state fails in .eval()
        raise FrontendError(f"{file}: the loaded object is unusable: {_reason(exc)}") from exc


def _to_module(
    obj: Any, file: str, model_cls: type | None, model_def: str | None, trust_pickle: bool
) -> torch.nn.Module:
    if isinstance(obj, torch.nn.Module):
        if not trust_pickle:
            _fix_and_check(obj, file, model_cls.__module__ if model_cls else None)
        return obj.eval()
    if isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        if model_cls is None:
            raise FrontendError(
                f"{file}: holds a state dict (weights only, no model structure); "
                "pass --model-def path/to/file.py:ClassName naming the class it "
                "was saved from"
            )
        return _load_state_dict(obj, model_cls, file, model_def or "")
    raise FrontendError(
        f"{file}: holds {_describe(obj)}; expected a whole torch.nn.Module "
        "(torch.save(model)) or a state dict (torch.save(model.state_dict()))"
    )


_NOT_LOADED = object()


def _module_classes(mod_name: str) -> dict[str, type]:
    """The nn.Module classes defined in a model-def file, by name."""
    items = vars(sys.modules[mod_name]).items()
    return {
        k: v
        for k, v in items
        if isinstance(v, type) and issubclass(v, torch.nn.Module) and v.__module__ == mod_name
    }


def _describe(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, Mapping):
        # repr only of plain keys: a half-built module's __repr__ can itself fail.
        keys = ", ".join(
            repr(k) if isinstance(k, (str, int)) else type(k).__name__ for k in list(obj)[:10]
        )
        inner = [
            repr(k)
            for k, v in obj.items()
            if isinstance(v, torch.nn.Module) and isinstance(k, (str, int))
        ][:3]
        hint = f" (a module under {', '.join(inner)}: save that module itself)" if inner else ""
        return f"a {type(obj).__name__} with keys [{keys}]{hint}"
    return "a reference to a global" if _is_placeholder(obj) else f"a {type(obj).__name__}"


def _load_state_dict(
    state: Mapping[str, torch.Tensor], cls: type, file: str, spec: str
) -> torch.nn.Module:
    try:
        params = inspect.signature(cls).parameters.values()
        required = [
            p.name
            for p in params
            if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
    except (TypeError, ValueError):
        required = []  # no introspectable signature: just try
    if required:
        raise FrontendError(
            f"--model-def {spec}: {cls.__name__}() needs arguments "
            f"({', '.join(required)}); snnc builds it with none, so give them "
            "defaults or save the whole module with torch.save(model)"
        )
    try:
        model = cls()
    except Exception as exc:  # the user's own constructor
        raise FrontendError(f"--model-def {spec}: {cls.__name__}() failed: {_reason(exc)}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # torch's message is long; say the essentials
        own = model.state_dict()
        problems = {
            "missing keys": [k for k in own if k not in state],
            "unexpected keys": [k for k in state if k not in own],
            "shape mismatches": [
                f"{k} {tuple(state[k].shape)} in file vs {tuple(v.shape)} in model"
                for k, v in own.items()
                if k in state and state[k].shape != v.shape
            ],
        }
        details = "; ".join(f"{k}: {', '.join(v)}" for k, v in problems.items() if v)
        raise FrontendError(
            f"{file}: the state dict does not fit {cls.__name__} from "
            f"--model-def {spec}: {details or _reason(exc)}"
        ) from exc
    return model.eval()


def import_model_def(spec: str) -> type:
    """Import the class named by ``'path/file.py:ClassName'``, running that file.

    The user asked for this file, so running it is intended; its directory is on ``sys.path``
    while it runs, so that it can import its neighbours.

    Parameters
    ----------
    spec
        ``'path/file.py:ClassName'``.

    Returns
    -------
    type
        The class, a subclass of ``torch.nn.Module``.

    Raises
    ------
    FrontendError
        The spec is malformed, the file is missing or fails, or the class is absent or no module.
    """
    file_part, _, cls_name = spec.rpartition(":")
    if not file_part or not _IDENT.match(cls_name):
        raise FrontendError(f"--model-def {spec!r}: expected 'path/file.py:ClassName'")
    file = Path(file_part)
    if not file.is_file():
        raise FrontendError(f"--model-def {spec!r}: {file} is not a file")
    # A unique name: two model files called model.py must not replace each other.
    digest = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:12]
    mod_name = "_snnc_model_def_" + re.sub(r"\W", "_", file.stem) + "_" + digest
    ispec = importlib.util.spec_from_file_location(mod_name, file)
    if ispec is None or ispec.loader is None:
        raise FrontendError(f"--model-def {spec!r}: {file} is not a Python source file")
    module = importlib.util.module_from_spec(ispec)
    sys.modules[mod_name] = module  # classes and dataclasses look their module up here
    directory = str(file.resolve().parent)
    sys.path.insert(0, directory)
    try:
        ispec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # the user's code; SystemExit from a stray exit()
        sys.modules.pop(mod_name, None)
        raise FrontendError(f"--model-def {spec!r}: running {file} failed: {_reason(exc)}") from exc
    finally:
        if directory in sys.path:
            sys.path.remove(directory)
    cls = vars(module).get(cls_name)
    if cls is None:
        found = ", ".join(sorted(_module_classes(mod_name))) or "none"
        raise FrontendError(
            f"--model-def {spec!r}: {file} defines no {cls_name} (its torch.nn.Module classes: "
            f"{found})"
        )
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise FrontendError(f"--model-def {spec!r}: {cls_name} is not a torch.nn.Module subclass")
    return cls
