"""Redactor.redact_event: paths, structure, settings, tokens."""

from __future__ import annotations

import copy
import hashlib
import hmac
from typing import Any

import pytest
from pydantic import SecretStr

from pipeline import model
from pipeline.redaction import ExtraPattern, RedactionSettings, Redactor

GHP = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5"
R = Redactor()


def command_event(**payload: Any) -> dict[str, Any]:
    body = {"binary": "curl", "args": ["-s", "https://api.github.com"], **payload}
    return model.new_event("command.executed", "sess-1", body, metadata={"cwd": "/home/dev"})


def test_brief_example_paths_and_tokens() -> None:
    event = command_event(args=["-H", "Accept: json", f"Authorization: Bearer {GHP}"])
    event["metadata"]["DB_URL"] = "postgres://app:pa55word@db.internal/app"
    out = R.redact_event(event)
    assert out["payload"][1]["args"][2] == "Authorization: Bearer ***REDACTED:github_token***"
    assert out["metadata"]["DB_URL"] == "postgres://app:***REDACTED:url_password***@db.internal/app"
    assert out["redacted_fields"] == ["/metadata/DB_URL", "/payload/args/2"]
    assert out["payload"][0] == model.COMMAND_EVENT


def test_input_is_not_mutated_and_output_is_a_new_dict() -> None:
    event = command_event(stdout_excerpt=f"token={GHP}")
    event["redacted_fields"] = ["/earlier"]
    before = copy.deepcopy(event)
    out = R.redact_event(event)
    assert event == before
    assert out is not event and out["redacted_fields"] is not event["redacted_fields"]
    assert out["redacted_fields"] == ["/earlier", "/payload/stdout_excerpt"]


def test_clean_event_comes_back_equal_with_an_empty_list_created() -> None:
    event = command_event(stdout_excerpt="3 passed in 0.12s")
    del event["redacted_fields"]
    out = R.redact_event(event)
    assert out == {**event, "redacted_fields": []}
    assert "redacted_fields" not in event


def test_existing_paths_are_kept_and_not_duplicated() -> None:
    event = command_event(stdout_excerpt=f"{GHP}")
    event["redacted_fields"] = ["/payload/stdout_excerpt", "/x"]
    assert R.redact_event(event)["redacted_fields"] == ["/payload/stdout_excerpt", "/x"]


def test_join_keys_are_never_touched() -> None:
    event = command_event()
    event["session_id"] = "jane@acme.io"  # even when it looks like personal data
    event["event_type"] = "password=hunter2x"
    out = R.redact_event(event)
    assert out["session_id"] == "jane@acme.io" and out["event_type"] == "password=hunter2x"
    assert out["redacted_fields"] == []


def test_skip_fields_are_configurable() -> None:
    redactor = Redactor(RedactionSettings(skip_fields=("event_id",)))
    event = command_event()
    event["session_id"] = "jane@acme.io"
    assert redactor.redact_event(event)["session_id"] == "***EMAIL***"


def test_nested_structures_lists_tuples_and_map_keys() -> None:
    event = {
        "event_id": "e",
        "payload": ("dev.agentwatch.OtherEvent", {
            "name": "x",
            "items": [{"deep": ["ok", ("tuple", f"k {GHP}")]}],
            "env": {"GITHUB_TOKEN": "plainvalue1", f"{GHP}": 3, "safe": "ok"},
            "n": 5,
            "none": None,
        }),
    }
    out = R.redact_event(event)
    body = out["payload"][1]
    assert body["items"][0]["deep"][1] == ("tuple", "k ***REDACTED:github_token***")
    assert body["env"]["GITHUB_TOKEN"] == "***REDACTED:env_secret***"
    assert "***REDACTED:github_token***" in body["env"] and body["env"]["***REDACTED:github_token***"] == 3
    assert body["n"] == 5 and body["none"] is None
    assert out["redacted_fields"] == [
        "/payload/items/0/deep/1/1",
        "/payload/env/GITHUB_TOKEN",
        "/payload/env/***REDACTED:github_token***",
    ]


def test_sensitive_map_keys_redact_whole_values_but_keep_authorization_scheme() -> None:
    event = {"metadata": {
        "password": "correct horse battery staple",
        "Authorization": "Bearer abc",
        "api_key_name": "prod-key",
        "token": "",
        "DB_PASSWORD": "${DB_PASSWORD}",
    }}
    meta = R.redact_event(event)["metadata"]
    assert meta == {
        "password": "***REDACTED:password***",
        "Authorization": "Bearer ***REDACTED:authorization_header***",
        "api_key_name": "prod-key",
        "token": "",
        "DB_PASSWORD": "${DB_PASSWORD}",
    }


def test_json_pointer_escaping_of_keys() -> None:
    out = R.redact_event({"metadata": {"a/b~c": "jane@acme.io"}})
    assert out["redacted_fields"] == ["/metadata/a~1b~0c"]


