"""Value checks: payment card numbers (IIN prefix, length, Luhn), IPv6 candidates, entropy.

Luhn alone accepts one random digit string in ten (timestamps, ids, line counts), so a number
must also start with an issuer prefix whose scheme issues that length. Ranges from ISO/IEC 7812
as listed in en.wikipedia.org/wiki/Payment_card_number; numbers starting with 0, 1, 7, 8 or 9
(epoch timestamps start with 1) are never cards here.
"""

from __future__ import annotations

import ipaddress
import math
from collections import Counter

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
    if digits[:1] not in ("2", "3", "4", "5", "6"):
        return False
    n = len(digits)
    for low, high, lengths in _IIN_RANGES:
        width = len(str(low))
        if n in lengths and low <= int(digits[:width]) <= high:
            return True
    return False


def card_number_ok(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and issuer_ok(digits) and luhn_ok(digits)


def card_shape_ok(digits: str, grouped: bool) -> bool:
    """Written cards are 16 digits in one run (15 for Amex), or grouped (4-4-4-4, 4-6-5);
    other runs are ids and fixed-point constants, which pass Luhn one time in ten."""
    if grouped:
        return True
    return len(digits) == 16 or (len(digits) == 15 and digits[:2] in ("34", "37"))


def ipv6_prefix_end(low: str, start: int, end: int) -> int | None:
    """End of the longest valid IPv6 address (with %zone) at ``low[start:end]``, or None.

    The candidate regex is greedy over hex digits and colons, so "fd00::1: error" or
    "fe80::1:deadbeef" need trimming back to the last valid address.
    """
    candidate = low[start:end]
    zone = ""
    if "%" in candidate:
        candidate, zone = candidate.split("%", 1)
        zone = "%" + zone
    for _ in range(9):
        if not candidate:
            return None
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            if candidate.endswith(":") and not candidate.endswith("::"):
                candidate = candidate[:-1]
            else:
                cut = candidate.rfind(":")
                candidate = candidate[: cut + 1] if cut > 0 else ""
                if candidate.endswith(":") and not candidate.endswith("::"):
                    candidate = candidate[:-1]
            zone = ""
            continue
        return start + len(candidate) + len(zone)
    return None


def shannon_entropy(token: str) -> float:
    """Bits per character of ``token`` over its own symbol frequencies (detect-secrets)."""
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in Counter(token).values())
