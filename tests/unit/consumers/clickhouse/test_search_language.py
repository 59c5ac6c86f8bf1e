"""The search language: parsing (precedence, quoting, ranges, errors) and compilation to SQL."""

from __future__ import annotations

import re

import pytest

from consumers.clickhouse.search import (
    EVENT_FIELDS,
    Range,
    Term,
    compile_search,
    compile_where,
    like_pattern,
    parse,
    parse_time_us,
    render_tree,
)
from pipeline.errors import QueryError


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("event_type:file.write AND agent:erlang-otp-developer",
         "(event_type:file.write AND agent:erlang-otp-developer)"),
        ("a b", "(a AND b)"),
        ("a OR b c", "(a OR (b AND c))"),
        ("a OR b AND c", "(a OR (b AND c))"),
        ("(a OR b) c", "((a OR b) AND c)"),
        ("NOT a OR b", "(NOT a OR b)"),
        ("NOT (a OR b)", "NOT (a OR b)"),
        ("-severity:debug", "NOT severity:debug"),
        ("NOT NOT a", "NOT NOT a"),
        ('file_path:"src/my file.py"', 'file_path:"src/my file.py"'),
        ('"two words"', '"two words"'),
        ("duration_ms:>1000", "duration_ms:>1000"),
        ("duration_ms:<=5", "duration_ms:<=5"),
        ("duration_ms:[100 TO 500]", "duration_ms:[100 TO 500]"),
        ("duration_ms:[100 TO *]", "duration_ms:[100 TO *]"),
        ("duration_ms:100..500", "duration_ms:[100 TO 500]"),
        ("duration_ms:..500", "duration_ms:[* TO 500]"),
        ("exit_code:*", "exit_code:*"),
        ("metadata.user_id:bob", "metadata.user_id:bob"),
        ("ANDROID OR ORACLE", "(ANDROID OR ORACLE)"),
        ("path:C:\\x", "path:C:\\x"),
    ],
)
def test_parse_precedence_and_forms(text: str, tree: str) -> None:
    assert render_tree(parse(text)) == tree


def test_quoted_values_keep_escapes_and_are_marked_literal() -> None:
    node = parse(r'error_message:"say \"hi\" *now*"')
    assert node == Term("error_message", "=", 'say "hi" *now*', quoted=True)


def test_ranges_keep_open_ends_as_none() -> None:
    assert parse("duration_ms:[* TO 10]") == Term("duration_ms", "range", Range(None, "10"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty search"),
        ("   ", "empty search"),
        ("a AND", "expected a term"),
        ("a OR OR b", "OR needs a term"),
        ("(a OR b", "missing ')'"),
        ("a)", "unexpected ')'"),
        ("x:", "has no value"),
        ("x: y", "has no value"),
        ("x:(a OR b)", "needs a value"),
        ('x:"open', "unterminated"),
        ("d:[1 TO", "missing ']'"),
        ("d:[1 5]", "low TO high"),
        ("d:>", "needs a value"),
    ],
)
def test_syntax_errors_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)) as info:
        parse(text)
    if text.strip():
        assert "column" in str(info.value)


def test_overlong_and_huge_queries_are_refused() -> None:
    with pytest.raises(QueryError, match="longer than"):
        parse("a " * 3000)
    with pytest.raises(QueryError, match="more than 100 terms"):
        parse(" OR ".join(f"agent:a{i}" for i in range(101)))


def test_like_pattern_escapes_sql_wildcards_and_honours_backslash() -> None:
    assert like_pattern("src/*.py") == "src/%.py"
    assert like_pattern("test_?") == "test\\__"
    assert like_pattern("100%*") == "100\\%%"
    assert like_pattern(r"a\*b*") == "a*b%"
    assert like_pattern("back\\\\slash") == "back\\\\slash"


def _where(text: str) -> tuple[str, dict[str, object]]:
    compiled = compile_where(text, EVENT_FIELDS)
    return compiled.where, compiled.params


def test_values_become_parameters_never_sql_text() -> None:
    hostile = "x' OR 1=1 --"
    where, params = _where(f'agent:"{hostile}" OR file_path:*{hostile.replace(" ", "")}*')
    assert hostile not in where and "1=1" not in where
    assert params == {"s0": hostile, "s1": "%x'OR1=1--%"}
    assert where == "(agent = %(s0)s OR file_path LIKE %(s1)s)"


def test_field_names_come_from_the_table_only() -> None:
    with pytest.raises(QueryError, match="unknown search field 'drop_table'"):
        _where("drop_table:1")
    where, _ = _where("file:src/a.py suite:unit")
    assert where == "(file_path = %(s0)s AND test_suite = %(s1)s)"


