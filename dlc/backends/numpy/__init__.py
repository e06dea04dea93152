"""The NumPy backend: a program becomes the source of a standalone, readable module."""

from dlc.backends.numpy.module import write_module

__all__ = ["write_module"]
