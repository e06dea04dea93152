"""Constants of the LLVM math library: Cody–Waite splits and polynomial coefficients.

Every number here was computed by `derive_tables()` below (mpmath at 80 digits)
and pasted in; `tests/test_llvm_mathlib.py` re-derives them (marked slow) and
checks that they match bit for bit. Nothing is computed at import time.

The polynomials are minimax (Remez exchange on a dense grid, absolute error)
approximations of the *remainder* of a function after its exact leading terms,
so that the rounding of the coefficients only touches small terms:

    exp:   e^r       = 1 + r + r^2 * E(r)            |r| <= ln2/2
    log:   log(1+f)  = 2s + s z * L(z)               s = f/(2+f), z = s^2, |s| <= 3-2*sqrt(2)
                                                     (LOG1P_POLY: |s| <= 1/5, softplus's range)
    pow:   log(1+f)  = 2s + s^3 (2/3 + z * L5(z))    (same s, z; f64 only)
    tanh:  tanh(a)   = a + a z * T(z)                z = a^2, |a| <= atanh(1/2)  (f32 only)
    sin:   sin(r)    = r + r z * S(z)                z = r^2, |r| <= pi/4   (f64 only)
    cos:   cos(r)    = 1 - z/2 + z^2 * C(z)

A degree is the smallest whose minimax error, times the factor with which it
reaches the result (r^2, z/2, s^4/2 ...), stays well below an ulp; the comments
at `_FITS` give log2 of each fit's minimax error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Cody–Waite splits. A "hi" part has few enough significant bits that its
# product with the reduction's integer is exact: ln2 hi has 42 bits (f64, with
# |n| < 2^11) or 16 bits (f32, |n| < 2^8); each pi/2 part has 30 bits (|n| < 2^23).
LN2_HI = {"f64": 0.6931471805598903, "f32": 0.693145751953125}
LN2_LO = {"f64": 5.497923018708371e-14, "f32": 1.428606765330187e-06}
LOG2E = {"f64": 1.4426950408889634, "f32": 1.4426950216293335}
TWO_OVER_PI = 0.6366197723675814
PIO2_PARTS = (1.5707963276654482, -8.705515692000731e-10, -3.503434396954818e-19, -1.1351118607522202e-28)
TWO_THIRDS_HI = 0.6666666666666666
TWO_THIRDS_LO = 3.700743415417188e-17

# Coefficients, lowest degree first.
EXP_POLY = {
    "f64": (
        0.5,
        0.1666666666666667,
        0.041666666666666685,
        0.008333333333326136,
        0.0013888888888874383,
        0.00019841269874816612,
        2.4801587347375053e-05,
        2.7557255405366085e-06,
        2.7557252876733915e-07,
        2.510521483063027e-08,
        2.0921601863262524e-09,
    ),
    "f32": (
        0.5,
        0.1666666716337204,
        0.04166646674275398,
        0.00833328627049923,
        0.0013933649752289057,
        0.0001990758755709976,
    ),
}
LOG_POLY = {
    "f64": (
        0.666666666666667,
        0.3999999999989845,
        0.2857142862639682,
        0.2222221107324345,
        0.18182893189086755,
        0.15331597949837977,
        0.1461786044718594,
    ),
    "f32": (0.6666668653488159, 0.39988717436790466, 0.2958214282989502),
}
LOG1P_POLY = {
    "f64": (
        0.6666666666666666,
        0.4000000000000791,
        0.2857142856729422,
        0.222222230445546,
        0.18181737972678416,
        0.15388852355240923,
        0.13210039040251215,
        0.13606311970383517,
    ),
    "f32": (0.6666666865348816, 0.4000031352043152, 0.28532540798187256, 0.2375076413154602),
}
TANH_POLY = {
    "f32": (
        -0.3333333134651184,
        0.13333123922348022,
        -0.053911060094833374,
        0.021318333223462105,
        -0.006625543348491192,
    ),
}
POW_LOG_POLY = (
    0.4,
    0.2857142857142536,
    0.22222222223723967,
    0.18181817928191252,
    0.15384633480756701,
    0.1333292389672539,
    0.11751950616957517,
    0.11285444268998768,
)
SIN_POLY = (
    -0.16666666666666666,
    0.008333333333333331,
    -0.00019841269841265063,
    2.755731921933623e-06,
    -2.5052106231374854e-08,
    1.6058531442181373e-10,
    -7.586686360042779e-13,
)
COS_POLY = (
    0.041666666666666664,
    -0.0013888888888887395,
    2.480158729876429e-05,
    -2.755731727091983e-07,
    2.0876146085856966e-09,
    -1.1382618477267332e-11,
)

# (constant, remainder it fits (see _remainders), interval of the variable, degree per format)
_FITS: list[tuple[str, str, tuple[float, float], dict[str, int]]] = [
    ("EXP_POLY", "exp", (-0.3466, 0.3466), {"f64": 10, "f32": 5}),  # error 2^-59.3, 2^-29.5
    ("LOG_POLY", "log", (0.0, 0.02944), {"f64": 6, "f32": 2}),  # 2^-51.5, 2^-22.4
    ("LOG1P_POLY", "log", (0.0, 0.04), {"f64": 7, "f32": 3}),  # 2^-54.6, 2^-25.1
    ("POW_LOG_POLY", "log5", (0.0, 0.02944), {"f64": 7}),  # 2^-58.9
    ("TANH_POLY", "tanh", (0.0, 0.3018), {"f32": 4}),  # 2^-26.3
    ("SIN_POLY", "sin", (0.0, 0.6170), {"f64": 6}),  # 2^-66.2
    ("COS_POLY", "cos", (0.0, 0.6170), {"f64": 5}),  # 2^-59.4
]


def _remainders(mp: Any) -> dict[str, Callable[[Any], Any]]:
    """The functions the polynomials fit, each finite and smooth at 0 (series there)."""

    def guard(fn: Callable[[Any], Any], series: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return lambda t: series(t) if abs(t) < mp.mpf(10) ** -25 else fn(t)

    third = mp.mpf(1) / 3
    return {
        "exp": guard(lambda r: (mp.expm1(r) - r) / r**2, lambda r: 0.5 + r / 6 + r * r / 24),
        "log": guard(
            lambda z: (2 * mp.atanh(mp.sqrt(z)) / mp.sqrt(z) - 2) / z, lambda z: 2 * third + 0.4 * z
        ),
        "log5": guard(
            lambda z: (2 * mp.atanh(mp.sqrt(z)) / mp.sqrt(z) - 2 - 2 * third * z) / z**2,
            lambda z: 0.4 + 2 * z / 7,
        ),
        "tanh": guard(lambda z: (mp.tanh(mp.sqrt(z)) / mp.sqrt(z) - 1) / z, lambda z: -third + 2 * z / 15),
        "sin": guard(lambda z: (mp.sin(mp.sqrt(z)) / mp.sqrt(z) - 1) / z, lambda z: -1 / mp.mpf(6) + z / 120),
        "cos": guard(lambda z: (mp.cos(mp.sqrt(z)) - 1 + z / 2) / z**2, lambda z: 1 / mp.mpf(24) - z / 720),
    }


def _remez(mp: Any, fn: Callable[[Any], Any], lo: float, hi: float, degree: int) -> list[Any]:
    """Minimax polynomial (absolute error) of `fn` on [lo, hi], by Remez exchange on a grid."""
    a, b, n = mp.mpf(lo), mp.mpf(hi), degree + 2
    ref = [(a + b) / 2 - (b - a) / 2 * mp.cos(mp.pi * i / (n - 1)) for i in range(n)]
    grid = [a + (b - a) * i / 800 for i in range(801)]
    values = [fn(t) for t in grid]
    coeffs: list[Any] = []
    for _ in range(12):
        # Solve p(t_i) + (-1)^i E = f(t_i) on the reference, then move the reference to the
        # extrema of the new error curve (one per run of equal sign).
        system = mp.matrix([[t**j for j in range(degree + 1)] + [(-1) ** i] for i, t in enumerate(ref)])
        solution = mp.lu_solve(system, mp.matrix([fn(t) for t in ref]))
        coeffs = [solution[j] for j in range(degree + 1)]
        err = [mp.polyval(coeffs[::-1], t) - v for t, v in zip(grid, values, strict=True)]
        runs: list[list[int]] = [[0]]
        for i in range(1, len(err)):
            if mp.sign(err[i]) == mp.sign(err[runs[-1][0]]):
                runs[-1].append(i)
            else:
                runs.append([i])
        peaks = [max(run, key=lambda i: abs(err[i])) for run in runs]
        while len(peaks) > n:
            peaks.pop(0 if abs(err[peaks[0]]) < abs(err[peaks[-1]]) else -1)
        if len(peaks) < n or [grid[i] for i in peaks] == ref:
            break
        ref = [grid[i] for i in peaks]
    return coeffs


def _round_bits(mp: Any, value: Any, bits: int) -> Any:
    """`value` rounded to `bits` significant bits."""
    scale = mp.mpf(2) ** (bits - 1 - int(mp.floor(mp.log(abs(value), 2))))
    return mp.nint(value * scale) / scale


def _to_format(value: Any, fmt: str) -> float:
    import numpy as np

    return float(np.float32(float(value))) if fmt == "f32" else float(value)


def derive_tables() -> dict[str, Any]:
    """Recompute every constant of this module (development time only: imports mpmath, takes seconds).

    Returns:
        A dict from the module-level constant names to the values they should hold.
    """
    import mpmath as mp

    with mp.workdps(80):
        return _derive(mp)


def _derive(mp: Any) -> dict[str, Any]:
    ln2, pio2 = mp.log(2), mp.pi / 2
    ln2_hi = {"f64": _round_bits(mp, ln2, 42), "f32": _round_bits(mp, ln2, 16)}
    parts, rest = [], pio2
    for bits in (30, 30, 30, 53):
        parts.append(_round_bits(mp, rest, bits))
        rest -= parts[-1]
    tables: dict[str, Any] = {
        "LN2_HI": {f: float(ln2_hi[f]) for f in ("f64", "f32")},
        "LN2_LO": {f: _to_format(ln2 - ln2_hi[f], f) for f in ("f64", "f32")},
        "LOG2E": {f: _to_format(1 / ln2, f) for f in ("f64", "f32")},
        "TWO_OVER_PI": float(1 / pio2),
        "PIO2_PARTS": tuple(float(p) for p in parts),
        "TWO_THIRDS_HI": float(mp.mpf(2) / 3),
        "TWO_THIRDS_LO": float(mp.mpf(2) / 3 - float(mp.mpf(2) / 3)),
    }
    remainders = _remainders(mp)
    for name, fn, (lo, hi), degrees in _FITS:
        fitted = {
            f: tuple(_to_format(c, f) for c in _remez(mp, remainders[fn], lo, hi, d))
            for f, d in degrees.items()
        }
        tables[name] = fitted["f64"] if list(fitted) == ["f64"] else fitted
    return tables
