"""Which detectors can possibly match a text: one Hyperscan pass over it.

Every built-in scan that starts from a literal is listed here with what each of its matches
must contain: a set of literals, or for scans whose literals are everywhere ("://", "@",
"fc" in hashes) a looser form of the scan's own pattern. When nothing of a detector's entry
occurs in the text, the detector cannot find anything and is skipped. The key = value scan
gets every occurrence of its keywords from the same pass instead of searching for each. The
pass is a necessary condition only: a hit decides nothing, the detector then runs exactly as
it would without the prefilter.

Everything is searched in ``low`` (the lowercased text, same offsets), handed to Hyperscan as
``encode("ascii", "replace")``: one byte per character, every non-ASCII character becoming
``?``. So: literals are lowercase ASCII without ``?`` (an ASCII literal of a case-sensitive
pattern that occurs in the text occurs lowercased in ``low``; case-insensitive scans already
search ``low``), and a pattern's character class must admit ``?`` wherever the scan's class
admits a non-ASCII character.

high_entropy (its tokens are any run of base64 characters) and deployment patterns
(``extra_patterns``) are not listed and always run. Without Hyperscan (a platform without a
wheel) nothing is skipped: same spans, about a third slower.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.redaction.assignments import KEYWORDS

try:
    import hyperscan
except ImportError:  # pragma: no cover - no wheel for this platform (hyperscan 0.9 has no
    # Linux arm64 one): the SpanFinder then runs every scan, with the same results, slower.
    hyperscan = None  # type: ignore[assignment]

AVAILABLE = hyperscan is not None
"""Whether this process can prefilter; pyproject installs hyperscan where a wheel exists."""

REQUIRED: dict[str, tuple[str, ...]] = {
    # PRIVATE_KEY starts with the literal "-----BEGIN".
    "private_key": ("-----begin",),
    # SK_TOKENS: ANTHROPIC and OPENAI both start with "sk-".
    "sk_tokens": ("sk-",),
    # A_TOKENS: AWS_ACCESS_KEY starts with A3T, AKIA, ASIA, ABIA or ACCA; GOOGLE_API_KEY
    # with AIza.
    "a_tokens": ("a3t", "akia", "asia", "abia", "acca", "aiza"),
    # G_TOKENS: GITHUB gh[pousr]_, GITHUB_FINE_GRAINED github_pat_, GITLAB gl + one of its
    # eleven kinds + "-".
    "g_tokens": (
        "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_",
        "glpat-", "gldt-", "glptt-", "glrt-", "glft-", "glimt-", "glagent-", "gloas-",
        "glsoat-", "glffct-", "glcbt-",
    ),
    # GITLAB_RUNNER_REG starts with "GR1348941".
    "gitlab_runner": ("gr1348941",),
    # X_TOKENS: SLACK_TOKEN starts with "xox", SLACK_APP_TOKEN with "xapp-".
    "x_tokens": ("xox", "xapp-"),
    # SLACK_WEBHOOK starts with "hooks.slack.com/".
    "slack_webhook": ("hooks.slack.com/",),
    # STRIPE_WEBHOOK starts with "whsec_".
    "stripe_webhook": ("whsec_",),
    # JWT: the detector only looks at JWT_PAYLOAD matches, which start with ".ey".
    "jwt": (".ey",),
    # STRIPE: k_ + test, live or prod + _.
    "stripe": ("k_test_", "k_live_", "k_prod_"),
    # BARE_SCHEME (on low): b + "earer" or "asic".
    "bare_auth": ("bearer", "basic"),
    # CURL_USER runs only when "curl" is in low (the detector's own guard).
    "curl_user": ("curl",),
    # The key = value scan looks at every occurrence of each of its keywords: these groups
    # report all of them (POSITIONS), the others only whether they occur.
    **{f"keyword:{kw}": (kw,) for kw in KEYWORDS},
}
POSITIONS = frozenset(f"keyword:{kw}" for kw in KEYWORDS)

# Each entry: every match of the named scan contains a match of one of these Hyperscan
# patterns (bytes, on low as above), the start of the scan's own pattern with bounds relaxed.
SHAPES: dict[str, tuple[str, ...]] = {
    # URL_PASSWORD (on text): ://[^\s:/@?#\x00"'<>]*:([^\s/@?#\x00"'<>]+)@ with "?" admitted
    # (it stands for any non-ASCII character here); Hyperscan's \s is ASCII whitespace, which
    # re's \s also excludes. The classes hold no letters, so case does not matter.
    "url_password": (r"://[^\s:/@#\x00\"'<>]*:[^\s/@#\x00\"'<>]+@",),
    # EMAIL_DOMAIN (on text, [A-Za-z0-9]): "@", a first label of 1 to 63 characters, ".",
    # then the first character of the next label or of the top-level domain.
    "email": (r"@[a-z0-9][a-z0-9-]{0,62}\.[a-z0-9]",),
    # IPV4 (on text; digits and dots are the same in low): the detector keeps a candidate
    # only for first octet 10, 172 with 16-31, 192.168, 169.254, 100 with 64-127 (127 only
    # with redact_loopback, LOOPBACK_SHAPES); the second octet is 1 to 3 digits, so 16 may
    # be written 016. The shape ends at the first digit of the fourth octet.
    "ipv4": (
        r"10\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]",
        r"172\.0?(?:1[6-9]|2[0-9]|3[01])\.[0-9]{1,3}\.[0-9]",
        r"192\.168\.[0-9]{1,3}\.[0-9]",
        r"169\.254\.[0-9]{1,3}\.[0-9]",
        r"100\.(?:0?(?:6[4-9]|[7-9][0-9])|1[01][0-9]|12[0-7])\.[0-9]{1,3}\.[0-9]",
    ),
    # IPV6_CANDIDATE (on low) up to its first colon: f[cd] + 2 hex digits, or fe[89ab] + one.
    "ipv6": (r"f[cd][0-9a-f]{2}:", r"fe[89ab][0-9a-f]:"),
    # Card candidates: _CARD_SHAPE on the digit-shape string (d: ASCII digit, s: space or
    # hyphen; the same characters at the same places in low), up to the first digit of its
    # last group, and the detector drops a candidate not starting with 2, 3, 4, 5 or 6.
    "cards": (
        r"[2-6][0-9]{3}[0-9]{11}",
        r"[2-6][0-9]{3}[ -][0-9]{4}[ -][0-9]{4}[ -][0-9]",
        r"[2-6][0-9]{3}[ -][0-9]{6}[ -][0-9]{4}",
    ),
}

# Added with redact_loopback: 127.0.0.0/8 addresses and IPV6_LOOPBACK ("::1...").
LOOPBACK_SHAPES: dict[str, tuple[str, ...]] = {
    "ipv4": (r"127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]",),
    "ipv6": (r"::1",),
}


def expressions(*, loopback: bool) -> dict[str, list[str]]:
    """Group name -> Hyperscan patterns (any one present: the group is present)."""
    for name, words in REQUIRED.items():
        for word in words:
            if not word or not word.isascii() or word != word.lower() or "?" in word:
                raise ValueError(f"prefilter literal {word!r} of {name!r}: not lowercase ASCII")
    groups: dict[str, list[str]] = {
        name: ["".join(f"\\x{ord(c):02x}" for c in word) for word in words]
        for name, words in REQUIRED.items()
    }
    for table in (SHAPES, LOOPBACK_SHAPES) if loopback else (SHAPES,):
        for name, shapes in table.items():
            groups.setdefault(name, []).extend(shapes)
    return groups


def _record(ident: int, start: int, end: int, flags: int, found: Any) -> None:
    found[ident].append(end)  # found: scan()'s defaultdict (typed object upstream)


class Prefilter:
    """Compiled groups: ``scan(low)`` says which groups occur in ``low``, and where.

    Immutable once built apart from the Hyperscan scratch space, which is kept per thread
    (Hyperscan releases the GIL while scanning, and one scratch may serve one scan at a time).
    """

    def __init__(
        self, groups: Mapping[str, Sequence[str]], positions: frozenset[str] = POSITIONS
    ) -> None:
        self.ids: dict[str, int] = {name: i for i, name in enumerate(groups)}
        patterns: list[bytes] = []
        ids: list[int] = []
        flags: list[int] = []
        for name, alternatives in groups.items():
            for pattern in alternatives:
                patterns.append(pattern.encode("ascii"))
                ids.append(self.ids[name])
                # SINGLEMATCH: reported at most once per scan, where presence is all we need.
                flags.append(0 if name in positions else hyperscan.HS_FLAG_SINGLEMATCH)
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=patterns, ids=ids, elements=len(patterns), flags=flags)
        self._local = threading.local()

    def scan(self, low: str) -> defaultdict[int, list[int]]:
        """Group id -> end offsets of its matches in ``low`` (all of them for ``positions``
        groups, in no guaranteed order; one for the others); groups not found are absent."""
        found: defaultdict[int, list[int]] = defaultdict(list)
        try:
            scratch = self._local.scratch
        except AttributeError:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        # Positional (data, handler, flags, context, scratch): cheaper to parse than keywords.
        self._db.scan(low.encode("ascii", "replace"), _record, 0, found, scratch)
        return found
