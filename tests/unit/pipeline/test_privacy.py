"""Identity resolution, stamping and the consent cache's decisions (pure)."""

from __future__ import annotations

from typing import Any

from pipeline.privacy import (
    ConsentCache,
    Preference,
    Telemetry,
    allowed,
    clean_user,
    resolve_user,
    retention_with_preferences,
    stamp,
)
from pipeline.settings import RetentionSettings


def test_the_header_wins_then_the_body_then_the_configured_id() -> None:
    assert resolve_user("h", "b", "c") == "h"
    assert resolve_user(None, "b", "c") == "b"
    assert resolve_user("  ", 42, "c") == "c"
    assert resolve_user(None, None, "") is None
    assert clean_user("x" * 257) is None and clean_user("a\nb") is None


def test_stamp_overrides_a_claimed_user_and_creates_metadata() -> None:
    events: list[dict[str, Any]] = [{"metadata": {"user_id": "mallory"}}, {"metadata": None}]
    stamp(events, "alice")
    assert [e["metadata"]["user_id"] for e in events] == ["alice", "alice"]
    stamp(events, None)
    assert events[0]["metadata"]["user_id"] == "alice"


def test_minimal_keeps_lifecycle_and_cost_only() -> None:
    assert allowed("llm.request", Telemetry.MINIMAL) and allowed("session.ended", Telemetry.MINIMAL)
    assert not allowed("command.executed", Telemetry.MINIMAL)
    assert not allowed("session.started", Telemetry.DISABLED)
    assert allowed("file.write", Telemetry.ENABLED)


def test_cache_fails_open_or_closed_but_never_forgets_an_opt_out() -> None:
    now = [0.0]
    open_cache = ConsentCache(fail_open=True, max_stale_s=10, clock=lambda: now[0])
    closed = ConsentCache(fail_open=False, max_stale_s=10, clock=lambda: now[0])
    assert open_cache.mode("a") is Telemetry.ENABLED and closed.mode("a") is Telemetry.DISABLED
    for cache in (open_cache, closed):
        cache.replace({"b": Telemetry.DISABLED, "m": Telemetry.MINIMAL})
    assert closed.mode("a") is Telemetry.ENABLED and closed.mode("m") is Telemetry.MINIMAL
    now[0] = 11.0
    assert open_cache.stale and open_cache.mode("a") is Telemetry.ENABLED
    assert open_cache.mode("b") is Telemetry.DISABLED
    assert closed.mode("a") is Telemetry.DISABLED and closed.mode("b") is Telemetry.DISABLED


def test_users_retention_choices_join_the_rules_but_never_override_the_operator() -> None:
    cfg = RetentionSettings(user_days={"held": 0})
    prefs = [Preference("a", Telemetry.ENABLED, 3, 1, ""), Preference("held", Telemetry.ENABLED, 1, 1, ""),
             Preference("none", Telemetry.ENABLED, 0, 1, "")]
    assert retention_with_preferences(cfg, prefs).user_days == {"held": 0, "a": 3}
    assert retention_with_preferences(cfg, []) is cfg
