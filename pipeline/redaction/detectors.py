"""Find secret spans in text: each enabled rule contributes (start, end, priority) triples.

The text is usually every string of one event joined by NUL (engine.py), so every scan here is
paid once per event, not once per string. ``low`` is ``text.lower()`` with the same length;
case-insensitive keywords are searched there and the offsets reused on ``text``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable

from pipeline.redaction import rules as r
from pipeline.redaction.keys import (
    KeyKind,
    classify_key,
    is_code_reference,
    is_named_reference,
    is_placeholder,
)
from pipeline.redaction.validators import card_number_ok

Span = tuple[int, int, int]
"""(start, end, priority): priority is the rule's index in the engine's order, lower wins."""

_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_HEXISH = frozenset("0123456789abcdefghijklmnopqrstuvwxyz:")
_KV_KEYWORDS = ("pass", "pwd", "secret", "token", "key", "credential", "auth")
_TRAILING_PUNCT = ",;)]}>.:"
_COMPARISON_OPS = frozenset({"==", "===", "!=", "!=="})
_STRUCTURE_START = frozenset("{[(")
_KEY_CACHE_LIMIT = 8192


def _found(haystack: str, needle: str) -> Iterable[int]:
    pos = haystack.find(needle)
    while pos != -1:
        yield pos
        pos = haystack.find(needle, pos + 1)


class SpanFinder:
    """All compiled detectors for one configuration; stateless apart from a name cache."""

    def __init__(
        self,
        enabled: frozenset[str],
        priority: dict[str, int],
        *,
        redact_loopback: bool,
        allow_emails: frozenset[str],
        allow_email_domains: tuple[str, ...],
        entropy_threshold: float,
        entropy_min_length: int,
        loose: bool = False,
    ) -> None:
        # loose: no word-boundary checks before a match; for binary-framed text where a length
        # byte can sit right before a secret (raw.py). More false positives, fewer misses.
        self._loose = loose
        self._on = enabled
        self._pri = priority
        self._loopback = redact_loopback
        self._allow_emails = allow_emails
        self._allow_domains = allow_email_domains
        self._entropy_threshold = entropy_threshold
        self._entropy_min_length = entropy_min_length
        self._entropy_token = re.compile(f"{r.ENTROPY_CHARSET}{{{entropy_min_length},}}")
        self._key_cache: dict[str, int | None] = {}
        # (pattern, rule, group, needs a non-alphanumeric character before the match)
        token_rules: list[tuple[re.Pattern[str], str, int, bool]] = [
            (r.PRIVATE_KEY, "private_key", 0, False),
            (r.JWT, "jwt", 0, True),
            (r.ANTHROPIC, "anthropic_key", 0, True),
            (r.OPENAI, "openai_key", 0, True),
            (r.AWS_ACCESS_KEY, "aws_access_key", 0, True),
            (r.GITHUB, "github_token", 0, True),
            (r.GITHUB_FINE_GRAINED, "github_token", 0, True),
            (r.GITLAB, "gitlab_token", 0, True),
            (r.GITLAB_RUNNER_REG, "gitlab_token", 0, True),
            (r.SLACK_WEBHOOK, "slack_webhook", 1, False),
            (r.SLACK_TOKEN, "slack_token", 0, True),
            (r.SLACK_APP_TOKEN, "slack_token", 0, True),
            (r.STRIPE_WEBHOOK, "stripe_key", 0, True),
            (r.GOOGLE_API_KEY, "google_api_key", 0, True),
            (r.URL_PASSWORD, "url_password", 1, False),
        ]
        self._token_rules = [
            (rx, self._pri[name], group, boundary)
            for rx, name, group, boundary in token_rules
            if name in enabled
        ]
        self._kv_rules = enabled & {
            "password", "secret_assignment", "env_secret", "authorization_header",
        }
        self._detectors: list[Callable[[str, str, list[Span]], None]] = [self._tokens]
        optional: list[tuple[str, Callable[[str, str, list[Span]], None]]] = [
            ("stripe_key", self._stripe),
            ("aws_secret_key", self._aws_secret),
            ("authorization_header", self._bare_auth),
            ("password", self._curl_user),
            ("email", self._emails),
            ("private_ipv4", self._ipv4),
            ("private_ipv6", self._ipv6),
            ("credit_card", self._cards),
            ("high_entropy", self._entropy),
        ]
        self._detectors += [fn for name, fn in optional if name in enabled]
        if self._kv_rules:
            self._detectors.append(self._key_values)

    def find(self, text: str, low: str) -> list[Span]:
        spans: list[Span] = []
        for detect in self._detectors:
            detect(text, low, spans)
        return spans

    # --- names ------------------------------------------------------------------------------

    def rule_for_key(self, key: str) -> int | None:
        """Priority of the rule that redacts the value of ``key``, or None. Cached."""
        try:
            return self._key_cache[key]
        except KeyError:
            pass
        kind = classify_key(key)
        rule: str | None = None
        if kind & KeyKind.AUTHORIZATION:
            rule = "authorization_header"
        else:
            for flag, name in (
                (KeyKind.ENV, "env_secret"),
                (KeyKind.PASSWORD, "password"),
                (KeyKind.SECRET, "secret_assignment"),
            ):
                if kind & flag and name in self._on:
                    rule = name
                    break
        if rule is not None and rule not in self._on:
            rule = None
        if len(self._key_cache) >= _KEY_CACHE_LIMIT:
            self._key_cache.clear()
        result = self._pri[rule] if rule is not None else None
        self._key_cache[key] = result
        return result

    def value_span_for_key(self, key_priority: int, value: str) -> tuple[int, int] | None:
        """The part of a map value to redact because of its key (whole value, or after the
        Authorization scheme)."""
        start = 0
        if key_priority == self._pri.get("authorization_header"):
            m = re.match(r"([A-Za-z][A-Za-z0-9-]*)[ \t]+(?=\S)", value)
            if m:
                start = m.end()
        secret = value[start:].strip()
        if is_placeholder(secret):
            return None
        return start, len(value)

    # --- detectors --------------------------------------------------------------------------

    def _tokens(self, text: str, low: str, out: list[Span]) -> None:
        for rx, pri, group, boundary in self._token_rules:
            for m in rx.finditer(text):
                start = m.start()
                if boundary and start and text[start - 1] in _ALNUM and not self._loose:
                    continue
                gs, ge = m.span(group)
                if group and is_placeholder(m.group(group)):
                    continue
                if text[start] == ":" and text[start + 3 : start + 4] in ("[", "<", "{"):
                    continue  # scheme://[user:password]@host: a usage template
                out.append((gs, ge, pri))

    def _stripe(self, text: str, low: str, out: list[Span]) -> None:
        pri = self._pri["stripe_key"]
        for m in r.STRIPE.finditer(text):
            start = m.start() - 1
            if start < 0 or text[start] not in "sr":
                continue
            if start and text[start - 1] in _ALNUM and not self._loose:
                continue
            out.append((start, m.end(), pri))

    def _aws_secret(self, text: str, low: str, out: list[Span]) -> None:
        if "secret" not in low:
            return
        pri = self._pri["aws_secret_key"]
        for m in r.AWS_SECRET_KEY.finditer(low):
            out.append((m.start(1), m.end(1), pri))

    def _bare_auth(self, text: str, low: str, out: list[Span]) -> None:
        pri = self._pri["authorization_header"]
        for pos in _found(low, "bearer"):
            if pos and low[pos - 1] in _ALNUM and not self._loose:
                continue
            m = r.BARE_BEARER.match(low, pos)
            if m and any(c.isdigit() for c in m.group(1)):
                out.append((m.start(1), m.end(1), pri))
        for pos in _found(low, "basic"):
            if pos and low[pos - 1] in _ALNUM and not self._loose:
                continue
            m = r.BARE_BASIC.match(low, pos)
            if m and _is_basic_credential(text[m.start(1) : m.end(1)]):
                out.append((m.start(1), m.end(1), pri))

    def _curl_user(self, text: str, low: str, out: list[Span]) -> None:
        if "curl" not in low:
            return
        pri = self._pri["password"]
        for m in r.CURL_USER.finditer(text):
            if m.start() and not text[m.start() - 1].isspace() and not self._loose:
                continue
            if not is_placeholder(m.group(1)):
                out.append((m.start(1), m.end(1), pri))

    def _emails(self, text: str, low: str, out: list[Span]) -> None:
        pri = self._pri["email"]
        for at in _found(text, "@"):
            m = r.EMAIL_DOMAIN.match(text, at)
            if m is None:
                continue
            start = at
            while start > 0 and at - start < 64 and text[start - 1] in r.EMAIL_LOCAL_CHARS:
                start -= 1
            while start < at and text[start] == ".":
                start += 1
            if start == at or text[at - 1] == ".":
                continue
            domain = m.group(1).lower()
            if domain.rsplit(".", 1)[-1] in r.FILE_EXTENSION_TLDS:
                continue
            if self._email_allowed(low[start : m.end()], domain):
                continue
            if _in_url_userinfo(text, start):
                continue
            out.append((start, m.end(), pri))

    def _email_allowed(self, address: str, domain: str) -> bool:
        if address in self._allow_emails:
            return True
        return any(domain == d or domain.endswith("." + d) for d in self._allow_domains)

    def _ipv4(self, text: str, low: str, out: list[Span]) -> None:
        pri = self._pri["private_ipv4"]
        for m in r.IPV4_START.finditer(text):
            start = m.start()
            if start and not self._loose and (text[start - 1] in _ALNUM or text[start - 1] == "."):
                continue
            ip = r.IPV4_AT.match(text, start)
            if ip is None:
                continue
            end = ip.end()
            if end < len(text) and (
                text[end].isdigit()
                or (text[end] == "." and end + 1 < len(text) and text[end + 1].isdigit())
            ):
                continue
            a, b, c, d = (int(x) for x in ip.groups())
            if c > 255 or d > 255 or b > 255:
                continue
            if (
                a == 10
                or (a == 172 and 16 <= b <= 31)
                or (a == 192 and b == 168)
                or (a == 169 and b == 254)
                or (a == 100 and 64 <= b <= 127)
                or (a == 127 and self._loopback)
            ):
                out.append((start, end, pri))

    def _ipv6(self, text: str, low: str, out: list[Span]) -> None:
        pri = self._pri["private_ipv6"]
        for m in r.IPV6_CANDIDATE.finditer(low):
            start = m.start()
            if start and low[start - 1] in _HEXISH and not self._loose:
                continue
            end = _valid_ipv6_end(low, start, m.end())
            if end is not None:
                out.append((start, end, pri))
        if self._loopback:
            for m in r.IPV6_LOOPBACK.finditer(low):
                if m.start() and low[m.start() - 1] in _HEXISH:
                    continue
                out.append((m.start(), m.end(), pri))

    def _cards(self, text: str, low: str, out: list[Span]) -> None:
        pri = self._pri["credit_card"]
        for m in r.CARD_CANDIDATE.finditer(text):
            start = m.start()
            if start and not self._loose and (text[start - 1] in _ALNUM or text[start - 1] in ".,"):
                continue
            for s, e in _card_spans(text, start, m.end()):
                out.append((s, e, pri))

    def _entropy(self, text: str, low: str, out: list[Span]) -> None:
        pri = self._pri["high_entropy"]
        threshold = self._entropy_threshold
        min_len = self._entropy_min_length
        for m in self._entropy_token.finditer(text):
            # Paths and URLs join words with "/": judge each segment on its own.
            pos = m.start()
            for segment in m.group().split("/"):
                if (
                    len(segment) >= min_len
                    and any(c.isdigit() for c in segment)
                    and any(c.isalpha() for c in segment)
                    and shannon_entropy(segment) >= threshold
                ):
                    out.append((pos, pos + len(segment), pri))
                pos += len(segment) + 1

    def _key_values(self, text: str, low: str, out: list[Span]) -> None:
        seen: set[int] = set()
        for kw in _KV_KEYWORDS:
            for pos in _found(low, kw):
                self._key_value_at(text, pos, pos + len(kw), seen, out)

    def _key_value_at(
        self, text: str, kw_start: int, kw_end: int, seen: set[int], out: list[Span]
    ) -> None:
        end = r.KV_KEY_REST.match(text, kw_end).end()  # type: ignore[union-attr]
        if end in seen:
            return
        seen.add(end)
        start = kw_start
        while start > 0 and kw_start - start < 64 and text[start - 1] in _KEY_CHARS:
            start -= 1
        key = text[start:end]
        pri = self.rule_for_key(key)
        if pri is None:
            return
        if pri == self._pri.get("authorization_header"):
            span = _authorization_value(text, end)
        else:
            span = _assignment_value(
                text, end, cli=key.startswith("-"), password=pri == self._pri.get("password")
            )
        if span is not None:
            out.append((span[0], span[1], pri))


def _assignment_value(
    text: str, pos: int, *, cli: bool, password: bool
) -> tuple[int, int] | None:
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
    groups = m.groupdict()
    for group in ("v1", "v2", "v3", "v4"):
        value = groups.get(group)
        if value is not None:
            value = value.strip()
            if is_placeholder(value) or (not password and is_named_reference(value)):
                return None
            return m.span(group)
    if op in _COMPARISON_OPS:
        return None
    start, end = m.span("v5")
    value = text[start:end]
    if value[0] in _STRUCTURE_START or (cli and value[0] == "-") or is_placeholder(value):
        return None
    stripped = value.rstrip(_TRAILING_PUNCT)
    if not stripped or is_placeholder(stripped):
        return None
    prose = op == ":" and text[end : end + 1] == " " and text[end + 1 : end + 2].isalpha()
    if is_code_reference(
        stripped,
        spaced_assignment=spaced,
        quoted_key=groups.get("kq") is not None,
        prose_follows=prose,
    ):
        return None
    return start, start + len(stripped)


def _authorization_value(text: str, pos: int) -> tuple[int, int] | None:
    m = r.AUTH_SCHEME.match(text, pos)
    if m is None:
        return None
    scheme = m.group(1)
    cred_re = r.AUTH_ONE_TOKEN if scheme is None or scheme.lower() in r.ONE_TOKEN_SCHEMES else (
        r.AUTH_REST_OF_LINE
    )
    cred = cred_re.match(text, m.end())
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


def _is_basic_credential(token: str) -> bool:
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    if b":" not in raw[1:]:
        return False
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return decoded.isprintable()


def _in_url_userinfo(text: str, start: int) -> bool:
    """``scheme://user@host`` and ``scheme://user:pass@host`` are URL credentials, not mail."""
    window = text[max(0, start - 256) : start]
    if window.endswith("://"):
        return True
    return re.search(r"://[^\s/@:\x00]*:\Z", window) is not None


