"""The prefilter only skips scans that would have found nothing.

The reference is the same SpanFinder with ``prefilter=False`` (every scan on every text).
Over a generated corpus of a few thousand strings (planted secrets of every rule in ordinary
contexts, an example for every literal and pattern of the prefilter, case changes, non-ASCII
characters), both must return the very same spans. And the corpus must be able to tell: with
any one literal or pattern taken out of its group, some span goes missing.
"""

from __future__ import annotations

import platform
import random
import sys
import threading
from collections.abc import Iterator

import pytest

from pipeline.redaction import corpus
from pipeline.redaction import prefilter as pf
from pipeline.redaction.config import DEFAULT_ALLOW_EMAIL_DOMAINS, DEFAULT_ALLOW_EMAILS
from pipeline.redaction.detectors import Span, SpanFinder
from pipeline.redaction.rules import RULES
from pipeline.redaction.samples import SECRET_MAKERS

NAMES = [rule.name for rule in RULES]
PRIORITY = {name: i for i, name in enumerate(NAMES)}
DEFAULT_ON = frozenset(rule.name for rule in RULES if rule.default_enabled)
ALL_ON = frozenset(NAMES)

# One text per literal or pattern alternative, matched by the scan of its group and holding
# no other literal of that group (both checked below). Keyed by (group, literal or index).
EXAMPLES: dict[tuple[str, str], str] = {
    ("private_key", "-----begin"): "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx1y2z3w4"
    "v5u6t7s8\n-----END RSA PRIVATE KEY-----",
    ("sk_tokens", "sk-"): "sk-proj-Zq9xW3vB7nM2kL5pR8tY1uE4",
    ("a_tokens", "a3t"): "A3TXQ7B2N5M8K4L6P9R3",
    ("a_tokens", "akia"): "AKIAQ7B2N5M8K4L6P9R3",
    ("a_tokens", "asia"): "ASIAQ7B2N5M8K4L6P9R3",
    ("a_tokens", "abia"): "ABIAQ7B2N5M8K4L6P9R3",
    ("a_tokens", "acca"): "ACCAQ7B2N5M8K4L6P9R3",
    ("a_tokens", "aiza"): "AIzaSyQ7b2n5m8k4l6p9r3t1w0x2y4z6v8u0q",
    ("g_tokens", "ghp_"): "ghp_Zq9xW3vB7nM2kL5pR8tY1uE4oI6aS0dF2",
    ("g_tokens", "gho_"): "gho_Zq9xW3vB7nM2kL5pR8tY1uE4oI6aS0dF2",
    ("g_tokens", "ghu_"): "ghu_Zq9xW3vB7nM2kL5pR8tY1uE4oI6aS0dF2",
    ("g_tokens", "ghs_"): "ghs_Zq9xW3vB7nM2kL5pR8tY1uE4oI6aS0dF2",
    ("g_tokens", "ghr_"): "ghr_Zq9xW3vB7nM2kL5pR8tY1uE4oI6aS0dF2",
    ("g_tokens", "github_pat_"): "github_pat_11AZq9xW3vB7nM2kL5pR8tY1uE4oI6aS0dF2",
    ("g_tokens", "glpat-"): "glpat-Zq9xW3vB7nM2kL5pR8tY1",
    ("g_tokens", "gldt-"): "gldt-Zq9xW3vB7nM2kL5pR8tY1",
    ("g_tokens", "glptt-"): "glptt-0123456789abcdef0123456789abcdef01234567",
    ("g_tokens", "glrt-"): "glrt-Zq9xW3vB7nM2kL5pR8tY1",
    ("g_tokens", "glft-"): "glft-Zq9xW3vB7nM2kL5pR8tY1",
    ("g_tokens", "glimt-"): "glimt-Zq9xW3vB7nM2kL5pR8tY1",
    ("g_tokens", "glagent-"): "glagent-Zq9xW3vB7nM2kL5pR8tY1",
    ("g_tokens", "gloas-"): "gloas-Zq9xW3vB7nM2kL5pR8tY1",
    ("g_tokens", "glsoat-"): "glsoat-Zq9xW3vB7nM2kL5pR8tY1",
    ("g_tokens", "glffct-"): "glffct-Zq9xW3vB7nM2kL5pR8tY1",
    ("g_tokens", "glcbt-"): "glcbt-Zq9xW3vB7nM2kL5pR8tY1",
    ("gitlab_runner", "gr1348941"): "GR1348941Zq9xW3vB7nM2kL5pR8tY1",
    ("x_tokens", "xox"): "xoxb-1234567890-Zq9xW3vB7nM2",
    ("x_tokens", "xapp-"): "xapp-1-A0Zq9xW3vB7nM2-123",
    ("slack_webhook", "hooks.slack.com/"): "https://hooks.slack.com/services/T0ZQ9XW3V/B7NM2KL5P/"
    "R8tY1uE4oI6aS0dF2gH4jK6",
    ("stripe_webhook", "whsec_"): "whsec_Zq9xW3vB7nM2kL5pR8tY1uE4oI6aS0dF2",
    ("jwt", ".ey"): "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlMTIz",
    ("stripe", "k_test_"): "sk_test_Zq9xW3vB7nM2kL5pR8tY1",
    ("stripe", "k_live_"): "rk_live_Zq9xW3vB7nM2kL5pR8tY1",
    ("stripe", "k_prod_"): "sk_prod_Zq9xW3vB7nM2kL5pR8tY1",
    ("bare_auth", "bearer"): "BEARER Zq9xW3vB7nM2kL5",
    ("bare_auth", "basic"): "Basic YWxpY2U6czNjcjN0UGFzcw==",
    ("curl_user", "curl"): "CURL -u admin:Zq9xW3vB7nM2 api.internal",
    ("keyword:pass", "pass"): "db_pass=Zq9xW3vB7nM2",
    ("keyword:pwd", "pwd"): "DB_PWD=Zq9xW3vB7nM2",
    ("keyword:secret", "secret"): "client_secret=Zq9xW3vB7nM2",
    ("keyword:token", "token"): '"access_token": "Zq9xW3vB7nM2"',
    ("keyword:key", "key"): "--api-key Zq9xW3vB7nM2",
    ("keyword:credential", "credential"): "CREDENTIAL: Zq9xW3vB7nM2",
    ("keyword:auth", "auth"): "Authorization: Token Zq9xW3vB7nM2",
    ("url_password", "0"): "postgres://admin:Zq9x\u00e9W3v\u2603B7@db.internal:5432/app",
    ("email", "0"): "Jane.Doe@Corp-Mail.IO",
    ("ipv4", "0"): "10.1.2.3",
    ("ipv4", "1"): "172.016.5.4",
    ("ipv4", "2"): "192.168.1.20",
    ("ipv4", "3"): "169.254.3.4",
    ("ipv4", "4"): "100.064.0.1",
    ("ipv6", "0"): "FD12:3456:789A::9",
    ("ipv6", "1"): "feb3::2",
    ("cards", "0"): "4111111111111111",
    ("cards", "1"): "5500-0000-0000-0004",
    ("cards", "2"): "3782 822463 10005",
}
LOOPBACK_EXAMPLES: dict[tuple[str, str], str] = {
    ("ipv4", "l0"): "127.0.0.1",
    ("ipv6", "l0"): "::1",
}

