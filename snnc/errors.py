"""The one family of errors snnc raises on bad input.

Every message says where (file, layer, node and where it came from), what was found, what was
expected and what to do. The command line prints ``str(error)`` and exits with status 1.
"""

from __future__ import annotations


class SnncError(Exception):
    """Base of every error a user can act on."""


class FrontendError(SnncError):
    """A model file or in-memory model cannot be loaded or honoured."""


class UnsafePickleError(FrontendError):
    """A ``.pt`` file would run code that is not allowed when unpickled."""


class IRError(SnncError):
    """An IR node or graph breaks an invariant."""


class ParseError(IRError):
    """IR text or a serialised graph cannot be read back."""


class PassError(SnncError):
    """A compiler pass failed or its preconditions do not hold."""


class BackendError(SnncError):
    """A backend cannot emit what was asked for."""


class ResourceError(SnncError):
    """The network does not fit the target."""


class SimulationError(SnncError):
    """A simulator was given input it cannot run."""
