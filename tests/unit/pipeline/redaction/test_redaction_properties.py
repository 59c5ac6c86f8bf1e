"""Property tests: planted secrets of every rule never survive, anywhere in an event.

Secrets come from pipeline.redaction.samples.SECRET_MAKERS (driven by hypothesis' randoms) and
are planted at random places of random events: as whole values, inside longer strings between
ordinary delimiters, inside JSON text carried in a string, as map keys, and as the value of a
secret-sounding map key.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from pipeline.redaction import RedactionSettings, Redactor
from pipeline.redaction.samples import SECRET_MAKERS

R = Redactor()
H = Redactor(RedactionSettings(hmac_key=SecretStr("k3y")))

LEFT = [" ", "\n", "\t", "(", "[", "{", '"', "'", ", ", "; ", "| ", "> ", "\\n"]
RIGHT = [" ", "\n", "\t", ")", "]", "}", '"', "'", ",", ";", " |", "&", "\\n"]
SECRET_KEYS = ["password", "DB_PASSWORD", "api_key", "client_secret", "GITHUB_TOKEN",
               "accessToken", "Authorization", "aws_secret_access_key", "passphrase"]

text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=24)
safe_key = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6).filter(
    lambda k: not k.isdigit() or len(k) < 13
)
leaf = st.none() | st.booleans() | st.integers() | text
tree = st.recursive(
    leaf,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(safe_key, children, max_size=4)
    | st.tuples(children, children),
    max_leaves=14,
)
events = st.fixed_dictionaries(
    {
        "event_id": st.uuids().map(str),
        "session_id": text,
        "event_type": st.just("command.executed"),
        "timestamp": st.integers(0, 2**62),
        "metadata": st.dictionaries(safe_key, text, max_size=5),
        "payload": st.tuples(
            st.just("dev.agentwatch.OtherEvent"), st.dictionaries(safe_key, tree, max_size=5)
        ),
    },
    optional={"redacted_fields": st.lists(st.just("/earlier"), max_size=1)},
)


def containers(node: Any) -> Iterator[dict[Any, Any] | list[Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from containers(value)
    elif isinstance(node, list):
        yield node
        for item in node:
            yield from containers(item)
    elif isinstance(node, tuple):
        for item in node:
            yield from containers(item)


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str):
                yield key
            yield from strings(value)
    elif isinstance(node, list | tuple):
        for item in node:
            yield from strings(item)


def plant(event: dict[str, Any], rule: str, rng: random.Random) -> list[str]:
    """Put 1-3 secrets of ``rule`` into ``event``; return the secrets (must not survive)."""
    secrets = []
    for _ in range(rng.randint(1, 3)):
        snippet, secret = SECRET_MAKERS[rule](rng)
        secrets.append(secret)
        way = rng.randrange(5)
        if way == 1:
            snippet = rng.choice(["", "ok", "x = 1"]) + rng.choice(LEFT) + snippet + rng.choice(
                RIGHT) + rng.choice(["", "done", "\nnext line"])
        elif way == 2:
            snippet = json.dumps({"tool_input": {"command": f"run {snippet} now"}})
        targets = [c for c in containers(event["payload"][1])] + [event["metadata"]]
        target = rng.choice(targets)
        if way == 3:
            target = rng.choice([c for c in targets if isinstance(c, dict)])
            target[snippet] = rng.choice([1, "v", None])
        elif way == 4 and rule in ("password", "secret_assignment", "env_secret"):
            target = rng.choice([c for c in targets if isinstance(c, dict)])
            target[rng.choice(SECRET_KEYS)] = secret
        elif isinstance(target, dict):
            target[f"k{rng.randrange(10**6)}"] = snippet
        else:
            target.insert(rng.randrange(len(target) + 1), snippet)
    return secrets


def survives(secret: str, out: dict[str, Any]) -> str | None:
    forms = {secret, json.dumps(secret)[1:-1]}
    for s in strings(out):
        for form in forms:
            if form in s:
                return s
    return None


@pytest.mark.parametrize("rule", sorted(SECRET_MAKERS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=events, rng=st.randoms(use_true_random=False))
def test_planted_secrets_never_survive(rule: str, event: dict[str, Any], rng: random.Random) -> None:
    secrets = plant(event, rule, rng)
    before = copy.deepcopy(event)
    for redactor in (R, H):
        out = redactor.redact_event(event)
        for secret in secrets:
            assert survives(secret, out) is None, (rule, secret)
        assert out["redacted_fields"], rule
        assert event == before  # the input is never mutated
        again = redactor.redact_event(out)  # replays: redacting twice changes nothing more
        assert list(strings(again)) == list(strings(out))
        assert again["redacted_fields"] == out["redacted_fields"]


def pairs(before: Any, after: Any, key: Any = None) -> Iterator[tuple[str, str, bool, Any]]:
    """(input string, output string, is a map key, the map key above a value) in walk order."""
    if isinstance(before, str):
        yield before, after, False, key
    elif isinstance(before, dict):
        for (k, v), (k2, v2) in zip(before.items(), after.items(), strict=True):
            if isinstance(k, str):
                yield k, k2, True, None
            yield from pairs(v, v2, k)
    elif isinstance(before, list | tuple):
        for item, item2 in zip(before, after, strict=True):
            yield from pairs(item, item2)


@settings(max_examples=150, deadline=None)
@given(event=events, rng=st.randoms(use_true_random=False), rules=st.lists(
    st.sampled_from(sorted(SECRET_MAKERS)), min_size=0, max_size=4))
def test_event_redaction_equals_redacting_each_string(
    event: dict[str, Any], rng: random.Random, rules: list[str]
) -> None:
    """The one-scan-per-event shortcut gives exactly what per-string redaction gives, apart
    from the two event-level rules: values under secret-named keys, and renamed-key collisions.
    """
    for rule in rules:
        plant(event, rule, rng)
    out = R.redact_event(event)
    fields = [k for k in event if k not in R.settings.skip_fields and k != "redacted_fields"]
    checked = 0
    for before, after, is_key, parent in pairs(
        {k: event[k] for k in fields}, {k: out[k] for k in fields}
    ):
        if isinstance(parent, str) and R.rule_priority_for_key(parent) is not None:
            continue
        got = after.rstrip("#") if is_key and after != before else after
        assert got == R.redact_text(before)[0]
        checked += 1
    assert checked >= 1
