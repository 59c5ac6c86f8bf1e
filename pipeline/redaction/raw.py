"""Dead-letter helper: a hash and a redacted, printable excerpt of bytes we could not decode.

A dead letter must not carry a secret, yet undecodable input is exactly what the rules were not
written for: Avro framing glues length bytes to strings and puts map keys and values side by
side with no ``=`` between them. So the excerpt is redacted with word-boundary checks off, and a
printable run that names a secret (``password``, ``GITHUB_TOKEN``...) redacts the run after it.
Redaction happens on the whole text before the excerpt is cut, so a cut cannot expose a prefix
of a secret the rules would have recognised whole.
"""

from __future__ import annotations

import hashlib
import itertools
import re

from pipeline.redaction.engine import Redactor

_BINARY = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ufffd]+")
_NAME = re.compile(r"[A-Za-z0-9_.-]{2,64}")


def redact_raw(
    data: bytes | str, redactor: Redactor | None = None, *, max_chars: int = 4096
) -> tuple[str, str]:
    """``(sha256 hex of the original bytes, redacted printable excerpt)``.

    Text is the UTF-8 decoding with undecodable bytes replaced; the excerpt escapes control
    characters as ``\\xNN`` and, when longer than ``max_chars``, ends with ``…[+N chars]``.
    Pass the long-lived ``redactor`` when there is one (its caches warm up); a default one is
    cheap to build (the patterns are compiled at import).
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    digest = hashlib.sha256(raw).hexdigest()
    text = data if isinstance(data, str) else raw.decode("utf-8", "replace")
    redactor = redactor or Redactor()
    redacted = redactor.redact_loose(text, _adjacent_value_spans(redactor, text))
    printable = _printable(redacted)
    if len(printable) > max_chars:
        printable = f"{printable[:max_chars]}…[+{len(printable) - max_chars} chars]"
    return digest, printable


def _adjacent_value_spans(redactor: Redactor, text: str) -> list[tuple[int, int, int]]:
    """Spans of printable runs that follow a run naming a secret (binary map key, value)."""
    runs: list[tuple[int, int]] = []
    last = 0
    for m in _BINARY.finditer(text):
        if m.start() > last:
            runs.append((last, m.start()))
        last = m.end()
    if last < len(text):
        runs.append((last, len(text)))
    spans: list[tuple[int, int, int]] = []
    for (ks, ke), (vs, ve) in itertools.pairwise(runs):
        name = text[ks:ke].strip()
        if not _NAME.fullmatch(name):
            continue
        pri = redactor.rule_priority_for_key(name)
        if pri is not None:
            spans.append((vs, ve, pri))
    return spans


def _printable(text: str) -> str:
    if text.isprintable():
        return text
    out: list[str] = []
    for ch in text:
        if ch.isprintable() or ch in "\n\t":
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return "".join(out)
