"""Find secret spans in text: each enabled rule contributes (start, end, priority) triples.

The text is usually every string of one event joined by NUL (engine.py), so every scan here is
paid once per event, not once per string. ``low`` is ``text.lower()`` with the same length;
case-insensitive keywords are searched there and the offsets reused on ``text``. One
Hyperscan pass over ``low`` first (prefilter.py) says which scans can match at all and where
the key = value keywords are; the others are skipped. Each scan starts from a literal so
``re`` can skip ahead; about 1 us per 2.5 KB here.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping

from pipeline.redaction import assignments
from pipeline.redaction import prefilter as pf
from pipeline.redaction import rules as r
from pipeline.redaction.keys import KeyKind, classify_key, is_placeholder
from pipeline.redaction.validators import (
    card_number_ok,
    card_shape_ok,
    ipv6_prefix_end,
    shannon_entropy,
)

Span = tuple[int, int, int]
"""(start, end, priority): priority is the rule's index in the engine's order, lower wins."""
Hits = Mapping[int, list[int]]
"""Prefilter group id -> end offsets of its matches in low; groups not found are absent."""
_Detector = Callable[[str, str, list[Span], Hits], None]
"""(text, low, out, hits)."""

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_B64URL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_HEXISH = frozenset("0123456789abcdefghijklmnopqrstuvwxyz:")
_KEY_CACHE_LIMIT = 8192
# The private ranges themselves, as documentation writes them: no address, no information.
_GENERIC_RANGES = frozenset({
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10",
    "127.0.0.0/8", "fc00::/7", "fd00::/8", "fe80::/10", "fe80::/64",
})
_CIDR_SUFFIX = re.compile(r"/[0-9]{1,3}")
_NAME_LIKE = re.compile(r"[A-Za-z0-9_.$-][A-Za-z0-9_. $-]{0,79}")
_URL_USERINFO_END = re.compile(r"://[^\s/@:\x00]*:\Z")
_AUTH_SCHEME_PREFIX = re.compile(r"([A-Za-z][A-Za-z0-9-]*)[ \t]+(?=\S)")

# Card candidates are found on a shape string (digit -> d, space/hyphen -> s, else x) where
# "dddd" is a literal re can search for; str.encode("ascii", "replace") keeps one byte per
# character, so offsets carry over.
_CARD_TABLE = bytes(
    ord("d") if chr(i).isdigit() and i < 128 else ord("s") if chr(i) in " -" else ord("x")
    for i in range(256)
)
_CARD_SHAPE = re.compile(rb"dddd(?:d{11,12}|sddddsddddsd{1,7}|sddddddsd{4,5})")

# (prefilter group, scan, capture group, needs a word boundary before it,
#  ((prefix, rule), ...), default rule)
_TOKEN_SCANS: tuple[
    tuple[str, re.Pattern[str], int, bool, tuple[tuple[str, str], ...], str], ...
] = (
    ("private_key", r.PRIVATE_KEY, 0, False, (), "private_key"),
    ("sk_tokens", r.SK_TOKENS, 0, True, (("sk-ant-", "anthropic_key"),), "openai_key"),
    ("a_tokens", r.A_TOKENS, 0, True, (("AIza", "google_api_key"),), "aws_access_key"),
    ("g_tokens", r.G_TOKENS, 0, True, (("gl", "gitlab_token"),), "github_token"),
    ("gitlab_runner", r.GITLAB_RUNNER_REG, 0, True, (), "gitlab_token"),
    ("x_tokens", r.X_TOKENS, 0, True, (), "slack_token"),
    ("slack_webhook", r.SLACK_WEBHOOK, 1, False, (), "slack_webhook"),
    ("stripe_webhook", r.STRIPE_WEBHOOK, 0, True, (), "stripe_key"),
    ("url_password", r.URL_PASSWORD, 1, False, (), "url_password"),
)


def _word_starts(text: str, start: int) -> bool:
    """True when a token may begin at ``start``: not glued to a preceding letter or digit,
    except the letter of an escape sequence (``\\nghp_...`` inside an escaped JSON string)."""
    if start == 0 or text[start - 1] not in _ALNUM:
        return True
    return start >= 2 and text[start - 2] == "\\"


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
        prefilter: bool = True,
    ) -> None:
        # loose: no word-boundary checks before a match; for binary-framed text where a length
        # byte can sit right before a secret (raw.py). More false positives, fewer misses.
        # prefilter=False runs every scan on every text: the reference the prefilter is
        # checked against (tests), never faster.
        self._loose = loose
        groups = pf.expressions(loopback=redact_loopback)
        self._prefilter = pf.Prefilter(groups) if prefilter and pf.AVAILABLE else None
        gid = self._gid = self._prefilter.ids if self._prefilter else {
            name: i for i, name in enumerate(groups)
        }
        self._keyword_ids = tuple((gid[f"keyword:{kw}"], kw) for kw in assignments.KEYWORDS)
        self._on = enabled
        self._pri = priority
        self._loopback = redact_loopback
        self._allow_emails = allow_emails
        self._allow_domains = allow_email_domains
        self._entropy_threshold = entropy_threshold
        self._entropy_min_length = entropy_min_length
        self._entropy_token = re.compile(f"{r.ENTROPY_CHARSET}{{{entropy_min_length},}}")
        self.key_cache: dict[str, int | None] = {}
        """Key name -> rule priority (None: not a secret name); read directly on hot paths."""
        self._password_pri = priority["password"] if "password" in enabled else None
        self._auth_pri = (
            priority["authorization_header"] if "authorization_header" in enabled else None
        )
        self._kv_rules = assignments.Rules(
            self.rule_for_key, {}, self._password_pri, self._auth_pri
        )

        def pri(rule: str) -> int | None:
            return priority[rule] if rule in enabled else None

        self._token_scans = [
            (
                gid.get(name), rx, group, boundary,
                tuple((p, pri(rule)) for p, rule in choices), pri(default),
            )
            for name, rx, group, boundary, choices, default in _TOKEN_SCANS
            if any(rule in enabled for _, rule in choices) or default in enabled
        ]
        # (rule, prefilter group, detector); a detector whose group is None or missing from
        # the prefilter's tables always runs.
        optional: list[tuple[str, str | None, _Detector]] = [
            ("jwt", "jwt", self._jwt),
            ("stripe_key", "stripe", self._stripe),
            ("authorization_header", "bare_auth", self._bare_auth),
            ("password", "curl_user", self._curl_user),
            ("email", "email", self._emails),
            ("private_ipv4", "ipv4", self._ipv4),
            ("private_ipv6", "ipv6", self._ipv6),
            ("credit_card", "cards", self._cards),
            ("high_entropy", None, self._entropy),
        ]
        self._detectors: list[tuple[int | None, _Detector]] = [(None, self._tokens)]
        self._detectors += [
            (None if group is None else gid.get(group), fn)
            for name, group, fn in optional
            if name in enabled
        ]
        if enabled & {
            "password", "secret_assignment", "env_secret", "authorization_header",
            "aws_secret_key",
        }:
            self._detectors.append((None, self._key_values))

    def find(self, text: str, low: str) -> list[Span]:
        spans: list[Span] = []
        hits = self._prefilter.scan(low) if self._prefilter else self._everything(low)
        for group, detect in self._detectors:
            if group is None or group in hits:
                detect(text, low, spans, hits)
        return spans

    def _everything(self, low: str) -> Hits:
        """Hits as if every group occurred (the reference): keyword offsets by str.find."""
        hits: dict[int, list[int]] = {gid: [] for gid in self._gid.values()}
        for gid, kw in self._keyword_ids:
            hits[gid] = assignments.occurrences(low, kw)
        return hits

    # --- names ------------------------------------------------------------------------------

    def rule_for_key(self, key: str) -> int | None:
        """Priority of the rule that redacts the value of ``key``, or None. Cached."""
        try:
            return self.key_cache[key]
        except KeyError:
            pass
        # Only name-like keys say anything about their value; a key that is itself text
        # ("AccessKeyId: ***REDACTED...***" as a map key) is scanned, not classified.
        kind = classify_key(key) if _NAME_LIKE.fullmatch(key) else KeyKind.NONE
        rule: str | None = None
        if kind & KeyKind.AUTHORIZATION:
            rule = "authorization_header"
        else:
            for flag, name in (
                (KeyKind.AWS_SECRET, "aws_secret_key"),
                (KeyKind.ENV, "env_secret"),
                (KeyKind.PASSWORD, "password"),
                (KeyKind.SECRET, "secret_assignment"),
            ):
                if kind & flag and name in self._on:
                    rule = name
                    break
        result = self._pri[rule] if rule is not None and rule in self._on else None
        if len(self.key_cache) >= _KEY_CACHE_LIMIT:
            self.key_cache.clear()
        self.key_cache[key] = result
        return result

    def value_span_for_key(self, key_priority: int, value: str) -> tuple[int, int] | None:
        """The part of a map value to redact because of its key: all of it, or what follows
        the scheme of an Authorization value."""
        start = 0
        if key_priority == self._auth_pri:
            m = _AUTH_SCHEME_PREFIX.match(value)
            if m:
                start = m.end()
        if is_placeholder(value[start:].strip()):
            return None
        return start, len(value)

    # --- detectors --------------------------------------------------------------------------

    def _tokens(self, text: str, low: str, out: list[Span], hits: Hits) -> None:
        loose = self._loose
        for gid, rx, group, boundary, choices, default in self._token_scans:
            if gid is not None and gid not in hits:
                continue
            first = rx.search(text)  # cheaper than building an iterator for the usual miss
            if first is None:
                continue
            for m in rx.finditer(text, first.start()):
                start = m.start()
                if boundary and not loose and not _word_starts(text, start):
                    continue
                pri = default
                for prefix, choice in choices:
                    if text.startswith(prefix, start):
                        pri = choice
                        break
                if pri is None:
                    continue
                if group:
                    if is_placeholder(m.group(group)):
                        continue
                    if text[start] == ":" and text[start + 3 : start + 4] in ("[", "<", "{"):
                        continue  # scheme://[user:password]@host: a usage template
                gs, ge = m.span(group)
                out.append((gs, ge, pri))

    def _jwt(self, text: str, low: str, out: list[Span], hits: Hits) -> None:
        # Anchored on ".ey" (the payload's start), far rarer than "ey" alone in prose and code;
        # the header is the base64url run before the dot.
        pri = self._pri["jwt"]
        last_end = -1
        for m in r.JWT_PAYLOAD.finditer(text):
            dot = m.start()
            start = dot
            while start > 0 and text[start - 1] == "=" and dot - start < 2:
                start -= 1  # base64 padding of the header
            while start > 0 and dot - start < 8192 and text[start - 1] in _B64URL:
                start -= 1
            if start < last_end:
                continue
            if not text.startswith("ey", start):
                if start and text[start - 1] == "\\" and text.startswith("ey", start + 1):
                    start += 1  # "\neyJ...": the n closes an escape sequence
                elif self._loose:
                    start = text.find("ey", start, dot)
                    if start == -1:
                        continue
                else:
                    continue
            jwt = r.JWT.match(text, start)
            if jwt is not None:
                out.append((start, jwt.end(), pri))
                last_end = jwt.end()

    def _stripe(self, text: str, low: str, out: list[Span], hits: Hits) -> None:
        pri = self._pri["stripe_key"]
        for m in r.STRIPE.finditer(text):
            start = m.start() - 1
            if start < 0 or text[start] not in "sr":
                continue
            if self._loose or _word_starts(text, start):
                out.append((start, m.end(), pri))

    def _bare_auth(self, text: str, low: str, out: list[Span], hits: Hits) -> None:
        pri = self._pri["authorization_header"]
        for m in r.BARE_SCHEME.finditer(low):
            if not (self._loose or _word_starts(low, m.start())):
                continue
            if m.group(1) is not None:
                if any(c.isdigit() for c in m.group(1)):
                    out.append((m.start(1), m.end(1), pri))
            elif _is_basic_credential(text[m.start(2) : m.end(2)]):
                out.append((m.start(2), m.end(2), pri))

    def _curl_user(self, text: str, low: str, out: list[Span], hits: Hits) -> None:
        if "curl" not in low:
            return
        pri = self._pri["password"]
        for m in r.CURL_USER.finditer(text):
            if m.start() and not text[m.start() - 1].isspace() and not self._loose:
                continue
            if not is_placeholder(m.group(1)):
                out.append((m.start(1), m.end(1), pri))

    def _emails(self, text: str, low: str, out: list[Span], hits: Hits) -> None:
        pri = self._pri["email"]
        at = text.find("@")
        while at != -1:
            m = r.EMAIL_DOMAIN.match(text, at)
            if m is not None:
                span = self._email_span(text, low, at, m.end(), m.group(1).lower())
                if span is not None:
                    out.append((span[0], span[1], pri))
            at = text.find("@", at + 1)

    def _email_span(
        self, text: str, low: str, at: int, end: int, domain: str
    ) -> tuple[int, int] | None:
        start = at
        while start > 0 and at - start < 64 and text[start - 1] in r.EMAIL_LOCAL_CHARS:
            start -= 1
        if start and text[start - 1] == "\\":
            start += 1  # "\njane@..." inside an escaped string: n is part of the escape
        while start < at and text[start] == ".":
            start += 1
        if start == at or text[at - 1] == ".":
            return None
        if domain.rsplit(".", 1)[-1] in r.FILE_EXTENSION_TLDS:
            return None
        if low[start:end] in self._allow_emails or any(
            domain == d or domain.endswith("." + d) for d in self._allow_domains
        ):
            return None
        window = text[max(0, start - 256) : start]
        if window.endswith("://") or _URL_USERINFO_END.search(window):
            return None  # scheme://user@host or scheme://user:pass@host: a URL, not mail
        return start, end

    def _ipv4(self, text: str, low: str, out: list[Span], hits: Hits) -> None:
        pri = self._pri["private_ipv4"]
        loopback = self._loopback
        n = len(text)
        for m in r.IPV4.finditer(text):
            start, end = m.span()
            if start and not self._loose and (text[start - 1] == "." or not _word_starts(
                text, start
            )):
                continue
            if end < n and (
                text[end].isdigit() or (text[end] == "." and text[end + 1 : end + 2].isdigit())
            ):
                continue
            a = int("1" + m.group(1))
            b, c, d = int(m.group(2)), int(m.group(3)), int(m.group(4))
            if b > 255 or c > 255 or d > 255:
                continue
            if (
                a == 10
                or (a == 172 and 16 <= b <= 31)
                or (a == 192 and b == 168)
                or (a == 169 and b == 254)
                or (a == 100 and 64 <= b <= 127)
                or (a == 127 and loopback)
            ) and not _generic_range(text, start, end):
                out.append((start, end, pri))

    def _ipv6(self, text: str, low: str, out: list[Span], hits: Hits) -> None:
        pri = self._pri["private_ipv6"]
        for m in r.IPV6_CANDIDATE.finditer(low):
            start = m.start()
            if start and low[start - 1] in _HEXISH and not self._loose and not (
                start >= 2 and low[start - 2] == "\\"  # "\nfd00::1" inside escaped text
            ):
                continue
            end = ipv6_prefix_end(low, start, m.end())
            if end is not None and not _generic_range(low, start, end):
                out.append((start, end, pri))
        if self._loopback:
            for m in r.IPV6_LOOPBACK.finditer(low):
                start = m.start()
                if start and low[start - 1] in _HEXISH and low[start - 2 : start - 1] != "\\":
                    continue
                out.append((m.start(), m.end(), pri))

    def _cards(self, text: str, low: str, out: list[Span], hits: Hits) -> None:
        pri = self._pri["credit_card"]
        shape = text.encode("ascii", "replace").translate(_CARD_TABLE)
        n = len(text)
        for m in _CARD_SHAPE.finditer(shape):
            start, end = m.span()
            if end < n and text[end].isdigit():
                continue
            if start and not self._loose and (
                text[start - 1] in ".," or not _word_starts(text, start)
            ):
                continue
            if text[start] not in "23456":
                continue  # no issuer prefix starts with 0, 1, 7, 8 or 9
            number = text[start:end]
            grouped = not number.isdigit()
            digits = number.replace(" ", "").replace("-", "") if grouped else number
            if card_shape_ok(digits, grouped) and card_number_ok(digits):
                out.append((start, end, pri))

    def _entropy(self, text: str, low: str, out: list[Span], hits: Hits) -> None:
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

    def _key_values(self, text: str, low: str, out: list[Span], hits: Hits) -> None:
        found = [(kw, hits[gid]) for gid, kw in self._keyword_ids if gid in hits]
        if found:
            assignments.scan(text, self._kv_rules, out, found)


def _generic_range(text: str, start: int, end: int) -> bool:
    """"10.0.0.0/8", "fc00::/7": a private range named in prose or code, not an address."""
    suffix = _CIDR_SUFFIX.match(text, end)
    return suffix is not None and text[start : suffix.end()] in _GENERIC_RANGES


def _is_basic_credential(token: str) -> bool:
    """RFC 7617: base64 of "user-id:password" (printable, with a colon after the user)."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    if b":" not in raw[1:]:
        return False
    try:
        return raw.decode("utf-8").isprintable()
    except UnicodeDecodeError:
        return False
