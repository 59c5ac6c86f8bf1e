"""Checks that turn a digit run into a payment card number (IIN prefix, length, Luhn).

Luhn alone accepts one random digit string in ten (timestamps, ids, line counts), so a number
must also start with an issuer prefix whose scheme issues that length. Ranges from ISO/IEC 7812
as listed in en.wikipedia.org/wiki/Payment_card_number; numbers starting with 0, 1, 7, 8 or 9
(epoch timestamps start with 1) are never cards here.
"""

from __future__ import annotations

# (first, last) prefixes compared on the same number of leading digits, and allowed lengths.
_IIN_RANGES: tuple[tuple[int, int, frozenset[int]], ...] = (
    (4, 4, frozenset({13, 16, 19})),  # Visa
    (51, 55, frozenset({16})),  # Mastercard
    (2221, 2720, frozenset({16})),  # Mastercard 2-series
    (2200, 2204, frozenset({16, 17, 18, 19})),  # Mir
    (34, 34, frozenset({15})),  # American Express
    (37, 37, frozenset({15})),
    (36, 36, frozenset({14, 15, 16, 17, 18, 19})),  # Diners Club International
    (300, 305, frozenset({14, 15, 16, 17, 18, 19})),
    (3095, 3095, frozenset({14, 15, 16, 17, 18, 19})),
    (38, 39, frozenset({14, 15, 16, 17, 18, 19})),
    (3528, 3589, frozenset({16, 17, 18, 19})),  # JCB
    (6011, 6011, frozenset({16, 17, 18, 19})),  # Discover
    (644, 649, frozenset({16, 17, 18, 19})),
    (65, 65, frozenset({16, 17, 18, 19})),
    (62, 62, frozenset({16, 17, 18, 19})),  # UnionPay
    (60, 60, frozenset({16})),  # RuPay
    (50, 50, frozenset({13, 14, 15, 16, 17, 18, 19})),  # Maestro
    (56, 58, frozenset({13, 14, 15, 16, 17, 18, 19})),
    (63, 63, frozenset({13, 14, 15, 16, 17, 18, 19})),
    (67, 67, frozenset({13, 14, 15, 16, 17, 18, 19})),
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def issuer_ok(digits: str) -> bool:
    n = len(digits)
    for low, high, lengths in _IIN_RANGES:
        width = len(str(low))
        if n in lengths and low <= int(digits[:width]) <= high:
            return True
    return False


def card_number_ok(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and issuer_ok(digits) and luhn_ok(digits)
