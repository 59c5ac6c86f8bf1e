"""RedactionSettings: validation, defaults, and reading it from JSON/environment shapes."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.redaction import RULE_NAMES, RULES, ExtraPattern, RedactionSettings, Redactor


def test_defaults() -> None:
    s = RedactionSettings()
    assert s.enabled and s.hmac_key is None and not s.redact_loopback
    assert s.skip_fields == ("event_id", "session_id", "timestamp", "schema_version", "event_type")
    on = Redactor(s).enabled_rules
    assert on == RULE_NAMES - {"high_entropy"}
    assert all(rule.source and rule.description for rule in RULES)


def test_settings_are_frozen() -> None:
    s = RedactionSettings()
    with pytest.raises(ValidationError):
        s.enabled = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("rules", {"emails": False}, "unknown redaction rules"),
        ("allow_patterns", ("(",), "invalid allow pattern"),
        ("entropy_threshold", 9.0, "less than or equal to 8"),
        ("max_field_length", 10, "greater than or equal to 1024"),
        ("enabled", "maybe", "valid boolean"),
        ("surprise", 1, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_rejected_with_the_field_named(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        RedactionSettings(**{field: value})
    assert message in str(info.value) and field in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad-Name", "regex": "x"}, "snake_case"),
        ({"name": "email", "regex": "x"}, "built-in rule name"),
        ({"name": "mine", "regex": "("}, "invalid regular expression"),
        ({"name": "mine", "regex": "a(b)", "group": 2}, "no group 2"),
        ({"name": "mine", "regex": "a(b)", "group": "x"}, "no group 'x'"),
    ],
)
def test_extra_pattern_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ExtraPattern(**kwargs)


def test_duplicate_extra_pattern_names_are_rejected() -> None:
    p = ExtraPattern(name="mine", regex="x")
    with pytest.raises(ValidationError, match="unique"):
        RedactionSettings(extra_patterns=(p, p))


def test_allow_lists_are_normalised() -> None:
    s = RedactionSettings(allow_email_domains=(" @Corp.COM ", ""), allow_emails=("Bot@X.io",))
    assert s.allow_email_domains == ("corp.com",) and s.allow_emails == ("bot@x.io",)


def test_nested_environment_variables_build_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shape pipeline.settings gives it: AGENTWATCH_REDACTION__* with JSON for lists."""

    class Demo(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="AGENTWATCH_", env_nested_delimiter="__")
        redaction: RedactionSettings = RedactionSettings()

    monkeypatch.setenv("AGENTWATCH_REDACTION__RULES", '{"email": false, "high_entropy": true}')
    monkeypatch.setenv("AGENTWATCH_REDACTION__HMAC_KEY", "s3cr3t-key")
    monkeypatch.setenv(
        "AGENTWATCH_REDACTION__EXTRA_PATTERNS", '[{"name": "acme", "regex": "acme_[0-9]{6}"}]'
    )
    monkeypatch.setenv("AGENTWATCH_REDACTION__REDACT_LOOPBACK", "1")
    monkeypatch.setenv("AGENTWATCH_REDACTION__ENABLED", "false")
    s = Demo().redaction
    assert s.rules == {"email": False, "high_entropy": True}
    assert s.hmac_key is not None and s.hmac_key.get_secret_value() == "s3cr3t-key"
    assert "s3cr3t-key" not in repr(s)
    assert s.extra_patterns[0].name == "acme" and s.redact_loopback and not s.enabled
    redactor = Redactor(s)
    assert "email" not in redactor.enabled_rules and "acme" in redactor.enabled_rules


def test_it_is_a_plain_frozen_section() -> None:
    assert issubclass(RedactionSettings, BaseModel)
    assert RedactionSettings.model_config.get("frozen") is True
