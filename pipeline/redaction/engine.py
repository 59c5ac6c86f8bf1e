"""The Redactor: scrub every string of an event and record where it did.

Speed comes from scanning once per event: all strings (values at any depth, list and tuple
items, map keys) are joined with NUL and every rule runs over that one text. No built-in
pattern can match a NUL (rules.py), so a match always lies inside one string; spans are then
mapped back to the strings they belong to. Short strings already seen clean (field names, cwd,
model names) are not scanned again, and an event with no match is returned as a shallow copy
without a second walk.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Any

from pipeline.redaction.config import RedactionSettings
from pipeline.redaction.detectors import Span, SpanFinder
from pipeline.redaction.rules import OWN_TOKEN, RULES
from pipeline.redaction.walk import CLEAN_MAX_LEN, Collector, Rebuilder

_SEP = "\x00"
_CUT_MARGIN = 4096
"""Characters redacted beyond a cut, so a secret straddling it is recognised whole."""
_CLEAN_LIMIT = 16384
"""Bound of the clean-string memory; cleared when exceeded (cheaper than LRU upkeep)."""


def _starts(strings: list[str]) -> list[int]:
    """Offset of each string in the NUL-joined text."""
    starts = [0] * len(strings)
    pos = 0
    for i, s in enumerate(strings):
        starts[i] = pos
        pos += len(s) + 1
    return starts


class Redactor:
    """Compiled redaction for one configuration; build once per process and reuse.

    The only state it keeps is bounded memory (key-name decisions, short strings seen clean),
    which never changes a result, only how fast it comes; share one instance per thread or
    guard it, as a Faust worker (one event loop) naturally does.
    """

    def __init__(self, settings: RedactionSettings | None = None) -> None:
        self.settings = settings = settings or RedactionSettings()
        self._enabled = settings.enabled
        names = [rule.name for rule in RULES] + [p.name for p in settings.extra_patterns]
        self._names = names
        self._priority = {name: i for i, name in enumerate(names)}
        on = {rule.name for rule in RULES if settings.rules.get(rule.name, rule.default_enabled)}
        self.enabled_rules: frozenset[str] = frozenset(on) | {
            p.name for p in settings.extra_patterns
        }
        finder_args: dict[str, Any] = {
            "redact_loopback": settings.redact_loopback,
            "allow_emails": frozenset(settings.allow_emails),
            "allow_email_domains": settings.allow_email_domains,
            "entropy_threshold": settings.entropy_threshold,
            "entropy_min_length": settings.entropy_min_length,
        }
        self._finder = SpanFinder(frozenset(on), self._priority, **finder_args)
        self._loose_finder = SpanFinder(frozenset(on), self._priority, loose=True, **finder_args)
        self._extra = [
            (
                re.compile(p.regex, re.IGNORECASE if p.ignore_case else 0),
                p.group,
                tuple(k.lower() for k in p.keywords),
                self._priority[p.name],
            )
            for p in settings.extra_patterns
        ]
        short = {rule.name: rule.short_token for rule in RULES}
        self._token_body = [short.get(n) or f"REDACTED:{n}" for n in names]
        self._plain_token = [f"***{body}***" for body in self._token_body]
        key = settings.hmac_key.get_secret_value() if settings.hmac_key is not None else ""
        self._hmac_key = key.encode("utf-8") if key else None
        self._allow_values = frozenset(settings.allow_values)
        self._allow_patterns = [re.compile(p) for p in settings.allow_patterns]
        self._allow_paths = settings.allow_paths
        self._skip = frozenset(settings.skip_fields) | {"redacted_fields"}
        self._max = settings.max_field_length
        self._clean: set[str] = set()
        """Short strings known to need no redaction under this configuration (bounded)."""

    # --- text -------------------------------------------------------------------------------

    def redact_text(self, text: str) -> tuple[str, list[str]]:
        """Redacted ``text`` and the names of the rules that fired (priority order)."""
        if not self._enabled or not text:
            return text, []
        cut = len(text) > self._max
        work = text[: self._max + _CUT_MARGIN] if cut else text
        spans = self._spans(work, [0], [work])
        if not spans and not cut:
            return text, []
        new, fired = self._apply(work, spans)
        if cut:
            new = self._cut(new, len(text))
        return new, [self._names[p] for p in sorted(fired)]

    def redact_loose(self, text: str, extra_spans: Iterable[Span] = ()) -> str:
        """``redact_text`` without word-boundary checks, plus caller-found spans (raw.py)."""
        if not self._enabled or not text:
            return text
        cut = len(text) > self._max
        work = text[: self._max + _CUT_MARGIN] if cut else text
        extra = [sp for sp in extra_spans if sp[0] < len(work)]
        spans = self._spans(work, [0], [work], self._loose_finder, extra)
        new, _ = self._apply(work, spans)
        return self._cut(new, len(text)) if cut else new

    def rule_priority_for_key(self, key: str) -> int | None:
        """Priority of the rule that redacts values named ``key`` (None: not a secret name)."""
        return self._finder.rule_for_key(key)

    def redact_raw(self, data: bytes | str, *, max_chars: int = 4096) -> tuple[str, str]:
        """See ``pipeline.redaction.raw.redact_raw``."""
        from pipeline.redaction.raw import redact_raw

        return redact_raw(data, self, max_chars=max_chars)

    # --- events -----------------------------------------------------------------------------

    def redact_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """A new event with every string redacted and the paths appended to redacted_fields.

        The input is never mutated. When nothing needs redacting the result is a shallow copy
        (nested containers shared with the input); otherwise containers are rebuilt.
        """
        existing = event.get("redacted_fields")
        fields = list(existing) if isinstance(existing, list | tuple) else []
        out: dict[str, Any]
        if self._enabled:
            replace, forced = self._event_replacements(event)
            if replace or forced:
                rebuilder = Rebuilder(
                    self._skip, replace, forced, self._finder.rule_for_key, self._allow_paths
                )
                out = rebuilder.rebuild(event)
                known = set(fields)
                for path in rebuilder.changed:
                    if path not in known:
                        known.add(path)
                        fields.append(path)
                out["redacted_fields"] = fields
                return out
        out = dict(event)
        out["redacted_fields"] = fields
        return out

    def _event_replacements(
        self, event: dict[str, Any]
    ) -> tuple[dict[str, str], dict[tuple[int, str], str]]:
        """What to swap in the event: by content, and by (key rule, content) for values under
        secret-named keys. Empty dicts when the event is clean."""
        walk = Collector(self._skip, self._finder.rule_for_key, self._finder.key_cache, self._clean)
        walk.collect(event)
        strings, forced = walk.strings, walk.forced
        cuts: dict[int, str] = {}
        if walk.total > self._max:
            for i, s in enumerate(strings):
                if len(s) > self._max:
                    cuts[i] = s
                    strings[i] = s[: self._max + _CUT_MARGIN]
        spans = self._spans(_SEP.join(strings), None, strings)
        if not spans and not forced and not cuts:
            self._remember_clean(strings, ())
            return {}, {}
        starts = _starts(strings)
        per_string = self._split(spans, starts, strings)
        for idx, pri in forced.items():
            span = self._finder.value_span_for_key(pri, strings[idx])
            if span is not None and not self._allowed(strings[idx][span[0] : span[1]]):
                per_string.setdefault(idx, []).append((span[0], span[1], pri))
        replace: dict[str, str] = {}
        forced_replace: dict[tuple[int, str], str] = {}
        for idx in per_string.keys() | cuts.keys():
            original = cuts.get(idx, strings[idx])
            new = strings[idx]
            if idx in per_string:
                new, _ = self._apply(new, per_string[idx])
            if idx in cuts:
                new = self._cut(new, len(original))
            if new != original:
                if idx in forced:
                    forced_replace[(forced[idx], original)] = new
                else:
                    replace[original] = new
        self._remember_clean(strings, per_string.keys() | forced.keys())
        return replace, forced_replace

    def _remember_clean(self, strings: list[str], dirty: Iterable[int]) -> None:
        """Short strings that came through unchanged are skipped in later events."""
        skip = set(dirty)
        if len(self._clean) > _CLEAN_LIMIT:
            self._clean.clear()
        for i, s in enumerate(strings):
            if len(s) <= CLEAN_MAX_LEN and i not in skip:
                self._clean.add(s)

    # --- spans ------------------------------------------------------------------------------

    def _spans(
        self,
        text: str,
        starts: list[int] | None,
        strings: list[str],
        finder: SpanFinder | None = None,
        extra_spans: list[Span] | None = None,
    ) -> list[Span]:
        low = text.lower()
        if len(low) != len(text):
            # A few characters lowercase to two (e.g. U+0130); keep offsets aligned.
            low = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
        spans = (finder or self._finder).find(text, low)
        if extra_spans:
            spans.extend(extra_spans)
        if self._extra and starts is None:
            starts = _starts(strings)
        for rx, group, keywords, pri in self._extra:
            assert starts is not None
            for idx in self._extra_targets(low, keywords, starts, strings):
                base = starts[idx]
                for m in rx.finditer(strings[idx]):
                    s, e = m.span(group)
                    if e > s:
                        spans.append((base + s, base + e, pri))
        if spans and "***" in text:
            # Our own tokens are never redacted again (replays, double processing): drop any
            # match that starts inside one.
            own = [m.span() for m in OWN_TOKEN.finditer(text)]
            if own:
                spans = [sp for sp in spans if not any(a <= sp[0] < b for a, b in own)]
        if spans and (self._allow_values or self._allow_patterns):
            spans = [sp for sp in spans if not self._allowed(text[sp[0] : sp[1]])]
        return spans

    def _extra_targets(
        self, low: str, keywords: tuple[str, ...], starts: list[int], strings: list[str]
    ) -> Iterable[int]:
        if not keywords:
            return range(len(strings))
        hits: set[int] = set()
        for kw in keywords:
            pos = low.find(kw)
            while pos != -1:
                hits.add(bisect.bisect_right(starts, pos) - 1)
                pos = low.find(kw, pos + 1)
        return sorted(hits)

    def _allowed(self, secret: str) -> bool:
        return secret in self._allow_values or any(
            p.fullmatch(secret) for p in self._allow_patterns
        )

    @staticmethod
    def _split(
        spans: list[Span], starts: list[int], strings: list[str]
    ) -> dict[int, list[Span]]:
        out: dict[int, list[Span]] = {}
        for s, e, pri in spans:
            idx = bisect.bisect_right(starts, s) - 1
            # Spans never cross a separator for built-in rules; clip defensively anyway.
            begin = s
            while e > begin:
                base = starts[idx]
                end = min(e, base + len(strings[idx]))
                if end > begin:
                    out.setdefault(idx, []).append((begin - base, end - base, pri))
                idx += 1
                if idx >= len(starts):
                    break
                begin = max(begin, starts[idx])
        return out

    def _apply(self, text: str, spans: list[Span]) -> tuple[str, set[int]]:
        spans.sort()
        fired: set[int] = set()
        pieces: list[str] = []
        last = 0
        i = 0
        while i < len(spans):
            start, end, pri = spans[i]
            fired.add(pri)
            i += 1
            while i < len(spans) and spans[i][0] < end:
                end = max(end, spans[i][1])
                pri = min(pri, spans[i][2])
                fired.add(spans[i][2])
                i += 1
            pieces.append(text[last:start])
            pieces.append(self._token(pri, text[start:end]))
            last = end
        pieces.append(text[last:])
        return "".join(pieces), fired

    def _token(self, pri: int, secret: str) -> str:
        if self._hmac_key is None:
            return self._plain_token[pri]
        digest = hmac.new(self._hmac_key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return f"***{self._token_body[pri]}:{digest.hexdigest()[:8]}***"

    def _cut(self, text: str, original_len: int) -> str:
        return f"{text[: self._max]}…[truncated {original_len - self._max} chars]"
