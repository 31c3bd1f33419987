"""snnc: a compiler for trained spiking neural networks."""

__version__ = "0.1.0"