def test_two_secret_keys_redacted_to_the_same_token_do_not_collide() -> None:
    other = "ghp_" + "Z" * 36
    out = R.redact_event({"m": {GHP: "a", other: "b"}})
    assert out["m"] == {"***REDACTED:github_token***": "a", "***REDACTED:github_token***#": "b"}


def test_hmac_suffix_is_stable_per_secret_and_keyed() -> None:
    key = "deployment-key"
    redactor = Redactor(RedactionSettings(hmac_key=SecretStr(key)))
    digest = hmac.new(key.encode(), GHP.encode(), hashlib.sha256).hexdigest()[:8]
    new, _ = redactor.redact_text(f"{GHP} and again {GHP}, mail jane@acme.io")
    email = hmac.new(key.encode(), b"jane@acme.io", hashlib.sha256).hexdigest()[:8]
    assert new == (f"***REDACTED:github_token:{digest}*** and again "
                   f"***REDACTED:github_token:{digest}***, mail ***EMAIL:{email}***")
    other = Redactor(RedactionSettings(hmac_key=SecretStr("another-key")))
    assert other.redact_text(GHP)[0] != redactor.redact_text(GHP)[0]


def test_redaction_is_idempotent_with_and_without_hmac() -> None:
    text = f"password=hunter2x {GHP} jane@acme.io 10.1.2.3 4111 1111 1111 1111"
    for redactor in (R, Redactor(RedactionSettings(hmac_key=SecretStr("k")))):
        once, _ = redactor.redact_text(text)
        assert redactor.redact_text(once) == (once, [])


def test_allow_lists() -> None:
    redactor = Redactor(RedactionSettings(
        allow_values=(GHP,),
        allow_patterns=(r"10\.9\.\d+\.\d+",),
        allow_email_domains=("acme.io",),
        allow_paths=("/payload/path", "/metadata/*"),
    ))
    text = f"{GHP} 10.9.1.1 10.8.1.1 jane@acme.io joe@corp.com"
    assert redactor.redact_text(text)[0] == (
        f"{GHP} 10.9.1.1 ***PRIVATE_IP*** jane@acme.io ***EMAIL***"
    )
    event = {"payload": ("x.FileEvent", {"path": "/home/joe@corp.com/x", "reason": "joe@corp.com"}),
             "metadata": {"owner": "joe@corp.com"}}
    out = redactor.redact_event(event)
    assert out["payload"][1] == {"path": "/home/joe@corp.com/x", "reason": "***EMAIL***"}
    assert out["metadata"] == {"owner": "joe@corp.com"}
    assert out["redacted_fields"] == ["/payload/reason"]


def test_extra_patterns_with_and_without_keywords() -> None:
    redactor = Redactor(RedactionSettings(extra_patterns=(
        ExtraPattern(name="acme_key", regex=r"acme_[a-z0-9]{12}", keywords=("acme_",)),
        ExtraPattern(name="ticket", regex=r"secret ticket (\d+)", group=1, ignore_case=True),
    )))
    out = redactor.redact_event({"a": "use acme_0123456789ab now", "b": ["Secret Ticket 4242"]})
    assert out["a"] == "use ***REDACTED:acme_key*** now"
    assert out["b"] == ["Secret Ticket ***REDACTED:ticket***"]
    assert redactor.redact_text("ACME_0123456789AB") == ("ACME_0123456789AB", [])


def test_master_switch_off_passes_events_through() -> None:
    redactor = Redactor(RedactionSettings(enabled=False))
    event = command_event(stdout_excerpt=GHP)
    out = redactor.redact_event(event)
    assert out == {**event, "redacted_fields": []} and out is not event
    assert redactor.redact_text(GHP) == (GHP, [])


def test_long_fields_are_cut_after_redacting_past_the_cut() -> None:
    redactor = Redactor(RedactionSettings(max_field_length=1024))
    text = "x" * 1020 + " " + GHP + " " + "y" * 5000
    out = redactor.redact_event({"a": text})
    cut = out["a"]
    # The token straddled the cut: it was redacted whole, not split into a visible prefix.
    assert "ghp_" not in cut and GHP[4:12] not in cut
    assert cut.startswith("x" * 1020 + " ***")
    assert cut.endswith(f"…[truncated {len(text) - 1024} chars]")
    assert out["redacted_fields"] == ["/a"]
    new, fired = redactor.redact_text(text)
    assert new == cut and fired == ["github_token"]


def test_strings_with_nul_are_handled_like_separate_strings() -> None:
    out = R.redact_event({"a": f"x\x00{GHP}\x00y", "b": "ok"})
    assert out["a"] == "x\x00***REDACTED:github_token***\x00y" and out["b"] == "ok"


@pytest.mark.parametrize("value", [b"bytes ghp_x", 12345678901234567, 3.5, True, None])
def test_non_string_leaves_are_kept_as_they_are(value: object) -> None:
    out = R.redact_event({"a": value, "b": [value]})
    assert out["a"] is value and out["b"] == [value]


def test_rules_fired_are_reported_in_priority_order() -> None:
    _, fired = R.redact_text(f"jane@acme.io {GHP} password=abc123x")
    assert fired == ["github_token", "password", "email"]