def _valid_ipv6_end(low: str, start: int, end: int) -> int | None:
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


def _card_spans(text: str, start: int, end: int) -> Iterable[tuple[int, int]]:
    """Runs of digit groups that form a card number. Written cards are 16 digits (15 for Amex)
    in one run, or grouped starting with four digits (4-4-4-4, 4-6-5); anything else is a
    number (ids and fixed-point constants pass Luhn one time in ten)."""
    groups = [(m.start() + start, m.end() + start)
              for m in re.finditer(r"[0-9]+", text[start:end])]
    i = 0
    while i < len(groups):
        first_len = groups[i][1] - groups[i][0]
        digits = ""
        matched = False
        for j in range(i, len(groups)):
            if j > i and groups[j][0] - groups[j - 1][1] != 1:
                break
            digits += text[groups[j][0] : groups[j][1]]
            if len(digits) > 19:
                break
            shape_ok = first_len == 4 if j > i else (
                len(digits) == 16 or (len(digits) == 15 and digits[:2] in ("34", "37"))
            )
            if len(digits) >= 13 and shape_ok and card_number_ok(digits):
                yield groups[i][0], groups[j][1]
                i = j + 1
                matched = True
                break
        if not matched:
            i += 1


def shannon_entropy(token: str) -> float:
    """Bits per character of ``token`` over its own symbol frequencies (detect-secrets)."""
    n = len(token)
    return -sum(c / n * math.log2(c / n) for c in Counter(token).values())
