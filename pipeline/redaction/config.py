"""Redaction settings: which rules run, what is allowed through, and how tokens look.

A frozen section meant for ``Settings.redaction`` (``AGENTWATCH_REDACTION__*``); the Redactor
compiles it once, so nothing here is consulted per event.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from pipeline.redaction.rules import RULE_NAMES

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")

DEFAULT_SKIP_FIELDS: tuple[str, ...] = (
    "event_id",
    "session_id",
    "timestamp",
    "schema_version",
    "event_type",
)
"""Top-level fields that must stay byte-identical for joins and idempotent sinks."""

# AWS's documentation key pair (docs.aws.amazon.com, "Managing access keys"): published on
# purpose, pasted into countless READMEs and tests; redacting it only hides useful context.
# The link-local cloud metadata endpoint (AWS/GCP/Azure IMDS) is the same everywhere and
# worth seeing in a session: it says the agent asked for instance credentials.
DEFAULT_ALLOW_VALUES: tuple[str, ...] = (
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "169.254.169.254",
)

# RFC 2606 / RFC 6761 reserved names can never reach a real mailbox; openssh.com and libssh.org
# name SSH algorithms ("aes256-gcm@openssh.com", RFC 4250 s4.6.1), which fill ssh -v output.
DEFAULT_ALLOW_EMAIL_DOMAINS: tuple[str, ...] = (
    "example.com",
    "example.org",
    "example.net",
    "example",
    "test",
    "invalid",
    "localhost",
    "openssh.com",
    "libssh.org",
)

# Machine identities that appear in nearly every coding session (SSH remotes, the co-author
# trailer Claude Code writes, GitHub's web-flow committer); none identifies a person.
DEFAULT_ALLOW_EMAILS: tuple[str, ...] = (
    "git@github.com",
    "git@gitlab.com",
    "git@bitbucket.org",
    "noreply@github.com",
    "noreply@anthropic.com",
)


class ExtraPattern(BaseModel):
    """A deployment-specific secret shape, redacted like the built-in rules."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="Rule name used in tokens and metrics; lowercase snake_case.")
    regex: str = Field(description="Python regular expression matching the secret.")
    group: int | str = Field(
        default=0, description="Capture group holding the secret; 0 redacts the whole match."
    )
    keywords: tuple[str, ...] = Field(
        default=(),
        description="Case-insensitive literals one of which every match contains; strings "
        "without any are skipped cheaply. Empty: the regex runs on every string.",
    )
    ignore_case: bool = False

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lowercase snake_case, at most 48 characters")
        if value in RULE_NAMES:
            raise ValueError(f"{value!r} is a built-in rule name")
        return value

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _group_exists(self) -> ExtraPattern:
        compiled = re.compile(self.regex)
        group = self.group
        ok = (
            group in compiled.groupindex
            if isinstance(group, str)
            else 0 <= group <= compiled.groups
        )
        if not ok:
            raise ValueError(f"regex has no group {group!r}")
        return self


class RedactionSettings(BaseModel):
    """How the stream processor scrubs secrets and personal data from every event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(
        default=True, description="Master switch; false passes events untouched."
    )
    rules: dict[str, bool] = Field(
        default_factory=dict,
        description="Per-rule on/off over the defaults, e.g. {\"email\": false, "
        "\"high_entropy\": true}. Names: see docs/privacy.md.",
    )
    extra_patterns: tuple[ExtraPattern, ...] = Field(
        default=(), description="Additional secret patterns (JSON list of {name, regex, ...})."
    )
    allow_values: tuple[str, ...] = Field(
        default=DEFAULT_ALLOW_VALUES,
        description="Exact strings never redacted (published example keys).",
    )
    allow_patterns: tuple[str, ...] = Field(
        default=(), description="Regexes; a detected secret that fully matches one is kept."
    )
    allow_email_domains: tuple[str, ...] = Field(
        default=DEFAULT_ALLOW_EMAIL_DOMAINS,
        description="Email domains (and their subdomains) kept in clear.",
    )
    allow_emails: tuple[str, ...] = Field(
        default=DEFAULT_ALLOW_EMAILS, description="Exact email addresses kept in clear."
    )
    allow_paths: tuple[str, ...] = Field(
        default=(),
        description="JSON-pointer globs (fnmatch) of event fields never redacted, e.g. "
        "/payload/path.",
    )
    skip_fields: tuple[str, ...] = Field(
        default=DEFAULT_SKIP_FIELDS,
        description="Top-level event fields left untouched (join keys).",
    )
    hmac_key: SecretStr | None = Field(
        default=None,
        description="When set, tokens carry the first 8 hex digits of HMAC-SHA256(key, "
        "secret), so one leaked secret maps to one token within a deployment.",
    )
    redact_loopback: bool = Field(
        default=False,
        description="Also redact 127.0.0.0/8 and ::1 (off: they reveal nothing about a network).",
    )
    entropy_threshold: float = Field(
        default=4.5, ge=0.0, le=8.0, description="Shannon bits/char for the high_entropy rule."
    )
    entropy_min_length: int = Field(
        default=20, ge=8, le=1024, description="Shortest token the high_entropy rule considers."
    )
    max_field_length: int = Field(
        default=1_000_000,
        ge=1024,
        description="Longer strings are cut to this many characters (after redacting a margin "
        "beyond the cut) and marked; bounds the work one event can cost.",
    )

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: dict[str, bool]) -> dict[str, bool]:
        unknown = sorted(set(value) - set(RULE_NAMES))
        if unknown:
            raise ValueError(f"unknown redaction rules {unknown}; known: {sorted(RULE_NAMES)}")
        return value

    @field_validator("allow_patterns")
    @classmethod
    def _patterns_compile(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid allow pattern {pattern!r}: {exc}") from exc
        return value

    @field_validator("allow_email_domains", "allow_emails")
    @classmethod
    def _lowercase(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(v.strip().lower().lstrip("@").lstrip(".") for v in value if v.strip())

    @model_validator(mode="after")
    def _extra_names_unique(self) -> RedactionSettings:
        names = [p.name for p in self.extra_patterns]
        if len(names) != len(set(names)):
            raise ValueError("extra_patterns names must be unique")
        return self
