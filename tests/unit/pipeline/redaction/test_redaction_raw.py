"""redact_raw: what a dead letter may carry of a message we could not decode."""

from __future__ import annotations

import hashlib
import json

from pipeline.redaction import Redactor, redact_raw

R = Redactor()
GHP = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5"


def zigzag_len(n: int) -> bytes:
    """Avro's length prefix for short strings (one zigzag varint byte)."""
    return bytes([n << 1])


def test_hash_is_of_the_original_bytes_and_text_is_redacted() -> None:
    data = json.dumps({"password": "hunter2x", "note": GHP}).encode()
    digest, excerpt = redact_raw(data, R)
    assert digest == hashlib.sha256(data).hexdigest()
    assert "hunter2x" not in excerpt and GHP not in excerpt
    assert excerpt == '{"password": "***REDACTED:password***", "note": "***REDACTED:github_token***"}'


def test_str_input_hashes_its_utf8_encoding() -> None:
    digest, excerpt = redact_raw("jane@acme.io ✓", R)
    assert digest == hashlib.sha256("jane@acme.io ✓".encode()).hexdigest()
    assert excerpt == "***EMAIL*** ✓"


def test_undecodable_bytes_become_printable_and_secrets_glued_to_binary_are_found() -> None:
    # An Avro map {"password": "hunter2x"}, an int field, and a string field holding a token
    # whose length byte ("P" for 40 characters) sits right before it.
    body = (
        b"\xc3\x01\x8f\xff"
        + zigzag_len(8) + b"password" + zigzag_len(8) + b"hunter2x"
        + b"\x02\x00"
        + zigzag_len(40) + GHP.encode()
        + b"\x00\x02\xfe"
    )
    assert zigzag_len(40) == b"P"
    digest, excerpt = redact_raw(body, R)
    assert digest == hashlib.sha256(body).hexdigest()
    assert "hunter2x" not in excerpt and GHP not in excerpt and GHP[4:20] not in excerpt
    assert excerpt.isprintable()
    assert excerpt == (
        "\ufffd\\x01\ufffd\ufffd\\x10password\\x10***REDACTED:password***\\x02\\x00"
        "P***REDACTED:github_token***\\x00\\x02\ufffd"
    )


def test_excerpt_is_cut_after_redaction_with_a_marker() -> None:
    text = "a" * 100 + " " + GHP + " " + "b" * 5000
    _, excerpt = redact_raw(text, R, max_chars=110)
    assert excerpt.startswith("a" * 100 + " ***REDAC")
    assert "ghp_" not in excerpt
    assert excerpt.endswith(f"…[+{len(text) - len(GHP) + len('***REDACTED:github_token***') - 110} chars]")


def test_method_form_and_default_redactor() -> None:
    assert R.redact_raw(b"x " + GHP.encode()) == redact_raw(b"x " + GHP.encode())
    assert redact_raw(b"")[1] == ""
