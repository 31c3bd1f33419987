"""The Loihi backend: per-core configurations (``config``), number formats (``formats``), the
lowering of a compiled graph (``lower``; one population in ``layer``, per-core limits in
``limits``), lava-dl netx export (``netx``), the build's summary (``report``) and the engines
that run a build (``engine``)."""

from snnc.backends.loihi.config import LoihiConfig, read, write
from snnc.backends.loihi.lower import Lowering, lower, violations

__all__ = ["LoihiConfig", "Lowering", "lower", "read", "violations", "write"]
