"""The key = value detector: ``password=...``, ``"token": "..."``, ``--api-key ...``,
``Authorization: Bearer ...``.

Keys are found by keyword (``pass``, ``token``, ``key``...; every occurrence in the
lowercased text, reported by the prefilter's pass or found by ``occurrences``), then widened
to the whole name and judged by ``keys.classify_key``; the value is parsed by the grammar in
rules.KV_VALUE right after the name. Most keyword hits in ordinary text (``tokens``,
``keyboard``, ``passed``) are not followed by an operator and cost one character test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from pipeline.redaction import rules as r
from pipeline.redaction.keys import (
    is_code_reference,
    is_named_reference,
    is_placeholder,
    tail_may_be_secret,
)

Span = tuple[int, int, int]

KEYWORDS = ("pass", "pwd", "secret", "token", "key", "credential", "auth")
_KEY_CHARS_STR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"
_KEY_CHARS = frozenset(_KEY_CHARS_STR)
_KEY_MAX = 64
"""Characters of a name looked at on either side of a keyword."""
_OPERATOR_START = frozenset("\"'\\:=!`")
_AFTER_SPACE = frozenset(":=!")
_TRAILING_PUNCT = ",;)]}>.:"
_COMPARISON_OPS = frozenset({"==", "===", "!=", "!=="})
_STRUCTURE_START = frozenset("{[(")
# A bare value cannot start with a backslash: that is an escaped quote whose string did not
# close (a cut excerpt), and what follows is not a value.
_NOT_A_BARE_START = frozenset("{[(\\")


def _has_alnum(value: str) -> bool:
    """Values of punctuation only (", ", "-", "=>") are syntax, not secrets."""
    return any(c.isalnum() for c in value)
_TAIL_CACHE_LIMIT = 8192


class Rules(NamedTuple):
    rule_for_key: Callable[[str], int | None]
    tails: dict[str, bool]
    """Cache of keys.tail_may_be_secret, shared across calls (bounded by the caller)."""
    password: int | None
    """Priority of the password rule (None: disabled); its quoted values may be words."""
    authorization: int | None
    """Priority of authorization_header (None: disabled); its values keep their scheme."""


def occurrences(low: str, kw: str) -> list[int]:
    """End offsets of every occurrence of ``kw`` in ``low``, ascending."""
    found = []
    pos = low.find(kw)
    while pos != -1:
        found.append(pos + len(kw))
        pos = low.find(kw, pos + 1)
    return found


def scan(
    text: str, rules: Rules, out: list[Span], hits: Iterable[tuple[str, list[int]]]
) -> None:
    """Append a span for every value assigned to a secret-sounding name.

    ``hits``: for each KEYWORD occurring in the lowercased text, in KEYWORDS order (the order
    decides which keyword of a key is tried first), the end offsets of all its occurrences
    (the prefilter's pass reports them; ``occurrences`` finds them too). Sorted here, in place.
    """
    seen: set[int] = set()
    key_str = _KEY_CHARS_STR
    key_chars = _KEY_CHARS
    operator_start = _OPERATOR_START
    tails = rules.tails
    if len(tails) > _TAIL_CACHE_LIMIT:
        tails.clear()
    for kw, ends in hits:
        size = len(kw)
        ends.sort()
        i = 0
        n = len(ends)
        while i < n:
            pos = ends[i] - size
            # Per hit: most keywords in ordinary text ("tokens", "passed", "keyboard") are not
            # followed by an operator; decide that with as few calls as possible.
            end = pos + size
            nxt = text[end : end + 1]
            if nxt in key_chars and nxt:
                # The rest of the name: up to 64 name characters (lstrip is C, a regex
                # match costs three times as much here).
                rest = text[end : end + _KEY_MAX]
                end += len(rest) - len(rest.lstrip(key_str))
                nxt = text[end : end + 1]
            name_done = True
            if nxt and end not in seen and (nxt in operator_start or nxt in " \t"):
                # The name's tail first (a cached dict lookup): most names followed by a space
                # ("token_count", "PASSED") are not secret names, and then whether an operator
                # follows the space need not be looked at.
                tail = text[pos:end]
                maybe = tails.get(tail)
                if maybe is None:
                    maybe = tails[tail] = tail_may_be_secret(tail)
                if not maybe:
                    # A later occurrence in the same name has a tail of its own:
                    # "tokens_token=..." fails as "tokens_token" and qualifies as "token".
                    name_done = False
                elif nxt in operator_start or _operator_after_space(text, end, pos):
                    seen.add(end)
                    _key_value(text, pos, end, rules, out)
            i += 1
            if name_done:  # on to the first occurrence at or after end
                while i < n and ends[i] - size < end:
                    i += 1


def _operator_after_space(text: str, end: int, kw_start: int) -> bool:
    stripped = text[end : end + 16].lstrip(" \t")
    if stripped[:1] in _AFTER_SPACE and stripped[:1]:
        return True
    # "--password value": a flag separated from its value by a space.
    return text.rfind("-", max(0, kw_start - 64), kw_start) != -1


def _key_value(text: str, kw_start: int, end: int, rules: Rules, out: list[Span]) -> None:
    head = text[max(0, kw_start - _KEY_MAX) : kw_start]
    start = kw_start - (len(head) - len(head.rstrip(_KEY_CHARS_STR)))  # up to 64 name chars
    if start and text[start - 1] == "\\":
        start += 1  # "\npassword": the n belongs to an escape sequence, not the name
    if text.startswith("://", start - 3):
        return  # scheme://token-name:secret@host is URL userinfo: url_password's business
    if text.startswith("REDACTED:", start - 9):
        return  # the rule name inside one of our own tokens (***REDACTED:github_token:...***)
    key = text[start:end]
    pri = rules.rule_for_key(key)
    if pri is None:
        return
    if pri == rules.authorization:
        span = authorization_value(text, end)
    else:
        span = assignment_value(
            text, end, cli=key.startswith("-"), password=pri == rules.password
        )
    if span is not None:
        out.append((span[0], span[1], pri))


def assignment_value(
    text: str, pos: int, *, cli: bool, password: bool
) -> tuple[int, int] | None:
    """Span of the value assigned at ``pos`` (just after a key), or None if there is none or
    it reads as a placeholder or a code reference."""
    m = r.KV_VALUE.match(text, pos)
    op = ""
    spaced = False
    if m is not None:
        op = m.group("op")
        spaced = op == "=" and bool(m.group("w1")) and bool(m.group("w2"))
    elif cli:
        m = r.CLI_VALUE.match(text, pos)
    if m is None:
        return None
    # The value alternatives v1..v5 are the last groups of both grammars to close, and one
    # of them always matches: lastgroup names it.
    group = m.lastgroup
    assert group is not None
    if group != "v5":
        value = m.group(group).strip()
        if (
            is_placeholder(value)
            or not _has_alnum(value)
            or (not password and is_named_reference(value))
        ):
            return None
        return m.span(group)
    if op in _COMPARISON_OPS:
        return None
    start, end = m.span("v5")
    value = text[start:end]
    if value[0] in _NOT_A_BARE_START or (cli and value[0] == "-") or is_placeholder(value):
        return None
    stripped = value.rstrip(_TRAILING_PUNCT)
    if not stripped or is_placeholder(stripped) or not _has_alnum(stripped):
        return None
    prose = op == ":" and text[end : end + 1] == " " and text[end + 1 : end + 2].isalpha()
    if is_code_reference(
        stripped,
        spaced_assignment=spaced,
        quoted_key=m.re is r.KV_VALUE and m.group("kq") is not None,
        prose_follows=prose,
    ):
        return None
    return start, start + len(stripped)


def authorization_value(text: str, pos: int) -> tuple[int, int] | None:
    """Span of the credentials after an Authorization header name; the scheme is kept."""
    m = r.AUTH_SCHEME.match(text, pos)
    if m is None:
        return None
    scheme = m.group(1)
    one_token = scheme is None or scheme.lower() in r.ONE_TOKEN_SCHEMES
    cred = (r.AUTH_ONE_TOKEN if one_token else r.AUTH_REST_OF_LINE).match(text, m.end())
    if cred is None:
        return None
    value = cred.group().rstrip()
    if value[0] in _STRUCTURE_START:
        return None
    if scheme is None:
        value = value.rstrip(_TRAILING_PUNCT)
        if is_placeholder(value) or is_code_reference(value, spaced_assignment=True):
            return None
    elif is_placeholder(value):
        return None
    return cred.start(), cred.start() + len(value)
