"""keys.classify_key and the cheap tail check the key = value scan uses before it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.redaction.assignments import KEYWORDS
from pipeline.redaction.keys import KeyKind, classify_key, tail_may_be_secret

WORDS = ["password", "passwd", "pass", "pwd", "secret", "token", "key", "api", "access",
         "private", "auth", "authorization", "credentials", "db", "user", "name", "id", "url",
         "count", "hash", "passed", "tokens", "keyboard", "author", "client", "my", "x", "aws"]


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("password", KeyKind.PASSWORD),
        ("DB_PASSWORD", KeyKind.PASSWORD | KeyKind.ENV),
        ("dbPassword", KeyKind.PASSWORD),
        ("spring.datasource.password", KeyKind.PASSWORD),
        ("--password", KeyKind.PASSWORD),
        ("api_key", KeyKind.SECRET),
        ("X-Api-Key", KeyKind.SECRET),
        ("ANTHROPIC_API_KEY", KeyKind.SECRET | KeyKind.ENV),
        ("clientSecret", KeyKind.SECRET),
        ("aws_secret_access_key", KeyKind.SECRET | KeyKind.AWS_SECRET),
        ("SecretAccessKey", KeyKind.SECRET | KeyKind.AWS_SECRET),
        ("Authorization", KeyKind.AUTHORIZATION),
        ("proxy-authorization", KeyKind.AUTHORIZATION),
        ("DB_PASS", KeyKind.PASSWORD | KeyKind.ENV),
        ("smtp_pass", KeyKind.PASSWORD),
    ],
)
def test_secret_names(key: str, kind: KeyKind) -> None:
    assert classify_key(key) == kind


@pytest.mark.parametrize(
    "key",
    ["PWD", "pass", "first_pass", "bypass", "max_tokens", "token_count", "tokenizer",
     "secret_name", "api_key_id", "password_reset_url", "public_key", "is_secret",
     "input_token", "author", "keyboard", "GIT_ASKPASS", "SSH_AUTH_SOCK", "TokenURL",
     "secret_key_ref", "auth_type", "csrf_token", "token_count_request"],
)
def test_names_about_secrets_are_not_secret_names(key: str) -> None:
    assert classify_key(key) == KeyKind.NONE


key_parts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=4)
styles = st.sampled_from(["snake", "kebab", "dot", "upper", "camel"])


def join(parts: list[str], style: str) -> str:
    if style == "camel":
        return parts[0] + "".join(p.capitalize() for p in parts[1:])
    sep = {"snake": "_", "kebab": "-", "dot": ".", "upper": "_"}[style]
    key = sep.join(parts)
    return key.upper() if style == "upper" else key


@settings(max_examples=2000, deadline=None)
@given(parts=key_parts, style=styles)
def test_tail_check_never_rejects_a_secret_name(parts: list[str], style: str) -> None:
    """The scan only classifies a key when the tail from one of its keywords passes."""
    key = join(parts, style)
    if classify_key(key) == KeyKind.NONE:
        return
    low = key.lower()
    tails = [key[i:] for kw in KEYWORDS for i in range(len(low)) if low.startswith(kw, i)]
    assert any(tail_may_be_secret(t) for t in tails), key
