"""The LLVM backend's scalar math library: exp, log, tanh, sin ... as vectorizable IR, no libm.

- :mod:`.builder`: ``MathBuilder``, scalar IR arithmetic in one float format;
- :mod:`.functions`: the functions (``math_function`` defines one in a module);
- :mod:`.precise`: expm1, pow, sin and cos, in double-double where they need it;
- :mod:`.constants`: their polynomial coefficients and tables, with their derivation.
"""

from dlc.backends.llvm.mathlib.functions import FUNCTIONS, math_function

__all__ = ["FUNCTIONS", "math_function"]
