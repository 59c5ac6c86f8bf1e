"""`agentwatch bench all`: run every script in bench/ several times and write the figures.

Each benchmark runs as its own process (``python bench/<name>.py``, its default arguments), one
after the other so they do not measure each other. Its printed lines become figures with
min/median/max over the runs (``pipeline.bench_report``), next to the target, under a machine
description, in a generated section of docs/benchmarks.md (the hand-written sections stay).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from pipeline.bench_report import BenchResult, render_markdown, splice
from pipeline.settings import REPO_ROOT

BENCH_DIR = REPO_ROOT / "bench"


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--runs", type=int, default=3, help="runs of each benchmark (default 3)")
    parser.add_argument("--only", default="", help="comma-separated names, e.g. serde,redact")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md",
                        help="Markdown file whose generated section is replaced")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the section instead of writing --out")


def available() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("*.py") if not p.name.startswith("_"))


def machine() -> list[str]:
    """What the figures were measured on (they mean little without it)."""
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        first = meminfo.read_text().splitlines()[0].split()
        mem = f", {int(first[1]) / 1024 / 1024:.1f} GiB RAM"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = [
        f"{os.cpu_count()} logical CPUs ({cpu}){mem}",
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
    ]
    if load is not None:
        out.append(f"load average at start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
                   "(1 / 5 / 15 min; above the CPU count means the figures are contended)")
    return out


def run_one(name: str, timeout_s: float) -> tuple[str, int, float]:
    started = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, str(BENCH_DIR / f"{name}.py")], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=timeout_s, check=False)
        output, code = proc.stdout, proc.returncode
        if code != 0:
            sys.stderr.write(f"bench {name} exited {code}:\n{proc.stderr[-2000:]}\n")
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        code = -1
        sys.stderr.write(f"bench {name}: timed out after {timeout_s:.0f} s\n")
    return output, code, time.monotonic() - started


def run(args: argparse.Namespace) -> int:
    names = available()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            sys.stderr.write(f"unknown benchmarks: {', '.join(unknown)}; known: {', '.join(names)}\n")
            return 2
        names = wanted
    if args.runs < 1:
        sys.stderr.write("--runs must be at least 1\n")
        return 2
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    described = machine()
    results: list[BenchResult] = []
    for name in names:
        res = BenchResult(name, [], [], [], f"python bench/{name}.py")
        for i in range(args.runs):
            sys.stderr.write(f"== {name} run {i + 1}/{args.runs}\n")
            output, code, seconds = run_one(name, args.timeout)
            res.outputs.append(output)
            res.exit_codes.append(code)
            res.seconds.append(seconds)
        results.append(res)
    section = render_markdown(results, described, started)
    if args.print_only:
        sys.stdout.write(section)
    else:
        doc = args.out.read_text() if args.out.is_file() else "# Benchmarks\n"
        args.out.write_text(splice(doc, section))
        sys.stderr.write(f"wrote {args.out}\n")
    return 0 if all(c == 0 for r in results for c in r.exit_codes) else 1
