"""What a comparison may promise when the two sides ran on different compute kernels, or went through text.

The suite runs on CPUs with AVX-512 (BF16) and on AVX2-only CPUs: the same float computation then differs in
its last bits (other vector widths, other convolution algorithms, channels_last or not, folded BatchNorm), and a
value that is rounded afterwards (8-bit pixels, whole HU) flips by one step where it lay next to a rounding edge.
Numbers read back from CSV or markdown carry only the digits they were written with.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np


def assert_rounded_close(got, expected, *, step: float = 1.0, max_fraction: float = 0.01, what: str = "values") -> None:
    """``got`` and ``expected`` are the same float result rounded to multiples of ``step`` (8-bit levels, whole
    HU) after computations on different kernels: they may differ by one step, in at most ``max_fraction`` of
    the elements. A wrong window, wrong weights or a missing step moves far more elements or by more."""
    got = np.asarray(got, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, (got.shape, expected.shape)
    diff = np.abs(got - expected)
    worst = float(diff.max()) if diff.size else 0.0
    assert worst <= step * (1 + 1e-6), f"{what}: differ by up to {worst} (one rounding step is {step})"
    fraction = float((diff > step * 1e-6).mean()) if diff.size else 0.0
    assert fraction <= max_fraction, f"{what}: {fraction:.2%} differ by one step (at most {max_fraction:.2%} may)"


def text_tolerance(text: str) -> float:
    """Half a unit of the last digit ``text`` was written with: ``"0.389991"`` -> 5e-7, ``"1.5e-03"`` -> 5e-5."""
    exponent = Decimal(text.strip()).as_tuple().exponent
    assert isinstance(exponent, int), text
    return 0.5 * 10.0**exponent


def assert_text_matches(text: str, value: float, *, slack: float = 0.0, what: str = "value") -> None:
    """The number written as ``text`` is ``value`` rounded to the digits it shows (plus ``slack`` for a value
    recomputed on other kernels)."""
    tol = text_tolerance(text) * (1 + 1e-9) + abs(value) * 1e-12 + slack
    assert abs(float(text) - value) <= tol, f"{what}: {text} written, {value!r} recomputed (tolerance {tol:.3g})"