LEFT = ["", " ", "\n", "(", '"', "'", "= ", ": ", "\\n", "x", "\u00e9", "\u212a"]
RIGHT = ["", " ", "\n", ")", '"', "'", ",", ".", "\\n", "x", "\u00e9", "0"]
ODD = ["\u212a", "\u0130", "\u00e9", "\u00df", "\u2603", "\u2003", "\xa0", "\x85", "\u03a3", "?"]


def _finder(prefilter: bool, *, loose: bool = False, all_rules: bool = False) -> SpanFinder:
    return SpanFinder(
        ALL_ON if all_rules else DEFAULT_ON,
        PRIORITY,
        redact_loopback=all_rules,
        allow_emails=frozenset(DEFAULT_ALLOW_EMAILS),
        allow_email_domains=DEFAULT_ALLOW_EMAIL_DOMAINS,
        entropy_threshold=4.5,
        entropy_min_length=20,
        loose=loose,
        prefilter=prefilter,
    )


CONFIGS = [
    {"loose": False, "all_rules": False},
    {"loose": True, "all_rules": False},
    {"loose": False, "all_rules": True},
]


def _lower(text: str) -> str:
    low = text.lower()
    if len(low) != len(text):  # as the engine does: keep offsets aligned
        low = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    return low


def _mangle(rng: random.Random, text: str) -> str:
    """Case changes and stray non-ASCII characters, inside secrets too."""
    roll = rng.random()
    if roll < 0.15:
        text = text.upper()
    elif roll < 0.25:
        text = text.swapcase()
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        i = rng.randrange(len(text) + 1)
        text = text[:i] + rng.choice(ODD) + text[i + rng.randint(0, 1) :]
    return text


