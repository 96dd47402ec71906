"""``java.util.Random`` in pure Python, bit for bit, and the fdlibm ``log`` it depends on.

This module owns the exact reproduction of the JDK's pseudo-random numbers the taxi data is made
from: the 48-bit linear congruential generator (:class:`JavaRandom`: seed scrambling,
``next(bits)``, ``nextInt``, ``nextDouble``, ``nextGaussian`` with its cached second value and
``Collections.shuffle``), plus :func:`fdlibm_log`. ``nextGaussian`` calls ``StrictMath.log``,
which is fdlibm's algorithm; the C library's ``log`` behind :func:`math.log` is more accurate and
therefore differs from it in the last bit for several percent of inputs, so it cannot be used.
``StrictMath.sqrt`` is correctly rounded, like :func:`math.sqrt`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import MutableSequence
from typing import TypeVar

__all__ = ["MULTIPLIER", "ADDEND", "MASK", "JavaRandom", "fdlibm_log", "scramble"]

T = TypeVar("T")

#: The LCG's multiplier, addend and 48-bit state mask.
MULTIPLIER = 0x5DEECE66D
ADDEND = 0xB
MASK = (1 << 48) - 1
_DOUBLE_UNIT = 2.0**-53
_INT_MAX = (1 << 31) - 1


def scramble(seed: int) -> int:
    """The initial 48-bit state ``new Random(seed)`` starts from (any Python int is a ``long``)."""
    return (seed ^ MULTIPLIER) & MASK


class JavaRandom:
    """A ``java.util.Random``: the same seed gives the same numbers as the JDK."""

    __slots__ = ("_gaussian", "_state")

    def __init__(self, seed: int) -> None:
        self._state = scramble(seed)
        self._gaussian: float | None = None

    def set_seed(self, seed: int) -> None:
        """Like ``setSeed``: restart from ``seed`` and forget a cached Gaussian."""
        self._state = scramble(seed)
        self._gaussian = None

    def next(self, bits: int) -> int:
        """``next(bits)`` for ``1 <= bits <= 32``: the top ``bits`` bits, as a signed 32-bit int."""
        self._state = state = (self._state * MULTIPLIER + ADDEND) & MASK
        value = state >> (48 - bits)
        return value - (1 << 32) if value > _INT_MAX else value

    def next_int(self, bound: int | None = None) -> int:
        """``nextInt()`` (any 32-bit int) or ``nextInt(bound)`` (uniform in ``[0, bound)``)."""
        if bound is None:
            return self.next(32)
        if not 0 < bound <= _INT_MAX:
            raise ValueError(f"bound must be in 1..{_INT_MAX}, got {bound}")
        bits = self.next(31)
        if bound & (bound - 1) == 0:
            return (bound * bits) >> 31
        value = bits % bound
        # Redraw while the last, incomplete block of the range was hit (Java detects the overflow
        # of ``bits - value + bound - 1`` past Integer.MAX_VALUE).
        while bits - value + bound - 1 > _INT_MAX:
            bits = self.next(31)
            value = bits % bound
        return value

    def next_double(self) -> float:
        """``nextDouble()``: uniform in ``[0, 1)`` with 53 random bits."""
        return ((self.next(26) << 27) + self.next(27)) * _DOUBLE_UNIT

    def next_gaussian(self) -> float:
        """``nextGaussian()``: the polar method; every second call returns the cached value."""
        cached = self._gaussian
        if cached is not None:
            self._gaussian = None
            return cached
        while True:
            v1 = 2.0 * self.next_double() - 1.0
            v2 = 2.0 * self.next_double() - 1.0
            s = v1 * v1 + v2 * v2
            if 0.0 < s < 1.0:
                break
        multiplier = math.sqrt(-2.0 * fdlibm_log(s) / s)
        self._gaussian = v2 * multiplier
        return v1 * multiplier

    def shuffle(self, items: MutableSequence[T]) -> None:
        """``Collections.shuffle(items, this)``, in place."""
        for i in range(len(items), 1, -1):
            j = self.next_int(i)
            items[i - 1], items[j] = items[j], items[i - 1]


# -- fdlibm's log (what StrictMath.log computes) ------------------------------------------------

_DOUBLE = struct.Struct("<d")
_BITS = struct.Struct("<Q")


def _from_bits(bits: int) -> float:
    return float(_DOUBLE.unpack(_BITS.pack(bits))[0])


_LN2_HI = _from_bits(0x3FE62E42FEE00000)
_LN2_LO = _from_bits(0x3DEA39EF35793C76)
_LG1 = _from_bits(0x3FE5555555555593)
_LG2 = _from_bits(0x3FD999999997FA04)
_LG3 = _from_bits(0x3FD2492494229359)
_LG4 = _from_bits(0x3FCC71C51D8E78AF)
_LG5 = _from_bits(0x3FC7466496CB03DE)
_LG6 = _from_bits(0x3FC39A09D078C69F)
_LG7 = _from_bits(0x3FC2F112DF3E5244)
_THIRD = 0.33333333333333333


def fdlibm_log(x: float) -> float:
    """The natural logarithm exactly as fdlibm (and so Java's ``StrictMath.log``) rounds it.

    ``x`` is reduced to ``2**k * (1 + f)`` with ``1 + f`` in about ``[sqrt(2)/2, sqrt(2))``, and
    ``log(1 + f)`` comes from ``s = f / (2 + f)`` and a degree-14 minimax polynomial in ``s``.
    """
    if not x > 0.0:
        if x == 0.0:
            return -math.inf
        return math.nan  # negative or NaN
    if x == math.inf:
        return x
    # x = m * 2**e with m in [0.5, 1); hx = the top 20 fraction bits of 2m (fdlibm's high word)
    m, e = math.frexp(x)
    hx = int(m * 0x200000) - 0x100000
    if hx >= 0x6A09C:  # 2m above about sqrt(2): reduce to m, in [0.5, 1)
        x = m
        k = e
    else:  # reduce to 2m, in [1, 2)
        x = 2.0 * m
        k = e - 1
    f = x - 1.0
    if (0x000FFFFF & (2 + hx)) < 3:  # |f| < 2**-20
        if f == 0.0:
            if k == 0:
                return 0.0
            dk = float(k)
            return dk * _LN2_HI + dk * _LN2_LO
        r = f * f * (0.5 - _THIRD * f)
        if k == 0:
            return f - r
        dk = float(k)
        return dk * _LN2_HI - ((r - dk * _LN2_LO) - f)
    s = f / (2.0 + f)
    dk = float(k)
    z = s * s
    i = hx - 0x6147A
    w = z * z
    j = 0x6B851 - hx
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    i |= j
    r = t2 + t1
    if i > 0:
        hfsq = 0.5 * f * f
        if k == 0:
            return f - (hfsq - s * (hfsq + r))
        return dk * _LN2_HI - ((hfsq - (s * (hfsq + r) + dk * _LN2_LO)) - f)
    if k == 0:
        return f - s * (f - r)
    return dk * _LN2_HI - ((s * (f - r) - dk * _LN2_LO) - f)
