"""snnc: a compiler for trained spiking neural networks.

``snnc.load(model)`` lowers a model (NIR file or graph, torch/snnTorch module or ``.pt``) into
the IR; ``snnc.simulate(model, x)`` runs it on time-major input ``(T, B, *shape)``.
"""

__version__ = "0.1.0"


def load(model, **kw):
    """See :func:`snnc.api.load`."""
    from snnc.api import load as _load

    return _load(model, **kw)


def simulate(model, x, **kw):
    """See :func:`snnc.api.simulate`."""
    from snnc.api import simulate as _simulate

    return _simulate(model, x, **kw)


__all__ = ["load", "simulate", "__version__"]
