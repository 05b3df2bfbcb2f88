"""Human formats for the report's numbers: a reader sees "97.81% [97.51, 98.11]", "1.96 s" or
"26,690", never "2.669e+04" or a bare 0.5927."""

from __future__ import annotations

import math


def _finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def number(x, digits: int = 3) -> str:
    """A plain number: thousands separated, about `digits` significant digits, no exponent."""
    if not _finite(x):
        return "" if x is None or x != x else str(x)  # NaN: blank; inf: "inf"
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 10 ** (digits - 1):
        return f"{x:,.0f}"
    decimals = digits - 1 - math.floor(math.log10(abs(x)))
    return f"{x:,.{max(decimals, 0)}f}"


def percent(x: float, low: float = math.nan, high: float = math.nan) -> str:
    """An accuracy (fraction) as "97.81%", with its interval "[97.51, 98.11]" if finite."""
    if not _finite(x):
        return ""
    text = f"{100 * x:.2f}%"
    return text + (f" [{100 * low:.2f}, {100 * high:.2f}]" if _finite(low) else "")


def seconds(x: float, low: float = math.nan, high: float = math.nan) -> str:
    """A duration as "1.96 s", with its interval "[1.29, 2.62]" if finite."""
    if not _finite(x):
        return ""
    text = f"{number(x)} s"
    return text + (f" [{number(low)}, {number(high)}]" if _finite(low) else "")


def p_value(p: float) -> str:
    """A p-value without exponents: "< 0.001" below that."""
    if not _finite(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def cell(value) -> str:
    """Any table cell: floats without exponents, NaN blank, the rest as text."""
    if isinstance(value, float):
        return number(value, 4)
    return str(value)