def test_string_terms() -> None:
    assert _where("event_type:file.*") == ("event_type LIKE %(s0)s", {"s0": "file.%"})
    assert _where('event_type:"file.*"') == ("event_type = %(s0)s", {"s0": "file.*"})
    assert _where(r"file_path:a\*b") == ("file_path = %(s0)s", {"s0": "a*b"})
    assert _where("file_path:*") == ("file_path != ''", {})
    with pytest.raises(QueryError, match="is text"):
        _where("agent:>b")


def test_numeric_terms_wrap_nullable_columns_so_not_includes_missing_values() -> None:
    assert _where("duration_ms:>1000") == ("ifNull(duration_ms > %(s0)s, 0)", {"s0": 1000})
    assert _where("NOT duration_ms:>1000") == ("(NOT ifNull(duration_ms > %(s0)s, 0))",
                                                {"s0": 1000})
    assert _where("cost_usd:0.5") == ("ifNull(cost_usd = %(s0)s, 0)", {"s0": 0.5})
    assert _where("input_tokens:[10 TO 20]") == (
        "(input_tokens >= %(s0)s AND input_tokens <= %(s1)s)", {"s0": 10, "s1": 20})
    assert _where("exit_code:*") == ("ifNull(isNotNull(exit_code), 0)", {})
    for bad in ("duration_ms:fast", "duration_ms:nan", "duration_ms:1*", "duration_ms:[a TO 2]"):
        with pytest.raises(QueryError):
            _where(bad)


def test_severity_compares_by_rank() -> None:
    assert _where("severity:>=warning") == (
        "severity IN %(s0)s", {"s0": ("warning", "error", "critical")})
    assert _where("severity:<info") == ("severity IN %(s0)s", {"s0": ("debug",)})
    assert _where("severity:[info TO error]")[1] == {"s0": ("info", "warning", "error")}
    assert _where("severity:>critical") == ("0", {})
    with pytest.raises(QueryError, match="one of debug"):
        _where("severity:fatal")


def test_time_terms_use_microseconds() -> None:
    where, params = _where("timestamp:>=2026-01-05T10:00:00Z")
    assert where == "ts_us >= %(s0)s"
    assert params["s0"] == parse_time_us("t", "2026-01-05T10:00:00+00:00") == 1_767_607_200_000_000
    assert parse_time_us("t", "2026-01-05") == 1_767_571_200_000_000
    assert parse_time_us("t", "2026-01-05T12:00:00+02:00") == 1_767_607_200_000_000
    with pytest.raises(QueryError, match="ISO date"):
        _where("timestamp:>yesterday")


def test_arrays_and_metadata() -> None:
    assert _where("command_args:--release") == ("has(command_args, %(s0)s)", {"s0": "--release"})
    assert _where("args:--rel*") == ("arrayExists(x -> x LIKE %(s0)s, command_args)",
                                     {"s0": "--rel%"})
    assert _where("metadata.user_id:bob") == (
        "visitParamExtractString(metadata, %(s0)s) = %(s1)s", {"s0": "user_id", "s1": "bob"})
    with pytest.raises(QueryError, match="invalid metadata key"):
        _where("metadata." + "k" * 129 + ":1")
    # A quote cannot be part of a field name: the whole word is free text instead.
    assert _where("metadata.a'b:1")[1] == {"s0": "metadata.a'b:1"}


def test_free_text_searches_text_columns_case_insensitively() -> None:
    where, params = _where('"undefined function"')
    assert params == {"s0": "undefined function"}
    assert "positionCaseInsensitiveUTF8(error_message, %(s0)s) > 0" in where
    assert "positionCaseInsensitiveUTF8(file_path, %(s0)s) > 0" in where
    with pytest.raises(QueryError, match="wildcards need a field"):
        _where("foo*")


def test_compile_search_bounds_the_window_and_dedups() -> None:
    query = compile_search("agent:x", since_s=100, until_s=200, limit=5)
    assert query.params == {"s0": "x", "since": 100, "until": 200, "limit": 5}
    assert "LIMIT 1 BY event_id" in query.sql
    assert "timestamp >= toDateTime(%(since)s)" in query.sql
    # Every %( in the SQL is one of our parameters: clickhouse-driver's %-formatting works.
    assert set(re.findall(r"%\((\w+)\)s", query.sql)) == set(query.params)
    assert "%" not in re.sub(r"%\(\w+\)s", "", query.sql)
    with pytest.raises(QueryError, match="limit"):
        compile_search("agent:x", since_s=1, until_s=2, limit=0)
