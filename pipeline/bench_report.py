"""Turns the printed output of several runs of a benchmark into min/median/max figures.

The scripts in bench/ print free-form lines. A line's *template* is its text with every number
replaced by ``#``; the same template in several runs is the same figure, so each number slot gets
its min, median and max across the runs. Nothing here runs anything: pure functions, tested
without a benchmark.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# 1,234.5 / -3 / 0.25 / 1e-05 / 1.08x; digits after a letter (p99, lz4) stay text.
_NUMBER = re.compile(r"""
    (?<![\w.]) -? \d{1,3} (?:,\d{3})+ (?:\.\d+)? (?![\d,])   # 1,234 or 1,234.5
  | (?<![\w.]) -? \d+ (?:\.\d+)? (?:[eE][-+]?\d+)?             # 12, 0.25, 1e-05, 1.08x, 20ms
""", re.VERBOSE)

TARGETS: dict[str, str] = {
    "serde": "decode within 2x raw fastavro",
    "archive": ">= 20,000 events/s archived",
    "clickhouse_sink": ">= 50,000 rows/s",
    "gateway": "10,000 idle clients per process; p99 <= 200 ms at 1,000 clients",
    "hooks": "HTTP hook p99 <= 5 ms; command hook p50 <= 40 ms; OTLP >= 20,000 events/s",
    "redact": ">= 20,000 events/s per core",
    "worker": ">= 10,000 events/s ingest -> events with one worker",
    "aggregate": ">= 10,000 events/s; p99 event -> widget update <= 300 ms",
    "sampler": "< 1% of one core at 1 s interval",
    "e2e_latency": "collector -> dashboard p50 <= 150 ms, p99 <= 500 ms at 1,000 events/s",
    "whole_pipeline": ">= 10,000 events/s collector -> ClickHouse with every sink on; "
                      "hooks < 5% of a typical tool call",
}
"""Targets stated in docs/benchmarks.md, shown beside each benchmark's figures."""


@dataclass
class Figure:
    template: str
    values: list[list[float]] = field(default_factory=list)
    """One list per run, one value per ``#`` slot of the template."""


def template_of(line: str) -> tuple[str, list[float]]:
    """``"sent 1,200 in 0.5 s"`` -> ``("sent # in # s", [1200.0, 0.5])``."""
    values = [float(m.group(0).replace(",", "")) for m in _NUMBER.finditer(line)]
    return _NUMBER.sub("#", line).rstrip(), values


def collect(outputs: Sequence[str]) -> list[Figure]:
    """Figures in the order of their first appearance; a template printed several times in one
    run keeps one entry per occurrence (``#2``, ``#3``...) so runs line up occurrence by occurrence."""
    figures: dict[str, Figure] = {}
    order: list[str] = []
    for output in outputs:
        seen: dict[str, int] = {}
        for raw in output.splitlines():
            template, values = template_of(raw)
            if not values:
                continue
            seen[template] = seen.get(template, 0) + 1
            key = template if seen[template] == 1 else f"{template} (#{seen[template]})"
            if key not in figures:
                figures[key] = Figure(key)
                order.append(key)
            figures[key].values.append(values)
    return [figures[k] for k in order]


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def spread(values: Iterable[float]) -> str:
    """``min / median / max`` (one value when the runs agree or there is one run)."""
    vals = sorted(values)
    lo, mid, hi = vals[0], statistics.median(vals), vals[-1]
    if lo == hi:
        return _fmt(lo)
    return f"{_fmt(lo)} / {_fmt(mid)} / {_fmt(hi)}"


def render_figure(figure: Figure) -> str:
    """The template with each slot as min / median / max over the runs that printed it."""
    slots = min(len(v) for v in figure.values)
    columns = [[run[i] for run in figure.values] for i in range(slots)]
    parts = figure.template.split("#")
    out = [parts[0]]
    for i, rest in enumerate(parts[1:]):
        out.append(f"[{spread(columns[i])}]" if i < slots else "#")
        out.append(rest)
    return "".join(out)


@dataclass
class BenchResult:
    name: str
    outputs: list[str]
    exit_codes: list[int]
    seconds: list[float]
    command: str


def render_markdown(results: Sequence[BenchResult], machine: Sequence[str], started: str) -> str:
    lines = [
        "## All benchmarks (`agentwatch bench all`)",
        "",
        f"Generated {started} by `agentwatch bench all`; each figure is `[min / median / max]` "
        "over the runs (one value when they agree). Hand-written sections above explain them.",
        "",
        "Machine:",
        "",
        *(f"- {m}" for m in machine),
        "",
    ]
    for res in results:
        ok = sum(1 for c in res.exit_codes if c == 0)
        lines += [
            f"### {res.name} (`{res.command}`)",
            "",
            f"Target: {TARGETS.get(res.name, 'none stated')}. Runs: {ok} of {len(res.exit_codes)} "
            f"succeeded, {spread(res.seconds)} s each.",
            "",
        ]
        good = [o for o, c in zip(res.outputs, res.exit_codes, strict=True) if c == 0]
        figures = collect(good)
        if figures:
            lines += ["```", *(render_figure(f) for f in figures), "```", ""]
        else:
            lines += ["(no figures: every run failed; see the command's output)", ""]
    return "\n".join(lines).rstrip() + "\n"


BEGIN = "<!-- agentwatch bench all: begin (generated, do not edit) -->"
END = "<!-- agentwatch bench all: end -->"


def splice(document: str, section: str) -> str:
    """Replace the generated section of ``document`` (or append it): hand-written text stays."""
    block = f"{BEGIN}\n{section.rstrip()}\n{END}\n"
    start, stop = document.find(BEGIN), document.find(END)
    if start != -1 and stop > start:
        return document[:start] + block + document[stop + len(END):].lstrip("\n")
    return document.rstrip("\n") + "\n\n" + block
