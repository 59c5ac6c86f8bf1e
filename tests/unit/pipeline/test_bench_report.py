from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pipeline import bench_cmd
from pipeline.bench_report import (
    BEGIN,
    END,
    BenchResult,
    collect,
    render_figure,
    render_markdown,
    splice,
    spread,
    template_of,
)


def test_template_keeps_words_with_digits_and_reads_thousands() -> None:
    template, values = template_of(
        "sent 12,500 events/s p99 3.5ms via lz4 (1e-05 lost, -2 left), 1.08x")
    assert template == "sent # events/s p99 #ms via lz4 (# lost, # left), #x"
    assert values == [12500.0, 3.5, 1e-05, -2.0, 1.08]


def test_runs_line_up_by_template_and_occurrence() -> None:
    runs = [
        "header without figures\nrate 100 /s\nrate 7 /s\ncpu 2.5 us\n",
        "rate 300 /s\nrate 9 /s\ncpu 1.5 us\nonly in run two 4\n",
        "rate 200 /s\nrate 8 /s\ncpu 2.0 us\n",
    ]
    figures = collect(runs)
    assert [f.template for f in figures] == ["rate # /s", "rate # /s (#2)", "cpu # us",
                                             "only in run two #"]
    assert render_figure(figures[0]) == "rate [100 / 200 / 300] /s"
    assert render_figure(figures[1]) == "rate [7 / 8 / 9] /s (#2)"
    assert render_figure(figures[2]) == "cpu [1.5 / 2 / 2.5] us"
    assert render_figure(figures[3]) == "only in run two [4]"


def test_spread_of_agreeing_runs_is_one_value() -> None:
    assert spread([5.0, 5.0]) == "5"
    assert spread([1234567.0, 1.0, 2.0]) == "1 / 2 / 1,234,567"


def test_splice_replaces_only_the_generated_section() -> None:
    doc = "# Benchmarks\n\nhand-written\n"
    once = splice(doc, "## All\nfirst\n")
    assert once.startswith(doc.rstrip("\n")) and BEGIN in once and "first" in once
    twice = splice(once + "\ntrailing hand-written\n", "## All\nsecond\n")
    assert "first" not in twice and "second" in twice
    assert twice.count(BEGIN) == 1 and twice.count(END) == 1
    assert "hand-written\n" in twice and "trailing hand-written" in twice


def test_markdown_has_machine_target_and_skips_failed_runs() -> None:
    res = BenchResult("serde", ["decode 70,000 events/s\n", "garbage 1\n", "decode 80,000 events/s\n"],
                      [0, 1, 0], [2.0, 1.0, 3.0], "python bench/serde.py")
    text = render_markdown([res], ["2 logical CPUs"], "2026-01-01 00:00 UTC")
    assert "- 2 logical CPUs" in text
    assert "Target: decode within 2x raw fastavro. Runs: 2 of 3 succeeded" in text
    assert "decode [70,000 / 75,000 / 80,000] events/s" in text
    assert "garbage" not in text


def test_command_runs_the_named_scripts_and_writes_the_section(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "fast.py").write_text("print('speed 42 ops/s')\n")
    (bench / "broken.py").write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(bench_cmd, "BENCH_DIR", bench)
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n\nkeep me\n")
    parser = argparse.ArgumentParser()
    bench_cmd.configure(parser, "bench all")
    assert bench_cmd.run(parser.parse_args(["--runs", "2", "--only", "fast", "--out", str(out)])) == 0
    text = out.read_text()
    assert "keep me" in text and "speed [42] ops/s" in text and "Runs: 2 of 2" in text
    assert bench_cmd.run(parser.parse_args(["--runs", "1", "--out", str(out)])) == 1
    assert "### broken" in out.read_text()
    assert bench_cmd.run(parser.parse_args(["--only", "nope", "--out", str(out)])) == 2
