"""The command hook adds the configured user id to the hook body (privacy.user_id)."""

from __future__ import annotations

import json

import pytest

from producers.hook_cmd import load_config, with_user


@pytest.mark.parametrize("body", [b'{"session_id": "s", "hook_event_name": "Stop"}', b"{}",
                                  b'  {\n "a": [1, {"b": "}"}]}\n', b'{ }'])
@pytest.mark.parametrize("user", ["alice", 'we"ird\\name', "Zoë Ünicode"])
def test_the_user_is_a_member_of_the_same_object(body: bytes, user: str) -> None:
    out = json.loads(with_user(body, user))
    assert out == {**json.loads(body), "user_id": user}


def test_a_user_id_in_the_body_wins_and_odd_input_is_untouched() -> None:
    assert json.loads(with_user(b'{"user_id": "bob"}', "alice"))["user_id"] == "bob"
    assert with_user(b"[1]", "alice") == b"[1]"
    assert with_user(b"{}", "") == b"{}"
    assert with_user(b"{}", "a\nb") == b"{}"


def test_the_id_comes_from_the_privacy_section() -> None:
    assert load_config({"AGENTWATCH_PRIVACY__USER_ID": "carol"}).user_id == "carol"
    assert load_config({}).user_id == ""
