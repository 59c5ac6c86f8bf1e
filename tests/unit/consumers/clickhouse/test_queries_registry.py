"""The named-query registry: parameters, binding, 18.16-safe SQL, and docs/analytics.md in sync."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from consumers.clickhouse import queries
from pipeline.errors import QueryError

NOW_US = int(datetime(2026, 1, 5, 12, 0, 0, tzinfo=UTC).timestamp()) * 1_000_000
NOW_S = NOW_US // 1_000_000

DESIGN_QUERIES = {
    "session_duration_by_agent", "most_modified_files", "error_rate_by_agent",
    "build_performance_trend", "build_time_by_component", "test_success_rate_by_suite",
    "coverage_trajectory", "lines_of_code_per_hour", "issues_fixed_per_hour",
    "session_cost_resources", "session_cost_tokens",
    "compile_fix_loops", "flaky_tests", "memory_growth", "slow_tests", "stalled_sessions",
    "retry_storms", "cost_spikes",
}


def test_every_design_query_is_registered() -> None:
    assert set(queries.REGISTRY) >= DESIGN_QUERIES


@pytest.mark.parametrize("name", sorted(queries.REGISTRY))
def test_sql_placeholders_match_declared_params_and_avoid_what_18_16_lacks(name: str) -> None:
    query = queries.REGISTRY[name]
    assert {p.name for p in query.params} == query.param_names()
    # clickhouse-driver %-formats the SQL: a stray % would break it.
    assert "%" not in re.sub(r"%\(\w+\)s", "", query.sql)
    for missing in ("JSONExtract", "toStartOfInterval", "DateTime64", "arrayMax", "arrayMin",
                    "trim(", "FINAL"):
        assert missing not in query.sql, f"{name} uses {missing}"
    # Every events query is bounded by the window (partition pruning) and the session filter.
    assert "toDateTime(%(since)s)" in query.sql
    assert "%(session)s = ''" in query.sql


def test_bind_defaults_and_cli_forms() -> None:
    query = queries.get("most_modified_files")
    params = queries.bind(query, {}, now_us=NOW_US)
    assert params == {"since": NOW_S - 86_400, "until": NOW_S + 1, "session": "", "limit": 20}
    params = queries.bind(query, {"since": "7d", "until": "1h", "session": "s1", "limit": "5"},
                          now_us=NOW_US)
    assert params == {"since": NOW_S - 7 * 86_400, "until": NOW_S + 1 - 3600, "session": "s1",
                      "limit": 5}
    iso = queries.bind(query, {"since": "2026-01-05", "until": "2026-01-05T06:00:00+02:00"},
                       now_us=NOW_US)
    assert (iso["since"], iso["until"]) == (NOW_S - 12 * 3600, NOW_S - 8 * 3600)  # 04:00 UTC


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"nope": "1"}, "has no parameter nope"),
        ({"limit": "many"}, "takes a UInt32"),
        ({"limit": "-1"}, "must not be negative"),
        ({"since": "yesterday"}, "duration ago"),
        ({"since": "1h", "until": "2h"}, "--since must be before --until"),
    ],
)
def test_bind_rejects_bad_parameters(given: dict[str, str], message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        queries.bind(queries.get("most_modified_files"), given, now_us=NOW_US)


def test_float_parameters_and_unknown_queries() -> None:
    params = queries.bind(queries.get("cost_spikes"), {"usd_per_hour": "7.5"}, now_us=NOW_US)
    assert params["usd_per_hour"] == 7.5 and params["window_minutes"] == 15
    with pytest.raises(QueryError, match="no named query 'nope'"):
        queries.get("nope")


def test_docs_analytics_md_is_generated_from_the_registry() -> None:
    assert queries.DOC_PATH.read_text() == queries.render_markdown(), (
        "docs/analytics.md is stale: .venv/bin/python -m consumers.clickhouse.queries "
        "> docs/analytics.md")


def test_docs_show_every_query_with_clickhouse_client_parameters() -> None:
    doc = queries.render_markdown()
    for name, query in queries.REGISTRY.items():
        assert f"### {name}" in doc
        for param in query.params:
            assert "{" + f"{param.name}:{param.type}" + "}" in doc
    assert "%(" not in doc