def _corpus() -> list[str]:
    rng = random.Random(20261127)
    examples = list(EXAMPLES.values()) + list(LOOPBACK_EXAMPLES.values())
    texts = [f"{rng.choice(LEFT)}{e}{rng.choice(RIGHT)}" for e in examples]
    texts += [
        f"{corpus.benign_text(rng, 60)} {rng.choice(LEFT)}{e}{rng.choice(RIGHT)} ok" for e in examples
    ]
    makers = sorted(SECRET_MAKERS)
    while len(texts) < 3000:
        parts = []
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.5:
                parts.append(corpus.benign_text(rng, rng.randint(10, 200)))
            if rng.random() < 0.6:
                snippet = SECRET_MAKERS[rng.choice(makers)](rng)[0]
            else:
                snippet = rng.choice(examples)
            parts.append(f"{rng.choice(LEFT)}{_mangle(rng, snippet)}{rng.choice(RIGHT)}")
        texts.append(("\x00" if rng.random() < 0.3 else " ").join(parts))
    return texts


CORPUS = _corpus()


def _spans(finder: SpanFinder) -> Iterator[list[Span]]:
    for text in CORPUS:
        yield finder.find(text, _lower(text))


@pytest.fixture(scope="module")
def references() -> list[list[list[Span]]]:
    return [list(_spans(_finder(False, **conf))) for conf in CONFIGS]


def _differs(references: list[list[list[Span]]]) -> bool:
    """Whether any configuration's prefiltered spans differ from its reference."""
    for conf, expected in zip(CONFIGS, references, strict=True):
        for got, want in zip(_spans(_finder(True, **conf)), expected, strict=True):
            if got != want:
                return True
    return False


def test_examples_are_found_and_hold_one_literal_of_their_group() -> None:
    reference = _finder(False, all_rules=True)
    for (group, key), text in (EXAMPLES | LOOPBACK_EXAMPLES).items():
        assert reference.find(text, _lower(text)), (group, text)
        if group in pf.REQUIRED:
            held = [w for w in pf.REQUIRED[group] if w in text.lower()]
            assert held == [key], (group, text, held)
    literals = {(g, w) for g, words in pf.REQUIRED.items() for w in words}
    shapes = {(g, str(i)) for g, alts in pf.SHAPES.items() for i in range(len(alts))}
    loopback = {(g, f"l{i}") for g, alts in pf.LOOPBACK_SHAPES.items() for i in range(len(alts))}
    assert literals | shapes <= set(EXAMPLES)  # also examples of always-searched keywords
    assert set(LOOPBACK_EXAMPLES) == loopback


def test_prefiltered_spans_equal_the_reference(references: list[list[list[Span]]]) -> None:
    found = 0
    for conf, expected in zip(CONFIGS, references, strict=True):
        for text, got, want in zip(CORPUS, _spans(_finder(True, **conf)), expected, strict=True):
            assert got == want, (conf, text)
            found += bool(want)
    assert found > len(CORPUS)  # the corpus is mostly secrets, not a vacuous comparison


def _mutations() -> Iterator[tuple[str, str, str, tuple[str, ...]]]:
    """(table, group, what is taken out, the group without it)."""
    for table, entries in (
        ("REQUIRED", pf.REQUIRED),
        ("SHAPES", pf.SHAPES),
        ("LOOPBACK_SHAPES", pf.LOOPBACK_SHAPES),
    ):
        for group, alternatives in entries.items():
            for item in alternatives:
                yield table, group, item, tuple(a for a in alternatives if a != item)
    # A class that refuses "?" misses secrets with a non-ASCII character in them.
    url = pf.SHAPES["url_password"][0]
    yield "SHAPES", "url_password", "? admitted", (url.replace("#", "#?"),)


@pytest.mark.parametrize(("table", "group", "item", "rest"), list(_mutations()))
def test_each_literal_and_pattern_is_needed(
    references: list[list[list[Span]]],
    monkeypatch: pytest.MonkeyPatch,
    table: str,
    group: str,
    item: str,
    rest: tuple[str, ...],
) -> None:
    monkeypatch.setitem(getattr(pf, table), group, rest)
    assert _differs(references), f"{group} without {item!r}: the corpus cannot tell"


def test_threads_share_a_finder() -> None:
    # Hyperscan scans without the GIL; each thread must get its own scratch space.
    finder = _finder(True)
    expected = list(_spans(_finder(False)))
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(2):
                assert list(_spans(finder)) == expected
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_the_prefilter_is_active_where_pyproject_installs_hyperscan() -> None:
    # Without Hyperscan the finder runs every scan, and every comparison above would pass
    # without testing the prefilter at all.
    if platform.machine() in ("x86_64", "AMD64") or sys.platform == "darwin":
        assert pf.AVAILABLE
    assert (_finder(True)._prefilter is not None) == pf.AVAILABLE


def test_without_hyperscan_every_scan_runs_with_the_same_spans(
    references: list[list[list[Span]]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pf, "AVAILABLE", False)
    finder = _finder(True)
    assert finder._prefilter is None
    assert list(_spans(finder)) == references[0]
