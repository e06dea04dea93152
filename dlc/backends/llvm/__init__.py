"""The LLVM backend: a program becomes LLVM IR, and a Python module that runs it as native code."""

from dlc.backends.llvm.module import write_module

__all__ = ["write_module"]
